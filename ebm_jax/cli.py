"""The ``ebm-jax`` command. It imports only :mod:`ebm_jax.experiments`.

::

    ebm-jax train                                  # JEM on the embedded digits
    ebm-jax train --config cd_2d_8gaussians --set run.num_steps=2000
    ebm-jax train --set objective=nce --set data.dataset=rings
    ebm-jax train --workdir runs/a --resume        # continue the run saved in runs/a
    ebm-jax train --devices 4                      # data parallel over 4 devices (default: all)
    ebm-jax train --coordinator host0:8476 --num-processes 4 --process-id 0   # one of 4 hosts
    ebm-jax launch --processes 2 -- train --config jem_digits   # 2 processes on this machine
    ebm-jax evaluate runs/jem_digits               # report.json + figures, beside the baseline
    ebm-jax doctor --config jem_digits --steps 300 # a pilot: exit 0 healthy, 3 a problem found
    ebm-jax presets                                # the named configs, by objective
    ebm-jax config cd_2d_rings --set objective.sampler.step_size=0.001   # the resolved config
    ebm-jax tabular augment data.csv --target label --per-class 100 --out synthetic.csv
    ebm-jax tabular evaluate data.csv --target label --n-real 20 50 --seeds 10
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from ebm_jax.experiments.config import ConfigError, apply_overrides
from ebm_jax.experiments.objectives import get_objective
from ebm_jax.experiments.presets import (PRESETS, load_config_file, make_config,
                                         presets_by_objective)
from ebm_jax.experiments.tabular import SAMPLERS

DEFAULT_PRESET = "jem_digits"
SUMMARY_KEYS = ("test_accuracy", "ece", "softmax_accuracy", "softmax_ece", "accuracy_warning",
                "calibration_warning",
                "auroc_uniform_noise", "energy_data_mean",
                "energy_noise_mean", "sample_confidence", "sample_in_range_fraction", "kl_nats",
                "psnr", "psnr_noisy", "branch_hit_rate", "branch_hit_rate_start",  # predictors
                "steps", "devices", "wall_seconds", "params_fingerprint")


def _add_set_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a config field by its dotted name "
                             "(objective.sampler.step_size=0.01, run.num_steps=100); "
                             "objective=KIND switches to that objective's defaults; repeatable")


def _add_group_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "many processes", "one process of a run over several hosts (JAX's distributed "
        "runtime); every process runs the same command with its own --process-id")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="process 0's address (or JAX_COORDINATOR_ADDRESS)")
    group.add_argument("--num-processes", default=None, metavar="N",
                       help="how many processes (or JAX_NUM_PROCESSES)")
    group.add_argument("--process-id", default=None, metavar="I",
                       help="this process's id, 0 to N-1 (or JAX_PROCESS_ID)")
    group.add_argument("--distributed", action="store_true",
                       help="let JAX detect the three above (Cloud TPU, SLURM, Open MPI, "
                            "Kubernetes)")
    group.add_argument("--local-devices", type=int, default=None, metavar="K",
                       help="CPU devices this process brings (testing on one machine)")
    group.add_argument("--join-timeout", type=float, default=None, metavar="S",
                       help="seconds to wait for every process to join (default: 60)")
    group.add_argument("--heartbeat-timeout", type=float, default=None, metavar="S",
                       help="seconds a process may go silent (dead or hung) before the others "
                            "stop (default: 20)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ebm-jax",
                                     description="Train and sample energy-based models.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a preset and write a run directory")
    train.add_argument("--config", default=None,
                       help=f"preset name (see `ebm-jax presets`) or a JSON file (default: "
                            f"{DEFAULT_PRESET}; with --resume, the workdir's own config.json)")
    _add_set_argument(train)
    train.add_argument("--workdir", default=None, help="run directory (default: runs/<name>)")
    train.add_argument("--resume", action="store_true",
                       help="continue from the latest checkpoint")
    train.add_argument("--overwrite", action="store_true",
                       help="discard a previous run in the workdir")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument("--devices", type=int, default=None, metavar="N",
                       help="data-parallel over the first N devices (default: all; on CPU, "
                            "JAX_NUM_CPU_DEVICES=8 makes eight)")
    _add_group_arguments(train)
    evaluate = sub.add_parser("evaluate", help="calibration, OOD detection and robustness of a "
                              "trained run, beside its softmax baseline")
    evaluate.add_argument("run_dir", help="a run directory written by `ebm-jax train`")
    evaluate.add_argument("--baseline", default=None,
                          help="the baseline's run directory (default: a sibling run of the "
                               "baseline classifier on the same dataset and network, if any)")
    evaluate.add_argument("--metrics", nargs="+", default=None,
                          help="classification ood robustness generation (default: all that "
                               "apply)")
    evaluate.add_argument("--purify", action="store_true",
                          help="also classify the attacks after purification by the run's "
                               "sampler")
    evaluate.add_argument("--no-figures", action="store_true", help="write report.json only")
    doctor = sub.add_parser(
        "doctor", help="a short pilot of a config that diagnoses divergence and names the "
                       "settings to change (exit 0: healthy, 3: a problem found)")
    doctor.add_argument("--config", default=DEFAULT_PRESET,
                        help=f"preset name or a JSON file (default: {DEFAULT_PRESET})")
    _add_set_argument(doctor)
    doctor.add_argument("--steps", type=int, default=None, metavar="N",
                        help="pilot length in steps (default: 300)")
    doctor.add_argument("--workdir", default=None,
                        help="where the pilot runs and doctor.json go (default: a new "
                             "temporary directory)")
    doctor.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    doctor.add_argument("--devices", type=int, default=None, metavar="N",
                        help="data-parallel over the first N devices (default: all)")
    launch = sub.add_parser(
        "launch", help="run a command as N processes of one run on this machine (CPU devices "
                       "split between them): ebm-jax launch --processes 2 -- train ...")
    launch.add_argument("--processes", type=int, required=True, metavar="N")
    launch.add_argument("--local-devices", type=int, default=None, metavar="K",
                        help="CPU devices per process (default: 8 in all, split)")
    launch.add_argument("--port", type=int, default=None,
                        help="the coordinator's port on localhost (default: a free one)")
    launch.add_argument("launched", nargs=argparse.REMAINDER, metavar="COMMAND",
                        help="-- then the ebm-jax command: train ...")
    sub.add_parser("presets", help="list the named configs, by objective")
    show = sub.add_parser("config", help="print the resolved config of a preset as JSON")
    show.add_argument("preset", nargs="?", default=DEFAULT_PRESET,
                      help="preset name or JSON file")
    _add_set_argument(show)
    _add_tabular_parser(sub)
    return parser


def _add_tabular_parser(sub) -> None:
    tabular = sub.add_parser("tabular", help="TabEBM: augment a CSV table with synthetic rows")
    verbs = tabular.add_subparsers(dest="tabular_command", required=True)
    augment = verbs.add_parser("augment", help="write synthetic rows of every class to a CSV")
    evaluate = verbs.add_parser("evaluate", help="the augmentation protocol on a CSV: balanced "
                                "accuracy with and without synthetic rows, fidelity, privacy")
    for verb in (augment, evaluate):
        verb.add_argument("csv", help="the table, one row per example, with a header")
        verb.add_argument("--target", required=True, help="the column of class labels")
    augment.add_argument("--per-class", type=int, required=True, metavar="N",
                         help="synthetic rows per class")
    augment.add_argument("--out", required=True, help="where to write the synthetic CSV")
    augment.add_argument("--categorical", nargs="+", default=None, metavar="COLUMN",
                         help="categorical columns besides the detected ones (strings, "
                              "booleans)")
    augment.add_argument("--backend", default="kernel", choices=["kernel", "network"])
    augment.add_argument("--bandwidth", default="scott_pooled",
                         help="the kernel's bandwidth: scott, loo, scott_diagonal, "
                              "scott_pooled (default: one per feature from the classes' "
                              "pooled spread, the best measured) or a number")
    augment.add_argument("--sampler", default="temperature", choices=SAMPLERS,
                         help="temperature (default): SGLD noise sqrt(2 step), the chains "
                              "sample each class's energy; paper: noise 0.01, the chains "
                              "descend to its modes")
    augment.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--n-real", type=int, nargs="+", default=[20, 50], metavar="N",
                          help="training rows drawn per split (default 20 50)")
    evaluate.add_argument("--seeds", type=int, default=10, help="splits per size (default 10)")
    evaluate.add_argument("--methods", nargs="+", default=None,
                          help="methods to compare (default: all of them)")


def _evaluate(args) -> int:
    from ebm_jax.experiments.evaluation import comparison_table, evaluate_run, find_baseline

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


def _doctor(args) -> int:
    """``ebm-jax doctor``: the pilot's report; exit 0 when healthy, 3 when a rule fired."""
    from ebm_jax.experiments.doctor import DEFAULT_STEPS, REPORT_FILE, pilot

    config = make_config(args.config, args.overrides)
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    report = pilot(config, steps, args.workdir, devices=args.devices,
                   progress=not args.no_progress)
    print(report.text())
    if not report.healthy and report.suggested_overrides():
        command = ["ebm-jax train", "--config", args.config]
        for item in list(args.overrides) + report.suggested_overrides():
            command += ["--set", item]
        print("suggested: " + " ".join(command))
    print(f"report: {os.path.join(report.workdir, REPORT_FILE)}")
    return report.exit_code


def _tabular(args) -> int:
    """``ebm-jax tabular augment|evaluate``: one line and exit 2 for bad input."""
    from ebm_jax.experiments.tabular import augment_csv, evaluate_csv

    if args.tabular_command == "augment":
        if args.per_class < 1:
            raise ConfigError(f"--per-class {args.per_class}: expected a positive int")
        written = augment_csv(args.csv, args.target, args.per_class, args.out,
                              args.categorical, args.backend, args.seed,
                              _number_or_name(args.bandwidth), args.sampler)
        print(f"wrote {sum(written.values())} rows ({written}) to {args.out}")
        return 0
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: expected a positive int")
    rows = evaluate_csv(args.csv, args.target, args.n_real, args.seeds, args.methods,
                        on_row=lambda row: print(json.dumps(row), flush=True))
    print(f"{len(rows)} rows")
    return 0


def _number_or_name(text: str):
    """``"0.5"`` -> 0.5; a name stays a string (the estimator checks either)."""
    try:
        return float(text)
    except ValueError:
        return text


def _process_group(args):
    """This process's place in a group of processes (None: alone), checked before any compute."""
    from ebm_jax.experiments.processes import run_process_group

    return run_process_group(args.coordinator, args.num_processes, args.process_id,
                             auto=args.distributed)


def _join(args, group, config, workdir) -> None:
    """Join the group (checking every process trains the same run) or, alone, bring
    ``--local-devices`` CPU devices."""
    from ebm_jax.experiments.launch import quiet_native_stdout
    from ebm_jax.experiments.processes import join_run, start_single_process

    if args.local_devices is not None and args.local_devices < 1:
        raise ConfigError(f"--local-devices {args.local_devices}: expected a positive int")
    if args.join_timeout is not None and not args.join_timeout > 0:
        raise ConfigError(f"--join-timeout {args.join_timeout}: expected seconds > 0")
    heartbeat = args.heartbeat_timeout  # the runtime counts whole seconds
    if heartbeat is not None and not (1 <= heartbeat < float("inf")
                                      and heartbeat == int(heartbeat)):
        raise ConfigError(f"--heartbeat-timeout {heartbeat:g}: expected whole seconds >= 1")
    if group is None:
        start_single_process(args.local_devices)
        return
    options = {name: value for name, value in (("timeout_s", args.join_timeout),
                                               ("heartbeat_timeout_s", args.heartbeat_timeout))
               if value is not None}
    quiet_native_stdout()  # started by `ebm-jax launch`: without Gloo's lines
    join_run(group, config, workdir, resume=args.resume, overwrite=args.overwrite,
             local_devices=args.local_devices, **options)


def _launch(args) -> int:
    """``ebm-jax launch``: the processes' first failing status, or 0."""
    from ebm_jax.experiments.launch import launch

    command = list(args.launched)
    if command[:1] == ["--"]:
        command = command[1:]
    return launch(command, args.processes, local_devices=args.local_devices, port=args.port)


def _print_presets() -> int:
    for kind, names in presets_by_objective().items():
        objective = get_objective(kind)
        print(f"{kind}: {objective.summary}")
        for name in names:
            data = PRESETS[name].data.dataset
            print(f"  {name:22s} data.dataset={data} model.kind={PRESETS[name].model.kind}")
        if not names:
            print(f"  (no preset: --set objective={kind} on any preset)")
    return 0


def train_config(args):
    """The config of ``ebm-jax train``: ``--config`` (default: the workdir's saved config when
    resuming, else :data:`DEFAULT_PRESET`) with the ``--set`` overrides."""
    preset = args.config
    if preset is None and args.resume and args.workdir is not None:
        saved = os.path.join(args.workdir, "config.json")
        if os.path.isfile(saved):
            return apply_overrides(load_config_file(saved, saved_run=True), args.overrides)
    return make_config(preset or DEFAULT_PRESET, args.overrides)


def _exit_code(error: Exception) -> Optional[int]:
    """Exit status of the failures that end a run with one clear line: 2 for a dataset that is
    not prepared (the message says how to prepare it) or a data file that fails its checks
    (the message names the array and what was expected), 1 for training that diverged
    through every rollback (the message names the intact checkpoint); None for anything
    else."""
    from ebm_jax.experiments.run import DataFileError, DatasetNotPreparedError, TrainingDiverged
    from ebm_jax.experiments.tabular import TabularInputError

    if isinstance(error, (DatasetNotPreparedError, DataFileError, TabularInputError)):
        return 2
    if isinstance(error, TrainingDiverged):
        return 1
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "presets":
        return _print_presets()
    try:
        if args.command == "config":
            print(json.dumps(make_config(args.preset, args.overrides).to_dict(), indent=2))
            return 0
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "tabular":
            return _tabular(args)
        if args.command == "launch":
            return _launch(args)
        group = _process_group(args)
        config = train_config(args)
        workdir = args.workdir or f"runs/{config.name}"
        _join(args, group, config, workdir)
        from ebm_jax.experiments.run import train  # imports jax: after the config is good

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
    if "process_index" in summary:  # not process 0: it prints the summary
        return 0
    shown = {k: summary[k] for k in SUMMARY_KEYS if k in summary}
    print(json.dumps(shown, indent=2))
    print(f"run directory: {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
