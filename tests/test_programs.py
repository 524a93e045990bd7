"""fnet.train.programs: a run's programs compiled in threads, the evaluation left compiling."""

import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet.train import programs
from fnet.train.programs import Compiling, compile_all


class _Traced:
    """A stand-in for a traced program: records when its compilation starts and ends."""

    def __init__(self, name, log, seconds=0.0, error=None):
        self.name, self.log, self.seconds, self.error = name, log, seconds, error

    def as_text(self):  # a program without matmuls
        return ""

    def compile(self, options=None):
        self.log.append(("start", self.name))
        time.sleep(self.seconds)
        if self.error:
            raise self.error
        self.log.append(("end", self.name))
        return lambda *args: (self.name, args)


def test_later_programs_compile_after_the_others_and_wait_when_called():
    log = []
    release = threading.Event()

    class _Slow(_Traced):
        def compile(self, options=None):
            release.wait(10)
            return super().compile(options)

    lowered = [("init", _Traced("init", log, 0.05)), ("evaluate", _Slow("evaluate", log)),
               ("epoch", _Traced("epoch", log, 0.05))]
    out = compile_all(lowered, None, later=("evaluate",))
    assert out["init"]() == ("init", ()) and out["epoch"](1) == ("epoch", (1,))
    assert isinstance(out["evaluate"], Compiling)
    assert ("start", "evaluate") not in log[:4] and {e for e in log[:4]} == {
        ("start", "init"), ("end", "init"), ("start", "epoch"), ("end", "epoch")}
    release.set()
    assert out["evaluate"](2, 3) == ("evaluate", (2, 3))  # waits for its compilation
    assert log[-2:] == [("start", "evaluate"), ("end", "evaluate")]


def test_a_later_program_that_fails_to_compile_raises_when_called():
    out = compile_all([("epoch", _Traced("epoch", [])),
                       ("evaluate", _Traced("evaluate", [], error=RuntimeError("out of memory")))],
                      None, later=("evaluate",))
    with pytest.raises(RuntimeError, match="out of memory"):
        out["evaluate"]()
    with pytest.raises(RuntimeError, match="out of memory"):
        out["evaluate"].compiled()


def test_wait_for_compilations_waits_for_a_program_never_called():
    # a run that stops before its first evaluation leaves it compiling; fnet-train waits before os._exit
    log = []
    compile_all([("epoch", _Traced("epoch", log)), ("evaluate", _Traced("evaluate", log, 0.5))], None,
                later=("evaluate",))
    assert ("end", "evaluate") not in log
    programs.wait_for_compilations()
    assert log[-1] == ("end", "evaluate") and not programs._PENDING
    programs.wait_for_compilations()  # nothing pending: returns at once


def test_a_rejected_xla_option_is_raised_before_anything_runs():
    low = jax.jit(lambda x: x + 1).lower(jnp.float32(1))
    with pytest.raises(ValueError, match=r"fit: XLA rejected xla_options=\{'xla_no_such_option': 1\}"):
        compile_all([("epoch", low), ("evaluate", low)], {"xla_no_such_option": 1}, later=("evaluate",))


def test_real_programs_compiled_now_and_later_compute_the_same():
    low = jax.jit(lambda x: jnp.sin(x) * 2).lower(jnp.zeros(3, jnp.float32))
    out = compile_all([("now", low), ("later", low)], None, later=("later",))
    x = jnp.arange(3, dtype=jnp.float32)
    np.testing.assert_array_equal(out["now"](x), out["later"](x))
    assert out["later"].compiled().as_text() == out["now"].as_text()


def test_epoch_program_passes_the_step_count_only_when_it_is_an_input():
    seen = []
    fixed = programs.epoch_program(lambda *a: seen.append(a), dynamic=False)
    dynamic = programs.epoch_program(lambda *a: seen.append(a), dynamic=True)
    fixed(1, 2, 600)
    dynamic(1, 2, 400)
    assert seen[0] == (1, 2) and seen[1][:2] == (1, 2) and seen[1][2] == 400
    assert seen[1][2].dtype == np.int32


def test_compiler_options_are_fnets_cpu_defaults_under_the_callers():
    assert programs.compiler_options(None, "cpu") == programs.CPU_XLA_OPTIONS
    assert programs.compiler_options(None, "gpu") == {}
    mine = {"xla_cpu_experimental_ynn_fusion_type": "", "xla_cpu_enable_fast_math": False}
    assert programs.compiler_options(mine, "cpu") == mine  # the caller's value replaces fnet's
    assert programs.compiler_options({"xla_cpu_enable_fast_math": False}, "cpu") == {
        **programs.CPU_XLA_OPTIONS, "xla_cpu_enable_fast_math": False}


def test_every_program_is_compiled_with_the_defaults():
    seen = []

    class _Options(_Traced):
        def compile(self, options=None):
            seen.append(options)
            return super().compile(options)

    compile_all([("epoch", _Options("epoch", [])), ("evaluate", _Options("evaluate", []))], None,
                later=("evaluate",))["evaluate"].compiled()
    assert seen == [programs.compiler_options(None, program=_Traced("any", []))] * 2


def _scan_of(*products):
    """A traced program whose loop body computes each ``(lhs shape, rhs shape, einsum)`` product."""
    def f(*operands):
        def body(c, _):
            return c + sum(jnp.einsum(spec, a, b).sum() for (_, _, spec), a, b in
                           zip(products, operands[::2], operands[1::2], strict=True)), None
        return jax.lax.scan(body, 0.0, None, length=2)[0]

    return jax.jit(f).lower(*(jnp.ones(shape) for lhs, rhs, _ in products for shape in (lhs, rhs)))


def test_largest_matmul_counts_the_multiply_adds_of_every_product_in_loops_too():
    book = ((100, 784), (784, 50), "nd,dk->nk")  # 100 * 50 outputs, 784 long each
    batched = ((4, 30, 16), (4, 20, 16), "nth,nsh->nts")  # 4 * 30 * 20 outputs, 16 long
    gram = ((100, 784), (100, 784), "nd,ne->de")  # contracted over the first axis
    assert programs.largest_matmul(_scan_of(book)) == 100 * 784 * 50
    assert programs.largest_matmul(_scan_of(batched)) == 4 * 30 * 20 * 16
    assert programs.largest_matmul(_scan_of(book, gram, batched)) == 784 * 784 * 100
    assert programs.largest_matmul(jax.jit(lambda x: x + 1).lower(jnp.float32(1))) == 0


def test_a_matmul_whose_shapes_cannot_be_read_counts_as_large():
    class _Text:
        def __init__(self, text):
            self.text = text

        def as_text(self):
            return self.text

    unknown = _Text('%0 = "stablehlo.dot_general"(%a, %b) <{dot_dimension_numbers = #stablehlo.dot<...>}>')
    assert programs.largest_matmul(unknown) > programs.SMALL_MATMUL_MACS
    assert programs.compiler_options(None, "cpu", program=unknown) == programs.CPU_XLA_OPTIONS


def test_a_program_of_small_matmuls_compiles_them_with_eigen_a_larger_one_with_ynnpack():
    small = _scan_of(((100, 784), (784, 50), "nd,dk->nk"))  # the book's first layer
    large = _scan_of(((512, 784), (784, 1024), "nd,dk->nk"))  # the wide config's
    assert programs.largest_matmul(small) <= programs.SMALL_MATMUL_MACS < programs.largest_matmul(large)
    assert programs.compiler_options(None, "cpu", program=small) == programs.CPU_SMALL_MATMUL_OPTIONS
    assert programs.compiler_options(None, "cpu", program=large) == programs.CPU_XLA_OPTIONS
    assert programs.compiler_options(None, "gpu", program=small) == {}
    mine = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
    assert programs.compiler_options(mine, "cpu", program=small) == mine  # the caller's value wins
    if jax.default_backend() != "cpu":
        return
    x, w1, w2 = (jnp.ones(s, jnp.float32) for s in ((100, 784), (784, 50), (784, 1024)))
    compiled = compile_all([("small", jax.jit(jnp.matmul).lower(x, w1)),
                            ("large", jax.jit(jnp.matmul).lower(x, w2))], None)
    assert "__ynn_fusion" not in compiled["small"].as_text()  # Eigen's dot
    assert "__ynn_fusion" in compiled["large"].as_text()
    np.testing.assert_allclose(compiled["small"](x, w1), x @ w1, rtol=1e-6)


def test_the_cpu_default_hands_convolutions_to_eigen_not_ynnpack():
    if jax.default_backend() != "cpu":
        pytest.skip("a CPU compiler option")
    x, w = jnp.ones((2, 8, 8, 32)), jnp.ones((3, 3, 32, 32)) / 288

    def conv(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    low = jax.jit(conv).lower(x, w)
    ours = compile_all([("epoch", low)], None)["epoch"]
    assert "__ynn_fusion" not in ours.as_text()
    np.testing.assert_allclose(ours(x, w), low.compile()(x, w), rtol=1e-6)


def test_a_default_this_xla_rejects_is_left_out_with_a_warning(monkeypatch):
    monkeypatch.setattr(programs, "CPU_XLA_OPTIONS", {"xla_no_such_default": 1})
    monkeypatch.setattr(programs, "CPU_SMALL_MATMUL_OPTIONS", {"xla_no_such_default": 1})
    if programs.compiler_options(None) == {}:
        pytest.skip("no defaults off the CPU")
    low = jax.jit(lambda x: x + 1).lower(jnp.float32(1))
    with pytest.warns(RuntimeWarning, match=r"fnet's default compiler options \{'xla_no_such_default'"):
        out = compile_all([("epoch", low)], None)
    assert float(out["epoch"](jnp.float32(1))) == 2.0
    # the caller's own option is still refused
    with pytest.raises(ValueError, match=r"rejected xla_options=\{'xla_bogus': 2\}"):
        compile_all([("epoch", low)], {"xla_bogus": 2})
