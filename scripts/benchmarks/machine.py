"""The machine: CPU model, load, memory of this process, OpenBLAS's threads, JAX's device."""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import os
import platform

import numpy as np


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def loadavg() -> list[float] | None:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]
    return None


def proc_status_mb(field: str) -> float | None:
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


def cpu_devices_per_core() -> None:
    """Ask JAX for one CPU device per usable core, for the ``fnet_dp`` contender (as ``fnet-train
    --devices N`` does), before JAX starts; not if the user set the CPU devices up."""
    from fnet import distributed

    distributed.ask_for_cpu_devices(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                    else os.cpu_count() or 1)


def describe_machine() -> dict:
    import jax
    import jaxlib

    dev = jax.devices()[0]
    try:
        mem = dev.memory_stats()
    except Exception:  # some backends raise instead of returning None
        mem = None
    return {
        "cpu_model": cpu_model(),
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
        "loadavg_start": loadavg(),
    }
