"""The decoded IDX files, kept as ``.npy`` in fnet's cache: a gzip file is decompressed once.

Decompressing Fashion-MNIST's 26 MB of training images takes about half a second each
time it is read; loading the decoded array from a ``.npy`` file takes a few
milliseconds (``docs/speed.md``, "The cold start"). The copy lives in
``~/.cache/fnet/decoded/`` (the dataset's own folder may be read-only, as the Debian
package's is) under a name keyed to the source file: its folder, name, size and
modification time. A changed source file gets a new name, so it is decoded afresh and
the copy of its old version is removed. The copy's name also carries the CRC-32 of its
array's bytes (25 ms for the 47 MB of training images): a copy whose bytes no longer
match, or that cannot be read, is damaged, and is rebuilt from the source with a
warning that says so, never used. One that cannot be written leaves the data as read
from the source, with a warning.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from fnet.data.idx import read_idx
from fnet.data.locate import cache_root

__all__ = ["cache_dir", "cached_path", "checksum", "read_decoded"]


def cache_dir() -> Path:
    """Where the decoded copies are: ``~/.cache/fnet/decoded``."""
    return cache_root() / "decoded"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_path(source: str | os.PathLike) -> Path:
    """Where ``source``'s decoded copy is named from: ``<key of its folder>/<file name>.<key of its
    version>``, from the resolved path, the size and the modification time (nanoseconds); the copy
    itself is that name with ``.<CRC-32 of its bytes>.npy`` appended."""
    source = Path(source).resolve()
    st = source.stat()
    version = _key(f"{st.st_size}:{st.st_mtime_ns}")
    return cache_dir() / _key(str(source.parent)) / f"{source.name}.{version}"


def checksum(array: np.ndarray) -> str:
    """The CRC-32 of an array's bytes, as 8 hex digits."""
    return f"{zlib.crc32(memoryview(np.ascontiguousarray(array)).cast('B')):08x}"


def read_decoded(source: str | os.PathLike, *, cache: bool = True) -> np.ndarray:
    """``read_idx(source)``, from the decoded copy in the cache when there is one for this very file.

    With ``cache=True`` a missing copy is written after decoding (atomically: a copy is
    whole or absent). **Returns** what ``read_idx`` returns (a fresh, writable array).
    **Raises** what ``read_idx`` raises; a cache that cannot be written only warns.
    """
    if not cache:
        return read_idx(source)
    stem = cached_path(source)
    for copy in sorted(stem.parent.glob(f"{stem.name}.*.npy")) if stem.parent.is_dir() else []:
        try:
            array = np.load(copy, allow_pickle=False)
            if copy.name == f"{stem.name}.{checksum(array)}.npy":
                return array
        except (OSError, ValueError, EOFError):  # unreadable: damaged as well
            pass
        warnings.warn(f"fnet.data: the decoded copy {copy} of {source} is damaged (its bytes do not match "
                      "its checksum); it is removed and rebuilt from the source", RuntimeWarning,
                      stacklevel=3)
        copy.unlink(missing_ok=True)
    array = read_idx(source)
    try:
        _write(stem, array)
    except OSError as e:
        warnings.warn(f"fnet.data: cannot keep the decoded copy of {source} in {stem.parent} "
                      f"({e.strerror or e}); the file will be decompressed on every load",
                      RuntimeWarning, stacklevel=3)
    return array


def _write(stem: Path, array: np.ndarray) -> None:
    path = stem.with_name(f"{stem.name}.{checksum(array)}.npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    source_name = path.name.rsplit(".", 3)[0]  # copies of the source's older versions go
    for old in path.parent.glob(f"{source_name}.*.npy"):
        if old != path and old.name.rsplit(".", 3)[0] == source_name:
            old.unlink(missing_ok=True)
