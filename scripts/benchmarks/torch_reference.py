"""PyTorch beside fnet: what a practitioner would write instead (optional: ``pip install -e ".[bench]"``).

Idiomatic eager PyTorch, from fnet's initial weights: for the MLP configs an ``nn.Sequential``
of ``nn.Linear`` and ``nn.ReLU``; for convnet, resnet and lstm the twins of
``benchmarks.torch_models`` (channels-last ``nn.Conv2d``/``nn.BatchNorm2d``, ``nn.LSTM``); all with
``nn.CrossEntropyLoss`` and ``torch.optim.SGD`` at the same rate. For ``gpt`` nanoGPT's
``model.py`` (``_nanogpt``: fused ``c_attn``, ``F.scaled_dot_product_attention``, the head tied to
``wte``), ``torch.optim.AdamW`` with nanoGPT's parameter groups and ``clip_grad_norm_``. All with
minibatches of tensors in memory, ``torch.set_num_threads`` at the machine's cores
(``torch``) or 1 (``torch1``: torch's thread pool collapses when other processes
compete for the cores, so a 1-thread control is kept). ``torch_compile``: the same
with ``torch.compile`` of the model, where it works here.
"""

from __future__ import annotations

import os
import time

import numpy as np

from benchmarks import torch_models
from benchmarks.config import ADAMW, LR, Config
from benchmarks.contenders import Runner, check_run

TORCH_CONTENDERS = ("torch", "torch1", "torch_compile")
TORCH_CONFIGS = ("book", "wide", "convnet", "resnet", "lstm", "gpt")


def prepare_torch(name: str, net, params, x: np.ndarray, t: np.ndarray, config: Config, steps: int,
                  seed: int) -> Runner | str:
    """The torch contender ``name`` (``TORCH_CONTENDERS``), or a string saying why there is none."""
    if config.name not in TORCH_CONFIGS:
        return f"the torch contenders run the configs {', '.join(TORCH_CONFIGS)}"
    try:
        import torch
    except ImportError:
        return 'torch is not installed (pip install -e ".[bench]", the CPU wheel)'
    threads = 1 if name == "torch1" else os.cpu_count() or 1
    if config.name == "gpt":
        return _prepare_gpt(torch, name, params, x, t, config, steps, seed, threads)
    model = _model(torch, config, net, params)
    if isinstance(model, str):
        return model
    if config.image:
        X = torch_models.images(torch, x)
    else:
        X = torch.from_numpy(x.astype(np.int64) if config.sequence else x)
    T = torch.from_numpy(t.astype(np.int64))
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    criterion = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    B, n = config.batch_size, len(x)
    rng = np.random.default_rng(seed)
    forward, compile_s = model, None
    if name == "torch_compile":
        try:
            forward = torch.compile(model)
            t0 = time.perf_counter()
            forward(X[:B]).sum().backward()  # compiles forward and backward for this batch shape
            compile_s = time.perf_counter() - t0
        except Exception as e:
            return f"torch.compile does not work here: {type(e).__name__}: {str(e).splitlines()[0][:120]}"

    def reset() -> None:
        model.load_state_dict(initial)  # weights and batch norm's running statistics
        model.train()
        opt.zero_grad(set_to_none=True)

    def epoch(order: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            idx = torch.from_numpy(order.astype(np.int64))
            losses = []
            for i in range(steps):
                batch = idx[i * B:(i + 1) * B]
                y = forward(X[batch])
                loss = criterion(y.reshape(-1, y.shape[-1]), T[batch].reshape(-1))
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


def _model(torch, config: Config, net, params):
    """The PyTorch twin of ``net`` (``benchmarks.torch_models``), or why there is none."""
    if config.name == "convnet":
        return torch_models.convnet(torch, params)
    if config.name == "resnet":
        return torch_models.resnet(torch, params)
    if config.name == "lstm":
        return torch_models.char_lstm(torch, params)
    layers = []
    for key, layer in net.children:  # book, wide: an nn.Sequential of Linear and ReLU
        if layer.name == "affine":
            layers.append(torch_models.linear(torch, params[key]))
        elif layer.name == "relu":
            layers.append(torch.nn.ReLU())
        else:
            return f"no torch version of layer {layer.name!r}"
    return torch.nn.Sequential(*layers)


def _nanogpt(torch, params, heads: int):
    """nanoGPT's ``GPT`` (``model.py``, bias=True, dropout 0) holding fnet's ``gpt`` parameters."""
    nn, F = torch.nn, torch.nn.functional
    body = params["body"]
    V, D = params["embedding"]["W"].shape
    T = body["wpe"]["W"].shape[0]

    def tensor(a, transpose=False):
        a = np.asarray(a, np.float32)
        return torch.from_numpy((a.T if transpose else a).copy())

    def layer_norm(p):
        ln = nn.LayerNorm(D)
        ln.weight.data, ln.bias.data = tensor(p["gamma"]), tensor(p["beta"])
        return ln

    def linear(W, b):
        lin = nn.Linear(W.shape[0], W.shape[1])
        lin.weight.data, lin.bias.data = tensor(W, transpose=True), tensor(b)
        return lin

    class Block(nn.Module):
        def __init__(self, p):
            super().__init__()
            a, m = p["attn"]["body"], p["mlp"]["body"]
            at = a["attn"]
            self.ln_1, self.ln_2 = layer_norm(a["ln_1"]), layer_norm(m["ln_2"])
            self.c_attn = linear(np.concatenate([at["Wq"], at["Wk"], at["Wv"]], axis=1),
                                 np.concatenate([at["bq"], np.zeros(D, np.float32), at["bv"]]))
            self.attn_proj = linear(at["Wo"], at["bo"])
            self.c_fc = linear(m["fc"]["W"], m["fc"]["b"])
            self.mlp_proj = linear(m["proj"]["W"], m["proj"]["b"])

        def forward(self, x):
            B, Tx, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
            q, k, v = (z.view(B, Tx, heads, D // heads).transpose(1, 2) for z in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(B, Tx, D))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(T, D)
            self.wte.weight.data = tensor(params["embedding"]["W"])
            self.wpe.weight.data = tensor(body["wpe"]["W"])
            layers = sum(k.startswith("h_") for k in body)
            self.h = nn.ModuleList(Block(body[f"h_{i}"]) for i in range(layers))
            self.ln_f = layer_norm(body["ln_f"])
            self.lm_head = nn.Linear(D, V, bias=False)
            self.lm_head.weight = self.wte.weight  # weight tying

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            return self.lm_head(self.ln_f(x))

    return GPT()


def _prepare_gpt(torch, name, params, x, t, config: Config, steps: int, seed: int,
                 threads: int) -> Runner | str:
    heads = 4
    model = _nanogpt(torch, params, heads)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    decay = [p for p in model.parameters() if p.dim() >= 2]  # nanoGPT's configure_optimizers
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"])
    X, T = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(t.astype(np.int64))
    B, n, V = config.batch_size, len(x), params["embedding"]["W"].shape[0]
    rng = np.random.default_rng(seed)
    forward, compile_s = model, None
    if name == "torch_compile":
        try:
            forward = torch.compile(model)
            t0 = time.perf_counter()
            forward(X[:B]).sum().backward()
            compile_s = time.perf_counter() - t0
        except Exception as e:
            return f"torch.compile does not work here: {type(e).__name__}: {str(e).splitlines()[0][:120]}"

    def reset() -> None:
        model.load_state_dict(initial)
        opt.state.clear()
        opt.zero_grad(set_to_none=True)

    def epoch(order: np.ndarray) -> np.ndarray:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            idx = torch.from_numpy(order.astype(np.int64))
            losses = []
            for i in range(steps):
                batch = idx[i * B:(i + 1) * B]
                logits = forward(X[batch])
                loss = torch.nn.functional.cross_entropy(logits.view(-1, V), T[batch].view(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), ADAMW["clip"])
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
