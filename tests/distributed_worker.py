"""Runs inside a subprocess for tests/test_distributed.py (XLA_FLAGS set by the parent)."""

import json
import sys

import jax
import numpy as np

import fnet
from fnet import checkpoint, cli, distributed, losses, optim, train


def data():
    (x, t), (xt, tt) = fnet.load_fashion_mnist("/usr/share/datasets/fashion-mnist")
    return (x[:2400], t[:2400]), (xt[:1001], tt[:1001])


def fit(d, mesh, **kw):
    kw = {"epochs": 2, "batch_size": 100, "seed": 1, "log": None, **kw}
    return train.fit(fnet.two_layer_net(784, 30, 10), losses.softmax_cross_entropy, optim.momentum(0.05),
                     *d, mesh=mesh, **kw)


def max_diff(a, b):
    return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def single_host(tmp):
    d = data()
    mesh = distributed.make_mesh(4)
    one, four = fit(d, None, epochs=3), fit(d, mesh, epochs=3)
    out = {"devices": len(jax.devices()), "mesh": dict(mesh.shape),
           "max_param_diff_4_vs_1": max_diff(one.params, four.params),
           "test_acc_1": float(one.history["test_acc"][-1]),
           "test_acc_4": float(four.history["test_acc"][-1]),
           "params_are_replicated": all(p.sharding.is_fully_replicated and len(p.sharding.device_set) == 4
                                        for p in jax.tree.leaves(four.params))}
    # iters that do not fill the last epoch (24 + 24 + 12 steps): the step count is an input of the
    # one sharded epoch program
    short1, short4 = fit(d, None, epochs=None, iters=60), fit(d, mesh, epochs=None, iters=60)
    out["short_steps"] = [int(s) for s in short4.history["steps"]]
    out["max_param_diff_short_4_vs_1"] = max_diff(short1.params, short4.params)
    fit(d, mesh, epochs=2, checkpoint=f"{tmp}/four.npz")
    out["max_diff_resume_4_to_1"] = max_diff(
        fit(d, None, epochs=3, checkpoint=f"{tmp}/four.npz", resume=True).params, one.params)
    fit(d, None, epochs=2, checkpoint=f"{tmp}/one.npz")
    out["max_diff_resume_1_to_4"] = max_diff(
        fit(d, mesh, epochs=3, checkpoint=f"{tmp}/one.npz", resume=True).params, one.params)
    # the evaluation on another device, while the next epoch trains on the first: the very same run
    beside = fit(d, None, epochs=3, eval_device=jax.devices()[1])
    out["max_param_diff_eval_beside"] = max_diff(one.params, beside.params)
    keys = ("loss", "train_loss", "train_acc", "test_loss", "test_acc")
    out["same_history_eval_beside"] = all(np.array_equal(one.history[k], beside.history[k]) for k in keys)
    out["eval_beside_default_mesh"] = fit(d, "auto", epochs=1, eval_device=jax.devices()[1]).params[
        "Affine1"]["W"].sharding.device_set == {jax.devices()[0]}
    try:
        fit(d, mesh, batch_size=102)
        out["batch_error"] = ""
    except ValueError as e:
        out["batch_error"] = str(e)
    out["cli_exit"] = cli.main(["--devices", "4", "--train-size", "800", "--epochs", "1", "--quiet",
                                "--no-compile-cache", "--json", f"{tmp}/cli.json"])
    with open(f"{tmp}/cli.json") as f:
        out["cli_devices"] = json.load(f)["device"]
    out["default_mesh_devices"] = distributed.default_mesh().size
    return out


def multi_host(tmp, coordinator, process_id):
    distributed.initialize(coordinator, 2, int(process_id))
    (x, t), (xt, tt) = data()
    d = (distributed.host_shard(x, t), distributed.host_shard(xt, tt))
    mesh = distributed.make_mesh()
    r = fit(d, mesh, checkpoint=f"{tmp}/multi.npz")
    jax.experimental.multihost_utils.sync_global_devices("checkpoint written")
    return {"process": jax.process_index(), "process_count": jax.process_count(), "mesh": dict(mesh.shape),
            "param_sum": float(sum(np.asarray(p).sum() for p in jax.tree.leaves(r.params))),
            "history": {k: np.asarray(v).tolist() for k, v in r.history.items()
                        if k in ("loss", "train_acc", "test_acc")},
            "checkpoint_epoch": checkpoint.read_config(f"{tmp}/multi.npz")["epoch"]}


if __name__ == "__main__":
    import jax.experimental.multihost_utils

    mode, *args = sys.argv[1:]
    result = single_host(*args) if mode == "single-host" else multi_host(*args)
    print(json.dumps(result))
