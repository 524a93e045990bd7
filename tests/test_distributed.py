"""Data-parallel training on 4 simulated CPU devices, and on 2 processes (multi-host).

XLA_FLAGS must be set before JAX starts, so each scenario runs in a subprocess
(``tests/distributed_worker.py``) and reports back as JSON.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FASHION = "/usr/share/datasets/fashion-mnist"

pytestmark = pytest.mark.skipif(not os.path.isdir(FASHION),
                                reason=f"{FASHION} is missing: apt-get install dataset-fashion-mnist")


def _worker(*args, devices=4, timeout=300):
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": str(HERE.parent)}
    return subprocess.Popen([sys.executable, str(HERE / "distributed_worker.py"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_four_devices_equal_one_device_and_checkpoints_cross(tmp_path):
    r = _result(_worker("single-host", str(tmp_path)))
    assert r["devices"] == 4 and r["mesh"] == {"hosts": 1, "devices": 4}
    # same global batch and seed: the same parameters, to float32 rounding of the gradient average
    assert r["max_param_diff_4_vs_1"] < 1e-5, r
    assert r["test_acc_1"] == pytest.approx(r["test_acc_4"], abs=2e-3)
    assert r["params_are_replicated"]
    assert r["short_steps"] == [24, 24, 12] and r["max_param_diff_short_4_vs_1"] < 1e-5, r
    # a checkpoint from the 4-device run resumes on 1 device, and the other way round
    assert r["max_diff_resume_4_to_1"] < 1e-5 and r["max_diff_resume_1_to_4"] < 1e-5, r
    assert "must be divisible by the number of devices (4)" in r["batch_error"]
    assert "use 100 or 104" in r["batch_error"]
    # evaluated on device 1 while device 0 trains the next epoch: bit for bit the run on one device,
    # and mesh="auto" trains on one device when there is an evaluation device
    assert r["max_param_diff_eval_beside"] == 0 and r["same_history_eval_beside"], r
    assert r["eval_beside_default_mesh"]
    assert r["cli_exit"] == 0 and r["cli_devices"] == "4 x cpu (cpu)"  # the user's 4 devices: no second one
    assert r["default_mesh_devices"] == 4


def test_two_processes_train_together(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [_worker("multi-host", str(tmp_path), f"127.0.0.1:{port}", str(i), devices=2) for i in range(2)]
    results = [_result(p) for p in procs]
    assert [r["process"] for r in results] == [0, 1]
    assert all(r["process_count"] == 2 and r["mesh"] == {"hosts": 2, "devices": 2} for r in results)
    # every host ends with the same parameters and the same (global) metrics
    assert results[0]["param_sum"] == results[1]["param_sum"]
    assert results[0]["history"] == results[1]["history"]
    assert results[0]["history"]["test_acc"][-1] > 0.6
    assert results[0]["checkpoint_epoch"] == 2  # written once, by process 0
