"""fnet._args: the one validation helper, its messages, and its error types."""

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
