"""Combinators: functions of layers that are layers. ``sequential`` chains them; ``residual`` and
``parallel`` branch; ``time_distributed`` maps one over time.

``sequential`` is a chain. ``residual`` and ``parallel`` let a value **fan out** to several
layers and the branches **merge** again, and their backward rules are the
lesson of chapter 5 applied to whole layers:

- where a value fans out (the book's ``repeat`` node), its gradients **add up**:
  ``dx = dx_branch_0 + dx_branch_1 + ...``;
- where branches meet in a sum (the ``add`` node), the gradient passes to each
  **unchanged**: every branch gets ``dout``;
- where they are concatenated, the gradient is **split**: each branch gets its
  own slice of ``dout``.

Every combinator routes ``key``, ``train`` and ``state`` the same way
(``docs/design.md``), with the helpers of ``fnet.core``: a child gets the mode, the
key ``fold_in(key, i)`` for its position ``i``, and its own entry of the state dict;
each checks every child's ``dparams`` and ``dx`` at trace time and lists its
``children`` and ``wiring`` for ``fnet.summary`` and ``fnet.views.draw_network``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fnet.core import (
    Cache,
    Layer,
    Params,
    Shape,
    Static,
    back_child,
    check_child_params,
    check_child_state,
    check_context,
    check_dout,
    check_shape,
    concat_shape,
    fold_time,
    guard,
    keyed_children,
    output_shape,
    run_child,
    unfold_time,
)
from fnet.errors import ShapeError, shape_str

__all__ = ["MERGES", "parallel", "residual", "sequential", "tied_embedding", "time_distributed"]

MERGES = ("concat", "sum")


def sequential(*layers: Layer | tuple[str, Layer]) -> Layer:
    """Compose layers; the result is itself a ``Layer`` (so sequentials nest).

    Each argument is a layer, keyed by its name and a per-name counter
    (``affine_0``, ``relu_0``, ``affine_1``), or a ``(key, layer)`` pair that
    names it explicitly (``("Affine1", affine(50))``). ``params`` is a dict
    from those keys to each layer's params, so ``params["affine_0"]["W"]``.

    The result uses the union of what its layers use: it passes a random key
    (split per layer with ``fold_in`` of the layer's position), the mode and
    each layer's own slice of the state, and collects the new state.

    Shapes and structures are checked at trace time: a ``dparams`` or ``dx``
    returned by a layer's backward with the wrong structure or shape raises
    ``ShapeError`` naming that layer.
    """
    if not layers:
        raise ValueError("sequential() needs at least one layer")
    children = keyed_children("sequential", layers)
    keys = [k for k, _ in children]
    uses = frozenset().union(*(c.uses for _, c in children))
    stateful = [k for k, c in children if "state" in c.uses]

    def init(rng: jax.Array, input_shape: Shape):
        shape = check_shape(input_shape, "sequential")
        rngs = jax.random.split(rng, len(children))
        params = {}
        for (k, child), r in zip(children, rngs, strict=True):
            params[k], shape = guard(k, child.init, r, shape)
        return params, shape

    def init_state(input_shape: Shape):
        shape = check_shape(input_shape, "sequential")
        state = {}
        for k, child in children:
            if "state" in child.uses:
                state[k] = guard(k, child.init_state, shape)
            shape = guard(k, output_shape, child, shape)
        return state

    def forward(params: Params, x: jax.Array, **ctx):
        check_context("sequential", uses, ctx)
        check_child_params("sequential", params, keys)
        if "state" in uses:
            check_child_state("sequential", ctx["state"], stateful)
        ctx = {"key": None, **ctx}
        caches, specs, new_state = [], [], {}
        for i, (k, child) in enumerate(children):
            x, cache, s, spec = run_child(k, i, child, params[k], x, ctx)
            if "state" in child.uses:
                new_state[k] = s
            caches.append(cache)
            specs.append(spec)
        out = (x, (tuple(caches), Static((tuple(specs), jax.numpy.shape(x)))))
        return (*out, new_state) if "state" in uses else out

    def backward(cache: Cache, dout: jax.Array):
        caches, static = cache
        specs, y_shape = static.value
        check_dout("sequential", dout, y_shape)
        grads = {}
        for (k, child), c, spec in reversed(list(zip(children, caches, specs, strict=True))):
            grads[k], dout = back_child(k, child, c, dout, spec)
        return {k: grads[k] for k in keys}, dout

    def wiring(ops, x):
        for k in keys:
            x = ops.call(k, x)
        return x

    return Layer("sequential", init, forward, backward, uses=uses,
                 init_state=init_state if stateful else None, children=children, wiring=wiring)


def _branches(name: str, children, *, merge_shapes, merge, split):
    """The Layer of branches that all read the same input and whose outputs ``merge``.

    ``merge_shapes(shapes) -> shape`` checks the output shapes at init,
    ``merge(ys) -> y`` joins the outputs and ``split(dout, shapes) -> douts``
    is its backward. ``children`` are ``(key, layer)`` pairs; the identity
    branch of a residual is ``(key, None)``: it passes ``x`` on, and ``dout`` back.
    """
    layers = [(i, k, c) for i, (k, c) in enumerate(children) if c is not None]
    uses = frozenset().union(*(c.uses for _, _, c in layers))
    stateful = [k for _, k, c in layers if "state" in c.uses]
    param_keys = [k for _, k, _ in layers]

    def init(rng: jax.Array, input_shape: Shape):
        shape = check_shape(input_shape, name)
        rngs = jax.random.split(rng, len(children))
        params, shapes = {}, []
        for (k, child), r in zip(children, rngs, strict=True):
            if child is None:
                shapes.append(shape)
                continue
            params[k], out = guard(k, child.init, r, shape)
            shapes.append(out)
        return params, merge_shapes(shapes)

    def init_state(input_shape: Shape):
        shape = check_shape(input_shape, name)
        return {k: guard(k, c.init_state, shape) for _, k, c in layers if "state" in c.uses}

    def forward(params, x, **ctx):
        check_context(name, uses, ctx)
        check_child_params(name, params, param_keys)
        if "state" in uses:
            check_child_state(name, ctx["state"], stateful)
        ctx = {"key": None, **ctx}
        ys, caches, specs, new_state = [], [], [], {}
        for i, (k, child) in enumerate(children):
            if child is None:  # the identity shortcut: x itself, nothing to cache
                ys.append(x)
                caches.append(None)
                specs.append(None)
                continue
            # fan-out: every branch reads the same x
            y, cache, s, spec = run_child(k, i, child, params[k], x, ctx)
            if "state" in child.uses:
                new_state[k] = s
            ys.append(y)
            caches.append(cache)
            specs.append(spec)
        shapes = tuple(jnp.shape(y) for y in ys)
        merge_shapes(shapes)  # the same check as at init, for params made elsewhere
        y = merge(ys)
        out = (y, (tuple(caches), Static((tuple(specs), shapes, jnp.shape(y)))))
        return (*out, new_state) if "state" in uses else out

    def backward(cache, dout):
        caches, static = cache
        specs, shapes, y_shape = static.value
        check_dout(name, dout, y_shape)
        # the merge's backward: each branch's share of dout (all of it for a sum, a slice for concat)
        douts = split(dout, shapes)
        grads, dx = {}, None
        for (k, child), c, spec, d in reversed(list(zip(children, caches, specs, douts, strict=True))):
            if child is None:
                dx_k = d  # the identity's backward passes dout on unchanged
            else:
                grads[k], dx_k = back_child(k, child, c, d, spec)
            # the fan-out's backward (the repeat node): x went to every branch, its gradients add up
            dx = dx_k if dx is None else dx + dx_k
        return {k: grads[k] for k in param_keys}, dx

    def wiring(ops, x):
        ys = [x if child is None else ops.call(k, x) for k, child in children]
        return ops.add(*ys) if merge is _sum else ops.concat(*ys)

    return Layer(name, init, forward, backward, uses=uses, init_state=init_state if stateful else None,
                 children=tuple((k, c) for _, k, c in layers), wiring=wiring)


def _sum(ys):
    y = ys[0]
    for other in ys[1:]:
        y = y + other
    return y


def _pass_to_each(dout, shapes):
    return [dout] * len(shapes)


def _concat(ys):
    return jnp.concatenate(ys, axis=-1)


def _split(dout, shapes):
    ends = []
    for s in shapes:
        ends.append((ends[-1] if ends else 0) + s[-1])
    return jnp.split(dout, ends[:-1], axis=-1)


def residual(body: Layer, shortcut: Layer | None = None) -> Layer:
    """``y = body(x) + shortcut(x)``: a residual block (He et al. 2015).

    **Shapes:** ``x`` goes to both paths; ``body(x)`` and ``shortcut(x)`` must
    have the same shape, which is ``y``'s. The shortcut is the identity unless
    given, e.g. a 1x1 ``conv2d`` with stride 2 (and batch norm) where the body
    halves the image and changes the channels, or an ``affine`` for features.

    **Params:** ``{"body": ..., "shortcut": ...}`` (``"shortcut"`` only when one
    is given); a network state likewise, for the paths that keep one.

    **Cache:** each path's cache and the shapes (``Static``).

    **Derivative:** the sum passes ``dout`` to both paths unchanged (add node);
    ``x`` fanned out to both, so ``dx = dx_body + dx_shortcut`` (repeat node),
    with ``dx_shortcut = dout`` for the identity. That is why a deep residual
    net trains: every block's input receives the gradient of the output directly.

    **Raises:** ``ShapeError`` at init when the paths' shapes differ, naming
    both and the fix (``shortcut=``).
    """
    if not isinstance(body, Layer):
        raise TypeError(f"residual: body must be a Layer, got {body!r}")
    if shortcut is not None and not isinstance(shortcut, Layer):
        raise TypeError(f"residual: shortcut must be a Layer or None (the identity), got {shortcut!r}")

    def merge_shapes(shapes):
        b, s = shapes
        if tuple(b) != tuple(s):
            what = "the shortcut gives" if shortcut is not None else "the identity shortcut passes x on as"
            raise ShapeError("residual", f"the body gives shape {shape_str(b)} but {what} "
                                         f"{shape_str(s)}; they are added, so they must match. Give a "
                                         "projection shortcut=, e.g. conv2d(C_out, 1, stride) for images "
                                         "or affine(features) for vectors")
        return b

    return _branches("residual", (("body", body), ("shortcut", shortcut)), merge_shapes=merge_shapes,
                         merge=_sum, split=_pass_to_each)


def parallel(*branches: Layer | tuple[str, Layer], merge: str = "concat") -> Layer:
    """Branches that all read the same input, merged by ``"concat"`` or ``"sum"``.

    **Shapes:** every branch gets ``x``. ``"concat"`` joins the outputs along
    the last axis (features of ``(N, F)``, channels of NHWC images): they must
    agree on every other axis, and ``y`` has the sum of their last axes.
    ``"sum"`` adds them: they must have the same shape.

    **Params:** a dict keyed like ``sequential``'s children: kind and counter
    (``affine_0``, ``affine_1``), or explicit ``(key, layer)`` pairs.

    **Cache:** each branch's cache and the output shapes (``Static``).

    **Derivative:** the merge's backward gives each branch its share of
    ``dout``: its slice for ``"concat"`` (``jnp.split`` at the branch widths),
    all of it for ``"sum"``; then, as at every fan-out, ``dx`` is the sum of
    the branches' ``dx``.

    **Raises:** ``ShapeError`` at init when branch shapes cannot merge, naming
    each branch and its shape.
    """
    if not branches:
        raise ValueError("parallel() needs at least one branch")
    if merge not in MERGES:
        raise ValueError(f"parallel: merge must be one of {MERGES}, got {merge!r}")
    children = keyed_children("parallel", branches)

    def listing(shapes):
        return ", ".join(f"{k} {shape_str(s)}" for (k, _), s in zip(children, shapes, strict=True))

    def merge_shapes(shapes):
        shapes = [tuple(s) for s in shapes]
        if merge == "sum":
            if any(s != shapes[0] for s in shapes):
                raise ShapeError("parallel", f"merge='sum' adds the branches, so their shapes must be equal; "
                                             f"got {listing(shapes)}")
            return shapes[0]
        if any(len(s) < 2 for s in shapes) or any(s[:-1] != shapes[0][:-1] for s in shapes):
            raise ShapeError("parallel", f"merge='concat' joins the branches along the last axis, so they "
                                         f"must have at least 2 axes and agree on all but the last; got "
                                         f"{listing(shapes)}")
        return concat_shape(shapes)

    if merge == "sum":
        return _branches("parallel", children, merge_shapes=merge_shapes, merge=_sum, split=_pass_to_each)
    return _branches("parallel", children, merge_shapes=merge_shapes, merge=_concat, split=_split)



def time_distributed(layer: Layer | tuple[str, Layer]) -> Layer:
    """``layer`` applied to every time step of a sequence: the book's sequel's ``TimeAffine``
    is ``time_distributed(affine(V))``.

    **Shapes:** ``x: (N, T, ...)`` is folded to ``(N * T, ...)`` (time joins the
    batch: every step is one more example), ``layer`` runs once on that, and its
    output ``(N * T, ...)`` is unfolded to ``(N, T, ...)``. Any layer fits, a
    ``sequential`` too; one whose statistics are per batch (batch norm) takes
    them over all ``N * T`` steps.

    **Params:** ``{key: layer's params}``, the key as ``sequential`` would give it
    (``affine_0``), or a ``(key, layer)`` pair's; a state likewise.

    **Cache:** the layer's cache and the shapes (``Static``).

    **Derivative:** a reshape is a relabelling of the same numbers, so backward
    folds ``dout`` the same way, runs the layer's backward, and unfolds ``dx``;
    the parameters' gradients are the layer's, summed over ``N * T`` examples as
    its own backward sums over a batch.
    """
    ((k, child),) = keyed_children("time_distributed", (layer,))
    stateful = [k] if "state" in child.uses else []

    def folded(shape, where="init"):
        if len(shape) < 2:
            raise ShapeError("time_distributed", f"expected a sequence (N, T, ...), got {where} shape "
                                                 f"{shape_str(shape)}")
        return fold_time(shape)

    def on_steps(shape, fn, *args):
        """``fn(*args)`` on the folded steps; when the child refuses a step of a 2-D input, the input
        was no sequence of the child's inputs: say so, in time_distributed's terms."""
        try:
            return guard(k, fn, *args)
        except ShapeError as e:
            if len(shape) != 2:
                raise
            raise ShapeError("time_distributed",
                             f"input of shape {shape_str(shape)} is no sequence of {child.name} inputs: "
                             f"time_distributed reads (N, T, ...) and gives each time step, here a "
                             f"scalar, to {k} ({child.name}), which refuses a scalar. Pass (N, T, features), "
                             "e.g. x[..., None] for one feature per step") from e

    def init(rng: jax.Array, input_shape: Shape):
        shape = check_shape(input_shape, "time_distributed")
        params, out = on_steps(shape, child.init, rng, folded(shape))
        return {k: params}, unfold_time(shape, out)

    def init_state(input_shape: Shape):
        shape = check_shape(input_shape, "time_distributed")
        return {k: on_steps(shape, child.init_state, folded(shape))}

    def forward(params, x, **ctx):
        check_context("time_distributed", child.uses, ctx)
        check_child_params("time_distributed", params, [k])
        if stateful:
            check_child_state("time_distributed", ctx["state"], stateful)
        x_shape = jnp.shape(x)
        y, cache, s, spec = on_steps(x_shape, run_child, k, 0, child, params[k],
                                     jnp.reshape(x, folded(x_shape, "an input of")), {"key": None, **ctx})
        y = jnp.reshape(y, unfold_time(x_shape, jnp.shape(y)))
        out = (y, (cache, Static((spec, jnp.shape(y), x_shape))))
        return (*out, {k: s}) if stateful else out

    def backward(cache, dout):
        cache, static = cache
        spec, y_shape, x_shape = static.value
        check_dout("time_distributed", dout, y_shape)
        dparams, dx = back_child(k, child, cache, jnp.reshape(dout, (-1, *y_shape[2:])), spec)
        return {k: dparams}, jnp.reshape(dx, x_shape)

    def wiring(ops, x):
        return ops.each_step(k, x)

    return Layer("time_distributed", init, forward, backward, uses=child.uses,
                 init_state=init_state if stateful else None, children=((k, child),), wiring=wiring)


def tied_embedding(embedding: Layer, body: Layer) -> Layer:
    """A language model whose output layer is its input embedding, transposed (weight tying, Press and
    Wolf 2017; GPT-2's ``lm_head``): ``y = body(embedding(ids)) W^T``, ``W`` the embedding's table.

    **Shapes:** ids ``(N, T)`` -> ``embedding`` -> ``(N, T, D)`` -> ``body`` -> ``(N, T, D)`` ->
    scores ``(N, T, V)`` for a table ``W: (V, D)``; the body must keep the width ``D``.

    **Params:** ``{"embedding": {"W"}, "body": ...}``: the output layer has none of its own; a state
    likewise, for a body that keeps one.

    **Cache:** both children's caches, the body's output ``h`` and the table.

    **Derivative:** the output layer is an affine map without bias, so ``dh = dy W`` and its share
    of the table's gradient is ``dy^T h``. ``W`` is used twice, by the lookup at the input and
    by the output layer: as at the ``repeat`` node of chapter 5, its gradient is the **sum of
    its two uses**, ``dW = dW_lookup + dy^T h``.
    """
    if not isinstance(embedding, Layer) or embedding.name != "embedding":
        raise TypeError(f"tied_embedding: the first argument must be an embedding layer "
                        f"(layers.embedding), whose table the output layer reuses; got {embedding!r}")
    if not isinstance(body, Layer):
        raise TypeError(f"tied_embedding: body must be a Layer, got {body!r}")
    children = (("embedding", embedding), ("body", body))
    stateful = ["body"] if "state" in body.uses else []

    def init(rng: jax.Array, input_shape: Shape):
        shape = check_shape(input_shape, "tied_embedding")
        k_emb, k_body = jax.random.split(rng)
        emb, e_shape = guard("embedding", embedding.init, k_emb, shape)
        params, h_shape = guard("body", body.init, k_body, e_shape)
        if tuple(h_shape) != tuple(e_shape):
            raise ShapeError("tied_embedding", f"the body turns the embeddings {shape_str(e_shape)} into "
                                               f"{shape_str(h_shape)}, but the output layer multiplies by "
                                               "the table transposed, so the body must keep their shape")
        return {"embedding": emb, "body": params}, (*h_shape[:-1], emb["W"].shape[0])

    def init_state(input_shape: Shape):
        e_shape = output_shape(embedding, check_shape(input_shape, "tied_embedding"))
        return {"body": guard("body", body.init_state, e_shape)}

    def forward(params, x, **ctx):
        check_context("tied_embedding", body.uses, ctx)
        check_child_params("tied_embedding", params, ["embedding", "body"])
        if stateful:
            check_child_state("tied_embedding", ctx["state"], stateful)
        ctx = {"key": None, **ctx}
        e, c_emb, _, s_emb = run_child("embedding", 0, embedding, params["embedding"], x, {})
        h, c_body, new_state, s_body = run_child("body", 1, body, params["body"], e, ctx)
        W = params["embedding"]["W"]
        y = h @ W.T  # the output layer: the table, transposed
        out = (y, (c_emb, c_body, h, W, Static((s_emb, s_body, jnp.shape(y)))))
        return (*out, {"body": new_state}) if stateful else out

    def backward(cache, dout):
        c_emb, c_body, h, W, static = cache
        s_emb, s_body, y_shape = static.value
        check_dout("tied_embedding", dout, y_shape)
        d = W.shape[1]
        dW_head = dout.reshape(-1, W.shape[0]).T @ h.reshape(-1, d)  # the output layer's use of W
        dh = dout @ W
        dbody, de = back_child("body", body, c_body, dh, s_body)
        demb, dx = back_child("embedding", embedding, c_emb, de, s_emb)
        # W fanned out to the lookup and to the output layer: its gradients add up (the repeat node)
        return {"embedding": {"W": demb["W"] + dW_head}, "body": dbody}, dx

    def wiring(ops, x):
        return ops.transposed("embedding", ops.call("body", ops.call("embedding", x)))

    return Layer("tied_embedding", init, forward, backward, uses=body.uses,
                 init_state=init_state if stateful else None, children=children, wiring=wiring)
