"""Running one configuration (every contender, interleaved), and the runs in other processes:
peak memory of one contender, and scripts/train.py timed end to end."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.cold_start import child_env, run_train
from benchmarks.config import FIRST_STEPS, PAUSE_S, ROOT, Config
from benchmarks.contenders import Runner, prepare_jax
from benchmarks.machine import loadavg, proc_status_mb
from benchmarks.numpy_reference import prepare_numpy
from benchmarks.roofs import prepare_roof, shape_roofs
from benchmarks.torch_reference import TORCH_CONTENDERS, prepare_torch
from benchmarks.workload import build_net, load_data, matmul_flops, sizes


def summarize(values: Sequence[float]) -> dict:
    a = np.asarray(values, np.float64)
    return {"median": float(np.median(a)), "min": float(a.min()), "max": float(a.max())}


def bench_config(config: Config, args: argparse.Namespace, contenders: Sequence[str],
                 log: Callable[[str], None]) -> dict:
    import jax

    steps, repeats, train_size = sizes(config, args)
    net = build_net(config)
    if net is None:
        log(f"[{config.name}] skipped: its model does not exist in this checkout")
        return {"skipped": "its model does not exist in this checkout"}
    x, t = load_data(config, train_size)
    if steps * config.batch_size > len(x):
        raise SystemExit(f"bench: {config.name}: {steps} steps of {config.batch_size} need "
                         f"{steps * config.batch_size} examples, the training set has {len(x)}")
    input_shape = (None, *x.shape[1:])
    params, _ = net.init(jax.random.key(args.seed), input_shape)
    flops, ops = matmul_flops(net, params, (config.batch_size, *x.shape[1:]))
    result: dict[str, Any] = {
        "description": config.description, "batch_size": config.batch_size, "steps": steps,
        "repeats": repeats, "n_train": len(x), "flops_per_step": flops, "flop_ops": ops,
        # forward, dW and dx per matmul, less the first layer's dx: what FLOP_RULE assumes
        # (not for a net of multi-channel convolutions: their dW is one dot per kernel offset)
        # (nor for a recurrent net: its steps' matmuls run in a loop, its weight gradients outside)
        "hlo_dots_expected": None if config.sequence or any(op["op"] == "conv" and op["lhs"][-1] > 1
                                                            for op in ops)
        else 3 * len(ops) - 1,
        "first_steps_tol": config.first_steps_tol,
        "loadavg_start": loadavg(), "contenders": {}, "skipped": {}}
    log(f"[{config.name}] {config.description}; batch {config.batch_size}, {steps} steps x {repeats} "
        f"repeats on {len(x)} examples, {flops / 1e6:.1f} MFLOP/step")

    runners: dict[str, Runner] = {}
    for name in contenders:
        if name == "fnet_dp" and (jax.default_backend() != "cpu" or len(jax.devices()) < 2):
            why = (f"data parallel over CPU devices, but JAX runs on {jax.default_backend()}"
                   if jax.default_backend() != "cpu" else "one CPU device (one usable core)")
            result["skipped"][name] = why
            log(f"[{config.name}] {name} skipped: {why}")
        elif name in ("fnet", "fnet_dp", "autodiff", "progress"):
            runners[name] = prepare_jax(name, net, params, x, t, config, steps, args.seed,
                                        dict(args.xla_option or []), profile=args.profile and name == "fnet")
            log(f"[{config.name}] {name}: compiled in {runners[name].compile_s:.2f}s")
        elif name in ("numpy", "numpy1"):
            r = prepare_numpy(net, params, x, t, config, steps, args.seed, 1 if name == "numpy1" else None)
            if isinstance(r, str):
                result["skipped"][name] = r
                log(f"[{config.name}] {name} skipped: {r}")
            else:
                runners[name] = r
        elif name in TORCH_CONTENDERS:
            r = prepare_torch(name, net, params, x, t, config, steps, args.seed)
            if isinstance(r, str):
                result["skipped"][name] = r
                log(f"[{config.name}] {name} skipped: {r}")
            else:
                runners[name] = r
        elif name == "roof":
            runners[name] = prepare_roof(args.roof_n)
    # the model's own matmul shapes, timed alone: those of affine layers (x (B, in) @ W), not the batched
    # products of a sequence model
    affines = any(op["op"] == "dot" for op in ops) and not config.sequence
    if "roof" in contenders and affines and not args.quick:
        result["shape_roofs"] = shape_roofs(ops, config.batch_size)

    # Interleaved timing: every repeat runs every contender once, the order rotated.
    names = list(runners)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names):] + names[: rep % len(names)]
        for name in order:
            t0 = time.perf_counter()
            runners[name].run(rep)
            seconds[name].append(time.perf_counter() - t0)
            time.sleep(PAUSE_S)
        log(f"[{config.name}] repeat {rep + 1}/{repeats}: " + ", ".join(
            f"{n} {seconds[n][-1] * 1e3 / (1 if n == 'roof' else steps):.3f}" for n in names) + " ms"
            + ("/step" if names != ["roof"] else ""))

    roof_gflops = None
    if "roof" in runners:
        rates = [runners["roof"].info["flops"] / s / 1e9 for s in seconds["roof"]]
        roof_gflops = summarize(rates)
        result["roof"] = {"n": runners["roof"].info["n"], "seconds": seconds["roof"], "gflops": roof_gflops}
    ref = runners.get("fnet")
    for name, r in runners.items():
        if name == "roof":
            continue
        per_step = [s / steps for s in seconds[name]]
        ms = summarize([s * 1e3 for s in per_step])
        entry: dict[str, Any] = {
            "seconds": seconds[name], "ms_per_step": ms,
            "samples_per_s": config.batch_size / (ms["median"] / 1e3),
            **({"tokens_per_s": config.batch_size * config.sequence / (ms["median"] / 1e3)}
               if config.sequence else {}),
            "gflops": flops / (ms["median"] / 1e3) / 1e9,
            "compile_s": r.compile_s, "first_call_s": r.first_call_s, **r.info}
        if ref is not None:
            entry["ratio_vs_fnet"] = summarize([a / b for a, b in zip(seconds[name], seconds["fnet"],
                                                                      strict=True)])
        if "fnet_dp" in runners and name != "fnet_dp":
            entry["ratio_vs_fnet_dp"] = summarize([a / b for a, b in zip(seconds[name], seconds["fnet_dp"],
                                                                         strict=True)])
        if roof_gflops is not None:
            paired = [flops / (s / steps) / (runners["roof"].info["flops"] / rs)
                      for s, rs in zip(seconds[name], seconds["roof"], strict=True)]
            entry["pct_roof"] = 100 * entry["gflops"] / roof_gflops["median"]
            entry["pct_roof_paired"] = summarize([100 * p for p in paired])
        if r.check_losses is not None:
            entry["check_losses"] = [float(v) for v in r.check_losses]
            entry["final_loss"] = float(r.check_losses[-1])
            entry["losses_finite"] = bool(np.isfinite(r.check_losses).all())
            if ref is not None and ref.check_losses is not None:
                diff = np.abs(r.check_losses - ref.check_losses)
                entry["max_abs_loss_diff_vs_fnet"] = float(np.max(diff))
                entry["max_abs_loss_diff_vs_fnet_first_steps"] = float(np.max(diff[:FIRST_STEPS]))
        result["contenders"][name] = entry
    result["loadavg_end"] = loadavg()
    return result


def child_memory(config: Config, args: argparse.Namespace, contender: str) -> dict:
    """In a subprocess: prepare ``contender`` (or nothing, for ``baseline``), run it twice, report memory."""
    import jax

    net = build_net(config)
    steps, _, train_size = sizes(config, args)
    x, t = load_data(config, train_size)
    params, _ = net.init(jax.random.key(args.seed), (None, *x.shape[1:]))
    before = proc_status_mb("VmHWM")
    if contender in ("fnet", "fnet_dp", "autodiff"):
        options = dict(args.xla_option or [])
        prepare_jax(contender, net, params, x, t, config, steps, args.seed, options).run(0)
    elif contender in ("numpy", "numpy1"):
        r = prepare_numpy(net, params, x, t, config, steps, args.seed, 1 if contender == "numpy1" else None)
        if not isinstance(r, str):
            r.run(0)
    elif contender == "roof":
        prepare_roof(args.roof_n).run(0)
    return {"vmhwm_mb": proc_status_mb("VmHWM"), "vmhwm_before_mb": before,
            "vmrss_mb": proc_status_mb("VmRSS")}


def isolated_memory(config: Config, args: argparse.Namespace, contenders: Sequence[str],
                    log: Callable[[str], None]) -> dict:
    """Peak RSS of a process running one contender, and of one that only loads data and JAX."""
    out = {}
    for name in ("baseline", *contenders):
        cmd = [sys.executable, str(ROOT / "scripts" / "bench.py"), "--config", config.name,
               "--child-memory", name, "--seed", str(args.seed)]
        for opt in ("steps", "train_size"):
            if getattr(args, opt) is not None:
                cmd += [f"--{opt.replace('_', '-')}", str(getattr(args, opt))]
        if args.quick:
            cmd.append("--quick")
        for opt_name, value in args.xla_option or []:
            cmd.append(f"--xla-option={opt_name}={value}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
        if proc.returncode != 0:
            out[name] = {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
            continue
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    base = out.get("baseline", {}).get("vmhwm_mb")
    for name, rec in out.items():
        if base is not None and "vmhwm_mb" in rec and name != "baseline":
            rec["over_baseline_mb"] = rec["vmhwm_mb"] - base
    log(f"[{config.name}] peak RSS (MiB, own process): " + ", ".join(
        f"{n} {r.get('vmhwm_mb', float('nan')):.0f}" for n, r in out.items()))
    return out


def run_train_script(log: Callable[[str], None], xla_options: Sequence[tuple[str, Any]] = ()) -> dict:
    """``scripts/train.py --quiet --json`` with the book's defaults, timed from process start to exit
    (``cold_start.run_train`` on the command line's own compilation cache)."""
    out = run_train(None, xla_options)
    if "error" not in out:
        log(f"[train.py] wall {out['wall_s']:.1f}s, training {out['train_s']:.1f}s; "
            f"test acc {out['final'].get('test_acc', float('nan')):.4f}")
    return out
