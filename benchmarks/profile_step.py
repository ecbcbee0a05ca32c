"""Where a jitted step's device time goes: a JAX profiler trace, summarised by kernel.

    python benchmarks/profile_step.py                         # jem_cifar10's train step (WRN-28-10)
    python benchmarks/profile_step.py --set data.batch_size=256 --steps 5
    python benchmarks/profile_step.py --sgld-only             # the 20 SGLD steps alone
    python benchmarks/profile_step.py --quick                 # WRN-10-1, batch 16: seconds on CPU

Runs the step as benchmarks/scaling.py builds it (synthetic CIFAR-shaped data, one device),
compiles and warms it up, then traces ``--steps`` steps with ``jax.profiler.trace(...,
create_perfetto_trace=True)`` and reads the Perfetto JSON it writes: every complete event
("ph": "X") on a device track (a GPU stream, a TPU core; the host's threads when there is no
device) is one kernel or op. The summary groups them by name, and by kind: ``conv`` (cuDNN /
convolution kernels), ``gemm`` (matmul kernels), ``fusion`` (XLA's fused elementwise and
reduction kernels, dtype conversions), ``copy`` (memcpy/memset/transposes), ``other``.
``busy_fraction`` is the summed kernel time over the span from the first kernel's start to the
last one's end (under 1: the device waits, on the host or on launches); compare
``kernel_seconds_per_step`` with the step time a benchmark measured without the profiler.

Prints a table and writes ``profile_summary.json`` (and the trace) under ``--out``
(default: a temporary folder).
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scaling import CPU_DEFAULTS, PRESET, QUICK, synthetic_cifar  # noqa: E402

from ebm_jax.data import Batches  # noqa: E402
from ebm_jax.experiments import (build, experiment_train_step, initial_state,  # noqa: E402
                                 make_config)

KINDS = (("conv", ("conv", "cudnn", "implicit_gemm", "wgrad", "dgrad", "fprop")),
         ("gemm", ("gemm", "cublas", "dot", "matmul", "sm90_xmma", "cutlass")),
         ("copy", ("memcpy", "memset", "copy", "transpose")),
         ("fusion", ("fusion", "loop_", "input_", "reduce", "triton")))


def kind_of(name: str) -> str:
    lower = name.lower()
    if "convert" in lower:  # XLA's dtype conversions, not convolutions
        return "fusion"
    for kind, words in KINDS:
        if any(w in lower for w in words):
            return kind
    return "other"


def device_events(trace: dict) -> dict:
    """The complete events of each device line: ``{"kernels": [...], "ops": [...]}``.

    On a GPU the trace has, per device, stream lines (one event a kernel) and lines that
    repeat the same time under XLA's names ("XLA Ops", "XLA Modules"): kernels come from the
    streams, ops from "XLA Ops". Without a device (CPU) every host event is a kernel.
    """
    processes, threads = {}, {}
    for e in trace.get("traceEvents", []):
        if e.get("ph") != "M":
            continue
        name = str(e.get("args", {}).get("name", ""))
        if e.get("name") == "process_name":
            processes[e.get("pid")] = name.lower()
        elif e.get("name") == "thread_name":
            threads[(e.get("pid"), e.get("tid"))] = name.lower()
    devices = {pid for pid, n in processes.items() if "/device:" in n}
    complete = [e for e in trace.get("traceEvents", []) if e.get("ph") == "X" and "dur" in e]
    on_device = [e for e in complete if e.get("pid") in devices]
    if not on_device:
        return {"kernels": complete, "ops": [], "tracks": "host"}

    def line(e):
        return threads.get((e.get("pid"), e.get("tid")), "")

    kernels = [e for e in on_device if "stream" in line(e)] or on_device
    ops = [e for e in on_device if "xla ops" in line(e)]
    return {"kernels": kernels, "ops": ops, "tracks": "device"}


def summarise(events: list, wall_seconds: float, steps: int, top: int = 15) -> dict:
    by_name: dict = collections.defaultdict(lambda: [0.0, 0])
    by_kind: dict = collections.defaultdict(float)
    for e in events:
        seconds = float(e["dur"]) * 1e-6
        by_name[e["name"]][0] += seconds
        by_name[e["name"]][1] += 1
        by_kind[kind_of(e["name"])] += seconds
    total = sum(by_kind.values())
    # The traced wall time includes starting and stopping the profiler: busy is measured over
    # the span from the first kernel's start to the last one's end.
    span = (max(float(e["ts"]) + float(e["dur"]) for e in events)
            - min(float(e["ts"]) for e in events)) * 1e-6 if events else 0.0
    return {
        "steps": steps, "wall_seconds": wall_seconds, "kernel_seconds": total,
        "span_seconds": span, "kernel_seconds_per_step": total / max(steps, 1),
        "busy_fraction": total / span if span else None,
        "kernels": len(events), "kernels_per_step": len(events) / max(steps, 1),
        "by_kind": {k: {"seconds": v, "fraction": v / total if total else None}
                    for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "top": [{"name": n[:160], "kind": kind_of(n), "seconds": s, "count": c,
                 "fraction": s / total if total else None}
                for n, (s, c) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]],
    }


def step_program(overrides: list, sgld_only: bool):
    """``(fn, args)``: the train step (or its SGLD alone) and its arguments, compiled."""
    config = make_config(PRESET, overrides)
    data = synthetic_cifar(num_train=max(512, 4 * config.data.batch_size))
    exp = build(config, data=data)
    batches = Batches(data.x_train, data.y_train, config.data.batch_size, seed=0)
    if sgld_only:
        from ebm_jax.samplers import init_chains, run_chains
        sampler, params = exp.sampler, exp.params
        x0 = jax.device_put(next(batches)["x"])
        num_steps = config.objective.num_steps

        def run(key, x):
            states = init_chains(sampler, x, params)
            return run_chains(key, sampler, states, params, num_steps)[0].position

        compiled = jax.jit(run).lower(jax.random.key(0), x0).compile()
        return (lambda i: compiled(jax.random.key(i), x0)), config
    step = experiment_train_step(exp)
    state = initial_state(exp)
    batch = jax.device_put(next(batches))
    compiled = jax.jit(step, donate_argnums=0).lower(state, batch).compile()
    holder = {"state": state}

    def call(i):
        holder["state"], metrics = compiled(holder["state"], batch)
        return metrics

    return call, config


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override (data.batch_size=256, ...)")
    parser.add_argument("--steps", type=int, default=3, help="traced steps")
    parser.add_argument("--sgld-only", action="store_true", help="the SGLD chains alone")
    parser.add_argument("--quick", action="store_true", help="WRN-10-1, batch 16")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=None, help="folder for the trace and the summary")
    args = parser.parse_args(argv)
    overrides = list(args.overrides)
    if args.quick:
        overrides = QUICK + overrides
    elif jax.default_backend() == "cpu":
        overrides = CPU_DEFAULTS + overrides
    out = args.out or tempfile.mkdtemp(prefix="profile_step_")
    call, config = step_program(overrides, args.sgld_only)
    for i in range(2):  # warm-up (autotuning, allocator)
        jax.block_until_ready(call(i))
    started = time.perf_counter()
    with jax.profiler.trace(out, create_perfetto_trace=True):
        for i in range(args.steps):
            result = call(10 + i)
        jax.block_until_ready(result)
    wall = time.perf_counter() - started
    paths = glob.glob(os.path.join(out, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise SystemExit(f"no perfetto_trace.json.gz under {out}")
    with gzip.open(paths[0], "rt") as f:
        trace = json.load(f)
    found = device_events(trace)
    where = found["tracks"]
    summary = summarise(found["kernels"], wall, args.steps, args.top)
    if found["ops"]:
        summary["xla_ops"] = summarise(found["ops"], wall, args.steps, args.top)
    summary.update(benchmark="profile_step", config=PRESET, overrides=overrides,
                   sgld_only=args.sgld_only, tracks=where, device=str(jax.devices()[0]),
                   batch=config.data.batch_size, trace=paths[0])
    with open(os.path.join(out, "profile_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"{args.steps} steps traced in {wall:.3f} s on {summary['device']} ({where} tracks): "
          f"{summary['kernels_per_step']:.0f} kernels a step, busy "
          f"{100 * (summary['busy_fraction'] or 0):.0f}%")
    print("\n| kind | seconds | share |\n|---|---|---|")
    for kind, v in summary["by_kind"].items():
        print(f"| {kind} | {v['seconds']:.4f} | {100 * (v['fraction'] or 0):.1f}% |")
    print("\n| kernel | kind | count | seconds | share |\n|---|---|---|---|---|")
    for t in summary["top"]:
        print(f"| {t['name'][:90]} | {t['kind']} | {t['count']} | {t['seconds']:.4f} | "
              f"{100 * (t['fraction'] or 0):.1f}% |")
    if "xla_ops" in summary:
        print("\nXLA ops:\n| op | count | seconds | share |\n|---|---|---|---|")
        for t in summary["xla_ops"]["top"]:
            print(f"| {t['name'][:90]} | {t['count']} | {t['seconds']:.4f} | "
                  f"{100 * (t['fraction'] or 0):.1f}% |")
    print(f"\nsummary: {os.path.join(out, 'profile_summary.json')}")


if __name__ == "__main__":
    main()
