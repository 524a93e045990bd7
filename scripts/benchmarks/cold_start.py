"""``bench.py --cold-start``: the whole ``scripts/train.py`` from a new process, beside the book's script.

Three runs, interleaved, ``--cold-repeats`` times, each in a fresh process:

- ``cold``: ``scripts/train.py --quiet --json`` (the book's defaults) with an empty JAX
  compilation cache (a new folder each time);
- ``warm``: the same command again on the cache the cold run left;
- ``book`` (with ``--book-dir``): the book's own ``ch05/train_neuralnet.py`` from a checkout of
  its repository (github.com/oreilly-japan/deep-learning-from-scratch), run with one OpenBLAS
  thread (its small matmuls run many times slower with two on a shared machine) on the same
  Fashion-MNIST files. Its ``ch05``, ``common`` and ``dataset`` folders are copied into a
  temporary folder with the four files, and its ``mnist.pkl`` is built once, untimed: the book
  at its best, as fnet's runs find their decoded data in fnet's cache.

Each fnet run is split as its ``--json`` timings tell (startup = wall - the script's own clock:
the interpreter and the imports). The targets (issue 17): ``cold`` at most 1/6 of the book's
time, ``warm`` at most 1/8.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median

from benchmarks.config import ROOT
from benchmarks.machine import loadavg

TARGETS = {"cold": 6.0, "warm": 8.0}
BOOK_SCRIPT = Path("ch05") / "train_neuralnet.py"


def run_train(compile_cache: Path | None, xla_options=()) -> dict:
    """One ``scripts/train.py --quiet --json`` process with the book's defaults (``compile_cache``:
    its ``--compile-cache``; ``None``: the command line's default); wall time and the script's
    breakdown: startup (before its clock starts: interpreter, imports), data, compile, training,
    and evaluation and other (the per-epoch evaluations, checks)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.json"
        options = [f"--xla-option={k}={v}" for k, v in xla_options]
        cache = [] if compile_cache is None else ["--compile-cache", str(compile_cache)]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--quiet", "--json",
                               str(path), *cache, *options], cwd=ROOT, capture_output=True, text=True,
                              check=False, env=child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "wall_s": wall}
        report = json.loads(path.read_text())
    t = report["timings"]
    iters = int(sum(report["history"]["steps"]))
    return {"wall_s": wall, **t, "startup_s": wall - t["total_s"],
            "eval_and_other_s": t["total_s"] - t["data_s"] - t["compile_s"] - t["train_s"],
            "iters": iters, "batch_size": report["config"]["batch_size"],
            "epochs": len(report["history"]["epoch"]), "final": report["final"],
            "train_ms_per_step": t["train_s"] / iters * 1e3}


def child_env() -> dict:
    """This environment with this checkout first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def prepare_book(book_dir: Path, work: Path) -> Path:
    """The book's chapter 5 beside the Fashion-MNIST files and its ``mnist.pkl``; its folder."""
    from fnet import data
    from fnet.data.loaders import find_files

    if not (book_dir / BOOK_SCRIPT).is_file():
        raise SystemExit(f"bench: --book-dir {book_dir} has no {BOOK_SCRIPT}: pass a checkout of "
                         "github.com/oreilly-japan/deep-learning-from-scratch")
    for folder in ("ch05", "common", "dataset"):
        shutil.copytree(book_dir / folder, work / folder)
    files = find_files(data.DATASETS["fashion-mnist"], None, download=False, mirrors=None, timeout=30)
    for path in files.values():
        shutil.copy(path, work / "dataset" / path.name)  # the book's mnist.py reads these names
    (work / "dataset" / "mnist.pkl").unlink(missing_ok=True)
    subprocess.run([sys.executable, "-c", "from dataset.mnist import init_mnist; init_mnist()"], cwd=work,
                   check=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(work)))
    return work


def run_book(work: Path) -> dict:
    """The book's ``train_neuralnet.py``, one OpenBLAS thread; wall time and its last accuracies."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, BOOK_SCRIPT.name], cwd=work / "ch05", capture_output=True,
                          text=True, check=False,
                          env=dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1"))
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:], "wall_s": wall}
    last = proc.stdout.split()[-2:]  # "train_acc test_acc" of its last evaluation
    return {"wall_s": wall, "final": {"train_acc": float(last[0]), "test_acc": float(last[1])}}


def cold_start(book_dir: Path | None, repeats: int, log: Callable[[str], None], xla_options=()) -> dict:
    from fnet import data

    data.load_fashion_mnist()  # the decoded copies in fnet's cache, as the book's mnist.pkl is built
    runs: dict[str, list[dict]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        book = None
        if book_dir is not None:
            book = prepare_book(book_dir, Path(tmp) / "book")
            runs["book"] = []
        start = loadavg()
        for r in range(repeats):
            cache = Path(tmp) / f"xla-{r}"  # empty: nothing compiled yet
            for name in ("cold", "warm"):
                runs[name].append(run_train(cache, xla_options))
                log(f"[cold start] repeat {r + 1}/{repeats}: {name} {runs[name][-1]['wall_s']:.1f}s")
            if book is not None:
                runs["book"].append(run_book(book))
                log(f"[cold start] repeat {r + 1}/{repeats}: book {runs['book'][-1]['wall_s']:.1f}s")
    failed = {n: r["error"] for n, rs in runs.items() for r in rs if "error" in r}
    if failed:
        raise SystemExit(f"bench: --cold-start: a run failed: {failed}")
    return {"runs": runs, "repeats": repeats, "loadavg_start": start, "loadavg_end": loadavg(),
            "book_dir": None if book_dir is None else str(book_dir)}


def report(result: dict) -> tuple[list[str], list[dict]]:
    """The table's lines and the target checks (book time / fnet time, medians of the repeats)."""
    runs = result["runs"]
    lines = ["run     wall s   min-max       startup  data  compile  training  eval+other  x book   test acc"]
    book = median([r["wall_s"] for r in runs["book"]]) if "book" in runs else None
    for name, rs in runs.items():
        walls = [r["wall_s"] for r in rs]
        parts = ("startup_s", "data_s", "compile_s", "train_s", "eval_and_other_s")
        split = ("  ".join(f"{median([r[k] for r in rs]):7.1f}" for k in parts) if name != "book"
                 else " " * 44)
        ratio = f"{book / median(walls):5.1f}x" if book else "     "
        acc = median([r["final"].get("test_acc", float("nan")) for r in rs])
        lines.append(f"{name:6} {median(walls):7.1f}  {min(walls):5.1f}-{max(walls):5.1f}  {split}  "
                     f"{ratio}   {acc:.4f}")
    checks = []
    for name, factor in TARGETS.items():
        if book is None:
            checks.append({"status": "SKIP", "check": f"{name} train.py <= 1/{factor:g} of the book's script",
                           "detail": "needs --book-dir"})
            continue
        ratio = book / median([r["wall_s"] for r in runs[name]])
        checks.append({"status": "PASS" if ratio >= factor else "FAIL",
                       "check": f"{name} train.py <= 1/{factor:g} of the book's script",
                       "detail": f"book time / {name} time = {ratio:.2f} (book {book:.1f}s, load average "
                                 f"{result['loadavg_start'][0]:.2f} at the start)"})
    return lines, checks
