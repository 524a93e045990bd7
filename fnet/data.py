"""Datasets: MNIST and Fashion-MNIST, read from IDX files found on disk or downloaded.

``load_mnist()`` and ``load_fashion_mnist()`` return NumPy arrays
``(x_train, t_train), (x_test, t_test)`` with the options of the book's
``load_mnist`` (``normalize``, ``flatten``, ``one_hot_label``); unflattened
images use fnet's NHWC layout, ``(N, 28, 28, 1)``.

**Where the files are looked for**, in order; the first directory that holds
all four files is used (each file either ``.gz`` or uncompressed):

1. ``data_dir`` when it is given, and then nowhere else: a typo in an explicit
   path is an error, not a silent fallback to another copy.
2. ``$FNET_DATA/<dataset>`` (``$FNET_DATA/mnist``, ``$FNET_DATA/fashion-mnist``).
   The files are never looked for directly in ``$FNET_DATA``: MNIST and
   Fashion-MNIST use the same file names, so one directory cannot hold both.
3. ``~/.cache/fnet/<dataset>``.
4. System directories, for Fashion-MNIST ``/usr/share/datasets/fashion-mnist``
   (Debian/Ubuntu package ``dataset-fashion-mnist``).

If none has them and ``download=True``, the missing files are downloaded into
``data_dir`` if given, else ``$FNET_DATA/<dataset>`` if set, else
``~/.cache/fnet/<dataset>``; each is checked against the published MD5 and
written atomically. Files found on disk are not checksummed (Debian
recompressed its copies, so their ``.gz`` checksums differ from upstream);
their structure is validated instead: IDX header, sizes, image/label counts,
label range. Every problem raises ``DataError`` naming the file and the fault.

The IDX format: two zero bytes, a type byte (0x08 = unsigned byte), a byte
with the number of dimensions, one big-endian 4-byte size per dimension, then
the values, big-endian, in C order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import math
import os
import secrets
import struct
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "DataError", "DatasetInfo", "download", "load_dataset", "load_fashion_mnist",
           "load_mnist", "read_idx"]

ENV_VAR = "FNET_DATA"
TIMEOUT = 30.0  # seconds a socket may wait for the server, per operation (not per file)


class DataError(ValueError):
    """A data file is missing, damaged or inconsistent, or could not be downloaded."""


# --------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What fnet knows about one dataset (an entry of ``DATASETS``).

    **Fields:** ``name`` (the key, also the sub-directory under the cache and
    ``$FNET_DATA``); ``title``; ``files``: split role (``"train_images"``,
    ``"train_labels"``, ``"test_images"``, ``"test_labels"``) -> file name;
    ``md5``: file name -> MD5 of the upstream ``.gz`` (checked on download only);
    ``mirrors``: base URLs tried in order; ``system_dirs``: directories where
    an operating-system package installs the files; ``apt_package``;
    ``classes``: the class name of each label; ``homepage``.
    """

    name: str
    title: str
    files: Mapping[str, str]
    md5: Mapping[str, str]
    mirrors: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    apt_package: str | None = None
    classes: tuple[str, ...] = tuple(str(i) for i in range(10))
    homepage: str = ""


_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST",
        files=_FILES,
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST",
        files=_FILES,
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
    ),
}

IMAGE_SHAPE = (28, 28)

# --------------------------------------------------------------------------- IDX files

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


# --------------------------------------------------------------------------- loading

Split = tuple[np.ndarray, np.ndarray]


def load_mnist(data_dir: str | os.PathLike | None = None, *, normalize: bool = True, flatten: bool = True,
               one_hot_label: bool = False, download: bool = True, mirrors: Sequence[str] | None = None,
               timeout: float = TIMEOUT) -> tuple[Split, Split]:
    """MNIST handwritten digits: 60000 training and 10000 test images of 28x28 pixels.

    See ``load_dataset`` for the arguments, the shapes and dtypes returned, and
    where the files are looked for.
    """
    return load_dataset("mnist", data_dir, normalize=normalize, flatten=flatten,
                        one_hot_label=one_hot_label, download=download, mirrors=mirrors, timeout=timeout)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, normalize: bool = True,
                       flatten: bool = True, one_hot_label: bool = False, download: bool = True,
                       mirrors: Sequence[str] | None = None,
                       timeout: float = TIMEOUT) -> tuple[Split, Split]:
    """Fashion-MNIST (Zalando article images): 60000 training and 10000 test images of 28x28 pixels.

    Labels name ``DATASETS["fashion-mnist"].classes`` (0 = T-shirt/top, ...,
    9 = Ankle boot). Found without a download after
    ``sudo apt-get install dataset-fashion-mnist``. See ``load_dataset`` for
    the arguments, the shapes and dtypes returned, and where the files are
    looked for.
    """
    return load_dataset("fashion-mnist", data_dir, normalize=normalize, flatten=flatten,
                        one_hot_label=one_hot_label, download=download, mirrors=mirrors, timeout=timeout)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, normalize: bool = True,
                 flatten: bool = True, one_hot_label: bool = False, download: bool = True,
                 mirrors: Sequence[str] | None = None, timeout: float = TIMEOUT) -> tuple[Split, Split]:
    """Load a dataset of ``DATASETS`` by name (``"mnist"``, ``"fashion-mnist"``).

    **Arguments:**

    - ``data_dir``: the directory holding the four files; when given, no other
      place is searched (see the module docstring for the search order).
    - ``normalize``: ``True``: float32 pixels in ``[0, 1]`` (value / 255);
      ``False``: the uint8 values 0..255.
    - ``flatten``: ``True``: images of shape ``(N, 784)``; ``False``:
      ``(N, 28, 28, 1)`` (NHWC, fnet's image layout).
    - ``one_hot_label``: ``True``: float32 labels of shape ``(N, 10)``;
      ``False``: int32 class indices of shape ``(N,)``.
    - ``download``: fetch missing files from the mirrors (MD5-checked).
    - ``mirrors``: base URLs to try instead of the dataset's own.
    - ``timeout``: seconds a download may wait for the server per operation.

    **Returns:** ``(x_train, t_train), (x_test, t_test)`` with ``N = 60000``
    and ``N = 10000`` for the real files.

    **Raises:** ``DataError``: files not found (and not downloadable), damaged
    or inconsistent; the message names the file and what is wrong, or lists
    every place searched and every URL tried.
    """
    info = _info(name)
    files = _locate(info, data_dir, download=download, mirrors=mirrors, timeout=timeout)
    out = []
    for split in ("train", "test"):
        images, labels = _read_split(files[f"{split}_images"], files[f"{split}_labels"], len(info.classes))
        out.append((_format_images(images, normalize, flatten),
                    _format_labels(labels, one_hot_label, len(info.classes))))
    return out[0], out[1]


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def _read_split(image_path: Path, label_path: Path, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.ndim != 3:
        raise DataError(f"{image_path}: expected images of shape (N, 28, 28), 3 dimensions, but the IDX "
                        f"header declares {images.ndim}: {images.shape}")
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{image_path}: expected images of 28x28 pixels, the IDX header declares "
                        f"{images.shape[1]}x{images.shape[2]}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: expected labels of shape (N,), 1 dimension, but the IDX header "
                        f"declares {labels.ndim}: {labels.shape}")
    for path, a in ((image_path, images), (label_path, labels)):
        if a.dtype != np.uint8:
            raise DataError(f"{path}: expected unsigned bytes (IDX type 0x08), the file holds {a.dtype}")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} "
                        "labels; they must match (files of different datasets or versions?)")
    bad = labels >= n_classes
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{label_path}: label {labels[i]} at index {i} is outside 0..{n_classes - 1} "
                        f"({int(bad.sum())} such labels); the file is damaged or of another dataset")
    return images, labels


def _format_images(images: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    n = len(images)
    x = images.reshape(n, -1) if flatten else images.reshape(n, *IMAGE_SHAPE, 1)
    if normalize:
        x = x.astype(np.float32)
        x /= 255  # division, not * (1/255): 255 maps to exactly 1.0
    return x


def _format_labels(labels: np.ndarray, one_hot: bool, n_classes: int) -> np.ndarray:
    if one_hot:
        return np.eye(n_classes, dtype=np.float32)[labels]
    return labels.astype(np.int32)


# --------------------------------------------------------------------------- finding files


def _cache_root() -> Path:
    return Path.home() / ".cache" / "fnet"


def _env_dir(info: DatasetInfo) -> Path | None:
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() / info.name if value else None


def _search_dirs(info: DatasetInfo, data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """``(directory, why it is searched)`` in search order."""
    if data_dir is not None:
        return [(Path(data_dir).expanduser(), "the data_dir argument")]
    dirs = []
    env = _env_dir(info)
    if env is not None:
        dirs.append((env, f"${ENV_VAR}/{info.name}"))
    dirs.append((_cache_root() / info.name, "the fnet cache"))
    for d in info.system_dirs:
        dirs.append((Path(d), f"package {info.apt_package}" if info.apt_package else "system directory"))
    return dirs


def _download_dir(info: DatasetInfo, data_dir: str | os.PathLike | None) -> Path:
    if data_dir is not None:
        return Path(data_dir).expanduser()
    return _env_dir(info) or _cache_root() / info.name


def _present(directory: Path, file_name: str) -> Path | None:
    """The file as named (``.gz``) or its uncompressed twin, if either exists."""
    for candidate in (file_name, file_name.removesuffix(".gz")):
        p = directory / candidate
        if p.is_file():
            return p
    return None


def _scan(info: DatasetInfo, directory: Path) -> tuple[dict[str, Path], list[str]]:
    """``(role -> path of the files present, names of the files missing)``."""
    found, missing = {}, []
    for role, file_name in info.files.items():
        p = _present(directory, file_name)
        if p is None:
            missing.append(file_name)
        else:
            found[role] = p
    return found, missing


def _locate(info: DatasetInfo, data_dir, *, download: bool, mirrors, timeout: float) -> dict[str, Path]:
    searched = []
    for directory, why in _search_dirs(info, data_dir):
        if not directory.is_dir():
            state = "not a directory" if directory.exists() else "does not exist"
            searched.append(f"{directory} ({why}): {state}")
            continue
        found, missing = _scan(info, directory)
        if not missing:
            return found
        searched.append(f"{directory} ({why}): missing {', '.join(missing)}")
    if data_dir is None and _env_dir(info) is None:
        searched.insert(0, f"${ENV_VAR}: not set")

    dest = _download_dir(info, data_dir)
    failures: list[str] = []
    if download:
        failures = _fetch_missing(info, dest, mirrors, timeout)
        if not failures:
            found, missing = _scan(info, dest)
            if not missing:
                return found
            failures = [f"after downloading, {dest} still lacks {', '.join(missing)}"]
    raise DataError(_not_found_message(info, data_dir, searched, dest, download, failures))


def _not_found_message(info: DatasetInfo, data_dir, searched: list[str], dest: Path, download: bool,
                       failures: list[str]) -> str:
    names = ", ".join(info.files.values())
    lines = [f"{info.title}: the data files were not found"
             + (", and downloading them failed." if download else " (and download=False)."),
             f"Needed: {names} (each .gz or uncompressed), all four in one directory.",
             "Searched, in order:"]
    lines += [f"  - {s}" for s in searched]
    if download:
        lines.append(f"Downloading into {dest}:")
        lines += [f"  - {f}" for f in failures]
    lines.append("To provide the data, do one of:")
    if download:
        lines.append(f"  - connect to the internet and call again (the files go to {dest})")
    else:
        lines.append(f"  - call again with download=True (the files go to {dest})")
    urls = ", ".join(info.mirrors)
    lines.append(f"  - download the four files by hand from {urls} into {dest}/")
    if data_dir is None:
        lines.append(f"  - set {ENV_VAR}=/path/to/datasets and put the files in "
                     f"/path/to/datasets/{info.name}/")
        lines.append("  - pass data_dir='/path/to/dir' holding the files")
    else:
        lines.append(f"  - pass the directory that holds the files as data_dir, or leave data_dir out to "
                     f"search ${ENV_VAR}/{info.name}, {_cache_root() / info.name}"
                     + ("".join(f", {d}" for d in info.system_dirs)))
    if info.apt_package:
        lines.append(f"  - on Debian or Ubuntu: sudo apt-get install {info.apt_package} (installs into "
                     f"{', '.join(info.system_dirs)})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- downloading


class _FetchError(Exception):
    """One URL did not give a good file; the message says why."""


def download(name: str, directory: str | os.PathLike | None = None, *,
             mirrors: Sequence[str] | None = None, timeout: float = TIMEOUT) -> Path:
    """Download the files of dataset ``name`` that ``directory`` lacks; return the directory.

    ``directory`` defaults to ``$FNET_DATA/<name>`` if set, else
    ``~/.cache/fnet/<name>``. Each file is tried on each mirror in turn, checked
    against its MD5 and moved into place atomically; a failed or interrupted
    download leaves no file behind. Prints one line per file to stderr.

    **Raises:** ``DataError`` listing every URL tried and why it failed.
    """
    info = _info(name)
    dest = _download_dir(info, directory)
    failures = _fetch_missing(info, dest, mirrors, timeout)
    if failures:
        raise DataError(f"{info.title}: downloading into {dest} failed:\n"
                        + "\n".join(f"  - {f}" for f in failures))
    return dest


def _fetch_missing(info: DatasetInfo, dest: Path, mirrors: Sequence[str] | None, timeout: float) -> list[str]:
    """Download what ``dest`` lacks; ``[]`` on success, else why the first failing file failed."""
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    bases = tuple(mirrors) if mirrors is not None else info.mirrors
    if not bases:
        return ["no mirrors to download from (mirrors=[])"]
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return [f"cannot create the directory {dest}: {e.strerror or e}"]
    failures = _fetch_each(info, dest, bases, timeout)
    if failures and created:
        with contextlib.suppress(OSError):  # leave no empty directory behind (rmdir keeps a non-empty one)
            dest.rmdir()
    return failures


def _fetch_each(info: DatasetInfo, dest: Path, bases: tuple[str, ...], timeout: float) -> list[str]:
    for file_name in info.files.values():
        if _present(dest, file_name) is not None:
            continue
        failures = []
        for base in bases:
            url = base.rstrip("/") + "/" + file_name
            print(f"fnet: downloading {url} -> {dest}", file=sys.stderr, flush=True)
            try:
                _fetch(url, dest / file_name, info.md5.get(file_name), timeout)
                break
            except _FetchError as e:
                print(f"fnet: failed: {e}", file=sys.stderr, flush=True)
                failures.append(f"{url}: {e}")
        else:
            return failures
    return []


def _fetch(url: str, target: Path, md5: str | None, timeout: float) -> None:
    """Download ``url`` to ``target`` through a temporary file in the same directory.

    The temporary file is renamed into place only once the transfer is
    complete and the MD5 matches, and is removed on any failure (including
    KeyboardInterrupt), so ``target`` either appears whole or not at all.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        # os.open rather than mkstemp: mode 0o666 minus the umask, like any other
        # file the user downloads (mkstemp's 0o600 would hide a shared $FNET_DATA).
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise _FetchError(f"cannot write into {target.parent}: {e.strerror or e}") from None
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
        except urllib.error.HTTPError as e:
            raise _FetchError(f"HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            if not isinstance(e.reason, TimeoutError):  # a connect timeout arrives wrapped
                raise _FetchError(f"{e.reason}") from None
            raise _FetchError(f"no answer within {timeout:g} s (timeout)") from None
        except TimeoutError:
            raise _FetchError(f"no answer within {timeout:g} s (timeout)") from None
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise _FetchError(f"{type(e).__name__}: {e}") from None
        if length is not None and length.isdigit() and received != int(length):
            raise _FetchError(f"the connection closed after {received} of {int(length)} bytes")
        if md5 is not None and digest.hexdigest() != md5:
            raise _FetchError(f"MD5 {digest.hexdigest()} of the {received} bytes received does not match "
                          f"the published {md5}")
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
