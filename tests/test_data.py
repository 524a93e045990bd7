"""Tests for fnet.data: the IDX parser, the search order, the downloader, the real Fashion-MNIST.

Nothing here touches the internet: the downloader runs against an HTTP server
on 127.0.0.1, and an autouse guard fails any test that opens another host.
IDX files are written by the tests themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import http.server
import socket
import struct
import threading
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from fnet import data
from fnet.data import DATASETS, DataError, DatasetInfo, load_dataset, loaders, read_idx
from fnet.data.datasets import _FILES

NAMES = dict(_FILES)  # role -> file name (.gz)
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")

# --------------------------------------------------------------------------- helpers

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
          np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    header = bytes([0, 0, _CODES[a.dtype], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path: Path, content: bytes, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # the full range, so normalize is checked at both ends
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


def make_dataset(directory: Path, n_train: int = 12, n_test: int = 5, *, gz: bool = True,
                 skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Write four small IDX files; ``n_train`` tells datasets in different places apart."""
    arrays = {}
    arrays["train_images"], arrays["train_labels"] = fake_split(n_train, seed=n_train)
    arrays["test_images"], arrays["test_labels"] = fake_split(n_test, seed=1000 + n_test)
    for role, a in arrays.items():
        if role not in skip:
            name = NAMES[role] if gz else NAMES[role].removesuffix(".gz")
            write(directory / name, idx_bytes(a), gz=gz)
    return arrays


# --------------------------------------------------------------------------- isolation


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Fail loudly if anything opens a URL that is not on this machine."""
    real = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        target = url if isinstance(url, str) else url.full_url
        host = urllib.parse.urlsplit(target).hostname
        assert host in ("127.0.0.1", "localhost"), f"a test tried to reach the internet: {target}"
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh HOME, no $FNET_DATA, a private system dir, and no mirrors for the real datasets."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FNET_DATA", raising=False)
    system = tmp_path / "system"
    for name, info in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, dataclasses.replace(
            info, mirrors=(), system_dirs=(str(system / name),)))
    return tmp_path


def cache(tmp_path: Path, name: str) -> Path:
    return tmp_path / "home" / ".cache" / "fnet" / name


# --------------------------------------------------------------------------- the IDX parser


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_round_trip(tmp_path, gz, dtype):
    a = (np.arange(2 * 3 * 4).reshape(2, 3, 4) - 7).astype(dtype)
    if dtype == np.uint8:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    got = read_idx(write(tmp_path / "f.idx", idx_bytes(a), gz=gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    assert got.shape == (2, 3, 4)
    np.testing.assert_array_equal(got, a)
    assert got.flags.writeable and got.flags.owndata


def test_read_idx_detects_gzip_by_magic_not_by_name(tmp_path):
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    gz_named_plain = write(tmp_path / "plain.idx", idx_bytes(a), gz=True)
    plain_named_gz = write(tmp_path / "plain.gz", idx_bytes(a), gz=False)
    np.testing.assert_array_equal(read_idx(gz_named_plain), a)
    np.testing.assert_array_equal(read_idx(plain_named_gz), a)


def test_read_idx_one_dimension(tmp_path):
    got = read_idx(write(tmp_path / "labels", idx_bytes(np.array([3, 1, 4], np.uint8))))
    assert got.shape == (3,) and got.tolist() == [3, 1, 4]


def expect_error(path: Path, *fragments: str) -> str:
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


GOOD = idx_bytes(np.zeros((3, 4, 4), np.uint8))  # 16-byte header + 48 bytes


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_bad_magic(tmp_path, gz):
    p = write(tmp_path / "bad", b"\x01\x00" + GOOD[2:], gz=gz)
    expect_error(p, "not an IDX file", "01 00 08 03", "two zero bytes")


def test_html_instead_of_idx(tmp_path):
    p = write(tmp_path / "train-images-idx3-ubyte", b"<html>Not Found</html>")
    expect_error(p, "not an IDX file", "3c 68 74 6d")


def test_bad_type_byte(tmp_path):
    p = write(tmp_path / "bad", GOOD[:2] + b"\x07" + GOOD[3:])
    expect_error(p, "unknown IDX element type byte 0x07", "0x08 (unsigned byte)")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_truncated_payload(tmp_path, gz):
    p = write(tmp_path / "t.idx", GOOD[:16 + 20], gz=gz)
    expect_error(p, "header says 3x4x4 = 48 bytes of data, file has 20 (truncated?)")


def test_truncated_payload_of_wide_type_names_the_element_size(tmp_path):
    p = write(tmp_path / "t.idx", idx_bytes(np.zeros((2, 5), np.int32))[:-4])
    expect_error(p, "header says 2x5 ints of 4 bytes = 40 bytes of data, file has 36 (truncated?)")


def test_trailing_bytes_are_an_error(tmp_path):
    p = write(tmp_path / "t.idx", GOOD + b"xyz")
    expect_error(p, "header says 3x4x4 = 48 bytes of data, file has 51: 3 bytes too many")


def test_truncated_header(tmp_path):
    expect_error(write(tmp_path / "h", GOOD[:10]), "declares 3 dimensions", "needs 16 bytes", "only 10")
    expect_error(write(tmp_path / "tiny", b"\x00\x00"), "too short for an IDX file", "2 bytes")


def test_zero_dimensions(tmp_path):
    expect_error(write(tmp_path / "z", b"\x00\x00\x08\x00"), "declares 0 dimensions")


def test_corrupt_gzip_stream(tmp_path):
    packed = bytearray(gzip.compress(GOOD + bytes(range(256)) * 4))
    packed[-6] ^= 0xFF  # inside the CRC/length trailer: a checksum failure
    expect_error(write(tmp_path / "crc.gz", bytes(packed)), "corrupt gzip stream")
    garbage = gzip.compress(b"")[:10] + b"\xff" * 40  # a gzip header followed by invalid deflate data
    expect_error(write(tmp_path / "garbage.gz", garbage), "corrupt gzip stream")


def test_truncated_gzip_stream(tmp_path):
    packed = gzip.compress(GOOD + bytes(range(256)) * 4)
    p = write(tmp_path / "half.gz", packed[: len(packed) // 2])
    expect_error(p, "gzip stream is truncated", "interrupted download")


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- dataset checks


def load_error(directory: Path) -> str:
    with pytest.raises(DataError) as info:
        load_dataset("mnist", directory, download=False)
    return str(info.value)


def test_mismatched_image_and_label_counts(env):
    d = env / "d"
    make_dataset(d)
    write(d / NAMES["train_labels"], idx_bytes(np.zeros(11, np.uint8)), gz=True)
    message = load_error(d)
    assert str(d / NAMES["train_images"]) in message and str(d / NAMES["train_labels"]) in message
    assert "holds 12 images" in message and "holds 11 labels" in message


def test_labels_out_of_range(env):
    d = env / "d"
    make_dataset(d)
    labels = np.array([0, 1, 2, 10, 4], np.uint8)
    write(d / NAMES["test_labels"], idx_bytes(labels), gz=True)
    message = load_error(d)
    assert str(d / NAMES["test_labels"]) in message
    assert "label 10 at index 3 is outside 0..9 (1 such labels)" in message


def test_labels_with_two_dimensions(env):
    d = env / "d"
    make_dataset(d)
    write(d / NAMES["train_labels"], idx_bytes(np.zeros((12, 1), np.uint8)), gz=True)
    message = load_error(d)
    assert str(d / NAMES["train_labels"]) in message
    assert "expected labels of shape (N,), 1 dimension" in message and "declares 2" in message


def test_images_with_wrong_ndim_or_size(env):
    d = env / "d"
    make_dataset(d)
    write(d / NAMES["train_images"], idx_bytes(np.zeros((12, 784), np.uint8)), gz=True)
    message = load_error(d)
    assert str(d / NAMES["train_images"]) in message
    assert "3 dimensions, but the IDX header declares 2" in message
    write(d / NAMES["train_images"], idx_bytes(np.zeros((12, 28, 27), np.uint8)), gz=True)
    assert "28x28 pixels, the IDX header declares 28x27" in load_error(d)


def test_images_must_be_bytes(env):
    d = env / "d"
    make_dataset(d)
    write(d / NAMES["test_images"], idx_bytes(np.zeros((5, 28, 28), np.float32)), gz=True)
    message = load_error(d)
    assert str(d / NAMES["test_images"]) in message and "unsigned bytes (IDX type 0x08)" in message


def test_damaged_file_on_disk_is_reported_not_skipped(env):
    d = cache(env, "fashion-mnist")
    make_dataset(d)
    make_dataset(env / "system" / "fashion-mnist")  # a good copy later in the search order
    write(d / NAMES["test_images"], idx_bytes(np.zeros((5, 28, 28), np.uint8))[:40], gz=True)
    with pytest.raises(DataError) as info:
        data.load_fashion_mnist(download=False)
    assert str(d / NAMES["test_images"]) in str(info.value)
    assert "header says 5x28x28 = 3920 bytes of data, file has 24 (truncated?)" in str(info.value)


# --------------------------------------------------------------------------- the decoded copies


def decoded_copies(env: Path) -> list[Path]:
    return sorted((env / "home" / ".cache" / "fnet" / "decoded").rglob("*.npy"))


def test_decoded_copies_are_written_once_and_read_back(env, monkeypatch):
    arrays = make_dataset(env / "d")
    first = load_dataset("mnist", env / "d", download=False)
    copies = decoded_copies(env)
    assert sorted(p.name.split(".")[0] for p in copies) == sorted(n.split(".")[0] for n in NAMES.values())
    from fnet.data import decoded

    monkeypatch.setattr(decoded, "read_idx", lambda path: pytest.fail(f"decompressed {path} again"))
    second = load_dataset("mnist", env / "d", download=False)
    for a, b in zip(first, second, strict=True):
        for u, v in zip(a, b, strict=True):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(second[0][0].reshape(12, 28, 28) * 255, arrays["train_images"])
    assert decoded_copies(env) == copies


def test_a_changed_source_file_is_decoded_again_and_its_old_copy_removed(env):
    make_dataset(env / "d")
    load_dataset("mnist", env / "d", download=False)
    before = decoded_copies(env)
    images, _ = fake_split(12, seed=99)
    write(env / "d" / NAMES["train_images"], idx_bytes(images), gz=True)
    (x, _), _ = load_dataset("mnist", env / "d", normalize=False, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), images)
    after = decoded_copies(env)
    assert len(after) == 4 and len(set(before) & set(after)) == 3  # the train images' copy replaced


def test_same_file_names_in_two_folders_keep_their_own_copies(env):
    a, b = make_dataset(env / "a", n_train=12), make_dataset(env / "b", n_train=13)
    for _ in range(2):
        (xa, _), _ = load_dataset("mnist", env / "a", normalize=False, download=False)
        (xb, _), _ = load_dataset("mnist", env / "b", normalize=False, download=False)
    np.testing.assert_array_equal(xa.reshape(12, 28, 28), a["train_images"])
    np.testing.assert_array_equal(xb.reshape(13, 28, 28), b["train_images"])
    assert len(decoded_copies(env)) == 8


def test_a_damaged_copy_is_decoded_again(env):
    arrays = make_dataset(env / "d")
    load_dataset("mnist", env / "d", download=False)
    for p in decoded_copies(env):
        p.write_bytes(p.read_bytes()[:50])
    with pytest.warns(RuntimeWarning, match="is damaged"):
        (x, t), _ = load_dataset("mnist", env / "d", normalize=False, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays["train_images"])
    np.testing.assert_array_equal(t, arrays["train_labels"])
    assert all(p.stat().st_size > 50 for p in decoded_copies(env))  # rewritten whole


def test_a_copy_of_the_right_size_with_damaged_bytes_is_detected_and_rebuilt(env):
    # the damage a size check cannot see: one byte of the data changed, in the images and the labels
    arrays = make_dataset(env / "d")
    load_dataset("mnist", env / "d", download=False)
    for p in decoded_copies(env):
        data = bytearray(p.read_bytes())
        data[-1] ^= 0xFF
        p.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match=r"decoded copy .* is damaged .* rebuilt from the source"):
        (x, t), _ = load_dataset("mnist", env / "d", normalize=False, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays["train_images"])
    np.testing.assert_array_equal(t, arrays["train_labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt whole: the next load is quiet
        load_dataset("mnist", env / "d", download=False)


def test_cache_false_writes_nothing_and_an_unwritable_cache_warns(env):
    arrays = make_dataset(env / "d")
    load_dataset("mnist", env / "d", download=False, cache=False)
    assert decoded_copies(env) == []
    write(env / "home" / ".cache" / "fnet" / "decoded", b"a file where the folder should be")
    with pytest.warns(RuntimeWarning, match="cannot keep the decoded copy of .*decompressed on every load"):
        (x, _), _ = load_dataset("mnist", env / "d", normalize=False, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays["train_images"])


# --------------------------------------------------------------------------- options


def test_default_options_normalize_and_flatten(env):
    arrays = make_dataset(env / "d")
    (x, t), (xt, tt) = load_dataset("mnist", env / "d", download=False)
    assert x.shape == (12, 784) and x.dtype == np.float32
    assert xt.shape == (5, 784) and xt.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, arrays["train_images"].reshape(12, 784) / np.float32(255))
    assert t.dtype == np.int32 and t.shape == (12,)
    assert t.tolist() == arrays["train_labels"].tolist() and tt.tolist() == arrays["test_labels"].tolist()


def test_normalized_images_and_labels_are_placed_on_a_cpu_device_in_place(env):
    make_dataset(env / "d")
    (x, t), (xt, tt) = load_dataset("mnist", env / "d", download=False)
    for a in (x, t, xt, tt):
        assert a.ctypes.data % loaders.ALIGNMENT == 0 and a.flags.c_contiguous and a.flags.writeable
    if jax.default_backend() == "cpu":  # JAX uses an aligned array where it is: no copy
        assert jax.device_put(x).unsafe_buffer_pointer() == x.ctypes.data
    for shape, dtype in (((3, 5), np.float32), ((7,), np.int32), ((1, 3), np.uint8), ((0, 2), np.uint8)):
        a = loaders.aligned_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype
        assert a.size == 0 or a.ctypes.data % loaders.ALIGNMENT == 0


def test_unnormalized_unflattened_images_are_nhwc_uint8(env):
    arrays = make_dataset(env / "d")
    (x, _), (xt, _) = data.load_mnist(env / "d", normalize=False, flatten=False, download=False)
    assert x.shape == (12, 28, 28, 1) and x.dtype == np.uint8 and xt.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(x[..., 0], arrays["train_images"])


def test_one_hot_labels(env):
    arrays = make_dataset(env / "d")
    (_, t), (_, tt) = data.load_mnist(env / "d", one_hot_label=True, download=False)
    assert t.shape == (12, 10) and t.dtype == np.float32 and tt.shape == (5, 10)
    np.testing.assert_array_equal(t.argmax(axis=1), arrays["train_labels"])
    np.testing.assert_array_equal(t.sum(axis=1), np.ones(12))
    assert set(np.unique(t)) == {0.0, 1.0}


def test_uncompressed_files_are_accepted(env):
    arrays = make_dataset(env / "d", gz=False)
    (x, _), _ = data.load_mnist(env / "d", normalize=False, download=False)
    np.testing.assert_array_equal(x.reshape(12, 28, 28), arrays["train_images"])


def test_unknown_dataset():
    choices = r"\['fashion-mnist', 'mnist'\]"
    with pytest.raises(KeyError, match=rf"unknown dataset 'cifar'; choose one of {choices}"):
        load_dataset("cifar")


def test_datasets_table_lists_files_and_checksums():
    assert set(DATASETS) == {"mnist", "fashion-mnist"}
    for info in DATASETS.values():
        assert sorted(info.files.values()) == sorted(info.md5)
        assert all(len(m) == 32 and int(m, 16) >= 0 for m in info.md5.values())
        assert len(info.classes) == 10 and info.mirrors
    assert DATASETS["fashion-mnist"].classes[9] == "Ankle boot"
    assert DATASETS["fashion-mnist"].md5["t10k-labels-idx1-ubyte.gz"] == "bb300cfdad3c16e7a12a480ee83cd310"


# --------------------------------------------------------------------------- search order


def n_train(**kwargs) -> int:
    (x, _), _ = data.load_fashion_mnist(download=False, **kwargs)
    return len(x)


def test_explicit_data_dir_wins(env, monkeypatch):
    monkeypatch.setenv("FNET_DATA", str(env / "envdata"))
    make_dataset(env / "envdata" / "fashion-mnist", n_train=13)
    make_dataset(env / "explicit", n_train=11)
    assert n_train(data_dir=env / "explicit") == 11
    assert n_train(data_dir=str(env / "explicit")) == 11


def test_explicit_data_dir_missing_files_does_not_fall_back(env):
    make_dataset(cache(env, "fashion-mnist"), n_train=14)  # complete, but must not be used
    make_dataset(env / "explicit", skip=("test_labels",))
    with pytest.raises(DataError) as info:
        n_train(data_dir=env / "explicit")
    message = str(info.value)
    assert f"{env / 'explicit'} (the data_dir argument): missing t10k-labels-idx1-ubyte.gz" in message
    assert "Searched, in order:\n  - " + str(env / "explicit") in message
    assert "the fnet cache" not in message  # nothing else was searched
    assert "leave data_dir out to search $FNET_DATA/fashion-mnist" in message


def test_env_var_dataset_subdirectory_beats_cache(env, monkeypatch):
    monkeypatch.setenv("FNET_DATA", str(env / "envdata"))
    make_dataset(env / "envdata" / "fashion-mnist", n_train=13)
    make_dataset(cache(env, "fashion-mnist"), n_train=14)
    assert n_train() == 13


def test_env_var_root_itself_is_not_searched(env, monkeypatch):
    # MNIST and Fashion-MNIST share file names, so files directly in $FNET_DATA would be ambiguous.
    monkeypatch.setenv("FNET_DATA", str(env / "envdata"))
    make_dataset(env / "envdata", n_train=13)
    make_dataset(cache(env, "fashion-mnist"), n_train=14)
    assert n_train() == 14


def test_incomplete_directory_is_skipped_for_a_complete_one(env, monkeypatch):
    monkeypatch.setenv("FNET_DATA", str(env / "envdata"))
    make_dataset(env / "envdata" / "fashion-mnist", n_train=13, skip=("train_images",))
    make_dataset(cache(env, "fashion-mnist"), n_train=14)
    assert n_train() == 14


def test_cache_beats_system_dir(env):
    make_dataset(cache(env, "fashion-mnist"), n_train=14)
    make_dataset(env / "system" / "fashion-mnist", n_train=15)
    assert n_train() == 14


def test_system_dir_is_the_last_resort(env):
    make_dataset(env / "system" / "fashion-mnist", n_train=15)
    assert n_train() == 15


def test_mnist_has_no_system_dir_and_does_not_use_fashion_files(env):
    make_dataset(env / "system" / "fashion-mnist", n_train=15)
    make_dataset(cache(env, "fashion-mnist"), n_train=14)
    with pytest.raises(DataError, match="MNIST: the data files were not found"):
        data.load_mnist(download=False)


def test_not_found_offline_lists_every_way(env):
    with pytest.raises(DataError) as info:
        data.load_fashion_mnist(download=False)
    message = str(info.value)
    for fragment in [
        "Fashion-MNIST: the data files were not found (and download=False)",
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz",
        "$FNET_DATA: not set",
        f"{cache(env, 'fashion-mnist')} (the fnet cache): does not exist",
        f"{env / 'system' / 'fashion-mnist'} (package dataset-fashion-mnist): does not exist",
        "call again with download=True",
        "set FNET_DATA=/path/to/datasets and put the files in /path/to/datasets/fashion-mnist/",
        "pass data_dir=",
        "sudo apt-get install dataset-fashion-mnist",
    ]:
        assert fragment in message, fragment
    assert message.index("$FNET_DATA: not set") < message.index("fnet cache") < message.index("package")


# --------------------------------------------------------------------------- the downloader


class Server:
    """A local HTTP server. ``routes[path] = (kind, payload)`` with kind one of
    ``"ok"`` (serve the bytes), ``"status"`` (answer with that HTTP code),
    ``"die"`` (announce the full length, send half, close) and ``"hang"``
    (answer nothing until the test ends)."""

    def __init__(self):
        self.routes: dict[str, tuple[str, object]] = {}
        self.requests: list[str] = []
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                kind, payload = outer.routes.get(self.path, ("status", 404))
                if kind == "status":
                    self.send_error(payload)
                    return
                if kind == "hang":
                    outer.release.wait(10)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload if kind == "ok" else payload[: len(payload) // 2])
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        # A short poll interval: shutdown() waits up to one interval (0.5 s by default).
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def url(self, prefix: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{prefix}/"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def tiny(env, monkeypatch):
    """A dataset "tiny" whose published files are small gzipped fakes; returns (arrays, payloads)."""
    src = env / "src"
    arrays = make_dataset(src)
    payloads = {name: (src / name).read_bytes() for name in NAMES.values()}
    info = DatasetInfo(name="tiny", title="Tiny", files=NAMES,
                       md5={n: hashlib.md5(b).hexdigest() for n, b in payloads.items()}, mirrors=())
    monkeypatch.setitem(DATASETS, "tiny", info)
    return arrays, payloads


def serve_all(server: Server, prefix: str, payloads: dict[str, bytes], kind: str = "ok") -> str:
    for name, content in payloads.items():
        server.routes[f"/{prefix}/{name}"] = (kind, content)
    return server.url(prefix)


def test_download_good_files(env, server, tiny, capsys):
    arrays, payloads = tiny
    mirror = serve_all(server, "m1", payloads)
    (x, _), (_, tt) = load_dataset("tiny", normalize=False, mirrors=[mirror])
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), arrays["train_images"])
    np.testing.assert_array_equal(tt, arrays["test_labels"])
    dest = cache(env, "tiny")
    assert sorted(p.name for p in dest.iterdir()) == sorted(payloads)  # and no temporary files
    for name, content in payloads.items():
        assert (dest / name).read_bytes() == content
    err = capsys.readouterr().err
    assert err.count("fnet: downloading") == 4  # one line per file
    assert f"fnet: downloading {mirror}train-images-idx3-ubyte.gz -> {dest}" in err
    # The second call finds the files and asks the server nothing.
    before = len(server.requests)
    load_dataset("tiny", mirrors=[mirror])
    assert len(server.requests) == before == 4


def test_download_goes_to_env_var_dir(env, server, tiny, monkeypatch):
    _, payloads = tiny
    monkeypatch.setenv("FNET_DATA", str(env / "envdata"))
    load_dataset("tiny", mirrors=[serve_all(server, "m", payloads)])
    assert sorted(p.name for p in (env / "envdata" / "tiny").iterdir()) == sorted(payloads)
    assert not cache(env, "tiny").exists()


def test_download_fills_in_only_missing_files_of_explicit_dir(env, server, tiny):
    _, payloads = tiny
    d = env / "explicit"
    make_dataset(d, skip=("test_images", "train_labels"))
    load_dataset("tiny", d, mirrors=[serve_all(server, "m", payloads)])
    assert sorted(server.requests) == ["/m/t10k-images-idx3-ubyte.gz", "/m/train-labels-idx1-ubyte.gz"]
    assert len(list(d.iterdir())) == 4


def test_public_download_function(env, server, tiny):
    _, payloads = tiny
    got = data.download("tiny", env / "dl", mirrors=serve_all(server, "m", payloads))  # a single URL
    assert got == env / "dl"
    assert {p.name: p.read_bytes() for p in got.iterdir()} == payloads


def test_bad_checksum_leaves_nothing_behind(env, server, tiny):
    _, payloads = tiny
    mirror = serve_all(server, "m", {n: b + b"!" for n, b in payloads.items()})
    with pytest.raises(DataError) as info:
        load_dataset("tiny", mirrors=[mirror])
    message = str(info.value)
    assert f"{mirror}train-images-idx3-ubyte.gz: MD5 " in message
    assert f"does not match the published {DATASETS['tiny'].md5['train-images-idx3-ubyte.gz']}" in message
    assert not cache(env, "tiny").exists()  # the directory it created, empty, is removed too


def test_bad_checksum_in_existing_dir_leaves_no_files(env, server, tiny):
    _, payloads = tiny
    d = env / "explicit"
    d.mkdir()
    mirror = serve_all(server, "m", {n: b[:20] + bytes([b[20] ^ 1]) + b[21:] for n, b in payloads.items()})
    with pytest.raises(DataError, match="MD5"):
        load_dataset("tiny", d, mirrors=[mirror])
    assert list(d.iterdir()) == []


def test_http_error_falls_through_to_next_mirror(env, server, tiny, capsys):
    arrays, payloads = tiny
    good = serve_all(server, "good", payloads)
    (_, t), _ = load_dataset("tiny", mirrors=[server.url("missing"), good])
    np.testing.assert_array_equal(t, arrays["train_labels"])
    assert server.requests[:2] == ["/missing/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz"]
    assert "fnet: failed: HTTP 404" in capsys.readouterr().err


def test_all_mirrors_failing_gives_one_aggregated_error(env, server, tiny):
    _, payloads = tiny
    for name in payloads:
        server.routes[f"/bad/{name}"] = ("status", 500)
    bad = server.url("bad")
    missing = server.url("missing")
    with pytest.raises(DataError) as info:
        load_dataset("tiny", mirrors=[missing, bad])
    message = str(info.value)
    assert "Tiny: the data files were not found, and downloading them failed." in message
    assert f"Downloading into {cache(env, 'tiny')}:" in message
    assert f"{missing}train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"{bad}train-images-idx3-ubyte.gz: HTTP 500" in message
    assert "connect to the internet and call again" in message
    assert len(server.requests) == 2  # it stops at the first file no mirror has
    assert not cache(env, "tiny").exists()


def test_mirror_dying_mid_transfer(env, server, tiny):
    arrays, payloads = tiny
    dying = serve_all(server, "dying", payloads, kind="die")
    size = len(payloads["train-images-idx3-ubyte.gz"])
    with pytest.raises(DataError) as info:
        load_dataset("tiny", mirrors=[dying])
    assert f"the connection closed after {size // 2} of {size} bytes" in str(info.value)
    assert not cache(env, "tiny").exists()
    # With a good mirror after it, the download succeeds and no partial file remains.
    (x, _), _ = load_dataset("tiny", normalize=False, mirrors=[dying, serve_all(server, "good", payloads)])
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), arrays["train_images"])
    assert sorted(p.name for p in cache(env, "tiny").iterdir()) == sorted(payloads)


def test_connection_refused_and_timeout(env, server, tiny):
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/x/"  # nothing listens once it is closed
    server.routes["/slow/train-images-idx3-ubyte.gz"] = ("hang", b"")
    with pytest.raises(DataError) as info:
        load_dataset("tiny", mirrors=[closed, server.url("slow")], timeout=0.3)
    message = str(info.value)
    assert f"{closed}train-images-idx3-ubyte.gz: [Errno 111] Connection refused" in message
    assert "slow/train-images-idx3-ubyte.gz: no answer within 0.3 s (timeout)" in message


def test_keyboard_interrupt_leaves_no_partial_file(env, tiny, monkeypatch):
    class Interrupted:
        def __init__(self):
            self.headers = {"Content-Length": "100"}
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return b"x" * 10

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Interrupted())
    d = env / "explicit"
    d.mkdir()
    with pytest.raises(KeyboardInterrupt):
        load_dataset("tiny", d, mirrors=["http://127.0.0.1:1/"])
    assert list(d.iterdir()) == []


# --------------------------------------------------------------------------- real Fashion-MNIST

needs_fashion = pytest.mark.skipif(
    not SYSTEM_FASHION.is_dir(),
    reason=f"Fashion-MNIST is not installed in {SYSTEM_FASHION}: apt-get install dataset-fashion-mnist")


@pytest.fixture(scope="module")
def fashion_default(tmp_path_factory):
    """Loaded through the search order (empty HOME, no $FNET_DATA, no mirrors): found in the system dir."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("FNET_DATA", raising=False)
        return data.load_fashion_mnist(mirrors=())


@pytest.fixture(scope="module")
def fashion_raw():
    return data.load_fashion_mnist(SYSTEM_FASHION, normalize=False, flatten=False, one_hot_label=True,
                                   download=False)


@needs_fashion
def test_fashion_mnist_defaults(fashion_default):
    (x, t), (xt, tt) = fashion_default
    assert x.shape == (60000, 784) and xt.shape == (10000, 784)
    assert x.dtype == xt.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0 and xt.min() == 0.0 and xt.max() == 1.0
    assert t.shape == (60000,) and tt.shape == (10000,) and t.dtype == tt.dtype == np.int32
    assert np.bincount(t).tolist() == [6000] * 10
    assert np.bincount(tt).tolist() == [1000] * 10
    assert t[:8].tolist() == [9, 0, 0, 3, 0, 2, 7, 2]  # the first labels of the published files
    assert tt[:8].tolist() == [9, 2, 1, 1, 6, 1, 4, 6]


@needs_fashion
def test_fashion_mnist_raw_nhwc_one_hot(fashion_default, fashion_raw):
    (x, t), (xt, tt) = fashion_raw
    assert x.shape == (60000, 28, 28, 1) and xt.shape == (10000, 28, 28, 1)
    assert x.dtype == np.uint8 and x.max() == 255
    assert t.shape == (60000, 10) and tt.shape == (10000, 10) and t.dtype == np.float32
    (x_def, t_def), (xt_def, tt_def) = fashion_default
    np.testing.assert_array_equal(t.argmax(axis=1), t_def)
    np.testing.assert_array_equal(tt.argmax(axis=1), tt_def)
    np.testing.assert_array_equal(xt.reshape(10000, 784) / np.float32(255), xt_def)
    np.testing.assert_array_equal(x[:1000].reshape(1000, 784) / np.float32(255), x_def[:1000])
