"""Train-step throughput of the main presets: steps/s, examples/s, FLOPs and fraction of peak.

    python benchmarks/train_step.py                  # the five presets below, 500 timed steps each
    python benchmarks/train_step.py --quick          # 20 timed steps each, about a minute on 2 cores
    python benchmarks/train_step.py --config cd_2d_8gaussians --set data.batch_size=512

Default presets, one per objective: ``jem_digits`` (JEM: classifier + SGLD from a replay
buffer), ``cd_digits`` (contrastive divergence, SGLD from a replay buffer),
``nce_2d_8gaussians`` (noise-contrastive estimation), ``rl_digits`` (recovery likelihood:
MALA chains per noise level) and ``dsm_2d_8gaussians`` (denoising score matching).
``--config`` (repeatable) replaces the list; ``--set KEY=VALUE`` (a dotted config key, as
``ebm-jax train --set``: ``objective.num_steps=5``) applies to every preset.

The step is the one ``ebm-jax train`` runs on one device:
``ebm_jax.experiments.experiment_train_step(build(config))`` (loss, optimizer, EMA and the
divergence guard when ``config.guard.enabled``), under ``jax.jit`` with the state donated and
the XLA options that ``ebm-jax train`` compiles it with (``compiler_options`` in the row: on
CPU, those of ``run.cpu_compile``, ``"o2"`` unless ``--set run.cpu_compile=xla`` or
``fast``), on the preset's data.

Timing: ``compile_seconds`` is lowering + compilation, timed apart; one warm-up step
(``warmup_seconds``); then ``--steps`` steps (batches drawn beforehand) are dispatched
back to back and timed to the last one's completion.

Sampling: ``chains`` and ``sampler_steps`` per train step, read from the objective's
settings: an objective whose chains start from a replay buffer (``objective.chain_start``:
JEM, CD) runs ``data.batch_size`` chains of ``objective.num_steps``; one with
``objective.num_langevin_steps`` (recovery likelihood) runs ``data.batch_size`` chains with
``objective.split_batch``, else ``data.batch_size`` x its noise levels; none otherwise (NCE,
DSM, SSM, softmax). ``chain_steps_per_s`` follows from them; ``sgld_steps`` is
``objective.num_steps`` where the objective has one (else null).

FLOPs (benchmarks/device_peaks.py):

* ``flops_per_step``: ``jaxpr_flops`` of the train step: the dot and convolution FLOPs of
  the whole step (sampling chains, loss, gradient), every ``lax.scan`` body (the SGLD or
  Langevin chain) times its trip count; ``flops_while_loops`` counts loops of unknown
  trip count, taken once. ``achieved_flops_per_s`` and ``fraction_of_peak`` use it.
* ``xla_flops_per_step``: XLA's cost analysis of the compiled step, which counts a while
  loop's body once (the chains' scans included), so it is well below the jaxpr count
  whenever the step samples; reported for reference only.
* peak: ``device_peak_flops``, the FP32 peak on a CPU (the whole machine's), the
  config's compute dtype (``model.dtype``) on accelerators.

One JSON object per preset, appended to benchmarks/results/<device>-<date>.json
(``--no-save``: not written), then a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from typing import Optional

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device_peaks import compiled_flops, device_peak_flops, jaxpr_flops  # noqa: E402
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax.experiments import (build, experiment_train_step, initial_state,  # noqa: E402
                                 make_config)
from ebm_jax.experiments.run import local_batches, train_step_compiler_options  # noqa: E402

PRESETS = ["jem_digits", "cd_digits", "nce_2d_8gaussians", "rl_digits", "dsm_2d_8gaussians"]
QUICK_STEPS = 20


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _num_levels(settings) -> int:
    """Noise levels of a multi-level objective: its module's ``num_levels(settings)`` when it
    defines one (the schedule decides), else the ``num_levels`` field."""
    count = getattr(sys.modules[type(settings).__module__], "num_levels", None)
    return count(settings) if callable(count) else settings.num_levels


def sampling(config) -> tuple[Optional[int], Optional[int]]:
    """(chains, sampler steps) of one train step of ``config``; (None, None) without sampling.

    Read from the objective's settings, whatever its name: persistent chains from a replay
    buffer (``chain_start``) take ``num_steps`` steps, one chain per example; multi-level
    chains (``num_langevin_steps``) one per example with ``split_batch``, else one per example
    and level."""
    settings, batch = config.objective, config.data.batch_size
    if getattr(settings, "chain_start", None) is not None:
        return batch, settings.num_steps
    if getattr(settings, "num_langevin_steps", None) is not None:
        split = getattr(settings, "split_batch", True)
        return batch * (1 if split else _num_levels(settings)), settings.num_langevin_steps
    return None, None


def program(preset: str, overrides: list[str], num_batches: int = 1):
    """``(config, step_fn, state, batches)``: the unjitted train step of ``preset`` as
    ``ebm-jax train`` builds it, its initial state and ``num_batches`` batches."""
    config = make_config(preset, overrides)
    exp = build(config)
    state = initial_state(exp)
    batches = local_batches(exp, 0)  # with the objective's extras (concepts)
    step_fn = experiment_train_step(exp)
    return config, step_fn, state, [next(batches) for _ in range(num_batches)]


def measure(preset: str, overrides: list[str], steps: int) -> dict:
    """Compile and time ``steps`` train steps of ``preset`` with ``overrides``; one row."""
    config, step_fn, state, prepared = program(preset, overrides, steps + 1)
    model = jaxpr_flops(step_fn, state, prepared[0])  # traces only, nothing runs
    started = time.perf_counter()
    options = train_step_compiler_options(config)
    compiled = jax.jit(step_fn, donate_argnums=0, compiler_options=options or None).lower(
        state, prepared[0]).compile()
    compile_seconds = time.perf_counter() - started
    xla = compiled_flops(compiled)

    started = time.perf_counter()
    state, metrics = compiled(state, prepared[0])  # warm-up
    jax.block_until_ready((state, metrics))
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for batch in prepared[1:]:
        state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - started

    device = jax.devices()[0]
    peak_dtype = "float32" if device.platform == "cpu" else config.model.dtype
    peak, peak_description = device_peak_flops(device, peak_dtype)
    steps_per_s = steps / seconds
    achieved = model.flops * steps_per_s
    chains, sampler_steps = sampling(config)
    return {
        "benchmark": "train_step",
        "config": preset,
        "objective": config.objective.kind,
        "overrides": overrides,
        "device": device_name(),
        "jax": jax.__version__,
        "dtype": config.model.dtype,
        "batch_size": config.data.batch_size,
        "chains": chains,
        "sampler_steps": sampler_steps,
        "sgld_steps": getattr(config.objective, "num_steps", None),
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps_per_s,
        "examples_per_s": steps_per_s * config.data.batch_size,
        "chain_steps_per_s": None if chains is None else steps_per_s * chains * sampler_steps,
        "compile_seconds": compile_seconds,
        "compiler_options": options,
        "warmup_seconds": warmup_seconds,
        "flops_per_step": model.flops,
        "conv_flops_per_step": model.conv_flops,
        "dot_flops_per_step": model.dot_flops,
        "flops_while_loops": model.while_loops,
        "xla_flops_per_step": _finite_or_none(xla),
        "flops_note": ("flops_per_step: jaxpr_flops (dot + conv FLOPs, scans times their trip "
                       "count), used for fraction_of_peak; xla_flops_per_step: XLA cost analysis, "
                       "which counts a while loop body (the sampler's scan) once"),
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s": peak,
        "peak_dtype": peak_dtype,
        "peak_description": peak_description,
        "fraction_of_peak": achieved / peak if peak else None,
        "final_loss": _finite_or_none(float(metrics["loss"])) if "loss" in metrics else None,
        "machine": platform.processor() or platform.machine(),
        "date": datetime.date.today().isoformat(),
    }


def print_table(rows: list) -> None:
    print("\n| config | objective | batch | steps/s | examples/s | chain-steps/s | compile s "
          "| MFLOP/step | XLA MFLOP/step | % peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        chain = r["chain_steps_per_s"]
        xla = r["xla_flops_per_step"]
        frac = r["fraction_of_peak"]
        print(f"| {r['config']} | {r['objective']} | {r['batch_size']} | {r['steps_per_s']:,.1f} "
              f"| {r['examples_per_s']:,.0f} | {'' if chain is None else f'{chain:,.0f}'} "
              f"| {r['compile_seconds']:.2f} | {r['flops_per_step'] / 1e6:,.1f} "
              f"| {'n/a' if xla is None else f'{xla / 1e6:,.1f}'} "
              f"| {'n/a' if frac is None else f'{100 * frac:.2f}'} |")
    if rows:
        print(f"peak ({rows[0]['peak_dtype']}): {rows[0]['peak_description']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--config", action="append", default=None,
                        help=f"preset to measure, repeatable (default: {' '.join(PRESETS)})")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="config override with a dotted key (data.batch_size=512, "
                             "objective.num_steps=5), applied to every preset; repeatable")
    parser.add_argument("--steps", type=int, default=500, help="timed steps per preset")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_STEPS} timed steps (about a minute on 2 CPU cores)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)
    steps = QUICK_STEPS if args.quick else args.steps
    path = results_path()
    rows = []
    for preset in args.config or PRESETS:
        row = measure(preset, args.overrides, steps)
        row["quick"] = args.quick
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.no_save:
            append_row(row, path)
    print_table(rows)
    if not args.no_save:
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
