"""PyTorch beside fnet: what a practitioner would write instead (optional: ``pip install -e ".[bench]"``).

Idiomatic eager PyTorch: an ``nn.Sequential`` of ``nn.Linear`` and ``nn.ReLU`` with
fnet's initial weights, ``nn.CrossEntropyLoss``, ``torch.optim.SGD`` at the same rate,
minibatches of tensors in memory, ``torch.set_num_threads`` at the machine's cores
(``torch``) or 1 (``torch1``: torch's thread pool collapses when other processes
compete for the cores, so a 1-thread control is kept). ``torch_compile``: the same
with ``torch.compile`` of the model, where it works here.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks.config import LR, Config
from benchmarks.contenders import Runner, check_run

TORCH_CONTENDERS = ("torch", "torch1", "torch_compile")
TORCH_CONFIGS = ("book", "wide")


def prepare_torch(name: str, net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                  seed: int) -> Runner | str:
    """The torch contender ``name`` (``TORCH_CONTENDERS``), or a string saying why there is none."""
    if config.name not in TORCH_CONFIGS:
        return f"the torch contenders run the MLP configs {', '.join(TORCH_CONFIGS)}"
    try:
        import torch
    except ImportError:
        return 'torch is not installed (pip install -e ".[bench]", the CPU wheel)'
    threads = 1 if name == "torch1" else os.cpu_count() or 1
    layers, init = [], []
    for key, layer in net.children:
        if layer.name == "affine":
            W, b = np.asarray(params[key]["W"], np.float32), np.asarray(params[key]["b"], np.float32)
            lin = torch.nn.Linear(W.shape[0], W.shape[1])
            init.append((torch.from_numpy(W.T.copy()), torch.from_numpy(b.copy())))
            layers.append(lin)
        elif layer.name == "relu":
            layers.append(torch.nn.ReLU())
        else:
            return f"no torch version of layer {layer.name!r}"
    model = torch.nn.Sequential(*layers)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    X, T = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    B, n = config.batch_size, len(x)
    rng = np.random.default_rng(seed)
    forward = model
    compile_s = None
    if name == "torch_compile":
        try:
            forward = torch.compile(model)
            t0 = time.perf_counter()
            forward(X[:B]).sum().backward()  # compiles forward and backward for this batch shape
            compile_s = time.perf_counter() - t0
        except Exception as e:
            return f"torch.compile does not work here: {type(e).__name__}: {str(e).splitlines()[0][:120]}"

    def reset() -> None:
        with torch.no_grad():
            for lin, (W, b) in zip(linears, init, strict=True):
                lin.weight.copy_(W)
                lin.bias.copy_(b)
        opt.zero_grad(set_to_none=True)

    def epoch(order: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            idx = torch.from_numpy(order.astype(np.int64))
            losses = []
            for i in range(steps):
                batch = idx[i * B:(i + 1) * B]
                loss = criterion(forward(X[batch]), T[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            return torch.stack(losses).numpy()
        finally:
            torch.set_num_threads(previous)

    def run(rep: int) -> np.ndarray:
        reset()
        return epoch(rng.permutation(n))

    check, first_call_s = check_run(seed, n, reset, epoch)
    return Runner(name, run, check, compile_s, first_call_s, {"torch": torch.__version__, "threads": threads})
