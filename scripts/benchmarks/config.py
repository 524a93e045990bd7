"""What is benchmarked: the configurations, the contenders, the tolerances of the self-check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


DATA_DIR = "/usr/share/datasets/fashion-mnist"
TEXT_DIR = "/usr/share/common-licenses"  # plain English text on every Debian system: the lstm config's data


# torch, torch1, torch_compile: PyTorch eager (all cores / one thread) and torch.compile, on every
# config, skipped with a note when torch is not installed (pip install -e ".[bench]")
# fnet_dp: fnet's epoch data parallel over one CPU device per usable core, as fnet-train --devices N
DEFAULT_CONTENDERS = ("fnet", "fnet_dp", "autodiff", "numpy", "numpy1", "torch", "torch1", "torch_compile",
                      "roof")
CONTENDERS = (*DEFAULT_CONTENDERS, "progress")  # progress: fnet's epoch in 10 pieces (fit(progress=)), opt-in


PAUSE_S = 0.2  # after every timed run: see the module docstring


FIRST_STEPS = 5  # the loss check is tight over these steps of the check epoch ...


FIRST_STEPS_TOL = 1e-5


EPOCH_TOL = 2e-2  # ... and loose over the whole epoch, where float32 rounding differences grow


ROOF_N = 2048  # side of the square matmul that defines the roof


LR = 0.1


ADAMW = {"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.1, "clip": 1.0}
"""The gpt config's optimizer, nanoGPT's CPU recipe's (at its peak rate, without the schedule)."""


FLOP_RULE = ("matmul FLOPs only (bias, activations, softmax, gather, update not counted): "
             "forward 2*B*in*out per affine (2*B*Ho*Wo*Cout*Cin*kh*kw per conv); backward = dW + dx, "
             "each as much as the forward, except dx of the first layer, which XLA removes "
             "(checked in the compiled HLO: the 'skips the first layer's dx' lines)")


@dataclasses.dataclass(frozen=True)
class Config:
    name: str
    description: str
    batch_size: int
    steps: int
    repeats: int
    quick_steps: int
    quick_repeats: int
    image: bool = False  # (N, 28, 28, 1) inputs instead of (N, 784)
    sequence: int = 0  # > 0: character windows of this many steps (ids (N, T), next-character targets)
    first_steps_tol: float = FIRST_STEPS_TOL  # the loss check's bound over the first steps
    optimizer: str = "sgd"  # "sgd": SGD at LR; "adamw": nanoGPT's (ADAMW), clipped at 1


CONFIGS = {
    "book": Config("book", "two_layer_net 784-50-10 (the book's chapter 5)", 100, 600, 7, 100, 3),
    "wide": Config("wide", "784-1024-1024-10 ReLU MLP (fnet.sequential of affine/relu)", 512, 20, 5, 3, 2),
    "convnet": Config("convnet", "simple_convnet: conv 30 5x5, ReLU, pool 2x2, affine 100, ReLU, affine 10",
                      100, 50, 5, 5, 2, image=True),
    "resnet": Config("resnet", "fnet.resnet(): pre-activation ResNet, widths 16/32/64, 2 blocks per stage, "
                               "batch norm, stride-2 projections", 128, 20, 3, 3, 2, image=True,
                     # 14 layers of float32 batch norm: autodiff's losses differ by 1.5e-5 after 5 steps
                     first_steps_tol=1e-4),
    "lstm": Config("lstm", "character LSTM: embedding 100->64, lstm 256, time_distributed affine 100; "
                           "windows of 100 characters", 64, 20, 3, 3, 2, sequence=100),
    "gpt": Config("gpt", "fnet.models.gpt: nanoGPT's CPU recipe, 4 layers, 4 heads, width 128, context 64, "
                         "weights tied; AdamW (0.9, 0.99), weight decay 0.1, clip 1", 12, 50, 5, 5, 2,
                  sequence=64, optimizer="adamw",
                  # a float32 transformer: the contenders' losses differ by a few 1e-6 after 5 steps
                  first_steps_tol=1e-4),
}
