"""The jitted training loop: compilations, determinism, resume, iters, non-finite losses, accuracy."""

import jax
import jax.monitoring
import numpy as np
import pytest

import fnet
from fnet import checkpoint, distributed, losses, optim, schedules, train
from fnet import layers as L

CE = losses.softmax_cross_entropy


def _fit(data, **kw):
    (xtr, ttr), (xte, tte) = data
    kw = {"epochs": 2, "batch_size": 100, "log": None, **kw}
    net = kw.pop("net", None) or fnet.two_layer_net(784, 30, 10)
    opt = kw.pop("optimizer", None) or optim.sgd(0.1)
    return train.fit(net, CE, opt, (xtr, ttr), (xte, tte), **kw)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_short_real_training_run_reaches_an_accuracy_floor(fashion_small):
    # Fashion-MNIST, 3000 examples, 10 epochs of the book's network and SGD (0.73 measured;
    # chance is 0.1): a broken backward rule, optimizer or data path cannot get near this.
    result = _fit(fashion_small, epochs=10)
    assert result.history["test_acc"][-1] >= 0.70, result.history
    assert result.history["loss"][-1] < result.history["loss"][0]


class CompileCounter:
    def __init__(self):
        self.count = 0

    def __call__(self, name, duration, **kw):
        if name == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def test_no_recompilation_between_epochs(fashion_small):
    _fit(fashion_small, epochs=1)  # warm up eager helpers (key splitting, init)
    counts = {}
    for epochs in (1, 3):
        counter = CompileCounter()
        jax.monitoring.register_event_duration_secs_listener(counter)
        try:
            _fit(fashion_small, epochs=epochs)
        finally:
            jax.monitoring.unregister_event_duration_listener(counter)
        counts[epochs] = counter.count
    assert counts[3] == counts[1], counts
    assert counts[3] <= 4, counts  # the initialisation, the epoch, the evaluation, an eager key split


def test_same_seed_same_result_bit_for_bit(fashion_small):
    a = _fit(fashion_small, seed=3)
    b = _fit(fashion_small, seed=3)
    c = _fit(fashion_small, seed=4)
    assert _same(a.params, b.params)
    assert np.array_equal(a.history["loss"], b.history["loss"])
    assert not _same(a.params, c.params)


@pytest.mark.parametrize("sampling", ["shuffle", "replacement"])
def test_resume_gives_the_same_final_parameters(fashion_small, tmp_path, sampling):
    kw = {"optimizer": optim.momentum(0.05), "sampling": sampling, "seed": 1}
    full = _fit(fashion_small, epochs=3, **kw)
    path = tmp_path / "run.npz"
    first = _fit(fashion_small, epochs=1, checkpoint=path, **kw)
    assert checkpoint.read_config(path)["epoch"] == 1
    resumed = _fit(fashion_small, epochs=3, checkpoint=path, resume=True, **kw)
    assert _same(resumed.params, full.params)
    assert _same(resumed.opt_state, full.opt_state)
    assert not _same(first.params, full.params)
    np.testing.assert_array_equal(resumed.history["test_acc"], full.history["test_acc"])
    assert list(resumed.history["epoch"]) == [1, 2, 3]


def test_resume_refuses_a_different_run(fashion_small, tmp_path):
    path = tmp_path / "run.npz"
    _fit(fashion_small, epochs=1, checkpoint=path)
    with pytest.raises(ValueError, match=r"cannot resume .* batch_size \(saved 100, now 50\)"):
        _fit(fashion_small, epochs=2, batch_size=50, checkpoint=path, resume=True)


def test_iters_that_do_not_fill_the_last_epoch(fashion_small, monkeypatch):
    from fnet.train import programs

    compiled, real = [], programs.compile_all

    def spy(lowered, options, **kw):
        def named():
            for name, low in lowered:
                compiled.append(name)
                yield name, low
        return real(named(), options, **kw)

    monkeypatch.setattr(programs, "compile_all", spy)
    result = _fit(fashion_small, epochs=None, iters=75)  # 30 steps per epoch
    assert list(result.history["steps"]) == [30, 30, 15]
    # one epoch program for both lengths (the step count is its input), one evaluation of both sets
    assert compiled == ["init", "epoch", "evaluate"]
    # the same steps as the pieces of fit(progress=), compiled per length by lax.scan
    pieces = _fit(fashion_small, epochs=None, iters=75, progress=lambda p: None)
    assert _same(result.params, pieces.params)
    np.testing.assert_array_equal(result.history["loss"], pieces.history["loss"])


def test_an_epoch_program_runs_any_number_of_its_steps(fashion_small):
    (x, t), _ = fashion_small
    net, opt = fnet.two_layer_net(784, 20, 10), optim.momentum(0.05)
    params, _ = net.init(jax.random.key(0), (None, 784))
    carry = (params, opt.init(params), None)
    key = jax.random.key(5)
    long = jax.jit(train.make_train_epoch(net, CE, opt, batch_size=100, n_steps=30))
    for steps in (30, 12, 1):
        short = jax.jit(train.make_train_epoch(net, CE, opt, batch_size=100, n_steps=steps))
        (p_short, o_short, _), l_short = short(*carry, x, t, key)
        (p_long, o_long, _), l_long = long(*carry, x, t, key, np.int32(steps))
        assert _same(p_short, p_long) and _same(o_short, o_long)
        np.testing.assert_array_equal(l_long[:steps], l_short)
        assert np.isnan(l_long[steps:]).all() and l_long.shape == (30,)


def test_replacement_sampling_trains_too(fashion_small):
    result = _fit(fashion_small, epochs=10, sampling="replacement")
    assert result.history["test_acc"][-1] >= 0.70, result.history


def test_non_finite_loss_stops_and_keeps_the_last_good_epoch(fashion_small, tmp_path):
    # fine for the first epoch (30 steps), then a learning rate that blows up
    lr = schedules.Schedule("explode", lambda step: np.float32(0.1) * (1 + 1e30 * (step >= 30)), {})
    path = tmp_path / "run.npz"
    message = (r"^epoch 2: the training loss became (nan|inf) at step \d+ of 30; training stopped and "
               r"the parameters from the end of epoch 1 were kept; the checkpoint .* holds epoch 1")
    with pytest.raises(train.NonFiniteLossError, match=message) as info:
        _fit(fashion_small, epochs=3, optimizer=optim.sgd(lr), checkpoint=path)
    assert info.value.epoch == 2
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(info.value.params))
    saved = checkpoint.load(path, params_like=info.value.params)
    assert saved.epoch == 1 and _same(saved.params, info.value.params)


def test_bad_arguments(fashion_small):
    (xtr, ttr), test = fashion_small
    with pytest.raises(ValueError, match="exactly one of epochs= or iters="):
        _fit(fashion_small, iters=10)
    with pytest.raises(ValueError, match=r"batch_size must be between 1 and the number of training "
                                         r"examples \(3000\); got 5000"):
        _fit(fashion_small, batch_size=5000)
    with pytest.raises(TypeError, match="x_train has dtype uint8; pass floating-point inputs"):
        train.fit(fnet.two_layer_net(784, 5, 10), CE, optim.sgd(), ((xtr * 255).astype(np.uint8), ttr),
                  epochs=1)
    with pytest.raises(ValueError, match="x_train has 3000 examples but t_train has 2999"):
        train.fit(fnet.two_layer_net(784, 5, 10), CE, optim.sgd(), (xtr, ttr[:-1]), epochs=1)
    with pytest.raises(ValueError, match="sampling must be one of"):
        _fit(fashion_small, sampling="random")


def test_xla_options_reach_the_compiler(fashion_small):
    logged = []
    plain = _fit(fashion_small, epochs=1, seed=2)
    # xla_cpu_enable_fast_math is off by default: the same program, the same parameters
    same = _fit(fashion_small, epochs=1, seed=2, xla_options={"xla_cpu_enable_fast_math": False})
    assert _same(plain.params, same.params)
    with pytest.raises(ValueError, match=r"fit: XLA rejected xla_options=\{'xla_no_such_option': 1\}: "
                                         r".*xla_no_such_option"):
        _fit(fashion_small, epochs=1, xla_options={"xla_no_such_option": 1}, log=logged.append)
    assert logged == []  # rejected before any training
    with pytest.raises(TypeError, match="xla_options must be a dict of XLA option name -> value"):
        _fit(fashion_small, epochs=1, xla_options=["xla_cpu_enable_fast_math"])


def test_one_resume_check_for_fit_and_the_command_line(tmp_path, fashion_small):
    path = tmp_path / "run.npz"
    _fit(fashion_small, epochs=1, checkpoint=path, config={"model": "two_layer", "hidden": [5]}, log=None)
    # what may change on resume (how long, what is evaluated) is not compared; everything else is
    train.check_resume(path, {"model": "two_layer", "epochs": 9, "iters": 5, "no_eval_train": True})
    with pytest.raises(ValueError, match=r"differs in --hidden \(saved \[5\], now \[6\]\), --seed "
                                         r"\(saved 0, now 1\)"):
        train.check_resume(path, {"hidden": [6], "seed": 1, "epochs": 2}, spell=lambda k: f"--{k}")


def test_check_batch_size_names_the_option():
    assert train.check_batch_size(100, 3000) == 100
    with pytest.raises(ValueError, match=r"--batch-size must be between 1 .* \(50\); got 100: --batch-size "
                                         r"100 is larger than the training set \(50 examples\)"):
        train.check_batch_size(100, 50, what="--batch-size")
    with pytest.raises(ValueError, match=r"batch_size must be between 1 .*; got 0$"):
        train.check_batch_size(0, 50)


def test_train_result_repr_is_a_short_summary(fashion_small):
    r = _fit(fashion_small, epochs=1)
    text = repr(r)
    assert text.startswith("TrainResult(epochs=1, 23,860 parameters, loss ") and "test_acc 0." in text
    assert len(text) < 150 and "Array" not in text


# ---------------------------------------------------------------- callbacks, early stopping, keep_best


@pytest.mark.filterwarnings("ignore::fnet.train.SelectionWarning")  # choosing on the test set, on purpose
def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stop = train.early_stopping("test_loss", patience=2)
    records = [{"epoch": i + 1, "test_loss": v} for i, v in enumerate([1.0, 0.8, 0.85, 0.9, 0.7])]
    assert [stop(r) for r in records[:3]] == [None, None, None]
    assert stop(records[3]) == "test_loss has not improved for 2 epochs (best 0.8000 in epoch 2)"
    acc = train.early_stopping("test_acc", patience=1)
    assert acc({"epoch": 1, "test_acc": 0.5}) is None
    assert acc({"epoch": 2, "test_acc": 0.4}).startswith("test_acc has not improved for 1 epochs")
    with pytest.raises(ValueError, match="early_stopping: monitor must be a history key"):
        train.early_stopping("valid_loss")
    with pytest.raises(ValueError, match=r"test_loss was not measured \(NaN\) in epoch 1"):
        train.early_stopping()({"epoch": 1, "test_loss": float("nan")})


@pytest.mark.filterwarnings("ignore::fnet.train.SelectionWarning")  # choosing on the test set, on purpose
@pytest.mark.parametrize("beside", [False, True])
def test_callbacks_stop_training_and_keep_best_saves_the_best_epoch(fashion_small, tmp_path, beside):
    # beside: with an evaluation device and callbacks, the loop waits for each evaluation (a callback
    # may stop on it), and nothing changes
    seen, seen_after = [], []

    def stop_at_3(record):
        seen.append(record["epoch"])
        return "enough" if record["epoch"] == 3 else None

    path = tmp_path / "run.npz"
    lines = []
    result = _fit(fashion_small, epochs=6, callbacks=[stop_at_3, lambda r: seen_after.append(r["epoch"])],
                  keep_best="test_acc", checkpoint=path, log=lines.append,
                  eval_device=jax.devices()[0] if beside else None)
    assert seen == [1, 2, 3] and result.epochs == 3 and result.stopped == "enough"
    assert seen_after == [1, 2, 3]  # every callback sees every epoch, the one that stops included
    assert lines[-1] == "stopped after epoch 3: enough"
    best_epoch = int(np.argmax(result.history["test_acc"])) + 1
    best = checkpoint.read_config(train.best_path(path))
    assert train.best_path(path).name == "run.best.npz" and best["epoch"] == best_epoch
    assert checkpoint.read_config(path)["epoch"] == 3


def test_hook_arguments_are_checked(fashion_small, tmp_path):
    with pytest.raises(TypeError, match=r"^fit: callbacks must be a list of functions"):
        _fit(fashion_small, callbacks=print)
    with pytest.raises(ValueError, match=r"^fit: keep_best='test_acc' saves the best epoch beside the "):
        _fit(fashion_small, keep_best="test_acc")
    with pytest.raises(ValueError, match=r"^fit: keep_best must be True or one of"):
        _fit(fashion_small, keep_best="valid_acc", checkpoint=tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"^fit: keep_best='val_acc' is not measured in this run"):
        _fit(fashion_small, keep_best="val_acc", checkpoint=tmp_path / "a.npz")
    with pytest.raises(ValueError, match=r"^fit: keep_best='train_acc' is not measured in this run"):
        _fit(fashion_small, keep_best="train_acc", eval_train=False, checkpoint=tmp_path / "b.npz")


@pytest.mark.filterwarnings("ignore::fnet.train.SelectionWarning")  # choosing on the test set, on purpose
def test_metrics_fit_the_loss(fashion_small):
    (xtr, ttr), (xte, tte) = fashion_small
    one_hot = np.eye(10, dtype=np.float32)
    mse = train.fit(fnet.two_layer_net(784, 10, 10), losses.mean_squared_error, optim.sgd(0.1),
                    (xtr, one_hot[ttr]), (xte, one_hot[tte]), epochs=1, log=None)
    assert not any("acc" in k for k in mse.history), list(mse.history)  # a regression has no accuracy
    lines = []
    top = _fit(fashion_small, epochs=1, metrics=("accuracy", "top3"), log=lines.append)
    h = top.history
    assert {"train_top3", "test_top3", "test_acc"} <= set(h) and h["test_top3"][-1] >= h["test_acc"][-1]
    assert lines[0] == "devices: 1 x cpu (cpu:0)"  # fit says where it trains, then the epochs
    assert "test top3 0." in lines[1] and "train acc 0." in lines[1]
    assert train.early_stopping("test_top3")({"epoch": 1, "test_top3": 0.5}) is None
    with pytest.raises(ValueError, match=r"^fit: unknown metric 'f1'; fnet has 'accuracy' and 'top<k>'"):
        _fit(fashion_small, metrics=["f1"])
    with pytest.raises(TypeError, match=r"^fit: metrics must be a list of names"):
        _fit(fashion_small, metrics="accuracy")


def test_top_k_accuracy_counts_the_k_largest_and_refuses_more_than_the_classes():
    from fnet.metrics import top_k_accuracy

    y = np.array([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]], np.float32)
    assert float(top_k_accuracy(1)(y, np.array([2, 0]))) == 0.5
    assert float(top_k_accuracy(2)(y, np.array([2, 1]))) == 1.0
    with pytest.raises(ValueError, match=r"top4: the network gives 3 scores, fewer than 4; ask for top1 to"):
        top_k_accuracy(4)(y, np.array([2, 1]))  # lax.top_k's own error named neither the metric nor the fix
    with pytest.raises(ValueError, match="top_k_accuracy: k must be a positive int, got 0"):
        top_k_accuracy(0)  # it scored every prediction wrong


def test_progress_runs_the_same_epoch_in_pieces(fashion_small):
    seen = []
    plain = _fit(fashion_small, epochs=2)
    pieces = _fit(fashion_small, epochs=2, progress=seen.append)
    assert _same(plain.params, pieces.params)  # the same steps, bit for bit
    np.testing.assert_array_equal(plain.history["loss"], pieces.history["loss"])
    assert [p["step"] for p in seen] == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30] * 2
    assert {p["epoch"] for p in seen} == {1, 2} and all(p["steps"] == 30 and p["seconds"] > 0 for p in seen)
    assert train.chunk_lengths(600) == [60] * 10 and train.chunk_lengths(25) == [3] * 8 + [1]
    with pytest.raises(TypeError, match=r"^fit: progress must be a function of one dict"):
        _fit(fashion_small, progress=3)
    from fnet.train import checks

    with pytest.raises(ValueError, match=r"^fit: progress reports within an epoch on one device"):
        checks.check_progress(print, mesh=object())


# ---------------------------------------------------------------- the evaluation beside the next epoch
# eval_device=the training device runs the loop that dispatches epoch e + 1 before it waits for epoch
# e's evaluation (one device runs them one after the other); tests/test_distributed.py runs it on two
# devices, and tests/test_cli.py the command line's second CPU device.


@pytest.mark.filterwarnings("ignore::fnet.train.SelectionWarning")  # choosing on the test set, on purpose
def test_the_evaluation_beside_the_next_epoch_changes_nothing(fashion_small, tmp_path):
    runs = {}
    for name, device in (("plain", None), ("beside", jax.devices()[0])):
        lines = []
        result = _fit(fashion_small, epochs=3, log=lines.append, checkpoint=tmp_path / f"{name}.npz",
                      keep_best="test_acc", eval_device=device)
        epochs = [line for line in lines if line.startswith("epoch ")]
        runs[name] = result, [line.split("  ")[:5] for line in epochs]  # the lines but their timings
    (plain, plain_lines), (beside, beside_lines) = runs["plain"], runs["beside"]
    assert _same(plain.params, beside.params) and plain_lines == beside_lines and len(beside_lines) == 3
    for k in ("loss", "train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_array_equal(plain.history[k], beside.history[k])
    saved = checkpoint.load(tmp_path / "beside.npz", params_like=beside.params)
    assert saved.epoch == 3 and _same(saved.params, beside.params)
    np.testing.assert_array_equal(saved.history["test_acc"], beside.history["test_acc"])
    best = [checkpoint.read_config(train.best_path(tmp_path / f"{n}.npz"))["epoch"] for n in runs]
    assert best[0] == best[1] == int(np.argmax(beside.history["test_acc"])) + 1


@pytest.mark.parametrize("beside", [False, True])
def test_each_evaluation_is_dispatched_after_the_next_epoch_when_beside(fashion_small, monkeypatch, beside):
    # beside: epoch e + 1 goes first, so it need not wait for the evaluation program's compilation
    from fnet.train import loop
    from fnet.train.programs import Compiling

    order, real_train, real_evaluate = [], loop.train, loop.evaluate

    def train_spy(programs, e, *args, **kw):
        order.append(f"train {e}")
        return real_train(programs, e, *args, **kw)

    def evaluate_spy(programs, *args):
        order.append("evaluate" if isinstance(programs["evaluate"], Compiling) else "compiled")
        return real_evaluate(programs, *args)

    monkeypatch.setattr(loop, "train", train_spy)
    monkeypatch.setattr(loop, "evaluate", evaluate_spy)
    _fit(fashion_small, epochs=3, eval_device=jax.devices()[0] if beside else None)
    if beside:
        assert order == ["train 0", "train 1", "evaluate", "train 2", "evaluate", "evaluate"]
    else:
        assert order == ["train 0", "evaluate", "train 1", "evaluate", "train 2", "evaluate"]


def test_which_networks_convolve_several_channels():
    from fnet.train.checks import convolves_channels

    image = (None, 12, 12, 1)
    assert convolves_channels(fnet.resnet(widths=(4, 8), blocks=(1, 1)), image)
    assert not convolves_channels(fnet.models.book.simple_convnet((12, 12, 1)), image)  # one grey channel in
    assert not convolves_channels(fnet.two_layer_net(144, 8, 10), (None, 144))
    assert convolves_channels(L.conv2d(4, 3), (None, 12, 12, 3))  # three colours in
    narrow_then_wide = fnet.sequential(L.conv2d(1, 3, padding=1), L.relu(), L.conv2d(4, 3, padding=1))
    assert not convolves_channels(narrow_then_wide, image)
    inner = fnet.sequential(L.conv2d(4, 3, padding=1), fnet.residual(L.conv2d(4, 3, padding=1)))
    assert convolves_channels(inner, image)  # the second, inside a combinator


def test_the_convolutions_are_found_inside_loops_and_branches():
    from jax import lax

    from fnet.train.checks import _conv_channels, _equations

    def conv(x):
        return lax.conv_general_dilated(x, jax.numpy.ones((3, 3, 5, 2), x.dtype), (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def f(x):
        in_loop = lax.scan(lambda c, _: (conv(c).sum() + c, None), x, None, length=2)[0]
        return lax.cond(x.sum() > 0, lambda y: conv(y).sum() + y, lambda y: y, in_loop)

    jaxpr = jax.make_jaxpr(f)(jax.ShapeDtypeStruct((1, 4, 4, 5), "float32"))
    convs = [e for e in _equations(jaxpr.jaxpr) if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 2 and [_conv_channels(e) for e in convs] == [5, 5]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rule is the CPU's")
def test_a_network_convolving_channels_evaluates_after_each_epoch_on_a_cpu(fashion_small, monkeypatch):
    # XLA's CPU convolutions of such a network trained to other values while a program ran on a
    # second CPU device (docs/design.md): the evaluation then waits for each epoch
    from fnet.train import loop

    (xtr, ttr), (xte, tte) = fashion_small
    images = ((xtr[:400].reshape(-1, 28, 28, 1), ttr[:400]), (xte[:200].reshape(-1, 28, 28, 1), tte[:200]))
    net = fnet.sequential(L.conv2d(4, 3, 2, padding=1), L.relu(), L.conv2d(4, 3, padding=1), L.relu(),
                          L.global_avg_pool2d(), L.affine(10))
    order, real_train, real_evaluate = [], loop.train, loop.evaluate
    monkeypatch.setattr(loop, "train", lambda programs, e, *a, **k: order.append(f"train {e}") or
                        real_train(programs, e, *a, **k))
    monkeypatch.setattr(loop, "evaluate", lambda *a: order.append("evaluate") or real_evaluate(*a))
    runs = {}
    for name, device in (("plain", None), ("after", jax.devices()[0])):
        lines = []
        runs[name] = _fit(images, net=net, epochs=2, log=lines.append, eval_device=device)
        where = ", evaluating on cpu:0 after each epoch" if device else ""
        assert lines[0] == f"devices: 1 x cpu (cpu:0){where}"
    assert order == ["train 0", "evaluate", "train 1", "evaluate"] * 2
    assert not runs["after"].evaluated_beside and _same(runs["plain"].params, runs["after"].params)
    lines = []
    assert _fit(fashion_small, epochs=1, log=lines.append, eval_device=jax.devices()[0]).evaluated_beside
    assert lines[0] == "devices: 1 x cpu (cpu:0), evaluating on cpu:0 beside it"


def test_a_stop_with_the_evaluation_beside_records_the_epoch_before(fashion_small, tmp_path):
    # epoch 1's evaluation is still pending when epoch 2's loss turns NaN: it is recorded and saved first
    lr = schedules.Schedule("explode", lambda step: np.float32(0.1) * (1 + 1e30 * (step >= 30)), {})
    path = tmp_path / "run.npz"
    message = r"^epoch 2: .* the checkpoint .* holds epoch 1"
    with pytest.raises(train.NonFiniteLossError, match=message) as info:
        _fit(fashion_small, epochs=3, optimizer=optim.sgd(lr), checkpoint=path, eval_device=jax.devices()[0])
    assert list(info.value.history["epoch"]) == [1] and np.isfinite(info.value.history["test_acc"]).all()
    saved = checkpoint.load(path, params_like=info.value.params)
    assert saved.epoch == 1 and _same(saved.params, info.value.params)


def test_eval_device_arguments(fashion_small):
    with pytest.raises(TypeError, match=r"^fit: eval_device must be a jax.Device, e.g. jax.devices\(\)\[1\], "
                                        r"or None; got 'cpu:1'"):
        _fit(fashion_small, eval_device="cpu:1")
    with pytest.raises(ValueError, match=r"^fit: eval_device evaluates beside training on one device, but "
                                         r"mesh= trains on a mesh of 1 device, .* pass mesh=None or "
                                         r"eval_device=None"):
        _fit(fashion_small, eval_device=jax.devices()[0], mesh=distributed.make_mesh(1))
