#!/usr/bin/env python
"""Benchmark fnet's training path against autodiff, NumPy, PyTorch and the machine's matmul roof.

Run from the repository root (so that this checkout's ``fnet`` is imported)::

    PYTHONPATH=. python scripts/bench.py                      # book and wide, ~1-2 minutes
    PYTHONPATH=. python scripts/bench.py --config all --json bench.json
    PYTHONPATH=. python scripts/bench.py --quick              # smoke test, under a minute
    PYTHONPATH=. python scripts/bench.py --config book --isolate --train-script
    PYTHONPATH=. python scripts/bench.py --config book --profile

**What is timed.** Every contender trains the same network from the same initial
parameters on the same data with SGD (learning rate 0.1), the same batch size
and the same number of steps. One timed sample is one epoch: a fresh shuffle of
the training set, then ``steps`` minibatches of forward, loss, backward and
update. The training set is the first ``steps * batch`` examples of
Fashion-MNIST (``--train-size`` to change it), so that a sample is a whole
epoch and the per-epoch shuffle weighs on a step as it does in real training
(book: 600 steps of 100, all 60000 examples, exactly ``fnet.fit``'s epoch).
Compilation and the first call are excluded (they are reported apart).

- ``fnet``: ``jax.jit(fnet.train.make_train_epoch(...))``, the function
  ``fnet.fit`` runs each epoch (one gather, ``lax.scan`` over minibatches,
  handwritten backward).
- ``fnet_dp``: the same epoch data parallel over one CPU device per usable core
  (``make_train_epoch(mesh=...)``, as ``fnet-train --devices N`` runs it on a CPU;
  the bench asks JAX for the devices before it starts): each device takes its share
  of every minibatch, the gradients are averaged. Its losses equal fnet's up to
  rounding, except with batch norm, which normalizes with each device's share
  (docs/design.md). Skipped on one core or an accelerator.
- ``autodiff``: the identical epoch function with ``grad_fn`` =
  ``jax.value_and_grad`` of the same forward and loss.
- ``numpy``: the book's way, written here: Affine/ReLU/SoftmaxWithLoss objects
  with ``x @ W``, a per-epoch permutation, a fancy-indexed minibatch per step and
  in-place SGD; float32 throughout. Like the compiled contenders it skips the
  first layer's ``dx``, which nobody uses. It runs with OpenBLAS's default
  thread count (all cores; reported), and ``numpy1`` is the same code with one
  BLAS thread: on a loaded machine the threaded BLAS can be many times slower at
  these small sizes (its threads wait for each other), so the target check is
  made against the faster of the two, never against a handicapped NumPy.
- ``torch``, ``torch1``, ``torch_compile`` (every config; optional: ``pip install -e
  ".[bench]"``, skipped with a note without torch): idiomatic eager PyTorch from fnet's
  initial weights: for book and wide an ``nn.Sequential`` of ``Linear``/``ReLU``; for
  convnet, resnet and lstm the twins of ``benchmarks/torch_models.py`` (channels-last
  ``Conv2d``/``BatchNorm2d``, ``nn.LSTM``); for gpt nanoGPT's ``model.py``;
  ``CrossEntropyLoss``, ``torch.optim.SGD``, minibatches of in-memory tensors, with
  ``torch.set_num_threads`` at the cores (``torch1``: one thread, the control for a
  loaded machine) and ``torch.compile`` of the model (``benchmarks/torch_reference.py``).
- ``roof``: a jitted ``jnp.dot`` of two large square float32 matrices
  (GFLOP/s), timed in the same interleaved loop, so that it sees the same load.
  Before the loop, the model's own matmul shapes are timed alone, for reference.

Contenders are **interleaved** (each repeat runs every contender once, in a
rotated order), so a burst of load from other processes hits all of them alike;
ratios are taken per repeat (paired) and then their median. After every timed
run the benchmark pauses ``PAUSE_S``: worker threads that spin after a call
(OpenBLAS's, Eigen's) then go idle instead of taking CPU from the next contender.

**The table.** One row per config and contender:

- ``ms/step``: median over repeats of (epoch seconds / steps); ``min-max``: the spread.
- ``samples/s``: batch / median step time.
- ``x fnet``: median of the per-repeat ratio (contender time / fnet time): above 1
  means slower than fnet; for the roof row it is blank.
- ``GFLOP/s`` and ``% roof``: the model's matmul FLOPs per step (see the counting
  rule printed under the table) divided by the median step time, and that as a
  fraction of the median square-matmul throughput measured in the same loop.
- ``compile s``: ahead-of-time ``lower().compile()`` time; ``final loss``: the
  last minibatch loss of the *check run* below.

Under each config: ``hlo``, op counts of the compiled epoch (dots, copies, the
per-epoch gather, the shuffle's sorts) and XLA's temporary buffer size; ``roof
at``, the model's own matmul shapes timed alone; with ``--isolate``, the peak
RSS of a process running only that contender (and of a baseline process that
only loads JAX and the data). ``--train-script`` adds ``scripts/train.py`` with
the book's defaults, timed from process start, split into startup, data,
compile, training and the rest (per-epoch evaluation, eager work). ``--cold-start``
times ``scripts/train.py`` from a new process with an empty and with a warm compilation
cache, beside the book's own ``ch05/train_neuralnet.py`` (``--book-dir``, a checkout of
its repository), interleaved, and checks issue 17's targets (``benchmarks/cold_start.py``).
``--seq2seq-book DIR`` times ``scripts/seq2seq.py`` from a new process beside the second book's own
``ch07/train_seq2seq.py`` (peeky, reversed) and ``ch08/train.py`` (attention, reversed, 3 epochs)
from a checkout of its repository, on its own data files, interleaved, and checks issue 31's
targets (``benchmarks/book_seq2seq.py``).

**Profile** (``--profile``): one more fnet epoch per config, compiled with per-op
trace events and run under ``jax.profiler``; the time of every XLA op is added up
per step and the largest are printed, with the traced epoch's own time per step
(what is not inside an op is the runtime between ops). The epoch is compiled
with the same XLA options as the others.

**Self-check.** Before timing, every contender runs one epoch with the same
shuffle (the NumPy contender is handed the permutation fnet draws for that key)
and the same initial parameters; the per-step losses are compared with fnet's.
The loss of step k+1 depends on the gradients and update of step k, so over the
first ``FIRST_STEPS`` steps they must agree to float32 rounding (1e-5): a
contender doing different work (a wrong gradient, a missing bias update) shows
up there. Over a whole epoch, SGD amplifies rounding differences (summation
order differs between XLA, OpenBLAS with 1 or 2 threads), so the bound is loose
(2e-2). The ``loss diff`` column shows both maxima: ``first steps / epoch``.

**Targets** (printed as PASS/FAIL lines; informational, the exit status is 0):
fnet/autodiff time <= 1.00 in every config; wide: fnet >= 85% of the matmul
roof; book: fnet >= 1.5x faster per step than NumPy; book: fnet >= 2x faster than
eager PyTorch, and every other config not behind it (fnet or, where it is faster,
``fnet_dp``; both ratios are printed).

The machine is described in ``--json`` output (CPU model, cores, load average
before and after, JAX device, versions, date). On a shared machine, read the
min-max spread and the load average before trusting a difference of a few percent.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by path (tests), not run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import book_seq2seq
from benchmarks.cold_start import cold_start
from benchmarks.cold_start import report as cold_report
from benchmarks.config import CONFIGS, CONTENDERS, DEFAULT_CONTENDERS, FLOP_RULE, ROOF_N
from benchmarks.machine import (
    cpu_devices_per_core,
    describe_machine,
    loadavg,
    numpy_blas_threads,
    proc_status_mb,
)
from benchmarks.report import checks, format_table
from benchmarks.runs import bench_config, child_memory, isolated_memory, run_train_script


def main(argv: list[str] | None = None) -> int:
    from fnet.cli import xla_option

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=[*CONFIGS, "all"], default=None,
                   help="which configuration (default: book and wide; all: every one)")
    p.add_argument("--steps", type=int, help="steps per timed epoch (default per config: book 600, wide 20, "
                                             "convnet 50, resnet 20, lstm 20, gpt 50)")
    p.add_argument("--repeats", type=int, help="timed repeats (default: book 7, wide 5, convnet 5, resnet 3)")
    p.add_argument("--quick", action="store_true", help="few steps and repeats: a smoke test under a minute")
    p.add_argument("--contenders", default=",".join(DEFAULT_CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)} (default "
                        f"{','.join(DEFAULT_CONTENDERS)}; progress: fnet's epoch run as 10 pieces with a "
                        "host sync between, as fit(progress=) and fnet-train --progress run it)")
    p.add_argument("--train-size", type=int,
                   help="use the first N training examples (default steps * batch: one epoch per sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--roof-n", type=int, default=None, help=f"side of the roof's square matmul "
                                                            f"(default {ROOF_N}, --quick 1024; x4 on an "
                                                            "accelerator)")
    p.add_argument("--numpy-threads", type=int,
                   help="OpenBLAS's thread count for the numpy contender "
                        "(default: OpenBLAS's own, all cores)")
    p.add_argument("--isolate", action="store_true",
                   help="also run each contender in its own process to measure its peak RSS")
    p.add_argument("--train-script", action="store_true",
                   help="also time scripts/train.py end to end with the book's defaults (~10-20 s)")
    p.add_argument("--cold-start", action="store_true",
                   help="time scripts/train.py from a new process, with an empty and with a warm compile "
                        "cache, beside the book's own script with --book-dir (benchmarks/cold_start.py); "
                        "alone unless --config is given")
    p.add_argument("--book-dir", type=Path, metavar="DIR",
                   help="a checkout of github.com/oreilly-japan/deep-learning-from-scratch, for --cold-start")
    p.add_argument("--cold-repeats", type=int, default=3, help="--cold-start repeats (default 3)")
    p.add_argument("--seq2seq-book", type=Path, metavar="DIR",
                   help="a checkout of github.com/oreilly-japan/deep-learning-from-scratch-2: time "
                        "scripts/seq2seq.py from a new process beside the book's ch07/train_seq2seq.py and "
                        "ch08/train.py on its own files, in issue 31's configuration "
                        "(benchmarks/book_seq2seq.py; half an hour on 2 cores); alone unless --config "
                        "is given")
    p.add_argument("--seq2seq-tasks", default=",".join(book_seq2seq.TASKS), metavar="TASKS",
                   help=f"--seq2seq-book's tasks, comma-separated (default {','.join(book_seq2seq.TASKS)})")
    p.add_argument("--seq2seq-repeats", type=int, default=1, help="--seq2seq-book repeats (default 1)")
    p.add_argument("--xla-option", type=xla_option, action="append", metavar="NAME=VALUE",
                   help="an XLA compiler option for the fnet and autodiff contenders alike, and for "
                        "--train-script (repeatable; see fnet-train --help)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one fnet epoch per config (jax.profiler) and print where a step's "
                        "time goes, op by op")
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure and the machine as JSON")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if "fnet_dp" in (*args.contenders.split(","), args.child_memory):
        cpu_devices_per_core()
    if args.roof_n is None:
        import jax

        # an accelerator needs a larger product to reach its roof
        args.roof_n = (1024 if args.quick else ROOF_N) * (1 if jax.default_backend() == "cpu" else 4)
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in names if c not in CONTENDERS]
    if bad or not names:
        p.error(f"--contenders: unknown {bad}; choose from {','.join(CONTENDERS)}")
    if args.numpy_threads is not None:
        numpy_blas_threads(args.numpy_threads)
    tasks = [t.strip() for t in args.seq2seq_tasks.split(",") if t.strip()]
    if not tasks or any(t not in book_seq2seq.TASKS for t in tasks):
        p.error(f"--seq2seq-tasks: {args.seq2seq_tasks!r}; choose from {','.join(book_seq2seq.TASKS)}")
    for option in ("cold_repeats", "seq2seq_repeats"):
        if getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if args.seq2seq_book is not None and (lacking := book_seq2seq.missing(args.seq2seq_book)) is not None:
        p.error(lacking)  # before any other part of the bench runs

    if args.child_memory:
        print(json.dumps(child_memory(CONFIGS[args.config or "book"], args, args.child_memory)))
        return 0

    alone = args.cold_start or args.seq2seq_book is not None
    configs = (([] if alone else ["book", "wide"]) if args.config is None
               else list(CONFIGS) if args.config == "all" else [args.config])
    log = print
    machine = describe_machine()
    log(f"machine: {machine['cpu_model']}, {machine['cpus_usable']} usable cores, JAX {machine['jax']} on "
        f"{machine['jax_device_kind']} ({machine['jax_platform']}), NumPy {machine['numpy']} with "
        f"{machine['numpy_blas_threads']} BLAS threads; load average {machine['loadavg_start']}")
    if configs:  # fit's options: fnet's defaults for each program, under --xla-option
        machine["xla_options"] = options = dict(args.xla_option or [])
        log("XLA options for fnet and autodiff: fit's, chosen per program (each contender's line "
            "below says which)" + ("; over them: " + ", ".join(f"{k}={v!r}" for k, v in options.items())
                                   if options else ""))
    results: dict[str, Any] = {}
    for cname in configs:
        results[cname] = bench_config(CONFIGS[cname], args, names, log)
        if args.isolate and "contenders" in results[cname]:
            results[cname]["memory"] = isolated_memory(CONFIGS[cname], args,
                                                       [n for n in names if n != "roof"], log)
    train_script = run_train_script(log, args.xla_option or []) if args.train_script else None
    cold = (cold_start(args.book_dir, args.cold_repeats, log, args.xla_option or []) if args.cold_start
            else None)
    seq2seq = (book_seq2seq.seq2seq_vs_book(args.seq2seq_book, tasks, args.seq2seq_repeats, log)
               if args.seq2seq_book is not None else None)
    machine["loadavg_end"] = loadavg()
    machine["peak_rss_mb_this_process"] = proc_status_mb("VmHWM")

    print()
    if results:
        print(format_table(results))
        print(f"FLOP counting rule: {FLOP_RULE}.")
        print("x fnet: median over repeats of (contender time / fnet time), contenders interleaved.")
    print(f"load average: start {machine['loadavg_start']}, end {machine['loadavg_end']}; "
          f"peak RSS of this process {machine['peak_rss_mb_this_process']:.0f} MiB; "
          f"device memory stats: {'n/a' if machine['device_memory_stats'] == 'n/a' else 'in the JSON'}")
    if train_script is not None and "error" not in train_script:
        book = results.get("book", {}).get("contenders", {}).get("fnet")
        ts = train_script
        line = (f"scripts/train.py (book defaults, {ts['iters']} steps, {ts['epochs']} epochs with "
                f"evaluations): {ts['wall_s']:.1f}s wall from process start = startup "
                f"{ts['startup_s']:.1f}s + data {ts['data_s']:.1f}s + compile {ts['compile_s']:.1f}s "
                f"+ training {ts['train_s']:.1f}s + evaluation and other {ts['eval_and_other_s']:.1f}s "
                f"(training {ts['train_ms_per_step']:.3f} ms/step")
        if book:
            line += (f"; the bench's fnet book figure predicts "
                     f"{book['ms_per_step']['median'] * train_script['iters'] / 1e3:.1f}s of training")
        print(line + ")")
    elif train_script is not None:
        print(f"scripts/train.py failed: {train_script['error']}")
    target = checks(results)
    if cold is not None:
        lines, cold_checks = cold_report(cold)
        print(f"\nscripts/train.py from a new process (medians of {cold['repeats']} interleaved repeats; "
              "seconds):")
        print("\n".join(lines))
        target += cold_checks
    if seq2seq is not None:
        lines, seq2seq_checks = book_seq2seq.report(seq2seq)
        print(f"\nscripts/seq2seq.py beside the second book's code, from new processes (medians of "
              f"{seq2seq['repeats']} interleaved repeats; seconds; x book: the book's faster run / this "
              "run):")
        print("\n".join(lines))
        target += seq2seq_checks
    print()
    for c in target:
        print(f"{c['status']:4} {c['check']}: {c['detail']}")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items()},
            "flop_rule": FLOP_RULE, "configs": results, "train_script": train_script,
            "cold_start": cold, "seq2seq_book": seq2seq, "checks": target,
        }, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
