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


def test_summary_is_a_tree_for_branching_networks_and_totals_the_real_count():
    block = fnet.residual(fnet.sequential(L.affine(6), L.relu()), shortcut=L.affine(6))
    net = fnet.sequential(L.affine(6), block, fnet.parallel(L.affine(3), L.relu()))
    text = fnet.summary(net, (None, 5), batch_size=2)
    rows = rows_of(text)
    real = sum(p.size for p in jax.tree.leaves(net.init(jax.random.key(0), (None, 5))[0]))
    assert rows["total"][1] == f"{real:,}" == "141"
    assert rows["residual_0"][1:4] == ["residual", "(N, 6)", "84"]  # the subtree's parameters
    assert rows["residual_0/shortcut"][1:4] == ["affine", "(N, 6)", "42"]  # reads x, not the body's output
    assert rows["parallel_0"][1:3] == ["parallel", "(N, 9)"]
    assert rows["parallel_0/relu_0"][2] == "(N, 6)"
    lines = text.splitlines()
    indent = {cells.strip().split()[0]: len(cells) - len(cells.lstrip()) for cells in lines[2:-4]}
    assert indent["residual_0"] < indent["residual_0/body"] < indent["residual_0/body/affine_0"]


def test_summary_of_resnet_matches_init():
    net = fnet.resnet()
    rows = rows_of(fnet.summary(net, (None, 28, 28, 1)))
    assert rows["total"][1] == "174,778"
    assert rows["stage_2/block_1/shortcut"][1:3] == ["conv2d", "(N, 14, 14, 32)"]
    assert rows["stage_2/block_1/body/batch_norm_0"][2] == "(N, 28, 28, 16)"
    assert rows["head/global_avg_pool2d_0"][2] == "(N, 64)"


def _opaque(wiring=None):
    """A user's combinator: y = a(x) * b(x), listing its children."""
    a, b = L.affine(3), L.affine(3)

    def init(key, shape):
        ka, kb = jax.random.split(key)
        (pa, out), (pb, _) = a.init(ka, shape), b.init(kb, shape)
        return {"a": pa, "b": pb}, out

    def forward(params, x):
        ya, ca = a.forward(params["a"], x)
        yb, cb = b.forward(params["b"], x)
        return ya * yb, (ca, cb, ya, yb)

    return fnet.Layer("product", init, forward, lambda c, d: None, children=(("a", a), ("b", b)),
                      wiring=wiring)


def test_a_combinator_without_wiring_is_one_row_with_a_note():
    text = fnet.summary(fnet.sequential(L.relu(), ("prod", _opaque())), (None, 4), batch_size=2)
    rows = rows_of(text)
    assert rows["prod"][1:4] == ["product", "(N, 3)", "30"] and rows["total"][1] == "30"
    assert "prod/a" not in rows
    assert "prod (product) lists children but gives no wiring" in text
    # its whole cache, as one layer's: both affines' inputs (one array, counted once) and ya, yb
    assert rows["prod"][4].count("f32[2,3]") == 2 and "f32[2,4]=prod cache" in rows["prod"][4]


def test_a_wiring_that_disagrees_with_init_is_reported():
    wrong = _opaque(wiring=lambda ops, x: ops.concat(ops.call("a", x), ops.call("b", x)))
    text = fnet.summary(wrong, (None, 4))
    assert "its wiring gives shape (N, 6), but its init gives (N, 3)" in text
    assert rows_of(text)["total"][1] == "30"
