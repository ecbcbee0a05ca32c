"""Data-parallel scaling of the jem_cifar10 train step: images/s, FLOPs and fraction of peak.

    python benchmarks/scaling.py                                  # accelerator: WRN-28-10, bf16
    python benchmarks/scaling.py --cpu-devices 8 --devices 1,8    # CPU: WRN-16-2, float32
    python benchmarks/scaling.py --quick                          # WRN-10-1, batch 16, 3 steps
    python benchmarks/scaling.py --set data.batch_size=256 --steps 50

What runs: the ``jem_cifar10`` preset (JEM: WRN-28-10 classifier, SGLD 20 steps from a
replay buffer of 10,000, batch 64, bfloat16 compute) built by ``ebm_jax.experiments.build``
on synthetic CIFAR-shaped data (random images in [-1, 1], labels 0..9; no dataset needed),
and stepped as ``ebm_jax.experiments.train`` steps it: ``device_mesh`` (``make_data_mesh``
after checking that the batch and the replay buffer split over the devices),
``shard_state``, ``shard_batch`` and ``sharded_train_step``. On a CPU the default is a
reduced network, WRN-16-2 in float32 (XLA's CPU convolutions are slow in bfloat16);
``--set`` overrides anything, with dotted config keys (``model.depth=10``,
``data.batch_size=256``, ``objective.num_steps=5``). The global batch is the same for
every device count (strong scaling). ``sgld_steps`` in the rows is
``objective.num_steps``.

For each device count (``--devices 1,8``; default 1 and all): ``compile_seconds`` is
lowering + compilation; one warm-up step runs; then ``--steps`` steps (default 10, 3 on
CPU) are dispatched back to back (batches sharded beforehand) and timed to the last one's
completion.

FLOPs per step, two counts (see benchmarks/device_peaks.py):

* ``model_flops_per_step``: dot and convolution FLOPs of the whole step from its jaxpr,
  ``lax.scan`` bodies (the SGLD chain) times their trip count; global, all devices.
  ``achieved_flops_per_s`` and ``fraction_of_peak`` use this count.
* ``xla_flops_per_step_per_device``: XLA's cost analysis of the compiled program, which
  under SPMD is one device's program (total = per device * n). XLA counts a while loop's
  body once, so with SGLD in a scan it reports about one SGLD step's worth, not 20.

Peak: ``device_peak_flops`` for the compute dtype, times n for accelerators. Beside it,
``matmul_ceiling_flops_per_s``: a measured square matmul (2048 on CPU, 8192 elsewhere) in
the compute dtype on one device, and ``fraction_of_matmul_ceiling``; on a VM the derived
CPU peak uses the nominal clock, and boost clocks can take a matmul above it. Virtual CPU
devices (``--cpu-devices``) share the machine's cores: their peak is the machine's, not
n times it, and the rows say so (``cpu_devices_share_cores``).

One JSON object per device count, appended (one per line) to
benchmarks/results/<device>-<date>.json, then a table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device_peaks import compiled_flops, device_peak_flops, jaxpr_flops  # noqa: E402
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax.data import Batches  # noqa: E402
from ebm_jax.experiments import Data, build, initial_state, make_config  # noqa: E402
from ebm_jax.experiments.run import device_mesh, experiment_train_step  # noqa: E402
from ebm_jax.parallel import shard_batch  # noqa: E402
from ebm_jax.train import shard_state, sharded_train_step  # noqa: E402

PRESET = "jem_cifar10"
CPU_DEFAULTS = ["model.depth=16", "model.widen_factor=2", "model.dtype=float32"]
QUICK = ["model.depth=10", "model.widen_factor=1", "data.batch_size=16"]
IMAGE_SHAPE = (32, 32, 3)


def synthetic_cifar(num_train: int = 2048, num_test: int = 256, seed: int = 0) -> Data:
    """CIFAR-10-shaped random data: float32 images uniform in [-1, 1], int32 labels 0..9."""
    rng = np.random.default_rng(seed)

    def images(n):
        return rng.uniform(-1.0, 1.0, (n, *IMAGE_SHAPE)).astype(np.float32)

    def labels(n):
        return rng.integers(0, 10, n).astype(np.int32)

    return Data(images(num_train), labels(num_train), images(num_test), labels(num_test),
                (-1.0, 1.0), IMAGE_SHAPE, 10, None)


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def matmul_ceiling(dtype: str, size: int, repeats: int = 5) -> float:
    """FLOP/s of a ``size`` x ``size`` matmul in ``dtype`` on the first device, best of
    ``repeats``: a measured ceiling beside the derived or published peak."""
    import jax.numpy as jnp

    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda a, b: a @ b)
    jax.block_until_ready(matmul(a, a))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(matmul(a, a))
        best = min(best, time.perf_counter() - started)
    return 2.0 * size**3 / best


def model_name(model) -> str:
    """The network of a ``model`` config section: ``wrn-DEPTH-WIDEN`` for a Wide-ResNet."""
    if model.kind == "wrn":
        return f"wrn-{model.depth}-{model.widen_factor}"
    return model.kind


def measure(config, data: Data, num_devices: int, steps: int) -> dict:
    """Time ``steps`` train steps of ``config`` on the first ``num_devices`` devices."""
    mesh = device_mesh(config, num_devices)
    exp = build(config, data=data, num_devices=num_devices)
    state = shard_state(initial_state(exp), mesh)
    train_step = experiment_train_step(exp)  # as `ebm-jax train` steps it
    step = sharded_train_step(train_step, mesh, state)
    batch_size = config.data.batch_size
    batches = Batches(data.x_train, data.y_train, batch_size, seed=config.run.seed)
    prepared = [shard_batch(next(batches), mesh) for _ in range(steps + 1)]
    jax.block_until_ready(prepared)

    with jax.set_mesh(mesh):  # as the sharded step traces it; nothing runs
        model = jaxpr_flops(train_step, state, prepared[0])
    started = time.perf_counter()
    compiled = step.lower(state, prepared[0]).compile()
    compile_seconds = time.perf_counter() - started
    xla_per_device = compiled_flops(compiled)

    started = time.perf_counter()
    state, metrics = compiled(state, prepared[0])  # warm-up
    jax.block_until_ready((state, metrics))
    warmup_seconds = time.perf_counter() - started
    started, cpu_started = time.perf_counter(), time.process_time()
    for batch in prepared[1:]:
        state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - started
    busy_cores = (time.process_time() - cpu_started) / seconds  # all of this process's threads

    devices = list(mesh.devices.flat)
    platform = devices[0].platform
    peak, peak_description = device_peak_flops(devices[0], config.model.dtype)
    shared_cores = platform == "cpu"
    peak_total = None if peak is None else (peak if shared_cores else peak * num_devices)
    steps_per_s = steps / seconds
    achieved = model.flops * steps_per_s
    achieved_xla = xla_per_device * num_devices * steps_per_s
    row = {
        "benchmark": "scaling", "config": PRESET,
        "model": model_name(config.model), "dtype": config.model.dtype,
        "devices": num_devices, "platform": platform, "device_kind": devices[0].device_kind,
        "global_batch": batch_size, "per_device_batch": batch_size // num_devices,
        "sgld_steps": getattr(config.objective, "num_steps", None), "steps": steps,
        "steps_per_s": steps_per_s, "images_per_s": batch_size * steps_per_s,
        "seconds": seconds, "compile_seconds": compile_seconds, "warmup_seconds": warmup_seconds,
        "model_flops_per_step": model.flops,
        "model_flops_per_step_per_device": model.flops / num_devices,
        "model_conv_flops_per_step": model.conv_flops, "model_dot_flops_per_step": model.dot_flops,
        "model_flops_unknown_while_loops": model.while_loops,
        "xla_flops_per_step_per_device": _finite_or_none(xla_per_device),
        "xla_flops_per_step_total": _finite_or_none(xla_per_device * num_devices),
        "achieved_flops_per_s": achieved,
        "achieved_flops_per_s_xla": _finite_or_none(achieved_xla),
        "peak_flops_per_s_per_device": peak,
        "peak_flops_per_s_total": peak_total,
        "fraction_of_peak": None if not peak_total else achieved / peak_total,
        "fraction_of_peak_xla": (None if not peak_total
                                 else _finite_or_none(achieved_xla / peak_total)),
        "peak_description": peak_description,
        "final_loss": _finite_or_none(float(metrics["loss"])) if "loss" in metrics else None,
        # CPU seconds of this process per second while the steps ran: on CPU, how many
        # cores the step kept busy (on accelerators, the host's dispatch work).
        "host_busy_cores": busy_cores,
        # The machine's 1-minute load average as the timed steps ended: above the core count
        # (os.cpu_count()), other processes competed for the cores.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if shared_cores:
        row["cpu_devices_share_cores"] = num_devices > 1
        row["peak_note"] = ("virtual CPU devices share this machine's cores: the total peak is "
                            "the machine's, not devices x per-device")
    return row


def parse_devices(text: str | None, available: int) -> list[int]:
    if not text:
        return sorted({1, available})
    counts = [int(part) for part in text.split(",") if part.strip()]
    too_many = [n for n in counts if n > available or n < 1]
    if too_many:
        raise SystemExit(f"--devices {text}: expected counts in 1..{available} (the devices "
                         f"present; on CPU add more with --cpu-devices)")
    return counts


def print_table(rows: list) -> None:
    print("\n| devices | model | dtype | batch/device | images/s | steps/s | compile s "
          "| model GFLOP/step | XLA GFLOP/step/device | achieved GFLOP/s | peak GFLOP/s "
          "| % of peak | speedup | host busy cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = next((r for r in rows if r["devices"] == 1), None)
    for r in rows:
        xla = r["xla_flops_per_step_per_device"]
        peak = r["peak_flops_per_s_total"]
        frac = r["fraction_of_peak"]
        speedup = r["images_per_s"] / base["images_per_s"] if base else None
        print(f"| {r['devices']} | {r['model']} | {r['dtype']} | {r['per_device_batch']} "
              f"| {r['images_per_s']:,.1f} | {r['steps_per_s']:.3f} | {r['compile_seconds']:.1f} "
              f"| {r['model_flops_per_step'] / 1e9:,.1f} "
              f"| {'n/a' if xla is None else f'{xla / 1e9:,.1f}'} "
              f"| {r['achieved_flops_per_s'] / 1e9:,.1f} "
              f"| {'n/a' if peak is None else f'{peak / 1e9:,.0f}'} "
              f"| {'n/a' if frac is None else f'{100 * frac:.1f}'} "
              f"| {'' if speedup is None else f'{speedup:.2f}x'} | {r['host_busy_cores']:.2f} |")
    if rows and rows[0]["platform"] == "cpu" and any(r["devices"] > 1 for r in rows):
        print("\nCPU devices are virtual: they share the machine's cores, so the peak is the "
              "machine's for every device count.")
    if rows:
        print(f"peak: {rows[0]['peak_description']}")
        r = rows[0]
        print(f"measured {r['matmul_ceiling_size']}^2 {r['dtype']} matmul on one device: "
              f"{r['matmul_ceiling_flops_per_s'] / 1e9:,.1f} GFLOP/s; the train step reaches "
              + ", ".join(f"{100 * x['fraction_of_matmul_ceiling']:.1f}% ({x['devices']} dev)"
                          for x in rows) + " of it")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--devices", default=None,
                        help="comma-separated device counts, e.g. 1,8 (default: 1 and all)")
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="run on N virtual CPU devices (sets jax_platforms=cpu and "
                             "jax_num_cpu_devices=N before JAX starts its backend)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="config override with a dotted key (data.batch_size=256, "
                             "model.depth=10), after the defaults; repeatable")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per device count (default: 10; 3 on CPU, where a "
                             "WRN-16-2 step takes tens of seconds)")
    parser.add_argument("--num-train", type=int, default=2048, help="synthetic training images")
    parser.add_argument("--quick", action="store_true",
                        help="WRN-10-1, batch 16, 3 timed steps (under a minute on 2 CPU cores)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)

    if args.cpu_devices is not None:
        from jax._src import xla_bridge

        if xla_bridge.backends_are_initialized():
            raise SystemExit("--cpu-devices: JAX's backend already started; expected it unset")
        jax.config.update("jax_platforms", "cpu")
        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    available = len(jax.devices())
    if args.cpu_devices is not None and available != args.cpu_devices:
        raise SystemExit(f"--cpu-devices {args.cpu_devices}: JAX shows {available} devices")
    counts = parse_devices(args.devices, available)
    on_cpu = jax.devices()[0].platform == "cpu"
    overrides = (CPU_DEFAULTS if on_cpu else []) + (QUICK if args.quick else []) + args.overrides
    steps = 3 if args.quick else args.steps or (3 if on_cpu else 10)
    config = make_config(PRESET, overrides)
    data = synthetic_cifar(args.num_train)

    device, date = device_name(), datetime.date.today().isoformat()
    out = results_path(date)
    ceiling_size = 2048 if on_cpu else 8192
    ceiling = matmul_ceiling(config.model.dtype, ceiling_size)
    rows = []
    for n in counts:
        row = measure(config, data, n, steps)
        row.update(overrides=overrides, device=device, jax=jax.__version__, date=date,
                   quick=args.quick, synthetic_data=True, cpu_count=os.cpu_count(),
                   matmul_ceiling_flops_per_s=ceiling, matmul_ceiling_size=ceiling_size)
        # On CPU every device count shares the same cores; on accelerators n devices.
        total_ceiling = ceiling if on_cpu else ceiling * n
        row["fraction_of_matmul_ceiling"] = row["achieved_flops_per_s"] / total_ceiling
        base = next((r for r in rows if r["devices"] == 1), None)
        if base is not None:
            row["speedup_vs_1_device"] = row["images_per_s"] / base["images_per_s"]
            row["scaling_efficiency"] = row["speedup_vs_1_device"] / n
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.no_save:
            append_row(row, out)
    print_table(rows)
    if not args.no_save:
        print(f"appended to {out}")


if __name__ == "__main__":
    main()
