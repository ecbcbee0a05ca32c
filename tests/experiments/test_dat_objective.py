"""The ``dat`` objective through the registry (preset ``dat_digits``): its config's checks,
the loss and optimizer it builds (two stages, batch norm's statistics updating then frozen,
the second stage's learning rate), and a tiny run's summary.

Deliberate breakages, each verified by temporarily editing the package and restoring it:

- the frozen stage left unfrozen (``with_frozen_statistics(second)`` -> ``second`` in
  ``objectives/dat.py``): ``test_the_statistics_move_in_stage_one_and_stay_in_stage_two``;
- the stages' learning rates equal (``factor`` -> ``1.0`` in ``stage_optimizer``):
  ``test_the_second_stage_trains_at_its_share_of_the_learning_rate``;
- a setting that does not reach the loss (``max_steps=settings.max_steps`` dropped, or
  ``energy_weight`` left at 1): ``test_the_config_builds_the_loss_of_its_settings``.
"""
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config
from ebm_jax.experiments.objectives._classifier import ROBUST_KEYS
from ebm_jax.experiments.objectives.dat import pools
from ebm_jax.losses import dat, dat_energy, pgd_adversarial_training, with_frozen_statistics
from ebm_jax.nets.batch_norm import statistic_leaves, statistics_mask
from ebm_jax.samplers import pool_start

pytestmark = pytest.mark.fast_compile

SMALL = ["model.hidden=16", "data.batch_size=8", "objective.pool_size=40",
         "objective.generation_seeds=20", "objective.stage1_steps=2", "run.num_steps=10"]


def _exp(*overrides):
    return build(make_config("dat_digits", SMALL + list(overrides)))


def _batch(exp, size=8):
    return {"x": jnp.asarray(exp.data.x_train[:size]), "y": jnp.asarray(exp.data.y_train[:size])}


def test_the_preset_is_at_digits_network_with_batch_norm():
    config, at = make_config("dat_digits"), make_config("at_digits")
    assert config.model.batch_norm and config.model.hidden == at.model.hidden
    assert (config.objective.epsilon, config.objective.norm) == (0.2, "linf")
    assert config.data.batch_size == 2 * at.data.batch_size     # halves of the AT batch
    assert config.objective.stage1_steps < config.run.num_steps


@pytest.mark.parametrize("overrides,message", [
    (["data.batch_size=7"], "data.batch_size=7 with objective='dat': expected an even number"),
    (["objective.stage1_steps=6000"], "objective.stage1_steps=6000 with run.num_steps=6000"),
    (["objective.initial_steps=60"], "objective.initial_steps=60: expected at most"),
    (["objective.ood_pool=/nowhere/pool.npz"], "objective.ood_pool='/nowhere/pool.npz': no such"),
    (["objective.ood_pool=pool.txt"], "objective.ood_pool='pool.txt': expected 'procedural'"),
    (["model.kind=conv", "model.batch_norm=true"],
     "model.batch_norm=True with model.kind='conv': expected model.kind 'mlp' or 'wrn'"),
])
def test_a_bad_setting_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("dat_digits", overrides)
    assert message in str(error.value)


def test_batch_norm_is_refused_for_objectives_that_do_not_train_it():
    with pytest.raises(ConfigError, match=r"model.batch_norm=True with objective='pgd_at': "
                                          r"expected false .* do: \['dat'\]"):
        make_config("at_digits", ["model.batch_norm=true"])


@pytest.mark.slow
def test_a_users_pool_is_checked_and_a_fifth_held_out(tmp_path):
    good = tmp_path / "pool.npz"
    np.savez(good, x=np.zeros((10, 64), np.float32))
    train, seeds = pools(make_config("dat_digits", [f"objective.ood_pool={good}"]),
                         _exp().data)
    assert (train.shape, seeds.shape) == ((8, 64), (2, 64))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.full((10, 64), 3.0, np.float32))
    with pytest.raises(ConfigError, match=r"objective.ood_pool='.*bad.npz' has values in"):
        _exp(f"objective.ood_pool={bad}")


@pytest.mark.slow
def test_the_config_builds_the_loss_of_its_settings():
    """Stage 1 is PGD-AT under the batch's statistics; stage 2 DAT with these settings, frozen:
    the same values as the factories' (same keys), and other settings give other values."""
    overrides = ["objective.max_steps=3", "objective.initial_steps=3",
                 "objective.energy_weight=2.5", "objective.contrastive_step_size=0.3"]
    exp = _exp(*overrides)
    state, batch, key = initial_state(exp).loss_state, _batch(exp), jax.random.key(3)
    params = jax.tree.map(lambda a: a, exp.params)
    at = pgd_adversarial_training(exp.logits_fn, epsilon=0.2, clip_range=(-1.0, 1.0))
    train_pool, _ = pools(exp.config, exp.data)

    def second(**kw):
        settings = dict(step_size=0.3, clip_range=(-1.0, 1.0), initial_steps=3, max_steps=3)
        settings.update(kw.pop("energy", {}))
        energy = dat_energy(exp.logits_fn, pool_start(train_pool), **settings)
        return with_frozen_statistics(dat(energy, at, **kw))

    def value(loss, inner_state):
        return float(jax.jit(loss.loss)(params, inner_state, batch, key)[0])

    built_second = value(exp.loss, state._replace(step=jnp.int32(2)))
    np.testing.assert_allclose(built_second, value(second(energy_weight=2.5), state.second),
                               rtol=1e-5)
    assert abs(value(second(energy_weight=1.0), state.second) - built_second) > 1e-3
    other = second(energy_weight=2.5, energy=dict(initial_steps=0, max_steps=50))
    assert abs(value(other, other.init(jax.random.key(0), params, batch)) - built_second) > 1e-3
    assert float(jax.jit(exp.loss.loss)(params, state, batch, key)[1][1]["stage"]) == 0.0


def _train_step(exp):
    """A jitted ``step(params, opt_state, loss_state, batch, key) -> (params, opt_state,
    loss_state, updates)`` of the run's loss and optimizer."""
    @jax.jit
    def step(params, opt_state, loss_state, batch, key):
        grads, (loss_state, _) = jax.grad(exp.loss.loss, has_aux=True)(params, loss_state,
                                                                       batch, key)
        updates, opt_state = exp.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss_state, updates

    return step


@pytest.mark.slow
@pytest.mark.parametrize("freeze", [True, False])
def test_the_statistics_move_in_stage_one_and_stay_in_stage_two(freeze):
    exp = _exp(f"objective.freeze_statistics={str(freeze).lower()}")
    state = initial_state(exp)
    params, opt_state, loss_state = exp.params, state.opt_state, state.loss_state
    moved, step = [], _train_step(exp)
    for i in range(4):       # stage 1 (steps 0, 1), stage 2 (steps 2, 3)
        before = statistic_leaves(params)
        params, opt_state, loss_state, _ = step(params, opt_state, loss_state, _batch(exp),
                                                jax.random.key(i))
        moved.append(max(float(jnp.max(jnp.abs(a - b)))
                         for a, b in zip(statistic_leaves(params), before)))
    assert moved[0] > 0 and moved[1] > 0
    if freeze:
        assert moved[2] == 0.0 and moved[3] == 0.0
    else:
        assert moved[2] > 0 and moved[3] > 0


@pytest.mark.slow
def test_the_second_stage_trains_at_its_share_of_the_learning_rate():
    """Adam's first update has the size of the learning rate on every weight with a
    gradient: stage 2's is a tenth of stage 1's (``stage2_learning_rate=0.1``)."""
    def first_update_size(stage1_steps):
        exp = _exp(f"objective.stage1_steps={stage1_steps}")
        state = initial_state(exp)
        *_, updates = _train_step(exp)(exp.params, state.opt_state, state.loss_state,
                                       _batch(exp), jax.random.key(0))
        mask = jax.tree.leaves(statistics_mask(updates))
        return max(float(jnp.max(jnp.abs(u))) for is_stat, u in
                   zip(mask, jax.tree.leaves(updates)) if not is_stat)

    np.testing.assert_allclose(first_update_size(0) / first_update_size(2), 0.1, rtol=1e-3)


@pytest.mark.slow
def test_a_tiny_run_reports_robustness_generation_and_the_curriculum(dat_run_dir):
    workdir, summary = dat_run_dir
    for key in ROBUST_KEYS:
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["ascent_best_steps"] in (2, 4)
    assert summary["ascent_frechet_distance"] == min(summary["ascent_frechet_by_steps"].values())
    assert summary["sample_frechet_distance"] > 0
    with open(workdir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    logged = [r for r in rows if "stage" in r]
    assert [r["stage"] for r in logged] == [0.0, 0.0, 1.0, 1.0]     # steps 5, 10, 15, 20
    assert all("curriculum_T" in r and "accuracy" in r for r in logged)
    assert not [r for r in rows if r.get("event") == "rollback"]
    assert (workdir / "predictions.png").exists()


@pytest.mark.slow
def test_the_benchmark_reads_stage_one_and_sweeps_the_same_seeds_as_the_run(dat_run_dir):
    """benchmarks/adversarial.py on a real run: the stage-1 checkpoint's figures, and its
    generation sweep for other classifiers, which from the same seeds and counts gives the
    run's own Fréchet distances (the same held-out seeds)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import adversarial as bench

    workdir, summary = dat_run_dir
    stage1 = bench.stage1_figures(str(workdir), 10, steps=(2,))
    assert 0.0 <= stage1["stage1_robust_accuracy_linf"] <= stage1["stage1_clean_accuracy"] <= 1
    assert stage1["stage1_frechet_distance"] > 0
    fresh = bench.fresh_generation(str(workdir), 20)      # any run's own generator
    assert fresh["fresh_sample_frechet_distance"] > 0 and "fresh_sample_recall" in fresh
    swept = bench.baseline_generation(str(workdir), steps=(2, 4), num_seeds=40)
    for steps, fd in summary["ascent_frechet_by_steps"].items():
        np.testing.assert_allclose(swept["ascent_frechet_by_steps"][steps], fd, rtol=1e-4)
