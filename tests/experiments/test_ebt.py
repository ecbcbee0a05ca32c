"""EBT as an objective of the application layer: its settings, the branches dataset, its own
metrics (known answers on analytic energies), and tiny runs end to end (train, resume,
evaluate) from the shared tiny config."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax import cli
from ebm_jax.data import branch_modes, branches
from ebm_jax.experiments import ConfigError, build, evaluate_run, initial_state, load_data
from ebm_jax.experiments.objectives.ebt import (HIT_TOLERANCE, held_out_pairs, make_evaluate,
                                                mode_distance, psnr)
from ebm_jax.experiments.presets import make_config
from ebm_jax.losses import ebt_params
from ebm_jax.train import make_train_step
from tests.experiments.conftest import EBT_BRANCHES_STEPS, EBT_DENOISE_STEPS, copy_run
from tests.experiments.tiny import tiny

DENOISE_KEYS = {"psnr", "psnr_noisy", "psnr_2k", "thinking_gain_db", "energy_error_spearman",
                "best_of_n_gain_db", "mse", "step_size"}
BRANCH_KEYS = {"branch_hit_rate", "branch_hit_rate_mean_target", "branch_hit_rate_start",
               "branch_hit_rate_best_of_n", "branch_shares", "mse", "mse_mean_target",
               "step_size"}
DENSITY_KEYS = {"energy_data_mean", "energy_noise_mean", "auroc_uniform_noise", "mmd",
                "sample_confidence", "test_accuracy"}


# -- the branches dataset ---------------------------------------------------------------------
def test_branches_are_seeded_float_targets_on_the_two_half_circles():
    a, b, other = branches(0), branches(0), branches(1)
    assert a.x_train.shape == a.y_train.shape == (10_000, 1)
    assert a.x_test.shape == a.y_test.shape == (1000, 1)
    assert a.y_train.dtype == np.float32 and a.x_train.dtype == np.float32
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, other.y_train)
    assert a.x_train.min() >= -1.0 and a.x_train.max() <= 1.0
    # Every point within 0.1 of a branch (noise 0.02: 5 standard deviations), both branches
    # about equally often.
    distance = mode_distance(a.y_train, branch_modes(a.x_train))
    assert distance.max() < HIT_TOLERANCE
    upper = float(np.mean(a.y_train[:, 0] > 0))
    assert 0.45 < upper < 0.55
    # The answers themselves: the upper half circle first.
    np.testing.assert_allclose(branch_modes(np.array([[0.6]]))[0, :, 0], [0.8, -0.8],
                               rtol=1e-6)


def test_the_branches_preset_loads_the_regression_data():
    config = make_config("ebt_branches")
    data = load_data(config)
    assert data.x_train.shape == data.y_train.shape == (10_000, 1)
    assert data.y_train.dtype == np.float32 and data.num_classes is None
    assert data.image_shape is None and data.modes is branch_modes
    np.testing.assert_array_equal(data.y_train, branches(config.run.seed).y_train)


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, overrides, message", [
    ("ebt_digits_denoise", ["objective.num_steps=0"],
     r"objective.num_steps=0: expected a positive int"),
    ("ebt_digits_denoise", ["objective.mode=system3"],
     r"objective.mode='system3': expected one of \['system1', 'system2'\]"),
    ("ebt_digits_denoise", ["objective.y0=batch"], r"objective.y0='batch': expected one of"),
    ("ebt_digits_denoise", ["objective.noise_std=0"],
     r"objective.noise_std=0.0: expected a positive number"),
    ("ebt_digits_denoise", ["objective.clip_range=1,-1"],
     r"objective.clip_range=\(1.0, -1.0\): expected none, or low,high with low < high"),
    ("ebt_digits_denoise", ["objective.replay_fraction=1.5"],
     r"objective.replay_fraction=1.5: expected a probability"),
    # the loss factory's own cross-field checks, named as config fields
    ("ebt_digits_denoise", ["objective.min_steps=2"],
     r"objective.min_steps=2 with mode='system1': expected mode='system2'"),
    ("ebt_digits_denoise", ["objective.mode=system2", "objective.min_steps=5",
                            "objective.max_steps=3"],
     r"objective.min_steps=5 > max_steps=3"),
    ("ebt_digits_denoise", ["objective.mode=system2", "objective.replay_capacity=100"],
     r"objective.replay_capacity=100 with replay_fraction=0.0: expected both positive"),
    ("ebt_digits_denoise", ["objective.y0=noise", "objective.start_noise=0"],
     r"objective.start_noise=0.0 with y0='noise': expected a positive std"),
    ("ebt_digits_denoise", ["objective.mode=system2", "objective.replay_capacity=16",
                            "objective.replay_fraction=0.25"],
     r"objective.replay_capacity=16 with data.batch_size=64: expected a capacity of at least"),
    # the task against the data
    ("ebt_digits_denoise", ["objective.task=regress"],
     r"objective.task='regress' with data.dataset='digits': expected a dataset with "
     r"continuous targets, one of \['branches', 'ball_fork', 'reach'\]"),
    ("ebt_branches", ["objective.task=denoise"],
     r"objective.task='denoise' with data.dataset='branches': expected objective.task="
     r"'regress'"),
    ("ebt_branches", ["objective=cd"],
     r"objective='cd' with data.dataset='branches': expected an objective that learns a "
     r"conditional energy E\(x, y\) .* one of \['ebt', 'ebt_policy', 'world_model'\]"),
    ("ebt_branches", ["model.kind=conv"],
     r"model.kind='conv' with data.dataset='branches': expected 'mlp'"),
    ("ebt_digits_denoise", ["model.kind=conv"],
     r"model.kind='conv' with objective='ebt': expected one of \['mlp'\]"),
])
def test_bad_settings_name_the_field(preset, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config(preset, overrides)


def test_presets_mirror_the_benchmark_and_switch_in_from_any_preset():
    denoise, branch = make_config("ebt_digits_denoise"), make_config("ebt_branches")
    assert (denoise.objective.task, denoise.objective.mode, denoise.objective.num_steps,
            denoise.objective.y0, denoise.objective.noise_std) == ("denoise", "system1", 4,
                                                                   "input", 0.3)
    assert (branch.objective.task, branch.objective.num_steps, branch.objective.y0,
            branch.objective.start_noise, branch.objective.contrastive_weight,
            branch.objective.batch_negatives) == ("regress", 8, "target", 0.5, 0.1, 8)
    assert branch.data.dataset == "branches" and branch.model.hidden == (128, 128)
    switched = make_config("jem_digits", ["objective=ebt", "objective.num_steps=2"])
    assert switched.objective.kind == "ebt" and switched.objective.task == "denoise"


def test_presets_and_config_commands_list_and_print_ebt(capsys):
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "ebt: energy-based transformer" in out
    assert "ebt_branches" in out and "data.dataset=branches" in out
    assert "ebt_digits_denoise" in out
    assert cli.main(["config", "ebt_branches", "--set", "objective.num_steps=3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["objective"]["kind"] == "ebt" and printed["objective"]["num_steps"] == 3


# -- build and the method's metrics --------------------------------------------------------------
def test_build_gives_a_conditional_energy_and_no_sampler():
    config = tiny("ebt_digits_denoise")
    exp = build(config)
    assert exp.sampler is None and exp.make_sampler is None and exp.generate is None
    assert not exp.density and exp.evaluate is not None and exp.logits_fn is None
    assert sorted(exp.params) == ["energy", "log_step_size"]
    x = jnp.asarray(exp.data.x_test[0])
    assert exp.energy_fn(exp.params, x, x).shape == ()
    # One train step on a batch that carries the digits' integer labels (not used).
    state = initial_state(exp)
    batch = {"x": exp.data.x_train[:32], "y": exp.data.y_train[:32]}
    step = jax.jit(make_train_step(exp.loss, exp.optimizer))
    state, metrics = step(state, batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"]))
    assert float(metrics["reconstruction_start"]) > 0.05  # inputs noised: 0.3² before clipping


def test_denoising_metrics_on_an_analytic_energy_are_the_closed_form():
    """E(x, y) = ½|y - x/2|², from the noisy input with step 0.5: after k steps the prediction
    is x (1 - ½(1 - 0.5^k)), so each PSNR is known."""
    config = make_config("ebt_digits_denoise")
    data = load_data(config)

    def energy(params, x, y):
        return params["energy"] + 0.5 * jnp.sum(jnp.square(y - 0.5 * x))

    params = ebt_params(jnp.float32(0.0), step_size=0.5)
    out = make_evaluate(config, data, energy)(params, jax.random.key(0))
    inputs, targets = held_out_pairs(config, data)
    assert set(out) == DENOISE_KEYS

    def at(k):
        return psnr(inputs * (1.0 - 0.5 * (1.0 - 0.5 ** k)), targets, 2.0)

    assert out["psnr_noisy"] == pytest.approx(psnr(inputs, targets, 2.0), abs=1e-6)
    assert out["psnr"] == pytest.approx(at(4), abs=1e-3)
    assert out["psnr_2k"] == pytest.approx(at(8), abs=1e-3)
    assert out["thinking_gain_db"] == pytest.approx(at(8) - at(4), abs=1e-3)
    assert out["step_size"] == pytest.approx(0.5)
    # The test noise is the benchmark's: 0.3 clipped to [-1, 1] gives 18.4-18.5 dB.
    assert 18.3 < out["psnr_noisy"] < 18.6
    quick = make_evaluate(config, data, energy)(params, jax.random.key(0), quick=True)
    assert set(quick) == {"psnr", "psnr_noisy", "mse", "step_size"}


@pytest.mark.slow
def test_branch_metrics_on_an_analytic_energy():
    """E(x, y) = ½ min over branches of (y - branch)²: 8 steps of 0.5 from N(0, 1) starts end
    on a branch (within 0.4% of the start's distance), about half on each; predicting the mean
    target (~0) hits only near x = ±1."""
    config = make_config("ebt_branches")
    data = load_data(config)

    def energy(params, x, y):
        modes = branch_modes(x[None])[0]                          # [2, 1]
        return params["energy"] + 0.5 * jnp.min(jnp.sum(jnp.square(y[None] - modes), -1))

    params = ebt_params(jnp.float32(0.0), step_size=0.5)
    out = make_evaluate(config, data, energy)(params, jax.random.key(0))
    assert set(out) == BRANCH_KEYS
    assert out["branch_hit_rate"] > 0.99 and out["branch_hit_rate_best_of_n"] > 0.99
    assert out["branch_hit_rate_mean_target"] < 0.05
    assert 0.05 < out["branch_hit_rate_start"] < 0.2   # N(0, 1) starts: chance
    assert sum(out["branch_shares"]) == pytest.approx(1.0) and min(out["branch_shares"]) > 0.3
    # An energy with one basin at y = 0 (the least-squares answer) hits neither branch.
    flat = make_evaluate(config, data, lambda p, x, y: p["energy"] + 0.5 * jnp.sum(y ** 2))
    assert flat(params, jax.random.key(0))["branch_hit_rate"] < 0.05


# -- tiny runs end to end -----------------------------------------------------------------------
def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _losses(workdir):
    return [r["loss"] for r in _records(workdir) if "loss" in r]


@pytest.mark.slow
def test_denoising_run_trains_and_reports_its_own_metrics(ebt_denoise_run_dir):
    workdir, summary = ebt_denoise_run_dir
    with open(workdir / "summary.json") as f:
        saved = json.load(f)
    assert saved["steps"] == EBT_DENOISE_STEPS
    assert DENOISE_KEYS <= set(saved) and not DENSITY_KEYS & set(saved)
    # The prediction beats the noisy input, the loss fell, the learned step size moved.
    assert saved["psnr"] > saved["psnr_noisy"] + 0.2, saved
    losses = _losses(workdir)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert abs(saved["step_size"] - 0.1) > 1e-3, saved
    # The periodic evaluation logs the quick metrics every run.eval_every (10) steps.
    evals = [r for r in _records(workdir) if "eval/psnr" in r]
    assert [r["step"] for r in evals] == list(range(10, EBT_DENOISE_STEPS + 1, 10))
    assert all("eval/auroc_uniform_noise" not in r for r in evals)
    assert (workdir / "predictions.png").is_file() and (workdir / "curves.png").is_file()
    assert not (workdir / "samples.png").exists()


@pytest.mark.slow
@pytest.mark.fast_compile  # as the session's run was compiled
def test_denoising_run_resumes_bit_exactly(ebt_denoise_run_dir, tmp_path, capsys):
    source, uninterrupted = ebt_denoise_run_dir
    workdir = copy_run(source, tmp_path / "run")
    last = EBT_DENOISE_STEPS
    shutil.rmtree(workdir / "checkpoints" / str(last))  # stopped after the previous one
    os.remove(workdir / "summary.json")
    code = cli.main(["train", "--workdir", str(workdir), "--resume", "--no-progress",
                     "--devices", "1"])
    out = capsys.readouterr().out
    assert code == 0 and f"resumed from step {last - 10}" in out, out
    with open(workdir / "summary.json") as f:
        resumed = json.load(f)
    assert resumed["steps"] == last and '"psnr"' in out
    assert resumed["params_fingerprint"] == uninterrupted["params_fingerprint"]
    assert resumed["psnr"] == pytest.approx(uninterrupted["psnr"], abs=1e-6)


@pytest.mark.slow
def test_evaluate_reports_the_methods_metrics_and_refuses_density_metrics(
        ebt_denoise_run_dir, tmp_path, capsys):
    source, summary = ebt_denoise_run_dir
    workdir = copy_run(source, tmp_path / "run")
    report = evaluate_run(str(workdir))
    assert report["metrics"] == [] and report["objective"] == "ebt"
    assert set(report["method_metrics"]) == DENOISE_KEYS
    assert report["psnr"] == pytest.approx(summary["psnr"], abs=1e-6)
    assert "ood" not in report and "inpainting" not in report
    assert (workdir / "evaluation" / "predictions.png").is_file()
    assert cli.main(["evaluate", str(workdir), "--no-figures"]) == 0
    assert "| psnr |" in capsys.readouterr().out
    for metric, needs in (("ood", "needs an energy of the data E(x)"),
                          ("classification", "needs a classifier")):
        assert cli.main(["evaluate", str(workdir), "--metrics", metric]) == 2
        assert needs in capsys.readouterr().err


@pytest.mark.slow
def test_branches_run_predicts_on_the_branches(ebt_branches_run_dir):
    workdir, summary = ebt_branches_run_dir
    assert summary["steps"] == EBT_BRANCHES_STEPS
    assert BRANCH_KEYS <= set(summary) and not DENSITY_KEYS & set(summary)
    # Far above chance (the starts themselves, ~0.12) and the least-squares answer (~0.01).
    assert summary["branch_hit_rate"] > 0.5, summary
    assert summary["branch_hit_rate"] > 3 * summary["branch_hit_rate_start"], summary
    assert summary["branch_hit_rate_mean_target"] < 0.05
    losses = _losses(workdir)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    assert (workdir / "predictions.png").is_file()
