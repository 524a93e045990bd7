"""Data-parallel training with JAX's own sharding: a device mesh and ``shard_map``.

The mesh has two axes, ``("hosts", "devices")``: one row per process (host),
one column per local device. Parameters, optimizer state and network state are
**replicated** on every device; each global minibatch is **split** over the
devices; each device runs forward and the handwritten backward on its slice,
and the gradients are averaged across all devices (``lax.pmean``) before the
(identical, replicated) optimizer update. The epoch stays one jitted
``lax.scan``.

Data placement: each host keeps its own shard of the examples (with one host,
all of them), replicated on its local devices, as a global array of shape
``(hosts, n_per_host, ...)`` split along ``"hosts"``. On one host the
shuffling is global and identical to single-device training, so 4 devices
give the parameters of 1 device with the same global batch and seed (up to
float32 rounding in the gradient average). With several hosts each host
shuffles its own shard.

Multi-host: start the same program on every host with
``initialize(coordinator="host0:1234", num_processes=N, process_id=i)``
(``scripts/train.py --coordinator host0:1234 --num-processes N --process-id i``)
before anything else touches JAX.
"""

from __future__ import annotations

import math
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnet import _args

AXES = ("hosts", "devices")


def initialize(coordinator: str, num_processes: int, process_id: int) -> None:
    """Join a multi-host run: ``jax.distributed.initialize`` with these settings.

    Call it first, before any other JAX call, on every host, with the same
    ``coordinator`` (``"host:port"`` of process 0) and ``num_processes``.
    """
    if not 0 <= process_id < num_processes:
        raise ValueError(f"distributed.initialize: process_id must be in [0, {num_processes}), "
                         f"got {process_id}")
    # CPU processes talk through gloo; GPUs use NCCL whatever this says.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def ask_for_cpu_devices(n: int) -> bool:
    """Ask JAX for ``n`` CPU devices, before its backends start: on a CPU, ``n`` devices that share
    the machine's cores and run at the same time (data parallel on one machine, or the evaluation
    beside training). Not when the user set them up (``XLA_FLAGS=--xla_force_host_platform_device_count``,
    ``JAX_NUM_CPU_DEVICES``) or JAX has started in this process; returns whether it asked. On a GPU or
    TPU the CPU devices go unused."""
    if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
            or jax.config.jax_num_cpu_devices >= 0):
        return False
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already started (e.g. a script's main() called from Python): as it is
        return False
    return True


def make_mesh(devices: int | None = None) -> Mesh:
    """A ``("hosts", "devices")`` mesh over ``devices`` devices (default: all of them).

    With several processes, every process contributes ``devices / num_processes``
    of its local devices.
    """
    hosts = jax.process_count()
    available = jax.devices()
    devices = len(available) if devices is None else devices
    devices = _args.count("make_mesh", "devices", devices, 1)
    if devices > len(available):
        raise ValueError(f"make_mesh: {devices} devices requested, but only {len(available)} are visible "
                         f"({available[0].platform}). On a CPU, XLA_FLAGS="
                         f"--xla_force_host_platform_device_count={devices} (set before JAX starts) "
                         "simulates more")
    if devices % hosts:
        raise ValueError(f"make_mesh: {devices} devices cannot be split evenly over {hosts} processes")
    per_host = devices // hosts
    grid = []
    for p in range(hosts):
        local = [d for d in available if d.process_index == p]
        if len(local) < per_host:
            raise ValueError(f"make_mesh: process {p} has {len(local)} devices, {per_host} needed")
        grid.append(local[:per_host])
    return Mesh(np.array(grid), AXES)


def default_mesh() -> Mesh | None:
    """All devices when there are several (``jax.devices()``), else ``None`` (plain single-device jit)."""
    return make_mesh() if len(jax.devices()) > 1 else None


def size(mesh: Mesh) -> int:
    """The number of devices in the mesh."""
    return math.prod(mesh.shape.values())


def check_batch(mesh: Mesh, batch_size: int, what: str = "batch_size") -> int:
    """The per-device batch; a clear error when ``batch_size`` does not split evenly."""
    n = size(mesh)
    if batch_size % n:
        lower, upper = batch_size // n * n, (batch_size // n + 1) * n
        hint = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(f"the global {what} ({batch_size}) must be divisible by the number of devices "
                         f"({n}) so that every device gets the same share; use {hint}")
    return batch_size // n


def host_shard(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """This process's share of a dataset: every ``num_processes``-th example.

    Shards have equal sizes (up to ``num_processes - 1`` examples are left out).
    With one process, the data unchanged.
    """
    hosts, p = jax.process_count(), jax.process_index()
    if hosts == 1:
        return x, t
    n = len(x) // hosts
    return x[p::hosts][:n], t[p::hosts][:n]


def put_data(mesh: Mesh, local: np.ndarray) -> jax.Array:
    """This host's examples as the global ``(hosts, n_per_host, ...)`` array, split along hosts."""
    sharding = NamedSharding(mesh, P("hosts"))
    return jax.make_array_from_process_local_data(sharding, np.asarray(local)[None])


def replicate(mesh: Mesh, tree):
    """Every leaf of ``tree`` replicated on every device of the mesh."""
    sharding = NamedSharding(mesh, P())
    return jax.tree.map(lambda a: jax.device_put(a, sharding), tree)
