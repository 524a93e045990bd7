"""scripts/train.py (fnet-train): a real short run, resume, outputs, and argument errors."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from script_runner import run_script

from fnet import checkpoint, cli

FASHION = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(autouse=True)
def _needs_fashion():
    if not os.path.isdir(FASHION):
        pytest.skip(f"{FASHION} is missing: apt-get install dataset-fashion-mnist")


def test_short_run_with_json_plot_checkpoint_and_resume(tmp_path):
    common = ["scripts/train.py", "--train-size", "2000", "--batch-size", "100", "--seed", "2",
              "--checkpoint", str(tmp_path / "run.npz"), "--compile-cache", str(tmp_path / "xla")]
    proc = run_script(*common, "--epochs", "2", "--json", str(tmp_path / "m.json"),
                      "--plot", str(tmp_path / "m.png"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("fashion-mnist: 2000 train / 10000 test examples")
    assert "model two_layer: 39,760 parameters; optim.sgd(lr=0.1); batch 100; epochs 2" in lines[1]
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("train acc" in e and "test acc" in e and "samples/s" in e for e in epochs)
    assert lines[-2].startswith("total ") and lines[-1].startswith("final: train acc ")

    report = json.loads((tmp_path / "m.json").read_text())
    assert report["config"]["optimizer"] == "sgd" and report["config"]["lr"] == 0.1  # the value used
    assert report["history"]["epoch"] == [1, 2]
    assert 0.1 < report["final"]["test_acc"] <= 1.0
    assert report["final"]["test_acc"] == report["history"]["test_acc"][-1]
    assert {"total_s", "compile_s", "train_s", "data_s"} <= set(report["timings"])
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert checkpoint.read_config(tmp_path / "run.npz")["epoch"] == 2

    resumed = run_script(*common, "--epochs", "3", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    epochs = [line for line in resumed.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 3/3")
    assert checkpoint.read_config(tmp_path / "run.npz")["epoch"] == 3
    assert any((tmp_path / "xla").iterdir())  # compiled programs were kept for the next run


@pytest.mark.parametrize("model", ["mlp", "resnet"])
def test_on_a_cpu_the_evaluation_runs_on_a_second_device_with_the_same_results(tmp_path, model):
    # a new process: the command line asks JAX for two CPU devices before it starts, trains on the
    # first and evaluates on the second, while the next epoch trains (mlp) or after each epoch (a
    # network convolving several channels: fnet.train.checks.may_evaluate_beside); --no-eval-overlap
    # does neither. Both train on one device without a mesh: a one-device mesh would draw other
    # augmentations (each device of a mesh folds its index into its keys), which this small ResNet would show.
    common = ["scripts/train.py", "--model", model, "--train-size", "640", "--epochs", "2", "--seed", "4",
              "--batch-size", "64", "--no-compile-cache"]
    if model == "resnet":
        common += ["--widths", "4", "8", "8", "--blocks", "1", "1", "1", "--augment", "crop,flip"]
    reports = {}
    for name, extra in (("second", []), ("serial", ["--no-eval-overlap"])):
        proc = run_script(*common, *extra, "--json", str(tmp_path / f"{name}.json"))
        assert proc.returncode == 0, proc.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        lines = proc.stdout.splitlines()
        reports[name]["line"] = next(line for line in lines if line.startswith("devices: "))
    when = "beside it" if model == "mlp" else "after each epoch"
    assert reports["second"]["device"] == f"1 x cpu (cpu), evaluating on cpu:1 {when}"
    assert reports["second"]["line"] == f"devices: 1 x cpu (cpu:0), evaluating on cpu:1 {when}"
    assert reports["serial"]["line"] == "devices: 1 x cpu (cpu:0)"  # fit says where it trains
    assert reports["serial"]["device"] == "1 x cpu (cpu)"
    for k in ("loss", "train_loss", "train_acc", "test_loss", "test_acc"):
        assert reports["second"]["history"][k] == reports["serial"]["history"][k], k
    assert "no_eval_overlap" not in reports["serial"]["config"]  # a resumed run may change it


def test_on_a_cpu_devices_n_trains_data_parallel_on_n_cpu_devices(tmp_path):
    # --devices 2 asks JAX for two CPU devices before it starts (none are set up here) and splits
    # every minibatch over them; without batch norm the losses are one device's, up to rounding
    common = ["scripts/train.py", "--train-size", "1200", "--epochs", "2", "--no-compile-cache"]
    reports = {}
    for devices in ("1", "2"):
        path = tmp_path / f"d{devices}.json"
        proc = run_script(*common, "--devices", devices, "--json", str(path))
        assert proc.returncode == 0, proc.stderr
        reports[devices] = json.loads(path.read_text())
        reports[devices]["line"] = next(x for x in proc.stdout.splitlines() if x.startswith("devices: "))
    assert reports["2"]["line"] == "devices: 2 x cpu (cpu:0, cpu:1), data parallel"
    assert reports["2"]["device"] == "2 x cpu (cpu)"
    assert reports["1"]["line"].startswith("devices: 1 x cpu (cpu:0)")
    for k in ("loss", "test_loss", "test_acc"):
        assert reports["2"]["history"][k] == pytest.approx(reports["1"]["history"][k], rel=1e-4, abs=1e-4), k


@pytest.mark.parametrize("argv,message", [
    (["--lr", "-1"], "argument --lr: expected a positive number, got -1.0"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--epochs", "2", "--iters", "5"], "argument --iters: not allowed with argument --epochs"),
    (["--hidden", "10", "20"], "--model two_layer has one hidden layer; got --hidden 10 20"),
    (["--activation", "sigmoid"], "--activation applies to --model mlp"),
    (["--model", "convnet", "--hidden", "5"], "--hidden applies to --model mlp"),
    (["--model", "mlp", "--dropout", "1.5"], "--dropout is the probability of dropping a unit, in [0, 1)"),
    (["--resume"], "--resume needs --checkpoint PATH"),
    (["--resume", "--checkpoint", "/nonexistent/x.npz"], "--resume: no checkpoint at /nonexistent/x.npz"),
    (["--weight-init", "glorot"], "--weight-init must be he, xavier or a positive standard deviation"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--xla-option", "xla_cpu_enable_fast_math"], "argument --xla-option: expected NAME=VALUE"),
    (["--xla-option", "=1"], "argument --xla-option: expected NAME=VALUE, got '=1'"),
    (["--model", "convnet", "--widths", "8"], "--widths applies to --model resnet"),
    (["--model", "resnet", "--weight-init", "he"], "--weight-init does not apply to --model resnet"),
    (["--model", "resnet", "--widths", "8", "16"], "one number per stage, so the same count; got 2 and 3"),
    (["--augment", "crop,flip"], "--augment transforms images: use it with --model convnet or resnet"),
    (["--model", "resnet", "--augment", "crop,rotate"], "--augment: unknown augmentation 'rotate'"),
    (["--model", "lstm", "--augment", "flip"], "(--model lstm reads rows as a sequence)"),
    (["--model", "gru", "--dropout", "0.5"], "--dropout does not apply to --model gru"),
    (["--train-size", "50", "--batch-size", "100"],
     "--batch-size 100 is larger than the training set (50 examples)"),
])
def test_bad_options_get_a_clear_argparse_error(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_resume_with_different_options_is_refused(tmp_path, capsys):
    path = tmp_path / "run.npz"
    common = ["--train-size", "500", "--quiet", "--no-compile-cache", "--checkpoint", str(path)]
    assert cli.main([*common, "--epochs", "1"]) == 0
    with pytest.raises(SystemExit):
        cli.main([*common, "--epochs", "2", "--resume", "--hidden", "60"])
    assert "--resume: " in capsys.readouterr().err


def test_missing_data_directory_is_reported(tmp_path, capsys):
    code = cli.main(["--data-dir", str(tmp_path / "empty"), "--no-download", "--epochs", "1", "--quiet",
                     "--no-compile-cache"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("fnet-train: Fashion-MNIST: ")
    assert str(tmp_path / "empty") in err


def test_installed_entry_point():
    # beside this interpreter: the suite may run as venv/bin/python -m pytest without activating the venv
    beside = Path(sys.executable).parent / "fnet-train"
    exe = str(beside) if beside.exists() else shutil.which("fnet-train")
    assert exe, f"fnet-train is not installed beside {sys.executable} (pip install -e .)"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--dataset {fashion-mnist,mnist}" in proc.stdout


def test_the_entry_point_exits_with_mains_code_after_the_exit_handlers(tmp_path):
    # cli.run skips Python's teardown (os._exit): the output and the atexit handlers must not be lost
    program = ("import atexit, sys\n"
               "from fnet import cli\n"
               "from fnet.cli import command\n"
               "atexit.register(lambda: print(' and the handler ran', end=''))\n"
               "command.main = lambda: (print('trained', end=''), open(sys.argv[1], 'w').write('saved'),\n"
               "                        3)[2]\n"
               "cli.run()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as by default
    proc = subprocess.run([sys.executable, "-c", program, str(tmp_path / "out.txt")], capture_output=True,
                          text=True, check=False, timeout=120, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, "trained and the handler ran", "")
    assert (tmp_path / "out.txt").read_text() == "saved"
    raising = "from fnet import cli\nfrom fnet.cli import command\ncommand.main = lambda: 1 / 0\ncli.run()\n"
    proc = subprocess.run([sys.executable, "-c", raising], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode == 1 and proc.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


def test_script_help():
    proc = run_script("scripts/train.py", "--help", timeout=60)
    assert proc.returncode == 0 and "--checkpoint PATH" in proc.stdout


@pytest.mark.parametrize("text,parsed", [
    ("xla_cpu_experimental_ynn_fusion_type=", ("xla_cpu_experimental_ynn_fusion_type", "")),
    ("xla_cpu_enable_fast_math=True", ("xla_cpu_enable_fast_math", True)),
    ("a=false", ("a", False)),
    ("a=3", ("a", 3)),
    ("a=0.5", ("a", 0.5)),
    ("a=x=y", ("a", "x=y")),
])
def test_xla_option_values(text, parsed):
    assert cli.xla_option(text) == parsed


def test_unknown_xla_option_is_reported(capsys):
    code = cli.main(["--train-size", "500", "--epochs", "1", "--quiet", "--no-compile-cache",
                     "--xla-option", "xla_no_such_option=1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fnet-train: fit: XLA rejected xla_options={'xla_no_such_option': 1}")


def test_a_misspelt_option_gets_a_suggestion(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--optimiser", "adam", "--bach-size", "3"])
    err = capsys.readouterr().err
    assert "(did you mean --optimiser -> --optimizer, --bach-size -> --batch-size?)" in err


def test_data_not_found_names_the_command_line_options(tmp_path, capsys):
    code = cli.main(["--data-dir", str(tmp_path / "none"), "--no-download", "--epochs", "1", "--quiet",
                     "--no-compile-cache"])
    err = capsys.readouterr().err
    assert code == 2 and "(and --no-download)." in err and "call again without --no-download" in err
    assert "as --data-dir, or leave --data-dir out" in err and "data_dir=" not in err


def test_json_records_the_values_used_and_resume_reports_no_throughput(tmp_path, capsys):
    common = ["--train-size", "500", "--no-compile-cache", "--checkpoint", str(tmp_path / "r.npz")]
    assert cli.main([*common, "--epochs", "1", "--quiet", "--json", str(tmp_path / "m.json")]) == 0
    config = json.loads((tmp_path / "m.json").read_text())["config"]
    assert config["lr"] == 0.1 and config["hidden"] == [50] and config["weight_init"] == "0.01"
    assert config["epochs"] == 1 and config["iters"] is None
    capsys.readouterr()
    assert cli.main([*common, "--epochs", "1", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "already holds 1 epochs; nothing to do" in out and "samples/s" not in out.splitlines()[-1]


def test_schedule_warmup_and_clipping_options(tmp_path, capsys):
    argv = ["--train-size", "500", "--epochs", "2", "--no-compile-cache", "--schedule", "step",
            "--warmup", "3", "--clip-norm", "1.5", "--json", str(tmp_path / "m.json")]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert ("optim.sgd(lr=schedules.warmup(schedule=schedules.step_decay(lr=0.1, step_size=3, gamma=0.1), "
            "warmup_steps=3))") in out
    config = json.loads((tmp_path / "m.json").read_text())["config"]
    assert (config["schedule"], config["warmup"], config["clip_norm"], config["lr"]) == ("step", 3, 1.5, 0.1)
    with pytest.raises(SystemExit):
        cli.main(["--train-size", "500", "--epochs", "1", "--warmup", "5", "--no-compile-cache"])
    assert "--warmup 5 must be shorter than the run (5 steps)" in capsys.readouterr().err


def test_label_smoothing_option(tmp_path, capsys):
    common = ["--train-size", "500", "--epochs", "1", "--no-compile-cache", "--quiet"]
    path = tmp_path / "plain.npz"
    assert cli.main([*common, "--checkpoint", str(path), "--json", str(tmp_path / "plain.json")]) == 0
    assert cli.main([*common, "--label-smoothing", "0.1", "--json", str(tmp_path / "smooth.json"),
                     "--checkpoint", str(tmp_path / "smooth.npz")]) == 0
    plain, smooth = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "smooth"))
    assert "label_smoothing" not in plain["config"] and smooth["config"]["label_smoothing"] == 0.1
    # a smoothed run still reports accuracy, and its loss is the smoothed one
    assert 0 < smooth["final"]["test_acc"] < 1 and smooth["final"]["test_acc"] != plain["final"]["test_acc"]
    assert smooth["history"]["test_loss"][0] > plain["history"]["test_loss"][0]
    capsys.readouterr()
    with pytest.raises(SystemExit):  # resuming the plain run with smoothing would mix two losses
        cli.main([*common[:-1], "--epochs", "2", "--label-smoothing", "0.1", "--resume",
                  "--checkpoint", str(path)])
    assert "the run differs in --label-smoothing (saved None, now 0.1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # nor the smoothed run without it: only the checkpoint has the key
        cli.main([*common[:-1], "--epochs", "2", "--resume", "--checkpoint", str(tmp_path / "smooth.npz")])
    assert "the run differs in --label-smoothing (saved 0.1, now None)" in capsys.readouterr().err
    for bad in ("1", "-0.1", "x"):
        with pytest.raises(SystemExit):
            cli.main([*common, "--label-smoothing", bad])
        assert "argument --label-smoothing: expected a number in [0, 1)" in capsys.readouterr().err


def test_fit_clip_norm_changes_the_updates():
    import fnet
    from fnet import losses, optim, train
    from fnet.data import load_fashion_mnist

    (x, t), _ = load_fashion_mnist(FASHION)
    kw = dict(epochs=1, batch_size=100, log=None)
    net = fnet.two_layer_net(784, 10, 10)
    plain = train.fit(net, losses.softmax_cross_entropy, optim.sgd(0.5), (x[:500], t[:500]), **kw)
    clipped = train.fit(net, losses.softmax_cross_entropy, optim.sgd(0.5), (x[:500], t[:500]), clip_norm=1e-3,
                        **kw)
    by_hand = train.fit(net, losses.softmax_cross_entropy, optim.clip_by_global_norm(optim.sgd(0.5), 1e-3),
                        (x[:500], t[:500]), **kw)
    w = [r.params["Affine1"]["W"] for r in (plain, clipped, by_hand)]
    assert not (w[0] == w[1]).all() and (w[1] == w[2]).all()


def test_early_stop_and_keep_best_options(tmp_path, capsys):
    path = tmp_path / "run.npz"
    assert cli.main(["--train-size", "500", "--epochs", "30", "--no-compile-cache", "--lr", "2.0",
                     "--early-stop", "1", "--keep-best", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    stopped = [line for line in out.splitlines() if line.startswith("stopped after epoch")]
    assert len(stopped) == 1 and "test_loss has not improved for 1 epochs" in stopped[0]
    assert checkpoint.read_config(path)["epoch"] < 30 and (tmp_path / "run.best.npz").exists()
    with pytest.raises(SystemExit):
        cli.main(["--keep-best", "--epochs", "1"])
    assert "--keep-best saves the best epoch beside the checkpoint" in capsys.readouterr().err


def test_evaluate_and_predict_use_a_saved_model(tmp_path, capsys):
    import numpy as np

    from fnet.data import load_fashion_mnist

    path = tmp_path / "run.npz"
    assert cli.main(["--train-size", "600", "--epochs", "2", "--quiet", "--no-compile-cache",
                     "--checkpoint", str(path), "--json", str(tmp_path / "train.json")]) == 0
    trained = json.loads((tmp_path / "train.json").read_text())["final"]["test_acc"]
    capsys.readouterr()
    assert cli.main(["--evaluate", "--checkpoint", str(path), "--no-compile-cache",
                     "--json", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert "(model two_layer, epoch 2) on the fashion-mnist test set (10000 examples): loss " in out
    assert abs(json.loads((tmp_path / "eval.json").read_text())["test_acc"] - trained) < 1e-6
    _, (x, t) = load_fashion_mnist(FASHION, normalize=False, flatten=False)
    np.save(tmp_path / "three.npy", x[:3, :, :, 0])
    assert cli.main(["--predict", str(tmp_path / "three.npy"), "--checkpoint", str(path),
                     "--no-compile-cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "index\tclass\tname\tprobability" and len(lines) == 4
    assert [line.split("\t")[0] for line in lines[1:]] == ["0", "1", "2"]
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    assert cli.main(["--predict", str(tmp_path / "bad.npy"), "--checkpoint", str(path)]) == 2
    assert "expected 28x28 images" in capsys.readouterr().err
    for argv, message in [(["--evaluate"], "--evaluate uses a trained model: give --checkpoint PATH"),
                          (["--evaluate", "--resume", "--checkpoint", str(path)],
                           "--evaluate trains nothing")]:
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert message in capsys.readouterr().err


def test_progress_line_on_stderr(tmp_path):
    proc = run_script("scripts/train.py", "--train-size", "1000", "--epochs", "1", "--progress",
                      "--no-compile-cache", timeout=120)
    assert proc.returncode == 0, proc.stderr
    # text mode reads each \r as a line end
    updates = [u for u in proc.stderr.splitlines() if u.startswith("epoch 1/1 [")]
    assert len(updates) == 10 and "10/10 steps" in updates[-1] and "samples/s  ETA" in updates[0]


def test_a_short_real_resnet_run_learns_and_its_checkpoint_evaluates(tmp_path, capsys):
    # 1000 Fashion-MNIST images, 4 epochs of a small ResNet with augmentation: chance is 0.1
    ckpt = tmp_path / "resnet.npz"
    argv = ["--model", "resnet", "--widths", "8", "16", "--blocks", "1", "1", "--augment", "crop,flip",
            "--train-size", "1000", "--epochs", "4", "--batch-size", "50", "--optimizer", "adam",
            "--lr", "0.01", "--schedule", "constant", "--weight-decay", "0", "--no-eval-train",
            "--no-compile-cache", "--checkpoint", str(ckpt),
            "--json", str(tmp_path / "r.json")]
    assert cli.main(argv) == 0
    # strict JSON: the training set was not evaluated, and that is null, not NaN
    text = (tmp_path / "r.json").read_text()
    report = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    # 0.51, then 0.50 once dW was summed in another order (float32 rounding; 0.43-0.48 outside
    # pytest): a floor of 3.5x chance, and the training loss down by a third from epoch 1's 2.16
    assert report["final"]["test_acc"] >= 0.35, report["history"]
    assert report["history"]["loss"][-1] < 0.67 * report["history"]["loss"][0], report["history"]
    assert report["final"]["train_acc"] is None and report["history"]["train_acc"] == [None] * 4
    assert report["config"]["widths"] == [8, 16] and report["config"]["augment"] == "crop:2,flip"
    # the recipe's 400 warmup steps, as the user asked for them; this short run warms up a tenth of its
    # 80 steps. A constant rate does not depend on the run's length: a resumed run may train longer,
    # and it continues the warmup the checkpoint's run used
    config = report["config"]
    assert config["warmup"] == 400 and config["warmup_used"] == 8 and "schedule_steps" not in config
    capsys.readouterr()
    assert cli.main(["--evaluate", "--checkpoint", str(ckpt), "--no-compile-cache"]) == 0
    out = capsys.readouterr().out
    assert "model resnet" in out and f"{report['final']['test_acc']:.4f}" in out
    assert cli.main([*argv[:13], "5", *argv[14:], "--resume"]) == 0
    assert checkpoint.read_config(ckpt)["config"]["warmup_used"] == 8


def test_model_defaults_fill_only_the_options_not_given():
    p = cli.build_parser()
    a = p.parse_args(["--model", "resnet"])
    cli.check_args(p, a)
    assert (a.optimizer, a.lr, a.weight_decay, a.schedule, a.warmup, a.batch_size, a.epochs, a.iters,
            a.no_eval_train) == ("nesterov", 0.1, 5e-4, "cosine", 400, 128, 18, None, True)
    a = p.parse_args(["--model", "resnet", "--optimizer", "adam", "--eval-train", "--iters", "50"])
    cli.check_args(p, a)  # the model's lr goes with its optimizer: adam keeps adam's default
    assert (a.optimizer, a.lr, a.no_eval_train, a.epochs, a.iters) == ("adam", None, False, None, 50)
    a = p.parse_args(["--model", "lstm"])
    cli.check_args(p, a)
    assert (a.optimizer, a.lr, a.schedule, a.clip_norm, a.epochs) == ("adam", 2e-3, "cosine", 5.0, 10)
    a = p.parse_args([])  # the book's run
    cli.check_args(p, a)
    got = (a.optimizer, a.lr, a.weight_decay, a.schedule, a.batch_size, a.iters, a.epochs, a.no_eval_train)
    assert got == ("sgd", None, 0.0, "constant", 100, 10000, None, False)


@pytest.mark.parametrize("model", ["lstm", "gru"])  # rnn: the same path (its rules: the gradient list)
def test_a_short_recurrent_run_reads_rows_and_learns(model, tmp_path, capsys):
    # 2000 images as 28 rows of 28 pixels, 3 epochs of 40 steps: chance is 0.1
    ckpt = tmp_path / f"{model}.npz"
    argv = ["--model", model, "--hidden", "32", "--train-size", "2000", "--epochs", "3", "--batch-size", "50",
            "--no-eval-train", "--no-compile-cache",
            "--checkpoint", str(ckpt), "--json", str(tmp_path / "r.json"), "--quiet"]
    assert cli.main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["final"]["test_acc"] >= 0.45, report["history"]
    assert report["config"]["optimizer"] == "adam" and report["config"]["hidden"] == [32]
    capsys.readouterr()
    assert cli.main(["--evaluate", "--checkpoint", str(ckpt), "--no-compile-cache"]) == 0
    assert f"{report['final']['test_acc']:.4f}" in capsys.readouterr().out
