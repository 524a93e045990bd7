"""Checkpoints: round trip, atomic writes, and clear errors for a different architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fnet
from fnet import checkpoint, optim
from fnet.checkpoint import Checkpoint, CheckpointError


def _ckpt(hidden=50, opt=None):
    net = fnet.two_layer_net(784, hidden, 10)
    params, _ = net.init(jax.random.key(0), (None, 784))
    opt = opt or optim.adam()
    opt_state = opt.init(params)
    return net, Checkpoint(params, opt_state, None, jax.random.key(7), 3,
                           {"epoch": np.array([1, 2, 3]), "test_acc": np.array([0.5, 0.6, 0.7])},
                           {"model": "two_layer", "lr": 0.1})


def test_round_trip(tmp_path):
    net, ck = _ckpt()
    path = checkpoint.save(tmp_path / "a.npz", ck)
    back = checkpoint.load(path, params_like=ck.params, opt_state_like=ck.opt_state)
    saved, loaded = (ck.params, ck.opt_state), (back.params, back.opt_state)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(loaded), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert jax.tree.structure(back.opt_state) == jax.tree.structure(ck.opt_state)
    assert back.epoch == 3 and back.config == {"model": "two_layer", "lr": 0.1}
    np.testing.assert_array_equal(back.history["test_acc"], [0.5, 0.6, 0.7])
    assert jnp.array_equal(jax.random.key_data(back.key), jax.random.key_data(ck.key))
    assert np.array_equal(jax.random.normal(back.key, (3,)), jax.random.normal(ck.key, (3,)))
    assert checkpoint.read_config(path) == {"epoch": 3, "config": {"model": "two_layer", "lr": 0.1}}


def test_entries_are_named_by_path_and_no_pickle(tmp_path):
    _, ck = _ckpt()
    path = checkpoint.save(tmp_path / "a.npz", ck)
    with np.load(path, allow_pickle=False) as f:
        names = set(f.files)
    assert {"params/Affine1/W", "params/Affine2/b", "opt_state/m/Affine1/W", "opt_state/step", "key",
            "__meta__"} <= names


def test_write_is_atomic(tmp_path, monkeypatch):
    _, ck = _ckpt()
    path = checkpoint.save(tmp_path / "a.npz", ck)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    ck.epoch = 4
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, ck)
    assert path.read_bytes() == before  # the good checkpoint survives
    assert [p.name for p in tmp_path.iterdir()] == ["a.npz"]  # no temporary file left behind


def test_different_architecture_names_the_entry(tmp_path):
    _, ck = _ckpt(hidden=50)
    path = checkpoint.save(tmp_path / "a.npz", ck)
    net100, ck100 = _ckpt(hidden=100)
    with pytest.raises(CheckpointError, match=r"does not fit this network: params/Affine1/W has shape "
                                              r"\(784, 50\) in the file, but the network expects "
                                              r"\(784, 100\)"):
        checkpoint.load(path, params_like=ck100.params)
    deeper = fnet.sequential(("Affine1", fnet.layers.affine(50)), ("Relu1", fnet.layers.relu()),
                             ("Affine2", fnet.layers.affine(10)), ("Affine3", fnet.layers.affine(10)))
    params, _ = deeper.init(jax.random.key(0), (None, 784))
    with pytest.raises(CheckpointError, match=r"entry params/Affine3/W \(shape \(10, 10\)\) is missing"):
        checkpoint.load(path, params_like=params)
    smaller = {"Affine1": ck.params["Affine1"], "Relu1": {}}
    with pytest.raises(CheckpointError, match=r"the file has entries the network does not: params/Affine2/W"):
        checkpoint.load(path, params_like=smaller)


def test_different_optimizer_and_dtype(tmp_path):
    _, ck = _ckpt(opt=optim.momentum())
    path = checkpoint.save(tmp_path / "a.npz", ck)
    with pytest.raises(CheckpointError, match=r"entry opt_state/m/Affine1/W .* is missing"):
        checkpoint.load(path, params_like=ck.params, opt_state_like=optim.adam().init(ck.params))
    f64 = jax.tree.map(lambda a: a.astype(jnp.float64), ck.params)
    with pytest.raises(CheckpointError, match="params/Affine1/W has dtype float32 in the file, but the "
                                              "network expects float64"):
        checkpoint.load(path, params_like=f64)


def test_unreadable_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        checkpoint.load(tmp_path / "missing.npz", params_like={})
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a readable fnet checkpoint"):
        checkpoint.load(junk, params_like={})
    other = tmp_path / "other.npz"
    np.savez(other, x=np.ones(3))
    with pytest.raises(CheckpointError, match=r"not an fnet checkpoint \(no __meta__ entry\)"):
        checkpoint.load(other, params_like={})
