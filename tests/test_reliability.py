"""Hostile inputs, tried systematically: nothing silently wrong, nothing lost.

Bad data (NaN, infinity, labels out of range), every argument of ``fit`` at its edges,
parameters and optimizers that do not fit, checkpoints that are damaged in every way we
could think of, outputs that cannot be written, command-line options at their edges,
and processes killed while a checkpoint is being written. Each must end in one clear
error that names the thing and the fix, before any training where it can be seen then,
with nothing on disk lost. (Damaged IDX data files: tests/test_data.py, which tries every
fault of the format and of the gzip stream.)
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from script_runner import ROOT

import fnet
from fnet import checkpoint, cli, losses, optim, schedules, train
from fnet.checkpoint import CheckpointError

CE = losses.softmax_cross_entropy


@pytest.fixture(scope="module")
def small(fashion_small):
    """600 training and 200 test examples: enough for a real epoch, cheap to compile."""
    (xtr, ttr), (xte, tte) = fashion_small
    return (xtr[:600].copy(), ttr[:600].copy()), (xte[:200].copy(), tte[:200].copy())


def _fit(data, **kw):
    (xtr, ttr), test = data
    kw = {"epochs": 1, "batch_size": 100, "log": None, **kw}
    net = kw.pop("net", None) or fnet.two_layer_net(784, 10, 10)
    opt = kw.pop("optimizer", None) or optim.sgd(0.1)
    return train.fit(net, CE, opt, (xtr, ttr), kw.pop("test", test), **kw)


def _never_log():
    def log(line):
        raise AssertionError(f"training started: {line}")

    return log


# ----------------------------------------------------------------------------- bad data


def test_nan_pixel_is_refused_before_training(small):
    (xtr, ttr), test = small
    xtr = xtr.copy()
    xtr[7, 300] = np.nan
    with pytest.raises(ValueError, match=r"^fit: x_train holds 1 values that are NaN or infinite, the first "
                                         r"nan at index 7\[300\]"):
        _fit(((xtr, ttr), test), log=_never_log())


def test_infinite_test_input_is_refused(small):
    train_set, (xte, tte) = small
    xte = xte.copy()
    xte[3, 5] = np.inf
    with pytest.raises(ValueError, match=r"^fit: x_test holds 1 values .* the first inf at index 3"):
        _fit((train_set, (xte, tte)))


@pytest.mark.parametrize("which,index,value", [("train", 7, -1), ("test", 12, 10), ("train", 0, 255)])
def test_labels_outside_the_classes_are_refused(small, which, index, value):
    sets = {"train": small[0], "test": small[1]}
    x, t = sets[which]
    t = t.copy()
    t[index] = value
    sets[which] = (x, t)
    with pytest.raises(ValueError, match=rf"^fit: t_{which} has 1 labels outside 0..9 \(the network has 10 "
                                         rf"outputs\), the first {value} at index {index}"):
        _fit((sets["train"], sets["test"]))


def test_targets_that_do_not_fit_the_outputs(small):
    (xtr, ttr), test = small
    one_hot_8 = np.eye(8, dtype=np.float32)[ttr % 8]
    with pytest.raises(ValueError, match=r"^fit: t_train has shape \(600, 8\), but the network gives outputs "
                                         r"of shape \(N, 10\)"):
        _fit(((xtr, one_hot_8), test))
    nan_targets = np.eye(10, dtype=np.float32)[ttr]
    nan_targets[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"^fit: t_train holds 1 values that are NaN"):
        _fit(((xtr, nan_targets), test))


def test_empty_sets(small):
    (xtr, ttr), (xte, tte) = small
    with pytest.raises(ValueError, match=r"^fit: the test set is empty .*; pass test_data=None"):
        _fit(((xtr, ttr), (xte[:0], tte[:0])))
    with pytest.raises(ValueError, match=r"^fit: the train set is empty"):
        _fit(((xtr[:0], ttr[:0]), None))
    with pytest.raises(TypeError, match=r"^fit: test_data must be a pair \(x_test, t_test\), got ndarray"):
        _fit(((xtr, ttr), xte))


# ----------------------------------------------------------------------------- fit's arguments


@pytest.mark.parametrize("kwargs,error,message", [
    ({"batch_size": 50.0}, TypeError, r"^fit: batch_size must be an int >= 1, got 50.0"),
    ({"batch_size": 0}, ValueError, r"^fit: batch_size must be a positive int, got 0"),
    ({"epochs": 1.5}, TypeError, r"^fit: epochs must be an int >= 1, got 1.5"),
    ({"epochs": 0}, ValueError, r"^fit: epochs must be a positive int, got 0"),
    ({"epochs": None, "iters": 0}, ValueError, r"^fit: iters must be a positive int"),
    ({"epochs": None}, ValueError, r"^fit: give exactly one of epochs= or iters="),
    ({"eval_batch_size": 0}, ValueError, r"^fit: eval_batch_size must be a positive int, got 0"),
    ({"seed": -1}, ValueError, r"^fit: seed must be an int >= 0, got -1"),
    ({"seed": 10 ** 22}, ValueError, r"^fit: seed must be below 2\*\*63"),
    ({"seed": "0"}, TypeError, r"^fit: seed must be an int"),
    ({"sampling": "random"}, ValueError, r"^fit: sampling must be one of \('shuffle', 'replacement'\)"),
    ({"eval_train": "yes"}, TypeError, r"^fit: eval_train must be True or False"),
    ({"resume": 1}, TypeError, r"^fit: resume must be True or False"),
    ({"log": 5}, TypeError, r"^fit: log must be a function"),
    ({"config": {"when": object()}}, TypeError, r"^fit: config must be JSON-serialisable"),
    ({"config": {"lr": float("nan")}}, TypeError, r"^fit: config must be JSON-serialisable"),
    ({"config": [1]}, TypeError, r"^fit: config must be a dict"),
    ({"divergence": 1.0}, ValueError, r"^fit: divergence is a factor over the starting loss and must be > 1"),
    ({"divergence": "10"}, TypeError, r"^fit: divergence must be a number"),
    ({"mesh": "all"}, ValueError, r"^fit: mesh must be a jax.sharding.Mesh with axes .*, None or 'auto'"),
    ({"xla_options": ["a"]}, TypeError, r"^fit: xla_options must be a dict"),
    ({"resume": True}, ValueError, r"^fit: resume needs checkpoint"),
    ({"checkpoint": 3}, TypeError, r"^fit: checkpoint must be a file path, got 3"),
])
def test_every_argument_is_checked_before_training(small, kwargs, error, message):
    with pytest.raises(error, match=message):
        _fit(small, **{"log": _never_log(), **kwargs})


def test_optimizers_that_are_not_fnet_optimizers(small):
    with pytest.raises(TypeError, match=r"^fit: optimizer must be an fnet.optim optimizer, e.g. "
                                        r"optim.sgd\(0.1\) \(fnet.optim.sgd is its constructor: call it"):
        _fit(small, optimizer=optim.sgd)
    optax_like = types.SimpleNamespace(init=lambda p: (), update=lambda g, s, p=None: (g, s))
    with pytest.raises(TypeError, match=r"looks like an optax GradientTransformation; fnet's optimizers"):
        _fit(small, optimizer=optax_like)
    with pytest.raises(TypeError, match=r"^fit: loss must be an fnet loss"):
        train.fit(fnet.two_layer_net(784, 10, 10), lambda y, t: 0.0, optim.sgd(), small[0], epochs=1)
    with pytest.raises(TypeError, match=r"^fit: net must be an fnet Layer"):
        train.fit(lambda x: x, CE, optim.sgd(), small[0], epochs=1)


def test_params_of_another_architecture_are_refused(small):
    other, _ = fnet.two_layer_net(784, 20, 10).init(jax.random.key(0), (None, 784))
    with pytest.raises(ValueError, match=r"^fit: params at 'Affine1/W' has shape \(784, 20\), but the "
                                         r"parameter has shape \(784, 10\)"):
        _fit(small, params=other, log=_never_log())
    deeper, _ = fnet.multi_layer_net(784, [10, 10], 10).init(jax.random.key(0), (None, 784))
    with pytest.raises(ValueError, match=r"^fit: params do not match the network's parameters \(from "
                                         r"net.init\): "):
        _fit(small, params=deeper)


# ----------------------------------------------------------------------------- divergence


def test_a_finite_divergence_stops_and_keeps_the_last_good_epoch(small, tmp_path):
    # lr 0.1 for the first epoch (6 steps), then 1e6: the loss grows far past the start but
    # (ReLU and a stable softmax) stays finite, which used to end with exit status 0
    lr = schedules.Schedule("jump", lambda step: np.float32(0.1) + np.float32(1e6) * (step >= 6), {})
    path = tmp_path / "run.npz"
    message = (r"^epoch 2: training diverged: the mean training loss .* is over 10 times the starting "
               r"loss .*; the checkpoint .* holds epoch 1")
    with pytest.raises(train.DivergenceError, match=message) as info:
        _fit(small, epochs=4, optimizer=optim.sgd(lr), checkpoint=path)
    assert not isinstance(info.value, train.NonFiniteLossError)
    assert info.value.epoch == 2 and checkpoint.read_config(path)["epoch"] == 1
    # the rule is configurable: turned off, the same run ends without an error
    result = _fit(small, epochs=2, optimizer=optim.sgd(lr), divergence=None)
    assert result.history["loss"][-1] > 10 * result.history["loss"][0]


def test_sgd_with_lr_1e6_stops_in_the_first_epoch(small):
    with pytest.raises(train.DivergenceError, match=r"^epoch 1: training diverged"):
        _fit(small, epochs=3, optimizer=optim.sgd(1e6))


def test_a_parameter_that_becomes_infinite_while_the_loss_stays_finite_stops(small):
    # from step 7 (epoch 2) one ReLU unit's bias is -inf: the unit outputs 0, its gradients are 0,
    # the loss stays finite; the check after each epoch (computed with the evaluation) names it
    from fnet.optim import Optimizer

    base = optim.sgd(0.1)

    def update(grads, state, params):
        new, state = base.update(grads, state, params)
        b = new["Affine1"]["b"]
        poisoned = jnp.where(state["step"] > 6, b.at[0].set(-jnp.inf), b)
        return {**new, "Affine1": {**new["Affine1"], "b": poisoned}}, state

    message = (r"^epoch 2: training diverged: the parameter Affine1/b became NaN or infinite, although the "
               r"loss stayed finite\. Training stopped and the parameters from the end of epoch 1 were kept")
    with pytest.raises(train.DivergenceError, match=message) as info:
        _fit(small, epochs=3, optimizer=Optimizer("poison", base.init, update))
    assert np.isfinite(info.value.history["loss"]).all() and len(info.value.history["loss"]) == 1
    assert np.isfinite(np.asarray(info.value.params["Affine1"]["b"])).all()


def test_first_non_finite_names_the_parameter():
    from fnet._trees import first_non_finite

    params = {"Affine1": {"W": np.ones(3), "b": np.array([0.0, np.nan])}}
    assert first_non_finite(params) == "Affine1/b"
    assert first_non_finite({"W": np.ones(2)}) is None


# ----------------------------------------------------------------------------- checkpoints on disk


def test_an_existing_checkpoint_is_never_overwritten_by_accident(small, tmp_path):
    path = tmp_path / "run.npz"
    _fit(small, checkpoint=path)
    before = path.read_bytes()
    message = (r"^fit: checkpoint .*run.npz already exists \(a run saved after epoch 1\); pass resume to "
               r"continue that run, or overwrite to start over")
    with pytest.raises(ValueError, match=message):
        _fit(small, checkpoint=path, log=_never_log())
    assert path.read_bytes() == before
    _fit(small, checkpoint=path, overwrite=True, seed=5)
    assert path.read_bytes() != before and checkpoint.read_config(path)["config"]["seed"] == 5


def test_unwritable_checkpoint_paths_are_refused_before_training(small, tmp_path):
    with pytest.raises(ValueError, match=r"^fit: checkpoint .* is a directory"):
        _fit(small, checkpoint=tmp_path, log=_never_log())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=r"^fit: checkpoint .*a-file/sub/run.npz: .*a-file is a file, not a "
                                         r"directory"):
        _fit(small, checkpoint=blocker / "sub" / "run.npz", log=_never_log())


def test_the_path_check_never_creates_the_checkpoint_itself(tmp_path, monkeypatch):
    """Two processes of one multi-host run check the same checkpoint path at once: a probe that
    created the path itself was seen by the other as an existing checkpoint (a real failure
    of the two-process test). The probe is a file of its own beside it, gone afterwards."""
    path = tmp_path / "shared.npz"
    probes = []
    real_mkstemp = tempfile.mkstemp

    def watched(*args, **kwargs):
        made = real_mkstemp(*args, **kwargs)
        probes.append((made[1], path.exists()))
        return made

    monkeypatch.setattr(tempfile, "mkstemp", watched)
    assert train.check_checkpoint_path(path, resume=False, overwrite=False) == path
    assert len(probes) == 1 and Path(probes[0][0]).parent == tmp_path and probes[0][1] is False
    assert list(tmp_path.iterdir()) == []


def _saved(tmp_path, **meta_changes):
    """A real checkpoint, then rewritten with ``__meta__`` changed (None removes an entry)."""
    net = fnet.two_layer_net(784, 4, 10)
    params, _ = net.init(jax.random.key(0), (None, 784))
    path = checkpoint.save(tmp_path / "c.npz", checkpoint.Checkpoint(
        params, None, None, jax.random.key(1), 1, {"epoch": np.array([1])}, {}))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["__meta__"]))
    for k, v in meta_changes.items():
        if k == "__meta__":
            arrays["__meta__"] = np.array(v)
        elif k == "key" and v is None:
            del arrays["key"]
        elif v is None:
            del meta[k]
        else:
            meta[k] = v
    if "__meta__" not in meta_changes:
        arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path, params


@pytest.mark.parametrize("changes,message", [
    ({"__meta__": "{not json"}, r"damaged checkpoint: its __meta__ entry is not JSON"),
    ({"key": None}, r"damaged checkpoint: the random key entry 'key' is missing"),
    ({"epoch": None}, r"damaged checkpoint: __meta__ lacks 'epoch'"),
    ({"config": "x"}, r"damaged checkpoint: __meta__ lacks 'config' \(a dict\)"),
    ({"format": "other"}, r"unsupported checkpoint format 'other'"),
    ({"key_impl": "nonsense"}, r"damaged checkpoint: the random key does not load"),
])
def test_damaged_metadata_is_a_checkpoint_error(tmp_path, changes, message):
    path, params = _saved(tmp_path, **changes)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path, params_like=params)


def test_files_that_are_not_checkpoints(tmp_path):
    path, params = _saved(tmp_path)
    good = path.read_bytes()
    cases = {"text.npz": b"epoch,loss\n1,0.5\n", "empty.npz": b"", "half.npz": good[: len(good) // 2]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=r"not a readable fnet checkpoint") as info:
            checkpoint.load(tmp_path / name, params_like=params)
        assert "allow_pickle" not in str(info.value) and name in str(info.value)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, __meta__=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match=r"an entry is not a plain array \(fnet never unpickles\)"):
        checkpoint.load(pickled, params_like=params)
    with pytest.raises(CheckpointError, match=r"is a directory"):
        checkpoint.read_config(tmp_path)


def test_a_checkpoint_of_nan_weights_is_refused(tmp_path):
    net = fnet.two_layer_net(784, 4, 10)
    params, _ = net.init(jax.random.key(0), (None, 784))
    params["Affine2"]["b"] = params["Affine2"]["b"].at[3].set(np.nan)
    path = checkpoint.save(tmp_path / "nan.npz", checkpoint.Checkpoint(
        params, None, None, jax.random.key(1), 1, {}, {}))
    with pytest.raises(CheckpointError, match=r"params/Affine2/b holds NaN or infinite values"):
        checkpoint.load(path, params_like=params)


def test_stale_temporaries_are_removed_on_the_next_save(tmp_path):
    path, params = _saved(tmp_path)
    stale = [tmp_path / f".c.npz.{tag}.tmp" for tag in ("abc123", "zz9")]
    for s in stale:
        s.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.abc.tmp"  # another checkpoint's temporary is left alone
    other.write_bytes(b"x")
    checkpoint.save(path, checkpoint.Checkpoint(params, None, None, jax.random.key(1), 2, {}, {}))
    assert not any(s.exists() for s in stale) and other.exists()
    assert checkpoint.read_config(path)["epoch"] == 2


# ----------------------------------------------------------------------------- killed while writing

WRITER = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp, numpy as np
    from fnet import checkpoint
    path = sys.argv[1]
    params = {"W": jnp.arange(4_000_000, dtype=jnp.float32)}   # 16 MB: a write takes a while
    epoch = 0
    while True:
        epoch += 1
        params = {"W": params["W"] + 1}
        checkpoint.save(path, checkpoint.Checkpoint(params, None, None, jax.random.key(0), epoch, {}, {}))
        print(epoch, flush=True)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "sigint"])
def test_a_process_killed_while_writing_leaves_a_loadable_checkpoint(tmp_path, sig):
    path = tmp_path / "big.npz"
    like = {"W": jax.ShapeDtypeStruct((4_000_000,), np.float32)}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.0, 0.05, 0.13):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                env=env)
        try:
            assert proc.stdout.readline().strip()  # one whole checkpoint is on disk
            time.sleep(delay)
            proc.send_signal(sig)
            proc.wait(timeout=60)
        finally:
            proc.kill()
            proc.stdout.close()
        loaded = checkpoint.load(path, params_like=like)
        # the file holds one whole write: W = arange + epoch, everywhere
        w = np.asarray(loaded.params["W"])
        want = np.arange(4_000_000, dtype=np.float32) + loaded.epoch
        assert w[0] == loaded.epoch and np.array_equal(w, want)
        if sig == signal.SIGINT:  # KeyboardInterrupt: the write cleans up after itself
            assert not list(tmp_path.glob(".big.npz.*.tmp"))
    checkpoint.save(path, loaded)  # the next save removes what kill -9 left behind
    assert not list(tmp_path.glob(".big.npz.*.tmp"))


def test_resume_after_kill_9_is_bit_identical(small, tmp_path):
    """A run killed mid-training (mid-write, perhaps) and resumed ends where an uninterrupted one does."""
    path = tmp_path / "run.npz"
    data = tmp_path / "data.npz"
    (xtr, ttr), (xte, tte) = small
    np.savez(data, xtr=xtr, ttr=ttr, xte=xte, tte=tte)
    script = textwrap.dedent(f"""
        import numpy as np, fnet
        from fnet import losses, optim, train
        d = np.load({str(data)!r})
        train.fit(fnet.two_layer_net(784, 10, 10), losses.softmax_cross_entropy, optim.sgd(0.1),
                  (d["xtr"], d["ttr"]), (d["xte"], d["tte"]), epochs=400, batch_size=100,
                  checkpoint={str(path)!r}, log=lambda line: print(line, flush=True))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().startswith("devices: ")  # fit says where it trains
        for _ in range(3):  # an epoch's line comes before its save: two or three epochs are on disk
            assert proc.stdout.readline().startswith("epoch ")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()
    done = checkpoint.read_config(path)["epoch"]
    assert done >= 2
    resumed = _fit(small, epochs=done + 2, checkpoint=path, resume=True)
    straight = _fit(small, epochs=done + 2)
    for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params), strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- the command line


def _cli_error(argv, capsys):
    """Run fnet-train; return (exit status, stderr). argparse errors exit through SystemExit."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize("argv,message", [
    (["--seed", str(10 ** 22)], f"argument --seed: expected an integer in [0, 2**63), got {10 ** 22}"),
    (["--seed", "-3"], "argument --seed: expected an integer in [0, 2**63), got -3"),
    (["--lr", "inf"], "argument --lr: expected a positive number, got inf"),
    (["--lr", "nan"], "argument --lr: expected a positive number, got nan"),
    (["--weight-decay", "inf"], "argument --weight-decay: expected a number >= 0, got inf"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a number >= 0, got -1.0"),
    (["--batch-size", "1.5"], "argument --batch-size: expected a positive integer, got '1.5'"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--iters", "-5"], "argument --iters: expected a positive integer, got -5"),
    (["--train-size", "0"], "argument --train-size: expected a positive integer, got 0"),
    (["--devices", "0"], "argument --devices: expected a positive integer, got 0"),
    (["--hidden", "0"], "argument --hidden: expected a positive integer, got 0"),
    (["--model", "mlp", "--dropout", "nan"], "--dropout is the probability of dropping a unit, in [0, 1)"),
    (["--model", "mlp", "--dropout", "-0.1"], "--dropout is the probability of dropping a unit, in [0, 1)"),
    (["--weight-init", "-0.5"], "--weight-init must be he, xavier or a positive standard deviation"),
    (["--sampling", "both"], "argument --sampling: invalid choice: 'both'"),
    (["--model", "resnet9"], "argument --model: invalid choice: 'resnet9'"),
    (["--process-id", "0"], "multi-host training needs all of --coordinator"),
    (["--resume", "--overwrite", "--checkpoint", "x.npz"], "--resume"),
])
def test_command_line_options_at_their_edges(argv, message, capsys):
    code, err = _cli_error(argv, capsys)
    assert code == 2 and message in err, err


def test_command_line_outputs_are_checked_before_training(tmp_path, capsys):
    existing = tmp_path / "run.npz"
    existing.write_bytes(b"")  # not even a checkpoint: still never replaced without --overwrite
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv, message in [
        (["--checkpoint", str(existing)], "--checkpoint " + str(existing) + " already exists (not a readable "
                                          "checkpoint); pass --resume to continue that run, or --overwrite"),
        (["--json", str(tmp_path)], f"--json {tmp_path} is a directory"),
        (["--plot", str(blocker / "m.png")],
         f"--plot {blocker / 'm.png'}: {blocker} is a file, not a directory"),
        (["--checkpoint", str(tmp_path)], f"--checkpoint {tmp_path} is a directory"),
    ]:
        code, err = _cli_error([*argv, "--epochs", "1", "--quiet", "--no-compile-cache"], capsys)
        assert code == 2 and message in err, err
    assert existing.read_bytes() == b""


def test_command_line_resume_from_a_damaged_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_text("hello")
    code, err = _cli_error(["--checkpoint", str(bad), "--resume", "--epochs", "1", "--quiet",
                            "--no-compile-cache"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("fnet-train: error: ")]
    assert code == 2 and len(errors) == 1 and errors == err.strip().splitlines()[-1:]  # usage, one line
    assert "--resume: " in errors[0] and "not a readable fnet checkpoint" in errors[0]


def test_command_line_divergence_is_exit_status_1(tmp_path, capsys):
    code, err = _cli_error(["--train-size", "500", "--epochs", "2", "--lr", "1e6", "--quiet",
                            "--no-compile-cache", "--checkpoint", str(tmp_path / "run.npz")], capsys)
    assert code == 1 and err.startswith("fnet-train: epoch 1: training diverged")


def test_command_line_divergence_rule_is_an_option(capsys):
    code, err = _cli_error(["--divergence", "1"], capsys)
    assert code == 2 and "argument --divergence: expected a factor > 1 or off, got 1.0" in err
    assert cli.build_parser().parse_args(["--divergence", "off"]).divergence is None
    assert cli.build_parser().parse_args([]).divergence == train.DEFAULT_DIVERGENCE


def test_ctrl_c_during_training_is_one_line_and_keeps_the_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    proc = subprocess.Popen([sys.executable, "scripts/train.py", "--train-size", "600", "--epochs", "400",
                             "--no-eval-train", "--no-compile-cache", "--checkpoint", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        while not proc.stdout.readline().startswith("epoch   2/"):
            pass
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().startswith("fnet-train: interrupted; ") and "--resume" in err
    assert len(err.strip().splitlines()) == 1, err
    assert checkpoint.read_config(path)["epoch"] >= 1


def test_every_model_option_is_honoured(tmp_path):
    # --weight-init reached the two-layer net and the MLP already; the convnet ignored it
    net, shape = cli.build_model("convnet", (28, 28, 1), 10, weight_init="0.01")
    params, _ = net.init(jax.random.key(0), shape)
    assert abs(float(np.std(np.asarray(params["Conv1"]["W"]))) - 0.01) < 0.002
    he, _ = cli.build_model("convnet", (28, 28, 1), 10)
    assert float(np.std(np.asarray(he.init(jax.random.key(0), shape)[0]["Conv1"]["W"]))) > 0.2
    # the output size comes from the dataset, the image shape from the data
    net, shape = cli.build_model("convnet", (14, 14, 1), 7)
    assert shape == (None, 14, 14, 1) and fnet.output_shape(net, shape) == (None, 7)


@pytest.mark.parametrize("argv,message", [
    (["--coordinator", "host0", "--num-processes", "2", "--process-id", "0"], "argument --coordinator: "
     "expected HOST:PORT"),
    (["--train-size", "100000", "--quiet"], "--train-size 100000 is larger than the fashion-mnist training "
     "set (60000 examples)"),
])
def test_command_line_values_that_cannot_work(argv, message, capsys, tmp_path):
    code, err = _cli_error([*argv, "--no-compile-cache"], capsys)
    assert code == 2 and message in err, err


def test_more_fit_inputs_that_cannot_work(small):
    (xtr, ttr), (xte, tte) = small
    with pytest.raises(ValueError, match=r"^fit: x_test has examples of shape \(392,\), but x_train has "
                                         r"\(784,\)"):
        _fit(((xtr, ttr), (xte[:, :392], tte)))
    net = fnet.two_layer_net(784, 10, 10)
    params, _ = net.init(jax.random.key(0), (None, 784))
    params["Affine2"]["W"] = params["Affine2"]["W"].at[0, 0].set(np.inf)
    with pytest.raises(ValueError, match=r"^fit: params at 'Affine2/W' hold NaN or infinite values"):
        _fit(small, net=net, params=params)
    with pytest.raises(ValueError, match=r"^fit: mesh must be a jax.sharding.Mesh with axes"):
        _fit(small, mesh=4)
