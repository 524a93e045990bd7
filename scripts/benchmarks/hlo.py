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


_COMPUTATION = re.compile(r"^%([\w.-]+) \(")


_CALLS = re.compile(r"calls=%([\w.-]+)")


CATEGORIES = ("convolutions", "matmuls", "copies and transposes", "gathers and scatters", "shuffle (sort)",
              "elementwise and reductions")
"""Where a step's time goes, by the kind of work of each op (``op_categories``)."""


def op_categories(hlo_text: str) -> dict[str, str]:
    """``{instruction name: category}``: a fusion by what its fused computation holds (a convolution,
    else a dot, else elementwise work and reductions), any other op by its opcode."""
    inside: dict[str, set] = {}
    current = None
    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            current = inside.setdefault(m.group(1), set())
            continue
        d = _HLO_DEF.match(line)
        if d and current is not None:
            current.add(d.group(3))
            calls = _CALLS.search(line)
            if calls:
                current.add("calls:" + calls.group(1))

    def ops_of(comp: str, seen=()) -> set:
        ops = set()
        for op in inside.get(comp, ()):
            if op.startswith("calls:") and op[6:] not in seen:
                ops |= ops_of(op[6:], (*seen, comp))
            else:
                ops.add(op)
        return ops

    def category(ops: set) -> str:
        if "convolution" in ops:
            return "convolutions"
        if "dot" in ops or "custom-call" in ops:
            return "matmuls"
        if ops & {"gather", "scatter", "dynamic-slice", "dynamic-update-slice"} and len(ops) <= 3:
            return "gathers and scatters"
        if "sort" in ops:
            return "shuffle (sort)"
        if ops <= {"copy", "transpose", "bitcast", "parameter", "tuple", "get-tuple-element"}:
            return "copies and transposes"
        return "elementwise and reductions"

    out = {}
    for line in hlo_text.splitlines():
        d = _HLO_DEF.match(line)
        if not d:
            continue
        name, _, op = d.groups()
        calls = _CALLS.search(line)
        out[name] = category(ops_of(calls.group(1)) if op == "fusion" and calls else {op})
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
    kinds = op_categories(hlo_text)
    ops = [{"op": name, "hlo": described.get(name, ""), "kind": kinds.get(name, "elementwise and reductions"),
            "calls_per_step": n / steps, "us_per_step": ns / steps / 1e3} for name, (n, ns) in totals.items()]
    ops.sort(key=lambda o: -o["us_per_step"])
    by_kind = {k: sum(o["us_per_step"] for o in ops if o["kind"] == k) for k in CATEGORIES}
    inside = sum(o["us_per_step"] for o in ops)
    by_kind["runtime between ops"] = max(0.0, traced_s / steps * 1e6 - inside)
    return {"ops_us_per_step": inside, "traced_us_per_step": traced_s / steps * 1e6, "top": ops[:top],
            "n_ops": len(ops), "by_kind": by_kind}
