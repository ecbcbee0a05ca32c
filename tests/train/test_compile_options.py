"""XLA compile options for the train step (``ebm_jax.train.cpu_compile_options``): what each
mode holds on each platform and environment, that the sharded step and ``setup_training`` hand
them to XLA, and that a run keeps the mode it was saved with (``run.cpu_compile``)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.experiments import make_config
from ebm_jax.experiments.evaluation import read_run_config
from ebm_jax.experiments.presets import load_config_file
from ebm_jax.experiments.run import check_workdir, train_step_compiler_options
from ebm_jax.losses import cross_entropy
from ebm_jax.parallel import make_data_mesh, shard_batch
from ebm_jax.experiments.config import RunConfig, field_types
from ebm_jax.train import (CPU_COMPILE_MODES, cpu_compile_options, init_train_state,
                           make_train_step, setup_training, shard_state, sharded_train_step)
from compile_modes import fewer_xla_optimisations, full_xla_optimisations

BATCH = {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
LOSS = cross_entropy(lambda w, x: x @ w)  # linear, 3 classes
NOT_AN_OPTION = {"xla_not_an_option_of_any_backend": True}


FAST = {"xla_backend_optimization_level": 2, "xla_cpu_use_fusion_emitters": False}


def _options(monkeypatch, xla_flags: str, mode: str = "fast", platform: str = "cpu") -> dict:
    monkeypatch.setenv("XLA_FLAGS", xla_flags)
    with full_xla_optimisations():
        return cpu_compile_options(mode, platform)


def test_each_mode_is_its_xla_cpu_settings_on_cpu_and_none_elsewhere(monkeypatch):
    assert _options(monkeypatch, "", "xla") == {}
    assert _options(monkeypatch, "", "o2") == {"xla_backend_optimization_level": 2}
    assert _options(monkeypatch, "", "fast") == FAST
    for mode in CPU_COMPILE_MODES:
        for platform in ("gpu", "tpu"):
            assert _options(monkeypatch, "", mode, platform) == {}
    with pytest.raises(ValueError, match="mode='O2': expected one of"):
        cpu_compile_options("O2")
    # the config offers exactly these modes
    assert make_config("jem_digits", ["run.cpu_compile=fast"]).run.cpu_compile == "fast"
    with pytest.raises(Exception, match="run.cpu_compile='o3'"):
        make_config("jem_digits", ["run.cpu_compile=o3"])
    assert RunConfig().cpu_compile == "o2" and field_types(RunConfig)["cpu_compile"] is str


def test_flags_set_in_xla_flags_are_left_to_the_environment(monkeypatch):
    assert _options(monkeypatch, "--xla_backend_optimization_level=3") == {
        "xla_cpu_use_fusion_emitters": False}
    assert _options(monkeypatch, "--xla_backend_optimization_level=3", "o2") == {}
    assert _options(monkeypatch, "--xla_force_host_platform_device_count=8 "
                                 "--xla_cpu_use_fusion_emitters=true") == {
        "xla_backend_optimization_level": 2}
    # a flag whose name only starts like one of them does not count
    assert _options(monkeypatch, "--xla_backend_optimization_level_x=1") == FAST


def test_fewer_optimisations_asked_of_jax_win(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    with fewer_xla_optimisations():
        assert cpu_compile_options("fast", "cpu") == {}


def test_the_sharded_step_and_setup_training_hand_their_options_to_xla():
    """An option XLA does not know fails the first call: the options reach the compiler
    (with the toolkit's options, or none, the step runs)."""
    state = init_train_state(jax.random.key(0), jnp.zeros((2, 3)), optax.adam(1e-2), LOSS, BATCH)
    mesh = make_data_mesh(1)
    placed = shard_state(state, mesh)
    for options, works in ((NOT_AN_OPTION, False), (cpu_compile_options("fast"), True)):
        step = sharded_train_step(make_train_step(LOSS, optax.adam(1e-2)), mesh, placed,
                                  donate=False, compiler_options=options)
        if works:
            assert int(step(placed, shard_batch(BATCH, mesh))[0].step) == 1
        else:
            with pytest.raises(Exception, match="xla_not_an_option"):
                step(placed, shard_batch(BATCH, mesh))
    run = setup_training(LOSS, optax.adam(1e-2), jnp.zeros((2, 3)), BATCH,
                         rng_key=jax.random.key(0), compiler_options=NOT_AN_OPTION)
    with pytest.raises(Exception, match="xla_not_an_option"):
        run.train_step(run.state, BATCH)


def test_every_mode_gives_the_same_step_to_float_rounding():
    """One guarded step compiled with XLA's defaults and in each mode, fully optimised: the
    same loss and parameters to float rounding."""
    state = init_train_state(jax.random.key(0), jnp.zeros((2, 3)), optax.adam(1e-2), LOSS, BATCH)
    step = make_train_step(LOSS, optax.adam(1e-2))
    batch = {"x": jax.random.normal(jax.random.key(1), (8, 2)), "y": jnp.arange(8) % 3}
    with full_xla_optimisations():
        default = jax.jit(step)(state, batch)
        for options in CPU_COMPILE_MODES.values():
            other = jax.jit(step, compiler_options=options or None)(state, batch)
            np.testing.assert_allclose(other[1]["loss"], default[1]["loss"], rtol=1e-6)
            np.testing.assert_allclose(other[0].params, default[0].params, rtol=1e-6, atol=1e-7)


def test_ebm_jax_train_compiles_in_its_configs_mode():
    for mode in CPU_COMPILE_MODES:
        config = make_config("jem_digits", [f"run.cpu_compile={mode}"])
        assert train_step_compiler_options(config) == cpu_compile_options(mode)
        assert train_step_compiler_options(config, make_data_mesh(1)) == cpu_compile_options(
            mode, "cpu")


def test_a_saved_run_without_the_setting_resumes_as_it_ran(tmp_path):
    """A run directory's config.json written before ``run.cpu_compile`` existed ran with
    XLA's defaults, and keeps them; a hand-written config takes the default ("o2"); the
    setting may differ between a run and its resumption (as ``run.steps_per_call`` may)."""
    values = make_config("jem_digits").to_dict()
    del values["run"]["cpu_compile"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(values))
    (tmp_path / "hand.json").write_text(json.dumps(values))
    assert read_run_config(str(tmp_path / "run")).run.cpu_compile == "xla"
    assert load_config_file(str(tmp_path / "run" / "config.json"),
                            saved_run=True).run.cpu_compile == "xla"
    assert load_config_file(str(tmp_path / "hand.json")).run.cpu_compile == "o2"
    check_workdir(make_config("jem_digits"), str(tmp_path / "run"), resume=True, overwrite=False)


def test_resuming_without_a_config_reads_the_saved_setting(tmp_path):
    """``ebm-jax train --workdir DIR --resume`` without ``--config``: the saved run's own
    setting ("xla" for a file without it), with the ``--set`` overrides on top."""
    from ebm_jax.cli import _parser, train_config

    values = make_config("jem_digits").to_dict()
    del values["run"]["cpu_compile"]
    (tmp_path / "config.json").write_text(json.dumps(values))
    args = _parser().parse_args(["train", "--workdir", str(tmp_path), "--resume"])
    assert train_config(args).run.cpu_compile == "xla"
    args = _parser().parse_args(["train", "--workdir", str(tmp_path), "--resume",
                                 "--set", "run.cpu_compile=o2"])
    assert train_config(args).run.cpu_compile == "o2"
