"""Backpropagation through time: a recurrent cell run over a sequence, forward and back.

A **cell** is one time step: what ``fnet.layers.recurrent`` writes out for the
tanh RNN, the LSTM and the GRU. This module is the loop around it, the same
for all three (the book's sequel, chapter 5: ``TimeRNN`` around ``RNN``):

- forward: ``x Wx`` for every step at once (one matmul over ``N * T`` rows:
  the input does not depend on the past), then a ``lax.scan`` over time that
  adds ``b`` and ``h_{t-1} Wh`` to step ``t``'s rows, carries ``h`` (and the
  LSTM's ``c``) and stacks each step's cache;
- backward: a ``lax.scan`` over time **in reverse**. At step ``t`` the gradient
  reaching ``h_t`` is the sum of two paths, the output's ``dout_t`` and the
  next step's ``dh_prev`` (the fan-out of ``h_t`` to both: the ``repeat``
  node of chapter 5); the cell turns it into ``da_t`` (the gradient of its
  pre-activations) and the gradients for ``h_{t-1}`` (and ``c_{t-1}``).
  Then, once for all steps: ``dWx = x^T dA``, ``db = sum(dA)``,
  ``dWh = h_prev^T dA`` and ``dx = dA Wx^T`` (each one matmul over ``N * T``
  rows; the scan does only the work that must be sequential).

The gradient stops at the first step: nothing flows into the initial state
(truncated BPTT, the book's ``TimeLSTM(stateful=True)``: the state carried
over from the previous window is a constant).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from jax import lax

from fnet import _args
from fnet.core import Layer, Static, check_dout, check_shape
from fnet.errors import ContextError, ShapeError, shape_str
from fnet.initializers import standard_normal
from fnet.layers._checks import exact_rank, float_input


@dataclasses.dataclass(frozen=True)
class Cell:
    """One time step of a recurrent layer; ``H`` is the hidden size, ``G = gates * H``.

    - ``gates``: blocks of ``H`` columns in ``Wx: (D, G)``, ``Wh: (H, G)``, ``b: (G,)``.
    - ``carry``: the names of what flows from step to step, ``("h",)`` or
      ``("h", "c")``; also the keys of a stateful layer's state.
    - ``step(Wh, a_x, carry) -> (carry, saved)``: ``a_x = x_t Wx + b: (N, G)``;
      ``carry`` a tuple of ``(N, H)`` arrays, ``h`` first (the step's output);
      ``saved`` what ``back`` needs of this step.
    - ``back(Wh, saved, dcarry) -> (da, dcarry_prev)``: from the gradients of
      this step's carry to ``da = dL/da_x: (N, G)`` and those of the previous carry.
    - ``dWh(saved, dA) -> (H, G)``: ``Wh``'s gradient from the stacked ``saved``
      and ``dA: (T, N, G)`` of all steps.
    - ``b_init(hidden) -> (G,)``: the bias (the LSTM's forget gate starts at 1).
    """

    name: str
    gates: int
    carry: tuple[str, ...]
    step: Callable
    back: Callable
    dWh: Callable  # noqa: N815 (the book's name for the gradient of Wh)
    b_init: Callable


def recurrent(cell: Cell, hidden: int, *, return_sequences: bool, stateful: bool, dtype) -> Layer:
    """The ``Layer`` that runs ``cell`` over sequences ``(N, T, D)`` (see the module docstring)."""
    name = cell.name
    hidden = _args.count(name, "hidden", hidden, 1)
    dtype = _args.float_dtype(name, dtype)
    if not isinstance(return_sequences, bool) or not isinstance(stateful, bool):
        raise TypeError(f"{name}: return_sequences and stateful must be True or False; got "
                        f"{return_sequences!r} and {stateful!r}")
    width = cell.gates * hidden

    def init(key, input_shape):
        shape = _sequence_shape(name, check_shape(input_shape, name))
        d = shape[2]
        kx, kh = jax.random.split(key)
        params = {"Wx": standard_normal(kx, (d, width), dtype) / math.sqrt(d),
                  "Wh": standard_normal(kh, (hidden, width), dtype) / math.sqrt(hidden),
                  "b": jnp.asarray(cell.b_init(hidden), dtype)}
        out = (shape[0], shape[1], hidden) if return_sequences else (shape[0], hidden)
        return params, out

    def init_state(input_shape):
        shape = _sequence_shape(name, check_shape(input_shape, name))
        if shape[0] is None:
            raise ShapeError(name, f"stateful=True keeps one hidden state per row of the batch, so "
                                   f"init_state needs the batch size: got input shape {shape_str(shape)}; "
                                   f"pass e.g. ({32}, {shape[1]}, {shape[2]})")
        return {k: jnp.zeros((shape[0], hidden), dtype) for k in cell.carry}

    def forward(params, x, **ctx):
        Wx = params["Wx"]
        x = float_input(name, x)
        _sequence_shape(name, x.shape)
        if x.shape[2] != Wx.shape[0]:
            raise ShapeError(name, f"input of shape {shape_str(x.shape)} has {x.shape[2]} features per "
                                   f"step, but Wx has shape {Wx.shape} and expects {Wx.shape[0]}; "
                                   "initialise the layer with this input shape")
        n, dt = x.shape[0], jnp.result_type(x, Wx)
        carry = None
        if stateful:
            carry = _carry_from_state(name, cell.carry, ctx["state"], (n, hidden), dt)
        hs, last, run = sequence_forward(cell, params, x, carry)
        y = jnp.swapaxes(hs, 0, 1) if return_sequences else last[0]
        cache = (run, Static(jnp.shape(y)))
        if not stateful:
            return y, cache
        # the next window starts here; no gradient flows back across the edge
        state = ctx["state"]
        return y, cache, {k: lax.stop_gradient(v).astype(jnp.result_type(state[k]))
                          for k, v in zip(cell.carry, last, strict=True)}

    def backward(cache, dout):
        run, y_shape = cache
        check_dout(name, dout, y_shape.value)
        if return_sequences:
            dparams, dx, _ = sequence_backward(cell, run, jnp.swapaxes(dout, 0, 1), None)
        else:  # only h_T is an output: dout enters at the last step
            dparams, dx, _ = sequence_backward(cell, run, None, (dout,))
        return dparams, dx

    return Layer(name, init, forward, backward, uses={"state"} if stateful else set(),
                 init_state=init_state if stateful else None)


def sequence_forward(cell: Cell, params, x, carry=None):
    """``cell`` over ``x: (N, T, D)`` from ``carry`` (a tuple of ``(N, H)`` arrays, ``h`` first;
    ``None``: zeros): ``(hs, last, run)`` with ``hs: (T, N, H)`` every step's ``h`` (time first),
    ``last`` the final carry and ``run`` what ``sequence_backward`` needs.

    ``x Wx`` for all steps in one matmul, then a ``lax.scan`` over time whose step ``t`` hands
    the cell ``a_x = x_t Wx + b``: the bias is added there, inside the step's own elementwise
    work, not in a pass of its own over the whole ``(T, N, G)`` array (the same values;
    docs/speed.md). The building block of the recurrent layers and of the encoder-decoder
    models, whose decoder starts from the encoder's state (``fnet.models.seq2seq``)."""
    Wx, Wh, b = params["Wx"], params["Wh"], params["b"]
    xt = jnp.swapaxes(x, 0, 1)  # (T, N, D): time first, for the scan
    xW = xt @ Wx  # (T, N, G): every step's input term in one matmul
    # zeros_like of a slice of xW, not jnp.zeros: under shard_map the carry must vary over
    # the devices as the values computed from x do (the scan requires equal types)
    zeros = jnp.zeros_like(xW[0, :, :Wh.shape[0]])
    carry = tuple(zeros for _ in cell.carry) if carry is None else tuple(zeros + c for c in carry)

    def step(carry, xW_t):
        carry, saved = cell.step(Wh, xW_t + b, carry)
        return carry, (carry[0], saved)

    last, (hs, saved) = lax.scan(step, carry, xW)
    return hs, last, (xt, Wx, Wh, saved)


def sequence_backward(cell: Cell, run, dhs, dlast):
    """The gradients of ``sequence_forward``: ``(dparams, dx, dcarry0)`` from ``dhs: (T, N, H)``
    (the gradient of every step's ``h``; ``None``: none) and ``dlast`` (of the final carry, a
    tuple, ``h`` first, shorter than the carry or ``None`` for zeros). ``dcarry0``: the
    gradient of the initial carry (what an encoder receives from the decoder it started).

    A reverse ``lax.scan``: at step ``t`` the gradient reaching ``h_t`` is the sum of the
    output's ``dhs[t]`` and the next step's ``dh_prev`` (the ``repeat`` node of chapter 5); then
    ``dWx = x^T dA``, ``db = sum(dA)``, ``dWh`` and ``dx = dA Wx^T`` once for all steps."""
    xt, Wx, Wh, saved = run
    like = dhs[0] if dhs is not None else dlast[0]  # (N, H), of dout's type (and sharding)
    dcarry = tuple(jnp.zeros_like(like) for _ in cell.carry)
    if dlast is not None:
        dcarry = tuple(d if d is not None else z for d, z in
                       zip((*dlast, *(None,) * (len(cell.carry) - len(dlast))), dcarry, strict=True))

    if dhs is None:
        def back(dcarry, saved_t):
            da, dcarry_prev = cell.back(Wh, saved_t, dcarry)
            return dcarry_prev, da

        dcarry0, dA = lax.scan(back, dcarry, saved, reverse=True)
    else:
        def back(dcarry, inputs):
            saved_t, dh_t = inputs
            dh = dcarry[0] + dh_t  # h_t fans out to the output and to step t+1: gradients add
            da, dcarry_prev = cell.back(Wh, saved_t, (dh, *dcarry[1:]))
            return dcarry_prev, da

        dcarry0, dA = lax.scan(back, dcarry, (saved, dhs), reverse=True)
    dWx = jnp.einsum("tnd,tng->dg", xt, dA)
    dx = jnp.swapaxes(dA @ Wx.T, 0, 1)
    return {"Wx": dWx, "Wh": cell.dWh(saved, dA), "b": jnp.sum(dA, axis=(0, 1))}, dx, dcarry0


def _sequence_shape(name: str, shape: tuple) -> tuple:
    exact_rank(name, shape, 3, "(N, T, D): batch, time steps, features")
    if any(d is not None and d < 1 for d in shape[1:]):
        raise ShapeError(name, f"a sequence needs at least one time step of at least one feature; got "
                               f"shape {shape_str(shape)}")
    return tuple(shape)


def _carry_from_state(name: str, keys: tuple, state, shape: tuple, dtype) -> tuple:
    if state is None:
        raise ContextError(name, "stateful=True carries the hidden state between calls: pass state=..., "
                                 "starting from net.init_state(input_shape)")
    if (not isinstance(state, Mapping) or set(state) != set(keys)
            or any(jnp.shape(state[k]) != shape for k in keys)):
        got = ({k: shape_str(jnp.shape(v)) for k, v in state.items()} if isinstance(state, Mapping)
               else type(state).__name__)
        raise ShapeError(name, f"state must be {{{', '.join(f'{k!r}: {shape_str(shape)}' for k in keys)}}} "
                               f"for this batch of {shape[0]} (from init_state with the batch size); got "
                               f"{got}. Every window of a stateful layer must have the same batch size")
    return tuple(jnp.asarray(state[k], dtype) for k in keys)


def h_prev_dWh(saved, dA) -> jax.Array:
    """``dWh = sum over t of h_{t-1}^T dA_t``, when ``saved[0]`` is ``h_prev`` stacked over time."""
    return jnp.einsum("tnh,tng->hg", saved[0], dA)
