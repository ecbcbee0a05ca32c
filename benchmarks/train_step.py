"""Train-step throughput of a preset: steps/s and examples/s, with compile time apart.

    python benchmarks/train_step.py                  # jem_digits, 500 timed steps
    python benchmarks/train_step.py --quick          # 100 timed steps
    python benchmarks/train_step.py --config cd_2d_8gaussians --set batch_size=512

Prints one JSON object per preset and appends it to benchmarks/results/<device>-<date>.json.
Timing: the first call (compile + one step) is reported as ``compile_seconds``; then
``--steps`` steps are dispatched back to back and timed to the last one's completion.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import jax

from ebm_jax.config import make_config
from ebm_jax.data import Batches
from ebm_jax.experiment import build, initial_state
from ebm_jax.train import make_train_step


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu-{os.cpu_count()}cores"
    return device.device_kind.lower().replace(" ", "-")


def measure(preset: str, overrides: list[str], steps: int) -> dict:
    config = make_config(preset, overrides)
    exp = build(config)
    state = initial_state(exp)
    batches = Batches(exp.data.x_train, exp.data.y_train, config.batch_size, seed=0)
    train_step = jax.jit(make_train_step(exp.loss, exp.optimizer), donate_argnums=0)
    prepared = [next(batches) for _ in range(steps + 1)]
    started = time.perf_counter()
    state, _ = train_step(state, prepared[0])
    jax.block_until_ready(state)
    compile_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for batch in prepared[1:]:
        state, _ = train_step(state, batch)
    jax.block_until_ready(state)
    seconds = time.perf_counter() - started
    return {
        "benchmark": "train_step",
        "config": preset,
        "overrides": overrides,
        "device": device_name(),
        "jax": jax.__version__,
        "batch_size": config.batch_size,
        "sgld_steps": config.sgld_steps,
        "steps": steps,
        "steps_per_s": steps / seconds,
        "examples_per_s": steps * config.batch_size / seconds,
        "chain_steps_per_s": steps * config.batch_size * config.sgld_steps / seconds,
        "compile_seconds": compile_seconds,
        "machine": platform.processor() or platform.machine(),
        "date": datetime.date.today().isoformat(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=None,
                        help="preset(s) to measure (default: jem_digits)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="100 timed steps")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args()
    steps = 100 if args.quick else args.steps
    rows = [measure(p, args.overrides, steps) for p in (args.config or ["jem_digits"])]
    for row in rows:
        print(json.dumps(row))
    if not args.no_save:
        out_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"{rows[0]['device']}-{rows[0]['date']}.json")
        with open(path, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
