"""The papers' presets (JEM, IGEBM, DRL on CIFAR/SVHN) start and take a step on CPU.

Full-size runs are for accelerators; here every preset runs at a tiny width on
``tfds.testing.mock_data`` images, through the same build, data and train
step as ``ebm-jax train``.
"""
import functools
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import cli
from ebm_jax.data import tfds_source
from ebm_jax.data.tfds_source import DatasetNotPreparedError
from ebm_jax.experiments import (PRESETS, ConfigError, build, evaluate_run, find_buffer,
                                 initial_state, make_config)
from ebm_jax.train import make_train_step
from tfds_mock import mocked

# Mostly compilation of tiny networks: see conftest.fast_compile.
pytestmark = pytest.mark.fast_compile

TINY = {
    "wrn": ["model.depth=10", "model.widen_factor=1"],
    "igebm_resnet": ["model.resnet_channels=8", "model.resnet_blocks=1"],
    "resnet": ["model.resnet_channels=8", "model.resnet_blocks=1", "data.batch_size=12",
               "objective.num_langevin_steps=2"],
}
SMALL = ["data.batch_size=8", "run.num_eval_samples=8", "optimizer.warmup_steps=0",
         "run.fresh_sample_steps=2"]
# The persistent SGLD chains of the objectives that have them (JEM, CD; not recovery likelihood).
SMALL_CHAINS = ["objective.chain_start.capacity=64", "objective.num_steps=2"]
# DAT's OOD pools (the procedural pool's images are made on the CPU when the run is built).
SMALL_POOLS = ["objective.pool_size=16", "objective.generation_seeds=10"]


def _small(preset):
    objective = PRESETS[preset].objective
    return (SMALL + (SMALL_CHAINS if hasattr(objective, "chain_start") else [])
            + (SMALL_POOLS if hasattr(objective, "pool_size") else []))


def _tiny(preset, *extra):
    model = PRESETS[preset].model.kind
    return make_config(preset, _small(preset) + TINY[model] + list(extra))


# Each network family takes a compiled step; the other presets of a family (the same WRN with
# another head or other data) trace it: shapes and dtypes through the whole step, without
# compiling the same network again (about 10 s each on 2 cores).
STEP_TAKEN = {"jem_cifar10": True, "igebm_cifar10": True, "drl_cifar10": True,
              "jem_cifar100": False, "jem_svhn": False, "dat_cifar10": False}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(STEP_TAKEN))
def test_paper_preset_takes_a_training_step(preset):
    config = _tiny(preset)
    with mocked(32):
        exp = build(config)
        batch = next(exp.data.train_batches(0))
    assert batch["x"].shape == (config.data.batch_size, 32, 32, 3)
    state = initial_state(exp)
    step = make_train_step(exp.loss, exp.optimizer, ema_decay=config.optimizer.ema_decay)
    if STEP_TAKEN[preset]:
        before = jax.tree.map(np.array, state.params)
        state, metrics = jax.jit(step)(state, batch)
        assert np.isfinite(float(metrics["loss"])), metrics
        moved = [float(np.max(np.abs(np.asarray(a) - b)))
                 for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before))]
        assert max(moved) > 0.0
        energy_fn = exp.energy_fn
    else:
        shapes = jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), state.params)
        state, metrics = jax.eval_shape(step, state, batch)  # leaves: jax.ShapeDtypeStruct
        assert metrics["loss"].shape == () and metrics["loss"].dtype == jnp.float32
        assert jax.tree.map(lambda leaf: (leaf.shape, leaf.dtype), state.params) == shapes
        energy_fn = functools.partial(jax.eval_shape, exp.energy_fn)
    leaves = jax.tree.leaves(state.params)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)  # parameters stay float32
    # Energies are float32 even though the network computes in bfloat16.
    assert config.model.dtype == "bfloat16"
    energy = energy_fn(state.params, batch["x"][0])
    assert energy.dtype == jnp.float32 and energy.shape == ()
    buffer = find_buffer(state.loss_state)
    if buffer is not None:  # SGLD chains (and their noise) stay float32
        assert buffer.samples.dtype == jnp.float32


def test_paper_hyperparameters():
    jem = PRESETS["jem_cifar10"]
    sgld, start = jem.objective.sampler, jem.objective.chain_start
    assert (jem.model.kind, jem.model.depth, jem.model.widen_factor, jem.objective.num_steps,
            sgld.step_size, sgld.noise_scale, start.capacity, start.reinit_prob,
            jem.optimizer.learning_rate, jem.optimizer.kind) == (
        "wrn", 28, 10, 20, 1.0, 0.01, 10_000, 0.05, 1e-4, "adam")
    igebm = PRESETS["igebm_cifar10"].objective
    assert (igebm.num_steps, igebm.sampler.step_size, igebm.sampler.noise_scale,
            igebm.sampler.grad_clip, igebm.energy_l2) == (60, 10.0, 0.005, 0.01, 1.0)
    assert PRESETS["drl_cifar10"].objective.schedule == "t6"
    assert PRESETS["jem_cifar100"].data.dataset == "cifar100"
    assert PRESETS["jem_svhn"].data.dataset == "svhn_cropped"


COMMON = _small("jem_cifar10") + ["model.kind=conv", "model.channels=8,8", "model.dtype=float32",
                                  "run.robust_eval_examples=0",
                                  "run.eval_every=100", "run.log_every=1",
                                  "run.checkpoint_every=2"]


def _train_mock_cifar10(workdir, steps, *flags):
    argv = ["train", "--config", "jem_cifar10", "--workdir", str(workdir), "--no-progress",
            "--devices", "1", "--set", f"run.num_steps={steps}", *flags]
    for item in COMMON:
        argv += ["--set", item]
    with mocked(32):
        assert cli.main(argv) == 0
    return json.loads((workdir / "summary.json").read_text())


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """A four-step run (checkpoints at 0, 2, 4)."""
    workdir = tmp_path_factory.mktemp("runs") / "jem_cifar10"
    return workdir, _train_mock_cifar10(workdir, 4)


@pytest.mark.slow
def test_train_on_mock_cifar10_resumes_from_the_data_position(tmp_path, cifar_run, capsys):
    """A copy of the four-step run stopped after its step-2 checkpoint, resumed with --resume,
    ends where the four uninterrupted steps end: the tfds batches continue from the step in
    the checkpoint."""
    source, full = cifar_run
    split = tmp_path / "split"
    shutil.copytree(source, split)
    shutil.rmtree(split / "checkpoints" / "4")  # as if stopped after the step-2 checkpoint
    (split / "summary.json").unlink()
    capsys.readouterr()
    resumed = _train_mock_cifar10(split, 4, "--resume")
    assert "resumed from step 2 in" in capsys.readouterr().out
    # A loader that restarted at step 0 would train steps 2-3 on the batches of steps 0-1.
    assert full["params_fingerprint"] == resumed["params_fingerprint"]


@pytest.mark.slow
def test_cifar10_model_is_scored_on_the_papers_ood_sets(cifar_run, monkeypatch):
    workdir, _ = cifar_run
    with mocked(32):
        report = evaluate_run(str(workdir), metrics_requested=["ood"], figures=False)
    for name in ("svhn_cropped", "cifar100", "celeb_a", "uniform_noise"):
        assert 0.0 <= report["ood"][name]["log_px"] <= 1.0, name
    assert "ood_unavailable" not in report

    # The OOD sets not prepared: the offline sets are still scored and the report says why not.
    def not_prepared(*args, **kwargs):
        raise DatasetNotPreparedError("svhn_cropped is not prepared: tfds build svhn_cropped")

    monkeypatch.setattr(tfds_source, "tfds_ood_sets", not_prepared)
    with mocked(32):
        report = evaluate_run(str(workdir), metrics_requested=["ood"], figures=False)
    assert "svhn_cropped" not in report["ood"] and "uniform_noise" in report["ood"]
    assert "tfds build svhn_cropped" in report["ood_unavailable"]


def test_dataset_that_is_not_prepared_is_one_clear_error(tmp_path, capsys):
    code = cli.main(["train", "--config", "jem_cifar10", "--workdir", str(tmp_path / "w"),
                     "--set", f"data.data_dir={tmp_path}", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "cifar10" in err and "tfds build cifar10" in err and "array_record" in err


@pytest.mark.slow
@pytest.mark.parametrize("overrides,message", [
    (["model.depth=27"], r"model\.depth=27: expected 6n\+4"),
    (["model.dtype=float16"], r"model\.dtype='float16': expected one of"),
    (["model.kind=resnet"], r"model\.kind='resnet' with objective='jem'"),
    (["model.kind=igebm_resnet"], r"model\.kind='igebm_resnet' with objective='jem'"),
])
def test_bad_network_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("jem_cifar10", overrides)
