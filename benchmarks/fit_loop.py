"""The training loop against the bare jitted step: does ``fit`` run at the step's speed?

For each preset, the train step ``ebm-jax train`` runs (built by ``experiment_train_step``,
jitted over the device mesh by ``sharded_train_step``, donating its state) is timed two ways
from the same initial state, in interleaved pairs:

* **bare**: ``state, metrics = step(state, batch)`` in a Python loop over batches already on the
  devices, one ``block_until_ready`` at the end: the step's own throughput;
* **fit**: :func:`ebm_jax.train.fit` as ``ebm-jax train`` calls it (the run's batches drawn and
  placed on the mesh step by step, metrics averaged and written every ``run.log_every`` steps,
  the divergence guard's rollback checks), without the periodic evaluation and checkpoints,
  which are work of their own (their cost is the ``run.eval_every`` / ``run.checkpoint_every``
  cadence's business, not the loop's).

``fit_vs_bare_step`` is fit's throughput over bare's in each pair; the row keeps the median
and the range over the pairs, the CPU model and the 1-minute load average.

    python benchmarks/fit_loop.py            # jem_digits and cd_2d_rings, 5 pairs of 500 steps
    python benchmarks/fit_loop.py --quick    # 3 pairs of 200 steps
    python benchmarks/fit_loop.py --set run.steps_per_call=10   # fit 10 steps per call
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_peaks import parse_cpuinfo  # noqa: E402
from results_file import append_row, results_path  # noqa: E402

from ebm_jax.experiments import build, initial_state, make_config  # noqa: E402
from ebm_jax.experiments.run import (device_mesh, experiment_train_step,  # noqa: E402
                                     global_batches)
from ebm_jax.train import RollbackPolicy, fit, shard_state, sharded_train_step  # noqa: E402

PRESETS = ("jem_digits", "cd_2d_rings")
QUICK = dict(steps=200, pairs=3)
FULL = dict(steps=500, pairs=5)
DISTINCT_BATCHES = 50  # the bare loop cycles through this many batches placed beforehand


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpuinfo(f.read())["model_name"] or platform.machine()
    except OSError:
        return platform.processor() or platform.machine()


def _copy(state):
    return jax.tree.map(lambda v: v.copy(), state)


def measure(preset: str, steps: int, pairs: int, overrides=()) -> dict:
    """One row: the preset's bare and fit throughputs over ``pairs`` interleaved pairs (fit
    with the config's ``run.steps_per_call``; bare always one step per call)."""
    config = make_config(preset, list(overrides))
    per_call = config.run.steps_per_call
    mesh = device_mesh(config)
    exp = build(config, num_devices=mesh.shape["data"])
    start = shard_state(initial_state(exp), mesh)
    step = sharded_train_step(experiment_train_step(exp), mesh, start)
    looped_step = (step if per_call == 1 else
                   sharded_train_step(experiment_train_step(exp), mesh, start,
                                      steps_per_call=per_call))
    placed = list(itertools.islice(global_batches(exp, mesh, 0), DISTINCT_BATCHES))
    guard = config.guard
    rollback = (RollbackPolicy(guard.rollback_retries, guard.rollback_lr_factor)
                if guard.enabled else None)
    started = time.perf_counter()
    jax.block_until_ready(step(_copy(start), placed[0]))
    compile_seconds = time.perf_counter() - started

    def bare() -> float:
        state = _copy(start)
        jax.block_until_ready(state)
        began = time.perf_counter()
        for i in range(steps):
            state, _ = step(state, placed[i % DISTINCT_BATCHES])
        jax.block_until_ready(state)
        return steps / (time.perf_counter() - began)

    def looped(metrics_path: str) -> float:
        state = _copy(start)
        jax.block_until_ready(state)
        began = time.perf_counter()
        state, _ = fit(looped_step, state, global_batches(exp, mesh, 0, per_call), steps,
                       log_every=config.run.log_every, metrics_path=metrics_path,
                       progress=False, rollback=rollback,
                       restart_batches=lambda s: global_batches(exp, mesh, s, per_call))
        jax.block_until_ready(state)
        return steps / (time.perf_counter() - began)

    with tempfile.TemporaryDirectory() as scratch:
        looped(os.path.join(scratch, "warm.jsonl"))  # the loop's own first-call costs
        results = [(bare(), looped(os.path.join(scratch, f"metrics{i}.jsonl")))
                   for i in range(pairs)]
    ratios = [f / b for b, f in results]
    return {
        "benchmark": "fit_loop",
        "config": preset,
        "overrides": list(overrides),
        "objective": config.objective.kind,
        "devices": mesh.shape["data"],
        "steps_per_call": per_call,
        "steps": steps,
        "pairs": pairs,
        "log_every": config.run.log_every,
        "bare_steps_per_s": statistics.median(b for b, _ in results),
        "fit_steps_per_s": statistics.median(f for _, f in results),
        "fit_vs_bare_step": statistics.median(ratios),
        "fit_vs_bare_step_min": min(ratios),
        "fit_vs_bare_step_max": max(ratios),
        "pairs_measured": [[round(b, 2), round(f, 2)] for b, f in results],
        "compile_seconds": compile_seconds,
        "load_average_1min": os.getloadavg()[0],
        "cpu_model": cpu_model(),
        "date": datetime.date.today().isoformat(),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--config", action="append", default=None,
                        help=f"preset, repeatable (default: {' '.join(PRESETS)})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="config override for every preset")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK['pairs']} pairs of {QUICK['steps']} steps")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    path = results_path()
    for preset in args.config or PRESETS:
        row = measure(preset, sizes["steps"], sizes["pairs"], args.overrides)
        row["quick"] = args.quick
        print(json.dumps(row), flush=True)
        print(f"{preset}: bare {row['bare_steps_per_s']:.1f} steps/s, fit "
              f"{row['fit_steps_per_s']:.1f}: fit/bare {row['fit_vs_bare_step']:.3f} "
              f"[{row['fit_vs_bare_step_min']:.3f}-{row['fit_vs_bare_step_max']:.3f}]",
              flush=True)
        if not args.no_save:
            append_row(row, path)
    if not args.no_save:
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
