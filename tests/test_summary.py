import dataclasses
import re

import jax
import jax.numpy as jnp
import pytest

import fnet
from fnet import layers as L


def test_summary_table():
    net = fnet.sequential(L.flatten(), fnet.sequential(L.affine(50), L.relu()), L.affine(10))
    text = fnet.summary(net, (None, 28, 28))
    lines = text.splitlines()
    assert lines[0].split() == ["layer", "kind", "output", "shape", "params"]
    assert any(line.split() == ["sequential_0/affine_0", "affine", "(N,", "50)", "39,250"] for line in lines)
    assert any(line.split() == ["affine_0", "affine", "(N,", "10)", "510"] for line in lines)
    assert lines[-1].split() == ["total", "39,760"]


def rows_of(text):
    """The table's rows as ``{layer: cells}`` (cells split on runs of two or more spaces)."""
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in text.splitlines())
            if len(cells) > 1}


def test_summary_without_batch_size_has_no_cache_columns():
    text = fnet.summary(fnet.two_layer_net(784, 50, 10), (None, 784))
    assert "cache" not in text and len(text.splitlines()) == 7


def test_cache_report_counts_what_backprop_keeps():
    text = fnet.summary(fnet.two_layer_net(784, 50, 10), (None, 784), batch_size=100)
    rows = rows_of(text)
    assert rows["layer"][4:] == ["cache (batch 100)", "cache bytes"]
    # the affine layer keeps its input and W: the input batch and the parameter exist anyway
    assert rows["Affine1"][4:] == ["f32[100,784]=input f32[784,50]=W (param)", "0"]
    assert rows["Relu1"][4:] == ["bool[100,50]", "5,000"]  # the mask: one byte per element
    assert rows["Affine2"][4:] == ["f32[100,50] f32[50,10]=W (param)", "20,000"]  # Relu1's output
    assert rows["total"] == ["total", "39,760", "25,000 (24.4 KiB)"]
    assert "not counted" in text.splitlines()[-1]


def test_cache_report_scales_with_batch_and_dtype_and_sees_shared_arrays():
    net = fnet.sequential(L.affine(20), L.sigmoid(), L.affine(5))
    rows = rows_of(fnet.summary(net, (None, 8), batch_size=4, dtype=jnp.float64))
    assert rows["sigmoid_0"][4:] == ["f64[4,20]", "640"]  # sigmoid keeps its output y ...
    assert rows["affine_1"][4:] == ["f64[4,20]=sigmoid_0 cache f32[20,5]=W (param)", "0"]  # ... shared
    rows = rows_of(fnet.summary(net, (None, 8), batch_size=40, dtype=jnp.float64))
    assert rows["sigmoid_0"][-1] == "6,400"


def test_cache_report_traces_layers_that_need_a_key_and_the_mode():
    def forward(params, x, *, key, train):
        keep = jax.random.bernoulli(key, 0.5, x.shape) if train else jnp.ones(x.shape, bool)
        return x * keep, keep

    noisy = dataclasses.replace(L.relu(), name="noisy", forward=forward, uses=frozenset({"key", "train"}))
    rows = rows_of(fnet.summary(fnet.sequential(L.affine(3), noisy), (None, 2), batch_size=5))
    assert rows["noisy_0"][4:] == ["bool[5,3]", "15"]


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fnet.summary(fnet.two_layer_net(4, 3, 2), (None, 4), batch_size=0)
