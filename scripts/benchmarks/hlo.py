"""Reading compiled programs: op counts of the HLO text, and per-op times from a jax.profiler trace."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
