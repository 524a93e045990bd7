"""The book's training loop in NumPy, the reference a learner would write (float32, in-place SGD)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.config import LR, Config
from benchmarks.contenders import Runner, check_run
from benchmarks.machine import numpy_blas_threads


class NpAffine:
    """The book's ``Affine``: ``out = x @ W + b``; backward ``dW = x.T @ dout``, ``dx = dout @ W.T``."""

    def __init__(self, W: np.ndarray, b: np.ndarray, need_dx: bool):
        self.W, self.b, self.need_dx = W, b, need_dx
        self.x: np.ndarray | None = None
        self.dW: np.ndarray | None = None
        self.db: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.x = x
        return x @ self.W + self.b

    def backward(self, dout: np.ndarray) -> np.ndarray | None:
        self.dW = self.x.T @ dout
        self.db = dout.sum(axis=0)
        return dout @ self.W.T if self.need_dx else None


class NpRelu:
    """The book's ``Relu``, with ``np.maximum`` for the forward and the mask applied in place."""

    def __init__(self):
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dout *= self.mask
        return dout


class NpSoftmaxWithLoss:
    """The book's ``SoftmaxWithLoss`` with class-index labels; loss from a stable log-softmax."""

    def __init__(self):
        self.y: np.ndarray | None = None
        self.t: np.ndarray | None = None
        self.rows: np.ndarray | None = None

    def forward(self, x: np.ndarray, t: np.ndarray) -> float:
        if self.rows is None or len(self.rows) != len(x):
            self.rows = np.arange(len(x))
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        self.y, self.t = e / s, t
        return float(np.log(s[:, 0]).sum() - shifted[self.rows, t].sum()) / len(x)

    def backward(self) -> np.ndarray:
        dx = self.y
        dx[self.rows, self.t] -= 1
        dx /= len(dx)
        return dx


def prepare_numpy(net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                  seed: int, threads: int | None = None) -> Runner | str:
    """The NumPy contender, or a string saying why there is none for this network.

    ``threads``: OpenBLAS threads while it runs (restored afterwards); None keeps the default.
    """

    layers: list[Any] = []
    affines: list[NpAffine] = []
    init: list[tuple[np.ndarray, np.ndarray]] = []
    for key, layer in net.children:
        if layer.name == "affine":
            W = np.array(params[key]["W"], np.float32)
            b = np.array(params[key]["b"], np.float32)
            init.append((W.copy(), b.copy()))
            affines.append(NpAffine(W, b, need_dx=bool(layers)))
            layers.append(affines[-1])
        elif layer.name == "relu":
            layers.append(NpRelu())
        else:
            return f"no NumPy version of layer {layer.name!r} (an im2col NumPy convnet is not written)"
    last = NpSoftmaxWithLoss()
    B, n = config.batch_size, len(x)
    rng = np.random.default_rng(seed)

    def epoch(order: np.ndarray) -> np.ndarray:
        losses = np.empty(steps, np.float32)
        for i in range(steps):
            batch = order[i * B:(i + 1) * B]
            h = x[batch]
            for layer in layers:
                h = layer.forward(h)
            losses[i] = last.forward(h, t[batch])
            d = last.backward()
            for layer in reversed(layers):
                d = layer.backward(d)
            for a in affines:
                a.W -= LR * a.dW
                a.b -= LR * a.db
        return losses

    def reset() -> None:
        for a, (W, b) in zip(affines, init, strict=True):
            np.copyto(a.W, W)
            np.copyto(a.b, b)

    default_threads = numpy_blas_threads()

    def with_threads(order: np.ndarray) -> np.ndarray:
        if threads is not None:
            numpy_blas_threads(threads)
        try:
            return epoch(order)
        finally:
            if threads is not None:
                numpy_blas_threads(default_threads)

    def run(rep: int) -> np.ndarray:
        reset()  # (timed with the epoch: a copy of the parameters, negligible next to it)
        return with_threads(rng.permutation(n))

    check, first_call_s = check_run(seed, n, reset, with_threads)
    return Runner("numpy" if threads is None else f"numpy{threads}", run, check, None, first_call_s,
                  {"blas_threads": threads or default_threads})
