"""Recurrent layers: the tanh RNN, the LSTM and the GRU (the book's sequel, chapters 5-6, and its appendix).

Each layer is one **cell** (a time step's forward and backward, written here
next to each other) run over the sequence by ``fnet.layers._through_time``:
a ``lax.scan`` forward, a reverse ``lax.scan`` backward, and the weight
gradients as single matmuls over all steps.

Sequences are batch-major: ``x: (N, T, D) -> (N, T, H)``, or ``(N, H)`` (the last
hidden state) with ``return_sequences=False``. Parameters: ``Wx: (D, G)``,
``Wh: (H, G)``, ``b: (G,)`` with ``G = H`` (rnn), ``4H`` (lstm) or ``3H`` (gru),
the gates' blocks side by side in the columns (one matmul computes all gates).
Initialisation as the book's: ``Wx ~ N(0, 1/D)``, ``Wh ~ N(0, 1/H)``, ``b = 0``
(the LSTM's forget gate ``b_f = forget_bias``, default 1).

**Truncated BPTT** (``stateful=True``): the last hidden (and cell) state comes
back as the new state, ``{"h": (N, H)}`` (``{"h", "c"}`` for the LSTM), and the
next call starts from it, so a long text is trained in windows while the state
flows on; the gradient stops at the window's edge. Start (and **reset**, e.g.
for a new text or a new epoch) with ``net.init_state((N, T, D))``: zeros. The
batch size is fixed by that state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet import _args
from fnet.core import Layer
from fnet.layers._through_time import Cell, h_prev_dWh, recurrent

__all__ = ["gru", "lstm", "rnn"]

sigmoid = jax.nn.sigmoid  # 1 / (1 + exp(-a)), without overflow for any a


# --------------------------------------------------------------------------- tanh RNN


def _rnn_step(Wh, a_x, carry):
    (h_prev,) = carry
    h = jnp.tanh(a_x + h_prev @ Wh)
    return (h,), (h_prev, h)


def _rnn_back(Wh, saved, dcarry):
    _, h = saved
    (dh,) = dcarry
    da = dh * (1.0 - h * h)  # tanh' = 1 - tanh^2
    return da, (da @ Wh.T,)


RNN = Cell("rnn", 1, ("h",), _rnn_step, _rnn_back, h_prev_dWh, lambda hidden: jnp.zeros(hidden))


def rnn(hidden: int, return_sequences: bool = True, *, stateful: bool = False,
        dtype=jnp.float32) -> Layer:
    """The tanh RNN (Elman): the book's sequel's ``RNN`` / ``TimeRNN``.

    **Step** ``t`` (``a_x = x_t Wx + b`` computed for all steps at once)::

        h_t = tanh(a_x + h_{t-1} Wh)

    **Step backward** (``dh`` = the output's gradient at ``t`` + the next step's ``dh_prev``)::

        da      = dh * (1 - h_t^2)
        dh_prev = da Wh^T
        then, over all steps: dWx = x^T da, dWh = h_prev^T da, db = sum(da), dx = da Wx^T

    **Cache per step:** ``(h_{t-1}, h_t)``, each ``(N, H)``; plus ``x`` and the weights.

    **Shapes:** ``(N, T, D) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``.
    **State** (``stateful=True``): ``{"h": (N, H)}`` (see the module docstring).
    """
    return recurrent(RNN, hidden, return_sequences=return_sequences, stateful=stateful, dtype=dtype)


# --------------------------------------------------------------------------- LSTM


def _lstm_step(Wh, a_x, carry):
    h_prev, c_prev = carry
    a = a_x + h_prev @ Wh
    H = h_prev.shape[-1]
    f = sigmoid(a[:, :H])  # forget gate
    g = jnp.tanh(a[:, H:2 * H])  # the new memory
    i = sigmoid(a[:, 2 * H:3 * H])  # input gate
    o = sigmoid(a[:, 3 * H:])  # output gate
    c = f * c_prev + g * i
    tanh_c = jnp.tanh(c)
    h = o * tanh_c
    return (h, c), (h_prev, c_prev, f, g, i, o, tanh_c)


def _lstm_back(Wh, saved, dcarry):
    _, c_prev, f, g, i, o, tanh_c = saved
    dh, dc = dcarry
    ds = dc + dh * o * (1.0 - tanh_c * tanh_c)  # c_t reaches the loss through c_{t+1} and h_t
    dc_prev = ds * f
    df, dg, di, do = ds * c_prev, ds * i, ds * g, dh * tanh_c
    da = jnp.concatenate([df * f * (1.0 - f), dg * (1.0 - g * g), di * i * (1.0 - i), do * o * (1.0 - o)],
                         axis=-1)
    return da, (da @ Wh.T, dc_prev)


def _lstm_bias(forget_bias: float):
    def b_init(hidden):
        return jnp.zeros(4 * hidden).at[:hidden].set(forget_bias)

    return b_init


LSTM = Cell("lstm", 4, ("h", "c"), _lstm_step, _lstm_back, h_prev_dWh, _lstm_bias(1.0))


def lstm(hidden: int, return_sequences: bool = True, *, stateful: bool = False, forget_bias: float = 1.0,
         dtype=jnp.float32) -> Layer:
    """Long short-term memory (Hochreiter and Schmidhuber, 1997): the book's sequel's ``LSTM`` / ``TimeLSTM``.

    **Gates**, in the book's order ``f, g, i, o`` along the columns of ``Wx``,
    ``Wh`` and ``b`` (PyTorch orders them ``i, f, g, o``: transpose blocks to
    exchange weights)::

        a = a_x + h_{t-1} Wh                                   (N, 4H)
        f = sigmoid(a_f)   g = tanh(a_g)   i = sigmoid(a_i)   o = sigmoid(a_o)
        c_t = f * c_{t-1} + g * i
        h_t = o * tanh(c_t)

    **Step backward** (``dh``, ``dc``: the gradients reaching ``h_t`` and ``c_t``)::

        ds      = dc + dh * o * (1 - tanh(c_t)^2)
        dc_prev = ds * f                                      (the forget gate's path)
        df = ds * c_{t-1}   dg = ds * i   di = ds * g   do = dh * tanh(c_t)
        da = [df * f(1-f), dg * (1-g^2), di * i(1-i), do * o(1-o)]
        dh_prev = da Wh^T;  over all steps: dWx = x^T da, dWh = h_prev^T da, db = sum(da)

    **Cache per step:** ``(h_{t-1}, c_{t-1}, f, g, i, o, tanh(c_t))``, each ``(N, H)``.

    **Initialisation:** the forget gate's bias is ``forget_bias`` (default 1, so
    the cell remembers from the start, Jozefowicz et al. 2015); other biases 0.

    **Shapes:** ``(N, T, D) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``.
    **State** (``stateful=True``): ``{"h": (N, H), "c": (N, H)}``.
    """
    forget_bias = _args.number("lstm", "forget_bias", forget_bias)
    cell = LSTM if forget_bias == 1.0 else Cell("lstm", 4, ("h", "c"), _lstm_step, _lstm_back, h_prev_dWh,
                                                _lstm_bias(forget_bias))
    return recurrent(cell, hidden, return_sequences=return_sequences, stateful=stateful, dtype=dtype)


# --------------------------------------------------------------------------- GRU


def _gru_step(Wh, a_x, carry):
    (h_prev,) = carry
    H = h_prev.shape[-1]
    a = a_x[:, :2 * H] + h_prev @ Wh[:, :2 * H]
    z = sigmoid(a[:, :H])  # update gate
    r = sigmoid(a[:, H:])  # reset gate
    h_hat = jnp.tanh(a_x[:, 2 * H:] + (r * h_prev) @ Wh[:, 2 * H:])
    h = (1.0 - z) * h_prev + z * h_hat
    return (h,), (h_prev, z, r, h_hat)


def _gru_back(Wh, saved, dcarry):
    h_prev, z, r, h_hat = saved
    (dh,) = dcarry
    H = h_prev.shape[-1]
    dz = dh * (h_hat - h_prev)
    da_hat = dh * z * (1.0 - h_hat * h_hat)
    drh = da_hat @ Wh[:, 2 * H:].T  # gradient of r * h_prev
    dr = drh * h_prev
    da_zr = jnp.concatenate([dz * z * (1.0 - z), dr * r * (1.0 - r)], axis=-1)
    dh_prev = dh * (1.0 - z) + drh * r + da_zr @ Wh[:, :2 * H].T  # h_prev feeds h, h_hat and both gates
    return jnp.concatenate([da_zr, da_hat], axis=-1), (dh_prev,)


def _gru_dWh(saved, dA):
    h_prev, _, r, _ = saved
    H = h_prev.shape[-1]
    return jnp.concatenate([jnp.einsum("tnh,tng->hg", h_prev, dA[..., :2 * H]),
                            jnp.einsum("tnh,tng->hg", r * h_prev, dA[..., 2 * H:])], axis=1)


GRU = Cell("gru", 3, ("h",), _gru_step, _gru_back, _gru_dWh, lambda hidden: jnp.zeros(3 * hidden))


def gru(hidden: int, return_sequences: bool = True, *, stateful: bool = False, dtype=jnp.float32) -> Layer:
    """Gated recurrent unit, as Cho et al. (2014) define it and the book's sequel's appendix writes it.

    **Gates**, in the order ``z, r, h_hat`` along the columns::

        z = sigmoid(x_t Wx_z + h_{t-1} Wh_z + b_z)               update gate
        r = sigmoid(x_t Wx_r + h_{t-1} Wh_r + b_r)               reset gate
        h_hat = tanh(x_t Wx_h + (r * h_{t-1}) Wh_h + b_h)        the reset applies before the matmul
        h_t = (1 - z) * h_{t-1} + z * h_hat

    (PyTorch's and cuDNN's variant resets after the matmul, ``r * (h Wh_h + b_hh)``,
    and weights ``h_{t-1}`` by ``z``: a different function.)

    **Step backward**::

        dz = dh * (h_hat - h_{t-1})     da_hat = dh * z * (1 - h_hat^2)
        drh = da_hat Wh_h^T             dr = drh * h_{t-1}
        da_z = dz * z(1-z)              da_r = dr * r(1-r)
        dh_prev = dh * (1 - z) + drh * r + [da_z, da_r] [Wh_z, Wh_r]^T
        over all steps: dWh = [h_prev^T [da_z, da_r], (r * h_prev)^T da_hat], dWx = x^T da

    **Cache per step:** ``(h_{t-1}, z, r, h_hat)``, each ``(N, H)``.

    **Shapes:** ``(N, T, D) -> (N, T, H)``, or ``(N, H)`` with ``return_sequences=False``.
    **State** (``stateful=True``): ``{"h": (N, H)}``.
    """
    return recurrent(GRU, hidden, return_sequences=return_sequences, stateful=stateful, dtype=dtype)
