"""The IDX file format of MNIST and Fashion-MNIST, and ``DataError``.

Two zero bytes, a type byte (0x08 = unsigned byte), a byte with the number of
dimensions, one big-endian 4-byte size per dimension, then the values,
big-endian, in C order. Files may be gzip-compressed (told by their first
bytes, not their names).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "read_idx"]


class DataError(ValueError):
    """A data file is missing, damaged or inconsistent, or could not be downloaded."""


# type byte -> (name in the IDX description, big-endian NumPy dtype)
_IDX_TYPES = {
    0x08: ("unsigned byte", ">u1"),
    0x09: ("signed byte", ">i1"),
    0x0B: ("short", ">i2"),
    0x0C: ("int", ">i4"),
    0x0D: ("float", ">f4"),
    0x0E: ("double", ">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not (told by its first bytes, not its name).

    **Returns:** an array with the shape the header declares and the dtype of
    its type byte in native byte order (``uint8`` for 0x08; also ``int8``,
    ``int16``, ``int32``, ``float32``, ``float64``); a fresh, writable array.

    **Raises:** ``DataError`` naming the file for a damaged gzip stream, a
    wrong magic number, an unknown type byte, no dimensions, or data longer or
    shorter than the header declares; ``OSError`` if the file cannot be read.
    """
    path = Path(path)
    raw = path.read_bytes()
    compressed = raw[:2] == _GZIP_MAGIC
    if compressed:
        try:
            raw = gzip.decompress(raw)
        except EOFError as e:
            raise DataError(f"{path}: the gzip stream is truncated ({e}); the file is incomplete, "
                            "perhaps from an interrupted download or copy") from None
        except (OSError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip stream ({e}); the file is damaged") from None
    return _parse_idx(raw, str(path), compressed)


def _parse_idx(data: bytes, where: str, compressed: bool) -> np.ndarray:
    size = "decompressed, it has" if compressed else "it has"
    if len(data) < 4:
        raise DataError(f"{where}: too short for an IDX file ({size} {len(data)} bytes; the header "
                        "alone is 4 bytes plus 4 per dimension)")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{where}: not an IDX file: it starts with bytes {data[:4].hex(' ')}, but an IDX "
                        "file starts with two zero bytes")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        known = ", ".join(f"0x{c:02x} ({n})" for c, (n, _) in _IDX_TYPES.items())
        raise DataError(f"{where}: unknown IDX element type byte 0x{code:02x}; known are {known}")
    if ndim == 0:
        raise DataError(f"{where}: the IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{where}: the IDX header declares {ndim} dimensions and so needs {header} "
                        f"bytes, but {size} only {len(data)} (truncated?)")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    type_name, dtype = _IDX_TYPES[code]
    itemsize = np.dtype(dtype).itemsize
    expected = math.prod(dims) * itemsize
    have = len(data) - header
    if have != expected:
        shape = "x".join(map(str, dims))
        declared = (f"{shape} = {expected} bytes of data" if itemsize == 1 else
                    f"{shape} {type_name}s of {itemsize} bytes = {expected} bytes of data")
        if have < expected:
            raise DataError(f"{where}: header says {declared}, file has {have} (truncated?)")
        raise DataError(f"{where}: header says {declared}, file has {have}: {have - expected} bytes "
                        "too many (a damaged file, or not this kind of IDX file)")
    flat = np.frombuffer(data, dtype=dtype, count=math.prod(dims), offset=header)
    # astype copies: the result is writable, owns its memory, and is in native byte order.
    return flat.reshape(dims).astype(np.dtype(dtype).newbyteorder("="))
