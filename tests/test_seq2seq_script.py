"""scripts/seq2seq.py: short real runs that learn far above chance, resume exactly, draw the attention
map, and errors that name the option before anything is trained."""

import importlib.util
import json

import numpy as np
import pytest
from script_runner import ROOT, json_reports_on_devices, run_script

import fnet
from fnet import losses, optim
from fnet.data.sequence import addition_lines, date_lines


def _script():
    spec = importlib.util.spec_from_file_location("seq2seq_script", ROOT / "scripts" / "seq2seq.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dates(tmp_path):
    path = tmp_path / "date.txt"
    path.write_text("\n".join(date_lines(20000, seed=1)) + "\n")
    return path


@pytest.fixture
def sums(tmp_path):
    path = tmp_path / "addition.txt"
    path.write_text("\n".join(addition_lines(10000, seed=1)) + "\n")
    return path


SMALL = ["--hidden", "64", "--batch-size", "64", "--reverse", "--no-compile-cache"]


def test_attention_learns_the_dates_and_draws_its_map(dates, tmp_path):
    report, picture = tmp_path / "date.json", tmp_path / "attention.png"
    r = run_script("scripts/seq2seq.py", "--data", str(dates), "--model", "attention", *SMALL,
                   "--lr", "0.003", "--epochs", "3", "--json", str(report), "--attention-map", str(picture))
    assert r.returncode == 0, r.stderr
    out = json.loads(report.read_text())
    # chance is nil (all 10 characters right); on this machine 99.8% of the 2,000 held-out dates
    assert out["test_acc"][-1] > 0.9, r.stdout
    assert len(out["test_acc"]) == 3 and out["config"]["net"] == "attention_seq2seq"
    assert picture.stat().st_size > 5000 and "epoch 3/3" in r.stdout


def test_peeky_learns_to_add_and_a_resumed_run_is_the_uninterrupted_run(sums, tmp_path):
    run = ["--data", str(sums), "--model", "peeky", *SMALL, "--lr", "0.005", "--quiet"]
    whole, half, ckpt = tmp_path / "whole.json", tmp_path / "half.json", tmp_path / "run.npz"
    r = run_script("scripts/seq2seq.py", *run, "--epochs", "12", "--json", str(whole))
    assert r.returncode == 0, r.stderr
    r = run_script("scripts/seq2seq.py", *run, "--epochs", "6", "--checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr
    r = run_script("scripts/seq2seq.py", *run, "--epochs", "12", "--checkpoint", str(ckpt), "--resume",
                   "--json", str(half))
    assert r.returncode == 0, r.stderr
    a, b = json.loads(whole.read_text()), json.loads(half.read_text())
    # exact-match answers of up to 4 digits: chance is about 1 in 1000; on this machine 72% after 12 epochs
    assert a["test_acc"][-1] > 0.4, a["test_acc"]
    assert a["loss"] == b["loss"] and a["test_acc"] == b["test_acc"] and len(a["loss"]) == 12
    r = run_script("scripts/seq2seq.py", *run[:-1], "--hidden", "48", "--epochs", "13", "--checkpoint",
                   str(ckpt), "--resume")
    assert r.returncode == 2 and "--hidden (saved 64, now 48)" in r.stderr, r.stderr
    r = run_script("scripts/seq2seq.py", *run, "--epochs", "12", "--checkpoint", str(ckpt), "--resume")
    assert r.returncode == 2 and "has trained 12 epochs already" in r.stderr, r.stderr


def test_two_devices_train_as_one(sums, tmp_path):
    # --devices 2: every minibatch split over two (CPU) devices, the gradients averaged: the same run
    run = ["scripts/seq2seq.py", "--data", str(sums), "--model", "peeky", *SMALL, "--epochs", "2", "--quiet"]
    reports = json_reports_on_devices(run, tmp_path)
    assert reports["2"]["config"]["devices"] == 2
    assert reports["2"]["loss"] == pytest.approx(reports["1"]["loss"], rel=1e-5)
    assert reports["2"]["test_acc"] == pytest.approx(reports["1"]["test_acc"], abs=2e-3)
    r = run_script(*run, "--devices", "2", "--batch-size", "63")
    message = "--devices: the global --batch-size (63) must be divisible by the number of devices (2)"
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_a_rerun_takes_every_program_from_the_compile_cache_and_computes_the_same(sums, tmp_path):
    cache = tmp_path / "xla"
    run = ["scripts/seq2seq.py", "--data", str(sums), "--model", "peeky", "--hidden", "32", "--batch-size",
           "64", "--epochs", "1", "--quiet", "--compile-cache", str(cache)]
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    assert run_script(*run, "--json", str(first)).returncode == 0
    kept = sorted(p.name for p in cache.iterdir())
    # the weights' initialisation, the epoch and the answering: every program the run compiled
    assert len(kept) > 10, kept
    r = run_script(*run, "--json", str(again))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in cache.iterdir()) == kept  # nothing compiled anew
    a, b = json.loads(first.read_text()), json.loads(again.read_text())
    assert a["loss"] == b["loss"] and a["test_acc"] == b["test_acc"]
    r = run_script(*run[:-2], "--no-compile-cache", "--json", str(again))
    assert r.returncode == 0 and json.loads(again.read_text())["loss"] == a["loss"], r.stderr


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: --data"),
    (["--data", "nowhere.txt"], "--data must be addition, date or an existing file"),
    (["--data", "addition", "--attention-map", "{dir}/a.png"], "it needs --model attention, not seq2seq"),
    (["--data", "addition", "--model", "attention", "--attention-map", "{dir}/a.xyz"],
     "--attention-map {dir}/a.xyz: matplotlib cannot write .xyz files; name a .png, .pdf or .svg"),
    (["--data", "addition", "--model", "transformer"], "argument --model: invalid choice"),
    (["--data", "addition", "--hidden", "0"], "argument --hidden: expected a positive integer, got 0"),
    (["--data", "addition", "--lr", "nan"], "argument --lr: expected a positive number"),
    (["--data", "addition", "--json", "{dir}"], "is a directory"),
    (["--data", "addition", "--checkpoint", "{existing}"], "already exists"),
    (["--data", "addition", "--compile-cache", "{existing}"],
     "--compile-cache {existing}/probe: {existing} is a file, not a directory"),
    (["--data", "addition", "--resume"], "--resume needs --checkpoint"),
    (["--data", "{bad}"], "line 2: expected QUESTION_ANSWER"),
    (["--data", "{few}", "--batch-size", "128"], "--batch-size 128 is larger than the 9 training lines"),
    (["--data", "{few}", "--batch-size", "2", "--resume", "--checkpoint", "{fit}"],
     "was not written by seq2seq.py"),
])
def test_errors_name_the_option_before_anything_is_trained(args, message, tmp_path, capsys):
    (tmp_path / "existing.npz").write_bytes(b"x")
    (tmp_path / "bad.txt").write_text("1+1_2\nno answer\n")
    (tmp_path / "few.txt").write_text("\n".join(addition_lines(10)) + "\n")
    fit_ckpt = tmp_path / "fit.npz"
    if "{fit}" in args:
        fnet.train.fit(fnet.two_layer_net(4, 3, 2), losses.softmax_cross_entropy, optim.sgd(0.1),
                       (np.ones((10, 4), np.float32), np.zeros(10, np.int32)), epochs=1, batch_size=5,
                       checkpoint=fit_ckpt, log=None)
    paths = {"dir": tmp_path, "existing": tmp_path / "existing.npz", "bad": tmp_path / "bad.txt",
             "few": tmp_path / "few.txt", "fit": fit_ckpt}
    with pytest.raises(SystemExit) as e:
        _script().main([a.format(**paths) for a in args])
    said = capsys.readouterr().err
    assert e.value.code == 2 and message.format(**paths) in said, said
    assert "Traceback" not in said and said.splitlines()[-1].startswith("seq2seq.py: error: ")
