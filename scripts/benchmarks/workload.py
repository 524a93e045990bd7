"""The workload of a configuration: its data, its network, and the matmul FLOPs of one step."""

from __future__ import annotations

import argparse
import math

import numpy as np

from benchmarks.config import DATA_DIR, TEXT_DIR, Config

VOCAB = 100


def load_text(config: Config, train_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``train_size`` windows of ``config.sequence`` characters of the Debian license texts, as ids
    below ``VOCAB`` (the 99 most frequent characters, the others one shared id), and next-character
    targets."""
    from pathlib import Path

    files = sorted(p for p in Path(TEXT_DIR).iterdir() if p.is_file())
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in files)
    chars, counts = np.unique(np.frombuffer(text.encode("utf-32-le"), np.uint32), return_counts=True)
    ranked = chars[np.argsort(-counts)]
    lookup = {int(c): i for i, c in enumerate(ranked[: VOCAB - 1])}
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    ids = np.array([lookup.get(int(c), VOCAB - 1) for c in codes], np.int32)
    T = config.sequence
    n = (len(ids) - 1) // T
    if train_size > n:
        raise SystemExit(f"bench: {config.name} needs {train_size} windows of {T} characters; {TEXT_DIR} "
                         f"gives {n} (use fewer --steps)")
    x = ids[: n * T].reshape(n, T)[:train_size]
    t = ids[1: n * T + 1].reshape(n, T)[:train_size]
    return np.ascontiguousarray(x), np.ascontiguousarray(t)


def load_data(config: Config, train_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``train_size`` Fashion-MNIST training examples, float32 in [0, 1], int32 labels
    (for a sequence config, ``load_text``)."""
    from fnet import data

    if config.sequence:
        return load_text(config, train_size)

    (x, t), _ = data.load_fashion_mnist(DATA_DIR, normalize=True, flatten=not config.image, download=False)
    if not 1 <= train_size <= len(x):
        raise SystemExit(f"bench: {config.name} needs {train_size} training examples; "
                         f"Fashion-MNIST has {len(x)} (use fewer --steps or a smaller --train-size)")
    x, t = x[:train_size], t[:train_size]
    return np.ascontiguousarray(x, np.float32), np.ascontiguousarray(t, np.int32)


def sizes(config: Config, args: argparse.Namespace) -> tuple[int, int, int]:
    """``(steps, repeats, train_size)`` for ``config`` under the command-line options."""
    steps = args.steps or (config.quick_steps if args.quick else config.steps)
    repeats = args.repeats or (config.quick_repeats if args.quick else config.repeats)
    return steps, repeats, args.train_size or steps * config.batch_size


def build_net(config: Config):
    """The network of ``config``, or None if this checkout of fnet lacks it."""
    import fnet
    from fnet import layers as L

    if config.name == "book":
        return fnet.two_layer_net(784, 50, 10)
    if config.name == "wide":
        return fnet.sequential(L.affine(1024), L.relu(), L.affine(1024), L.relu(), L.affine(10))
    if config.name == "convnet":
        return fnet.models.simple_convnet() if hasattr(fnet.models, "simple_convnet") else None
    if config.name == "resnet":
        return fnet.models.resnet() if hasattr(fnet.models, "resnet") else None
    if config.name == "lstm":
        if not hasattr(L, "lstm"):
            return None
        return fnet.sequential(L.embedding(VOCAB, 64), L.lstm(256), fnet.time_distributed(L.affine(VOCAB)))
    if config.name == "gpt":
        return fnet.models.gpt(VOCAB, config.sequence) if hasattr(fnet.models, "gpt") else None
    raise ValueError(config.name)


def matmul_flops(net, params, x_shape: tuple) -> tuple[int, list[dict]]:
    """FLOPs of one training step by ``FLOP_RULE``, from the forward's jaxpr, and the per-op detail.

    Every ``dot_general`` and ``conv_general_dilated`` in the forward counts once
    forward and twice backward (dW and dx), except the first one, whose dx is
    not computed (unless its input comes from an embedding, whose table needs
    it). A matmul inside a ``scan`` (a recurrent layer's step) counts once per step.
    """
    import jax
    import jax.extend
    import jax.numpy as jnp

    import fnet

    state = net.init_state((None, *x_shape[1:])) if "state" in net.uses else None

    def forward(p, x):  # in training mode, as the epoch runs it (batch norm: batch statistics)
        return fnet.apply(net, p, x, key=jax.random.key(0), train=True if net.uses else None, state=state)[0]

    ids = bool(net.children) and net.children[0][1].name == "embedding"
    closed = jax.make_jaxpr(forward)(params, jax.ShapeDtypeStruct(x_shape, jnp.int32 if ids else jnp.float32))
    ops: list[dict] = []

    def walk(jaxpr, times=1):
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            out = eqn.outvars[0].aval.shape
            if name == "dot_general":
                (lhs_c, _), _ = eqn.params["dimension_numbers"]
                lhs = eqn.invars[0].aval.shape
                k = math.prod(lhs[d] for d in lhs_c)
                ops.append({"op": "dot", "lhs": list(lhs), "rhs": list(eqn.invars[1].aval.shape),
                            "forward_flops": 2 * math.prod(out) * k * times, "times": times})
            elif name == "conv_general_dilated":
                rhs = eqn.invars[1].aval.shape
                out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
                ops.append({"op": "conv", "lhs": list(eqn.invars[0].aval.shape), "rhs": list(rhs),
                            "forward_flops": 2 * math.prod(out) * math.prod(rhs) // out_features})
            inner = times * (eqn.params["length"] if name == "scan" else 1)
            for value in eqn.params.values():
                for sub in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(sub, jax.extend.core.ClosedJaxpr):
                        walk(sub.jaxpr, inner)
                    elif isinstance(sub, jax.extend.core.Jaxpr):
                        walk(sub, inner)

    walk(closed.jaxpr)
    total = 0
    for i, op in enumerate(ops):
        op["step_flops"] = op["forward_flops"] * (2 if i == 0 and not ids else 3)
        total += op["step_flops"]
    return total, ops
