"""Datasets: MNIST and Fashion-MNIST, read from IDX files found on disk or downloaded.

One job per module: ``idx`` reads the file format; ``datasets`` is the table
of what fnet knows (files, checksums, mirrors); ``locate`` is the search path
and the not-found message; ``downloader`` the checked, atomic download;
``loaders`` the book's ``load_mnist`` and its siblings; ``decoded`` keeps each decoded
file as ``.npy`` in ``~/.cache/fnet/decoded``, so a gzip file is decompressed once; ``sequence``
holds the second book's sequence-to-sequence tasks (``load_task``: addition and dates, generated,
or any file of ``QUESTION_ANSWER`` lines).

``load_mnist()`` and ``load_fashion_mnist()`` return NumPy arrays
``(x_train, t_train), (x_test, t_test)`` with the options of the book's
``load_mnist`` (``normalize``, ``flatten``, ``one_hot_label``); unflattened
images use fnet's NHWC layout, ``(N, 28, 28, 1)``.

Where the files are looked for, in order: ``data_dir`` if given (and then nowhere
else), ``$FNET_DATA/<dataset>``, ``~/.cache/fnet/<dataset>``, system directories
(``/usr/share/datasets/fashion-mnist``); then, if allowed, a download (details in
``fnet.data.locate``). Every problem raises ``DataError`` naming the file and the fault.
"""

from fnet.data.datasets import DATASETS, IMAGE_SHAPE, DatasetInfo
from fnet.data.downloader import download
from fnet.data.idx import DataError, read_idx
from fnet.data.loaders import load_dataset, load_fashion_mnist, load_mnist
from fnet.data.locate import ENV_VAR
from fnet.data.sequence import SequenceTask, load_task

__all__ = ["DATASETS", "ENV_VAR", "IMAGE_SHAPE", "DataError", "DatasetInfo", "SequenceTask", "download",
           "load_dataset", "load_fashion_mnist", "load_mnist", "load_task", "read_idx"]
