"""fnet-train and char_lm.py: nothing silently wrong with a validation set, a network of one's own,
a resumed schedule, outputs the file system refuses, images of the wrong scale."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from script_runner import ROOT, run_script

from fnet import checkpoint, cli

FASHION = "/usr/share/datasets/fashion-mnist"
QUICK = ["--train-size", "600", "--batch-size", "100", "--no-compile-cache"]


@pytest.fixture(autouse=True)
def _needs_fashion():
    if not os.path.isdir(FASHION):
        pytest.skip(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")


def _refused(argv, capsys) -> str:
    """The error line of an ``fnet-train`` run the parser refuses (exit status 2)."""
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: fnet-train [options] (--help lists them)\n"), err
    return err.splitlines()[1]


# ----------------------------------------------------------------------------------- outputs and inputs


def test_outputs_the_file_system_refuses_are_refused_before_the_data_is_read(tmp_path, capsys):
    missing = ["--data-dir", str(tmp_path / "no-data"), "--no-download", "--epochs", "1"]
    for option in ("--json", "--plot", "--checkpoint"):
        line = _refused([*missing, option, "/proc/fnet-out.json"], capsys)
        assert line.startswith(f"fnet-train: error: {option} /proc/fnet-out.json cannot be created: "), line
    assert not os.path.exists("/proc/fnet-out.json")
    (tmp_path / "kept.json").write_text("earlier")  # an existing file is probed, not truncated
    with pytest.raises(SystemExit):
        cli.main([*missing, "--json", str(tmp_path / "kept.json"), "--hidden", "0"])
    assert (tmp_path / "kept.json").read_text() == "earlier"
    (tmp_path / "text.txt").write_text("abc " * 500)
    proc = run_script("scripts/char_lm.py", "--text", str(tmp_path / "text.txt"), "--iters", "2",
                      "--warmup", "0", "--json", "/proc/fnet-lm.json")
    assert proc.returncode == 2 and "--json /proc/fnet-lm.json cannot be created" in proc.stderr, proc.stderr


def test_a_plot_of_a_kind_matplotlib_cannot_write_is_refused_before_the_data_is_read(tmp_path, capsys):
    # it failed in savefig after the last epoch, a traceback at the end of the run
    line = _refused(["--data-dir", str(tmp_path / "no-data"), "--no-download", "--epochs", "1",
                     "--plot", str(tmp_path / "curves.xyz")], capsys)
    assert line.startswith(f"fnet-train: error: --plot {tmp_path}/curves.xyz: matplotlib cannot write .xyz "
                           "files; name a .png, .pdf or .svg file (it writes "), line


def test_keep_best_never_replaces_an_earlier_runs_best_model(tmp_path, capsys):
    best = tmp_path / "run.best.npz"
    best.write_bytes(b"an earlier run's best model")  # its run.npz was deleted
    line = _refused(["--data-dir", str(tmp_path / "no-data"), "--no-download", "--epochs", "1", "--keep-best",
                     "--checkpoint", str(tmp_path / "run.npz")], capsys)
    assert line.startswith(f"fnet-train: error: --keep-best would replace {best}"), line
    assert best.read_bytes() == b"an earlier run's best model"


def test_predict_refuses_images_of_the_wrong_scale_or_with_nan(tmp_path, capsys):
    path = tmp_path / "run.npz"
    assert cli.main([*QUICK, "--epochs", "1", "--checkpoint", str(path)]) == 0
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    cases = [(images.astype(np.float32), "float pixels must be in [0, 1], got 0..255 (pixels 0..255 stored "
                                         "as floats?)"),
             (np.where(images > 250, np.nan, images / 255), "pixel values are NaN or infinite, the first in "
                                                            "image 0"),
             (images - 10, "integer pixels must be 0..255, got -10.."),
             (images.astype(bool), "images of dtype bool")]
    for bad, message in cases:
        np.save(tmp_path / "bad.npy", bad)
        capsys.readouterr()
        assert cli.main(["--predict", str(tmp_path / "bad.npy"), "--checkpoint", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "pass uint8 pixels 0..255" in err, err
    for good in (images.astype(np.uint8), images / 255):  # the two scales it reads, as one
        np.save(tmp_path / "good.npy", good)
        assert cli.main(["--predict", str(tmp_path / "good.npy"), "--checkpoint", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == lines[5:8]  # the same classes and probabilities for both


def test_a_checkpoint_fit_wrote_is_refused_in_one_line(tmp_path, capsys):
    import fnet
    from fnet import losses, optim, train

    x = np.random.default_rng(0).random((40, 784), np.float32)
    train.fit(fnet.two_layer_net(784, 5, 10), losses.softmax_cross_entropy, optim.sgd(0.1),
              (x, np.arange(40) % 10), epochs=1, batch_size=20, checkpoint=tmp_path / "fit.npz")
    assert cli.main(["--evaluate", "--checkpoint", str(tmp_path / "fit.npz"), "--no-compile-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was not written by fnet-train" in err
    assert "fnet.checkpoint.restore(path, net, input_shape)" in err and "--net MODULE:FUNCTION" in err


# ------------------------------------------------------------------------------------- the validation set


def test_val_fraction_holds_out_a_validation_set_on_which_keep_best_and_early_stop_choose(tmp_path, capsys):
    path = tmp_path / "run.npz"
    argv = [*QUICK, "--epochs", "3", "--schedule", "cosine", "--val-fraction", "0.2", "--keep-best",
            "--early-stop", "2", "--checkpoint", str(path), "--json", str(tmp_path / "run.json")]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    assert "warning" not in err, err
    lines = out.splitlines()
    assert lines[0].startswith("fashion-mnist: 480 train (120 held out for validation) / 10000 test examples")
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert epochs and all(" val loss " in line and " val acc " in line for line in epochs)
    report = json.loads((tmp_path / "run.json").read_text())
    history = report["history"]
    assert len(history["val_acc"]) == len(epochs) and all(0 < v <= 1 for v in history["val_acc"])
    assert report["config"]["val_fraction"] == 0.2
    best = int(np.argmax(history["val_acc"])) + 1
    assert checkpoint.read_config(checkpoint.best_path(path))["epoch"] == best
    # the schedule is built over the steps of the 480 examples trained on: 4 batches of 100 an epoch
    assert report["config"]["schedule_steps"] == 12
    assert "--val-fraction" in _refused([*argv, "--resume", "--val-fraction", "0.3"], capsys)
    line = _refused([*QUICK, "--epochs", "1", "--val-fraction", "0.9"], capsys)
    assert "--batch-size" in line  # 60 examples left for batches of 100


def test_choosing_on_the_test_set_is_one_warning_line_that_says_what_to_do(tmp_path, capsys):
    assert cli.main([*QUICK, "--epochs", "1", "--keep-best", "--early-stop", "1",
                     "--checkpoint", str(tmp_path / "run.npz")]) == 0
    err = capsys.readouterr().err
    assert err == ("fnet-train: warning: --keep-best and --early-stop without --val-fraction choose on the "
                   "test set, so the test figures reported are optimistic (the test set took part in "
                   "choosing); add --val-fraction 0.1 to choose on a validation set held out of the "
                   "training set\n")


# ------------------------------------------------------------------------------------------------ resume


def test_resume_continues_a_constant_schedule_and_refuses_to_stretch_a_decaying_one(tmp_path, capsys):
    path = tmp_path / "run.npz"
    assert cli.main([*QUICK, "--epochs", "1", "--warmup", "3", "--checkpoint", str(path)]) == 0
    assert cli.main([*QUICK, "--epochs", "2", "--warmup", "3", "--checkpoint", str(path), "--resume",
                     "--progress", "--devices", "1"]) == 0  # --progress changes nothing computed
    assert checkpoint.read_config(path)["epoch"] == 2
    cosine = tmp_path / "cosine.npz"
    assert cli.main([*QUICK, "--epochs", "1", "--schedule", "cosine", "--checkpoint", str(cosine)]) == 0
    capsys.readouterr()
    line = _refused([*QUICK, "--epochs", "2", "--schedule", "cosine", "--checkpoint", str(cosine),
                     "--resume"], capsys)
    assert line == ("fnet-train: error: --resume: the learning-rate schedule (--schedule cosine) of "
                    f"{cosine} was built over 6 steps (--epochs 1); --epochs 2 would rebuild it over 12 "
                    "steps while the step count carries on. Resume with --epochs 1 to finish that run, or "
                    "start a new one with --overwrite")
    assert checkpoint.read_config(cosine)["epoch"] == 1  # nothing lost


# ----------------------------------------------------------------------------------- a network of one's own


NETS = textwrap.dedent("""
    import fnet
    from fnet import layers as L

    def small_cnn():
        return fnet.sequential(L.conv2d(4, 3, padding=1), L.relu(), L.max_pool2d(2), L.flatten(),
                               L.affine(10))

    def rows_lstm():
        return fnet.sequence_classifier("lstm", 8)

    def three_classes():
        return fnet.sequential(L.flatten(), L.affine(3))

    def flat_affine():
        return L.affine(10)

    def not_a_layer():
        return "a network"
    """)


def test_net_trains_evaluates_and_predicts_a_network_of_ones_own(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)  # --net searches the current directory first
    path = tmp_path / "cnn.npz"
    assert cli.main([*QUICK, "--epochs", "1", "--net", "mynets:small_cnn",
                     "--checkpoint", str(path), "--json", str(tmp_path / "cnn.json")]) == 0
    out = capsys.readouterr().out
    assert "net mynets:small_cnn: 7,890 parameters; optim.sgd(lr=0.1)" in out
    report = json.loads((tmp_path / "cnn.json").read_text())
    assert report["config"]["net"] == "mynets:small_cnn" and report["config"]["net_input"] == "image"
    assert "hidden" not in report["config"] or report["config"]["hidden"] is None
    assert cli.main(["--evaluate", "--checkpoint", str(path), "--no-compile-cache"]) == 0
    evaluated = capsys.readouterr().out
    assert f"{path} (net mynets:small_cnn, epoch 1) on the fashion-mnist test set (10000 examples)" \
        in evaluated
    assert abs(float(evaluated.split("accuracy ")[1]) - report["final"]["test_acc"]) < 1e-4
    np.save(tmp_path / "two.npy", np.zeros((2, 28, 28), np.uint8))
    assert cli.main(["--predict", str(tmp_path / "two.npy"), "--checkpoint", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    assert cli.main([*QUICK, "--epochs", "1", "--net", "mynets:rows_lstm", "--net-input", "rows"]) == 0


def test_net_errors_name_the_option_and_the_fix(tmp_path, monkeypatch, capsys):
    (tmp_path / "mynets.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    quick = [*QUICK, "--epochs", "1"]
    for argv, message in [
        (["--net", "mynets"], "--net mynets: expected MODULE:FUNCTION"),
        (["--net", "nosuchmodule:f"], "--net nosuchmodule:f: cannot import nosuchmodule"),
        (["--net", "mynets:missing"], "--net mynets:missing: mynets has no function missing"),
        (["--net", "mynets:not_a_layer"], "--net mynets:not_a_layer: not_a_layer() returned str"),
        (["--net", "mynets:three_classes"], "gives outputs of shape (None, 3), but the data have 10 classes"),
        (["--net", "mynets:rows_lstm"], "does not take examples of shape (28, 28, 1) (--net-input)"),
        (["--net", "mynets:small_cnn", "--model", "mlp"], "--net mynets:small_cnn and --model mlp: give one"),
        (["--net", "mynets:small_cnn", "--hidden", "5"], "--hidden describes a --model; --net mynets:"),
        (["--net-input", "rows"], "--net-input applies to --net"),
    ]:
        line = _refused([*quick, *argv], capsys)
        assert message in line, (argv, line)


def test_net_of_a_module_that_no_longer_imports_is_one_line_at_evaluate(tmp_path, monkeypatch, capsys):
    (tmp_path / "gone.py").write_text(NETS)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.npz"
    assert cli.main([*QUICK, "--epochs", "1", "--net", "gone:flat_affine", "--net-input", "flat",
                     "--checkpoint", str(path)]) == 0
    (tmp_path / "gone.py").unlink()
    sys.modules.pop("gone", None)
    capsys.readouterr()
    assert cli.main(["--evaluate", "--checkpoint", str(path), "--no-compile-cache"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fnet-train: --net gone:flat_affine: cannot import gone")


# ------------------------------------------------------------------------------------------------ devices


def test_progress_on_several_devices_is_refused_with_the_way_out(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    proc = subprocess.run([sys.executable, "scripts/train.py", *QUICK, "--epochs", "1", "--progress",
                           "--data-dir", str(tmp_path / "none"), "--no-download"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert ("--progress reports within an epoch on one device, and this run would train on 2: add "
            "--devices 1, or drop --progress") in proc.stderr
