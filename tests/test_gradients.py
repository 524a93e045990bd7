"""Gradient equivalence: every handwritten backward rule equals ``jax.vjp`` of its own forward.

THE LIST below holds one ``harness.Case`` per layer, combinator, model, loss and graph
node, with the shapes it is checked on in each column: float64 (relative error
<= ``TOL64``), float32 at the sizes the book trains with (<= ``TOL32``), and, for
layers that behave differently in evaluation, ``train=False``. Adding a layer to fnet
means adding one line here; the completeness checks at the end fail until you do, and
they cover every column (every public layer has a float32 check, every layer with a
train/eval mode an evaluation check, every loss both).
"""

import pytest
from harness import TOL32, TOL64, Case, ids, pair_of

import fnet
from fnet import graph, losses
from fnet import layers as L
from fnet.models import multi_layer_net, simple_convnet

# ----------------------------------------------------------------------------- THE LIST


def _conv_block(width, bias):
    """A ResNet block that halves the image: a stride-2 body and a 1x1 stride-2 projection.

    A bias just before batch norm has a gradient of exactly 0 (the norm subtracts any shift):
    float32 cancellation noise relative to 0 is no test, so the float32 check has no bias."""
    body = fnet.sequential(L.conv2d(width, 3, stride=2, padding=1, bias=bias), L.batch_norm(), L.relu(),
                           L.conv2d(width, 3, padding=1, bias=bias), L.batch_norm())
    shortcut = fnet.sequential(L.conv2d(width, 1, stride=2, bias=bias), L.batch_norm())
    return fnet.residual(body, shortcut=shortcut)


# Layer shapes include batch 1 and an N-D input. Convolution and pooling: odd sizes, strides
# that do not divide (rows in no window), padding larger than the kernel (negative padding in
# dx), asymmetric "SAME" padding. Dropout and batch norm run in training mode (the harness
# passes train=True and a fixed key), and in evaluation mode in the eval_mode column.
LAYER_CASES = [
    Case("affine", lambda: L.affine(7), [(1, 5), (4, 3), (3, 2, 4, 5)]),
    Case("affine book", lambda: L.affine(50), float32=[(100, 784)]),
    Case("relu", L.relu, [(1, 6), (4, 5), (2, 3, 4, 5)], float32=[(100, 50)]),
    Case("sigmoid", L.sigmoid, [(1, 6), (4, 5), (2, 3, 4, 5)], float32=[(100, 50)]),
    Case("tanh", L.tanh, [(1, 6), (4, 5), (2, 3, 4, 5)], float32=[(100, 50)]),
    Case("identity", L.identity, [(1, 6), (4, 5), (2, 3, 4)], float32=[(100, 50)]),
    Case("softmax", L.softmax, [(1, 4), (5, 3), (2, 3, 7)], float32=[(100, 10)]),
    Case("flatten", L.flatten, [(1, 3), (2, 3, 4), (2, 3, 4, 5)], float32=[(100, 12, 12, 30)]),
    Case("dropout", lambda: L.dropout(0.3), [(1, 6), (4, 5), (2, 3, 4, 5)], float32=[(100, 50)],
         eval_mode=[(4, 5)]),
    # batch norm on (N, C) and per channel on NHWC images
    Case("batch_norm", L.batch_norm, [(1, 3, 3, 2), (4, 5), (2, 3, 4, 3), (3, 2, 5)],
         float32=[(100, 24, 24, 30)], eval_mode=[(1, 5), (2, 3, 4, 3)]),
    Case("layer_norm", L.layer_norm, [(1, 5), (4, 6), (2, 3, 4)], float32=[(100, 50)]),
    Case("conv2d", lambda: L.conv2d(4, 3), [(1, 5, 5, 1), (2, 6, 7, 3), (3, 4, 4, 2)]),
    Case("conv2d book", lambda: L.conv2d(30, 5), float32=[(100, 28, 28, 1)]),
    Case("conv2d stride 2 pad 1", lambda: L.conv2d(3, (3, 2), stride=2, padding=1),
         [(1, 8, 9, 2), (2, 7, 6, 1)]),
    Case("conv2d stride 2 pad 1 wide", lambda: L.conv2d(16, 3, stride=2, padding=1),
         float32=[(32, 14, 14, 8)]),
    Case("conv2d stride 3 pad 3", lambda: L.conv2d(2, 2, stride=3, padding=(3, 1)),
         [(1, 5, 5, 2), (2, 4, 8, 3), (2, 7, 8, 1)]),
    Case("conv2d SAME", lambda: L.conv2d(5, 4, stride=(2, 3), padding="SAME"), [(2, 5, 7, 2), (1, 6, 5, 1)]),
    Case("conv2d no bias", lambda: L.conv2d(3, 3, padding=1, bias=False), [(2, 5, 6, 1), (1, 4, 4, 2)]),
    # narrow stride-1 kernels: output pixels in pairs (even widths; odd ones the plain way)
    Case("conv2d pairs", lambda: L.conv2d(5, 3, padding=1), [(2, 6, 8, 3), (1, 5, 4, 2), (2, 4, 5, 2)],
         float32=[(8, 28, 28, 16)]),
    Case("conv2d pairs rectangular", lambda: L.conv2d(4, (2, 3), padding=((1, 0), (2, 1))),
         [(2, 5, 6, 3), (1, 3, 7, 1)]),
    # few pixels per input channel (H * W <= 4 * C_in, stride 1): dW as one convolution on a CPU
    Case("conv2d dW by convolution", lambda: L.conv2d(5, 3, padding=1),
         [(2, 3, 4, 4), (1, 2, 2, 3), (3, 2, 3, 2)], float32=[(16, 7, 7, 64)]),
    Case("conv2d dW by convolution rectangular", lambda: L.conv2d(3, (3, 2), padding=((1, 0), (0, 2))),
         [(2, 2, 3, 2), (1, 3, 3, 4)]),
    Case("max_pool2d", L.max_pool2d, [(1, 4, 4, 1), (2, 6, 4, 3), (2, 7, 5, 2)],
         float32=[(100, 24, 24, 30)]),
    Case("max_pool2d overlap pad 1", lambda: L.max_pool2d(3, stride=2, padding=1),
         [(1, 5, 5, 2), (2, 8, 7, 3)], float32=[(32, 14, 14, 16)]),
    Case("max_pool2d gaps", lambda: L.max_pool2d((2, 3), stride=(3, 2)), [(1, 7, 8, 2), (2, 5, 5, 1)]),
    Case("max_pool2d SAME", lambda: L.max_pool2d(3, stride=2, padding="SAME"), [(2, 4, 5, 2)]),
    Case("avg_pool2d", L.avg_pool2d, [(1, 4, 4, 1), (2, 6, 4, 3), (2, 7, 5, 2)],
         float32=[(100, 24, 24, 30)]),
    Case("avg_pool2d overlap pad 1", lambda: L.avg_pool2d(3, stride=2, padding=1),
         [(1, 5, 5, 2), (2, 8, 7, 3)]),
    Case("avg_pool2d gaps", lambda: L.avg_pool2d((2, 3), stride=(3, 2)), [(2, 7, 8, 1)]),
    Case("global_avg_pool2d", L.global_avg_pool2d, [(1, 3, 3, 2), (2, 5, 7, 3), (3, 1, 1, 4)],
         float32=[(100, 7, 7, 64)]),
    # combinators and models: the chain rule across layers, nested keys
    Case("sequential", lambda: fnet.sequential(L.affine(6), L.tanh(),
                                               fnet.sequential(L.affine(5), L.sigmoid()),
                                               L.affine(4), L.relu(), L.affine(3), L.softmax()),
         [(1, 8), (6, 8), (2, 2, 2, 2)]),
    # branches: where x fans out its gradients add up; a sum passes dout on, a concat splits it
    Case("residual", lambda: fnet.residual(fnet.sequential(L.affine(5), L.tanh(), L.affine(5))),
         [(1, 5), (4, 5)], float32=[(100, 5)]),
    Case("residual projection", lambda: fnet.residual(fnet.sequential(L.affine(6), L.relu(), L.affine(4)),
                                                      shortcut=L.affine(4)),
         [(1, 5), (3, 2, 3)]),
    Case("parallel concat",
         lambda: fnet.parallel(L.affine(3), fnet.sequential(L.affine(4), L.tanh()), L.relu()),
         [(1, 5), (4, 5)], float32=[(100, 50)]),
    Case("parallel sum",
         lambda: fnet.parallel(L.affine(4), fnet.sequential(L.affine(3), L.sigmoid(), L.affine(4)),
                               merge="sum"),
         [(1, 5), (3, 5)]),
    Case("parallel one branch", lambda: fnet.parallel(("only", L.affine(3))), [(2, 4)]),
    Case("parallel concat channels", lambda: fnet.parallel(L.conv2d(2, 3, padding=1), L.conv2d(3, 1)),
         [(1, 5, 5, 2), (2, 4, 6, 1)]),
    Case("residual in parallel in residual",
         lambda: fnet.residual(fnet.sequential(
             fnet.parallel(fnet.residual(fnet.sequential(L.affine(4), L.tanh(), L.affine(4))), L.affine(4),
                           merge="sum"),
             L.sigmoid())),
         [(1, 4), (3, 4)]),
    # batch norm and dropout inside branches: the key, the mode and each branch's state routed
    Case("residual batchnorm dropout",
         lambda: fnet.residual(fnet.sequential(L.affine(5), L.batch_norm(), L.relu(), L.dropout(0.3),
                                               L.affine(5)),
                               shortcut=fnet.sequential(L.affine(5), L.batch_norm())),
         [(3, 5), (4, 5)], eval_mode=[(1, 5), (3, 5)]),
    Case("parallel batchnorm dropout",
         lambda: fnet.parallel(fnet.sequential(L.affine(3), L.batch_norm()), L.dropout(0.5),
                               fnet.sequential(L.dropout(0.2), L.affine(2))),
         [(3, 4)], eval_mode=[(2, 4)]),
    Case("residual conv stride 2", lambda: _conv_block(4, bias=False),
         [(1, 5, 7, 3), (2, 6, 6, 2)], float32=[(32, 14, 14, 16)], eval_mode=[(1, 5, 7, 3)]),
    Case("residual conv stride 2 bias", lambda: _conv_block(3, bias=True), [(2, 6, 5, 2)],
         eval_mode=[(1, 6, 5, 2)]),
    Case("resnet", lambda: fnet.resnet((8, 8, 1), widths=(2, 3), blocks=(1, 2), output_size=3),
         [(1, 8, 8, 1), (2, 8, 8, 1)], eval_mode=[(2, 8, 8, 1)]),
    Case("resnet default", fnet.resnet, float32=[(8, 28, 28, 1)], eval_mode=[(2, 28, 28, 1)]),
    # sequences (N, T, D): T = 1 and longer, batch 1, the last state only, stacked layers
    Case("embedding", lambda: L.embedding(7, 3), [(1,), (2, 5), (2, 3, 2)], float32=[(64, 100)],
         x_fn=ids(7)),
    Case("embedding repeated ids", lambda: L.embedding(2, 4), [(6, 5)], x_fn=ids(2)),
    Case("rnn", lambda: L.rnn(4), [(1, 1, 3), (3, 5, 2)], float32=[(32, 28, 28)]),
    Case("rnn last", lambda: L.rnn(4, return_sequences=False), [(3, 6, 2)]),
    Case("rnn stateful", lambda: L.rnn(3, stateful=True), [(2, 4, 3)], random_state=True),
    Case("lstm", lambda: L.lstm(4), [(1, 1, 3), (1, 6, 2), (3, 5, 2)], float32=[(32, 28, 28)]),
    Case("lstm last", lambda: L.lstm(5, return_sequences=False), [(1, 1, 3), (3, 7, 2)]),
    Case("lstm stateful", lambda: L.lstm(3, stateful=True), [(1, 1, 2), (2, 4, 3)], random_state=True),
    Case("gru", lambda: L.gru(4), [(1, 1, 3), (3, 5, 2)], float32=[(32, 28, 28)]),
    Case("gru last", lambda: L.gru(5, return_sequences=False), [(3, 7, 2)]),
    Case("gru stateful", lambda: L.gru(3, stateful=True), [(2, 4, 3)], random_state=True),
    Case("stacked lstm dropout", lambda: fnet.sequential(L.lstm(5), L.dropout(0.3), L.lstm(4),
                                                         L.dropout(0.3), L.gru(3, return_sequences=False)),
         [(3, 4, 2)], eval_mode=[(2, 4, 2)]),
    Case("time_distributed", lambda: fnet.time_distributed(L.affine(6)), [(1, 1, 3), (2, 5, 4), (2, 3, 2, 2)],
         float32=[(32, 50, 64)]),
    Case("time_distributed sequential", lambda: fnet.time_distributed(
        fnet.sequential(L.affine(5), L.batch_norm(), L.relu(), L.dropout(0.2), L.affine(3))),
         [(2, 3, 4), (1, 4, 3)], eval_mode=[(2, 3, 4)]),
    Case("embedding lstm time_distributed affine", lambda: fnet.sequential(
        L.embedding(11, 6), L.lstm(8), fnet.time_distributed(L.affine(11))),
         [(3, 6)], float32=[(16, 20)], x_fn=ids(11)),
    Case("stateful char model", lambda: fnet.sequential(
        L.embedding(9, 4), L.lstm(5, stateful=True), L.lstm(4, stateful=True),
        fnet.time_distributed(L.affine(9))),
         [(2, 5)], x_fn=ids(9), random_state=True),
    # the transformer: GELU, positional embeddings, affine on the last axis, attention (heads 1 to 4,
    # causal and not, T = 1, batch 1), a block, weight tying, whole GPTs (tied, untied, dropout, a
    # prompt shorter than the context)
    Case("gelu", L.gelu, [(1, 6), (4, 5), (2, 3, 4)], float32=[(12, 64, 512)]),
    Case("gelu tanh", lambda: L.gelu(approximate=True), [(1, 6), (2, 3, 4)], float32=[(100, 50)]),
    Case("positional_embedding", lambda: L.positional_embedding(64), [(1, 1, 4), (2, 5, 3), (3, 64, 2)],
         float32=[(12, 64, 128)]),
    Case("positional_embedding sinusoidal", lambda: L.positional_embedding(64, "sinusoidal"),
         [(1, 1, 4), (2, 5, 6)], float32=[(12, 64, 128)]),
    Case("affine last axis", lambda: L.affine(5, flatten=False), [(1, 1, 3), (2, 4, 3), (2, 3, 2, 4)],
         float32=[(12, 64, 128)]),
    Case("affine no bias", lambda: L.affine(4, bias=False), [(1, 3), (3, 2, 2)], float32=[(100, 50)]),
    Case("multi_head_attention", lambda: L.multi_head_attention(2), [(1, 1, 4), (2, 5, 4)],
         float32=[(12, 64, 128)]),
    Case("multi_head_attention causal", lambda: L.multi_head_attention(4, causal=True),
         [(1, 1, 8), (1, 6, 8), (3, 5, 4)], float32=[(12, 64, 128)]),
    Case("multi_head_attention one head causal", lambda: L.multi_head_attention(1, causal=True),
         [(1, 1, 3), (2, 4, 3)]),
    Case("multi_head_attention three heads", lambda: L.multi_head_attention(3), [(2, 4, 6)]),
    Case("multi_head_attention dropout", lambda: L.multi_head_attention(2, causal=True, dropout=0.3),
         [(2, 5, 4)], eval_mode=[(2, 5, 4)]),
    Case("transformer_block", lambda: fnet.models.transformer_block(8, 2), [(1, 1, 8), (2, 5, 8)]),
    Case("tied_embedding", lambda: fnet.tied_embedding(L.embedding(9, 4), fnet.sequential(
        L.positional_embedding(6), L.layer_norm(), L.affine(4, flatten=False))), [(1, 1), (2, 5)],
         x_fn=ids(9)),
    Case("gpt", lambda: fnet.models.gpt(11, 8, layers=2, heads=2, dim=8), [(1, 8), (2, 8)], x_fn=ids(11)),
    Case("gpt prompt shorter than the context", lambda: fnet.models.gpt(11, 8, layers=1, heads=4, dim=8),
         [(2, 3), (1, 1)], x_fn=ids(11)),
    Case("gpt untied", lambda: fnet.models.gpt(11, 8, layers=2, heads=2, dim=8, tie_weights=False), [(2, 6)],
         x_fn=ids(11)),
    Case("gpt dropout", lambda: fnet.models.gpt(11, 8, layers=2, heads=2, dim=8, dropout=0.2), [(2, 6)],
         eval_mode=[(2, 6)], x_fn=ids(11)),
    Case("gpt nanogpt shapes", lambda: fnet.models.gpt(65, 64), float32=[(2, 64)], x_fn=ids(65)),
    # the second book's chapters 7 and 8: attention over an encoder (two inputs, x = (a, b)), and the
    # encoder-decoder models on pairs of ids: batch 1, source and target of different lengths, a
    # target of one step; float32 at the book's sizes (addition: 7 -> 4, hidden 128; dates: 29 -> 10)
    Case("attention_weight", L.attention_weight, [((1, 3, 4), (1, 4)), ((2, 5, 3), (2, 3))],
         float32=[((128, 29, 256), (128, 256))]),
    Case("weight_sum", L.weight_sum, [((1, 3, 4), (1, 3)), ((2, 5, 3), (2, 5))],
         float32=[((128, 29, 256), (128, 29))]),
    Case("time_attention", L.time_attention, [((1, 3, 4), (1, 2, 4)), ((2, 5, 3), (2, 4, 3)),
                                              ((2, 1, 3), (2, 1, 3))],
         float32=[((32, 29, 256), (32, 10, 256))]),
    Case("seq2seq", lambda: fnet.models.seq2seq(9, 4, 5),
         [((1, 3), (1, 2)), ((2, 7), (2, 4)), ((2, 2), (2, 1))], x_fn=pair_of(ids(9), ids(9))),
    Case("seq2seq peeky", lambda: fnet.models.seq2seq(9, 4, 5, peeky=True),
         [((1, 3), (1, 2)), ((2, 7), (2, 4))], x_fn=pair_of(ids(9), ids(9))),
    Case("seq2seq peeky book", lambda: fnet.models.seq2seq(13, 16, 128, peeky=True),
         float32=[((128, 7), (128, 4))], x_fn=pair_of(ids(13), ids(13))),
    Case("attention_seq2seq", lambda: fnet.models.attention_seq2seq(9, 4, 5),
         [((1, 3), (1, 2)), ((2, 7), (2, 4)), ((2, 1), (2, 3))], x_fn=pair_of(ids(9), ids(9))),
    Case("attention_seq2seq book", lambda: fnet.models.attention_seq2seq(59, 16, 256),
         float32=[((32, 29), (32, 10))], x_fn=pair_of(ids(59), ids(59))),
    Case("two_layer_net", lambda: fnet.two_layer_net(12, 6, 3, weight_init_std=0.5),
         [(1, 12), (5, 12), (2, 3, 4)]),
    Case("two_layer_net book", lambda: fnet.two_layer_net(784, 50, 10), float32=[(100, 784)]),
    # whole networks take seconds each to compile: one or two shapes apiece
    Case("multi_layer_net", lambda: multi_layer_net(6, [5, 4], 3), [(1, 6), (2, 2, 3)]),
    # batch norm on (N, C) cannot train on a batch of 1 (it raises); on a batch of 2 its
    # output is +-1 whatever the input, and the gradient before it vanishes: batch >= 3
    Case("multi_layer_net batchnorm dropout",
         lambda: multi_layer_net(6, [5], 3, activation="tanh", use_batchnorm=True, use_dropout=True,
                                 dropout_rate=0.3),
         [(3, 6), (4, 2, 3)], eval_mode=[(1, 6)]),
    Case("simple_convnet", lambda: simple_convnet((10, 10, 1), dict(filters=3, kernel_size=3), hidden_size=5,
                                                  output_size=4, weight_init_std=0.3),
         [(1, 10, 10, 1), (3, 10, 10, 1)]),
    Case("simple_convnet book", simple_convnet, float32=[(100, 28, 28, 1)]),
    # batch norm per channel on NHWC; layer norm over 4 features (over 2 it is degenerate: +-1)
    Case("convnet batchnorm dropout",
         lambda: fnet.sequential(L.conv2d(3, 3, padding=1), L.batch_norm(), L.relu(), L.max_pool2d(2),
                                 L.dropout(0.25), L.conv2d(4, 2), L.avg_pool2d(2, stride=1), L.layer_norm(),
                                 L.affine(3)),
         [(1, 6, 6, 2)], eval_mode=[(1, 6, 6, 2)]),
]

LOSS_CASES = [
    Case("softmax_cross_entropy", lambda: losses.softmax_cross_entropy,
         [((1, 4), "labels"), ((5, 3), "labels"), ((6, 10), "one_hot"), ((4, 5), "probs"),
          # sequences (N, T, C), the mean over every position; padding by a mask or a label
          ((2, 5, 4), "labels"), ((1, 1, 3), "labels"), ((3, 4, 6), "one_hot"), ((2, 5, 4), "labels+mask"),
          ((3, 6, 5), "labels+ignore"), ((4, 3), "labels+ignore"), ((2, 3, 4), "probs+mask"),
          # label smoothing: the target (1 - eps) t + eps / C
          ((5, 3), "labels+smooth"), ((4, 6), "one_hot+smooth"), ((2, 5, 4), "labels+mask+smooth"),
          ((3, 6, 5), "labels+ignore+smooth")],
         float32=[((100, 10), "labels"), ((100, 10), "one_hot"), ((32, 50, 100), "labels+ignore"),
                  ((128, 10), "labels+smooth")],
         kind="loss"),
    Case("mean_squared_error", lambda: losses.mean_squared_error,
         [((1, 4), "one_hot"), ((5, 3), "real"), ((7, 10), "probs")],
         float32=[((100, 10), "one_hot")], kind="loss"),
]

_BINARY = [(((), ()), (), False), (((3,), (3,)), (), False), (((2, 3), (3,)), (), False),
           (((4, 1), (1, 5)), (), False)]
NODE_CASES = [  # (input shapes, static args, positive inputs only)
    Case("mul", lambda: graph.mul, _BINARY, kind="node"),
    Case("add", lambda: graph.add, _BINARY, kind="node"),
    Case("inverse", lambda: graph.inverse, [(((),), (), True), (((4,),), (), True), (((2, 3),), (), True)],
         kind="node"),
    Case("exp", lambda: graph.exp, [(((),), (), False), (((4,),), (), False), (((2, 3),), (), False)],
         kind="node"),
    Case("log", lambda: graph.log, [(((),), (), True), (((4,),), (), True), (((2, 3),), (), True)],
         kind="node"),
    Case("repeat", lambda: graph.repeat, [(((),), (3,), False), (((4,),), (1,), False),
                                          (((2, 3),), (5,), False)], kind="node"),
    Case("sum", lambda: graph.sum, [(((1,),), (), False), (((4,),), (), False), (((5, 2, 3),), (), False)],
         kind="node"),
]
# ----------------------------------------------------------------------------- end of THE LIST

CASES = LAYER_CASES + LOSS_CASES + NODE_CASES
TOLERANCE = {"shapes": TOL64, "float32": TOL32, "eval_mode": TOL64}


def _ids(arg) -> str:
    if isinstance(arg, tuple) and arg and isinstance(arg[-1], str):  # a loss: (shape, targets kind)
        return f"{_ids(arg[0])}-{arg[1]}"
    if isinstance(arg, tuple) and len(arg) == 3 and isinstance(arg[0], tuple) and isinstance(arg[2], bool):
        return "-".join(map(_ids, arg[0]))  # a node: (input shapes, static, positive)
    if arg and all(isinstance(a, tuple) for a in arg):  # two inputs: the pair of shapes
        return "-".join(map(_ids, arg))
    return "x".join(map(str, arg)) or "scalar"


def _params(column: str):
    return [pytest.param(case, arg, id=f"{case.name}-{_ids(arg)}")
            for case in CASES for arg in getattr(case, column)]


def _assert_close(errors, tol):
    assert errors, "nothing was compared"
    bad = {k: v for k, v in errors.items() if not v <= tol}
    assert not bad, f"handwritten backward differs from autodiff (tol {tol:g}): {bad}"


@pytest.mark.parametrize("case,arg", _params("shapes"))
def test_backward_equals_vjp_float64(case, arg):
    _assert_close(case.check(arg, "shapes"), TOLERANCE["shapes"])


@pytest.mark.parametrize("case,arg", _params("float32"))
def test_backward_equals_vjp_float32(case, arg):
    _assert_close(case.check(arg, "float32"), TOLERANCE["float32"])


@pytest.mark.parametrize("case,arg", _params("eval_mode"))
def test_backward_equals_vjp_eval_mode(case, arg):
    _assert_close(case.check(arg, "eval_mode"), TOLERANCE["eval_mode"])


# ----------------------------------------------------------------------------- the list is complete


def _kinds(cases, column=None):
    """The layer kinds (``Layer.name``) or names of the cases that have checks in ``column``."""
    built = [(c, c.build()) for c in cases if column is None or getattr(c, column)]
    return {getattr(thing, "name", c.name) for c, thing in built}


def test_every_layer_is_listed_in_every_column():
    public = set(L.__all__)
    for column in ("shapes", "float32"):
        missing = sorted(public - _kinds(LAYER_CASES, column))
        assert not missing, f"add {column} checks of these layers to LAYER_CASES in {__file__}: {missing}"
    no_eval = [c.name for c in LAYER_CASES if "train" in c.build().uses and not c.eval_mode]
    assert not no_eval, f"these cases behave differently in evaluation; give them eval_mode: {no_eval}"


COMBINATORS = ("sequential", "residual", "parallel", "time_distributed", "tied_embedding")


def test_every_combinator_is_listed():
    public = {n for n in fnet.__all__ if n in COMBINATORS}
    assert public == set(COMBINATORS), "a new combinator of fnet: add it to COMBINATORS and LAYER_CASES"
    missing = sorted(set(COMBINATORS) - _kinds(LAYER_CASES, "shapes"))
    assert not missing, f"add float64 checks of these combinators to LAYER_CASES: {missing}"
    with_modes = {c.build().name for c in LAYER_CASES if c.eval_mode}
    assert {"residual", "parallel", "time_distributed"} <= with_modes, (
        "check batch norm and dropout inside branches in eval mode")


def test_every_loss_is_listed_in_every_column():
    public = {n for n in dir(losses) if isinstance(getattr(losses, n), fnet.Loss)}
    assert {c.name for c in LOSS_CASES} == public, f"LOSS_CASES must list exactly {sorted(public)}"
    assert all(c.shapes and c.float32 for c in LOSS_CASES)
    assert all(c.build() is getattr(losses, c.name) for c in LOSS_CASES)


def test_every_node_is_listed():
    assert {c.build().name for c in NODE_CASES} == {n.name for n in graph.NODES}
    assert all(c.build() is getattr(graph, c.name) for c in NODE_CASES)


def test_case_names_are_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
