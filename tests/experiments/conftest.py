"""Tiny trained runs shared by the application layer's tests (one training each per session)."""
import fcntl
import json
import os
import shutil

import pytest
from compile_modes import compile_mode

from tests.experiments.tiny import tiny


def _train_tiny(tmp_path_factory, preset: str, *extra: str, fewer_optimisations: bool = True):
    from ebm_jax.experiments import train

    workdir = tmp_path_factory.mktemp(preset) / "run"
    with compile_mode(fewer_optimisations):
        summary = train(tiny(preset, *extra), str(workdir), progress=False, devices=1)
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


@pytest.fixture(scope="session")
def dat_run_dir(tmp_path_factory):
    """A 20-step tiny ``dat_digits`` run directory (10 steps of each stage, checkpoints at 10
    and 20) and its summary: robustness on 50 test digits, generations swept over 2 and 4
    ascent steps from 40 held-out seeds."""
    return _train_tiny(tmp_path_factory, "dat_digits", "run.num_steps=20",
                       "objective.stage1_steps=10", "objective.pool_size=100",
                       "objective.generation_seeds=40", "objective.sweep_steps=2,4",
                       "objective.sample_steps=2", "objective.auroc_images=32",
                       "run.robust_eval_examples=50")


def once_across_workers(tmp_path_factory, name: str, make):
    """``make(directory) -> dict`` (JSON) run once per test session, whichever xdist worker
    asks first; the other worker waits for it and reads the same dict. For the costliest
    shared runs, which work stealing would otherwise run on both workers when it splits their
    file (the directory is kept for the session; treat it as read-only)."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # shared by the workers of this session
    directory = root / f"once-{name}"
    with open(root / f"once-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = directory / "result.json"
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)  # a failed attempt's leftovers
            directory.mkdir()
            result = make(directory)
            done.write_text(json.dumps(result))
        return json.loads(done.read_text())


def copy_run(source, destination):
    """A private copy of a shared run directory."""
    shutil.copytree(source, destination)
    return destination


# EBT (a conditional energy E(x, y)): the tiny width learns to denoise in 60 steps; the
# branches need the preset's own width (32 units stayed at the starts' chance level of ~0.1
# hits after 1,000 steps; 128 reach 0.8 in 200).
EBT_DENOISE_STEPS = 60
EBT_BRANCHES_STEPS = 200


@pytest.fixture(scope="session")
def ebt_denoise_run_dir(tmp_path_factory):
    """A tiny ``ebt_digits_denoise`` run directory (checkpoints every 10 steps, the last 3
    kept) and its summary, compiled as :func:`jem_run_dir`."""
    return _train_tiny(tmp_path_factory, "ebt_digits_denoise",
                       f"run.num_steps={EBT_DENOISE_STEPS}")


@pytest.fixture(scope="session")
def ebt_branches_run_dir(tmp_path_factory):
    """A tiny ``ebt_branches`` run directory at the preset's width (128, 128) and its summary,
    compiled fully optimised: 200 steps of second-order descent are runtime, not compilation
    (no test continues this run)."""
    return _train_tiny(tmp_path_factory, "ebt_branches", f"run.num_steps={EBT_BRANCHES_STEPS}",
                       "model.hidden=128,128", "run.eval_every=50", "run.checkpoint_every=50",
                       fewer_optimisations=False)
