"""Learning-rate schedules: values at chosen steps, endpoints, jit with a traced step, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import schedules


def values(schedule, steps):
    """The schedule at each step, computed under jit with the step traced as int32."""
    f = jax.jit(jax.vmap(schedule))
    return np.asarray(f(jnp.asarray(steps, jnp.int32)), np.float64)


def test_constant():
    s = schedules.constant(0.05)
    np.testing.assert_allclose(values(s, [0, 1, 10**6]), 0.05, rtol=1e-7)


def test_step_decay_multiplies_by_gamma_every_step_size_steps():
    s = schedules.step_decay(0.1, step_size=3, gamma=0.5)
    got = values(s, [0, 2, 3, 5, 6, 9, 30])
    np.testing.assert_allclose(got, [0.1, 0.1, 0.05, 0.05, 0.025, 0.0125, 0.1 * 0.5**10], rtol=1e-6)


def test_step_decay_default_gamma_is_a_tenth():
    s = schedules.step_decay(1.0, step_size=10)
    np.testing.assert_allclose(values(s, [9, 10, 25]), [1.0, 0.1, 0.01], rtol=1e-6)


def test_cosine_endpoints_and_midpoint():
    s = schedules.cosine(0.1, total_steps=100, final_lr=0.01)
    got = values(s, [0, 50, 100, 101, 10**5])
    np.testing.assert_allclose(got, [0.1, 0.055, 0.01, 0.01, 0.01], rtol=1e-6)
    # strictly decreasing in between
    assert np.all(np.diff(values(s, np.arange(101))) < 0)


def test_cosine_quarter_point_matches_the_formula():
    s = schedules.cosine(2.0, total_steps=40, final_lr=0.0, warmup_steps=8)
    t = 16  # a quarter of the way through the 32 decay steps
    np.testing.assert_allclose(values(s, [t]), [(1 + math.cos(math.pi / 4))], rtol=1e-6)


def test_cosine_warmup_is_linear_from_lr_over_warmup_to_lr():
    s = schedules.cosine(1.0, total_steps=20, final_lr=0.0, warmup_steps=4)
    got = values(s, [0, 1, 2, 3, 4, 5])
    np.testing.assert_allclose(got[:5], [0.25, 0.5, 0.75, 1.0, 1.0], rtol=1e-6)
    assert got[5] < 1.0  # decay has begun
    np.testing.assert_allclose(values(s, [20]), [0.0], atol=1e-7)


@pytest.mark.parametrize("schedule", [schedules.constant(0.1), schedules.step_decay(0.1, 5),
                                      schedules.cosine(0.1, 50, warmup_steps=5)], ids=repr)
def test_float32_scalar_with_x64_and_python_or_traced_steps(schedule):
    assert jax.config.jax_enable_x64  # tests/conftest.py turns it on
    eager = schedule(7)
    traced = jax.jit(schedule)(jnp.int32(7))
    for v in (eager, traced):
        assert isinstance(v, jax.Array) and v.shape == () and v.dtype == jnp.float32
    assert float(eager) == float(traced)
    # inside lax.scan, driven by a traced counter
    _, seq = jax.lax.scan(lambda c, _: (c + 1, schedule(c)), jnp.int32(0), None, length=10)
    np.testing.assert_allclose(seq, values(schedule, range(10)), rtol=1e-6)


def test_repr_shows_hyperparameters():
    assert repr(schedules.cosine(0.1, 1000, warmup_steps=10)) == (
        "schedules.cosine(lr=0.1, total_steps=1000, final_lr=0.0, warmup_steps=10)")
    assert repr(schedules.step_decay(0.1, 30)) == "schedules.step_decay(lr=0.1, step_size=30, gamma=0.1)"


@pytest.mark.parametrize("make, arg", [
    (lambda: schedules.constant(0.0), "lr"),
    (lambda: schedules.constant(float("nan")), "lr"),
    (lambda: schedules.step_decay(-0.1, 10), "lr"),
    (lambda: schedules.step_decay(0.1, 0), "step_size"),
    (lambda: schedules.step_decay(0.1, 10, gamma=0.0), "gamma"),
    (lambda: schedules.step_decay(0.1, 10, gamma=1.5), "gamma"),
    (lambda: schedules.cosine(0.1, 0), "total_steps"),
    (lambda: schedules.cosine(0.1, 10, final_lr=0.2), "final_lr"),
    (lambda: schedules.cosine(0.1, 10, final_lr=-0.1), "final_lr"),
    (lambda: schedules.cosine(0.1, 10, warmup_steps=10), "warmup_steps"),
    (lambda: schedules.cosine(0.1, 10, warmup_steps=-1), "warmup_steps"),
])
def test_bad_arguments_name_the_schedule_and_argument(make, arg):
    with pytest.raises(ValueError, match=rf"schedules\.\w+: {arg}"):
        make()


def test_wrong_argument_types():
    with pytest.raises(TypeError, match="step_size must be an int"):
        schedules.step_decay(0.1, 2.5)
    with pytest.raises(TypeError, match="lr must be a number"):
        schedules.constant("0.1")
    with pytest.raises(TypeError, match="step must be an integer scalar"):
        schedules.constant(0.1)(1.5)


def test_warmup_in_front_of_any_schedule():
    s = schedules.warmup(schedules.step_decay(0.1, step_size=10), 4)
    values = [float(s(t)) for t in (0, 1, 3, 4, 9, 10)]
    np.testing.assert_allclose(values, [0.025, 0.05, 0.1, 0.1, 0.1, 0.01], rtol=1e-6)
    assert repr(schedules.warmup(0.5, 2)) == ("schedules.warmup(schedule=schedules.constant(lr=0.5), "
                                              "warmup_steps=2)")
    with pytest.raises(ValueError, match=r"schedules.warmup: warmup_steps must be a positive int"):
        schedules.warmup(0.1, 0)
