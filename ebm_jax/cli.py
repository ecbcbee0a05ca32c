"""The ``ebm-jax`` command.

::

    ebm-jax train                                  # JEM on the embedded digits
    ebm-jax train --config cd_2d_8gaussians --set num_steps=2000
    ebm-jax train --workdir runs/a --resume        # continue from the latest checkpoint
    ebm-jax presets                                # list the named configs
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ebm_jax.config import PRESETS, ConfigError, make_config

SUMMARY_KEYS = ("test_accuracy", "ece", "auroc_uniform_noise", "energy_data_mean",
                "energy_noise_mean", "sample_confidence", "sample_in_range_fraction", "kl_nats",
                "steps", "wall_seconds", "params_fingerprint")


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
    sub.add_parser("presets", help="list the named configs")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        for name, cfg in sorted(PRESETS.items()):
            print(f"{name:22s} dataset={cfg.dataset} objective={cfg.objective} model={cfg.model}")
        return 0
    try:
        config = make_config(args.config, args.overrides)
        workdir = args.workdir or f"runs/{config.name}"
        from ebm_jax.experiment import train  # imports jax: after the config is known to be good

        summary = train(config, workdir, resume=args.resume, overwrite=args.overwrite,
                        progress=not args.no_progress)
    except ConfigError as error:
        print(f"ebm-jax: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ebm-jax: interrupted; the last checkpoint is intact, continue with --resume",
              file=sys.stderr)
        return 130
    shown = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    print(json.dumps(shown, indent=2))
    print(f"run directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
