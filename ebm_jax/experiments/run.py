"""Train a config into a run directory: check the workdir, build, shard over the mesh, fit
with checkpoints and the divergence guard, evaluate, write the summary.

Run directory::

    config.json  metrics.jsonl  checkpoints/  samples.png  curves.png  summary.json
    (predictions.png instead of samples.png for an objective that predicts, such as EBT)

Example::

    >>> from ebm_jax.experiments import make_config
    >>> summary = train(make_config("jem_digits", ["run.num_steps=500"]),
    ...                 "runs/quick")  # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
from typing import Optional

import jax
import numpy as np

from ebm_jax import plots
from ebm_jax.data import Batches, DatasetNotPreparedError
from ebm_jax.data.files import DataFileError
from ebm_jax.experiments.build import Experiment, build, initial_state, num_train_examples
from ebm_jax.experiments.config import Config, ConfigError, config_differences, flatten
from ebm_jax.experiments.data import derived_settings, describe_derived, with_measured_data
from ebm_jax.experiments.evaluation import (BASELINE_WARNINGS, CURVE_PANELS, PREDICTIONS_FIGURE,
                                            baseline_comparison, evaluate, quick_eval_fn,
                                            read_run_config)
from ebm_jax.experiments.sampling import ReplayBufferConfig
from ebm_jax.parallel import (MeshError, barrier, gather_to_host, is_primary, make_data_mesh,
                              shard_batch, shard_stacked_batches)
from ebm_jax.train import (Checkpointer, DivergenceGuard, RollbackPolicy, cpu_compile_options,
                           fit, make_train_step, shard_state, sharded_train_step)
from ebm_jax.train.guard import TrainingDiverged

RUN_FILES = ("checkpoints", "metrics.jsonl", "summary.json", "config.json", "samples.png",
             "curves.png", "landscape.png", PREDICTIONS_FIGURE)


def check_workdir(config: Config, workdir: str, *, resume: bool, overwrite: bool) -> None:
    """Check that ``workdir`` may take this run, before any compute (reads only).

    Raises:
      ConfigError: the workdir holds another run (a different config), or a
        run of this config while neither ``resume`` nor ``overwrite`` is set.
    """
    config_path = os.path.join(workdir, "config.json")
    ckpt_dir = os.path.join(workdir, "checkpoints")
    has_run = os.path.exists(config_path) or (os.path.isdir(ckpt_dir) and os.listdir(ckpt_dir))
    if has_run and not overwrite:
        if os.path.exists(config_path):
            diff = config_differences(read_run_config(workdir), config)
            if diff:
                listed = ", ".join(f"{k}: saved {a!r}, now {b!r}"
                                   for k, (a, b) in sorted(diff.items()))
                raise ConfigError(f"workdir {workdir!r} holds a run with a different config "
                                  f"({listed}): expected the same config, another --workdir, "
                                  "or --overwrite")
        if not resume:
            raise ConfigError(f"workdir {workdir!r} already holds a run: expected --resume to "
                              "continue it, --overwrite to start over, or another --workdir")


def write_workdir(config: Config, workdir: str, *, overwrite: bool) -> None:
    """Clear a previous run (``overwrite``) and write ``config.json``."""
    if overwrite:
        for name in RUN_FILES:
            path = os.path.join(workdir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)


def prepare_workdir(config: Config, workdir: str, *, resume: bool,
                    overwrite: bool) -> Checkpointer:
    """Check that ``workdir`` may take this run, before any compute; write ``config.json``;
    return the run's checkpointer.

    With several processes every process checks, process 0 alone writes, and every
    process opens the checkpointer (each writes its own shards of a checkpoint).

    Raises:
      ConfigError: the workdir holds another run (a different config), or a
        run of this config while neither ``resume`` nor ``overwrite`` is set.
    """
    check_workdir(config, workdir, resume=resume, overwrite=overwrite)
    barrier("ebm_jax:workdir_checked")  # nobody writes before every process has read
    if is_primary():
        write_workdir(config, workdir, overwrite=overwrite)
    barrier("ebm_jax:workdir_written")
    return Checkpointer(os.path.join(workdir, "checkpoints"),
                        max_to_keep=config.run.keep_checkpoints,
                        save_every=config.run.checkpoint_every)


def device_mesh(config: Config, devices: Optional[int] = None):
    """The data-parallel mesh of a run, after checking that its sizes split over it.

    Raises:
      ConfigError: more devices than present, fewer than every device of a run over
        several processes, or a batch or replay buffer that does not divide by the device
        count (naming the field).
    """
    if jax.process_count() > 1 and devices not in (None, jax.device_count()):
        raise ConfigError(f"--devices {devices}: expected every one of the "
                          f"{jax.device_count()} devices of the {jax.process_count()} processes "
                          "(leave --devices out)")
    try:
        mesh = make_data_mesh(devices)
    except MeshError as error:
        raise ConfigError(str(error)) from None
    n = mesh.shape["data"]
    sizes = {"data.batch_size": config.data.batch_size}
    start = getattr(config.objective, "chain_start", None)
    if isinstance(start, ReplayBufferConfig):
        sizes["objective.chain_start.capacity"] = start.capacity
        sizes["objective.chain_start.num_shards"] = start.num_shards or n
    for field, value in sizes.items():
        if value % n:
            raise ConfigError(f"{field}={value} does not divide over {n} devices: expected a "
                              f"multiple of {n}, or choose the device count with --devices")
    return mesh


def global_batches(exp: Experiment, mesh, start_step: int, steps_per_call: int = 1):
    """The run's batches from ``start_step`` on, as global arrays split over ``mesh``; each
    process reads only its slice (tfds sources or the in-memory arrays). With
    ``steps_per_call`` K > 1, K consecutive batches stacked per item (``[K, B, ...]``)."""
    local = local_batches(exp, start_step)
    if steps_per_call == 1:
        return (shard_batch(batch, mesh) for batch in local)
    return (shard_stacked_batches(_stack(list(itertools.islice(local, steps_per_call))), mesh)
            for _ in itertools.count())


def _stack(batches: list) -> dict:
    return {name: np.stack([batch[name] for batch in batches]) for name in batches[0]}


def local_batches(exp: Experiment, start_step: int):
    """This process's slices of the run's batches from ``start_step`` on (host arrays: ``x``,
    ``y`` and the objective's extras, such as concepts ``c``), as :func:`global_batches`
    places them."""
    process = (jax.process_index(), jax.process_count())
    if exp.data.train_batches is not None:
        local = exp.data.train_batches(start_step, *process)
    else:
        extras = {} if exp.data.c_train is None else {"c": exp.data.c_train}
        local = Batches(exp.data.x_train, exp.data.y_train, exp.config.data.batch_size,
                        seed=exp.config.run.seed, start_step=start_step,
                        process_index=process[0], process_count=process[1], extras=extras)
    return local


def experiment_train_step(exp: Experiment):
    """The train step ``ebm-jax train`` runs for ``exp``, unjitted and unsharded: its loss and
    optimizer with the config's EMA and divergence guard (what the benchmarks time).

    Example::

      >>> from ebm_jax.experiments import make_config
      >>> step = experiment_train_step(build(make_config("jem_digits")))  # doctest: +SKIP
      >>> state, metrics = jax.jit(step)(state, batch)                     # doctest: +SKIP
    """
    config = exp.config
    guard = (DivergenceGuard(config.guard.max_energy, config.guard.max_grad_norm)
             if config.guard.enabled else None)
    return make_train_step(exp.loss, exp.optimizer, ema_decay=config.optimizer.ema_decay,
                           guard=guard)


def train_step_compiler_options(config: Config, mesh=None) -> dict:
    """The XLA options ``ebm-jax train`` compiles its step with: those of
    ``run.cpu_compile`` (:func:`~ebm_jax.train.cpu_compile_options`) on the mesh's platform
    (default: jax's default backend).

    Example::

      >>> from ebm_jax.experiments import make_config
      >>> train_step_compiler_options(make_config("jem_digits", ["run.cpu_compile=xla"]))
      {}
    """
    platform = mesh.devices.flat[0].platform if mesh is not None else None
    return cpu_compile_options(config.run.cpu_compile, platform)


def train(config: Config, workdir: str, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, devices: Optional[int] = None) -> dict:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint with ``resume``).

    Training is data parallel over ``devices`` devices (default: all of them,
    see :mod:`ebm_jax.parallel`): parameters replicated, batches and replay
    buffers split along the mesh's ``data`` axis.

    ``data.dataset`` may be the path of the user's ``.npz`` or ``.csv``: it is checked
    before any compute, and its measured range and scale are written into ``config.json``
    (:func:`~ebm_jax.experiments.data.with_measured_data`).

    Writes ``config.json``, ``metrics.jsonl``, ``checkpoints/``, ``samples.png``,
    ``curves.png`` and ``summary.json``; returns the summary.
    """
    started = time.perf_counter()
    primary = is_primary()
    energy_l2_derived = getattr(config.objective, "energy_l2", 0.0) is None
    config = with_measured_data(config)  # a user's file: checked, its range and scale recorded
    mesh = device_mesh(config, devices)
    num_devices = mesh.shape["data"]
    checkpointer = prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
    try:
        exp = build(config, num_devices=num_devices)
        derived = describe_derived(config, exp.data, energy_l2_derived=energy_l2_derived)
        if derived and primary:
            print(f"ebm-jax: {derived}")
        n_train = num_train_examples(exp)
        if config.data.batch_size > n_train:
            raise ConfigError(f"data.batch_size={config.data.batch_size}: expected at most the "
                              f"{n_train} training examples of {config.data.dataset!r}")
        state = shard_state(initial_state(exp), mesh)
        if resume:
            restored = checkpointer.restore_latest(  # into the template's shardings
                state, log=print if primary else (lambda message: None))
            if restored is not None:
                state = restored
                if primary:
                    print(f"resumed from step {int(state.step)} in {checkpointer.directory}")
        guard_settings = config.guard
        rollback = (RollbackPolicy(guard_settings.rollback_retries,
                                   guard_settings.rollback_lr_factor)
                    if guard_settings.enabled else None)
        per_call = config.run.steps_per_call
        if int(state.step) % per_call:
            raise ConfigError(f"run.steps_per_call={per_call}: the run resumes at step "
                              f"{int(state.step)}, expected a multiple of it (resume with "
                              "--set run.steps_per_call=1)")
        train_step = sharded_train_step(experiment_train_step(exp), mesh, state,
                                        steps_per_call=per_call,
                                        compiler_options=train_step_compiler_options(config, mesh))
        metrics_path = os.path.join(workdir, "metrics.jsonl")
        train_started = time.perf_counter()
        first_step = int(state.step)
        run = config.run
        try:
            state, _ = fit(train_step, state, global_batches(exp, mesh, first_step, per_call),
                           run.num_steps,
                           log_every=run.log_every, eval_fn=on_primary(quick_eval_fn(exp)),
                           eval_every=run.eval_every, checkpointer=checkpointer,
                           metrics_path=metrics_path if primary else None,
                           progress=progress and primary, rollback=rollback,
                           restart_batches=lambda step: global_batches(exp, mesh, step,
                                                                       per_call))
        except TrainingDiverged as error:  # advise only the settings this run's config has
            raise error.with_advice(flatten(config).__contains__) from None
        train_seconds = time.perf_counter() - train_started
        host_state = gather_to_host(state)  # every process takes part; process 0 evaluates
        if not primary:
            return {"steps": int(host_state.step), "devices": num_devices,
                    "process_index": jax.process_index(),
                    "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - started}
        summary = evaluate(exp, host_state, workdir=workdir)
        summary.update(derived_settings(config, exp.data, energy_l2_derived=energy_l2_derived))
        summary.update(baseline_comparison(workdir, summary))  # JEM against softmax
        for warning in BASELINE_WARNINGS:
            if warning in summary:
                print(f"ebm-jax: warning: {summary[warning]}")
        summary.update(train_seconds=train_seconds,
                       train_steps_per_s=(int(state.step) - first_step) / max(train_seconds,
                                                                               1e-9),
                       wall_seconds=time.perf_counter() - started, config=config.name,
                       seed=run.seed, devices=num_devices, processes=jax.process_count())
        plots.save_curves(os.path.join(workdir, "curves.png"), plots.read_metrics(metrics_path),
                          CURVE_PANELS)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump(_finite(summary), f, indent=2)
        return summary
    finally:
        checkpointer.close()


def on_primary(eval_fn):
    """``eval_fn`` run by process 0 alone on a host copy of the state; the other processes
    take part in the copy (a collective) and return ``{}``. One process: ``eval_fn``."""
    if jax.process_count() == 1:
        return eval_fn

    def primary_eval_fn(state):
        host_state = gather_to_host(state)
        return eval_fn(host_state) if is_primary() else {}

    return primary_eval_fn


def _finite(summary: dict) -> dict:
    """JSON has no NaN: write non-finite floats as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in summary.items()}


# The failures that end `ebm-jax train` with one line (re-exported for the command line).
__all__ = ["DataFileError", "DatasetNotPreparedError", "TrainingDiverged", "device_mesh",
           "experiment_train_step", "global_batches", "local_batches", "prepare_workdir",
           "train", "train_step_compiler_options"]
