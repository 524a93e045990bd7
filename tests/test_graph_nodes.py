"""fnet.graph.nodes reproduce the book's worked examples (apples, oranges) exactly."""

import jax.numpy as jnp
import pytest

from fnet import graph
from fnet.graph import add, mul


def test_buy_apple():
    apple, apple_num, tax = 100.0, 2.0, 1.1
    apple_price, c1 = mul.forward(apple, apple_num)
    price, c2 = mul.forward(apple_price, tax)
    assert float(price) == pytest.approx(220.0)

    dapple_price, dtax = mul.backward(c2, 1.0)
    dapple, dapple_num = mul.backward(c1, dapple_price)
    assert (float(dapple), float(dapple_num), float(dtax)) == pytest.approx((2.2, 110.0, 200.0))


def test_buy_apple_orange():
    apple, apple_num, orange, orange_num, tax = 100.0, 2.0, 150.0, 3.0, 1.1
    apple_price, c_apple = mul.forward(apple, apple_num)
    orange_price, c_orange = mul.forward(orange, orange_num)
    all_price, c_add = add.forward(apple_price, orange_price)
    price, c_tax = mul.forward(all_price, tax)
    assert float(price) == pytest.approx(715.0)

    dall_price, dtax = mul.backward(c_tax, 1.0)
    dapple_price, dorange_price = add.backward(c_add, dall_price)
    dorange, dorange_num = mul.backward(c_orange, dorange_price)
    dapple, dapple_num = mul.backward(c_apple, dapple_price)
    got = [float(g) for g in (dapple_num, dapple, dorange, dorange_num, dtax)]
    assert got == pytest.approx([110.0, 2.2, 3.3, 165.0, 650.0])


def test_sigmoid_graph_from_nodes_gives_y_times_one_minus_y():
    # The book's sigmoid graph: x -> *(-1) -> exp -> +1 -> / ; backward gives y(1-y).
    x = jnp.array([-3.0, -0.5, 0.0, 2.0])
    a, c1 = mul.forward(x, -1.0)
    b, c2 = graph.exp.forward(a)
    c, c3 = add.forward(b, 1.0)
    y, c4 = graph.inverse.forward(c)
    dc = graph.inverse.backward(c4, jnp.ones_like(y))
    db, _ = add.backward(c3, dc)
    da = graph.exp.backward(c2, db)
    dx, _ = mul.backward(c1, da)
    assert jnp.allclose(dx, y * (1 - y), rtol=1e-6)


def test_repeat_and_sum_are_mirror_images():
    x = jnp.arange(6.0).reshape(2, 3)
    r, rc = graph.repeat.forward(x, 4)
    assert r.shape == (4, 2, 3)
    s, sc = graph.sum.forward(r)
    assert jnp.array_equal(s, 4 * x)
    d = jnp.ones((2, 3))
    assert jnp.array_equal(graph.repeat.backward(rc, graph.sum.backward(sc, d)), 4 * d)


def test_broadcast_gradients_are_summed_to_input_shape():
    x, y = jnp.ones((2, 3)), jnp.array([1.0, 2.0, 3.0])
    out, cache = mul.forward(x, y)
    dx, dy = mul.backward(cache, jnp.ones_like(out))
    assert dx.shape == (2, 3) and dy.shape == (3,)
    assert jnp.array_equal(dy, jnp.array([2.0, 2.0, 2.0]))


def test_bad_static_arguments():
    with pytest.raises(ValueError, match="repeat: n must be a positive int"):
        graph.repeat.forward(jnp.ones(3), 0)
    with pytest.raises(ValueError, match="sum: sums over the first axis"):
        graph.sum.forward(2.0)


def test_backward_takes_a_python_number_as_dout():
    # the book calls add_layer.backward(1): a float, not an array
    _, cache = graph.add.forward(2.0, 3.0)
    assert [float(g) for g in graph.add.backward(cache, 1.0)] == [1.0, 1.0]
    _, cache = graph.mul.forward(2.0, 3.0)
    assert [float(g) for g in graph.mul.backward(cache, 1.0)] == [3.0, 2.0]
