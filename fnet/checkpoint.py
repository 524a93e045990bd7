"""Checkpoints: params, optimizer state, network state, random key, epoch, history and config.

One ``.npz`` file, no pickle: every array is stored under its pytree path
(``params/Affine1/W``, ``opt_state/...``), and a JSON entry ``__meta__`` holds
the epoch, the per-epoch history, the run's config and the key's PRNG
implementation. Files are written atomically (a temporary file in the same
directory, then ``os.replace``), so a crash never leaves a half-written
checkpoint where a good one was.

Loading needs templates (what the network and optimizer would create), so a
checkpoint that does not fit the network fails with a message naming the
mismatching entry.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fnet._trees import path_str

FORMAT = "fnet-checkpoint"
VERSION = 1
TREES = ("params", "opt_state", "state")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the network."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (an ``OSError`` too); the message names the user's path."""


@dataclasses.dataclass
class Checkpoint:
    """What a training run needs to continue exactly where it stopped."""

    params: Any
    opt_state: Any
    state: Any
    key: jax.Array
    epoch: int
    history: dict[str, np.ndarray]
    config: dict[str, Any]


def _flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[f"{prefix}/{path_str(path)}" if path else prefix] = np.asarray(leaf)
    return out


def _temporaries(path: Path) -> list[Path]:
    """Temporary files that writes of ``path`` left behind (a process killed while writing)."""
    return sorted(path.parent.glob(f".{path.name}.*.tmp"))


def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically. Returns the path.

    The file is written to a temporary file beside it, flushed to disk and renamed over
    ``path``, so ``path`` always holds a whole checkpoint, old or new. Temporary files of
    earlier writes of the same checkpoint that were killed midway are removed first
    (one process writes a given checkpoint). **Raises:** ``CheckpointError`` naming
    ``path`` when it cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in _temporaries(path):
            stale.unlink(missing_ok=True)
    except OSError as e:
        raise CheckpointWriteError(f"{path}: cannot write the checkpoint: {e.strerror or e}") from None
    arrays: dict[str, np.ndarray] = {}
    for name in TREES:
        arrays.update(_flatten(name, getattr(ckpt, name)))
    arrays["key"] = np.asarray(jax.random.key_data(ckpt.key))
    meta = {
        "format": FORMAT, "version": VERSION, "epoch": int(ckpt.epoch),
        "key_impl": str(jax.random.key_impl(ckpt.key)),
        "history": {k: np.asarray(v).tolist() for k, v in ckpt.history.items()},
        "config": ckpt.config,
    }
    arrays["__meta__"] = np.array(json.dumps(meta))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise CheckpointWriteError(f"{path}: cannot write the checkpoint: {e.strerror or e}") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise CheckpointWriteError(f"{path}: cannot write the checkpoint: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def restore(path: str | os.PathLike, net, input_shape: tuple, *, optimizer=None) -> Checkpoint:
    """A checkpoint read for ``net``, in one call: its parameters, network state (batch norm's running
    statistics) and, given the ``optimizer``, its state, each checked against what ``net.init`` (and
    ``optimizer.init``) make for ``input_shape`` (e.g. ``(None, 28, 28, 1)``).

    ``predict(net, ck.params, x, state=ck.state)`` then uses the saved model; ``fit(params=ck.params)``
    starts from it. **Raises:** ``CheckpointError`` naming the file and the first entry that does not fit.
    """
    from fnet.core import param_shapes

    params_like, _ = param_shapes(net, input_shape)
    state_like = net.init_state(input_shape) if "state" in net.uses else None
    opt_like = None if optimizer is None else jax.eval_shape(optimizer.init, params_like)
    return load(path, params_like=params_like, opt_state_like=opt_like, state_like=state_like)


def best_path(checkpoint: str | os.PathLike) -> Path:
    """Where ``fit(keep_best=)`` saves the best epoch: ``runs/book.npz`` -> ``runs/book.best.npz``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.best{checkpoint.suffix or '.npz'}")


_META_FIELDS = {"format": str, "version": int, "epoch": int, "key_impl": str, "history": dict, "config": dict}
_ZIP_MAGIC = b"PK\x03\x04"


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every array and the metadata; ``CheckpointError`` naming the file and the fault otherwise.

    Nothing is ever unpickled: an entry that would need pickle is a damaged file.
    """
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head != _ZIP_MAGIC:
            got = head.hex(" ") or "nothing (it is empty)"
            raise CheckpointError(f"{path}: not a readable fnet checkpoint: an .npz (zip) file starts with "
                                  f"bytes {_ZIP_MAGIC.hex(' ')}, this one with {got}")
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except CheckpointError:
        raise
    except ValueError as e:
        if "pickle" in str(e):  # numpy's advice (allow_pickle=True) would be wrong and unsafe here
            raise CheckpointError(f"{path}: damaged checkpoint: an entry is not a plain array (fnet never "
                                  "unpickles)") from None
        raise CheckpointError(f"{path}: not a readable fnet checkpoint ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise CheckpointError(f"{path}: not a readable fnet checkpoint (truncated or damaged: {e})") from None
    if "__meta__" not in arrays:
        raise CheckpointError(f"{path}: not an fnet checkpoint (no __meta__ entry)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged checkpoint: its __meta__ entry is not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        got = f"{meta.get('format')!r} version {meta.get('version')!r}" if isinstance(meta, dict) else meta
        raise CheckpointError(f"{path}: unsupported checkpoint format {got} (this fnet reads {FORMAT} "
                              f"v{VERSION})")
    for field, kind in _META_FIELDS.items():
        if not isinstance(meta.get(field), kind):
            raise CheckpointError(f"{path}: damaged checkpoint: __meta__ lacks {field!r} (a {kind.__name__})")
    if "key" not in arrays:
        raise CheckpointError(f"{path}: damaged checkpoint: the random key entry 'key' is missing")
    return arrays, meta


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The run's config and epoch, without building anything: ``{"epoch": k, "config": {...}}``."""
    _, meta = _read(Path(path))
    return {"epoch": meta["epoch"], "config": meta["config"]}


def _restore(path: Path, prefix: str, template, arrays: dict[str, np.ndarray], used: set) -> Any:
    leaves = []
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    for p, like in paths_leaves:
        name = f"{prefix}/{path_str(p)}" if p else prefix
        if name not in arrays:
            raise CheckpointError(f"{path} does not fit this network: entry {name} "
                                  f"(shape {tuple(like.shape)}) is missing from the file. Was it saved "
                                  "from a different architecture or optimizer?")
        value = arrays[name]
        if value.shape != tuple(like.shape):
            raise CheckpointError(f"{path} does not fit this network: {name} has shape {value.shape} in the "
                                  f"file, but the network expects {tuple(like.shape)}")
        if value.dtype != like.dtype:
            raise CheckpointError(f"{path}: {name} has dtype {value.dtype} in the file, but the network "
                                  f"expects {like.dtype}")
        if jnp.issubdtype(value.dtype, jnp.floating) and not np.isfinite(value).all():
            raise CheckpointError(f"{path}: {name} holds NaN or infinite values; a checkpoint of diverged "
                                  "weights is refused (resume from an earlier one, or train anew)")
        used.add(name)
        leaves.append(jnp.asarray(value))
    return jax.tree.unflatten(treedef, leaves)


def load(path: str | os.PathLike, *, params_like, opt_state_like=None, state_like=None) -> Checkpoint:
    """Read a checkpoint, checking every entry against templates.

    **Arguments:** templates with the structure, shapes and dtypes expected
    (arrays or ``jax.ShapeDtypeStruct``, e.g. from ``jax.eval_shape``):
    ``params_like`` (required), ``opt_state_like`` and ``state_like`` (the
    corresponding entries are skipped when ``None``).

    **Raises:** ``CheckpointError`` naming the first entry that is missing or has
    another shape or dtype, or listing entries the network does not have.
    """
    path = Path(path)
    arrays, meta = _read(path)
    used: set[str] = set()
    params = _restore(path, "params", params_like, arrays, used)
    opt_state = None if opt_state_like is None else _restore(path, "opt_state", opt_state_like, arrays, used)
    state = None if state_like is None else _restore(path, "state", state_like, arrays, used)
    checked = ("params",) + (("opt_state",) if opt_state_like is not None else ()) + (
        ("state",) if state_like is not None else ())
    extra = sorted(k for k in arrays if k.split("/")[0] in checked and k not in used)
    if extra:
        raise CheckpointError(f"{path} does not fit this network: the file has entries the network does "
                              f"not: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    try:
        key = jax.random.wrap_key_data(jnp.asarray(arrays["key"]), impl=meta["key_impl"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint: the random key does not load ({e})") from None
    history = {k: np.asarray(v) for k, v in meta["history"].items()}
    return Checkpoint(params, opt_state, state, key, meta["epoch"], history, meta["config"])
