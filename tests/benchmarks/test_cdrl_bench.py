"""benchmarks/cdrl.py: its rows and the generation it times, on a tiny untrained CDRL model
(nothing is written to benchmarks/results)."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import cdrl as cdrl_bench  # noqa: E402

from ebm_jax.experiments import build, initial_state, make_config  # noqa: E402
from tests.experiments.tiny import tiny  # noqa: E402

pytestmark = pytest.mark.fast_compile

KEYS = ("method", "dataset", "seed", "langevin_steps", "mmd", "mmd_sd", "mmd_draws", "kl_nats",
        "frechet_distance", "seconds_per_sample", "guidance_w", "class_accuracy")


def _measured_untrained(preset: str, batch_size: int, num: int) -> dict:
    """The benchmark's generation measure (2 draws, 1 timing) of an untrained tiny ``preset``
    refining with 2 steps a level."""
    exp = build(tiny(preset, f"data.batch_size={batch_size}", "objective.initializer_hidden=16",
                     "objective.sample_langevin_steps=2"))
    return cdrl_bench.measure_generation(exp, initial_state(exp).params, num=num, repeats=1,
                                         draws=2)


@pytest.mark.slow
def test_a_row_carries_the_issues_summary_keys_and_generation_is_timed():
    measured = _measured_untrained("cdrl_2d_rings", 48, 32)
    assert np.isfinite(measured["mmd"]) and measured["seconds_per_sample"] > 0
    # the MMD is a mean over independent generations: two draws differ
    assert measured["mmd_draws"] == 2 and measured["mmd_sd"] > 0
    row = cdrl_bench.row("cdrl", "rings", 0, 2, {"kl_nats": 1.0, "train_seconds": 3.0},
                         measured)
    assert set(KEYS) <= set(row)
    assert row["langevin_steps"] == 2 and row["guidance_w"] is None


@pytest.mark.slow
def test_level_gradient_variances_are_one_positive_number_per_level(monkeypatch):
    exp = build(tiny("cdrl_2d_rings", "data.batch_size=48", "objective.initializer_hidden=16",
                     "objective.num_langevin_steps=2"))
    params = initial_state(exp).params
    shared = cdrl_bench.level_gradient_variances(exp, params, shared_noise=True, draws=8)
    joint = cdrl_bench.level_gradient_variances(exp, params, shared_noise=False, draws=8)
    assert shared.shape == joint.shape == (6,)
    assert np.all(np.isfinite(shared)) and np.all(shared > 0) and np.all(joint > 0)
    assert not np.allclose(shared, joint)      # the pairs differ
    # the rows: the run's chains, then exact chains over the training set
    monkeypatch.setattr(cdrl_bench, "EXACT_DRAWS", (8,))
    rows = cdrl_bench.variance_rows("rings", 0, exp, params)
    assert [(r["estimate"], r["level"]) for r in rows] == [
        (estimate, level) for estimate in ("chains", "exact") for level in (1, 2, 3)]
    for r in rows[3:]:
        assert r["draws"] == 8 and 0 < r["positive_ratio"] < np.inf
        assert r["variance_ratio"] == r["variance_shared"] / r["variance_joint"]


def _stopping_train(monkeypatch, configs=None):
    """Make the benchmark's ``train`` stop at step 300 before any checkpoint (recording each
    config it was given in ``configs``): the rows' bookkeeping without training."""
    from ebm_jax.train.guard import TrainingDiverged

    def stops_early(config, workdir, progress=True):
        if configs is not None:
            configs.append(config)
        os.makedirs(os.path.join(workdir, "checkpoints"), exist_ok=True)
        raise TrainingDiverged("diverged", ("energy_scale",), step=300)

    monkeypatch.setattr(cdrl_bench, "train", stops_early)


def test_a_run_stopped_before_its_first_checkpoint_gives_rows_without_figures(monkeypatch):
    _stopping_train(monkeypatch)
    summary, exp, state = cdrl_bench.trained("cdrl_2d_rings", ["run.seed=2"], quick=True)
    assert summary == {"stopped_at": 300} and exp is None and state is None
    rows = cdrl_bench.compare("rings", 2, quick=True)
    assert [(r["method"], r["langevin_steps"]) for r in rows] == [
        ("cdrl", 0), ("cdrl", 5), ("cdrl", 15), ("rl", 15)]
    assert all(r["stopped_at"] == 300 and r["mmd"] is None and r["kl_nats"] is None
               for r in rows)


def test_set_changes_the_cdrl_presets_only_and_rows_record_it(monkeypatch, capsys):
    """``--set KEY=VALUE`` reaches the CDRL run (not recovery likelihood's) and its rows; a bad
    key is one line and exit 2 before any training."""
    configs = []
    _stopping_train(monkeypatch, configs)
    rows = cdrl_bench.compare("rings", 2, quick=True, overrides=("objective.step_scale=5e-4",))
    assert [c.objective.kind for c in configs] == ["cdrl", "rl"]
    assert configs[0].objective.step_scale == 5e-4
    assert [r["overrides"] for r in rows] == [["objective.step_scale=5e-4"]] * 3 + [[]]
    configs.clear()
    with pytest.raises(SystemExit) as stopped:
        cdrl_bench.main(["--toys", "rings", "--no-save", "--set", "objective.step_scal=1"])
    assert stopped.value.code == 2 and not configs
    assert "objective.step_scal" in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.slow
def test_on_the_digits_a_row_carries_the_yardsticks_frechet_distance_instead_of_mmd():
    measured = _measured_untrained("cdrl_digits", 12, 16)
    assert "mmd" not in measured and np.isfinite(measured["frechet_distance"])
    assert measured["frechet_draws"] == 2 and measured["frechet_sd"] > 0   # distinct draws
    row = cdrl_bench.row("cdrl", "digits", 0, 2, {"train_seconds": 3.0}, measured)
    assert set(KEYS) <= set(row)
    assert row["frechet_distance"] == measured["frechet_distance"] and row["mmd"] is None


def test_each_measured_dataset_brings_its_own_guided_preset_once():
    assert cdrl_bench.guided_datasets(["digits"]) == ["digits"]
    assert cdrl_bench.guided_datasets(["rings", "checkerboard"]) == ["labelled_8gaussians"]
    assert cdrl_bench.guided_datasets(["checkerboard", "digits"]) == [
        "labelled_8gaussians", "digits"]


def test_the_toy_s_guidance_sweep_draws_16000_samples_and_rows_carry_the_spread_s_se(
        monkeypatch):
    calls = []
    summary = {"class_accuracy_w3": 1.0, "class_spread_w3": 0.47, "class_spread_se_w3": 0.002}
    monkeypatch.setattr(cdrl_bench, "trained", lambda preset, overrides, quick: (
        calls.append((preset, overrides)) or summary, None, None))
    rows = cdrl_bench.guidance(0, quick=True)
    assert calls == [("cdrl_2d_labelled_8gaussians",
                      ["run.seed=0", "objective.guidance_samples=16000"])]
    assert rows[2]["class_spread_se"] == 0.002 and rows[2]["guidance_samples"] == 16000
    make_config(*calls[0])   # a valid override


def test_no_compare_gives_the_guidance_rows_alone(monkeypatch):
    guided = []
    monkeypatch.setattr(cdrl_bench, "compare", lambda *args: pytest.fail("compared"))
    monkeypatch.setattr(cdrl_bench, "guidance", lambda seed, quick, dataset: guided.append(
        dataset) or [])
    cdrl_bench.main(["--datasets", "rings", "--seeds", "0", "--no-save", "--no-compare"])
    assert guided == ["labelled_8gaussians"]


def test_the_digits_alone_guide_only_the_digits(monkeypatch):
    guided = []
    monkeypatch.setattr(cdrl_bench, "compare", lambda *args: [])
    monkeypatch.setattr(cdrl_bench, "guidance", lambda seed, quick, dataset: guided.append(
        dataset) or [])
    cdrl_bench.main(["--datasets", "digits", "--seeds", "0", "--no-save"])
    assert guided == ["digits"]


def test_digits_compare_cdrl_digits_with_rl_digits_and_guide_the_conditional_preset(
        monkeypatch):
    """``--datasets digits``: CDRL's and recovery likelihood's digit presets (RL at K = 15),
    and guidance rows of ``cdrl_digits_conditional`` with the classifier's agreement."""
    configs = []
    _stopping_train(monkeypatch, configs)
    rows = cdrl_bench.compare("digits", 1, quick=True)
    assert [c.name for c in configs] == ["cdrl_digits", "rl_digits"]
    assert configs[1].objective.num_langevin_steps == cdrl_bench.RL_STEPS
    assert [(r["dataset"], r["method"], r["langevin_steps"]) for r in rows] == [
        ("digits", "cdrl", 0), ("digits", "cdrl", 5), ("digits", "cdrl", 15),
        ("digits", "rl", 15)]
    summary = {"class_accuracy_w1": 0.5, "classifier_accuracy_w1": 0.9, "class_spread_w1": 2.0}
    monkeypatch.setattr(cdrl_bench, "trained", lambda preset, overrides, quick: (
        configs.append(preset) or summary, None, None))
    guided = cdrl_bench.guidance(1, quick=True, dataset="digits")
    assert configs[-1] == "cdrl_digits_conditional"
    assert [r["guidance_w"] for r in guided] == list(cdrl_bench.GUIDANCE)
    assert guided[1]["class_accuracy"] == 0.9 and guided[1]["class_spread"] == 2.0


@pytest.mark.slow
def test_exact_chain_variances_match_the_gaussian_closed_forms():
    # Standard normal data, a linear energy (g(x) = x): the pairs are jointly Gaussian with
    # correlations ρ_j = a_t (the diffusion) and ρ_s = ᾱ_t ᾱ_{t+1} + σ̄_t σ̄_{t+1} (shared), so
    # the positive phase's ratio is (1 - ρ_s²) / (1 - ρ_j²) = 0.33 / 0.20 / 0.13 at levels
    # 1-3 and the whole gradient's with exact chains (1 - ρ_s ρ_j) / (1 - ρ_j²) = 0.68 / 0.63 /
    # 0.62, above 1/2. Over five seeds of 1,000 draws the estimates stayed within 15% and 0.05
    # of them; drawing the chain's y from the shared posterior, or g(x_t') with x_t's key, fails.
    from ebm_jax.samplers import noise_schedule
    schedule = noise_schedule("cosine")
    data = np.random.default_rng(0).normal(size=(500, 1)).astype(np.float32)
    result = cdrl_bench.exact_chain_variances(lambda x, t: x, data, schedule, (1, 2, 3),
                                              data_noise=0.0, draws=1000)
    ma, ms, a = schedule.marginal_alphas, schedule.marginal_sigmas, schedule.alphas
    rho_j = a[1:4]
    rho_s = ma[1:4] * ma[2:5] + ms[1:4] * ms[2:5]
    positive = result["positive_shared"] / result["positive_joint"]
    whole = result["whole_shared"] / result["whole_joint"]
    np.testing.assert_allclose(positive, (1 - rho_s**2) / (1 - rho_j**2), rtol=0.2)
    np.testing.assert_allclose(whole, (1 - rho_s * rho_j) / (1 - rho_j**2), atol=0.08)
