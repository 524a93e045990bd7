"""scripts/bench.py runs, writes the JSON it documents, and its contenders do the same work.

No timing is asserted: the machines are shared and noisy. What is asserted is that
every contender ran and timed something, and that the contenders compute the same
losses from the same start and the same shuffle (a contender doing different,
cheaper work would be caught here).
"""

import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest
from script_runner import ROOT, run_script

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TIMED = ("fnet", "fnet_dp", "autodiff", "numpy", "numpy1")
TORCH = ("torch", "torch1", "torch_compile")
CORES = len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = run_script("scripts/bench.py", "--quick", "--config", "book", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(path.read_text()), proc.stdout


def test_the_machine_is_described(report):
    data, _ = report
    m = data["machine"]
    for key in ("cpu_model", "cpu_count", "jax_device_kind", "jax_platform", "jax", "jaxlib", "numpy",
                "numpy_blas_threads", "date", "device_memory_stats", "loadavg_start"):
        assert key in m, key
    assert m["jax_platform"] in ("cpu", "gpu", "tpu", "cuda", "rocm")
    assert isinstance(m["cpu_count"], int) and m["cpu_count"] >= 1


def test_every_contender_has_positive_finite_timings(report):
    data, _ = report
    book = data["configs"]["book"]
    # the torch contenders run where torch is installed (the bench extra), else are skipped with a note
    # fnet_dp (data parallel over one CPU device per core) needs two cores
    assert set(TIMED) - ({"fnet_dp"} if CORES < 2 else set()) <= set(book["contenders"])
    assert set(book["contenders"]) | set(book["skipped"]) == {*TIMED, *TORCH}
    for name, why in book["skipped"].items():
        assert (name in TORCH and "torch" in why) or (name == "fnet_dp" and "one CPU device" in why), \
            (name, why)
    assert book["flops_per_step"] == 2 * 100 * (784 * 50 + 50 * 10) + 2 * 100 * 784 * 50 + 4 * 100 * 50 * 10
    for name, c in book["contenders"].items():
        assert len(c["seconds"]) == book["repeats"] >= 2, name
        assert all(math.isfinite(s) and s > 0 for s in c["seconds"]), name
        ms = c["ms_per_step"]
        assert 0 < ms["min"] <= ms["median"] <= ms["max"] < math.inf, name
        assert c["samples_per_s"] > 0 and c["gflops"] > 0 and c["pct_roof"] > 0, name
    for name in ("fnet", "autodiff"):
        assert book["contenders"][name]["compile_s"] > 0
    roof = book["roof"]["gflops"]
    assert 0 < roof["min"] <= roof["median"] <= roof["max"] < math.inf


def test_fnet_and_autodiff_compute_the_same_losses(report):
    data, _ = report
    c = data["configs"]["book"]["contenders"]
    fnet, autodiff = np.array(c["fnet"]["check_losses"]), np.array(c["autodiff"]["check_losses"])
    assert len(fnet) == data["configs"]["book"]["steps"]
    assert np.isfinite(fnet).all() and fnet[-1] < fnet[0]  # it trains
    np.testing.assert_allclose(autodiff, fnet, rtol=1e-5, atol=1e-5)
    assert c["autodiff"]["final_loss"] == pytest.approx(c["fnet"]["final_loss"], rel=1e-5)


def test_fnet_data_parallel_over_the_cores_computes_fnets_losses(report):
    # fnet_dp: the same epoch with every minibatch split over one CPU device per core and the
    # gradients averaged; without batch norm the same losses up to the rounding of the average
    if CORES < 2:
        pytest.skip("fnet_dp needs two usable cores")
    data, _ = report
    c = data["configs"]["book"]["contenders"]
    assert c["fnet_dp"]["devices"] == CORES and c["fnet_dp"]["per_device_batch_statistics"] is False
    np.testing.assert_allclose(c["fnet_dp"]["check_losses"][:5], c["fnet"]["check_losses"][:5], atol=1e-5)
    np.testing.assert_allclose(c["fnet_dp"]["check_losses"], c["fnet"]["check_losses"], atol=1e-3)
    check = next(k for k in data["checks"] if k["check"] == "book: fnet_dp computes fnet's losses")
    assert check["status"] == "PASS", check


def test_the_torch_check_takes_the_faster_of_fnet_and_fnet_dp():
    _bench_module()
    from benchmarks.report import checks

    def config(torch_over_fnet, torch_over_dp, stateful):
        entry = lambda r, **extra: {"ratio_vs_fnet": {"median": r}, **extra}  # noqa: E731
        return {"contenders": {
            "fnet": entry(1.0),
            "fnet_dp": entry(torch_over_fnet / torch_over_dp, devices=2, per_device_batch_statistics=stateful,
                             max_abs_loss_diff_vs_fnet_first_steps=3e-3, max_abs_loss_diff_vs_fnet=5e-2),
            "torch": entry(torch_over_fnet, ratio_vs_fnet_dp={"median": torch_over_dp}, torch="2.13")}}

    out = {c["check"]: c for c in checks({"resnet": config(0.5, 1.1, True), "lstm": config(0.8, 0.9, False)})}
    resnet, lstm = out["resnet: fnet not behind torch eager"], out["lstm: fnet not behind torch eager"]
    assert resnet["status"] == "PASS" and "torch time / fnet_dp time = 1.10" in resnet["detail"]
    assert "torch time / fnet time = 0.50" in resnet["detail"]
    assert "batch statistics per device" in resnet["detail"]
    assert lstm["status"] == "FAIL" and "batch statistics" not in lstm["detail"]
    # with batch norm the data-parallel losses are not fnet's: no PASS or FAIL, the reason instead
    bn = out["resnet: fnet_dp computes fnet's losses"]
    assert bn["status"] == "n/a" and "each device's share" in bn["detail"]
    assert out["lstm: fnet_dp computes fnet's losses"]["status"] == "FAIL"  # 3e-3 > 1e-5


def test_torch_computes_nearly_the_same_losses(report):
    pytest.importorskip("torch")
    data, _ = report
    book = data["configs"]["book"]["contenders"]
    for name in ("torch", "torch1"):
        assert book[name]["max_abs_loss_diff_vs_fnet"] < 1e-4, name
        assert book[name]["threads"] == (1 if name == "torch1" else os.cpu_count())


def test_numpy_computes_nearly_the_same_losses(report):
    # Same start, same shuffle (the NumPy contender is handed fnet's permutation for the check run),
    # different summation order: equal to rounding over the first steps, close over the epoch.
    data, _ = report
    c = data["configs"]["book"]["contenders"]
    for name in ("numpy", "numpy1"):
        np.testing.assert_allclose(c[name]["check_losses"][:5], c["fnet"]["check_losses"][:5], atol=1e-5)
        np.testing.assert_allclose(c[name]["check_losses"], c["fnet"]["check_losses"], atol=1e-3)
        assert c[name]["max_abs_loss_diff_vs_fnet_first_steps"] <= 1e-5


def test_the_first_layers_dx_is_not_computed(report):
    # The FLOP counting rule assumes it; the HLO of the compiled epoch shows it.
    data, _ = report
    book = data["configs"]["book"]
    assert book["hlo_dots_expected"] == 5
    ops = book["contenders"]["fnet"]["hlo_ops"]
    matmuls = sum(ops.get(k, 0) for k in ("dot", "convolution", "custom-call:matmul"))
    assert matmuls == book["hlo_dots_expected"]


def test_the_table_and_the_target_checks_are_printed(report):
    data, out = report
    assert "ms/step" in out and "FLOP counting rule" in out
    for name in TIMED:
        assert any(line.split()[:2] == ["book", name] for line in out.splitlines()), name
    names = {c["check"] for c in data["checks"]}
    assert "book: fnet/autodiff time <= 1.00" in names
    assert "book: fnet >= 1.5x faster than NumPy" in names
    assert all(c["status"] in ("PASS", "FAIL", "n/a") for c in data["checks"])
    assert all(f"{c['status']:4} {c['check']}" in out for c in data["checks"])


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("fnet_bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # puts scripts/ on sys.path, where its parts (benchmarks/) are
    import benchmarks.hlo

    return benchmarks.hlo


def _bench_module_main():
    _bench_module()
    return sys.modules["fnet_bench_script"]


def test_profile_adds_up_each_op_per_step():
    import jax
    import jax.numpy as jnp

    bench = _bench_module()
    steps = 20
    X, W = jnp.ones((steps, 64, 128), jnp.float32), jnp.ones((128, 32), jnp.float32)
    f = jax.jit(lambda X, W: jax.lax.scan(lambda a, x: (a + jnp.tanh(x @ W).sum(), None), 0.0, X)[0])
    options = {"xla_cpu_enable_xprof_traceme": True} if jax.default_backend() == "cpu" else {}
    compiled = f.lower(X, W).compile(options)
    prof = bench.profile_ops(lambda: compiled(X, W), compiled.as_text(), steps)
    assert "error" not in prof, prof
    assert prof["ops_us_per_step"] > 0 and prof["n_ops"] >= len(prof["top"]) >= 1
    # the matmul (a dot, or a library fusion holding it) runs once per step and is described from the HLO
    matmul = [o for o in prof["top"] if o["hlo"].startswith("f32[64,32] ")]
    assert matmul and matmul[0]["calls_per_step"] == 1, prof["top"]
    assert all(not o["op"].startswith(("while", "end: ", "ThunkExecutor")) for o in prof["top"])


def test_the_lstm_config_counts_every_step_and_reports_tokens(tmp_path):
    path = tmp_path / "lstm.json"
    proc = run_script("scripts/bench.py", "--quick", "--config", "lstm", "--contenders", "fnet,autodiff",
                      "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(path.read_text())["configs"]["lstm"]
    # per window of 100 steps and 64 rows: x Wx once, h Wh once per step, the affine per position;
    # three times each (forward, dW, dx: the embedding needs the first matmul's dx too)
    B, T, E, H, V = 64, 100, 64, 256, 100
    assert res["flops_per_step"] == 3 * (2 * B * T * E * 4 * H + T * 2 * B * H * 4 * H + 2 * B * T * H * V)
    fnet, autodiff = res["contenders"]["fnet"], res["contenders"]["autodiff"]
    assert fnet["tokens_per_s"] == pytest.approx(fnet["samples_per_s"] * T)
    assert fnet["check_losses"] == pytest.approx(autodiff["check_losses"], abs=1e-5)
    assert "tokens/s" in proc.stdout


def test_cold_start_runs_the_books_script_and_checks_the_targets(tmp_path):
    """The book-script half of ``--cold-start`` on a stand-in checkout (the real one is not
    downloadable here), and the target arithmetic on given times; no train.py run, no timing."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"{FASHION_DIR} is missing: apt-get install dataset-fashion-mnist")
    sys.path.insert(0, str(ROOT / "scripts"))
    from benchmarks import cold_start

    book = tmp_path / "book"
    for folder in ("ch05", "common", "dataset"):
        (book / folder).mkdir(parents=True)
    (book / "dataset" / "__init__.py").write_text("")
    (book / "dataset" / "mnist.py").write_text(
        "import os\ndef init_mnist():\n    d = os.path.dirname(__file__)\n"
        "    assert sorted(f for f in os.listdir(d) if f.endswith('.gz')) == ['t10k-images-idx3-ubyte.gz', "
        "'t10k-labels-idx1-ubyte.gz', 'train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']\n"
        "    open(os.path.join(d, 'mnist.pkl'), 'w').write('built')\n")
    (book / "ch05" / "train_neuralnet.py").write_text(
        "import os\nassert os.environ['OPENBLAS_NUM_THREADS'] == '1'\n"
        "assert open('../dataset/mnist.pkl').read() == 'built'\nprint(0.5, 0.25)\nprint(0.9, 0.875)\n")
    work = cold_start.prepare_book(book, tmp_path / "work")
    run = cold_start.run_book(work)
    assert run["final"] == {"train_acc": 0.9, "test_acc": 0.875} and run["wall_s"] > 0, run
    with pytest.raises(SystemExit, match=r"has no ch05/train_neuralnet\.py"):
        cold_start.prepare_book(tmp_path / "nothing", tmp_path / "work2")

    def fnet_run(wall):
        return {"wall_s": wall, "startup_s": 1.0, "data_s": 0.1, "compile_s": 2.0, "train_s": 5.0,
                "eval_and_other_s": 1.0, "final": {"test_acc": 0.8768}}

    result = {"runs": {"cold": [fnet_run(w) for w in (5.0, 4.0, 9.0)],
                       "warm": [fnet_run(w) for w in (4.0, 3.0, 3.5)],
                       "book": [{"wall_s": w, "final": {"test_acc": 0.87}} for w in (30.0, 24.0, 27.0)]},
              "repeats": 3, "loadavg_start": [0.5, 0.5, 0.5]}
    lines, checks = cold_start.report(result)
    assert lines[1].split()[:3] == ["cold", "5.0", "4.0-"] and "5.4x" in lines[1]  # 27 / 5
    assert "7.7x" in lines[2]  # 27 / 3.5
    assert [c["status"] for c in checks] == ["FAIL", "FAIL"]
    result["runs"]["book"] = [{"wall_s": 40.0, "final": {"test_acc": 0.87}}]
    assert [c["status"] for c in cold_start.report(result)[1]] == ["PASS", "PASS"]  # 8x, 11.4x
    del result["runs"]["book"]
    assert [c["status"] for c in cold_start.report(result)[1]] == ["SKIP", "SKIP"]


BOOK2_ADDITION = """import os
assert os.environ["MPLBACKEND"] == "Agg"
Seq2seq, PeekySeq2seq = (lambda *a: "plain"), (lambda *a: "peeky")
vocab_size = wordvec_size = hidden_size = 1
is_reverse = False  # True
model = Seq2seq(vocab_size, wordvec_size, hidden_size)
# model = PeekySeq2seq(vocab_size, wordvec_size, hidden_size)
assert is_reverse and model == "peeky" and open("../dataset/addition.txt").read() == "1+1_2"
print("| epoch 1 |  iter 1 / 351 | time 0[s] | loss 1.95")
print("val acc %.3f%%" % 10.0)
print("val acc %.3f%%" % (90.0 + int(os.environ["OPENBLAS_NUM_THREADS"])))
"""


def test_seq2seq_book_runs_the_books_scripts_as_the_issue_configures_them_and_checks_the_targets(tmp_path):
    """``--seq2seq-book`` on a stand-in checkout of the second book (the real one is not
    downloadable here): the scripts are copied and edited to peeky + reversed and 3 epochs (the
    stand-ins fail unless so), their ``val acc`` lines are read, a changed script is refused, and
    the targets are computed from given times; no seq2seq.py run, no timing."""
    _bench_module()
    from benchmarks import book_seq2seq

    book = tmp_path / "book"
    for folder in ("ch07", "ch08", "common", "dataset"):
        (book / folder).mkdir(parents=True)
    (book / "dataset" / "addition.txt").write_text("1+1_2")
    (book / "ch07" / "train_seq2seq.py").write_text(BOOK2_ADDITION)
    (book / "ch08" / "train.py").write_text("max_epoch = 10\nassert max_epoch == 3\n"
                                            "for e in range(max_epoch):\n"
                                            "    print('val acc %.3f%%' % (99 + e / 2))\n")
    work = book_seq2seq.prepare_book(book, tmp_path / "work")
    assert (book / "ch08" / "train.py").read_text().startswith("max_epoch = 10\n")  # the checkout untouched
    for threads in (1, 2):
        run = book_seq2seq.run_book(work, "addition", threads)
        assert run["test_acc"] == pytest.approx([0.1, 0.9 + threads / 100]) and run["wall_s"] > 0, run
    assert book_seq2seq.run_book(work, "date", 2)["test_acc"] == pytest.approx([0.99, 0.995, 1.0])
    (work / "ch08" / "train.py").write_text("raise SystemExit('no data')\n")
    assert "no data" in book_seq2seq.run_book(work, "date", 1)["error"]
    (book / "ch07" / "train_seq2seq.py").write_text(BOOK2_ADDITION + "raise SystemExit('no data')\n")
    logged = []
    with pytest.raises(SystemExit, match=r"the addition run book_1t failed after \d+s:\nno data"):
        book_seq2seq.seq2seq_vs_book(book, ["addition"], 2, logged.append)  # at once, not after every run
    assert logged == []
    (book / "ch08" / "train.py").write_text("max_epoch = 20\n")
    with pytest.raises(SystemExit, match=r"ch08/train\.py has no line 'max_epoch = 10'"):
        book_seq2seq.prepare_book(book, tmp_path / "work2")
    (book / "ch07" / "train_seq2seq.py").unlink()
    with pytest.raises(SystemExit, match=r"has no ch07/train_seq2seq\.py: pass a checkout"):
        book_seq2seq.prepare_book(book, tmp_path / "work3")

    def runs(book_1t, book_2t, fnet, fnet_warm, fnet_dp, acc):
        made = {"book_1t": [book_1t], "book_2t": [book_2t], "fnet": [fnet], "fnet_warm": [fnet_warm],
                "fnet_dp": [fnet_dp]}
        return {"runs": {k: [{"wall_s": w, "test_acc": [0.5, acc]} for w in ws] for k, ws in made.items()}}

    result = {"tasks": {"addition": runs(210.0, 180.0, 77.0, 59.0, 58.0, 0.9874),
                        "date": runs(240.0, 232.0, 71.0, 68.0, 60.0, 0.9988)},
              "repeats": 1, "loadavg_start": [0.5, 0.5, 0.5]}
    lines, checks = book_seq2seq.report(result)
    assert lines[3].split()[:3] == ["addition", "fnet", "77.0"] and "2.34x" in lines[3]  # 180 / 77
    assert "0.86x" in lines[1]  # the book's one-thread run beside its faster two-thread run
    status = {c["check"]: c["status"] for c in checks}
    assert status == {
        "seq2seq addition: fnet at least 3x faster than the book's code": "FAIL",
        "seq2seq addition: fnet held out >= 98% after the last epoch": "PASS",
        "seq2seq addition: fnet_warm at least 3x faster than the book's code": "PASS",  # 180 / 59
        "seq2seq addition: fnet_warm held out >= 98% after the last epoch": "PASS",
        "seq2seq addition: fnet_dp at least 3x faster than the book's code": "PASS",  # 180 / 58
        "seq2seq addition: fnet_dp held out >= 98% after the last epoch": "PASS",
        "seq2seq date: fnet at least 3x faster than the book's code": "PASS",  # 232 / 71
        "seq2seq date: fnet held out >= 99.9% after the last epoch": "FAIL",  # 99.88%
        "seq2seq date: fnet_warm at least 3x faster than the book's code": "PASS",
        "seq2seq date: fnet_warm held out >= 99.9% after the last epoch": "FAIL",
        "seq2seq date: fnet_dp at least 3x faster than the book's code": "PASS",
        "seq2seq date: fnet_dp held out >= 99.9% after the last epoch": "FAIL"}


def test_seq2seq_book_reruns_fnet_on_the_compilation_cache_its_first_run_left(tmp_path, monkeypatch):
    """``fnet`` and ``fnet_dp`` each start from an empty ``--compile-cache`` folder of their own, and
    ``fnet_warm`` reruns on the one ``fnet`` left in the same repeat; no process is started."""
    _bench_module()
    from benchmarks import book_seq2seq

    calls = []
    monkeypatch.setattr(book_seq2seq, "prepare_book", lambda book_dir, work: work)
    monkeypatch.setattr(book_seq2seq, "run_book", lambda *args: {"wall_s": 1.0, "test_acc": [1.0]})

    def run_fnet(work, task, devices, compile_cache):
        calls.append((devices, compile_cache, compile_cache.exists()))
        compile_cache.mkdir(parents=True, exist_ok=True)  # as seq2seq.py leaves it
        return {"wall_s": 1.0, "test_acc": [1.0]}

    monkeypatch.setattr(book_seq2seq, "run_fnet", run_fnet)
    book_seq2seq.seq2seq_vs_book(tmp_path, ["addition"], 2, lambda line: None)
    assert [(d, existed) for d, _, existed in calls] == [(1, False), (1, True), (2, False)] * 2
    caches = [c for _, c, _ in calls]
    assert caches[0] == caches[1] and len({caches[0], caches[2], caches[3], caches[5]}) == 4


def test_seq2seq_book_options_are_checked_before_anything_runs(tmp_path, capsys):
    bench = _bench_module_main()
    for argv, said in ((["--seq2seq-tasks", "addition,sums"], "--seq2seq-tasks: 'addition,sums'; choose"),
                       (["--seq2seq-repeats", "0"], "--seq2seq-repeats must be at least 1, got 0"),
                       (["--config", "book"], f"--seq2seq-book {tmp_path} has no ch07/train_seq2seq.py")):
        with pytest.raises(SystemExit) as e:
            bench.main(["--seq2seq-book", str(tmp_path), *argv])
        assert e.value.code == 2 and said in capsys.readouterr().err


def test_the_gpt_config_trains_with_adamw_beside_nanogpt_in_torch(tmp_path):
    path = tmp_path / "gpt.json"
    torch_there = importlib.util.find_spec("torch") is not None
    contenders = "fnet,autodiff" + (",torch" if torch_there else "")
    proc = run_script("scripts/bench.py", "--quick", "--config", "gpt", "--contenders", contenders,
                      "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(path.read_text())["configs"]["gpt"]
    fnet, autodiff = res["contenders"]["fnet"], res["contenders"]["autodiff"]
    assert fnet["tokens_per_s"] == pytest.approx(fnet["samples_per_s"] * 64)
    # AdamW, not SGD: the first step's loss is the same, the second already lower
    assert fnet["check_losses"][:5] == pytest.approx(autodiff["check_losses"][:5], abs=1e-4)
    assert fnet["check_losses"][1] < fnet["check_losses"][0]
    # per token: the four blocks' 12 D^2 matmuls and the tied head, forward and backward
    B, T, D, V, L = 12, 64, 128, 100, 4
    dense = 2 * B * T * (L * 12 * D * D + D * V)
    attention = L * 2 * 2 * B * T * T * D  # scores and the weighted sum
    assert res["flops_per_step"] == 3 * (dense + attention)
    if torch_there:  # nanoGPT's model.py from fnet's initial weights computes fnet's losses
        torch_losses = res["contenders"]["torch"]["check_losses"][:5]
        assert torch_losses == pytest.approx(fnet["check_losses"][:5], abs=1e-4)


@pytest.mark.parametrize("config", ["convnet", "resnet", "lstm"])
def test_the_torch_twins_compute_fnets_losses(config, tmp_path):
    # PyTorch versions of fnet's networks (benchmarks/torch_models.py) from the same initial weights:
    # channels-last convolutions and batch norm, nn.LSTM with its gates reordered; a wrong weight
    # layout or a gradient that differs shows up in the losses of the first steps
    pytest.importorskip("torch")
    path = tmp_path / f"{config}.json"
    proc = run_script("scripts/bench.py", "--quick", "--config", config, "--contenders", "fnet,torch",
                      "--steps", "5", "--repeats", "1", "--json", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    res = json.loads(path.read_text())["configs"][config]["contenders"]
    tol = 1e-4 if config == "resnet" else 1e-5  # 14 float32 batch norms
    assert res["torch"]["check_losses"][:5] == pytest.approx(res["fnet"]["check_losses"][:5], abs=tol)
    assert res["torch"]["check_losses"][4] < res["torch"]["check_losses"][0]
