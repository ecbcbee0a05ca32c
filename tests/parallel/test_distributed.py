"""Joining a group of processes: the settings and their checks, the one-process no-ops, the
launcher's command lines. The runs over two processes are in
``tests/experiments/test_many_processes.py``."""
import signal
import socket

import numpy as np
import pytest

from ebm_jax import cli
from ebm_jax.experiments.config import ConfigError
from ebm_jax.experiments.launch import _status, check_launch, process_commands
from ebm_jax.parallel import (DistributedError, ProcessGroup, agree, any_process, barrier,
                              gather_to_host, is_primary, join, process_group)
from ebm_jax.parallel.distributed import check_port_free, split_address


def test_the_group_comes_from_arguments_else_from_the_environment():
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.2:8476", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    assert process_group(environ=env) == ProcessGroup("10.0.0.2:8476", 4, 3)
    assert process_group(process_id=1, environ=env) == ProcessGroup("10.0.0.2:8476", 4, 1)
    assert process_group("h:1", 2, 0, environ=env) == ProcessGroup("h:1", 2, 0)
    assert process_group(environ={}) is None
    assert process_group(environ={"JAX_PROCESS_ID": ""}) is None
    assert process_group(auto=True, environ={}) == ProcessGroup(None, None, None, auto=True)


@pytest.mark.parametrize("args, message", [
    (("h:1", 2, 2), "process_id=2: expected an id in [0, 2)"),
    (("h:1", 2, -1), "process_id=-1: expected an int >= 0"),
    (("h:1", 0, 0), "num_processes=0: expected an int >= 1"),
    (("h:1", "two", 0), "num_processes='two'"),
    (("h", 2, 0), "coordinator='h': expected HOST:PORT"),
    (("h:0", 2, 0), "port in 1-65535"),
    (("h:1", 2, None), "process_id (or JAX_PROCESS_ID) missing"),
    ((None, 2, 1), "coordinator (or JAX_COORDINATOR_ADDRESS) missing"),
])
def test_a_bad_or_incomplete_group_is_one_clear_error(args, message):
    with pytest.raises(DistributedError) as error:
        process_group(*args, environ={})
    assert message in str(error.value)


def test_addresses_split_into_host_and_port():
    assert split_address("[::1]:9911") == ("::1", 9911)
    assert split_address("node-3.cluster:1234") == ("node-3.cluster", 1234)


def test_a_port_in_use_is_refused_before_joining():
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(DistributedError, match=f"port {port} is in use"):
            check_port_free(f"localhost:{port}")
    check_port_free(f"localhost:{port}")  # closed again: free


def test_alone_the_collective_helpers_are_no_ops():
    tree = {"a": np.arange(3)}
    assert gather_to_host(tree) is tree
    assert any_process(True) and not any_process(False)
    assert agree("config", {"lr": 0.1}, same=True) == [{"lr": 0.1}]
    assert is_primary()
    barrier("nothing to wait for")


def test_joining_after_the_backend_started_is_refused():
    import jax

    jax.devices()  # the suite's backend has started
    with pytest.raises(DistributedError, match="before any device is used"):
        join(ProcessGroup("localhost:1", 2, 1))


@pytest.mark.parametrize("argv, message", [
    (["--num-processes", "2", "--process-id", "0"], "coordinator (or JAX_COORDINATOR_ADDRESS)"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"],
     "process_id=2: expected an id in [0, 2)"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "expected HOST:PORT"),
    (["--local-devices", "0"], "--local-devices 0: expected a positive int"),
])
def test_the_command_line_refuses_a_bad_group_before_any_compute(argv, message, capsys,
                                                                 monkeypatch, tmp_path):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["train", "--workdir", str(tmp_path / "run"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "run").exists()


def test_the_launcher_gives_each_process_its_place():
    commands = process_commands(["train", "--config", "cd_2d_rings"], 3, 2, 9911)
    assert [c[c.index("--process-id") + 1] for c in commands] == ["0", "1", "2"]
    assert all(c[c.index("--coordinator") + 1] == "localhost:9911" for c in commands)
    assert all(c[c.index("--num-processes") + 1] == "3" for c in commands)
    assert check_launch(["train"], 2, None) == 4  # eight CPU devices in all
    assert check_launch(["train"], 16, None) == 1
    assert _status(-signal.SIGKILL) == 137 and _status(3) == 3


@pytest.mark.parametrize("command, processes, message", [
    ([], 2, "expected `ebm-jax launch --processes N -- train ...`"),
    (["evaluate", "runs/a"], 2, "expected `ebm-jax launch"),
    (["train"], 0, "--processes 0: expected a positive int"),
    (["train", "--process-id", "1"], 2, "names --process-id"),
    (["train", "--coordinator=h:1"], 2, "names --coordinator"),
])
def test_the_launcher_refuses_a_bad_launch(command, processes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        check_launch(command, processes, None)


def test_a_run_over_several_processes_takes_every_device(monkeypatch):
    """``--devices`` below the global count would leave a process without devices: refused."""
    import jax

    from ebm_jax.experiments import make_config
    from ebm_jax.experiments.run import device_mesh

    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with pytest.raises(ConfigError, match="--devices 4: expected every one of the"):
        device_mesh(make_config("cd_2d_rings"), 4)
    assert device_mesh(make_config("cd_2d_rings"), None).shape["data"] == jax.device_count()
