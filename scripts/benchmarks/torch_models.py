"""PyTorch twins of the benchmark's fnet networks, holding fnet's initial parameters.

What a practitioner would write: ``nn.Conv2d``/``nn.BatchNorm2d`` on channels-last tensors,
``nn.MaxPool2d``, ``nn.LSTM``, ``nn.Linear``. Each twin takes the input as fnet does (images
``(N, 28, 28, 1)``, ids ``(N, T)``) through ``to_input`` and computes the same function from the
same weights, so that the self-check can compare losses step by step:

- fnet's convolution weights ``(kh, kw, Cin, Cout)`` are torch's ``(Cout, Cin, kh, kw)``;
- fnet flattens channels-last images (height, width, channel order): the twin permutes its
  channels-last activations to NHWC before flattening (a view, no copy);
- fnet's LSTM gates are ``f, g, i, o`` (the book's order), torch's ``i, f, g, o``; fnet has one bias,
  torch two (the second is zero and frozen: trained, it would double the bias's step);
- fnet's batch norm ``momentum=0.9`` keeps 0.9 of the running average: torch's ``momentum=0.1``.
"""

from __future__ import annotations

import numpy as np


def _tensor(torch, a, transpose: bool = False):
    a = np.asarray(a, np.float32)
    return torch.from_numpy(np.array(a.T if transpose else a))  # a copy: torch writes to its tensors


def linear(torch, p, bias: bool = True):
    W = np.asarray(p["W"])
    lin = torch.nn.Linear(W.shape[0], W.shape[1], bias=bias)
    lin.weight.data = _tensor(torch, W, transpose=True)
    if bias:
        lin.bias.data = _tensor(torch, p["b"])
    return lin


def _conv(torch, p, stride: int = 1, padding: int = 0):
    W = np.asarray(p["W"], np.float32)  # (kh, kw, Cin, Cout)
    kh, _, cin, cout = W.shape
    conv = torch.nn.Conv2d(cin, cout, kh, stride=stride, padding=padding, bias="b" in p)
    conv.weight.data = torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1)))
    if "b" in p:
        conv.bias.data = _tensor(torch, p["b"])
    return conv


def _batch_norm(torch, p):
    bn = torch.nn.BatchNorm2d(len(p["gamma"]), eps=1e-5, momentum=0.1)
    bn.weight.data, bn.bias.data = _tensor(torch, p["gamma"]), _tensor(torch, p["beta"])
    return bn


def images(torch, x: np.ndarray):
    """fnet's ``(N, H, W, C)`` images as a channels-last ``(N, C, H, W)`` tensor (the same memory)."""
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def convnet(torch, params):
    """fnet's ``simple_convnet``: Conv1 -> ReLU -> 2x2 max pool -> Affine1 -> ReLU -> Affine2."""
    nn = torch.nn

    class ConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = _conv(torch, params["Conv1"])
            self.pool = nn.MaxPool2d(2)
            self.fc1, self.fc2 = linear(torch, params["Affine1"]), linear(torch, params["Affine2"])

        def forward(self, x):
            x = self.pool(torch.relu(self.conv1(x)))
            x = x.permute(0, 2, 3, 1).flatten(1)  # fnet's (height, width, channel) order
            return self.fc2(torch.relu(self.fc1(x)))

    return ConvNet().to(memory_format=torch.channels_last)


def resnet(torch, params):
    """fnet's ``resnet()``: a stem convolution, stages of pre-activation blocks (``y = body(x) +
    shortcut(x)``, the shortcut a strided 1x1 convolution where the block downsamples), then batch
    norm, ReLU, global average pooling and an affine layer."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, p):
            super().__init__()
            b = p["body"]
            stride = 2 if "shortcut" in p else 1
            self.bn1, self.bn2 = _batch_norm(torch, b["batch_norm_0"]), _batch_norm(torch, b["batch_norm_1"])
            self.conv1 = _conv(torch, b["conv2d_0"], stride, padding=1)
            self.conv2 = _conv(torch, b["conv2d_1"], padding=1)
            self.shortcut = _conv(torch, p["shortcut"], stride) if "shortcut" in p else None

        def forward(self, x):
            y = self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))
            return y + (x if self.shortcut is None else self.shortcut(x))

    class ResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = _conv(torch, params["stem"], padding=1)
            stages = sorted((k for k in params if k.startswith("stage_")), key=lambda k: int(k.split("_")[1]))
            self.blocks = nn.Sequential(*(Block(params[s][b]) for s in stages
                                          for b in sorted(params[s], key=lambda k: int(k.split("_")[1]))))
            head = params["head"]
            self.bn, self.fc = _batch_norm(torch, head["batch_norm_0"]), linear(torch, head["affine_0"])

        def forward(self, x):
            x = torch.relu(self.bn(self.blocks(self.stem(x))))
            return self.fc(x.mean(dim=(2, 3)))

    return ResNet().to(memory_format=torch.channels_last)


def char_lstm(torch, params):
    """The lstm config: an embedding, one ``nn.LSTM`` (batch first) and a linear layer on every step."""
    nn = torch.nn
    table = np.asarray(params["embedding_0"]["W"], np.float32)
    lstm_p = params["lstm_0"]
    Wx, Wh, b = (np.asarray(lstm_p[k], np.float32) for k in ("Wx", "Wh", "b"))
    H = Wh.shape[0]
    i, f, g, o = (np.arange(k * H, (k + 1) * H) for k in (2, 0, 1, 3))  # fnet's columns of each gate
    order = np.concatenate([i, f, g, o])  # torch's order

    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(*table.shape)
            self.embed.weight.data = torch.from_numpy(table.copy())
            self.lstm = nn.LSTM(Wx.shape[0], H, batch_first=True)
            self.lstm.weight_ih_l0.data = torch.from_numpy(np.ascontiguousarray(Wx[:, order].T))
            self.lstm.weight_hh_l0.data = torch.from_numpy(np.ascontiguousarray(Wh[:, order].T))
            self.lstm.bias_ih_l0.data = torch.from_numpy(b[order].copy())
            self.lstm.bias_hh_l0.data = torch.zeros(4 * H)
            self.lstm.bias_hh_l0.requires_grad_(False)  # one bias, as fnet's: SGD would move both
            self.out = linear(torch, params["time_distributed_0"]["affine_0"])

        def forward(self, ids):
            h, _ = self.lstm(self.embed(ids))
            return self.out(h)

    return CharLSTM()
