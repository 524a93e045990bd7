"""Layers: constructors that return ``fnet.Layer`` records.

Every layer's docstring states its shapes, what its cache holds and its derivative.
Images are channels-last: ``(N, H, W, C)``; sequences batch-major: ``(N, T, D)``. A transformer
block is built from ``layer_norm``, ``multi_head_attention``, ``affine(..., flatten=False)`` and
``gelu`` (``fnet.models.gpt``). The attention of a decoder over an encoder's states, the second
book's chapter 8, is ``attention_weight``, ``weight_sum`` and ``time_attention``: each takes two
inputs as one tuple ``x = (a, b)`` (``fnet.models.attention_seq2seq``).
"""

from fnet.layers.activations import gelu, identity, relu, sigmoid, softmax, tanh
from fnet.layers.affine import affine
from fnet.layers.attention import multi_head_attention
from fnet.layers.conv import conv2d
from fnet.layers.dropout import dropout
from fnet.layers.embedding import embedding, positional_embedding
from fnet.layers.encoder_attention import attention_weight, time_attention, weight_sum
from fnet.layers.normalization import batch_norm, layer_norm
from fnet.layers.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from fnet.layers.recurrent import gru, lstm, rnn
from fnet.layers.shape import flatten

__all__ = ["affine", "attention_weight", "avg_pool2d", "batch_norm", "conv2d", "dropout", "embedding",
           "flatten", "gelu", "global_avg_pool2d", "gru", "identity", "layer_norm", "lstm", "max_pool2d",
           "multi_head_attention", "positional_embedding", "relu", "rnn", "sigmoid", "softmax", "tanh",
           "time_attention", "weight_sum"]
