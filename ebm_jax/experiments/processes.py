"""A training run as one process of many: join the group, then check that every process was
started for the same run.

``ebm-jax train --coordinator HOST:PORT --num-processes N --process-id I`` (or the environment
variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or
``--distributed`` where JAX detects the cluster) calls :func:`join_run` before any compute.
Then the run is the usual one over every process's devices: process 0 writes the run
directory's files, every process writes its shards of each checkpoint
(:mod:`ebm_jax.experiments.run`).

Example (what each of two processes does)::

    >>> group = process_group("localhost:9911", 2, 0)           # doctest: +SKIP
    >>> join_run(group, config, "runs/a", resume=False, overwrite=False,
    ...          local_devices=4)                                 # doctest: +SKIP
"""
from __future__ import annotations

import json
from typing import Optional

from ebm_jax.experiments.config import Config, ConfigError, config_differences, config_from_dict
from ebm_jax.parallel.distributed import (HEARTBEAT_TIMEOUT_S, JOIN_TIMEOUT_S, DistributedError,
                                          ProcessGroup, agree, join, process_group,
                                          use_cpu_devices)

__all__ = ["join_run", "run_process_group", "start_single_process"]


def _as_json(value):
    return json.loads(json.dumps(value, sort_keys=True))


def run_process_group(coordinator=None, num_processes=None, process_id=None, *,
                      auto: bool = False) -> Optional[ProcessGroup]:
    """:func:`~ebm_jax.parallel.distributed.process_group` (arguments, else the environment;
    None for one process) with its errors as :class:`ConfigError` (one line, exit 2)."""
    try:
        return process_group(coordinator, num_processes, process_id, auto=auto)
    except DistributedError as error:
        raise ConfigError(str(error)) from None


def join_run(group: ProcessGroup, config: Config, workdir: str, *, resume: bool,
             overwrite: bool, local_devices: Optional[int] = None,
             timeout_s: float = JOIN_TIMEOUT_S,
             heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> None:
    """Join ``group`` and check that every process trains ``config`` in ``workdir`` the same way.

    ``timeout_s`` and ``heartbeat_timeout_s`` are :func:`ebm_jax.parallel.join`'s.

    Raises:
      ConfigError: the group cannot be formed (a bad setting, the coordinator's port taken,
        a process count that differs), or a process started with another config (naming the
        fields), another workdir, or other ``--resume``/``--overwrite`` flags.
    """
    try:
        join(group, local_devices=local_devices, timeout_s=timeout_s,
             heartbeat_timeout_s=heartbeat_timeout_s)
        mine = _as_json({"config": config.to_dict(), "workdir": workdir, "resume": resume,
                         "overwrite": overwrite})
        runs = agree("run", mine, timeout_s=timeout_s)
    except DistributedError as error:
        raise ConfigError(str(error)) from None
    import jax

    me = jax.process_index()
    for index, theirs in enumerate(runs):
        if theirs == mine:
            continue
        if theirs["config"] != mine["config"]:
            diff = config_differences(config_from_dict(theirs["config"]), config, ignore=())
            listed = ", ".join(f"{k}: {a!r} there, {b!r} here"
                               for k, (a, b) in sorted(diff.items())) or "their order"
            raise ConfigError(f"process {index} trains another config than process {me} "
                              f"({listed}): expected the same --config and --set on every "
                              "process")
        listed = ", ".join(f"{k}: {theirs[k]!r} there, {mine[k]!r} here"
                           for k in ("workdir", "resume", "overwrite") if theirs[k] != mine[k])
        raise ConfigError(f"process {index} was started differently from process {me} "
                          f"({listed}): expected the same --workdir, --resume and "
                          "--overwrite on every process")


def start_single_process(local_devices: Optional[int]) -> None:
    """One process: bring ``local_devices`` CPU devices (``--local-devices`` without a group)."""
    if local_devices is None:
        return
    try:
        use_cpu_devices(local_devices)
    except DistributedError as error:
        raise ConfigError(f"--local-devices {local_devices}: {error}") from None
