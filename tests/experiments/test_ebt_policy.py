"""EBT-Policy as an objective: its settings and their checks, the two halves of one size, the
policy's metrics on an analytic energy (known answers), and one tiny run end to end."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.environments.reach import mode_chunks, sample_starts
from ebm_jax.experiments import ConfigError, build, make_config
from ebm_jax.experiments.objectives._side_by_side import param_count
from ebm_jax.experiments.objectives.ebt_policy import (CONDITIONS, EPISODES_KEY, STEP_COUNTS,
                                                       best_of_n_chunks, make_evaluate)
from ebm_jax.losses import ebt_params
from tests.experiments.conftest import _train_tiny

KEYS = {"success_rate", "success_rate_bc", "collision_rate", "collision_rate_bc", "step_size",
        "success_by_steps", "success_by_steps_shifted", "success_rate_shifted",
        "success_rate_bc_shifted", "success_rate_goal_shifted", "success_rate_bc_goal_shifted",
        "failure_auroc", "failures", "failure_auroc_goal_shifted", "passed_above"}
DENSITY_KEYS = {"energy_data_mean", "auroc_uniform_noise", "mmd", "test_accuracy"}


@pytest.mark.parametrize("overrides, message", [
    (["data.dataset=branches"],
     r"data.dataset='branches' with objective='ebt_policy': expected one of \['reach'\]"),
    (["objective.execute=5"], r"objective.execute=5: expected at most the chunk's 4 moves"),
    (["objective.inference_steps=0"], r"objective.inference_steps=0: expected a positive int"),
    (["objective.num_starts=0"], r"objective.num_starts=0: expected a positive int"),
    (["objective.task=denoise"], r"unknown config key 'objective.task'"),
    (["objective.y0=input"], r"objective.y0='input': expected 'noise' or 'target'"),
    (["objective.batch_negatives=8", "data.batch_size=1"],
     r"objective.batch_negatives=8 with data.batch_size=1: expected a batch of at least 2"),
    (["objective.min_steps=2"], r"objective.min_steps=2 with mode='system1'"),
])
def test_bad_settings_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("ebt_policy_reach", overrides)


def test_the_preset_trains_an_energy_and_a_regressor_of_one_size():
    config = make_config("ebt_policy_reach")
    assert (config.objective.num_steps, config.objective.inference_steps,
            config.objective.y0, config.objective.contrastive_weight) == (2, 2, "target", 0.1)
    exp = build(config)
    assert not exp.density and exp.sampler is None and exp.evaluate is not None
    assert sorted(exp.params) == ["ebt", "regressor"]
    energy_size = param_count(exp.params["ebt"]["energy"])
    assert abs(param_count(exp.params["regressor"]) / energy_size - 1) < 0.05
    x, y = exp.data.x_train[:1], exp.data.y_train[:1]
    assert x.shape == (1, 4) and y.shape == (1, 8)
    assert exp.energy_fn(exp.params, jnp.asarray(x[0]), jnp.asarray(y[0])).shape == ()


def test_best_of_n_chunks_keeps_the_lowest_energy_of_its_descents():
    """No steps: the pick is the lowest-energy start (the starts redrawn from the same keys);
    more steps (the same compiled program) lower it further on a convex energy."""
    energy = lambda p, x, y: 0.5 * jnp.sum((y - x) ** 2)         # noqa: E731
    observations, key = jnp.arange(6.0).reshape(3, 2), jax.random.key(3)
    pick = jax.jit(lambda steps: best_of_n_chunks(
        energy, ebt_params(None, 0.5), observations, key, num_steps=steps, max_steps=4,
        num_starts=5, start_std=2.0, y_shape=(2,)))
    chunks, energies = pick(0)
    starts = jax.vmap(lambda k: 2.0 * jax.random.normal(k, (5, 2)))(jax.random.split(key, 3))
    start_energies = 0.5 * jnp.sum((starts - observations[:, None]) ** 2, -1)      # [3, 5]
    np.testing.assert_allclose(energies, start_energies.min(1), rtol=1e-6)
    np.testing.assert_allclose(chunks, starts[jnp.arange(3), start_energies.argmin(1)])
    one, three = pick(1)[1], pick(3)[1]
    np.testing.assert_allclose(one, energies / 4, rtol=1e-5)       # halfway: a quarter
    np.testing.assert_allclose(three, energies / 64, rtol=1e-4)


def _analytic_energy(params, x, y):
    """Each observation's minimum is the expert's chunk above the obstacle, plus 1, where the
    goal is above the middle line; there the minimum is the mean of the two ways (which
    drives into the obstacle): the failures are exactly the episodes toward such goals, and
    their chunks have the higher energy."""
    modes = mode_chunks(x[None], xp=jnp)[0]
    doubtful = x[3] > 0
    target = jnp.where(doubtful, jnp.mean(modes, axis=0), modes[0])
    return params * (0.5 * jnp.sum((y - target) ** 2) + doubtful.astype(jnp.float32))


@pytest.mark.slow
def test_the_metrics_on_an_analytic_energy_are_the_known_answers():
    config = make_config("ebt_policy_reach", ["objective.eval_episodes=40",
                                              "objective.num_starts=2"])
    evaluate = make_evaluate(config, lambda p, x, y: _analytic_energy(p["energy"], x, y),
                             lambda p, x: jnp.mean(mode_chunks(x[None], xp=jnp)[0], 0), (8,))
    params = {"ebt": ebt_params(jnp.float32(1.0), step_size=1.0), "regressor": None}
    out = evaluate(params, jax.random.key(0))
    assert KEYS <= set(out)
    goals = [sample_starts([EPISODES_KEY, 0, i], 40, shift=shift)[1]
             for i, shift in enumerate(CONDITIONS.values())]
    toward_below = [float(np.mean(g[:, 1] <= 0)) for g in goals]
    # one step of size 1 lands on the minimum: every step count acts alike
    assert out["success_by_steps"] == {str(k): toward_below[0] for k in STEP_COUNTS}
    assert out["success_by_steps_shifted"] == {str(k): toward_below[1] for k in STEP_COUNTS}
    assert out["success_rate"] == toward_below[0] and out["step_size"] == 1.0
    assert out["success_rate_goal_shifted"] == toward_below[2]
    assert out["failures"] == sum(round(40 * (1 - share)) for share in toward_below)
    assert out["failure_auroc"] == 1.0 and out["failure_auroc_goal_shifted"] == 1.0
    assert out["passed_above"] == 1.0                   # the successes follow the upper way
    # the regressor drives the mean of the two ways into the obstacle
    assert out["success_rate_bc"] == 0.0 and out["collision_rate_bc"] == 1.0


@pytest.fixture(scope="module")
def policy_run(tmp_path_factory):
    """A tiny ``ebt_policy_reach`` run (20 steps of the 32-unit MLPs, 20 episodes per start
    distribution, best of 4)."""
    return _train_tiny(tmp_path_factory, "ebt_policy_reach", "run.num_steps=20",
                       "objective.num_steps=2", "objective.eval_episodes=20",
                       "objective.num_starts=4", "run.eval_every=20")


@pytest.mark.slow
def test_a_tiny_run_reports_the_policy_metrics(policy_run):
    workdir, summary = policy_run
    assert KEYS <= set(summary) and not DENSITY_KEYS & set(summary)
    with open(workdir / "summary.json") as f:
        assert json.load(f)["success_by_steps"] == summary["success_by_steps"]
    rates = [v for k, v in summary.items() if k.startswith(("success_rate", "collision_rate"))]
    assert len(rates) == 8 and all(0.0 <= v <= 1.0 for v in rates)
    assert sorted(summary["success_by_steps"], key=int) == [str(k) for k in STEP_COUNTS]
    assert summary["success_by_steps"]["2"] == summary["success_rate"]
    successes = 20 * (summary["success_rate"] + summary["success_rate_shifted"]
                      + summary["success_rate_goal_shifted"])
    assert summary["failures"] == 60 - round(successes)
    auroc = summary["failure_auroc"]
    assert np.isnan(auroc) or 0.0 <= auroc <= 1.0
    assert summary["step_size"] > 0
    assert (workdir / "predictions.png").is_file()
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    assert any("regressor_mse" in r for r in records)
    assert any("eval/success_rate" in r for r in records)
