"""A run's programs: traced from shapes alone, compiled side by side, the evaluation beside the
first epoch.

A run has three programs (``compile_run``): the initialisation (``lower_init``), one epoch
(``lower_epochs``; with ``progress``, its pieces) and one evaluation of every set it
measures (``lower_evaluation``). They are traced before the carry exists, from shapes
(``shapes_like``), so that the initialisation compiles with the others. Every program
returns what the loop needs to decide on its own outputs (``finite_leaves`` beside the
losses), so nothing eager runs between them.

Tracing is Python, one program at a time, and XLA compiles each in a thread as soon as
it is traced. The initialisation and the epoch are needed
before training starts; the evaluation only once the first epoch is done. So
``compile_all(..., later=("evaluate",))`` waits for the first ones and leaves the evaluation
compiling while the first epoch trains: it is handed back as a ``Compiling`` program, which
waits for its compilation when it is first called. On a two-core CPU, compiling three
programs at once kept both cores busy and delayed the epoch program, which the first epoch
waits for (the measurements are in ``docs/speed.md``, "The cold start").
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import math
import re
import time
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnet.train.epoch import chunk_lengths, finite_leaves, make_epoch_pieces, make_train_epoch
from fnet.train.evaluate import make_evaluate
from fnet.train.settings import Placed, Settings

__all__ = ["CPU_SMALL_MATMUL_OPTIONS", "CPU_XLA_OPTIONS", "SMALL_MATMUL_MACS", "Compiling", "compile_all",
           "compile_run", "compiler_options", "epoch_program", "largest_matmul", "lower_epochs",
           "lower_evaluation", "lower_in_pieces", "lower_init", "shapes_like", "wait_for_compilations"]

_PENDING: set[concurrent.futures.Future] = set()  # deferred compilations not yet done

# XLA's CPU compiler hands every convolution with more than 16 channels to YNNPACK; Eigen's
# convolution took 0.5-0.75 of YNNPACK's time on each of the ResNet's, and its training step 0.85
# (docs/speed.md, "Convolutions by Eigen"). So fnet's programs on a CPU keep XLA's other YNNPACK
# fusions (dots, reductions) but not its convolutions; programs without one compile as before.
CPU_XLA_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type":
                   "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"}

# YNNPACK's matmuls win on the larger products, Eigen's on the small ones: a program whose
# every matmul has at most SMALL_MATMUL_MACS multiply-adds (the book's 784-50-10 network at
# batch 100: 3.9 million) compiles its matmuls with Eigen too. Its epoch took 0.71 of the time;
# MLPs whose largest product is 5-16 million took 0.94-0.99, 20 million and more 1.03-1.14
# (docs/speed.md, "Small matmuls by Eigen").
SMALL_MATMUL_MACS = 8_000_000
CPU_SMALL_MATMUL_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_REDUCE"}


def compiler_options(xla_options: Mapping[str, Any] | None, platform: str | None = None,
                     program: Any = None) -> dict:
    """The XLA options fnet compiles a run's programs with: on a CPU (``platform``; default: JAX's
    default backend) ``CPU_XLA_OPTIONS``, or ``CPU_SMALL_MATMUL_OPTIONS`` for a traced ``program``
    (``jit(f).lower(...)``) whose every matmul is small (``largest_matmul``); then
    ``xla_options``, whose entries win."""
    defaults = {}
    if (platform or jax.default_backend()) == "cpu":
        small = program is not None and largest_matmul(program) <= SMALL_MATMUL_MACS
        defaults = CPU_SMALL_MATMUL_OPTIONS if small else CPU_XLA_OPTIONS
    return {**defaults, **dict(xla_options or {})}


_DOT = re.compile(r"stablehlo\.dot_general .*?contracting_dims = \[([\d, ]*)\] x .*? : "
                  r"\(tensor<([^>]*)>, tensor<[^>]*>\) -> tensor<([^>]*)>")


def largest_matmul(program: Any) -> float:
    """The most multiply-adds of any one matmul (``dot_general``) in a traced program, loops and
    calls included: output elements times the contracted length. 0 when it has none; infinite
    when a matmul's shapes cannot be read (the text of another JAX version, say), so that such a
    program keeps the defaults for large matmuls rather than being guessed small."""

    def dims(tensor: str) -> list[int]:
        return [int(d) for d in tensor.split(",")[0].split("x")[:-1]]

    most = 0
    for line in program.as_text().splitlines():
        if "dot_general" not in line:
            continue
        found = _DOT.search(line)
        try:
            contracting, lhs, out = found.groups()
            lhs_dims = dims(lhs)
            length = math.prod(lhs_dims[int(i)] for i in contracting.split(",") if i.strip())
            most = max(most, math.prod(dims(out)) * length)
        except (AttributeError, ValueError, IndexError):
            return math.inf
    return most


def compile_run(run: Settings, data: Placed, params=None) -> tuple[dict, float]:
    """Every program of the run, compiled ahead of time (tracing included, measured apart from
    training): ``({"init" (given the seed's key), "epoch" (or the pieces), "evaluate" (when there is a
    set to evaluate)}, seconds)``. ``params``: ``fit(params=)``, or ``None`` for ``net.init``'s.

    The evaluation is still compiling when this returns (``Compiling``): its compilation overlaps
    the first epoch; ``seconds`` counts the others.
    """
    t0 = time.perf_counter()
    seed_key = jax.random.key(run.seed)
    init = lower_init(run, seed_key, params)
    state = run.net.init_state(run.input_shape) if run.stateful else None
    carry_like = shapes_like(run.mesh, (*init.out_info[:2], state))
    lowered = itertools.chain([("init", init)], lower_epochs(run, carry_like, data, seed_key),
                              lower_evaluation(run, carry_like, data))
    programs = compile_all(lowered, run.xla_options, later=("evaluate",))
    programs["init"] = functools.partial(programs["init"], seed_key)
    if "epoch" in programs:
        dynamic = len(run.plan.step_counts(run.first_epoch)) > 1
        programs["epoch"] = epoch_program(programs["epoch"], dynamic=dynamic)
    return programs, time.perf_counter() - t0


def lower_init(run: Settings, seed_key, params):
    """The initialisation ``(seed_key, params) -> (params, opt_state, run_key)``, traced: one program,
    compiled beside the epoch and evaluation (rather than one per eager random op in every layer's
    init). ``seed_key`` splits into the key of ``net.init`` and the run's key (each epoch folds its
    number into the run's key)."""

    @jax.jit
    def initial(seed_key, params):
        k_init, run_key = jax.random.split(seed_key)
        if params is None:
            params, _ = run.net.init(k_init, run.input_shape)
        return params, run.optimizer.init(params), run_key

    return initial.lower(seed_key, params)


def lower_epochs(run: Settings, carry, data: Placed, run_key) -> Iterator[tuple[Any, Any]]:
    """The epoch programs, traced: one program for every epoch (a short final one included, its step
    count then an input) returning ``(carry, losses, finite_leaves(params))``; with ``progress``, its
    ``order`` and ``run`` pieces per epoch length. ``run_key``: a key of the run key's type (only its
    type is traced)."""
    counts = run.plan.step_counts(run.first_epoch)
    if run.progress is not None:
        for n_steps in counts:
            pieces = make_epoch_pieces(run.net, run.loss, run.optimizer, batch_size=run.batch_size,
                                       n_steps=n_steps, sampling=run.sampling, augment=run.augment)
            yield from lower_in_pieces(pieces, carry, data.x, data.t, run_key, n_steps).items()
        return
    if not counts:
        return
    epoch = make_train_epoch(run.net, run.loss, run.optimizer, batch_size=run.batch_size, n_steps=counts[0],
                             sampling=run.sampling, mesh=run.mesh, augment=run.augment)

    def numbered_epoch(params, opt_state, state, x, t, run_key, e, *steps):  # epoch e's key: fold_in
        carry, losses = epoch(params, opt_state, state, x, t, jax.random.fold_in(run_key, e), *steps)
        return carry, losses, finite_leaves(carry[0])

    short = () if len(counts) == 1 else (np.int32(counts[0]),)  # epochs of several lengths: an input
    yield "epoch", jax.jit(numbered_epoch).lower(*carry, data.x, data.t, run_key, np.int32(0), *short)


def lower_in_pieces(pieces: tuple, carry, x, t, key, n_steps: int) -> dict:
    """The traced pieces of an epoch of ``n_steps`` (``pieces``: ``make_epoch_pieces``'s ``(order,
    run)``): its ``order`` and a ``run`` per chunk length, each returning ``(carry, losses,
    finite_leaves(params))``."""
    order, run = pieces
    n = x.shape[0]
    lowered = {("order", n_steps): jax.jit(lambda k: order(k, n)).lower(key)}
    idx, keys = jax.eval_shape(lambda k: order(k, n), key)

    def piece(length):  # rows start..start+length of the epoch's order, cut inside the program
        def run_piece(params, opt_state, state, x, t, idx, keys, start):
            cut = functools.partial(jax.lax.dynamic_slice_in_dim, start_index=start, slice_size=length)
            carry, losses = run(params, opt_state, state, x, t, cut(idx), cut(keys))
            return carry, losses, finite_leaves(carry[0])
        return run_piece

    for length in set(chunk_lengths(n_steps)):
        lowered[("run", n_steps, length)] = jax.jit(piece(length)).lower(*carry, x, t, idx, keys, 0)
    return lowered


def lower_evaluation(run: Settings, carry, data: Placed) -> Iterator[tuple[Any, Any]]:
    """The evaluation of every set of ``run.eval_sets`` at once, traced (nothing when there is none):
    ``(params, state, sets) -> [(loss, *metrics) per set]``, on ``run.eval_device`` when there is one."""
    if not data.eval_sets:
        return
    evaluate = make_evaluate(run.net, run.loss, batch_size=run.eval_batch_size, mesh=run.mesh,
                             metrics=run.metrics)

    def after_epoch(params, state, sets):
        """Each set's loss and metrics."""
        return [evaluate(params, state, *xt) for xt in sets]

    params, _, state = carry
    if run.eval_device is not None:
        params, state = shapes_like(run.eval_device, (params, state))
    yield "evaluate", jax.jit(after_epoch).lower(params, state, data.eval_sets)


def shapes_like(where: Mesh | jax.Device | None, tree):
    """Shapes and dtypes of ``tree`` (arrays or ``ShapeDtypeStruct``), placed as ``fit`` places the
    carry (replicated over a mesh; on one device, the default one or ``where``), to trace the
    programs before the carry exists."""
    if isinstance(where, Mesh):
        sharding = NamedSharding(where, P())
    else:
        sharding = None if where is None else jax.sharding.SingleDeviceSharding(where)
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


class Compiling:
    """A program XLA is still compiling in a thread; calling it waits for the compilation (and
    raises its error, if it failed), then runs it."""

    def __init__(self, future: concurrent.futures.Future):
        self._future = future

    def __call__(self, *args):
        return self._future.result()(*args)

    def compiled(self):
        """The compiled program, once compiled (this waits)."""
        return self._future.result()


def compile_all(lowered: Iterable[tuple[Any, Any]], xla_options: Mapping[str, Any] | None, *,
                later: Collection[str] = ()) -> dict:
    """``{name: compiled program}`` for the ``(name, traced program)`` pairs of ``lowered``.

    Each program is compiled in a thread as soon as it is traced, so XLA compiles one while
    the next is traced. This returns once all are compiled, except those named in ``later``:
    their compilation starts once the others are done, and they come back as ``Compiling``.
    Each program's options are ``compiler_options(xla_options, program=...)``. An ``xla_options``
    entry XLA rejects raises ``ValueError`` (from the first programs, before any is run); a default
    of fnet's that this XLA does not know (a later jaxlib may drop an experimental option) is left
    out, with a warning.
    """
    given = dict(xla_options or {})

    def compile_with(low, opts):
        return low.compile(opts) if opts else low.compile()

    def compile_one(low):
        options = compiler_options(given, program=low)
        try:
            return compile_with(low, options)
        except jax.errors.JaxRuntimeError as e:
            if not options or "option" not in str(e):
                raise
            rejected = e
        if options != given:  # perhaps one of fnet's defaults: then the caller's options alone compile
            with contextlib.suppress(jax.errors.JaxRuntimeError):
                compiled = compile_with(low, given)
                defaults = {k: v for k, v in options.items() if k not in given}
                warnings.warn(f"fit: this XLA rejects fnet's default compiler options {defaults} "
                              f"({rejected}); compiled without them, as XLA's defaults (docs/speed.md)",
                              RuntimeWarning, stacklevel=2)
                return compiled
        raise ValueError(f"fit: XLA rejected xla_options={given}: {rejected}") from None

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fnet-compile")
    try:
        futures, deferred = {}, []
        for name, low in lowered:
            if name in later:
                deferred.append((name, low))
            else:
                futures[name] = pool.submit(compile_one, low)
        programs = {name: f.result() for name, f in futures.items()}
        for name, low in deferred:
            future = pool.submit(compile_one, low)
            _PENDING.add(future)
            future.add_done_callback(_PENDING.discard)
            programs[name] = Compiling(future)
        return programs
    finally:
        pool.shutdown(wait=False)  # a deferred compilation runs on; the pool takes no more work


def wait_for_compilations() -> None:
    """Wait until every deferred compilation has finished (or failed). A run that stops before
    its first evaluation leaves one running; a process that leaves with ``os._exit``
    (``fnet.cli.run``) calls this first, so that JAX's persistent cache is never left with a
    half-written entry."""
    concurrent.futures.wait(list(_PENDING))


def epoch_program(compiled, *, dynamic: bool) -> Callable:
    """``(params, opt_state, state, x, t, key, n_steps) -> (carry, losses)`` from the compiled epoch,
    which takes ``n_steps`` as an input only when the run has epochs of different lengths."""
    if dynamic:
        return lambda *args: compiled(*args[:-1], np.int32(args[-1]))
    return lambda *args: compiled(*args[:-1])
