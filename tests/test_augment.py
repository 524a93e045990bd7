"""Augmentation on the device: a flip is a flip, a crop shifts the content, same key same batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from harness import rand

import fnet
from fnet import losses, optim, train
from fnet.train import augment


def test_flip_mirrors_exactly_the_chosen_images():
    x = rand((64, 5, 7, 2), dtype=jnp.float32)
    y = augment.random_flip(jax.random.key(0), x)
    flipped = [bool(np.array_equal(y[i], x[i, :, ::-1])) for i in range(64)]
    kept = [bool(np.array_equal(y[i], x[i])) for i in range(64)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))  # each image one or the other
    assert 16 < sum(flipped) < 48  # about half


def test_crop_shifts_the_content_and_fills_with_zeros():
    x = jnp.arange(1, 1 + 32 * 6 * 6, dtype=jnp.float32).reshape(32, 6, 6, 1)
    pad = 2
    y = augment.random_crop(jax.random.key(1), x, pad)
    assert y.shape == x.shape
    shifts = set()
    for i in range(32):
        padded = np.pad(np.asarray(x[i]), ((pad, pad), (pad, pad), (0, 0)))
        found = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                 if np.array_equal(padded[dy:dy + 6, dx:dx + 6], y[i])]
        assert len(found) == 1, i  # exactly one shift of the image, zeros where it moved in
        shifts.add(found[0])
    assert len(shifts) > 5  # drawn per image


def test_same_key_same_batch_and_the_spec_round_trips():
    aug = augment.parse("crop,flip")
    assert str(aug) == "crop:2,flip" and augment.parse(["crop:3"]) == augment.Augment((("crop", 3),))
    x = rand((8, 6, 6, 1), dtype=jnp.float32)
    np.testing.assert_array_equal(aug(jax.random.key(4), x), aug(jax.random.key(4), x))
    assert not np.array_equal(aug(jax.random.key(4), x), aug(jax.random.key(5), x))
    assert augment.parse(None) is None


@pytest.mark.parametrize("spec,error,message", [
    ("rotate", ValueError, "unknown augmentation 'rotate'"),
    ("crop,crop", ValueError, "given twice"),
    ("crop:0", ValueError, "crop:P needs a whole number of pixels P >= 1"),
    ("flip:1", ValueError, "flip takes no argument"),
    ("", ValueError, "has an empty step"),
    ("crop,", ValueError, "has an empty step"),
    ([], ValueError, "names no step"),
    (3, TypeError, "augment must be a string"),
])
def test_bad_specs(spec, error, message):
    with pytest.raises(error, match=message):
        augment.parse(spec)


def test_fit_augments_deterministically_and_checks_the_inputs(fashion_small):
    (x, t), (xt, tt) = fashion_small
    x, xt = x[:400].reshape(-1, 28, 28, 1), xt[:200].reshape(-1, 28, 28, 1)
    net = fnet.simple_convnet(conv={"filters": 4})

    def run(**kw):
        return train.fit(net, losses.softmax_cross_entropy, optim.sgd(0.05), (x, t[:400]), (xt, tt[:200]),
                         epochs=1, batch_size=50, log=None, **kw)

    a, b, plain = run(augment="crop,flip"), run(augment="crop,flip"), run()
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.array_equal(a.params["Conv1"]["W"], plain.params["Conv1"]["W"])
    flat = fashion_small[0][0][:400]
    with pytest.raises(ValueError, match=r"augment='crop:2,flip' transforms images .*\(400, 784\)"):
        train.fit(fnet.two_layer_net(784, 10, 10), losses.softmax_cross_entropy, optim.sgd(0.1),
                  (flat, t[:400]), epochs=1, log=None, augment="crop,flip")
    with pytest.raises(ValueError, match="crop:30 shifts by more than the image"):
        run(augment="crop:30")
