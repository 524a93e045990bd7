#!/usr/bin/env python
"""Benchmark fnet's training path against autodiff, NumPy and the machine's matmul roof.

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
compile, training and the rest (per-epoch evaluation, eager work).

**Profile** (``--profile``): one more fnet epoch per config, compiled with per-op
trace events and run under ``jax.profiler``; the time of every XLA op is added up
per step and the largest are printed, with the traced epoch's own time per step
(what is not inside an op is the runtime between ops). The epoch is compiled
with the same ``--xla-option`` settings.

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
roof; book: fnet >= 1.5x faster per step than NumPy.

The machine is described in ``--json`` output (CPU model, cores, load average
before and after, JAX device, versions, date). On a shared machine, read the
min-max spread and the load average before trusting a difference of a few percent.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = "/usr/share/datasets/fashion-mnist"
CONTENDERS = ("fnet", "autodiff", "numpy", "numpy1", "roof")
PAUSE_S = 0.2  # after every timed run: see the module docstring
FIRST_STEPS = 5  # the loss check is tight over these steps of the check epoch ...
FIRST_STEPS_TOL = 1e-5
EPOCH_TOL = 2e-2  # ... and loose over the whole epoch, where float32 rounding differences grow
ROOF_N = 2048  # side of the square matmul that defines the roof
LR = 0.1

FLOP_RULE = ("matmul FLOPs only (bias, activations, softmax, gather, update not counted): "
             "forward 2*B*in*out per affine (2*B*Ho*Wo*Cout*Cin*kh*kw per conv); backward = dW + dx, "
             "each as much as the forward, except dx of the first layer, which XLA removes "
             "(checked in the compiled HLO: the 'skips the first layer's dx' lines)")


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    description: str
    batch_size: int
    steps: int
    repeats: int
    quick_steps: int
    quick_repeats: int
    image: bool = False  # (N, 28, 28, 1) inputs instead of (N, 784)


CONFIGS = {
    "book": Config("book", "two_layer_net 784-50-10 (the book's chapter 5)", 100, 600, 7, 100, 3),
    "wide": Config("wide", "784-1024-1024-10 ReLU MLP (fnet.sequential of affine/relu)", 512, 20, 5, 3, 2),
    "convnet": Config("convnet", "simple_convnet: conv 30 5x5, ReLU, pool 2x2, affine 100, ReLU, affine 10",
                      100, 50, 5, 5, 2, image=True),
}


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _loadavg() -> list[float] | None:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]
    return None


def _proc_status_mb(field: str) -> float | None:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of this process, in MiB."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return None


def _openblas() -> tuple[ctypes.CDLL | None, str | None]:
    """The OpenBLAS library NumPy loaded (found in /proc/self/maps), and its symbol prefix."""
    with contextlib.suppress(OSError), open("/proc/self/maps") as f:
        paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
        for path in paths:
            lib = ctypes.CDLL(path)
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", "", "_64_"):
                    if hasattr(lib, f"{prefix}get_num_threads{suffix}"):
                        return lib, (prefix, suffix)  # type: ignore[return-value]
    return None, None


def numpy_blas_threads(set_to: int | None = None) -> int | None:
    """OpenBLAS's thread count (after setting it to ``set_to`` if given); None if not OpenBLAS."""
    lib, affix = _openblas()
    if lib is None:
        return None
    prefix, suffix = affix
    if set_to is not None:
        getattr(lib, f"{prefix}set_num_threads{suffix}")(ctypes.c_int(set_to))
    return int(getattr(lib, f"{prefix}get_num_threads{suffix}")())


def describe_machine() -> dict:
    import jax
    import jaxlib

    dev = jax.devices()[0]
    try:
        mem = dev.memory_stats()
    except Exception:  # some backends raise instead of returning None
        mem = None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "jax_device_kind": dev.device_kind,
        "jax_platform": dev.platform,
        "jax_device_count": jax.device_count(),
        "device_memory_stats": mem if mem else "n/a",
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
        "numpy_blas_threads": numpy_blas_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": _loadavg(),
    }


# --------------------------------------------------------------------------- data, models, FLOPs


def load_data(config: Config, train_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``train_size`` Fashion-MNIST training examples, float32 in [0, 1], int32 labels."""
    from fnet import data

    (x, t), _ = data.load_fashion_mnist(DATA_DIR, normalize=True, flatten=not config.image, download=False)
    if not 1 <= train_size <= len(x):
        raise SystemExit(f"bench: {config.name} needs {train_size} training examples; "
                         f"Fashion-MNIST has {len(x)} (use fewer --steps or a smaller --train-size)")
    x, t = x[:train_size], t[:train_size]
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(t, np.int32)


def sizes(config: Config, args: argparse.Namespace) -> tuple[int, int, int]:
    """``(steps, repeats, train_size)`` for ``config`` under the command-line options."""
    steps = args.steps or (config.quick_steps if args.quick else config.steps)
    repeats = args.repeats or (config.quick_repeats if args.quick else config.repeats)
    return steps, repeats, args.train_size or steps * config.batch_size


def build_net(config: Config):
    """The network of ``config``, or None if this checkout of fnet lacks it."""
    import fnet
    from fnet import layers as L

    if config.name == "book":
        return fnet.two_layer_net(784, 50, 10)
    if config.name == "wide":
        return fnet.sequential(L.affine(1024), L.relu(), L.affine(1024), L.relu(), L.affine(10))
    if config.name == "convnet":
        return fnet.models.simple_convnet() if hasattr(fnet.models, "simple_convnet") else None
    raise ValueError(config.name)


def matmul_flops(net, params, x_shape: tuple) -> tuple[int, list[dict]]:
    """FLOPs of one training step by ``FLOP_RULE``, from the forward's jaxpr, and the per-op detail.

    Every ``dot_general`` and ``conv_general_dilated`` in the forward counts once
    forward and twice backward (dW and dx), except the first one, whose dx is
    not computed.
    """
    import jax
    import jax.extend
    import jax.numpy as jnp

    closed = jax.make_jaxpr(lambda p, x: net.forward(p, x)[0])(params, jax.ShapeDtypeStruct(x_shape,
                                                                                             jnp.float32))
    ops: list[dict] = []

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            out = eqn.outvars[0].aval.shape
            if name == "dot_general":
                (lhs_c, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                k = math.prod(lhs[d] for d in lhs_c)
                ops.append({"op": "dot", "lhs": list(lhs), "rhs": list(eqn.invars[1].aval.shape),
                            "forward_flops": 2 * math.prod(out) * k})
            elif name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape
                out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
                ops.append({"op": "conv", "lhs": list(eqn.invars[0].aval.shape), "rhs": list(rhs),
                            "forward_flops": 2 * math.prod(out) * math.prod(rhs) // out_features})
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub)

    walk(closed.jaxpr)
    total = 0
    for i, op in enumerate(ops):
        op["step_flops"] = op["forward_flops"] * (2 if i == 0 else 3)
        total += op["step_flops"]
    return total, ops


_OPCODE = re.compile(r"=\s.*?\b([a-z][a-z0-9-]*)\(")
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
MATMUL_OPS = ("dot", "convolution", "custom-call:matmul")  # what the first-layer-dx check counts


def hlo_op_counts(hlo_text: str) -> dict[str, int]:
    """How often each HLO opcode occurs in an optimised module (fused computations included).

    Library calls for matmuls and convolutions (cuBLAS, cuDNN, oneDNN custom calls on
    GPUs or with oneDNN) are counted as ``custom-call:matmul``.
    """
    counts: dict[str, int] = {}
    for line in hlo_text.splitlines():
        m = _OPCODE.search(line)
        if m and not line.lstrip().startswith("HloModule"):
            op = m.group(1)
            target = _TARGET.search(line) if op == "custom-call" else None
            if target and re.search(r"gemm|matmul|conv", target.group(1), re.IGNORECASE):
                op = "custom-call:matmul"
            counts[op] = counts.get(op, 0) + 1
    return dict(sorted(counts.items()))


_HLO_DEF = re.compile(r"^\s*(?:ROOT )?%([\w.-]+) = (\S+) ([a-z][a-z0-9-]*)\(")
_FUSION_LIBRARY = re.compile(r'"kind":"(__\w+)"')
_CONTAINERS = ("while", "call", "conditional")  # instructions whose events hold other ops' events


def hlo_ops_described(hlo_text: str) -> dict[str, str]:
    """``{instruction name: "shape opcode"}`` for the instructions of an optimised module."""
    out = {}
    for line in hlo_text.splitlines():
        m = _HLO_DEF.match(line)
        if m:
            name, shape, op = m.groups()
            library = _FUSION_LIBRARY.search(line) if op == "fusion" else None
            out[name] = f"{re.sub(r'{[^}]*}', '', shape)} {library.group(1) if library else op}"
    return out


def profile_ops(call: Callable[[], Any], hlo_text: str, steps: int, top: int = 12) -> dict:
    """Run ``call`` once under ``jax.profiler`` and add up the time of each XLA op, per step.

    The ops are the trace events named after an instruction of the module: on
    the CPU the thunks (the program must be compiled with
    ``xla_cpu_enable_xprof_traceme``), on a GPU the kernels of the "XLA Ops"
    line. Loops and calls, which contain other ops, are left out, so the sum is
    the time spent inside ops; the rest of the traced step (``traced_us_per_step``)
    is the runtime's own work between them. A library op that runs on several
    threads counts once, for the thread that launched it.
    """
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            t0 = time.perf_counter()
            jax.block_until_ready(call())
            traced_s = time.perf_counter() - t0
        files = sorted(Path(tmp).rglob("*.xplane.pb"))
        if not files:
            return {"error": "the profiler wrote no trace"}
        data = jax.profiler.ProfileData.from_file(str(files[0]))
    described = hlo_ops_described(hlo_text)
    totals: dict[str, list] = {}
    for plane in data.planes:
        for line in plane.lines:
            if not (line.name.startswith("tf_XLA") or line.name == "XLA Ops"):
                continue
            for event in line.events:
                if event.name not in described or event.name.startswith(_CONTAINERS):
                    continue
                entry = totals.setdefault(event.name, [0, 0.0])
                entry[0] += 1
                entry[1] += event.duration_ns
    if not totals:
        return {"error": "no per-op events in the trace on this backend"}
    ops = [{"op": name, "hlo": described.get(name, ""), "calls_per_step": n / steps,
            "us_per_step": ns / steps / 1e3} for name, (n, ns) in totals.items()]
    ops.sort(key=lambda o: -o["us_per_step"])
    return {"ops_us_per_step": sum(o["us_per_step"] for o in ops),
            "traced_us_per_step": traced_s / steps * 1e6, "top": ops[:top], "n_ops": len(ops)}


# --------------------------------------------------------------------------- contenders


@dataclasses.dataclass
class Runner:
    """One prepared contender: ``run(rep)`` trains one epoch and returns its per-step losses."""

    name: str
    run: Callable[[int], np.ndarray]
    check_losses: np.ndarray | None = None
    compile_s: float | None = None
    first_call_s: float | None = None
    info: dict = dataclasses.field(default_factory=dict)


def prepare_jax(name: str, net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                seed: int, xla_options: dict | None = None, profile: bool = False) -> Runner:
    import jax

    from fnet import losses, optim, train

    loss = losses.softmax_cross_entropy
    grad_fn = None
    if name == "autodiff":
        def grad_fn(params, xb, tb, *, key=None, state=None):
            return jax.value_and_grad(lambda p: loss.forward(net.forward(p, xb)[0], tb)[0])(params)

    opt = optim.sgd(LR)
    opt_state = opt.init(params)
    epoch = jax.jit(train.make_train_epoch(net, loss, opt, batch_size=config.batch_size, n_steps=steps,
                                           grad_fn=grad_fn))
    X, T = jax.device_put(x), jax.device_put(t)
    base = jax.random.key(seed)
    t0 = time.perf_counter()
    lowered = epoch.lower(params, opt_state, None, X, T, base)
    compiled = lowered.compile(xla_options or None)
    compile_s = time.perf_counter() - t0

    def run(rep: int) -> np.ndarray:
        key = base if rep < 0 else jax.random.fold_in(base, rep + 1)
        (p, _, _), losses_ = compiled(params, opt_state, None, X, T, key)
        jax.block_until_ready(p)
        return np.asarray(losses_)

    t0 = time.perf_counter()
    check = run(-1)  # the check run: key `base`, the same shuffle the NumPy contender is given
    first_call_s = time.perf_counter() - t0
    info: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        mem = compiled.memory_analysis()
        info["xla_memory_bytes"] = {k: int(getattr(mem, f"{k}_size_in_bytes")) for k in
                                    ("argument", "output", "temp", "alias", "generated_code")}
    with contextlib.suppress(Exception):
        ops = hlo_op_counts(compiled.as_text())
        info["hlo_ops"] = {k: v for k, v in ops.items() if k in (
            *MATMUL_OPS, "custom-call", "transpose", "copy", "gather", "fusion", "while", "sort")}
    if profile:  # a separate compilation: the CPU's per-op trace events cost a little time
        options = dict(xla_options or {})
        if jax.default_backend() == "cpu":
            options["xla_cpu_enable_xprof_traceme"] = True
        traced = lowered.compile(options)
        jax.block_until_ready(traced(params, opt_state, None, X, T, base))
        info["profile"] = profile_ops(lambda: traced(params, opt_state, None, X, T, base),
                                      traced.as_text(), steps)
    return Runner(name, run, check, compile_s, first_call_s, info)


class NpAffine:
    """The book's ``Affine``: ``out = x @ W + b``; backward ``dW = x.T @ dout``, ``dx = dout @ W.T``."""

    def __init__(self, W: np.ndarray, b: np.ndarray, need_dx: bool):
        self.W, self.b, self.need_dx = W, b, need_dx
        self.x: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T if self.need_dx else None


class NpRelu:
    """The book's ``Relu``, with ``np.maximum`` for the forward and the mask applied in place."""

    def __init__(self):
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout *= self.mask
        return dout


class NpSoftmaxWithLoss:
    """The book's ``SoftmaxWithLoss`` with class-index labels; loss from a stable log-softmax."""

    def __init__(self):
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.rows: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.rows is None or len(self.rows) != len(x):
            self.rows = np.arange(len(x))
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        self.y, self.t = e / s, t
        return float(np.log(s[:, 0]).sum() - shifted[self.rows, t].sum()) / len(x)

    def backward(self) -> np.ndarray:
        dx = self.y
        dx[self.rows, self.t] -= 1
        dx /= len(dx)
        return dx


def prepare_numpy(net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                  seed: int, threads: int | None = None) -> Runner | str:
    """The NumPy contender, or a string saying why there is none for this network.

    ``threads``: OpenBLAS threads while it runs (restored afterwards); None keeps the default.
    """
    import jax

    layers: list[Any] = []
    affines: list[NpAffine] = []
    init: list[tuple[np.ndarray, np.ndarray]] = []
    for key, layer in net.children:
        if layer.name == "affine":
            W = np.array(params[key]["W"], np.float32)
            b = np.array(params[key]["b"], np.float32)
            init.append((W.copy(), b.copy()))
            affines.append(NpAffine(W, b, need_dx=bool(layers)))
            layers.append(affines[-1])
        elif layer.name == "relu":
            layers.append(NpRelu())
        else:
            return f"no NumPy version of layer {layer.name!r} (an im2col NumPy convnet is not written)"
    last = NpSoftmaxWithLoss()
    B, n = config.batch_size, len(x)
    rng = np.random.default_rng(seed)

    def epoch(order: np.ndarray) -> np.ndarray:
        losses = np.empty(steps, np.float32)
        for i in range(steps):
            batch = order[i * B:(i + 1) * B]
            h = x[batch]
            for layer in layers:
                h = layer.forward(h)
            losses[i] = last.forward(h, t[batch])
            d = last.backward()
            for layer in reversed(layers):
                d = layer.backward(d)
            for a in affines:
                a.W -= LR * a.dW
                a.b -= LR * a.db
        return losses

    def reset() -> None:
        for a, (W, b) in zip(affines, init, strict=True):
            np.copyto(a.W, W)
            np.copyto(a.b, b)

    default_threads = numpy_blas_threads()

    def with_threads(order: np.ndarray) -> np.ndarray:
        if threads is not None:
            numpy_blas_threads(threads)
        try:
            return epoch(order)
        finally:
            if threads is not None:
                numpy_blas_threads(default_threads)

    def run(rep: int) -> np.ndarray:
        reset()  # (timed with the epoch: a copy of the parameters, negligible next to it)
        return with_threads(rng.permutation(n))

    # The check run uses the permutation the JAX epoch draws for the same key (see make_train_epoch).
    from fnet import shuffle

    k_order, _ = jax.random.split(jax.random.key(seed))
    order = np.asarray(shuffle.permutation(k_order, n))
    reset()
    t0 = time.perf_counter()
    check = with_threads(order)
    first_call_s = time.perf_counter() - t0
    return Runner("numpy" if threads is None else f"numpy{threads}", run, check, None, first_call_s,
                  {"blas_threads": threads or default_threads})


def prepare_roof(n: int = ROOF_N) -> Runner:
    """A jitted float32 ``jnp.dot`` of two ``n x n`` matrices; ``run`` returns no losses."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jax.device_put(rng.standard_normal((n, n), np.float32))
    b = jax.device_put(rng.standard_normal((n, n), np.float32))
    f = jax.jit(jnp.dot).lower(a, b).compile()

    def run(rep: int) -> np.ndarray:
        f(a, b).block_until_ready()
        return np.empty(0, np.float32)

    run(0)
    return Runner("roof", run, None, None, None, {"n": n, "flops": 2 * n ** 3})


def shape_roofs(ops: list[dict], batch: int, reps: int = 5, k: int = 8) -> list[dict]:
    """GFLOP/s of jitted ``jnp.dot`` at the model's matmul shapes (forward, dW and dx of each affine).

    Each shape runs ``k`` times inside one jitted ``lax.scan`` over distinct inputs,
    accumulating the products (so nothing is hoisted and dispatch is amortised).
    """
    import jax
    import jax.numpy as jnp

    shapes = []
    for i, op in enumerate(ops):
        if op["op"] != "dot":
            continue
        _, d_in = op["lhs"][0], math.prod(op["lhs"][1:])
        d_out = op["rhs"][1]
        shapes.append(("forward x@W", (batch, d_in), (d_in, d_out), False))
        shapes.append(("backward x.T@dout", (batch, d_in), (batch, d_out), True))
        if i > 0:
            shapes.append(("backward dout@W.T", (batch, d_out), (d_in, d_out), "rhs_t"))
    rng = np.random.default_rng(0)
    out = []
    for what, lshape, rshape, mode in shapes:
        xs = jax.device_put(rng.standard_normal((k, *lshape), np.float32))
        w = jax.device_put(rng.standard_normal(rshape, np.float32))
        if mode is True:
            def prod(a, w):
                return a.T @ w
        elif mode == "rhs_t":
            def prod(a, w):
                return a @ w.T
        else:
            def prod(a, w):
                return a @ w
        res_shape = jax.eval_shape(prod, xs[0], w).shape

        def body(acc, a, w=w, prod=prod):
            return acc + prod(a, w), None

        f = jax.jit(lambda xs, w, body=body, res_shape=res_shape:
                    jax.lax.scan(lambda c, a: body(c, a, w), jnp.zeros(res_shape, jnp.float32), xs)[0])
        f = f.lower(xs, w).compile()
        f(xs, w).block_until_ready()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f(xs, w).block_until_ready()
            times.append(time.perf_counter() - t0)
        flops = 2 * math.prod(res_shape) * (lshape[0] if mode is True else lshape[1])
        med = float(np.median(times)) / k
        out.append({"matmul": what, "lhs": list(lshape), "rhs": list(rshape), "flops": flops,
                    "ms": med * 1e3, "gflops": flops / med / 1e9})
    return out


# --------------------------------------------------------------------------- one config


def summarize(values: Sequence[float]) -> dict:
    a = np.asarray(values, np.float64)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def bench_config(config: Config, args: argparse.Namespace, contenders: Sequence[str],
                 log: Callable[[str], None]) -> dict:
    import jax

    steps, repeats, train_size = sizes(config, args)
    net = build_net(config)
    if net is None:
        log(f"[{config.name}] skipped: fnet.models.simple_convnet does not exist in this checkout")
        return {"skipped": "fnet.models.simple_convnet does not exist in this checkout"}
    x, t = load_data(config, train_size)
    if steps * config.batch_size > len(x):
        raise SystemExit(f"bench: {config.name}: {steps} steps of {config.batch_size} need "
                         f"{steps * config.batch_size} examples, the training set has {len(x)}")
    input_shape = (None, *x.shape[1:])
    params, _ = net.init(jax.random.key(args.seed), input_shape)
    flops, ops = matmul_flops(net, params, (config.batch_size, *x.shape[1:]))
    result: dict[str, Any] = {
        "description": config.description, "batch_size": config.batch_size, "steps": steps,
        "repeats": repeats, "n_train": len(x), "flops_per_step": flops, "flop_ops": ops,
        # forward, dW and dx per matmul, less the first layer's dx: what FLOP_RULE assumes
        "hlo_dots_expected": 3 * len(ops) - 1,
        # fnet's conv2d computes dW of a one-channel input by im2col: the window
        # extraction is one more convolution op (an identity kernel), the dW a dot
        "hlo_im2col_patches": sum(1 for op in ops if op["op"] == "conv" and op["lhs"][-1] == 1),
        "loadavg_start": _loadavg(), "contenders": {}, "skipped": {}}
    log(f"[{config.name}] {config.description}; batch {config.batch_size}, {steps} steps x {repeats} "
        f"repeats on {len(x)} examples, {flops / 1e6:.1f} MFLOP/step")

    runners: dict[str, Runner] = {}
    for name in contenders:
        if name in ("fnet", "autodiff"):
            runners[name] = prepare_jax(name, net, params, x, t, config, steps, args.seed,
                                        dict(args.xla_option or []), profile=args.profile and name == "fnet")
            log(f"[{config.name}] {name}: compiled in {runners[name].compile_s:.2f}s")
        elif name in ("numpy", "numpy1"):
            r = prepare_numpy(net, params, x, t, config, steps, args.seed, 1 if name == "numpy1" else None)
            if isinstance(r, str):
                result["skipped"][name] = r
                log(f"[{config.name}] {name} skipped: {r}")
            else:
                runners[name] = r
        elif name == "roof":
            runners[name] = prepare_roof(args.roof_n)
    if "roof" in contenders and any(op["op"] == "dot" for op in ops) and not args.quick:
        result["shape_roofs"] = shape_roofs(ops, config.batch_size)

    # Interleaved timing: every repeat runs every contender once, the order rotated.
    names = list(runners)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            runners[name].run(rep)
            seconds[name].append(time.perf_counter() - t0)
            time.sleep(PAUSE_S)
        log(f"[{config.name}] repeat {rep + 1}/{repeats}: " + ", ".join(
            f"{n} {seconds[n][-1] * 1e3 / (1 if n == 'roof' else steps):.3f}" for n in names) + " ms"
            + ("/step" if names != ["roof"] else ""))

    roof_gflops = None
    if "roof" in runners:
        rates = [runners["roof"].info["flops"] / s / 1e9 for s in seconds["roof"]]
        roof_gflops = summarize(rates)
        result["roof"] = {"n": runners["roof"].info["n"], "seconds": seconds["roof"], "gflops": roof_gflops}
    ref = runners.get("fnet")
    for name, r in runners.items():
        if name == "roof":
            continue
        per_step = [s / steps for s in seconds[name]]
        ms = summarize([s * 1e3 for s in per_step])
        entry: dict[str, Any] = {
            "seconds": seconds[name], "ms_per_step": ms,
            "samples_per_s": config.batch_size / (ms["median"] / 1e3),
            "gflops": flops / (ms["median"] / 1e3) / 1e9,
            "compile_s": r.compile_s, "first_call_s": r.first_call_s, **r.info}
        if ref is not None:
            entry["ratio_vs_fnet"] = summarize([a / b for a, b in zip(seconds[name], seconds["fnet"],
                                                                      strict=True)])
        if roof_gflops is not None:
            paired = [flops / (s / steps) / (runners["roof"].info["flops"] / rs)
                      for s, rs in zip(seconds[name], seconds["roof"], strict=True)]
            entry["pct_roof"] = 100 * entry["gflops"] / roof_gflops["median"]
            entry["pct_roof_paired"] = summarize([100 * p for p in paired])
        if r.check_losses is not None:
            entry["check_losses"] = [float(v) for v in r.check_losses]
            entry["final_loss"] = float(r.check_losses[-1])
            entry["losses_finite"] = bool(np.isfinite(r.check_losses).all())
            if ref is not None and ref.check_losses is not None:
                diff = np.abs(r.check_losses - ref.check_losses)
                entry["max_abs_loss_diff_vs_fnet"] = float(np.max(diff))
                entry["max_abs_loss_diff_vs_fnet_first_steps"] = float(np.max(diff[:FIRST_STEPS]))
        result["contenders"][name] = entry
    result["loadavg_end"] = _loadavg()
    return result


# --------------------------------------------------------------------------- memory, train script


def child_memory(config: Config, args: argparse.Namespace, contender: str) -> dict:
    """In a subprocess: prepare ``contender`` (or nothing, for ``baseline``), run it twice, report memory."""
    import jax

    net = build_net(config)
    steps, _, train_size = sizes(config, args)
    x, t = load_data(config, train_size)
    params, _ = net.init(jax.random.key(args.seed), (None, *x.shape[1:]))
    before = _proc_status_mb("VmHWM")
    if contender in ("fnet", "autodiff"):
        options = dict(args.xla_option or [])
        prepare_jax(contender, net, params, x, t, config, steps, args.seed, options).run(0)
    elif contender in ("numpy", "numpy1"):
        r = prepare_numpy(net, params, x, t, config, steps, args.seed, 1 if contender == "numpy1" else None)
        if not isinstance(r, str):
            r.run(0)
    elif contender == "roof":
        prepare_roof(args.roof_n).run(0)
    return {"vmhwm_mb": _proc_status_mb("VmHWM"), "vmhwm_before_mb": before,
            "vmrss_mb": _proc_status_mb("VmRSS")}


def isolated_memory(config: Config, args: argparse.Namespace, contenders: Sequence[str],
                    log: Callable[[str], None]) -> dict:
    """Peak RSS of a process running one contender, and of one that only loads data and JAX."""
    out = {}
    for name in ("baseline", *contenders):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--config", config.name, "--child-memory", name,
               "--seed", str(args.seed)]
        for opt in ("steps", "train_size"):
            if getattr(args, opt) is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
        if args.quick:
            cmd.append("--quick")
        for opt_name, value in args.xla_option or []:
            cmd.append(f"--xla-option={opt_name}={value}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=_child_env())
        if proc.returncode != 0:
            out[name] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            continue
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = out.get("baseline", {}).get("vmhwm_mb")
    for name, rec in out.items():
        if base is not None and "vmhwm_mb" in rec and name != "baseline":
            rec["over_baseline_mb"] = rec["vmhwm_mb"] - base
    log(f"[{config.name}] peak RSS (MiB, own process): " + ", ".join(
        f"{n} {r.get('vmhwm_mb', float('nan')):.0f}" for n, r in out.items()))
    return out


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_train_script(log: Callable[[str], None], xla_options: Sequence[tuple[str, Any]] = ()) -> dict:
    """``scripts/train.py --quiet --json`` with the book's defaults, timed from process start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.json"
        t0 = time.perf_counter()
        options = [f"--xla-option={k}={v}" for k, v in xla_options]
        proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--quiet", "--json",
                               str(path), *options], cwd=ROOT, capture_output=True, text=True, check=False,
                              env=_child_env())
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            return {"error": proc.stderr.strip()[-2000:], "wall_s": wall}
        report = json.loads(path.read_text())
    timings = report["timings"]
    iters = int(sum(report["history"]["steps"]))
    out = {"wall_s": wall, **timings, "iters": iters, "batch_size": report["config"]["batch_size"],
           # before the script's clock starts (interpreter, imports) and what fit does besides
           # compiling and training (per-epoch evaluation on 60000 + 10000 examples, checks)
           "startup_s": wall - timings["total_s"],
           "eval_and_other_s": (timings["total_s"] - timings["data_s"] - timings["compile_s"]
                                - timings["train_s"]),
           "epochs": len(report["history"]["epoch"]), "final": report["final"],
           "train_ms_per_step": timings["train_s"] / iters * 1e3}
    log(f"[train.py] wall {wall:.1f}s, training {timings['train_s']:.1f}s; "
        f"test acc {report['final'].get('test_acc', float('nan')):.4f}")
    return out


# --------------------------------------------------------------------------- report


def checks(results: dict) -> list[dict]:
    """The target checks (informational): fnet <= autodiff, wide >= 85% roof, book >= 1.5x NumPy."""
    out = []

    def add(name: str, ok: bool | None, detail: str) -> None:
        out.append({"check": name, "status": "n/a" if ok is None else "PASS" if ok else "FAIL",
                    "detail": detail})

    for cname, res in results.items():
        c = res.get("contenders", {})
        for name in ("fnet", "autodiff"):
            ops = c.get(name, {}).get("hlo_ops")
            if ops is not None:
                n = sum(ops.get(k, 0) for k in MATMUL_OPS)
                im2col = res.get("hlo_im2col_patches", 0) if name == "fnet" else 0
                expected = res["hlo_dots_expected"] + im2col
                add(f"{cname}: {name} skips the first layer's dx", n == expected,
                    f"{n} matmul/convolution ops in the compiled epoch, {expected} expected")
        if "fnet" in c and "autodiff" in c:
            r = 1 / c["autodiff"]["ratio_vs_fnet"]["median"]
            lo, hi = 1 / c["autodiff"]["ratio_vs_fnet"]["max"], 1 / c["autodiff"]["ratio_vs_fnet"]["min"]
            add(f"{cname}: fnet/autodiff time <= 1.00", r <= 1.0,
                f"median paired ratio {r:.3f} (per-repeat range {lo:.3f}-{hi:.3f}"
                + ("; the range straddles 1: not distinguishable from equal at this noise)" if lo <= 1 <= hi
                   else ")"))
        for name in ("autodiff", "numpy", "numpy1"):
            d1 = c.get(name, {}).get("max_abs_loss_diff_vs_fnet_first_steps")
            if "fnet" in c and d1 is not None:
                d = c[name]["max_abs_loss_diff_vs_fnet"]
                add(f"{cname}: {name} computes fnet's losses", d1 <= FIRST_STEPS_TOL and d <= EPOCH_TOL,
                    f"max |loss difference| {d1:.1e} over the first {FIRST_STEPS} steps (bound "
                    f"{FIRST_STEPS_TOL:.0e}), {d:.1e} over the epoch (bound {EPOCH_TOL:.0e})")
        if cname == "wide" and "fnet" in c and "pct_roof" in c["fnet"]:
            p = c["fnet"]["pct_roof"]
            add("wide: fnet >= 85% of the matmul roof", p >= 85,
                f"{p:.1f}% (paired per repeat {c['fnet']['pct_roof_paired']['min']:.1f}-"
                f"{c['fnet']['pct_roof_paired']['max']:.1f}%)")
        nps = [n for n in ("numpy", "numpy1") if n in c]
        if cname == "book" and "fnet" in c and nps:
            best = min(nps, key=lambda n: c[n]["ratio_vs_fnet"]["median"])
            s = c[best]["ratio_vs_fnet"]
            add("book: fnet >= 1.5x faster than NumPy", s["median"] >= 1.5,
                f"fastest NumPy ({best}, {c[best]['blas_threads']} BLAS threads) time / fnet time = "
                f"{s['median']:.2f} (per-repeat {s['min']:.2f}-{s['max']:.2f})"
                + "".join(f"; {n}: {c[n]['ratio_vs_fnet']['median']:.2f}" for n in nps if n != best))
    return out


def _num(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else format(value, spec) + suffix


def _loss_diff(entry: dict) -> str:
    if "max_abs_loss_diff_vs_fnet" not in entry:
        return ""
    return f"{entry['max_abs_loss_diff_vs_fnet_first_steps']:.0e}/{entry['max_abs_loss_diff_vs_fnet']:.0e}"


def format_table(results: dict) -> str:
    head = (f"{'config':8} {'contender':9} {'ms/step':>9} {'min-max':>17} {'samples/s':>10} {'x fnet':>6} "
            f"{'GFLOP/s':>8} {'% roof':>6} {'compile s':>9} {'final loss':>10} {'loss diff':>15}")
    lines = [head, "-" * len(head)]
    for cname, res in results.items():
        if "contenders" not in res:
            lines.append(f"{cname:8} skipped: {res.get('skipped')}")
            continue
        lines.append(f"{cname:8} {res['description']}: batch {res['batch_size']}, {res['steps']} steps "
                     f"per epoch on {res['n_train']} examples, {res['repeats']} repeats, "
                     f"{res['flops_per_step'] / 1e6:.1f} MFLOP/step")
        for name, e in res["contenders"].items():
            ms = e["ms_per_step"]
            ratio = e.get("ratio_vs_fnet", {}).get("median")
            lines.append(
                f"{cname:8} {name:9} {ms['median']:9.3f} {ms['min']:8.3f}-{ms['max']:<8.3f} "
                f"{e['samples_per_s']:10,.0f} {_num(ratio, '6.2f'):>6} {e['gflops']:8.1f} "
                f"{_num(e.get('pct_roof'), '5.1f', '%'):>6} {_num(e['compile_s'], '9.2f'):>9} "
                f"{_num(e.get('final_loss'), '10.5f'):>10} "
                f"{_loss_diff(e):>15}")
        if "roof" in res:
            g = res["roof"]["gflops"]
            lines.append(f"{cname:8} {'roof':9} {'':>9} {'':>17} {'':>10} {'':>6} {g['median']:8.1f} "
                         f"{'100%':>6}   ({res['roof']['n']}^2 jnp.dot, "
                         f"{g['min']:.0f}-{g['max']:.0f} GFLOP/s)")
        for name, why in res.get("skipped", {}).items():
            lines.append(f"{cname:8} {name:9} skipped: {why}")
        for name, e in res["contenders"].items():
            if "hlo_ops" in e:
                lines.append(f"{'':8} {name} hlo: " + ", ".join(f"{k} {v}" for k, v in e["hlo_ops"].items())
                             + (f"; XLA temp {e['xla_memory_bytes']['temp'] / 2**20:.1f} MiB"
                                if "xla_memory_bytes" in e else ""))
        for s in res.get("shape_roofs", []):
            lines.append(f"{'':8} roof at {s['matmul']:18} {tuple(s['lhs'])}x{tuple(s['rhs'])}: "
                         f"{s['gflops']:6.1f} GFLOP/s ({s['ms']:.3f} ms)")
        for name, e in res["contenders"].items():
            prof = e.get("profile")
            if prof and "error" in prof:
                lines.append(f"{'':8} {name} profile: {prof['error']}")
            elif prof:
                lines.append(f"{'':8} {name} profile, us per step: {prof['ops_us_per_step']:.1f} inside "
                             f"{prof['n_ops']} ops of {prof['traced_us_per_step']:.1f} in the traced epoch "
                             f"({e['ms_per_step']['median'] * 1e3:.1f} untraced); the largest ops:")
                lines.extend(f"{'':10} {o['us_per_step']:7.1f}  {o['calls_per_step']:5.2f}x  {o['op']:32} "
                             f"{o['hlo']}" for o in prof["top"])
        if "memory" in res:
            lines.append(f"{'':8} peak RSS, own process (MiB): " + ", ".join(
                f"{n} {r['vmhwm_mb']:.0f}"
                + (f" (+{r['over_baseline_mb']:.0f})" if "over_baseline_mb" in r else "")
                for n, r in res["memory"].items() if "vmhwm_mb" in r))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from fnet.cli import xla_option

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=[*CONFIGS, "all"], default=None,
                   help="which configuration (default: book and wide; all adds convnet when fnet has it)")
    p.add_argument("--steps", type=int, help="steps per timed epoch (default per config: book 600, wide 20, "
                                             "convnet 50)")
    p.add_argument("--repeats", type=int, help="timed repeats (default: book 7, wide 5, convnet 5)")
    p.add_argument("--quick", action="store_true", help="few steps and repeats: a smoke test under a minute")
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)} (default all)")
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
    p.add_argument("--xla-option", type=xla_option, action="append", metavar="NAME=VALUE",
                   help="an XLA compiler option for the fnet and autodiff contenders alike, and for "
                        "--train-script (repeatable; see fnet-train --help)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one fnet epoch per config (jax.profiler) and print where a step's "
                        "time goes, op by op")
    p.add_argument("--json", type=Path, metavar="PATH", help="write every figure and the machine as JSON")
    p.add_argument("--child-memory", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
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

    if args.child_memory:
        print(json.dumps(child_memory(CONFIGS[args.config or "book"], args, args.child_memory)))
        return 0

    configs = (["book", "wide"] if args.config is None else list(CONFIGS) if args.config == "all"
               else [args.config])
    log = print
    machine = describe_machine()
    log(f"machine: {machine['cpu_model']}, {machine['cpus_usable']} usable cores, JAX {machine['jax']} on "
        f"{machine['jax_device_kind']} ({machine['jax_platform']}), NumPy {machine['numpy']} with "
        f"{machine['numpy_blas_threads']} BLAS threads; load average {machine['loadavg_start']}")
    if args.xla_option:
        log("XLA options for fnet and autodiff: " + ", ".join(f"{k}={v!r}" for k, v in args.xla_option))
    results: dict[str, Any] = {}
    for cname in configs:
        results[cname] = bench_config(CONFIGS[cname], args, names, log)
        if args.isolate and "contenders" in results[cname]:
            results[cname]["memory"] = isolated_memory(CONFIGS[cname], args,
                                                       [n for n in names if n != "roof"], log)
    train_script = run_train_script(log, args.xla_option or []) if args.train_script else None
    machine["loadavg_end"] = _loadavg()
    machine["peak_rss_mb_this_process"] = _proc_status_mb("VmHWM")

    print()
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
    print()
    for c in target:
        print(f"{c['status']:4} {c['check']}: {c['detail']}")

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": machine, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                             for k, v in vars(args).items()},
            "flop_rule": FLOP_RULE, "configs": results, "train_script": train_script, "checks": target,
        }, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
