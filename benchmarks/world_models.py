"""Energy-based world models and policies against their feed-forward twins, through the
objective registry: each task is a preset trained by ``ebm_jax.experiments.train`` (the same
run as ``ebm-jax train --config PRESET``), whose own metrics hold both methods (the energy
and a regressor of the same size trained beside it on the same batches).

    python benchmarks/world_models.py --quick          # 1 seed, 600 steps a run (a smoke test)
    python benchmarks/world_models.py                  # 3 seeds, the presets' own steps
    python benchmarks/world_models.py --seeds 0 --tasks reach --figure

Tasks (one JSON row per task, method and seed, appended to
benchmarks/results/<device>-<date>.json; ``--no-save`` only prints):

* ``ball_fork`` (preset ``world_model_ball_fork``): next-frame prediction on 12x12 frames of a
  ball that goes one of two ways at a fork. Methods ``ebt`` (best of N descents from noise on
  ``E(context, next frame)``) and ``mse`` (a next-frame MLP predictor). Keys
  ``valid_frame_rate`` (predicted frames at the fork that are valid: one ball on one of the
  two true paths), ``rollout_valid_rate`` (10-step autoregressive rollouts whose every frame
  is valid) and, for ``ebt``, ``failure_auroc`` (the energy of a prediction against its being
  invalid).
* ``reach`` (preset ``ebt_policy_reach``): a 2-D reach task round an obstacle, from
  demonstrations that pass either side. Methods ``ebt_policy`` (best of N descents of
  ``E(observation, action chunk)``) and ``bc_mlp`` (behavioural cloning, same size). Keys
  ``success_rate`` (goal reached without touching the obstacle; 2 inference steps),
  ``success_rate_shifted`` (starts nearer the obstacle), ``success_rate_goal_shifted`` (goals
  beyond the demonstrated ones), for ``ebt_policy`` ``success_by_steps`` (1, 2, 4, 8 steps)
  and ``failure_auroc`` (the highest energy of an episode's chunks against its failing).

Every row has ``task, method, seed, valid_frame_rate, rollout_valid_rate, success_rate,
success_by_steps, failure_auroc`` (None where a task does not measure it), ``steps`` and the
run's ``train_seconds`` and ``wall_seconds`` (both methods train in that one run).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

SUMMARY_KEYS = ("task", "method", "seed", "valid_frame_rate", "rollout_valid_rate",
                "success_rate", "success_by_steps", "failure_auroc")
PRESETS = {"ball_fork": "world_model_ball_fork", "reach": "ebt_policy_reach"}
# Per task: {method: {row key: summary key}}; the energy's method first.
METHODS = {
    "ball_fork": {
        "ebt": {"valid_frame_rate": "valid_frame_rate", "rollout_valid_rate":
                "rollout_valid_rate", "failure_auroc": "failure_auroc",
                "failure_auroc_best_of_n": "failure_auroc_best_of_n",
                "failure_count_best_of_n": "failure_count_best_of_n",
                "valid_frame_rate_all": "valid_frame_rate_all",
                "fork_branch_shares": "fork_branch_shares"},
        "mse": {"valid_frame_rate": "valid_frame_rate_mse",
                "rollout_valid_rate": "rollout_valid_rate_mse",
                "valid_frame_rate_all": "valid_frame_rate_all_mse"},
    },
    "reach": {
        "ebt_policy": {"success_rate": "success_rate", "success_by_steps": "success_by_steps",
                       "success_rate_shifted": "success_rate_shifted",
                       "success_by_steps_shifted": "success_by_steps_shifted",
                       "success_rate_goal_shifted": "success_rate_goal_shifted",
                       "failure_auroc": "failure_auroc", "failures": "failures",
                       "passed_above": "passed_above"},
        "bc_mlp": {"success_rate": "success_rate_bc",
                   "success_rate_shifted": "success_rate_bc_shifted",
                   "success_rate_goal_shifted": "success_rate_bc_goal_shifted"},
    },
}
QUICK_STEPS = 600


def method_rows(task: str, seed: int, summary: dict) -> list[dict]:
    """One row per method of ``task`` from a run's ``summary`` (its ``summary.json``).

    Example::

      >>> rows = method_rows("reach", 0, {"success_rate": 0.99, "success_rate_bc": 0.1,
      ...                                 "steps": 3, "train_seconds": 1.0})
      >>> [(r["method"], r["success_rate"], r["valid_frame_rate"]) for r in rows]
      [('ebt_policy', 0.99, None), ('bc_mlp', 0.1, None)]
    """
    rows = []
    for method, keys in METHODS[task].items():
        row = {"benchmark": "world_models", **{k: None for k in SUMMARY_KEYS},
               "task": task, "method": method, "seed": seed, "preset": PRESETS[task],
               "steps": summary.get("steps"), "train_seconds": summary.get("train_seconds"),
               "wall_seconds": summary.get("wall_seconds")}
        row.update({name: summary.get(source) for name, source in keys.items()})
        rows.append(row)
    return rows


def run_task(task: str, seed: int, overrides: list[str], workdir: str) -> dict:
    """Train ``task``'s preset with ``run.seed=seed`` and ``overrides`` in ``workdir``; the
    run's summary."""
    from ebm_jax.experiments import make_config, train

    config = make_config(PRESETS[task], [f"run.seed={seed}"] + list(overrides))
    return train(config, workdir, progress=False)


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"1 seed, {QUICK_STEPS} steps a run")
    parser.add_argument("--seeds", nargs="*", type=int)
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    parser.add_argument("--tasks", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted override of the presets' configs, as ebm-jax train's")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--figure", action="store_true",
                        help="keep each run's directory (predictions.png, curves.png) beside "
                             "the results")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (QUICK_STEPS if args.quick else None)
    overrides = list(args.set)
    if steps is not None:
        overrides += [f"run.num_steps={steps}", f"run.eval_every={steps}",
                      f"run.checkpoint_every={steps}"]
    path = results_path()
    rows = []
    for seed in seeds:
        for task in args.tasks:
            with tempfile.TemporaryDirectory() as scratch:
                workdir = os.path.join(scratch, "run")
                if args.figure:  # a fresh directory beside the results
                    workdir = os.path.join(os.path.dirname(path), f"world_models-{task}-{seed}")
                    shutil.rmtree(workdir, ignore_errors=True)
                summary = run_task(task, seed, overrides, workdir)
            for row in method_rows(task, seed, summary):
                if not args.no_save:
                    append_row(row, path)
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
