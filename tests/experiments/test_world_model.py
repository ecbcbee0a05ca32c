"""The world-model objective: its settings, its metrics on known answers (an oracle energy and
an oracle regressor built on the environment's true next frames), and a tiny run end to end."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.environments.ball_fork import FRAME_SHAPE, true_next_frames
from ebm_jax.experiments import ConfigError, load_data, make_config
from ebm_jax.experiments.objectives._side_by_side import side_by_side_params
from ebm_jax.experiments.objectives.world_model import make_evaluate
from ebm_jax.losses import ebt_energy, ebt_params
from tests.experiments.tiny import tiny

KEYS = {"valid_frame_rate", "valid_frame_rate_mse", "fork_branch_shares", "step_size",
        "rollout_valid_rate", "rollout_valid_rate_mse", "valid_frame_rate_all",
        "valid_frame_rate_all_mse", "failure_rate_single", "failure_auroc",
        "failure_count_best_of_n", "failure_auroc_best_of_n"}
WORLD_MODEL_STEPS = 100


def test_settings_are_checked_against_the_data_and_the_starts():
    with pytest.raises(ConfigError, match=r"objective.y0='input': expected 'noise' or"):
        make_config("world_model_ball_fork", ["objective.y0=input"])
    with pytest.raises(ConfigError, match=r"data.dataset='digits': expected a dataset of"):
        make_config("world_model_ball_fork", ["data.dataset=digits"])
    with pytest.raises(ConfigError, match=r"objective.num_starts=0: expected a positive int"):
        make_config("world_model_ball_fork", ["objective.num_starts=0"])


def _answers(contexts):
    """The two true next frames of a context, from inside jit (a host callback)."""
    shape = jax.ShapeDtypeStruct((2, *FRAME_SHAPE), jnp.float32)
    return jax.pure_callback(lambda c: true_next_frames(np.asarray(c)[None])[0], shape,
                             contexts, vmap_method="sequential")


def _oracle(params, x, y):
    """½ |y - nearest true next frame|²: a world model that knows the environment."""
    del params
    return 0.5 * jnp.min(jnp.sum(jnp.square(y[None] - _answers(x)), axis=(1, 2)))


@pytest.mark.slow
def test_an_oracle_is_always_valid_and_the_mean_of_the_two_ways_never_at_the_fork():
    config = make_config("world_model_ball_fork", ["objective.eval_episodes=6",
                                                   "objective.num_starts=2",
                                                   "objective.num_steps=2"])
    data = load_data(config)

    def blur(params, x):        # the least-squares answer: the mean of the two ways
        del params
        return jnp.mean(_answers(x), axis=0)

    evaluate = make_evaluate(config, data, ebt_energy(_oracle), blur)
    params = side_by_side_params(ebt_params(jnp.zeros(()), step_size=1.0), jnp.zeros(()))
    out = evaluate(params, jax.random.key(0))
    assert KEYS <= set(out)
    assert out["valid_frame_rate"] == out["rollout_valid_rate"] == 1.0
    assert out["valid_frame_rate_all"] == 1.0 and out["failure_count_best_of_n"] == 0
    assert out["failure_rate_single"] == 0.0
    assert np.isnan(out["failure_auroc"]) and np.isnan(out["failure_auroc_best_of_n"])
    assert out["valid_frame_rate_mse"] == out["rollout_valid_rate_mse"] == 0.0
    assert out["valid_frame_rate_all_mse"] == pytest.approx(0.9)   # all but the fork
    assert sum(out["fork_branch_shares"]) == pytest.approx(1.0)
    assert out["step_size"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def world_model_run(tmp_path_factory):
    from ebm_jax.experiments import train

    workdir = tmp_path_factory.mktemp("world_model") / "run"
    config = tiny("world_model_ball_fork", f"run.num_steps={WORLD_MODEL_STEPS}",
                  "run.eval_every=50", f"run.checkpoint_every={WORLD_MODEL_STEPS}",
                  "objective.num_steps=2", "objective.num_starts=4", "objective.eval_episodes=10")
    return workdir, train(config, str(workdir), progress=False, devices=1)


@pytest.mark.slow
def test_a_tiny_run_reports_the_world_model_metrics(world_model_run):
    workdir, summary = world_model_run
    assert summary["steps"] == WORLD_MODEL_STEPS and KEYS <= set(summary)
    for key in KEYS - {"fork_branch_shares", "step_size", "failure_count_best_of_n"}:
        value = summary[key]
        assert 0.0 <= value <= 1.0 or (np.isnan(value) and "auroc" in key), (key, value)
    assert summary["valid_frame_rate_mse"] <= 0.1      # the regressor blurs the two ways
    assert summary["step_size"] > 0 and summary["failure_count_best_of_n"] >= 0
    assert (workdir / "predictions.png").is_file()
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    for key in ("regressor_mse", "reconstruction"):    # both halves learn
        values = [r[key] for r in records if key in r]
        assert np.mean(values[-3:]) < np.mean(values[:3]), (key, values)
