"""``fnet-train --evaluate`` and ``--predict``: a saved model used without training.

The network is rebuilt from the options saved in the checkpoint (model, hidden sizes,
activation, dropout, batch norm, dataset), its parameters and state are loaded and
checked against it; then the test set is evaluated, or a file of images is classified.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from fnet.cli.models import build_network, model_input
from fnet.cli.options import CLI_SPELLING

IMAGE = (28, 28)


def load_model(parser: argparse.ArgumentParser, a: argparse.Namespace):
    """``(net, checkpoint, saved config)`` of ``a.checkpoint``, written by fnet-train."""
    from fnet import checkpoint as ckpt_lib
    from fnet import data
    from fnet.core import param_shapes

    config = ckpt_lib.read_config(a.checkpoint)["config"]
    if "model" not in config:
        raise ckpt_lib.CheckpointError(
            f"{a.checkpoint} was not written by fnet-train (its config names no model): load it in Python "
            "with fnet.checkpoint.restore(path, net, input_shape) and the network that made it, or train "
            "that network with fnet-train --net MODULE:FUNCTION")
    layout = config.get("net_input", "image")
    example = model_input(config["model"], np.zeros((1, *IMAGE, 1)), layout).shape[1:]
    n_classes = len(data.DATASETS[config.get("dataset", "fashion-mnist")].classes)
    net, input_shape = build_network(config, example, n_classes)
    params_like, _ = param_shapes(net, input_shape)
    state_like = net.init_state(input_shape) if "state" in net.uses else None
    return net, ckpt_lib.load(a.checkpoint, params_like=params_like, state_like=state_like), config


def read_images(path) -> np.ndarray:
    """Images from an IDX file or a ``.npy`` array: ``(N, 28, 28)``, ``(N, 28, 28, 1)`` or ``(N, 784)``,
    integer pixels 0..255 or floats in [0, 1] (as the loaders' ``normalize=True`` gives them), as
    float32 in [0, 1]. **Raises:** ``ValueError`` saying how to pass images, for any other shape, for
    floats outside [0, 1] (pixels 0..255 stored as floats would be read 255 times too bright) and
    for NaN or infinite values (which would still give a confident class)."""
    from fnet import data

    images = np.load(path, allow_pickle=False) if str(path).endswith(".npy") else data.read_idx(path)
    how = ("pass uint8 pixels 0..255 (as the IDX files hold them) or floats in [0, 1] (pixels / 255), shaped "
           "(N, 28, 28), (N, 28, 28, 1) or (N, 784)")
    if images.ndim < 2 or images.size == 0 or images[0].size != IMAGE[0] * IMAGE[1]:
        raise ValueError(f"expected 28x28 images, got shape {images.shape}: {how}")
    if np.issubdtype(images.dtype, np.integer):
        if images.min() < 0 or images.max() > 255:
            raise ValueError(f"integer pixels must be 0..255, got {images.min()}..{images.max()}: {how}")
        return images.astype(np.float32) / 255
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"images of dtype {images.dtype}: {how}")
    bad = ~np.isfinite(images)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(images), -1).any(axis=1)))
        raise ValueError(f"{int(bad.sum())} pixel values are NaN or infinite, the first in image {first}: "
                         f"{how}")
    if images.min() < 0 or images.max() > 1:
        raise ValueError(f"float pixels must be in [0, 1], got {images.min():g}..{images.max():g} (pixels "
                         f"0..255 stored as floats?): {how}")
    return images.astype(np.float32)


def use_checkpoint(parser: argparse.ArgumentParser, a: argparse.Namespace) -> int:
    """Run ``--evaluate`` or ``--predict``; the exit status (2 for a user error)."""
    import jax

    from fnet import data, losses, train
    from fnet.net import predict

    try:
        net, ck, config = load_model(parser, a)
    except ValueError as e:  # a CheckpointError, a --net that no longer imports
        print(f"fnet-train: {e}", file=sys.stderr)
        return 2
    dataset = config.get("dataset", "fashion-mnist")
    if a.evaluate:
        try:
            _, (x_test, t_test) = data.load_dataset(dataset, a.data_dir, normalize=True, flatten=False,
                                                    download=not a.no_download, spelling=CLI_SPELLING,
                                                    cache=not a.no_data_cache)
            x_test = model_input(config["model"], x_test, config.get("net_input", "image"))
        except data.DataError as e:
            print(f"fnet-train: {e}", file=sys.stderr)
            return 2
        evaluate = jax.jit(train.make_evaluate(net, losses.softmax_cross_entropy))
        loss, acc = (float(v) for v in evaluate(ck.params, ck.state, x_test, t_test))
        model = f"net {config['net']}" if config["model"] == "net" else f"model {config['model']}"
        print(f"{a.checkpoint} ({model}, epoch {ck.epoch}) on the {dataset} test set "
              f"({len(x_test)} examples): loss {loss:.4f}, accuracy {acc:.4f}")
        if a.json is not None:
            a.json.write_text(json.dumps({"checkpoint": str(a.checkpoint), "epoch": ck.epoch,
                                          "dataset": dataset, "test_loss": loss, "test_acc": acc}, indent=2))
        return 0
    try:
        x = read_images(a.predict)
    except (ValueError, OSError) as e:  # DataError included
        print(f"fnet-train: --predict {a.predict}: {e}", file=sys.stderr)
        return 2
    x = model_input(config["model"], x.reshape(len(x), *IMAGE, 1), config.get("net_input", "image"))
    run = jax.jit(lambda params, state, xb: predict(net, params, xb, state=state))
    y = np.concatenate([np.asarray(run(ck.params, ck.state, x[i:i + 1000])) for i in range(0, len(x), 1000)])
    probs = np.exp(y - y.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    classes = data.DATASETS[dataset].classes
    try:
        print("index\tclass\tname\tprobability")
        for i, (k, p) in enumerate(zip(y.argmax(axis=1), probs.max(axis=1), strict=True)):
            print(f"{i}\t{k}\t{classes[k]}\t{p:.3f}")
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
