"""fnet.tape: recording graph nodes and running the backward pass over the recording."""

import importlib.util
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from fnet import graph
from fnet.graph.tape import Const, Tape

ROOT = Path(__file__).resolve().parents[1]


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


buy = load_script("buy_apple")


def floats(d):
    return {k: float(v) for k, v in d.items()}


def test_the_brief_example_reads_plainly():
    g = graph.Tape()
    apple, num, tax = g.input("apple", 100.0), g.input("apple_num", 2.0), g.input("tax", 1.1)
    price = g.apply(graph.mul, g.apply(graph.mul, apple, num), tax)
    assert float(price.value) == pytest.approx(220.0)
    assert floats(g.backward(price)) == pytest.approx({"apple": 2.2, "apple_num": 110.0, "tax": 200.0})


@pytest.mark.parametrize(("manual", "taped"), [(buy.buy_apple, buy.buy_apple_tape),
                                               (buy.buy_apple_orange, buy.buy_apple_orange_tape)])
def test_tape_backward_equals_the_scripts_manual_chain(manual, taped):
    want = manual(apple=90.0, tax=1.08)  # not the defaults, so nothing can be hard-wired
    g, price = taped(apple=90.0, tax=1.08)
    got = g.backward(price)
    assert float(price.value) == float(want.pop("price"))
    assert floats({"d" + k: v for k, v in got.items()}) == floats(want)  # exactly: same nodes, same order


def test_a_value_used_twice_gets_the_sum_of_its_gradients():
    g = Tape()
    x = g.input("x", 3.0)
    square = g.apply(graph.mul, x, x)  # x feeds both inputs of one node ...
    z = g.apply(graph.add, square, x, name="z")  # ... and another node
    assert float(z.value) == 12.0
    assert floats(g.backward(z)) == {"x": 7.0}  # 2x + 1
    assert float(g.grad(square)) == 1.0
    # an intermediate result used twice accumulates as well: w = s * s with s = x + x
    g = Tape()
    x = g.input("x", 3.0)
    s = g.apply(graph.add, x, x)
    w = g.apply(graph.mul, s, s)
    assert floats(g.backward(w)) == {"x": 24.0}  # d(4x^2)/dx = 8x
    assert float(g.grad(s)) == 12.0


def test_sigmoid_from_nodes_with_constants():
    g = Tape()
    x = g.input("x", jnp.array([-2.0, 0.0, 1.5]))
    y = g.apply(graph.inverse, g.apply(graph.add, g.apply(graph.exp, g.apply(graph.mul, x, -1.0)), 1.0))
    dx = g.backward(y)["x"]
    np.testing.assert_allclose(dx, y.value * (1 - y.value), rtol=1e-6)
    assert isinstance(g.steps[0].inputs[1], Const) and float(g.steps[0].inputs[1].value) == -1.0


def test_repeat_sum_and_unused_inputs():
    g = Tape()
    x = g.input("x", jnp.array([1.0, 2.0]))
    g.input("unused", 5.0)
    r = g.apply(graph.repeat, x, 3)  # the count is passed on to the node, not recorded as an input
    s = g.apply(graph.sum, r)
    assert g.steps[0].static == (3,) and len(g.steps[0].inputs) == 1
    grads = g.backward(s, dout=jnp.array([1.0, 10.0]))
    np.testing.assert_array_equal(grads["x"], [3.0, 30.0])
    assert float(grads["unused"]) == 0.0


def test_recording_more_clears_old_gradients():
    g = Tape()
    x = g.input("x", 2.0)
    y = g.apply(graph.exp, x)
    g.backward(y)
    assert g.output is y and g.edge_grad(0, 0) is not None
    g.apply(graph.log, y)
    assert g.output is None and g.edge_grad(0, 0) is None
    with pytest.raises(ValueError, match="run backward first"):
        g.grad(x)


def test_mistakes_are_named():
    g, other = Tape(), Tape()
    x = g.input("x", 1.0)
    with pytest.raises(ValueError, match="already an input named 'x'"):
        g.input("x", 2.0)
    with pytest.raises(ValueError, match="another tape"):
        other.apply(graph.exp, x)
    with pytest.raises(TypeError, match="takes 2 input"):
        g.apply(graph.mul, x)
    with pytest.raises(ValueError, match="Var of this tape"):
        other.backward(x)
