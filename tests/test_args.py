"""fnet._args: the one validation helper, its messages, and its error types."""

from pathlib import Path

import numpy as np
import pytest

from fnet import _args
from fnet import layers as L


def test_wrong_type_is_both_a_type_error_and_a_value_error():
    with pytest.raises(TypeError, match=r"^affine: out_features must be an int >= 1, got '3'$"):
        L.affine("3")
    with pytest.raises(ValueError, match=r"^dropout: rate is the probability of dropping an entry and "
                                         r"must be a number in \[0, 1\), got True$"):
        L.dropout(True)


@pytest.mark.parametrize("call,message", [
    (lambda: _args.count("f", "n", 0, 1), "f: n must be a positive int, got 0"),
    (lambda: _args.count("f", "n", -1, 0), "f: n must be an int >= 0, got -1"),
    (lambda: _args.positive("f", "eps", 0), "f: eps must be a positive number, got 0"),
    (lambda: _args.non_negative("f", "std", -0.5), "f: std must be >= 0, got -0.5"),
    (lambda: _args.number("f", "lr", float("inf")), "f: lr must be finite, got inf"),
    (lambda: _args.interval("f", "m", 1.5, 0, 1, hint=" (why)"), r"f: m must be in [0, 1], got 1.5 (why)"),
    (lambda: _args.in_unit("f", "beta", 1.0), "f: beta must be in [0, 1), got 1"),
])
def test_messages_name_the_function_the_argument_and_the_value(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_numpy_values_are_accepted():
    assert _args.count("f", "n", np.int64(3), 1) == 3
    assert _args.positive("f", "x", np.float32(0.5)) == 0.5


def test_a_shared_missing_folder_made_by_another_process_meanwhile_is_no_error(tmp_path, monkeypatch):
    # two processes of one run check the same new path: the other one makes the folder between
    # this one's look and its mkdir, then probes in it while this one cleans up
    target = tmp_path / "runs" / "a" / "model.npz"
    mkdir = Path.mkdir

    def raced(self, *args, **kwargs):
        mkdir(self, *args, **kwargs)
        if self == target.parent:
            (self / ".other-process.probe").write_text("")
            raise FileExistsError(17, "File exists", str(self))

    monkeypatch.setattr(Path, "mkdir", raced)
    assert _args.writable_path("fit", "checkpoint", target) == target
    # the folder the other process made and still uses stays; nothing of this check is left
    assert sorted(p.name for p in target.parent.iterdir()) == [".other-process.probe"]
    assert not target.exists()


def test_a_folder_made_for_the_check_is_removed_again(tmp_path):
    target = tmp_path / "runs" / "b" / "model.npz"
    assert _args.writable_path("fit", "checkpoint", target) == target
    assert list(tmp_path.iterdir()) == []
