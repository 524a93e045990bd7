"""Normalization layers: the book's ``BatchNormalization`` (chapter 6), and layer norm."""

from __future__ import annotations

import math
from collections.abc import Mapping

import jax.numpy as jnp
from jax import lax

from fnet import _args
from fnet.core import Layer, Static, check_shape
from fnet.errors import ContextError, ShapeError, shape_str
from fnet.layers._checks import float_input, min_rank, mode


def _gamma_beta(shape, dtype):
    return {"gamma": jnp.ones(shape[-1], dtype), "beta": jnp.zeros(shape[-1], dtype)}


def _check_channels(layer: str, x, gamma) -> None:
    if x.shape[-1] != gamma.shape[0]:
        raise ShapeError(layer, f"input of shape {shape_str(x.shape)} has {x.shape[-1]} features on its "
                                f"last axis, but gamma has shape {gamma.shape}; initialise the layer "
                                "with this input shape")


def batch_norm(momentum: float = 0.9, eps: float = 1e-5, *, dtype=jnp.float32) -> Layer:
    """Batch normalization (Ioffe and Szegedy, 2015): the book's ``BatchNormalization``.

    ``y = gamma * xhat + beta`` with ``xhat = (x - mean) / sqrt(var + eps)``, per
    feature of the **last** axis, with the statistics taken over all other axes:
    over the batch for ``(N, C)``, over batch and positions for images
    ``(N, H, W, C)`` (per channel, as a convolution needs).

    **Modes** (``train`` is required):

    - training: ``mean`` and ``var`` (biased, ``mean((x - mean)^2)``, as in the
      book) of the batch; the running statistics move towards them,
      ``running = momentum * running + (1 - momentum) * batch``, and come back as
      the new state.
    - evaluation: the running statistics, unchanged.

    **Shapes:** ``x: (N, ..., C) -> y: (N, ..., C)``; ``gamma, beta: (C,)`` (ones
    and zeros); state ``{"mean": (C,), "var": (C,)}``, zeros and ones from
    ``init_state``. The running statistics are state, not parameters: no
    optimizer or weight decay touches them.

    **Uses:** ``{"train", "state"}``: ``forward(params, x, *, train, state) -> (y, cache, new_state)``.

    **Cache:** ``(xhat, gamma, inv_std, Static(train))`` with ``inv_std = 1 / sqrt(var + eps)``: ``(C,)``.

    **Derivative** (sums over all axes but the last, ``m`` entries per feature):
    ``dbeta = sum(dout)``, ``dgamma = sum(dout * xhat)``, and

    - training (``mean`` and ``var`` depend on ``x``), the compact form of the
      book's chain of nodes:
      ``dx = gamma * inv_std / m * (m * dout - dbeta - xhat * dgamma)``;
    - evaluation (constants): ``dx = gamma * inv_std * dout``.

    **Arguments:** ``momentum`` in ``[0, 1]`` (the book's 0.9); ``eps`` added to the
    variance (default ``1e-5``; the book writes ``10e-7``, which is ``1e-6``; pass
    ``eps=1e-6`` to reproduce its numbers exactly); ``dtype`` of params and state.
    Differences from the book: the running variance starts at ones (the book
    starts it at zeros, so an untrained network in evaluation divides by
    ``sqrt(eps)``); training on a single value per feature (``(1, C)``) is an
    error, since it normalizes every value to 0.
    """
    momentum = _args.interval("batch_norm", "momentum", momentum, 0, 1,
                              hint=" (running = momentum * running + (1 - momentum) * batch)")
    eps = _args.positive("batch_norm", "eps", eps)
    dtype = _args.float_dtype("batch_norm", dtype)

    def init(key, input_shape):
        shape = check_shape(input_shape, "batch_norm")
        min_rank("batch_norm", shape, 2, "(N, ..., C)")
        return _gamma_beta(shape, dtype), shape

    def init_state(input_shape):
        shape = check_shape(input_shape, "batch_norm")
        min_rank("batch_norm", shape, 2, "(N, ..., C)")
        return {"mean": jnp.zeros(shape[-1], dtype), "var": jnp.ones(shape[-1], dtype)}

    def forward(params, x, *, train, state):
        gamma, beta = params["gamma"], params["beta"]
        x = float_input("batch_norm", x)
        min_rank("batch_norm", x.shape, 2, "(N, ..., C)")
        _check_channels("batch_norm", x, gamma)
        train = mode("batch_norm", train)
        if state is None:
            raise ContextError("batch_norm", "needs its running statistics: pass state=..., starting "
                                             "from net.init_state(input_shape)")
        if (not isinstance(state, Mapping) or set(state) != {"mean", "var"}
                or any(jnp.shape(v) != gamma.shape for v in state.values())):
            raise ShapeError("batch_norm", f"state must be {{'mean': ({gamma.shape[0]},), 'var': "
                                           f"({gamma.shape[0]},)}} as init_state makes it; got "
                                           f"{_describe(state)}")
        axes = tuple(range(x.ndim - 1))
        if train:
            m = math.prod(x.shape[:-1])
            if m < 2:
                raise ShapeError("batch_norm", f"training needs more than one value per feature to "
                                               f"take batch statistics; input shape {shape_str(x.shape)} "
                                               "has one. Use a larger batch (or drop a last batch of 1)")
            mean = jnp.mean(x, axis=axes)
            xc = x - mean
            var = jnp.mean(xc * xc, axis=axes)
            new_state = {k: (momentum * state[k] + (1.0 - momentum) * v).astype(state[k].dtype)
                         for k, v in (("mean", mean), ("var", var))}
        else:
            mean, var = state["mean"].astype(x.dtype), state["var"].astype(x.dtype)
            xc = x - mean
            new_state = state
        inv_std = lax.rsqrt(var + eps)
        xhat = xc * inv_std
        return gamma * xhat + beta, (xhat, gamma, inv_std, Static(train)), new_state

    def backward(cache, dout):
        xhat, gamma, inv_std, train = cache
        axes = tuple(range(dout.ndim - 1))
        dbeta = jnp.sum(dout, axis=axes)
        dgamma = jnp.sum(dout * xhat, axis=axes)
        if train.value:
            m = math.prod(dout.shape[:-1])
            dx = (gamma * inv_std / m) * (m * dout - dbeta - xhat * dgamma)
        else:
            dx = gamma * inv_std * dout
        return {"gamma": dgamma, "beta": dbeta}, dx

    return Layer("batch_norm", init, forward, backward, uses={"train", "state"}, init_state=init_state)


def _describe(state) -> str:
    if isinstance(state, Mapping):
        return "{" + ", ".join(f"{k!r}: {shape_str(jnp.shape(v))}" for k, v in state.items()) + "}"
    return type(state).__name__


def layer_norm(eps: float = 1e-5, *, dtype=jnp.float32) -> Layer:
    """Layer normalization (Ba, Kiros and Hinton, 2016): each example's feature
    vector, along the **last** axis, normalized by its own mean and variance.

    ``y = gamma * xhat + beta`` with ``xhat = (x - mean) / sqrt(var + eps)``, where
    ``mean`` and ``var`` (biased) are over the last axis only. The same in
    training and evaluation, no state. For images ``(N, H, W, C)`` this
    normalizes each pixel over its channels.

    **Shapes:** ``x: (N, ..., D) -> y: (N, ..., D)``; ``gamma, beta: (D,)`` (ones, zeros).

    **Cache:** ``(xhat, gamma, inv_std)``, ``inv_std = 1 / sqrt(var + eps)``: ``(N, ..., 1)``.

    **Derivative** (``dxhat = dout * gamma``, sums over the last axis, ``D`` terms):
    ``dx = inv_std / D * (D * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))``;
    ``dgamma = sum(dout * xhat)``, ``dbeta = sum(dout)`` over all axes but the last.
    """
    eps = _args.positive("layer_norm", "eps", eps)
    dtype = _args.float_dtype("layer_norm", dtype)

    def init(key, input_shape):
        shape = check_shape(input_shape, "layer_norm")
        min_rank("layer_norm", shape, 1, "(..., D)")
        if shape[-1] is None:  # (None,): the batch axis alone, no feature axis to normalise
            raise ShapeError("layer_norm", f"normalises the last axis D, which input_shape "
                                           f"{shape_str(shape)} leaves unknown; give (N, ..., D), e.g. "
                                           "(None, 64)")
        return _gamma_beta(shape, dtype), shape

    def forward(params, x):
        gamma, beta = params["gamma"], params["beta"]
        x = float_input("layer_norm", x)
        min_rank("layer_norm", x.shape, 1, "(..., D)")
        _check_channels("layer_norm", x, gamma)
        xc = x - jnp.mean(x, axis=-1, keepdims=True)
        inv_std = lax.rsqrt(jnp.mean(xc * xc, axis=-1, keepdims=True) + eps)
        xhat = xc * inv_std
        return gamma * xhat + beta, (xhat, gamma, inv_std)

    def backward(cache, dout):
        xhat, gamma, inv_std = cache
        axes = tuple(range(dout.ndim - 1))
        d = dout.shape[-1]
        dxhat = dout * gamma
        dx = (inv_std / d) * (d * dxhat - jnp.sum(dxhat, axis=-1, keepdims=True)
                              - xhat * jnp.sum(dxhat * xhat, axis=-1, keepdims=True))
        return {"gamma": jnp.sum(dout * xhat, axis=axes), "beta": jnp.sum(dout, axis=axes)}, dx

    return Layer("layer_norm", init, forward, backward)
