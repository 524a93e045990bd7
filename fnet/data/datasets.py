"""The table of datasets fnet knows: files, checksums, mirrors, system directories, classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["DATASETS", "IMAGE_SHAPE", "DatasetInfo", "info"]


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


def info(name: str) -> DatasetInfo:
    """The entry of ``DATASETS`` called ``name``; ``KeyError`` naming the choices otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None
