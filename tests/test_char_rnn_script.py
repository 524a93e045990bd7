"""scripts/char_rnn.py: a short real run on a small text, sampling, checkpoint/resume, and errors."""

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from script_runner import ROOT, run_script

from fnet import language_model as lm
from fnet import models

# a text with structure a small LSTM learns in a few epochs: words in a repeating grammar
WORDS = ["the cat", "a dog", "my bird", "one fish"]
VERBS = ["sees", "likes", "follows"]
TEXT = "".join(f"{WORDS[i % 4]} {VERBS[i % 3]} {WORDS[(i * 7 + 1) % 4]}.\n" for i in range(600))


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_a_short_run_beats_the_unigram_baseline_and_samples_deterministically(text_file, tmp_path):
    ckpt, report = tmp_path / "lm.npz", tmp_path / "lm.json"
    common = ["--hidden", "32", "--embedding", "16", "--window", "20", "--batch-size", "8"]
    r = run_script("scripts/char_rnn.py", "--text", str(text_file), *common, "--epochs", "3", "--checkpoint",
                   str(ckpt), "--sample", "60", "--prompt", "the ", "--json", str(report))
    assert r.returncode == 0, r.stderr
    out = json.loads(report.read_text())
    val, base = out["history"]["val_perplexity"], out["unigram_perplexity"]
    assert len(val) == 3 and val[-1] < val[0] and val[-1] < base / 2, (val, base)
    assert "validation" in r.stdout and "unigram" in r.stdout and "--- sample" in r.stdout
    assert len(out["sample"]) == 60
    # the same seed gives the same text, from the saved model
    again = run_script("scripts/char_rnn.py", "--no-train", "--checkpoint", str(ckpt), "--sample", "60",
                       "--prompt", "the ", "--json", str(tmp_path / "again.json"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "again.json").read_text())["sample"] == out["sample"]
    # resume: continues at epoch 4, and refuses other run options
    more = run_script("scripts/char_rnn.py", "--text", str(text_file), *common, "--epochs", "4", "--resume",
                      "--checkpoint", str(ckpt))
    assert more.returncode == 0, more.stderr
    assert "epoch 4/4" in more.stdout and "epoch 3/4" not in more.stdout
    other = run_script("scripts/char_rnn.py", "--text", str(text_file), *common[:-1], "16", "--epochs", "5",
                       "--resume", "--checkpoint", str(ckpt))
    assert other.returncode != 0 and "batch_size" in other.stderr


def _char_rnn():
    """scripts/char_rnn.py as a module, to call its main in this process (no JAX import per case)."""
    spec = importlib.util.spec_from_file_location("char_rnn", ROOT / "scripts" / "char_rnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args,message", [
    ([], "--text FILE is required"),
    (["--no-train", "--sample", "5"], "--no-train samples from a trained model"),
    (["--text", "{text}", "--window", "0"], "--window must be at least 1"),
    (["--text", "{bad}"], "is not UTF-8 text"),
    (["--text", "{short}"], "make no window of 64 steps for a batch of 32"),
    (["--text", "{text}", "--sample", "5", "--prompt", "§", "--epochs", "1", "--hidden", "4"],
     "--prompt: characters not in the model's vocabulary"),
])
def test_errors_name_the_option(args, message, text_file, tmp_path, capsys):
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "short.txt").write_text("too short\n")
    paths = {"text": text_file, "bad": tmp_path / "bad.txt", "short": tmp_path / "short.txt"}
    with pytest.raises(SystemExit) as e:
        _char_rnn().main([a.format(**paths) for a in args])
    said = capsys.readouterr().err + ("" if isinstance(e.value.code, int) else str(e.value.code))
    assert e.value.code != 0 and message in said, said


def test_windows_continue_each_stream():
    ids = np.arange(101)
    x, t = lm.windows(ids, batch=2, window=10)
    assert x.shape == t.shape == (5, 2, 10)
    np.testing.assert_array_equal(x[1, 0], np.arange(10, 20))  # row 0 continues where window 0 ended
    np.testing.assert_array_equal(x[0, 1], np.arange(50, 60))  # row 1 is the second half of the text
    np.testing.assert_array_equal(t, x + 1)
    with pytest.raises(ValueError, match="need at least batch \\* window \\+ 1 = 21"):
        lm.windows(np.arange(20), batch=2, window=10)


def test_sampling_is_deterministic_for_a_key_and_follows_the_temperature():
    vocab = lm.vocabulary(TEXT)
    net = models.rnnlm(len(vocab), 8, 16)
    params, _ = net.init(jax.random.key(0), (1, 1))
    a = lm.sample(net, params, vocab, "the", 40, key=jax.random.key(1))
    assert a == lm.sample(net, params, vocab, "the", 40, key=jax.random.key(1))
    assert a != lm.sample(net, params, vocab, "the", 40, key=jax.random.key(2))
    # near zero temperature is greedy decoding: the key no longer matters
    cold = [lm.sample(net, params, vocab, "the", 40, key=jax.random.key(k), temperature=1e-4) for k in (1, 2)]
    assert cold[0] == cold[1]
    assert lm.unigram_perplexity(np.array([0, 0, 1]), np.array([0, 1]), 2) == pytest.approx(
        float(jnp.exp(-(jnp.log(3 / 5) + jnp.log(2 / 5)) / 2)))
