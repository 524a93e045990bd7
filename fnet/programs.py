"""Compiling a run's programs: side by side in threads, the evaluation beside the first epoch.

``fit`` traces its programs one by one (tracing is Python, one at a time) and XLA compiles
each in a thread as soon as it is traced. The initialisation and the epoch are needed
before training starts; the evaluation only once the first epoch is done. So
``compile_all(..., later=("evaluate",))`` waits for the first ones and leaves the evaluation
compiling while the first epoch trains: it is handed back as a ``Compiling`` program, which
waits for its compilation when it is first called. On a two-core CPU, compiling three
programs at once kept both cores busy and delayed the epoch program, which the first epoch
waits for (the measurements are in ``docs/speed.md``, "The cold start").
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import jax
import numpy as np

__all__ = ["Compiling", "compile_all", "epoch_program", "wait_for_compilations"]

_PENDING: set[concurrent.futures.Future] = set()  # deferred compilations not yet done


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
    An ``xla_options`` entry XLA rejects raises ``ValueError`` (from the first programs, before
    any is run).
    """
    options = dict(xla_options or {})

    def compile_one(low):
        try:
            return low.compile(options) if options else low.compile()
        except jax.errors.JaxRuntimeError as e:
            if not options or "option" not in str(e):
                raise
            raise ValueError(f"fit: XLA rejected xla_options={options}: {e}") from None

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
