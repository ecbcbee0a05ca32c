"""One program over many processes: joining JAX's distributed runtime, and what processes agree on.

A run over several hosts (a TPU pod slice, a GPU cluster) is the same command on every host,
one process each, joined by JAX's distributed runtime: a coordinator address, the number of
processes and this process's id (``jax.distributed.initialize``). Afterwards
``jax.devices()`` lists every process's devices, the data mesh spans them all, and the
train step is one XLA program whose all-reduce crosses hosts; each process feeds its own
slice of the batch (:func:`~ebm_jax.parallel.shard_batch`).

What this module adds to ``jax.distributed.initialize``, which on a bad address or a
missing process ends the interpreter from C++ (a crash dump, no Python exception):

* :func:`process_group` reads the three settings from arguments or the environment
  (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) and checks them;
* :func:`join` checks the coordinator's port is free on process 0, waits a bounded time for
  every process (one :class:`DistributedError` line, not a hang, when one never comes),
  turns on cross-process collectives for the CPU backend, and checks that every process
  was started with the same process count;
* :func:`agree` checks that every process holds the same value (a config, say);
* :func:`is_primary`, :func:`any_process`, :func:`gather_to_host`, :func:`barrier`: the
  few collective decisions a training loop needs.

On one process every helper is a no-op, so library code calls them unconditionally.

Example (two processes on one machine, four CPU devices each; ``ebm-jax launch`` does this)::

    # process 0                                       # process 1
    join(process_group("localhost:9911", 2, 0),       join(process_group("localhost:9911", 2, 1),
         local_devices=4)                                  local_devices=4)
    jax.device_count()  # 8                           jax.device_count()  # 8
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
from typing import Any, Mapping, NamedTuple, Optional

import jax
import numpy as np

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
JOIN_TIMEOUT_S = 60  # how long a process waits for all the others to join
# A process silent this long stops the others. The runtime notices a dead process by its
# missing heartbeats (measured: a SIGKILLed process 1 stopped process 0 after 46 s at 60 s),
# so this bounds how long the others run on; JAX's default is 100 s.
HEARTBEAT_TIMEOUT_S = 20
# Exit status of a process that could not join (as a bad setting: the command was wrong).
JOIN_FAILED_STATUS = 2
_KEY_PREFIX = "ebm_jax"


class DistributedError(ValueError):
    """A process group that cannot be formed: a bad setting, a busy port, a missing process."""


class ProcessGroup(NamedTuple):
    """Where this process joins: ``coordinator`` (``HOST:PORT`` of process 0), the number of
    processes, this process's id in ``[0, num_processes)``. ``auto``: let JAX detect all
    three (Cloud TPU, SLURM, Open MPI, Kubernetes)."""
    coordinator: Optional[str]
    num_processes: Optional[int]
    process_id: Optional[int]
    auto: bool = False


def _int_setting(name: str, value: Any, minimum: int) -> int:
    try:
        number = int(value)
        if isinstance(value, bool) or (isinstance(value, float) and value != number):
            raise ValueError
    except (TypeError, ValueError):
        raise DistributedError(f"{name}={value!r}: expected an int >= {minimum}") from None
    if number < minimum:
        raise DistributedError(f"{name}={value!r}: expected an int >= {minimum}")
    return number


def split_address(address: str, name: str = "coordinator") -> tuple[str, int]:
    """``"host:1234"`` -> ``("host", 1234)``; ``"[::1]:1234"`` -> ``("::1", 1234)``.

    Raises:
      DistributedError: no ``HOST:PORT`` form, or a port outside 1-65535.

    Example::

      >>> split_address("10.0.0.2:8476")
      ('10.0.0.2', 8476)
    """
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DistributedError(f"{name}={address!r}: expected HOST:PORT with a port in "
                               "1-65535 (the address of process 0)")
    return host.strip("[]"), int(port)


def process_group(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
                  process_id: Optional[int] = None, *, auto: bool = False,
                  environ: Optional[Mapping[str, str]] = None) -> Optional[ProcessGroup]:
    """The process group named by arguments, else by the environment; None for one process.

    Each argument left None is read from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``
    and ``JAX_PROCESS_ID``. Either all three are known, or none (one process), or ``auto``
    (JAX detects what is missing on Cloud TPU, SLURM, Open MPI and Kubernetes).

    Raises:
      DistributedError: some but not all three given (naming the missing ones), a
        coordinator not ``HOST:PORT``, a count below 1, an id outside ``[0, count)``.

    Example::

      >>> process_group("localhost:9911", 2, 1, environ={})
      ProcessGroup(coordinator='localhost:9911', num_processes=2, process_id=1, auto=False)
      >>> process_group(environ={}) is None          # one process
      True
    """
    env = os.environ if environ is None else environ
    given = {"coordinator": coordinator if coordinator is not None else env.get(ENV_COORDINATOR),
             "num_processes": (num_processes if num_processes is not None
                               else env.get(ENV_NUM_PROCESSES)),
             "process_id": process_id if process_id is not None else env.get(ENV_PROCESS_ID)}
    given = {k: (None if v == "" else v) for k, v in given.items()}
    if given["coordinator"] is not None:
        split_address(given["coordinator"])
    if given["num_processes"] is not None:
        given["num_processes"] = _int_setting("num_processes", given["num_processes"], 1)
    if given["process_id"] is not None:
        given["process_id"] = _int_setting("process_id", given["process_id"], 0)
    count, index = given["num_processes"], given["process_id"]
    if count is not None and index is not None and index >= count:
        raise DistributedError(f"process_id={index}: expected an id in [0, {count}) for "
                               f"num_processes={count}")
    if auto:
        return ProcessGroup(**given, auto=True)
    missing = [k for k, v in given.items() if v is None]
    if len(missing) == 3:
        return None
    if missing:
        env_names = {"coordinator": ENV_COORDINATOR, "num_processes": ENV_NUM_PROCESSES,
                     "process_id": ENV_PROCESS_ID}
        listed = ", ".join(f"{k} (or {env_names[k]})" for k in missing)
        raise DistributedError(f"a process group needs all three of coordinator, "
                               f"num_processes and process_id: {listed} missing")
    return ProcessGroup(**given)


def check_port_free(address: str) -> None:
    """Raise :class:`DistributedError` when the coordinator's port is taken on this machine.

    Process 0 serves the runtime on every interface at that port; JAX ends the interpreter
    (a segmentation fault) when the port is taken, so process 0 checks first.

    Example::

      >>> check_port_free("localhost:9")  # doctest: +SKIP
    """
    _, port = split_address(address)
    for family, host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 on this machine
        try:
            # SO_REUSEADDR: a port in TIME_WAIT from the previous run is free to gRPC too.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise DistributedError(
                    f"coordinator={address!r}: port {port} is in use on this machine (process "
                    "0 serves the distributed runtime there): expected a free port") from None
        finally:
            probe.close()


def initialized() -> bool:
    """Whether this process has joined a distributed runtime."""
    from jax._src import distributed  # the runtime's own state: there is no public accessor

    return distributed.global_state.client is not None


def backend_started() -> bool:
    """Whether JAX already created its devices (then the device count is fixed)."""
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def use_cpu_devices(count: int) -> None:
    """Make this process bring ``count`` CPU devices (``jax_num_cpu_devices``); before any
    device is used, since the count is fixed when JAX creates its devices.

    Raises:
      DistributedError: ``count`` below 1, or the JAX backend already started.
    """
    if backend_started():
        raise DistributedError("the JAX backend started before its CPU devices were set: "
                               "expected it before any device is used")
    jax.config.update("jax_num_cpu_devices", _int_setting("local_devices", count, 1))


def _watchdog(done: threading.Event, seconds: float, message: str) -> None:
    """End the process with one line if ``done`` is not set in time: JAX's own timeout ends
    the interpreter from C++ with a crash dump instead of an exception."""
    if not done.wait(seconds):
        print(f"ebm-jax: error: {message}", file=sys.stderr, flush=True)
        os._exit(JOIN_FAILED_STATUS)


def join(group: ProcessGroup, *, local_devices: Optional[int] = None,
         timeout_s: float = JOIN_TIMEOUT_S,
         heartbeat_timeout_s: int = HEARTBEAT_TIMEOUT_S) -> None:
    """Join the distributed runtime as one process of ``group``; call before any JAX compute.

    Args:
      group: from :func:`process_group`.
      local_devices: CPU devices this process brings (``jax_num_cpu_devices``; testing many
        processes on one machine); None keeps the platform's own (every local GPU or TPU).
      timeout_s: how long to wait for every process to join. A process that cannot reach
        the coordinator, or a group in which one never comes, ends with one line and exit
        status 2 after this long.
      heartbeat_timeout_s: a process that stops answering this long (dead or hung) ends
        the others (process 0 dying ends them at once: it serves the runtime).

    After it returns, ``jax.process_count()`` is the group's size and ``jax.devices()`` lists
    every process's devices. Collectives between processes on CPU devices go through Gloo.

    Raises:
      DistributedError: the JAX backend already started (a device was used before), the
        coordinator's port taken (process 0), processes started with different counts.
    """
    if initialized():
        raise DistributedError("this process already joined a distributed runtime")
    if backend_started():
        raise DistributedError("the JAX backend started before joining the process group: "
                               "expected join() before any device is used")
    if local_devices is not None:
        use_cpu_devices(local_devices)
    # Cross-process collectives on CPU devices (no effect on GPU or TPU, which bring their own).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if not group.auto and group.process_id == 0:
        check_port_free(group.coordinator)
    where = group.coordinator or "the detected coordinator"
    who = (f"process {group.process_id} of {group.num_processes}"
           if group.process_id is not None and group.num_processes is not None else
           "this process")
    done = threading.Event()
    threading.Thread(target=_watchdog, daemon=True, args=(done, timeout_s, (
        f"{who} could not join the run at {where} within {timeout_s:g} s: expected every "
        "process started with the same --coordinator and --num-processes, distinct ids, and "
        "process 0 reachable at that address"))).start()
    options = dict(initialization_timeout=int(timeout_s) + 30,
                   heartbeat_timeout_seconds=int(heartbeat_timeout_s))
    if not group.auto:  # all three given: no cluster detection
        options["cluster_detection_method"] = "deactivate"
    try:
        jax.distributed.initialize(group.coordinator, group.num_processes, group.process_id,
                                   **options)
    except (ValueError, TypeError, RuntimeError) as error:  # auto-detection found no cluster
        done.set()
        raise DistributedError(f"joining a process group failed: {error}: expected "
                               "--coordinator, --num-processes and --process-id where no "
                               "cluster is detected") from None
    done.set()
    from jax._src import distributed

    agree("num_processes", distributed.global_state.num_processes, same=True,
          timeout_s=timeout_s)


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; the only one without a group)."""
    return jax.process_index() == 0


def agree(name: str, value: Any, *, same: bool = False,
          timeout_s: float = JOIN_TIMEOUT_S) -> list:
    """Every process's ``value`` (JSON-serialisable), in process order; ``[value]`` alone.

    Exchanged through the runtime's key-value store, so it works before any device
    collective and between processes that disagree on the process count.

    Args:
      name: what is compared (keys of the store, and the error's wording).
      value: this process's value.
      same: raise at the first process whose value differs from this one's.
      timeout_s: how long to wait for each process's value.

    Raises:
      DistributedError: a process that publishes nothing within ``timeout_s``; with
        ``same``, a process whose value differs (naming both processes and values).

    Example::

      >>> agree("config", {"lr": 0.1}, same=True)    # one process
      [{'lr': 0.1}]
    """
    if not initialized():
        return [value]
    # The runtime's key-value store has no public accessor; Orbax reaches it the same way.
    from jax._src import distributed

    state = distributed.global_state
    text = json.dumps(value, sort_keys=True)
    state.client.key_value_set(f"{_KEY_PREFIX}/{name}/{state.process_id}", text)
    values = []
    for index in range(state.num_processes):
        try:
            theirs = state.client.blocking_key_value_get(f"{_KEY_PREFIX}/{name}/{index}",
                                                         int(timeout_s * 1000))
        except Exception:  # the runtime raises on a deadline
            raise DistributedError(f"process {index} did not publish its {name} within "
                                   f"{timeout_s:g} s: expected {state.num_processes} "
                                   "processes") from None
        if same and theirs != text:
            raise DistributedError(
                f"{name} differs between processes: process {state.process_id} has {text}, "
                f"process {index} has {theirs}: expected the same on every process")
        values.append(json.loads(theirs))
    return values


def any_process(flag: bool) -> bool:
    """Whether ``flag`` holds on any process (a collective: every process must call it at the
    same point). Without a group, ``flag`` itself."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(bool(flag)))))


def gather_to_host(tree: Any) -> Any:
    """Every leaf as one host NumPy array of its global value, on every process (a collective
    for arrays split across processes). Without a group, the tree unchanged."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name``. Without a group, nothing."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
