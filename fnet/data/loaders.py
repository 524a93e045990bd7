"""``load_mnist``, ``load_fashion_mnist``, ``load_dataset``: the book's loader, reading IDX files.

Arrays come back as NumPy ``(x_train, t_train), (x_test, t_test)`` with the
options of the book's ``load_mnist`` (``normalize``, ``flatten``,
``one_hot_label``); unflattened images use fnet's NHWC layout,
``(N, 28, 28, 1)``. Where the files are looked for: ``fnet.data.locate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fnet.data import datasets, locate
from fnet.data.datasets import IMAGE_SHAPE, DatasetInfo
from fnet.data.decoded import read_decoded
from fnet.data.downloader import TIMEOUT, fetch_missing
from fnet.data.idx import DataError

__all__ = ["find_files", "load_dataset", "load_fashion_mnist", "load_mnist"]

Split = tuple[np.ndarray, np.ndarray]


def load_mnist(data_dir: str | os.PathLike | None = None, *, normalize: bool = True, flatten: bool = True,
               one_hot_label: bool = False, download: bool = True, mirrors: Sequence[str] | None = None,
               timeout: float = TIMEOUT, cache: bool = True) -> tuple[Split, Split]:
    """MNIST handwritten digits: 60000 training and 10000 test images of 28x28 pixels.

    See ``load_dataset`` for the arguments, the shapes and dtypes returned, and
    where the files are looked for.
    """
    return load_dataset("mnist", data_dir, normalize=normalize, flatten=flatten, one_hot_label=one_hot_label,
                        download=download, mirrors=mirrors, timeout=timeout, cache=cache)


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, normalize: bool = True,
                       flatten: bool = True, one_hot_label: bool = False, download: bool = True,
                       mirrors: Sequence[str] | None = None,
                       timeout: float = TIMEOUT, cache: bool = True) -> tuple[Split, Split]:
    """Fashion-MNIST (Zalando article images): 60000 training and 10000 test images of 28x28 pixels.

    Labels name ``DATASETS["fashion-mnist"].classes`` (0 = T-shirt/top, ...,
    9 = Ankle boot). Found without a download after
    ``sudo apt-get install dataset-fashion-mnist``. See ``load_dataset`` for
    the arguments, the shapes and dtypes returned, and where the files are
    looked for.
    """
    return load_dataset("fashion-mnist", data_dir, normalize=normalize, flatten=flatten,
                        one_hot_label=one_hot_label, download=download, mirrors=mirrors, timeout=timeout,
                        cache=cache)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, normalize: bool = True,
                 flatten: bool = True, one_hot_label: bool = False, download: bool = True,
                 mirrors: Sequence[str] | None = None, timeout: float = TIMEOUT,
                 spelling: dict[str, str] | None = None, cache: bool = True) -> tuple[Split, Split]:
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
    - ``spelling``: how the not-found message names the options (``locate.API_SPELLING``
      by default; the command line passes ``--data-dir`` and ``--no-download``).
    - ``cache``: keep each decoded file as ``.npy`` in ``~/.cache/fnet/decoded`` and read it
      from there next time (``fnet.data.decoded``: keyed to the file, redone when it changes).

    **Returns:** ``(x_train, t_train), (x_test, t_test)`` with ``N = 60000``
    and ``N = 10000`` for the real files. The normalized images and the labels sit at
    ``ALIGNMENT``-byte aligned addresses, so that JAX places them on CPU devices without a copy.

    **Raises:** ``DataError``: files not found (and not downloadable), damaged
    or inconsistent; the message names the file and what is wrong, or lists
    every place searched and every URL tried.
    """
    info = datasets.info(name)
    files = find_files(info, data_dir, download=download, mirrors=mirrors, timeout=timeout, spelling=spelling)
    out = []
    for split in ("train", "test"):
        images, labels = _read_split(files[f"{split}_images"], files[f"{split}_labels"], len(info.classes),
                                     cache)
        out.append((_format_images(images, normalize, flatten),
                    _format_labels(labels, one_hot_label, len(info.classes))))
    return out[0], out[1]


def _read_split(image_path: Path, label_path: Path, n_classes: int,
                cache: bool) -> tuple[np.ndarray, np.ndarray]:
    images = read_decoded(image_path, cache=cache)
    labels = read_decoded(label_path, cache=cache)
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


ALIGNMENT = 64
"""Bytes: ``jax.device_put`` uses a NumPy array in place on a CPU device (no copy) when its data
starts at such an address; NumPy's own allocations are only 16-byte aligned. ``fnet-train`` puts
the training set on two CPU devices (training and evaluation), which would otherwise be two copies."""


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` whose data starts at an ``ALIGNMENT``-byte aligned address."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    if size == 0:  # nothing to place
        return np.empty(shape, dtype)
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def _format_images(images: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    n = len(images)
    x = images.reshape(n, -1) if flatten else images.reshape(n, *IMAGE_SHAPE, 1)
    if normalize:  # division, not * (1/255): 255 maps to exactly 1.0; one pass, converting as it divides
        x = np.divide(x, np.float32(255), out=aligned_empty(x.shape, np.float32), dtype=np.float32)
    return x


def _format_labels(labels: np.ndarray, one_hot: bool, n_classes: int) -> np.ndarray:
    if one_hot:
        return np.eye(n_classes, dtype=np.float32)[labels]
    out = aligned_empty(labels.shape, np.int32)
    out[...] = labels
    return out


def find_files(info: DatasetInfo, data_dir, *, download: bool, mirrors, timeout: float,
               spelling: dict[str, str] | None = None) -> dict[str, Path]:
    """``role -> path`` of the four files: found on disk, else downloaded, else ``DataError``."""
    found, searched = locate.search(info, data_dir)
    if found is not None:
        return found

    dest = locate.download_dir(info, data_dir)
    failures: list[str] = []
    if download:
        failures = fetch_missing(info, dest, mirrors, timeout)
        if not failures:
            found, missing = locate.scan(info, dest)
            if not missing:
                return found
            failures = [f"after downloading, {dest} still lacks {', '.join(missing)}"]
    raise DataError(locate.not_found_message(info, data_dir, searched, dest, download, failures, spelling))
