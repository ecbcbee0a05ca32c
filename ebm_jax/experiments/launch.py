"""``ebm-jax launch``: N processes of one run on this machine, for development and tests.

::

    ebm-jax launch --processes 2 -- train --config jem_digits --workdir runs/two

starts ``ebm-jax train ... --coordinator localhost:PORT --num-processes 2 --process-id I
--local-devices K`` for I = 0, 1 on a free port, on CPU devices (eight in all by default,
split between the processes, as ``JAX_NUM_CPU_DEVICES=8`` gives one process). It forwards
Ctrl-C (SIGINT) and SIGTERM to every process, and exits with the status of the first process
that fails (128 + N for one ended by signal N), 0 when all succeed. When one process fails,
the distributed runtime stops the others within seconds; any still running after
:data:`GRACE_S` are killed.

On a cluster, run ``ebm-jax train`` with the same flags on every host instead (README:
"Many hosts").
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

from ebm_jax.experiments.config import ConfigError

TOTAL_CPU_DEVICES = 8
GRACE_S = 90.0  # after the first failure, how long the others get to stop by themselves
# Set in the processes the launcher starts: they send native writes to standard output
# (Gloo, the CPU backend's collectives, prints a line per device communicator it connects,
# from several threads at once, token by token) to /dev/null; Python's output is kept.
LAUNCHED_ENV = "EBM_JAX_LAUNCHED"
GROUP_FLAGS = ("--coordinator", "--num-processes", "--process-id", "--local-devices",
               "--distributed")


def free_port() -> int:
    """A TCP port that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def process_commands(command: Sequence[str], processes: int, local_devices: int,
                     port: int) -> list[list[str]]:
    """The command line of each process: ``command`` (an ``ebm-jax`` command, ``train ...``)
    with its place in the group appended.

    Example::

      >>> command = process_commands(["train", "--config", "cd_2d_rings"], 2, 4, 9911)[1]
      >>> " ".join(command[3:6]), command[command.index("--process-id") + 1]
      ('train --config cd_2d_rings', '1')
    """
    return [[sys.executable, "-m", "ebm_jax.cli", *command,
             "--coordinator", f"localhost:{port}", "--num-processes", str(processes),
             "--process-id", str(index), "--local-devices", str(local_devices)]
            for index in range(processes)]


def check_launch(command: Sequence[str], processes: int, local_devices: Optional[int]) -> int:
    """Check the launch before starting anything; return the CPU devices per process.

    Raises:
      ConfigError: no ``train`` command, a process count or device count below 1, or a
        command that already names its place in a group.
    """
    if not command or command[0] != "train":
        raise ConfigError(f"launch command {' '.join(command) or '(none)'!r}: expected "
                          "`ebm-jax launch --processes N -- train ...`")
    if processes < 1:
        raise ConfigError(f"--processes {processes}: expected a positive int")
    given = [flag for flag in command if flag.split("=")[0] in GROUP_FLAGS]
    if given:
        raise ConfigError(f"launch command names {given[0].split('=')[0]}: the launcher sets "
                          "each process's place in the group itself")
    if local_devices is None:
        local_devices = max(1, TOTAL_CPU_DEVICES // processes)
    if local_devices < 1:
        raise ConfigError(f"--local-devices {local_devices}: expected a positive int")
    return local_devices


def _status(returncode: int) -> int:
    """A shell's exit status for a child's return code (128 + N for signal N)."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def quiet_native_stdout() -> None:
    """In a launched process: file descriptor 1 to /dev/null, Python's ``sys.stdout`` to a copy
    of the original, so that C++ libraries' prints (Gloo's) vanish and Python's stay."""
    if not os.environ.get(LAUNCHED_ENV):
        return
    sys.stdout.flush()
    kept = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(kept, "w", buffering=1, encoding=sys.stdout.encoding or "utf-8",
                      errors="replace")


def launch(command: Sequence[str], processes: int, *, local_devices: Optional[int] = None,
           port: Optional[int] = None, env: Optional[dict] = None,
           grace_s: float = GRACE_S) -> int:
    """Run ``command`` as ``processes`` processes of one group on this machine; return the exit
    status (0, or the first failing process's). See the module docstring."""
    local_devices = check_launch(command, processes, local_devices)
    port = free_port() if port is None else port
    child_env = dict(os.environ if env is None else env)
    child_env["JAX_PLATFORMS"] = "cpu"  # CPU devices split between the processes
    child_env.pop("JAX_NUM_CPU_DEVICES", None)  # --local-devices says how many
    child_env[LAUNCHED_ENV] = "1"
    # Own sessions: a Ctrl-C in the terminal reaches the launcher only, which forwards it once
    # (twice would be the second Ctrl-C that stops a process without its checkpoint).
    children = [subprocess.Popen(cmd, env=child_env, start_new_session=True)
                for cmd in process_commands(command, processes, local_devices, port)]

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    first_failure = None  # (index, returncode)
    failed_at = None
    try:
        while any(child.poll() is None for child in children):
            for index, child in enumerate(children):
                code = child.poll()
                if code not in (None, 0) and first_failure is None:
                    first_failure, failed_at = (index, code), time.monotonic()
                    print(f"ebm-jax launch: process {index} {_describe(code)}; the others stop "
                          "with it", file=sys.stderr, flush=True)
            if failed_at is not None and time.monotonic() - failed_at > grace_s:
                for child in children:
                    if child.poll() is None:
                        child.kill()
            time.sleep(0.05)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    if first_failure is None:
        for index, child in enumerate(children):  # a failure seen only after the loop ended
            if child.returncode != 0:
                first_failure = (index, child.returncode)
                break
    if first_failure is None:
        return 0
    index, code = first_failure
    others = ", ".join(f"process {i} {_describe(c.returncode)}"
                       for i, c in enumerate(children) if i != index)
    hint = ("" if code == 2 else  # 2: a bad setting, said by the process itself
            " The last complete checkpoint is intact: run the same command with --resume.")
    print(f"ebm-jax launch: process {index} failed first ({_describe(code)}); {others}.{hint}",
          file=sys.stderr, flush=True)
    return _status(code)
