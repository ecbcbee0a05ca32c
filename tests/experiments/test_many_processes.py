"""``ebm-jax train`` as two processes of one run (JAX's distributed runtime, Gloo on CPU).

The runs are shared by the tests of this module (each is a subprocess start, a compile and
30 steps on 2 cores):

* ``one_process``: ``jem_digits`` for 30 steps on 1 process x 8 CPU devices, in this process;
* ``two_processes``: the same through ``ebm-jax launch --processes 2`` (2 processes x 4);
* ``interrupted``: the same again, stopped by Ctrl-C (to the launcher) after its first
  checkpoint, resumed, then process 1 SIGKILLed after the next checkpoint, and resumed on
  both processes (and, from a copy, on one process of 8 devices).

"Equal to float rounding" is the issue's measure: per parameter array, the largest
difference over the largest magnitude, at most 1e-5 (measured 4e-7 after 30 steps, 8e-7
after 100: the collectives sum in another order across processes than within one).
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from ebm_jax.experiments import load_run, make_config, train
from ebm_jax.experiments.data import load_data
from ebm_jax.experiments.launch import free_port
from ebm_jax.parallel import make_data_mesh
from ebm_jax.train import Checkpointer
from tests.experiments.conftest import once_across_workers
from tests.experiments.tfds_two_processes import CONFIG as TFDS_CONFIG
from tests.experiments.tfds_two_processes import FIRST_STEP, STEPS as TFDS_STEPS
from tfds_mock import mocked

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices (conftest)")]

HERE = os.path.dirname(os.path.abspath(__file__))
# Two processes of 4 CPU devices take about 0.2 s a step (Gloo's collectives between
# processes), and each launch pays two interpreters, a join, a compile and an evaluation
# (without the PGD robustness part, the same code as on one process): 30 steps leave the
# interruptions below two checkpoints of room.
STEPS, LOG_EVERY, CHECKPOINT_EVERY = 30, 5, 10
RUN = [f"run.num_steps={STEPS}", f"run.log_every={LOG_EVERY}",
       f"run.checkpoint_every={CHECKPOINT_EVERY}", "run.eval_every=1000",
       "run.num_eval_samples=100", "run.fresh_sample_steps=5", "run.robust_eval_examples=0"]
ROUNDING = 1e-5
# The killed stage's heartbeat timeout (``--heartbeat-timeout``): process 0 notices the dead
# process 1 within about this long instead of the default 20 s (measured 15 s), idle time of
# the test.
HEARTBEAT_S = 5


def _sets(items):
    return [arg for item in items for arg in ("--set", item)]


def _launch(workdir, *flags, processes=2):
    return [sys.executable, "-m", "ebm_jax.cli", "launch", "--processes", str(processes), "--",
            "train", "--config", "jem_digits", "--workdir", str(workdir), "--no-progress",
            *_sets(RUN), *flags]


def _params(workdir):
    _, state = load_run(str(workdir))
    return [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(state.params))]


def _rounding(a, b) -> float:
    return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y))) for x, y in zip(a, b))


def _children(pid):
    """``{process id in the group: pid}`` of the launcher's processes (read from /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline") as f:
                argv = f.read().split("\0")
        except OSError:
            continue
        if parent == pid and "--process-id" in argv:
            out[int(argv[argv.index("--process-id") + 1])] = int(entry)
    return out


def _wait_for_checkpoint(workdir, after: int, process, timeout=240):
    """The first complete checkpoint past step ``after`` (Orbax renames it into place)."""
    directory = os.path.join(workdir, "checkpoints")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert process.poll() is None, "the run ended before the checkpoint"
        steps = [int(n) for n in os.listdir(directory) if n.isdigit()] \
            if os.path.isdir(directory) else []
        if any(s > after for s in steps):
            return max(steps)
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint past step {after} within {timeout} s")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    def run(directory):
        workdir = directory / "run"
        train(make_config("jem_digits", RUN), str(workdir), progress=False, devices=8)
        return {"workdir": str(workdir)}

    return pathlib.Path(once_across_workers(tmp_path_factory, "one_process", run)["workdir"])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    def run(directory):
        workdir = directory / "run"
        done = subprocess.run(_launch(workdir), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return {"workdir": str(workdir), "stdout": done.stdout, "stderr": done.stderr}

    result = once_across_workers(tmp_path_factory, "two_processes", run)
    return pathlib.Path(result["workdir"]), result


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Ctrl-C to the launcher after the first checkpoint; resume; SIGKILL process 1 after the
    next checkpoint; damage the newest checkpoint; resume on both. Returns what each stage
    did."""
    result = once_across_workers(tmp_path_factory, "interrupted", _interrupt_kill_resume)
    return {**result, "resumed": pathlib.Path(result["resumed"]),
            "copy": pathlib.Path(result["copy"])}


def _interrupt_kill_resume(root):
    workdir, copy = root / "run", root / "copy"
    out = {}
    launcher = subprocess.Popen(_launch(workdir), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    first = _wait_for_checkpoint(workdir, 0, launcher)
    launcher.send_signal(signal.SIGINT)
    stdout, stderr = launcher.communicate(timeout=300)
    out["sigint"] = dict(first=first, returncode=launcher.returncode, stderr=stderr,
                         steps=sorted(int(n) for n in os.listdir(workdir / "checkpoints")))

    launcher = subprocess.Popen(_launch(workdir, "--resume", "--heartbeat-timeout",
                                        str(HEARTBEAT_S)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    saved = _wait_for_checkpoint(workdir, max(out["sigint"]["steps"]), launcher)
    children = _children(launcher.pid)
    os.kill(children[1], signal.SIGKILL)
    killed = time.monotonic()
    stdout, stderr = launcher.communicate(timeout=300)
    out["sigkill"] = dict(seconds=time.monotonic() - killed, returncode=launcher.returncode,
                          stderr=stderr, saved=saved)
    shutil.copytree(workdir, copy)

    # The newest checkpoint's array files truncated (a disk failure): both processes fall
    # back to the one before it, and the run replaces it when it gets there again.
    steps = sorted(int(n) for n in os.listdir(workdir / "checkpoints") if n.isdigit())
    damaged = workdir / "checkpoints" / str(steps[-1])
    for path in damaged.glob("default/*/d/*"):
        with open(path, "r+b") as handle:
            handle.truncate(10)
    done = subprocess.run(_launch(workdir, "--resume"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out["damaged"] = dict(steps=steps, stdout=done.stdout)
    out["resumed"] = str(workdir)
    out["copy"] = str(copy)
    return out


def test_two_processes_end_with_the_parameters_of_one(one_process, two_processes):
    """2 processes x 4 devices against 1 x 8, same replay-buffer blocks (8 in both): equal to
    float rounding after 30 steps; a dropped or doubled process slice, or a gradient
    averaged over one process only, moves them by far more."""
    two, _ = two_processes
    assert _rounding(_params(two), _params(one_process)) <= ROUNDING
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 8
    assert summary["steps"] == STEPS and summary["test_accuracy"] > 0.5
    assert json.loads((one_process / "summary.json").read_text())["processes"] == 1


def test_process_zero_alone_writes_the_run_files(two_processes):
    workdir, done = two_processes
    names = sorted(os.listdir(workdir))
    assert names == ["checkpoints", "config.json", "curves.png", "metrics.jsonl",
                     "samples.png", "summary.json"]
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(
        range(LOG_EVERY, STEPS + 1, LOG_EVERY))
    assert sorted(int(n) for n in os.listdir(workdir / "checkpoints")) == [
        STEPS - 2 * CHECKPOINT_EVERY, STEPS - CHECKPOINT_EVERY, STEPS]
    assert done["stdout"].count('"params_fingerprint"') == 1  # one summary printed
    assert "Gloo" not in done["stdout"]


def test_a_two_process_checkpoint_restores_on_1_2_4_8_devices(two_processes):
    """Written by 2 processes of 4 devices, read back on 1, 2, 4 and 8 devices of one process:
    every array equal, the replay buffer's blocks on their devices."""
    workdir, _ = two_processes
    from ebm_jax.experiments import build, find_buffer, initial_state
    from ebm_jax.train import shard_state

    exp = build(make_config("jem_digits", RUN), num_devices=8)
    template = initial_state(exp)
    checkpointer = Checkpointer(str(workdir / "checkpoints"))
    restored = {}
    for n in (1, 2, 4, 8):
        state = checkpointer.restore(STEPS, shard_state(template, make_data_mesh(n)))
        assert len(find_buffer(state.loss_state).samples.sharding.device_set) == n
        restored[n] = [np.asarray(v) for v in jax.tree.leaves(jax.device_get(state))]
    checkpointer.close()
    for n in (1, 2, 4):
        assert all(np.array_equal(a, b) for a, b in zip(restored[n], restored[8]))
    fresh = [np.asarray(v) for v in jax.tree.leaves(jax.device_get(template))]
    assert any(not np.array_equal(a, b) for a, b in zip(restored[8], fresh))


def test_ctrl_c_to_the_launcher_stops_both_processes_at_one_checkpoint(interrupted):
    """The launcher forwards one SIGINT to each process; they agree on the next logging step,
    save there together and exit 130; the launcher exits 130. (The signal follows the first
    checkpoint at once, so that step may itself be the next logging step: the stop is at it
    or after it.)"""
    stage = interrupted["sigint"]
    assert stage["returncode"] == 130, stage["stderr"][-2000:]
    last = max(stage["steps"])
    assert stage["first"] <= last < STEPS and last % LOG_EVERY == 0
    assert stage["stderr"].count("interrupted; the last checkpoint is intact") == 2


def test_sigkill_of_one_process_stops_the_other_after_the_heartbeat_timeout(interrupted):
    """Run with ``--heartbeat-timeout 5``: process 0 stops about 5 s after process 1 died
    (measured 5.5 s; 15 s with the default 20 s, which this bound refuses)."""
    stage = interrupted["sigkill"]
    assert stage["seconds"] < 2.5 * HEARTBEAT_S
    assert stage["returncode"] == 128 + signal.SIGKILL
    assert "process 1 was killed by SIGKILL" in stage["stderr"]
    line = [s for s in stage["stderr"].splitlines() if "failed first" in s][-1]
    assert "process 0 was killed by SIGABRT" in line or "process 0 exited with status" in line
    assert "process 0 exited with status 0" not in line


def test_resume_after_sigkill_reaches_the_uninterrupted_parameters(interrupted, two_processes):
    """On both processes, from the checkpoint before the newest (damaged on purpose): exactly
    the uninterrupted two-process run. From a copy of the killed run, on one process of 8
    devices: the same to float rounding."""
    two, _ = two_processes
    reference = _params(two)
    damaged = interrupted["damaged"]
    assert f"restored step {damaged['steps'][-2]}; skipped damaged: step " \
        f"{damaged['steps'][-1]}" in damaged["stdout"]
    assert damaged["stdout"].count("falling back to the one before it") == 1  # process 0 says
    assert all(np.array_equal(a, b) for a, b in zip(_params(interrupted["resumed"]), reference))
    copy = interrupted["copy"]
    saved = max(int(n) for n in os.listdir(copy / "checkpoints") if n.isdigit())
    assert 0 < saved < STEPS
    train(make_config("jem_digits", RUN), str(copy), resume=True, progress=False, devices=8)
    assert _rounding(_params(copy), reference) <= ROUNDING


def test_a_one_process_checkpoint_resumes_on_two_processes(one_process, two_processes,
                                                           tmp_path):
    """The 1-process run's last checkpoint, restored by two processes (no step left to
    train): the same parameters, as the summary's fingerprint says."""
    workdir = tmp_path / "run"
    shutil.copytree(one_process, workdir)
    done = subprocess.run(_launch(workdir, "--resume"), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resumed from step {STEPS}" in done.stdout
    before = json.loads((one_process / "summary.json").read_text())["params_fingerprint"]
    assert json.loads((workdir / "summary.json").read_text())["params_fingerprint"] == before


def test_two_processes_read_disjoint_tfds_rows_that_make_the_global_batch(tmp_path):
    """Mock cifar10 through the run's data path: each process reads its half of every
    global batch, the halves are disjoint, and the assembled batch is the one a single
    process reads at that step."""
    port = free_port()
    script = os.path.join(HERE, "tfds_two_processes.py")
    outs = [str(tmp_path / f"p{i}.npz") for i in range(2)]
    procs = [subprocess.Popen([sys.executable, script, f"localhost:{port}", str(i), outs[i]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
    p0, p1 = (np.load(out) for out in outs)
    assert np.array_equal(p0["whole"], p1["whole"])
    assert np.array_equal(p0["local"], p0["whole"][:, :4])
    assert np.array_equal(p1["local"], p1["whole"][:, 4:])
    for a, b in zip(p0["local"], p1["local"]):
        assert not any(np.array_equal(row, other) for row in a for other in b)
    with mocked(32):
        single = load_data(make_config(*TFDS_CONFIG)).train_batches(FIRST_STEP, 0, 1)
        expected = np.stack([np.asarray(next(single)["x"]) for _ in range(TFDS_STEPS)])
    assert np.array_equal(p0["whole"], expected)


def _train_as(process_id, *flags, port, extra=(), timeout=120):
    command = [sys.executable, "-m", "ebm_jax.cli", "train", "--config", "cd_2d_rings",
               "--workdir", os.devnull + "-unused", "--no-progress",
               "--coordinator", f"localhost:{port}", "--process-id", str(process_id),
               "--local-devices", "1", *flags, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _one_error_line(proc, timeout):
    started = time.monotonic()
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [s for s in stderr.splitlines() if s.startswith("ebm-jax: error:")]
    return proc.returncode, lines, time.monotonic() - started, stderr


def test_an_unreachable_coordinator_is_one_error_after_a_bounded_wait():
    proc = _train_as(1, "--num-processes", "2", "--join-timeout", "3", port=free_port())
    code, lines, seconds, stderr = _one_error_line(proc, 60)
    assert code == 2 and len(lines) == 1, stderr[-2000:]
    assert "process 1 of 2 could not join the run at localhost:" in lines[0]
    assert "within 3 s" in lines[0] and seconds < 30


def test_a_port_in_use_is_one_error():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _train_as(0, "--num-processes", "2", port=port)
        code, lines, _, stderr = _one_error_line(proc, 60)
    assert code == 2 and len(lines) == 1, stderr[-2000:]
    assert f"port {port} is in use" in lines[0]


def test_processes_started_with_different_counts_or_configs_are_one_error_each():
    port = free_port()
    procs = [_train_as(0, "--num-processes", "2", port=port),
             _train_as(1, "--num-processes", "3", port=port)]
    results = [_one_error_line(proc, 90) for proc in procs]
    for code, lines, _, stderr in results:
        assert code == 2 and len(lines) == 1, stderr[-2000:]
        assert "num_processes differs between processes" in lines[0]
    port = free_port()
    procs = [_train_as(0, "--num-processes", "2", port=port),
             _train_as(1, "--num-processes", "2", port=port,
                       extra=["--set", "optimizer.learning_rate=0.5"])]
    results = [_one_error_line(proc, 90) for proc in procs]
    for code, lines, _, stderr in results:
        assert code == 2 and len(lines) == 1, stderr[-2000:]
        assert "trains another config" in lines[0]
        assert "optimizer.learning_rate" in lines[0]


SLURM_PORTS = (61440, 65536)


def _free_slurm_port():
    for port in range(*SLURM_PORTS):
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port in JAX's SLURM range")


JOIN_AND_REPORT = """
import jax
from ebm_jax.parallel import join, process_group
join(process_group(auto=True), local_devices=2, timeout_s=60)
print("joined", jax.process_index(), jax.process_count(), jax.device_count(), flush=True)
"""


def test_distributed_finds_the_group_in_slurm_variables():
    """``--distributed``: JAX's cluster detection, here from the variables ``srun`` sets (the
    coordinator is the first node of the job, on a port derived from the job id)."""
    job = str(_free_slurm_port() - SLURM_PORTS[0])  # JAX's port: job id % 4096 + 61440
    procs = []
    for index in range(2):
        env = dict(os.environ, SLURM_JOB_ID=job, SLURM_STEP_NODELIST="localhost",
                   SLURM_NTASKS="2", SLURM_PROCID=str(index), SLURM_LOCALID=str(index))
        procs.append(subprocess.Popen([sys.executable, "-c", JOIN_AND_REPORT], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr[-2000:]
        outputs.append([line for line in stdout.splitlines() if line.startswith("joined")])
    assert outputs == [["joined 0 2 4"], ["joined 1 2 4"]]
