"""scripts/gradient_check.py runs end to end on a small IDX dataset, and its exit status gates."""

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from script_runner import run_script


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: big-endian magic 0x0000080<ndim> (unsigned bytes), one 4-byte size per axis, the bytes."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("t10k", 4)):
        write_idx(d / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return d


def run_check(*args):
    return run_script("scripts/gradient_check.py", *args)


def test_gradient_check_passes_and_prints_the_books_lines(idx_dir):
    proc = run_check("--data-dir", str(idx_dir), "--samples", "2", "--hidden", "4")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    diffs = {line.split(":")[0]: float(line.split(":")[1]) for line in lines
             if line.split(":")[0] in ("W1", "b1", "W2", "b2")}
    assert set(diffs) == {"W1", "b1", "W2", "b2"}
    assert all(d < 1e-8 for d in diffs.values()), diffs
    n_params = 784 * 4 + 4 + 4 * 10 + 10
    assert any(line.startswith(f"numerical: {2 * n_params:,} loss evaluations") for line in lines)
    assert any(line.startswith("backprop is") for line in lines)
    assert lines[-1].startswith("OK:")


def test_an_impossible_threshold_fails(idx_dir):
    proc = run_check("--data-dir", str(idx_dir), "--samples", "2", "--hidden", "4", "--threshold", "1e-30")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1].startswith("FAILED:")


def test_damaged_data_is_exit_status_2(idx_dir, tmp_path):
    # all four files present (so nothing is downloaded), but the labels do not match the images
    for f in idx_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(5))
    proc = run_check("--data-dir", str(tmp_path), "--samples", "2")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot load fashion-mnist" in proc.stderr


def test_gradient_check_of_a_multi_layer_net(idx_dir):
    proc = run_check("--data-dir", str(idx_dir), "--samples", "2", "--model", "mlp", "--hidden", "4", "3",
                     "--activation", "tanh")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Gradient check: multi_layer_net(784, [4, 3], 10, activation='tanh')")
    assert {line.split(":")[0] for line in lines if re.match(r"[Wb]\d+: ", line)} == {
        "W1", "b1", "W2", "b2", "W3", "b3"}
    n_params = 784 * 4 + 4 + 4 * 3 + 3 + 3 * 10 + 10
    assert any(line.startswith(f"numerical: {2 * n_params:,} loss evaluations") for line in lines)
    assert lines[-1].startswith("OK:")


@pytest.mark.parametrize("args, message", [
    (["--eps", "0"], "argument --eps: expected a positive number, got 0.0"),  # it reported inf
    (["--threshold", "-1"], "argument --threshold: expected a number >= 0, got -1.0"),  # it failed all
    (["--samples", "0"], "--samples must be at least 1"),
])
def test_options_that_cannot_check_anything_are_refused(args, message):
    proc = run_check(*args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
