"""``bench.py --seq2seq-book DIR``: ``scripts/seq2seq.py`` beside the second book's own chapters 7 and 8.

The book's scripts come from a checkout of its repository
(github.com/oreilly-japan/deep-learning-from-scratch-2), in the configuration of issue 31's
targets: ``ch07/train_seq2seq.py`` with peeky decoding and reversed questions (25 epochs), and
``ch08/train.py`` (attention, reversed) for 3 epochs instead of its 10. Its ``ch07``, ``ch08``,
``common`` and ``dataset`` folders are copied into a temporary folder and those lines edited
there (``BOOK_EDITS``; the checkout is not touched). NumPy runs them with one and with two
OpenBLAS threads, and the faster of the two is the book's time (the strongest NumPy). fnet runs
``scripts/seq2seq.py`` on the book's own files with the same settings (wordvec 16, hidden 128 or
256, batch 128, Adam 0.001, clip 5), on one device (``fnet``) and with ``--devices 2``
(``fnet_dp``), each with an empty compilation cache (``--compile-cache``, a new folder), and on
one device again on the cache its ``fnet`` run left (``fnet_warm``: a rerun, as a user's second
run finds its programs compiled). Every run is a new process timed from its start to its end, so
both sides pay their imports, data, compilation (but ``fnet_warm``) and every epoch's evaluation;
a task's runs are interleaved, ``--seq2seq-repeats`` times.

Targets (issue 31), per task: fnet ``SEVERAL`` times faster than the book's faster run, and its
held-out accuracy after the last epoch at least the issue's (addition 98%, dates 99.9%).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.cold_start import child_env
from benchmarks.config import ROOT
from benchmarks.machine import loadavg

SEVERAL = 3.0
"""The speed target: "several times faster than the book's code"."""
TASKS = {
    "addition": {"book": Path("ch07") / "train_seq2seq.py", "data": "addition.txt", "target": 0.98,
                 "fnet": ("--model", "peeky", "--reverse", "--epochs", "25")},
    "date": {"book": Path("ch08") / "train.py", "data": "date.txt", "target": 0.999,
             "fnet": ("--model", "attention", "--reverse", "--hidden", "256", "--epochs", "3")},
}
"""The two tasks: the book's script, its data file, fnet's options and the accuracy target."""
BOOK_EDITS = {
    TASKS["addition"]["book"]: (
        ("is_reverse = False  # True", "is_reverse = True"),
        ("model = Seq2seq(vocab_size, wordvec_size, hidden_size)\n"
         "# model = PeekySeq2seq(vocab_size, wordvec_size, hidden_size)",
         "model = PeekySeq2seq(vocab_size, wordvec_size, hidden_size)"),
    ),
    TASKS["date"]["book"]: (("max_epoch = 10", "max_epoch = 3"),),
}
"""The lines of the book's scripts replaced in the copy: (as published, as run)."""
RUNS = {"book_1t": 1, "book_2t": 2, "fnet": 1, "fnet_warm": 1, "fnet_dp": 2}
"""The book with one and with two OpenBLAS threads; fnet on one device (compiling, then again on its
compilation cache) and on two."""
FNET_RUNS = tuple(name for name in RUNS if not name.startswith("book"))
_VAL_ACC = re.compile(r"^val acc ([0-9.]+)%", re.M)


def missing(book_dir: Path) -> str | None:
    """What ``book_dir`` lacks to be a checkout of the book's repository, said for ``--seq2seq-book``;
    ``None`` when it has both scripts."""
    for script in BOOK_EDITS:
        if not (book_dir / script).is_file():
            return (f"--seq2seq-book {book_dir} has no {script}: pass a checkout of "
                    "github.com/oreilly-japan/deep-learning-from-scratch-2")
    return None


def prepare_book(book_dir: Path, work: Path) -> Path:
    """The book's chapters 7 and 8 with their ``common`` and ``dataset`` folders in ``work``, the
    scripts edited to the targets' configuration; raises ``SystemExit`` naming what is missing."""
    if (lacking := missing(book_dir)) is not None:
        raise SystemExit(f"bench: {lacking}")
    for folder in ("ch07", "ch08", "common", "dataset"):
        shutil.copytree(book_dir / folder, work / folder)
    for script, edits in BOOK_EDITS.items():
        text = (work / script).read_text(encoding="utf-8")
        for published, run in edits:
            if published not in text:
                first = published.splitlines()[0]
                raise SystemExit(f"bench: --seq2seq-book: {script} has no line {first!r}, so "
                                 "it is not the script as published and cannot be set to the issue's "
                                 "configuration; use a checkout of the book's repository as it is")
            text = text.replace(published, run)
        (work / script).write_text(text, encoding="utf-8")
    return work


def run_book(work: Path, task: str, threads: int) -> dict:
    """The book's script for ``task`` with ``threads`` OpenBLAS threads: wall time and the held-out
    accuracy it prints after every epoch (``val acc``)."""
    script = TASKS[task]["book"]
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MPLBACKEND="Agg", PYTHONPATH=str(work / "ch07"))  # ch08 imports ch07's modules
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, script.name], cwd=work / script.parent, capture_output=True,
                          text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    accs = [float(v) / 100 for v in _VAL_ACC.findall(proc.stdout)]
    if proc.returncode != 0 or not accs:
        return {"error": (proc.stderr.strip() or proc.stdout.strip())[-2000:], "wall_s": wall}
    return {"wall_s": wall, "test_acc": accs}


def run_fnet(work: Path, task: str, devices: int, compile_cache: Path) -> dict:
    """``scripts/seq2seq.py`` on the book's file for ``task`` with ``--compile-cache compile_cache``:
    wall time, the held-out accuracy after every epoch, compile time and the epochs' seconds (from
    its ``--json``)."""
    spec = TASKS[task]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.json"
        command = [sys.executable, str(ROOT / "scripts" / "seq2seq.py"), "--data",
                   str(work / "dataset" / spec["data"]), *spec["fnet"], "--quiet", "--json", str(path),
                   "--compile-cache", str(compile_cache)]
        if devices > 1:
            command += ["--devices", str(devices)]
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "wall_s": wall}
        report = json.loads(path.read_text())
    return {"wall_s": wall, "test_acc": report["test_acc"], "compile_s": report["compile_seconds"],
            "epoch_s": report["history"]["seconds"]}


def seq2seq_vs_book(book_dir: Path, tasks: Sequence[str], repeats: int, log: Callable[[str], None]) -> dict:
    """Every run of every task, interleaved within a task, ``repeats`` times."""
    out: dict = {"tasks": {}, "repeats": repeats, "book_dir": str(book_dir), "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        work = prepare_book(book_dir, Path(tmp) / "book")
        for task in tasks:
            runs: dict[str, list[dict]] = {name: [] for name in RUNS}
            for r in range(repeats):
                for name, n in RUNS.items():
                    if name.startswith("book"):
                        run = run_book(work, task, n)
                    else:  # fnet_warm reruns on the cache its repeat's fnet run left
                        cache = Path(tmp) / f"xla-{task}-{r}-{'fnet' if name == 'fnet_warm' else name}"
                        run = run_fnet(work, task, n, cache)
                    if "error" in run:  # a setup problem: stop now rather than after half an hour
                        raise SystemExit(f"bench: --seq2seq-book: the {task} run {name} failed after "
                                         f"{run['wall_s']:.0f}s:\n{run['error']}")
                    runs[name].append(run)
                    log(f"[seq2seq {task}] repeat {r + 1}/{repeats}: {name} {run['wall_s']:.1f}s, "
                        f"{100 * run['test_acc'][-1]:.2f}%")
            out["tasks"][task] = {"runs": runs}
    out["loadavg_end"] = loadavg()
    return out


def report(result: dict) -> tuple[list[str], list[dict]]:
    """The table's lines and the target checks (the book's faster median / each run's median)."""
    lines = ["task      run       wall s   min-max        x book   held-out accuracy by epoch (last repeat)"]
    checks = []
    for task, t in result["tasks"].items():
        runs = t["runs"]
        wall = {name: statistics.median([r["wall_s"] for r in rs]) for name, rs in runs.items()}
        faster = min(("book_1t", "book_2t"), key=wall.get)
        book, book_acc = wall[faster], runs[faster][-1]["test_acc"][-1]
        for name, rs in runs.items():
            walls = [r["wall_s"] for r in rs]
            accs = rs[-1]["test_acc"]
            shown = ", ".join(f"{100 * a:.2f}%" for a in accs[-3:])
            spread = f"{min(walls):.1f}-{max(walls):.1f}"
            lines.append(f"{task:9} {name:9} {wall[name]:6.1f}  {spread:13} "
                         f"{book / wall[name]:5.2f}x   {'... ' if len(accs) > 3 else ''}{shown}")
        target = TASKS[task]["target"]
        for name in FNET_RUNS:
            ratio, last = book / wall[name], runs[name][-1]["test_acc"][-1]
            checks.append({
                "status": "PASS" if ratio >= SEVERAL else "FAIL",
                "check": f"seq2seq {task}: {name} at least {SEVERAL:g}x faster than the book's code",
                "detail": f"the book's faster run / {name} = {ratio:.2f} (book {book:.1f}s, {name} "
                          f"{wall[name]:.1f}s, load average {result['loadavg_start'][0]:.2f} at the start)"})
            checks.append({
                "status": "PASS" if last >= target else "FAIL",
                "check": f"seq2seq {task}: {name} held out >= {100 * target:g}% after the last epoch",
                "detail": f"{100 * last:.2f}% (the book's faster run: {100 * book_acc:.2f}%)"})
    return lines, checks
