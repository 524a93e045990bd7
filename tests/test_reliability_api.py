"""Nothing silently wrong, part two, in the library: a validation set, ids and padding labels checked
against what the network and loss accept, errors that name the layer and both structures, checkpoint
errors that keep their class, the devices fit uses, and checkpoints that respect the umask."""

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from script_runner import ROOT

import fnet
from fnet import checkpoint, gradcheck, losses, optim, train
from fnet import layers as L
from fnet.train.stopping import SelectionWarning

CE = losses.softmax_cross_entropy


@pytest.fixture(scope="module")
def small(fashion_small):
    return fashion_small


def _fit(data, **kw):
    (xtr, ttr), test = data
    kw = {"epochs": 2, "batch_size": 100, "log": None, **kw}
    return train.fit(kw.pop("net", None) or fnet.two_layer_net(784, 20, 10), CE, optim.sgd(0.1), (xtr, ttr),
                     test, **kw)


# ----------------------------------------------------------------------------- a validation set


def test_val_fraction_holds_out_the_same_examples_for_the_same_seed(small):
    (x, t), _ = small
    a = train.checks.split_validation((x, t), None, 0.2, seed=3)
    b = train.checks.split_validation((x, t), None, 0.2, seed=3)
    c = train.checks.split_validation((x, t), None, 0.2, seed=4)
    (x_tr, _), (x_val, _) = a
    assert len(x_val) == 600 and len(x_tr) == 2400
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert not np.array_equal(a[1][0], c[1][0])
    # every example in exactly one of the two sets
    assert sorted(map(bytes, np.vstack([x_tr, x_val]))) == sorted(map(bytes, x))
    with pytest.raises(ValueError, match="give val_data= or val_fraction=, not both"):
        train.checks.split_validation((x, t), (x, t), 0.2, seed=0)
    with pytest.raises(ValueError, match=r"val_fraction is the share .* must be in \[0, 1\)"):
        _fit(small, val_fraction=1.5)


def test_the_validation_set_is_measured_chosen_on_and_shown(small, tmp_path):
    lines = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", SelectionWarning)  # choosing on validation: no warning
        r = _fit(small, epochs=4, val_fraction=0.2, keep_best=True, checkpoint=tmp_path / "run.npz",
                 callbacks=[train.early_stopping(patience=1)], log=lines.append)
    h = r.history
    assert np.isfinite(h["val_loss"]).all() and np.isfinite(h["val_acc"]).all()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert all("val loss " in line and "val acc " in line for line in epochs)
    best = int(np.argmax(h["val_acc"])) + 1  # keep_best=True chose on the validation accuracy
    assert checkpoint.read_config(checkpoint.best_path(tmp_path / "run.npz"))["epoch"] == best
    if r.stopped:
        assert r.stopped.startswith("val_loss has not improved")
    given = _fit(small, epochs=1, val_data=(small[0][0][:500], small[0][1][:500]))
    assert np.isfinite(given.history["val_acc"]).all()


def test_choosing_on_the_test_set_warns_and_says_why(small, tmp_path):
    chosen_on_test = (r"keep_best='test_acc' chooses the model on the test set, so the "
                      r"test figures .* are optimistic.*val_fraction")
    with pytest.warns(SelectionWarning, match=chosen_on_test):
        _fit(small, epochs=1, keep_best=True, checkpoint=tmp_path / "a.npz")
    with pytest.warns(SelectionWarning, match="early_stopping.*without a validation set"):
        _fit(small, epochs=1, callbacks=[train.early_stopping()])
    with pytest.warns(SelectionWarning, match=r"early_stopping\('test_loss'\)"):
        train.early_stopping("test_loss")


def test_a_resumed_run_of_an_older_checkpoint_gets_nan_for_the_sets_it_did_not_measure(small, tmp_path):
    path = tmp_path / "run.npz"
    _fit(small, epochs=1, checkpoint=path)
    ck = checkpoint.restore(path, fnet.two_layer_net(784, 20, 10), (None, 784), optimizer=optim.sgd(0.1))
    history = {k: v for k, v in ck.history.items() if not k.startswith("val_")}  # as before validation sets
    checkpoint.save(path, checkpoint.Checkpoint(ck.params, ck.opt_state, ck.state, ck.key, ck.epoch, history,
                                                ck.config))
    r = _fit(small, epochs=2, checkpoint=path, resume=True)
    assert len(r.history["val_loss"]) == 2 and np.isnan(r.history["val_loss"]).all()


# ----------------------------------------------------------------------------- what the data may hold


def test_ids_outside_the_embeddings_vocabulary_are_refused_in_every_set():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (40, 5)).astype(np.int32)
    t = rng.integers(0, 9, (40, 5)).astype(np.int32)
    bad = x.copy()
    bad[7, 3] = 9
    net = fnet.models.gpt(9, 5, layers=1, heads=1, dim=4)
    for kwargs, what in (({"train_data": (bad, t)}, "x_train"), ({"test_data": (bad, t)}, "x_test"),
                         ({"val_data": (bad, t)}, "x_val")):
        data = {"train_data": (x, t), **kwargs}
        with pytest.raises(ValueError, match=rf"fit: {what} has 1 ids outside 0..8 \(the embedding's "
                                             r"vocabulary of 9\), the first 9 at index 7\[3\]"):
            train.fit(net, CE, optim.sgd(0.1), epochs=1, batch_size=8, log=None, **data)


def test_padding_labels_pass_the_label_check_when_the_loss_ignores_them():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (40, 6)).astype(np.int32)
    t = rng.integers(0, 7, (40, 6)).astype(np.int32)
    t[:, -2:] = -100  # padding, as PyTorch's ignore_index
    net = fnet.models.gpt(7, 6, layers=1, heads=1, dim=4)
    padded = CE.with_options(ignore_index=-100)
    r = train.fit(net, padded, optim.adam(1e-2), (x, t), epochs=1, batch_size=8, log=None)
    assert np.isfinite(r.history["loss"]).all()
    with pytest.raises(ValueError, match=r"labels outside 0..6 or the loss's ignore_index -100"):
        t[0, 0] = -1
        train.fit(net, padded, optim.adam(1e-2), (x, t), epochs=1, batch_size=8, log=None)


def test_a_nan_in_a_sequence_losss_mask_is_refused():
    mask = np.ones((2, 3), np.float32)
    mask[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"mask holds 1 NaN or infinite weights, the first nan at position "
                                         r"\[1, 2\]; a mask weighs positions"):
        CE.with_options(mask=mask)
    with pytest.raises(ValueError, match="mask holds 1 NaN"):
        CE.forward(jnp.zeros((2, 3, 4)), jnp.zeros((2, 3), jnp.int32), mask=mask)


# --------------------------------------------------------------------------- errors that name the right thing


def test_params_of_the_wrong_structure_name_the_key_path_and_both_structures():
    net = fnet.residual(fnet.sequential(L.affine(4), L.relu(), L.affine(4)))
    params, _ = net.init(jax.random.key(0), (None, 4))
    del params["body"]["affine_1"]["b"]
    with pytest.raises(fnet.ShapeError, match=r"^body/affine_1 \(affine\): params do not match .* 'b' is in "
                                              r"the parameters affine makes but missing from params\. The "
                                              r"layer's parameters are \{'W': \(4, 4\), 'b': \(4,\)\}; got"):
        net.forward(params, jnp.ones((2, 4)))
    lstm_params, _ = L.lstm(3).init(jax.random.key(0), (None, 5, 2))
    with pytest.raises(fnet.ShapeError, match=r"^gru: params at 'Wh' has shape \(3, 12\), but the parameter "
                                              r"has shape \(3, 9\).*Were they made by init of another layer"):
        fnet.apply(L.gru(3), lstm_params, jnp.ones((2, 5, 2)))


def test_time_distributed_names_itself_and_the_sequence_it_needs():
    net = fnet.time_distributed(L.affine(3))
    message = (r"^time_distributed: input of shape \((N|2), (5|4)\) is no sequence of affine inputs: "
               r"time_distributed reads \(N, T, \.\.\.\).*Pass \(N, T, features\)")
    with pytest.raises(fnet.ShapeError, match=message):
        net.init(jax.random.key(0), (None, 5))
    params, _ = net.init(jax.random.key(0), (None, 5, 4))
    with pytest.raises(fnet.ShapeError, match=message):
        net.forward(params, jnp.ones((2, 4)))
    assert fnet.time_distributed(L.embedding(5, 3)).init(jax.random.key(0), (None, 7))[1] == (None, 7, 3)


def test_a_wiring_that_names_a_missing_child_is_named_and_summary_reads_ids():
    import dataclasses

    inner = fnet.sequential(L.affine(3), L.relu())
    bad = dataclasses.replace(inner, wiring=lambda ops, x: ops.call("affine_9", x))
    net = fnet.sequential(L.affine(4), ("block", bad))
    for view in (fnet.summary, fnet.draw_network):
        with pytest.raises(fnet.ShapeError,
                           match=r"^block \(sequential\): its wiring calls a child 'affine_9', "
                                 r"but its children are \['affine_0', 'relu_0'\]"):
            view(net, (None, 4))
    text = fnet.summary(fnet.sequential(L.embedding(9, 4), L.lstm(3)), (None, 5), batch_size=2)
    assert "i32[2,5]" in text and "for a batch of 2 int32 inputs" in text


def test_check_layer_checks_a_stateful_lstm_and_says_when_the_numbers_are_the_problem():
    assert gradcheck.check_layer(L.lstm(3, stateful=True), (2, 4, 3))

    def log_layer():
        return fnet.Layer("log", lambda k, s: ({}, s), lambda p, x: (jnp.log(x), x), lambda x, d: ({}, d / x))

    result = gradcheck.check_layer(log_layer(), (None, 4))  # log of normal draws: NaN forward
    assert not result and "x: NUMERICAL GRADIENT UNUSABLE: " in str(result)
    assert "the forward pass is not finite" in str(result) and "WRONG" not in str(result)
    tiny = gradcheck.check_layer(L.tanh(), (None, 4), eps=1e-300)
    assert not tiny and "eps=1e-300 is too small" in str(tiny) and "WRONG" not in str(tiny)


def test_resume_errors_keep_their_class(small, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(checkpoint.CheckpointError, match=r"^fit: .*bad.npz: not a readable fnet checkpoint"):
        _fit(small, checkpoint=bad, resume=True)
    with pytest.raises(checkpoint.CheckpointError, match=r"^fit: resume: no checkpoint at .*missing.npz"):
        _fit(small, checkpoint=tmp_path / "missing.npz", resume=True)


@pytest.mark.filterwarnings("ignore::fnet.train.SelectionWarning")  # choosing on the test set, on purpose
def test_keep_best_never_replaces_an_earlier_runs_best_checkpoint(small, tmp_path):
    path = tmp_path / "run.npz"
    _fit(small, epochs=1, checkpoint=path, keep_best="test_acc")
    path.unlink()  # the main checkpoint is gone; the best one of that run is still there
    before = checkpoint.best_path(path).read_bytes()
    with pytest.raises(ValueError, match=r"keep-best would replace .*run.best.npz, the best epoch of an "
                                         r"earlier run; pass overwrite"):
        _fit(small, epochs=1, checkpoint=path, keep_best="test_acc")
    assert checkpoint.best_path(path).read_bytes() == before
    _fit(small, epochs=1, checkpoint=path, keep_best="test_acc", overwrite=True)


def test_checkpoints_respect_the_umask(small, tmp_path):
    old = os.umask(0o022)
    try:
        _fit(small, epochs=1, checkpoint=tmp_path / "run.npz")
    finally:
        os.umask(old)
    assert (tmp_path / "run.npz").stat().st_mode & 0o777 == 0o644


def test_restore_loads_a_checkpoint_for_a_network_in_one_call(small, tmp_path):
    net = fnet.models.resnet((28, 28, 1), widths=(4, 8), blocks=(1, 1))
    (x, t), test = small
    r = train.fit(net, CE, optim.sgd(0.1), (x[:200].reshape(-1, 28, 28, 1), t[:200]), epochs=1, batch_size=50,
                  checkpoint=tmp_path / "r.npz", log=None)
    ck = checkpoint.restore(tmp_path / "r.npz", net, (None, 28, 28, 1))
    y = fnet.predict(net, ck.params, x[:5].reshape(-1, 28, 28, 1), state=ck.state)
    want = fnet.predict(net, r.params, x[:5].reshape(-1, 28, 28, 1), state=r.state)
    np.testing.assert_array_equal(y, want)
    with pytest.raises(checkpoint.CheckpointError, match="does not fit this network"):
        checkpoint.restore(tmp_path / "r.npz", fnet.models.resnet((28, 28, 1), widths=(4, 4), blocks=(1, 1)),
                           (None, 28, 28, 1))


def test_simulated_cpu_devices_are_used_for_data_parallel_training_only_on_request(tmp_path):
    script = ("import jax\n"
              "jax.config.update('jax_num_cpu_devices', 2)\n"
              "import numpy as np, fnet\n"
              "from fnet import losses, optim, train, distributed\n"
              "x = np.random.default_rng(0).random((200, 8), np.float32)\n"
              "t = (x[:, 0] > .5).astype(np.int32)\n"
              "lines = []\n"
              "def fit(**kw):\n"
              "    net = fnet.two_layer_net(8, 4, 2)\n"
              "    return train.fit(net, losses.softmax_cross_entropy, optim.sgd(.1), (x, t),\n"
              "                     epochs=1, batch_size=20, log=lines.append, **kw)\n"
              "r = fit()\n"
              "print(lines[0])\n"
              "print(len(r.params['Affine1']['W'].sharding.device_set))\n"
              "r = fit(mesh=distributed.make_mesh(2))\n"
              "print(lines[2])\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 0, proc.stderr
    first, devices, asked = proc.stdout.splitlines()
    assert first == "devices: 1 x cpu (cpu:0)" and devices == "1"
    assert asked == "devices: 2 x cpu (cpu:0, cpu:1), data parallel"
