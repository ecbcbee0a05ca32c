"""The ``ebm-jax`` command.

::

    ebm-jax train                                  # JEM on the embedded digits
    ebm-jax train --config cd_2d_8gaussians --set num_steps=2000
    ebm-jax train --workdir runs/a --resume        # continue from the latest checkpoint
    ebm-jax train --devices 4                      # data parallel over 4 devices (default: all)
    ebm-jax evaluate runs/jem_digits               # report.json + figures, beside the baseline
    ebm-jax presets                                # list the named configs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from ebm_jax.config import PRESETS, ConfigError, make_config

SUMMARY_KEYS = ("test_accuracy", "ece", "auroc_uniform_noise", "energy_data_mean",
                "energy_noise_mean", "sample_confidence", "sample_in_range_fraction", "kl_nats",
                "steps", "devices", "wall_seconds", "params_fingerprint")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebm-jax", description="Train and sample energy-based models.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a preset and write a run directory")
    train.add_argument("--config", default="jem_digits", help="preset name (see `ebm-jax presets`)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config field; repeatable")
    train.add_argument("--workdir", default=None, help="run directory (default: runs/<config>)")
    train.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    train.add_argument("--overwrite", action="store_true", help="discard a previous run in the workdir")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--devices", type=int, default=None, metavar="N",
                       help="data-parallel over the first N devices (default: all; on CPU, "
                            "JAX_NUM_CPU_DEVICES=8 makes eight)")
    evaluate = sub.add_parser("evaluate", help="calibration, OOD detection and robustness of a "
                              "trained run, beside its softmax baseline")
    evaluate.add_argument("run_dir", help="a run directory written by `ebm-jax train`")
    evaluate.add_argument("--baseline", default=None,
                          help="the baseline's run directory (default: a sibling softmax run of "
                               "the same dataset and network, if there is one)")
    evaluate.add_argument("--metrics", nargs="+", default=None,
                          help="classification ood robustness (default: all that apply)")
    evaluate.add_argument("--purify", action="store_true",
                          help="also classify the attacks after SGLD purification")
    evaluate.add_argument("--no-figures", action="store_true", help="write report.json only")
    sub.add_parser("presets", help="list the named configs")
    return parser


def _evaluate(args) -> int:
    from ebm_jax.evaluation import comparison_table, evaluate_run, find_baseline

    options = dict(metrics_requested=args.metrics, purify=args.purify,
                   figures=not args.no_figures)
    report = evaluate_run(args.run_dir, **options)
    baseline_dir = args.baseline or find_baseline(args.run_dir)
    baseline = None
    if baseline_dir is not None:
        options["metrics_requested"] = report["metrics"]
        baseline = evaluate_run(baseline_dir, **options)
    print(comparison_table(report, baseline))
    print(f"report: {os.path.join(args.run_dir, 'evaluation', 'report.json')}"
          + (f" (baseline: {baseline_dir})" if baseline_dir else " (no baseline found)"))
    return 0


def _exit_code(error: Exception) -> Optional[int]:
    """Exit status of the failures that end a run with one clear line: 2 for a dataset that is
    not prepared (the message says how to prepare it), 1 for training that diverged through
    every rollback (the message names the intact checkpoint); None for anything else."""
    from ebm_jax.data.tfds_source import DatasetNotPreparedError
    from ebm_jax.train.guard import TrainingDiverged

    if isinstance(error, DatasetNotPreparedError):
        return 2
    if isinstance(error, TrainingDiverged):
        return 1
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        for name, cfg in sorted(PRESETS.items()):
            print(f"{name:22s} dataset={cfg.dataset} objective={cfg.objective} model={cfg.model}")
        return 0
    if args.command == "evaluate":
        try:
            return _evaluate(args)
        except ConfigError as error:
            print(f"ebm-jax: error: {error}", file=sys.stderr)
            return 2
    try:
        config = make_config(args.config, args.overrides)
        workdir = args.workdir or f"runs/{config.name}"
        from ebm_jax.experiment import train  # imports jax: after the config is known to be good

        summary = train(config, workdir, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress, devices=args.devices)
    except ConfigError as error:
        print(f"ebm-jax: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebm-jax: interrupted; the last checkpoint is intact, continue with --resume",
              file=sys.stderr)
        return 130
    except Exception as error:
        code = _exit_code(error)
        if code is None:
            raise
        print(f"ebm-jax: error: {error}", file=sys.stderr)
        return code
    shown = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    print(json.dumps(shown, indent=2))
    print(f"run directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
