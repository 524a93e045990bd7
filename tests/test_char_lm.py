"""scripts/char_lm.py and fnet.language_model: short real runs of a GPT and an LSTM on a small text,
the held-out loss, sampling, checkpoint/resume, and errors that name the option before any training."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from script_runner import ROOT, json_reports_on_devices, run_script

import fnet
from fnet import language_model as lm
from fnet import losses, models, optim

# a text with structure a small model learns in a few hundred steps: words in a repeating grammar
WORDS = ["the cat", "a dog", "my bird", "one fish"]
VERBS = ["sees", "likes", "follows"]
TEXT = "".join(f"{WORDS[i % 4]} {VERBS[i % 3]} {WORDS[(i * 7 + 1) % 4]}.\n" for i in range(600))
SMALL = ["--no-compile-cache", "--layers", "2", "--heads", "2", "--dim", "32", "--context", "24",
         "--batch-size", "8", "--lr", "3e-3", "--warmup", "10", "--eval-every", "100"]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_a_short_gpt_run_beats_the_unigram_baseline_samples_and_resumes(text_file, tmp_path):
    ckpt, report = tmp_path / "lm.npz", tmp_path / "lm.json"
    r = run_script("scripts/char_lm.py", "--text", str(text_file), *SMALL, "--iters", "200", "--checkpoint",
                   str(ckpt), "--sample", "60", "--prompt", "the ", "--top-k", "5", "--json", str(report))
    assert r.returncode == 0, r.stderr
    out = json.loads(report.read_text())
    assert out["val_loss"] < out["unigram_loss"] / 2, (out["val_loss"], out["unigram_loss"])
    assert out["val_perplexity"] == pytest.approx(np.exp(out["val_loss"]))
    assert out["config"]["model"] == "gpt" and out["config"]["iters"] == 200 and out["ms_per_iter"] > 0
    assert out["history"]["iter"] == [100, 200] and len(out["sample"]) == 60
    assert "step 200/200" in r.stdout and "val loss" in r.stdout and "ETA" in r.stdout
    # the same seed gives the same text, from the saved model
    again = run_script("scripts/char_lm.py", "--no-train", "--checkpoint", str(ckpt), "--sample", "60",
                       "--prompt", "the ", "--top-k", "5", "--json", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["sample"] == out["sample"]
    # a run killed after step 100 and resumed ends where the whole run did
    half = tmp_path / "half.npz"
    _kill_after_the_first_chunk(["scripts/char_lm.py", "--text", str(text_file), *SMALL, "--iters", "200",
                                 "--checkpoint", str(half)])
    from fnet import checkpoint

    assert checkpoint.read_config(half)["epoch"] == 100
    resumed = run_script("scripts/char_lm.py", "--text", str(text_file), *SMALL, "--iters", "200", "--resume",
                         "--checkpoint", str(half), "--json", str(tmp_path / "resumed.json"))
    assert resumed.returncode == 0, resumed.stderr
    assert "step 200/200" in resumed.stdout and "step 100/200" not in resumed.stdout
    assert json.loads((tmp_path / "resumed.json").read_text())["val_loss"] == out["val_loss"]
    # what the run computes may not change on resume
    other = run_script("scripts/char_lm.py", "--text", str(text_file), *SMALL, "--iters", "300",
                       "--resume", "--checkpoint", str(half))
    assert other.returncode == 2 and "--iters (saved 200, now 300)" in other.stderr


def _kill_after_the_first_chunk(args):
    """Run the script, and kill it (SIGKILL) once it reports its first chunk, saved before it reports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.startswith("step 100/"):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        proc.stdout.close()


def test_an_lstm_trains_the_same_way(text_file, tmp_path):
    report = tmp_path / "lstm.json"
    r = run_script("scripts/char_lm.py", "--text", str(text_file), "--model", "lstm", "--dim", "32",
                   "--context", "24", "--batch-size", "8", "--lr", "1e-2", "--warmup", "10", "--iters", "150",
                   "--no-compile-cache", "--eval-every", "150", "--json", str(report), "--sample", "20")
    assert r.returncode == 0, r.stderr
    out = json.loads(report.read_text())
    assert out["config"]["layers"] == 1 and out["val_loss"] < out["unigram_loss"] * 0.7


def test_two_devices_take_the_same_steps(text_file, tmp_path):
    # --devices 2: every step's windows split over two (CPU) devices, the gradients averaged
    run = ["scripts/char_lm.py", "--text", str(text_file), "--model", "lstm", "--dim", "32", "--context",
           "24", "--batch-size", "8", "--lr", "1e-2", "--warmup", "10", "--iters", "60", "--eval-every", "30",
           "--quiet", "--no-compile-cache"]
    reports = json_reports_on_devices(run, tmp_path)
    assert reports["2"]["config"]["devices"] == 2
    for k in ("loss", "val_loss"):
        assert reports["2"]["history"][k] == pytest.approx(reports["1"]["history"][k], rel=1e-4), k
    r = run_script(*run, "--devices", "2", "--batch-size", "7")
    message = "--devices: the global --batch-size (7) must be divisible by the number of devices (2)"
    assert r.returncode == 2 and message in r.stderr, r.stderr


def _script():
    """scripts/char_lm.py as a module, to call its main in this process (no JAX start per case)."""
    spec = importlib.util.spec_from_file_location("char_lm", ROOT / "scripts" / "char_lm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args,message", [
    ([], "--text FILE is required"),
    (["--no-train", "--sample", "5"], "--no-train samples from a trained model"),
    (["--text", "{text}", "--context", "0"], "argument --context: expected a positive integer, got 0"),
    (["--text", "{text}", "--heads", "3"], "--dim 128 must be divisible by --heads 3"),
    (["--text", "{text}", "--model", "lstm", "--heads", "2"], "--heads applies to --model gpt"),
    (["--text", "{text}", "--warmup", "2000"], "--warmup must be in [0, --iters) = [0, 2000), got 2000; "),
    (["--text", "{text}", "--iters", "50"], "= [0, 50), got 100 (the default); give a short run a shorter"),
    (["--text", "{bad}"], "is not UTF-8 text"),
    (["--text", "{short}"], "is shorter than a window of --context 64"),
    (["--text", "{text}", "--sample", "5", "--prompt", "§"],
     "--prompt: characters not in the model's vocabulary"),
    (["--text", "{text}", "--sample", "5", "--prompt", ""], "--prompt must hold at least one character"),
    (["--text", "{text}", "--sample", "5", "--top-k", "500"], "--top-k 500: the vocabulary has"),
    (["--text", "{text}", "--json", "{dir}"], "--json {dir} is a directory"),
    (["--text", "{text}", "--compile-cache", "{existing}"],
     "--compile-cache {existing}/probe: {existing} is a file, not a directory"),
    (["--text", "{text}", "--checkpoint", "{existing}"], "already exists"),
    (["--text", "{text}", "--resume", "--checkpoint", "{truncated}"],
     "--checkpoint: {truncated}: not a readable"),
    (["--text", "{text}", "--resume", "--checkpoint", "{fit}"], "was not written by char_lm.py"),
    (["--text", "{text}", "--lr", "inf"], "argument --lr: expected a positive number"),
])
def test_errors_name_the_option_before_anything_is_trained(args, message, text_file, tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "short.txt").write_text("too short\n")
    (tmp_path / "existing.npz").write_bytes(b"x")
    (tmp_path / "truncated.npz").write_bytes(b"PK\x03\x04 cut")
    fit_ckpt = tmp_path / "fit.npz"
    fnet.train.fit(fnet.two_layer_net(4, 3, 2), losses.softmax_cross_entropy, optim.sgd(0.1),
                   (np.ones((10, 4), np.float32), np.zeros(10, np.int32)), epochs=1, batch_size=5,
                   checkpoint=fit_ckpt, log=None)
    paths = {"text": text_file, "bad": tmp_path / "bad.txt", "short": tmp_path / "short.txt", "dir": tmp_path,
             "existing": tmp_path / "existing.npz", "truncated": tmp_path / "truncated.npz", "fit": fit_ckpt}
    with pytest.raises(SystemExit) as e:
        _script().main([a.format(**paths) for a in args])
    said = capsys.readouterr().err
    assert e.value.code == 2 and message.format(**paths) in said, said
    assert "Traceback" not in said and said.splitlines()[-1].startswith("char_lm.py: error: ")  # one line


def test_a_diverging_run_stops_with_one_line_and_keeps_the_checkpoint(text_file, tmp_path):
    ckpt = tmp_path / "lm.npz"
    r = run_script("scripts/char_lm.py", "--text", str(text_file), *SMALL[:-2], "--eval-every", "20",
                   "--iters", "100", "--lr", "1000", "--clip-norm", "1e6", "--checkpoint", str(ckpt),
                   "--quiet")
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert "training diverged" in r.stderr or "training loss became" in r.stderr
    assert "Try a smaller --lr" in r.stderr


# ----------------------------------------------------------------------------- the library's parts


def test_windows_every_position_predicted_and_random_windows_follow_the_key():
    ids = np.arange(101)
    x, t = lm.consecutive_windows(ids, 10)
    assert x.shape == t.shape == (10, 10)
    np.testing.assert_array_equal(x.ravel(), np.arange(100)) and np.testing.assert_array_equal(t, x + 1)
    with pytest.raises(ValueError, match="need at least 11"):
        lm.consecutive_windows(np.arange(10), 10)
    xr, tr = lm.random_windows(jnp.arange(1000), jax.random.key(0), 4, 16)
    assert xr.shape == (4, 16) and np.all(np.diff(np.asarray(xr), axis=1) == 1)
    np.testing.assert_array_equal(tr, xr + 1)
    again, _ = lm.random_windows(jnp.arange(1000), jax.random.key(0), 4, 16)
    np.testing.assert_array_equal(xr, again)


def test_window_steps_run_any_chunk_of_a_run_and_the_loss_is_the_mean_per_position():
    vocab = lm.vocabulary(TEXT)
    ids = jnp.asarray(lm.encode(TEXT, vocab))
    net = models.gpt(len(vocab), 16, layers=1, heads=2, dim=16)
    opt = optim.adamw(1e-2)
    params, _ = net.init(jax.random.key(0), (None, 16))
    steps = jax.jit(lm.make_window_steps(net, losses.softmax_cross_entropy, opt, batch_size=4, context=16,
                                         n_steps=10))
    key = jax.random.key(1)
    whole = steps(params, opt.init(params), ids, key, np.int32(0), np.int32(10))
    p, s, first = steps(params, opt.init(params), ids, key, np.int32(0), np.int32(4))
    p, s, second = steps(p, s, ids, key, np.int32(4), np.int32(6))
    for a, b in zip(jax.tree.leaves(whole[0]), jax.tree.leaves(p), strict=True):
        np.testing.assert_array_equal(a, b)  # a run cut in chunks takes the same steps
    np.testing.assert_array_equal(np.concatenate([first[:4], second[:6]]), whole[2])
    assert np.isnan(first[4:]).all()
    x, t = lm.consecutive_windows(np.asarray(ids[:400]), 16)
    got = float(jax.jit(lm.make_window_loss(net, batch_size=7))(whole[0], x, t))
    y = fnet.predict(net, whole[0], jnp.asarray(x))
    assert got == pytest.approx(float(losses.softmax_cross_entropy.forward(y, t)[0]), rel=1e-5)
    assert lm.unigram_loss(np.array([0, 0, 1]), np.array([0, 1]), 2) == pytest.approx(
        -(np.log(3 / 5) + np.log(2 / 5)) / 2)
