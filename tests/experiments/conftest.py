"""Tiny trained runs shared by the application layer's tests (one training each per session)."""
import shutil

import pytest
from compile_modes import fewer_xla_optimisations

from tests.experiments.tiny import tiny


@pytest.fixture(scope="session")
def jem_run_dir(tmp_path_factory):
    """A 20-step tiny ``jem_digits`` run directory (checkpoints at 0, 10, 20) and its summary,
    compiled with fewer XLA optimisations (whichever test asks first): a test that continues
    it and compares parameters must be marked ``fast_compile`` too. Tests that change the
    directory work on a copy (:func:`copy_run`)."""
    from ebm_jax.experiments import train

    workdir = tmp_path_factory.mktemp("jem_run") / "run"
    with fewer_xla_optimisations():
        summary = train(tiny("jem_digits", "run.num_steps=20"), str(workdir), progress=False)
    return workdir, summary


def copy_run(source, destination):
    """A private copy of a shared run directory."""
    shutil.copytree(source, destination)
    return destination
