"""Optimizers: hand computations, convergence, weight decay, dtypes, errors.

The hand computations below are NumPy float64 transcriptions of the formulas in
each optimizer's docstring, run for three steps from the zero state so that
momentum, accumulated squares and Adam's moments are non-trivial when the last
step is compared.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnet import optim, schedules

NAMES = list(optim.OPTIMIZERS)


def tree(dtype=jnp.float64, seed=0, scale=1.0):
    """Params-shaped nested dict, with an empty sub-dict as a ReLU would have."""
    rng = np.random.default_rng(seed)
    return {"affine_0": {"W": jnp.asarray(scale * rng.normal(size=(2, 3)), dtype),
                         "b": jnp.asarray(scale * rng.normal(size=(3,)), dtype)},
            "relu_0": {},
            "affine_1": {"W": jnp.asarray(scale * rng.normal(size=(3, 1)), dtype),
                         "b": jnp.asarray(scale * rng.normal(size=(1,)), dtype)}}


def leaves64(t):
    return [np.asarray(x, np.float64) for x in jax.tree.leaves(t)]


# --------------------------------------------------------------------------- hand computations
# Each reference takes (w, g, slots, t) for one leaf, in float64, and returns (w, slots).
# The hyperparameters differ from the defaults so that a swapped or ignored one shows.

LR = 0.05


def ref_sgd(w, g, s, t):
    return w - LR * g, s


def ref_momentum(w, g, s, t, alpha=0.8):
    v = alpha * s["v"] - LR * g
    return w + v, {"v": v}


def ref_nesterov(w, g, s, t, alpha=0.8):
    v = s["v"]  # the previous velocity: Bengio et al. 2012, eq. 7
    w = w + alpha**2 * v - (1 + alpha) * LR * g
    return w, {"v": alpha * v - LR * g}


def ref_adagrad(w, g, s, t, eps=1e-3):
    h = s["h"] + g * g
    return w - LR * g / (np.sqrt(h) + eps), {"h": h}


def ref_rmsprop(w, g, s, t, rho=0.7, eps=1e-3):
    h = rho * s["h"] + (1 - rho) * g * g
    return w - LR * g / (np.sqrt(h) + eps), {"h": h}


def ref_adam(w, g, s, t, b1=0.8, b2=0.95, eps=1e-3):
    m = b1 * s["m"] + (1 - b1) * g
    v = b2 * s["v"] + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return w - LR * m_hat / (np.sqrt(v_hat) + eps), {"m": m, "v": v}


def ref_adamw(w, g, s, t, b1=0.8, b2=0.95, eps=1e-3, lam=0.0):
    w_adam, slots = ref_adam(w, g, s, t, b1, b2, eps)
    return w_adam - LR * lam * w, slots  # decoupled: beside the moments, on the weight itself


CASES = {
    "sgd": (optim.sgd(LR), ref_sgd, ()),
    "momentum": (optim.momentum(LR, momentum=0.8), ref_momentum, ("v",)),
    "nesterov": (optim.nesterov(LR, momentum=0.8), ref_nesterov, ("v",)),
    "adagrad": (optim.adagrad(LR, eps=1e-3), ref_adagrad, ("h",)),
    "rmsprop": (optim.rmsprop(LR, decay=0.7, eps=1e-3), ref_rmsprop, ("h",)),
    "adam": (optim.adam(LR, beta1=0.8, beta2=0.95, eps=1e-3), ref_adam, ("m", "v")),
    "adamw": (optim.adamw(LR, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.0), ref_adamw, ("m", "v")),
}


def test_every_optimizer_has_a_hand_computation():
    assert sorted(CASES) == sorted(NAMES)


def run_reference(ref, slots, params, grads_seq, decayed=(), weight_decay=0.0):
    """Apply ``ref`` leaf by leaf for each grads in ``grads_seq``; returns [(params, slots)] per step."""
    ws = leaves64(params)
    ss = [{k: np.zeros_like(w) for k in slots} for w in ws]
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    out = []
    for t, grads in enumerate(grads_seq, start=1):
        new = []
        for path, w, g, s in zip(paths, ws, leaves64(grads), ss, strict=True):
            if path in decayed:
                g = g + weight_decay * w  # coupled L2: d/dW of 0.5 * lambda * W**2
            new.append(ref(w, g, s, t))
        ws, ss = [w for w, _ in new], [s for _, s in new]
        out.append((ws, ss))
    return out


def run_fnet(opt, params, grads_seq):
    update = jax.jit(opt.update)
    state = opt.init(params)
    out = []
    for grads in grads_seq:
        params, state = update(grads, state, params)
        out.append((params, state))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_three_steps_equal_the_hand_computation_float64(name):
    opt, ref, slots = CASES[name]
    params = tree()
    grads_seq = [tree(seed=s) for s in (1, 2, 3)]
    for step, ((p, st), (ws, ss)) in enumerate(zip(run_fnet(opt, params, grads_seq),
                                                   run_reference(ref, slots, params, grads_seq),
                                                   strict=True), start=1):
        assert int(st["step"]) == step
        np.testing.assert_allclose(np.concatenate([x.ravel() for x in leaves64(p)]),
                                   np.concatenate([w.ravel() for w in ws]), rtol=1e-12, atol=1e-14)
        for k in slots:
            np.testing.assert_allclose(np.concatenate([x.ravel() for x in leaves64(st[k])]),
                                       np.concatenate([s[k].ravel() for s in ss]),
                                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_three_steps_float32_follow_the_float64_hand_computation(name):
    opt, ref, slots = CASES[name]
    params = tree(jnp.float32)
    grads_seq = [tree(jnp.float32, seed=s) for s in (1, 2, 3)]
    (p, _), = run_fnet(opt, params, grads_seq)[-1:]
    ws, _ = run_reference(ref, slots, params, grads_seq)[-1]
    # float32 rounding of O(1) values over three steps: a few 1e-7
    np.testing.assert_allclose(np.concatenate([x.ravel() for x in leaves64(p)]),
                               np.concatenate([w.ravel() for w in ws]), rtol=0, atol=2e-6)


def test_nesterov_follows_the_paper_not_the_books_update_order():
    # The book's code updates v first, then adds alpha**2 * (new v): a different step.
    alpha = 0.8
    w, v, g = 1.0, 0.5, 2.0
    paper, _ = ref_nesterov(np.float64(w), np.float64(g), {"v": np.float64(v)}, 2, alpha)
    v_book = alpha * v - LR * g
    book = w + alpha**2 * v_book - (1 + alpha) * LR * g
    opt = optim.nesterov(LR, momentum=alpha)
    got, _ = opt.update({"w": jnp.float64(g)}, {"step": jnp.int32(1), "v": {"w": jnp.float64(v)}},
                        {"w": jnp.float64(w)})
    assert float(got["w"]) == pytest.approx(paper, rel=1e-12)
    assert abs(float(got["w"]) - book) > 0.1


def test_adam_equals_the_books_rearrangement_with_eps_moved():
    # Book: lr_t = lr * sqrt(1 - b2**t) / (1 - b1**t);  W -= lr_t * m / (sqrt(v) + eps_book).
    # Same as the paper's form with eps = eps_book / sqrt(1 - b2**t): with eps tiny both agree.
    b1, b2 = 0.9, 0.999
    opt = optim.adam(LR, beta1=b1, beta2=b2, eps=1e-300)
    params = tree()
    grads_seq = [tree(seed=s) for s in (1, 2, 3)]
    (p, _), = run_fnet(opt, params, grads_seq)[-1:]
    ws, m, v = leaves64(params), [0 * w for w in leaves64(params)], [0 * w for w in leaves64(params)]
    for t, grads in enumerate(grads_seq, start=1):
        lr_t = LR * math.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        for i, g in enumerate(leaves64(grads)):
            m[i] += (1 - b1) * (g - m[i])
            v[i] += (1 - b2) * (g**2 - v[i])
            ws[i] = ws[i] - lr_t * m[i] / np.sqrt(v[i])
    for got, want in zip(leaves64(p), ws, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_the_first_update_sees_schedule_at_step_zero():
    # lr halves after every update: steps of 1, 0.5, 0.25 for a unit gradient.
    opt = optim.sgd(lr=schedules.step_decay(1.0, step_size=1, gamma=0.5))
    params, state = {"w": jnp.zeros((), jnp.float32)}, None
    state = opt.init(params)
    seen = []
    for _ in range(3):
        params, state = jax.jit(opt.update)({"w": jnp.ones((), jnp.float32)}, state, params)
        seen.append(float(params["w"]))
    assert seen == [-1.0, -1.5, -1.75]


# --------------------------------------------------------------------------- convergence

# f(w) = 0.5 * sum(a * (w - w*)**2), curvatures from 1 to 100 (condition number 100);
# gradient a * (w - w*), written by hand.
CURV = {"affine_0": {"W": jnp.asarray(np.logspace(0, 2, 6).reshape(2, 3), jnp.float32),
                     "b": jnp.asarray([1.0, 10.0, 100.0], jnp.float32)},
        "relu_0": {}}
TARGET = jax.tree.map(lambda a: jnp.asarray(np.random.default_rng(7).uniform(-2, 2, a.shape),
                                            jnp.float32), CURV)

# name -> (optimizer, steps). Tolerance on max|w - w*| after that many steps: 1e-4
# (from a start at distance up to 2). SGD needs lr < 2/100; its slowest mode then
# contracts by 1 - 0.019 per step. RMSprop with a constant rate hovers at ~1e-3
# around the minimum, so it anneals with a cosine schedule.
CONVERGE = {
    "sgd": (optim.sgd(0.019), 600),
    "momentum": (optim.momentum(0.01, 0.9), 300),
    "nesterov": (optim.nesterov(0.01, 0.9), 300),
    "adagrad": (optim.adagrad(0.5), 300),
    "rmsprop": (optim.rmsprop(schedules.cosine(0.05, total_steps=300)), 300),
    "adam": (optim.adam(0.1), 300),
    "adamw": (optim.adamw(0.1, weight_decay=0.0), 300),
}


def test_every_optimizer_has_a_convergence_case():
    assert sorted(CONVERGE) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_converges_on_an_ill_conditioned_quadratic_under_jit_and_scan(name):
    opt, steps = CONVERGE[name]

    @jax.jit
    def train(params):
        def step(carry, _):
            p, s = carry
            g = jax.tree.map(lambda a, w, w_star: a * (w - w_star), CURV, p, TARGET)
            return opt.update(g, s, p), None

        (p, s), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
        return p, s

    start = jax.tree.map(jnp.zeros_like, CURV)
    p, s = train(start)
    err = max(float(jnp.max(jnp.abs(w - t))) for w, t in
              zip(jax.tree.leaves(p), jax.tree.leaves(TARGET), strict=True))
    assert err < 1e-4, f"{opt}: max |w - w*| = {err} after {steps} steps"
    assert int(s["step"]) == steps
    assert p["affine_0"]["W"].dtype == jnp.float32


# --------------------------------------------------------------------------- weight decay


def test_sgd_weight_decay_is_coupled_l2_on_weights_only():
    lam = 0.3
    params, grads = tree(), tree(seed=1)
    opt = optim.sgd(LR, weight_decay=lam)
    p, _ = opt.update(grads, opt.init(params), params)
    for layer in ("affine_0", "affine_1"):
        W, b = np.asarray(params[layer]["W"]), np.asarray(params[layer]["b"])
        gW, gb = np.asarray(grads[layer]["W"]), np.asarray(grads[layer]["b"])
        np.testing.assert_allclose(p[layer]["W"], W - LR * (gW + lam * W), rtol=1e-13)
        np.testing.assert_allclose(p[layer]["b"], b - LR * gb, rtol=1e-13)  # biases not decayed


def test_adamw_decays_the_weight_beside_the_moments():
    # three steps against the hand computation with decay on, the default mask: matrices only
    lam = 0.3
    opt = optim.adamw(LR, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=lam)
    params, grads_seq = tree(), [tree(seed=s) for s in (1, 2, 3)]
    (p, st), = run_fnet(opt, params, grads_seq)[-1:]
    ws = leaves64(params)
    slots = [{"m": np.zeros_like(w), "v": np.zeros_like(w)} for w in ws]
    for t, grads in enumerate(grads_seq, start=1):
        for i, g in enumerate(leaves64(grads)):
            ws[i], slots[i] = ref_adamw(ws[i], g, slots[i], t, lam=lam if ws[i].ndim >= 2 else 0.0)
    for got, want in zip(leaves64(p), ws, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the moments never see the decay: the same as adam's without decay
    (_, st_adam), = run_fnet(optim.adam(LR, beta1=0.8, beta2=0.95, eps=1e-3), params, grads_seq)[-1:]
    for a, b in zip(leaves64(st["m"]), leaves64(st_adam["m"]), strict=True):
        np.testing.assert_array_equal(a, b)
    # coupled decay (adam's) differs: it goes through the moments
    (p_coupled, _), = run_fnet(optim.adam(LR, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=lam), params,
                               grads_seq)[-1:]
    assert not np.allclose(leaves64(p_coupled)[0], leaves64(p)[0])  # affine_0/W, decayed by both


def test_adamw_matches_torch_adamw():
    torch = pytest.importorskip("torch")
    params, grads_seq = tree(), [tree(seed=s) for s in (1, 2, 3)]
    (p, _), = run_fnet(optim.adamw(LR, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.1,
                                   decay_mask=lambda path, w: True), params, grads_seq)[-1:]
    tensors = [torch.tensor(np.asarray(w), requires_grad=True) for w in jax.tree.leaves(params)]
    opt = torch.optim.AdamW(tensors, lr=LR, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    for grads in grads_seq:
        for t, g in zip(tensors, jax.tree.leaves(grads), strict=True):
            t.grad = torch.tensor(np.asarray(g))
        opt.step()
    for got, want in zip(leaves64(p), tensors, strict=True):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_weight_decay_passes_through_the_state_like_a_loss_term(name):
    # Coupled: the decayed gradient g + lambda * W feeds the velocity / moments (not AdamW).
    lam = 0.3
    base, ref, slots = CASES[name]
    hyper = dict(base.hyperparams)
    opt = optim.OPTIMIZERS[name](**hyper, weight_decay=lam)
    params = tree()
    grads_seq = [tree(seed=s) for s in (1, 2, 3)]
    decayed = {"['affine_0']['W']", "['affine_1']['W']"}
    (p, _), = run_fnet(opt, params, grads_seq)[-1:]
    ws, _ = run_reference(ref, slots, params, grads_seq, decayed=decayed, weight_decay=lam)[-1]
    for got, want in zip(leaves64(p), ws, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_decay_mask_chooses_what_decays_and_sees_key_paths():
    seen = []

    def everything(path, param):
        seen.append(path)
        return True

    params, grads = tree(), jax.tree.map(jnp.zeros_like, tree())
    opt = optim.sgd(1.0, weight_decay=0.5, decay_mask=everything)
    p, _ = opt.update(grads, opt.init(params), params)
    for got, w in zip(leaves64(p), leaves64(params), strict=True):
        np.testing.assert_allclose(got, 0.5 * w, rtol=1e-14)  # w - 1.0 * (0 + 0.5 * w): biases too
    assert set(seen) == {"affine_0/W", "affine_0/b", "affine_1/W", "affine_1/b"}


@pytest.mark.parametrize("path, decayed", [
    ("affine_0/W", True), ("block_0/affine_1/W", True), ("W", True), ("W1", True), ("W12", True),
    ("affine_0/b", False), ("b1", False), ("batch_norm_0/gamma", False), ("beta1", False),
    ("Wx", False), ("W/b", False),
])
def test_default_mask_decays_the_books_weights(path, decayed):
    assert optim.weights_only(path, jnp.zeros(2)) is decayed


def test_book_flat_names_decay_w_not_b():
    params = {"W1": jnp.ones((2, 2)), "b1": jnp.ones(2)}
    opt = optim.sgd(1.0, weight_decay=0.5)
    p, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    np.testing.assert_allclose(p["W1"], 0.5)
    np.testing.assert_allclose(p["b1"], 1.0)


def test_weight_decay_that_selects_nothing_is_an_error():
    opt = optim.adam(weight_decay=1e-4)
    with pytest.raises(ValueError, match=r"adam: weight_decay=0.0001 but decay_mask 'weights_only' "
                                         r"selects none of the parameters \['kernel'\]"):
        opt.init({"kernel": jnp.ones((2, 2))})


def test_decay_mask_must_return_a_python_bool():
    opt = optim.sgd(weight_decay=0.1, decay_mask=lambda path, p: jnp.ndim(p) > 1 and p.size > 0)
    params = {"W": jnp.ones((2, 2))}
    state = opt.init(params)  # eager: ndim and size are Python values, fine
    bad = optim.sgd(weight_decay=0.1, decay_mask=lambda path, p: jnp.any(p > 0))
    with pytest.raises(TypeError, match=r"decay_mask\('W', param\) must return a Python bool"):
        bad.init(params)
    opt.update(params, state, params)


# --------------------------------------------------------------------------- dtypes and state


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtype_preserved_with_x64_and_float64_grads(name, dtype):
    assert jax.config.jax_enable_x64
    # a schedule (float32) and float64 gradients must not promote the parameters
    opt = optim.OPTIMIZERS[name](lr=schedules.cosine(0.01, 100), weight_decay=0.1)
    params = tree(dtype)
    state = opt.init(params)
    p, s = jax.jit(opt.update)(tree(jnp.float64, seed=1), state, params)
    for x in jax.tree.leaves(p):
        assert x.dtype == dtype
    for k, v in s.items():
        for x in jax.tree.leaves(v):
            assert isinstance(x, jax.Array)
            assert x.dtype == (jnp.int32 if k == "step" else dtype), (k, x.dtype)


@pytest.mark.parametrize("name", NAMES)
def test_state_is_arrays_with_a_stable_structure(name):
    opt = optim.OPTIMIZERS[name](lr=0.01)
    params = tree(jnp.float32)
    state = opt.init(params)

    def spec(t):
        return jax.tree.map(lambda x: (x.shape, x.dtype, x.weak_type), t)

    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(state))
    assert state["step"].dtype == jnp.int32 and state["step"].shape == ()
    new_params, new_state = jax.jit(opt.update)(tree(jnp.float32, seed=1), state, params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert spec(new_state) == spec(state)  # what lax.scan requires of a carry
    assert spec(new_params) == spec(params)
    assert set(state) == {"step", *CASES[name][2]}
    for k in CASES[name][2]:  # slots mirror params, empty sub-dicts included
        assert jax.tree.structure(state[k]) == jax.tree.structure(params)


def test_float64_params_keep_full_precision_of_a_float_lr():
    # lr=0.1 as a Python float must not pass through float32 for float64 params
    opt = optim.sgd(0.1)
    p, _ = opt.update({"w": jnp.float64(1.0)}, opt.init({"w": jnp.float64(0.0)}), {"w": jnp.float64(0.0)})
    assert float(p["w"]) == -0.1


# --------------------------------------------------------------------------- errors


def test_grads_missing_a_leaf_name_its_path():
    opt = optim.momentum()
    params = tree()
    grads = tree(seed=1)
    del grads["affine_1"]["b"]
    with pytest.raises(ValueError, match=r"momentum.update: grads do not match params: 'affine_1/b' is "
                                         r"in params but missing from grads"):
        opt.update(grads, opt.init(params), params)


def _drop_relu(grads):
    del grads["relu_0"]


def _add_gamma(grads):
    grads["affine_0"]["gamma"] = jnp.ones(3)


def _reshape_w(grads):
    grads["affine_1"]["W"] = jnp.ones((1, 3))


@pytest.mark.parametrize("make_opt, spoil, message", [
    (optim.sgd, _drop_relu, r"'relu_0' is in params but missing from grads"),
    (optim.adam, _add_gamma, r"'affine_0/gamma' is in grads but not in params"),
    (optim.adam, _reshape_w,
     r"grads at 'affine_1/W' has shape \(1, 3\), but the parameter has shape \(3, 1\)"),
], ids=["missing empty sub-dict", "extra key", "wrong shape"])
def test_grads_not_matching_params_name_the_path(make_opt, spoil, message):
    opt = make_opt()
    params = tree()
    grads = tree(seed=1)
    spoil(grads)
    with pytest.raises(ValueError, match=message):
        opt.update(grads, opt.init(params), params)


def test_state_of_another_optimizer_is_rejected():
    params = tree()
    with pytest.raises(ValueError, match=r"adam.update: state must be the dict that adam.init\(params\) "
                                         r"returned, with keys \['step', 'm', 'v'\]; got \['step', 'v'\]"):
        optim.adam().update(params, optim.momentum().init(params), params)


def test_state_of_other_params_is_rejected():
    params = tree()
    state = optim.adagrad().init({"affine_0": params["affine_0"]})
    with pytest.raises(ValueError, match=r"state\['h'\] do not match params: 'affine_1/W' is in params"):
        optim.adagrad().update(params, state, params)


def test_integer_params_are_rejected_at_init():
    with pytest.raises(TypeError, match=r"sgd: parameter 'layer/W' has dtype int32"):
        optim.sgd().init({"layer": {"W": jnp.ones(3, jnp.int32)}})


def test_a_schedule_must_return_a_scalar():
    opt = optim.sgd(lr=lambda step: jnp.ones(2))
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"sgd: the learning-rate schedule must return a scalar"):
        opt.update(params, opt.init(params), params)


@pytest.mark.parametrize("name, kwargs, arg", [
    ("sgd", {"lr": 0.0}, "lr"),
    ("sgd", {"lr": -0.1}, "lr"),
    ("sgd", {"lr": float("inf")}, "lr"),
    ("adam", {"lr": float("nan")}, "lr"),
    ("momentum", {"momentum": 1.0}, "momentum"),
    ("momentum", {"momentum": -0.1}, "momentum"),
    ("nesterov", {"momentum": 1.5}, "momentum"),
    ("adagrad", {"eps": 0.0}, "eps"),
    ("rmsprop", {"decay": 1.0}, "decay"),
    ("rmsprop", {"eps": -1e-7}, "eps"),
    ("adam", {"beta1": 1.0}, "beta1"),
    ("adam", {"beta2": -0.5}, "beta2"),
    ("adam", {"eps": 0.0}, "eps"),
    ("sgd", {"weight_decay": -1e-4}, "weight_decay"),
    ("adam", {"weight_decay": float("nan")}, "weight_decay"),
])
def test_bad_hyperparameters_name_optimizer_and_parameter(name, kwargs, arg):
    with pytest.raises(ValueError, match=rf"^{name}: {arg} must be"):
        optim.OPTIMIZERS[name](**kwargs)


def test_hyperparameters_of_the_wrong_type():
    with pytest.raises(TypeError, match=r"sgd: lr must be a positive number or a schedule"):
        optim.sgd(lr="0.1")
    with pytest.raises(TypeError, match=r"momentum: momentum must be a number"):
        optim.momentum(momentum=None)
    with pytest.raises(TypeError, match=r"adam: decay_mask must be a function"):
        optim.adam(weight_decay=0.1, decay_mask="W")


# --------------------------------------------------------------------------- names and repr


def test_repr_shows_hyperparameters():
    assert repr(optim.adam()) == "optim.adam(lr=0.001, beta1=0.9, beta2=0.999, eps=1e-08)"
    assert repr(optim.momentum(0.1, 0.5)) == "optim.momentum(lr=0.1, momentum=0.5)"
    assert repr(optim.sgd(weight_decay=1e-4)) == (
        "optim.sgd(lr=0.01, weight_decay=0.0001, decay_mask=weights_only)")
    assert repr(optim.rmsprop(schedules.step_decay(0.1, 10))) == (
        "optim.rmsprop(lr=schedules.step_decay(lr=0.1, step_size=10, gamma=0.1), decay=0.99, eps=1e-07)")


def test_book_defaults():
    assert [dict(optim.OPTIMIZERS[n]().hyperparams) for n in NAMES] == [
        {"lr": 0.01},
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.01, "momentum": 0.9},
        {"lr": 0.01, "eps": 1e-7},
        {"lr": 0.01, "decay": 0.99, "eps": 1e-7},
        {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
        {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01,
         "decay_mask": optim.matrices_only},
    ]
    assert NAMES == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]


@pytest.mark.parametrize("given, name", [("adam", "adam"), ("AdaGrad", "adagrad"), (" SGD ", "sgd"),
                                         ("RMSprop", "rmsprop")])
def test_by_name_is_case_insensitive(given, name):
    assert optim.by_name(given).name == name


def test_by_name_passes_hyperparameters_and_drops_none():
    opt = optim.by_name("momentum", lr=0.1, momentum=None, weight_decay=None)
    assert dict(opt.hyperparams) == {"lr": 0.1, "momentum": 0.9}
    assert dict(optim.by_name("adam", lr=0.002, beta2=0.99).hyperparams)["beta2"] == 0.99


def test_by_name_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lion'; valid names are "
                                         r"sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw"):
        optim.by_name("lion")


def test_by_name_unknown_hyperparameter_lists_accepted_ones():
    with pytest.raises(ValueError, match=r"adam takes no hyperparameter momentum; it takes lr, beta1, "
                                         r"beta2, eps, weight_decay, decay_mask"):
        optim.by_name("adam", momentum=0.9)


def test_clip_by_global_norm_rescales_only_above_the_norm():
    params = {"a": {"W": jnp.ones((2, 2))}, "b": jnp.zeros(3)}
    big = {"a": {"W": jnp.full((2, 2), 3.0)}, "b": jnp.full(3, 4.0)}   # norm sqrt(36 + 48) ~ 9.17
    small = jax.tree.map(lambda g: g / 100, big)
    opt = optim.clip_by_global_norm(optim.sgd(1.0), max_norm=2.0)
    assert repr(opt) == "optim.clip_by_global_norm(optimizer=optim.sgd(lr=1.0), max_norm=2.0)"
    state = opt.init(params)
    new, _ = opt.update(big, state, params)
    step = jax.tree.map(lambda p, n: p - n, params, new)
    norm = float(jnp.sqrt(sum(jnp.sum(s ** 2) for s in jax.tree.leaves(step))))
    assert abs(norm - 2.0) < 1e-5  # the update is the clipped gradient, of norm max_norm
    new, _ = opt.update(small, state, params)
    plain, _ = optim.sgd(1.0).update(small, optim.sgd(1.0).init(params), params)
    pairs = zip(jax.tree.leaves(new), jax.tree.leaves(plain), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)
    with pytest.raises(ValueError, match=r"^clip_by_global_norm: max_norm must be a positive number"):
        optim.clip_by_global_norm(optim.sgd(), 0)
    with pytest.raises(TypeError, match=r"^clip_by_global_norm: optimizer must be an fnet.optim optimizer"):
        optim.clip_by_global_norm(optim.sgd, 1.0)
