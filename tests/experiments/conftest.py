"""Tiny trained runs shared by the application layer's tests (one training each per session)."""
import shutil

import pytest
from compile_modes import fewer_xla_optimisations

from tests.experiments.tiny import tiny


def _train_tiny(tmp_path_factory, preset: str, *extra: str):
    from ebm_jax.experiments import train

    workdir = tmp_path_factory.mktemp(preset) / "run"
    with fewer_xla_optimisations():
        summary = train(tiny(preset, *extra), str(workdir), progress=False)
    return workdir, summary


@pytest.fixture(scope="session")
def jem_run_dir(tmp_path_factory):
    """A 20-step tiny ``jem_digits`` run directory (checkpoints at 10 and 20) and its summary,
    compiled with fewer XLA optimisations (whichever test asks first): a test that continues
    it and compares parameters must be marked ``fast_compile`` too. Tests that change the
    directory work on a copy (:func:`copy_run`)."""
    return _train_tiny(tmp_path_factory, "jem_digits", "run.num_steps=20")


@pytest.fixture(scope="session")
def softmax_run_dir(tmp_path_factory):
    """A 20-step tiny ``softmax_digits`` run directory (JEM's baseline) and its summary."""
    return _train_tiny(tmp_path_factory, "softmax_digits", "run.num_steps=20")


@pytest.fixture(scope="session")
def cd_run_dir(tmp_path_factory):
    """A 20-step tiny ``cd_digits`` run directory (an unconditional EBM) and its summary."""
    return _train_tiny(tmp_path_factory, "cd_digits", "run.num_steps=20")


def copy_run(source, destination):
    """A private copy of a shared run directory."""
    shutil.copytree(source, destination)
    return destination
