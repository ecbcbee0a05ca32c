"""Robust classifiers as EBMs on the digits: cross-entropy, PGD-AT, TRADES, WEAT, DAT (with
and without frozen batch-norm statistics) and JEM, trained in one run of this script.

    python benchmarks/adversarial.py --quick          # 1 seed, 600 steps a run (DAT: 200 + 400)
    python benchmarks/adversarial.py                  # seeds 0, 1, 2, the presets' 6,000 steps
    python benchmarks/adversarial.py --methods dat pgd_at --seeds 0

Each method is its preset trained by ``ebm_jax.experiments.train`` (the same run as ``ebm-jax
train --config PRESET --set run.seed=S``). Robustness is the summary's (PGD-20 from a random
start on the 360 test digits, L-inf 0.2 and L2 1.0 in the [-1, 1] scale). Generation: every
classifier's digits by PGD ascent on ``f(x)[y]`` from the same held-out OOD seeds (a
procedural pool of the test digits), the step count of the best Fréchet distance kept (DAT's
own evaluation; the same sweep for the others); JEM's row reads its fresh SGLD samples
instead (its own generator; 1,000 of them, as many as the ascent's seeds), and also carries
its ascent figures. DAT's rows add the
curriculum's final ``T`` and the robust and clean accuracy and the generations' Fréchet
distance of its stage-1 checkpoint (the robust classifier it starts from).

One JSON object per method and seed goes to benchmarks/results/<device>-<date>.json with:
``method, preset, seed, steps, clean_accuracy, ece, robust_accuracy_linf, robust_accuracy_l2,
energy_sign_untargeted, energy_sign_targeted, generator, frechet_distance, kid, precision,
recall, coverage, diversity, ascent_best_steps, ascent_frechet_distance, curriculum_T,
stage1_clean_accuracy, stage1_robust_accuracy_linf, stage1_frechet_distance, rollbacks,
train_seconds, wall_seconds``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

ASCENT, SGLD = "pgd_ascent", "sgld_fresh"   # a row's generator
# method -> (preset, overrides, generator)
METHODS = {
    "ce": ("softmax_digits", [], ASCENT),
    "pgd_at": ("at_digits", [], ASCENT),
    "trades": ("trades_digits", [], ASCENT),
    "weat": ("weat_digits", [], ASCENT),
    "dat": ("dat_digits", [], ASCENT),
    "dat_unfrozen": ("dat_digits", ["objective.freeze_statistics=false"], ASCENT),
    "jem": ("jem_digits", [], SGLD),   # its own generator: SGLD from noise
}
ROW_KEYS = ("method", "preset", "seed", "steps", "clean_accuracy", "ece", "robust_accuracy_linf",
            "robust_accuracy_l2", "energy_sign_untargeted", "energy_sign_targeted", "generator",
            "frechet_distance", "kid", "precision", "recall", "coverage", "diversity",
            "ascent_best_steps", "ascent_frechet_distance", "curriculum_T",
            "stage1_clean_accuracy", "stage1_robust_accuracy_linf", "stage1_frechet_distance",
            "rollbacks",
            "train_seconds", "wall_seconds")
YARDSTICK = ("frechet_distance", "kid", "precision", "recall", "coverage")
QUICK_STEPS = 600
FRESH_SAMPLES = 1000   # JEM's fresh samples: as many as DAT's held-out seeds


def read_log(metrics_path: str) -> tuple[Optional[float], int]:
    """``(the last logged curriculum_T or None, the number of rollbacks)`` of a run's
    ``metrics.jsonl``.

    Example::

      >>> import tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "metrics.jsonl")
      >>> with open(path, "w") as f:
      ...     _ = f.write('{"step": 5, "curriculum_T": 2.0}\\n{"event": "rollback"}\\n'
      ...                 '{"step": 10, "curriculum_T": 3.0}\\n')
      >>> read_log(path)
      (3.0, 1)
    """
    last_t, rollbacks = None, 0
    with open(metrics_path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("event") == "rollback":
                rollbacks += 1
            if "curriculum_T" in record:
                last_t = record["curriculum_T"]
    return last_t, rollbacks


def method_row(method: str, seed: int, summary: dict, generation: dict,
               extra: dict) -> dict:
    """One row from a run's ``summary``, its ``generation`` (``ascent_*`` keys: DAT's own
    summary, or the sweep this script ran) and ``extra`` (log and stage-1 figures).

    Example::

      >>> row = method_row("jem", 0, {"test_accuracy": 0.98, "fresh_sample_frechet_distance":
      ...                             2.5}, {"ascent_frechet_distance": 9.0}, {"rollbacks": 0})
      >>> row["generator"], row["frechet_distance"], row["ascent_frechet_distance"]
      ('sgld_fresh', 2.5, 9.0)
    """
    row = {"benchmark": "adversarial", **{k: None for k in ROW_KEYS}, "method": method,
           "preset": METHODS[method][0], "seed": seed, "steps": summary.get("steps"),
           "clean_accuracy": summary.get("test_accuracy")}
    for key in ("ece", "robust_accuracy_linf", "robust_accuracy_l2", "energy_sign_untargeted",
                "energy_sign_targeted", "train_seconds", "wall_seconds"):
        row[key] = summary.get(key)
    row["ascent_best_steps"] = generation.get("ascent_best_steps")
    row["ascent_frechet_distance"] = generation.get("ascent_frechet_distance")
    row["generator"] = METHODS[method][2]
    if row["generator"] == SGLD:   # the fresh samples of its own generator
        row.update({k: summary.get(f"fresh_sample_{k}") for k in YARDSTICK})
    else:
        row.update({k: generation.get(f"ascent_{k}") for k in YARDSTICK})
        row["diversity"] = generation.get("ascent_diversity")
    row.update(extra)
    return row


def stage1_figures(workdir: str, stage1_steps: int, *, steps: Optional[tuple] = None) -> dict:
    """The clean and robust (L-inf) accuracy of a DAT run's checkpoint at ``stage1_steps``,
    and the Fréchet distance of its generations (the run's own sweep, or over ``steps``)."""
    import jax
    import numpy as np

    from ebm_jax.experiments import build, initial_state
    from ebm_jax.experiments.evaluation import method_key, read_run_config
    from ebm_jax.experiments.objectives._classifier import robust_evaluation
    from ebm_jax.experiments.objectives.dat import ascent_yardstick, held_out_seeds
    from ebm_jax.train import Checkpointer

    exp = build(read_run_config(workdir))
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    try:
        state = checkpointer.restore(stage1_steps, initial_state(exp))
    finally:
        checkpointer.close()
    params = state.ema_params
    logits = jax.jit(jax.vmap(exp.logits_fn, (None, 0)))(params, exp.data.x_test)
    robust = robust_evaluation(exp.data, exp.logits_fn, len(exp.data.x_test))
    figures = robust(params, method_key(exp.config))
    settings = exp.config.objective
    seeds = held_out_seeds(exp.config.run.seed, exp.data, settings.generation_seeds)
    generation = ascent_yardstick(exp.logits_fn, params, exp.data, seeds,
                                  steps or settings.sweep_steps,
                                  step_size=settings.contrastive_step_size)
    return {"stage1_clean_accuracy": float(np.mean(np.argmax(logits, -1) == exp.data.y_test)),
            "stage1_robust_accuracy_linf": figures["robust_accuracy_linf"],
            "stage1_frechet_distance": generation["ascent_frechet_distance"]}


def baseline_generation(workdir: str, figure: Optional[str] = None, *,
                        steps: Optional[tuple] = None, num_seeds: Optional[int] = None) -> dict:
    """DAT's generation sweep on another classifier's trained run: ``dat_digits``'s step
    counts (or ``steps``) from the held-out seeds a DAT run of the same seed uses (or the
    first ``num_seeds`` of another number)."""
    from ebm_jax.experiments import make_config
    from ebm_jax.experiments.evaluation import load_run
    from ebm_jax.experiments.objectives.dat import ascent_yardstick, held_out_seeds

    exp, state = load_run(workdir)
    settings = make_config("dat_digits").objective
    seeds = held_out_seeds(exp.config.run.seed, exp.data,
                           num_seeds or settings.generation_seeds)
    return ascent_yardstick(exp.logits_fn, state.ema_params, exp.data, seeds,
                            steps or settings.sweep_steps,
                            step_size=settings.contrastive_step_size, figure=figure)


def method_config(method: str, seed: int, steps: Optional[int]):
    """``(config, stage1_steps or None)``: ``method``'s preset with ``run.seed=seed``
    (``steps``: a shorter run, DAT's stage 1 a third of it; DAT keeps a checkpoint at the
    end of stage 1).

    Example::

      >>> config, stage1 = method_config("dat", 2, 600)
      >>> stage1, config.objective.stage1_steps, config.run.checkpoint_every, config.run.seed
      (200, 200, 200, 2)
    """
    from ebm_jax.experiments import make_config

    preset, overrides, _ = METHODS[method]
    overrides = [f"run.seed={seed}"] + list(overrides)
    stage1, defaults = None, make_config(preset).objective
    if "stage1_steps" in defaults.__dataclass_fields__:
        stage1 = steps // 3 if steps else defaults.stage1_steps
        overrides += [f"objective.stage1_steps={stage1}", f"run.checkpoint_every={stage1}",
                      "run.keep_checkpoints=100"]
    if steps:
        overrides += [f"run.num_steps={steps}", f"run.eval_every={steps}"]
        if stage1 is None:
            overrides.append(f"run.checkpoint_every={steps}")
    return make_config(preset, overrides), stage1


def fresh_generation(workdir: str, num: int = FRESH_SAMPLES) -> dict:
    """The digit yardstick (``fresh_sample_*`` keys) of ``num`` fresh samples of a run's own
    generator (JEM: SGLD from uniform noise, ``run.fresh_sample_steps`` steps): as many
    samples as the ascent's, since a Fréchet distance depends on the number of samples (the
    summary's own fresh samples are 100 on images)."""
    import jax

    from ebm_jax.experiments.evaluation import (digit_yardstick_summary, fresh_samples,
                                                load_run)

    exp, state = load_run(workdir)
    key = jax.random.fold_in(jax.random.key(exp.config.run.seed), 31_337)
    return digit_yardstick_summary(fresh_samples(exp, state.ema_params, key, num),
                                   "fresh_sample_")


def run_method(method: str, seed: int, steps: Optional[int], workdir: str,
               figure_dir: Optional[str] = None) -> dict:
    """Train :func:`method_config`'s run in ``workdir`` and return its row."""
    from ebm_jax.experiments import train

    config, stage1 = method_config(method, seed, steps)
    summary = train(config, workdir, progress=False)
    figure = (os.path.join(figure_dir, f"adversarial-{method}-{seed}.png")
              if figure_dir else None)
    if stage1 is not None:   # DAT: its own evaluation swept its generations
        generation = summary
        if figure:
            shutil.copy(os.path.join(workdir, "predictions.png"), figure)
    else:
        generation = baseline_generation(workdir, figure)
    if METHODS[method][2] == SGLD:
        summary = {**summary, **fresh_generation(workdir)}
    curriculum_t, rollbacks = read_log(os.path.join(workdir, "metrics.jsonl"))
    extra = {"curriculum_T": curriculum_t, "rollbacks": rollbacks}
    if stage1 is not None:
        extra.update(stage1_figures(workdir, stage1))
    return method_row(method, seed, summary, generation, extra)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"1 seed, {QUICK_STEPS} steps a run")
    parser.add_argument("--seeds", nargs="*", type=int)
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--figures", action="store_true",
                        help="save each run's generations beside the results "
                             "(adversarial-METHOD-SEED.png)")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (QUICK_STEPS if args.quick else None)
    path = results_path()
    figure_dir = os.path.dirname(path) if args.figures else None
    if figure_dir:
        os.makedirs(figure_dir, exist_ok=True)
    rows = []
    for seed in seeds:
        for method in args.methods:
            with tempfile.TemporaryDirectory() as scratch:
                row = run_method(method, seed, steps, os.path.join(scratch, "run"), figure_dir)
            if not args.no_save:
                append_row(row, path)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
