"""The ``cdrl`` objective through the registry: the config's checks; both networks and both
optimizer states in one TrainState; the initializer starting as the identity of the rescaled
sample; a tiny run that trains, draws proposals beside refinements and resumes bit-exactly."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from tests.experiments.tiny import assert_resumes_bit_exactly, run_records, tiny

pytestmark = pytest.mark.fast_compile


def tiny_cdrl(*extra):
    return tiny("cdrl_2d_rings", "data.batch_size=48", "objective.initializer_hidden=16",
                *extra)


@pytest.mark.parametrize("overrides, message", [
    (["data.batch_size=100"], "data.batch_size=100: expected a multiple of objective.num_levels"),
    (["objective.num_langevin_steps=0"], "objective.num_langevin_steps=0"),
    (["objective.step_scale=0"], "objective.step_scale=0"),
    (["objective.sample_langevin_steps=-2"], "objective.sample_langevin_steps=-2"),
    (["objective.conditional=true"], "objective.conditional=True with data.dataset='rings'"),
    (["objective.guidance=-1"], "objective.guidance=-1"),
    (["objective.label_drop=1.5"], "objective.label_drop=1.5"),
    (["objective.data_noise=0"], "objective.data_noise=0"),
    (["objective.data_noise=1"], "objective.data_noise=1"),
    (["objective.step_adaptation=-0.1"], "objective.step_adaptation=-0.1"),
    (["objective.target_acceptance=1"], "objective.target_acceptance=1"),
    (["objective.num_candidates=3"], "objective.num_candidates=3: expected 0 or an even int"),
    (["objective.num_candidates=-2"], "objective.num_candidates=-2"),
    (["objective.sample_candidates=3"],
     "objective.sample_candidates=3: expected 0 or an even int"),
    (["objective.guidance_samples=10"], "objective.guidance_samples=10: expected an int >= 20"),
    (["objective.metropolis=false"],
     "objective.step_adaptation=0.05 with objective.metropolis=False"),
])
def test_a_bad_setting_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("cdrl_2d_rings", overrides)
    assert message in str(error.value)


@pytest.mark.slow
def test_the_digits_presets_diffuse_the_data_by_their_data_noise():
    from flax import nnx

    from ebm_jax.experiments import load_data
    from ebm_jax.experiments.objectives.cdrl import build_model
    from ebm_jax.losses import cdrl_scales
    from ebm_jax.samplers import noise_schedule

    for name, classes in (("cdrl_digits", None), ("cdrl_digits_conditional", 10)):
        config = make_config(name)
        model = build_model(config, load_data(config), nnx.Rngs(0))
        assert model.scales.data_noise == pytest.approx(0.1) and model.num_classes == classes
        # σ̄_0 sets the steps: c_t = 1/σ̄_0 at every level, so s_t² = b σ_t² / 0.1
        assert config.objective.per_level_c is False
        expected = cdrl_scales(noise_schedule("cosine", num_levels=6), data_noise=0.1,
                               step_scale=config.objective.step_scale, per_level_c=False)
        np.testing.assert_allclose(model.scales.step_sizes, expected.step_sizes, rtol=1e-6)
    rings = build_model(make_config("cdrl_2d_rings"), load_data(make_config("cdrl_2d_rings")),
                        nnx.Rngs(0))
    assert rings.scales.data_noise == pytest.approx(0.0074, rel=0.01)  # the reference's


def test_the_conditional_presets_drop_labels_5_percent_of_the_time():
    """The reference drops 10%; with it the guided spread rose from w = 1 to 3 (README)."""
    for name in ("cdrl_2d_labelled_8gaussians", "cdrl_digits_conditional"):
        assert make_config(name).objective.label_drop == 0.05, name
    assert make_config("cdrl_2d_rings").objective.label_drop == 0.1   # the field's default


def test_the_toy_presets_generate_from_picks_among_16_candidates():
    """As recovery likelihood generates; rings' MMD at K = 5 fell from 0.0013 to 0.0001 (README);
    the digits keep the proposal (FD 0.92 -> 0.79 at 2.6x the time)."""
    for toy in ("rings", "checkerboard"):
        assert make_config(f"cdrl_2d_{toy}").objective.sample_candidates == 16, toy
    assert make_config("cdrl_digits").objective.sample_candidates == 0


def test_one_train_state_holds_both_networks_and_both_optimizer_states():
    exp = build(tiny_cdrl())
    state = initial_state(exp)
    assert sorted(state.params) == ["energy", "initializer"]
    inner = state.opt_state
    while not hasattr(inner, "inner_states"):      # through the rollback's lr multiplier
        inner = inner.inner_state if hasattr(inner, "inner_state") else inner[0]
    assert sorted(inner.inner_states) == ["energy", "initializer"]
    # the rings preset adapts its steps: one log multiplier per level, in the loss state
    np.testing.assert_array_equal(state.loss_state.log_step_multipliers, np.zeros(6))
    # the initializer's head starts at zero: its proposal mean is x_next / a_t
    head = state.params["initializer"]["head"]["linear"]["kernel"]
    assert float(jnp.abs(head).max()) == 0.0


@pytest.mark.slow
def test_a_tiny_run_trains_draws_levels_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    config = tiny_cdrl("run.num_steps=20")
    summary = train(config, str(workdir), progress=False, devices=1)
    for key in ("kl_nats", "mmd"):
        assert np.isfinite(summary[key]), key
    assert os.path.getsize(workdir / "predictions.png") > 1000   # proposals | refinements
    records = run_records(workdir)
    assert not [r for r in records if r.get("event") == "rollback"]
    assert all(np.isfinite(r["initializer_loss"]) for r in records if "initializer_loss" in r)
    multipliers = [r["step_multiplier_min"] for r in records if "step_multiplier_min" in r]
    assert multipliers and all(0 < m <= 1 for m in multipliers)
    assert_resumes_bit_exactly(workdir, summary, capsys)     # the multipliers resume too


def test_the_spread_s_standard_error_is_its_sd_over_repeated_samples():
    """8 classes of 250 draws of N(0, 0.354² I) in 2-D (the labelled toy's components): the
    reported standard error against the spread's sd over 200 repeats (the sd's own error about
    5%); without the 4 of the delta method it is 2x too large, without the division by the
    number of classes 8x."""
    from ebm_jax.experiments.objectives.cdrl import class_sample_statistics

    rng = np.random.default_rng(0)
    labels = np.arange(2000) % 8
    stats = [class_sample_statistics(rng.normal(size=(2000, 2)) * 0.354, labels,
                                     np.zeros((8, 2))) for _ in range(200)]
    spreads = [s["class_spread"] for s in stats]
    assert np.mean(spreads) == pytest.approx(0.5, abs=0.002)
    standard_error = np.mean([s["class_spread_se"] for s in stats])
    assert standard_error == pytest.approx(np.std(spreads), rel=0.15)


def test_generation_with_no_refinement_is_the_initializer_alone_or_the_picks():
    def generate(*extra):
        exp = build(tiny_cdrl("objective.sample_langevin_steps=0", "objective.tweedie=false",
                              *extra))
        state = initial_state(exp)
        return jax.jit(exp.generate, static_argnums=2)(jax.random.key(0), state.params, 16)

    alone = generate("objective.sample_candidates=0")
    assert alone.shape == (16, 2) and bool(jnp.all(jnp.isfinite(alone)))
    picks = generate()                        # the preset's: picks among 16 candidates
    assert picks.shape == (16, 2) and bool(jnp.all(jnp.isfinite(picks)))
    assert not np.allclose(alone, picks)


def tiny_conditional(*extra):
    return tiny("cdrl_2d_labelled_8gaussians", "data.batch_size=48",
                "objective.initializer_hidden=16", *extra)


@pytest.mark.slow
def test_a_conditional_run_embeds_every_level_and_class_and_guidance_reaches_the_samples():
    """One embedding row per (level, class) and the null class, in both networks; with
    perturbed params (at initialisation every condition computes the same function),
    guidance changes the samples of the same key, and w = 0 is the unguided draw."""
    exp = build(tiny_conditional())
    state = initial_state(exp)
    for net in ("energy", "initializer"):
        assert state.params[net]["embed"]["embedding"].shape[0] == 6 * (8 + 1), net
    leaves, tree = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [leaf + 0.3 * jax.random.normal(k, leaf.shape)
                                       for leaf, k in zip(leaves, keys)])

    def draw(guidance):
        pieces = build(tiny_conditional(f"objective.guidance={guidance}"))
        generate = jax.jit(pieces.generate, static_argnums=2)
        return np.asarray(generate(jax.random.key(0), params, 32))

    unguided, guided = draw(0.0), draw(3.0)
    assert np.all(np.isfinite(guided))
    assert np.abs(guided - unguided).max() > 1e-3
    np.testing.assert_array_equal(draw(0.0), unguided)


@pytest.mark.slow
def test_a_tiny_conditional_run_reports_class_accuracy_and_spread_at_each_guidance(tmp_path):
    summary = train(tiny_conditional("run.num_steps=10"), str(tmp_path / "run"),
                    progress=False, devices=1)
    for w in ("0", "1", "3"):
        assert 0.0 <= summary[f"class_accuracy_w{w}"] <= 1.0
        assert np.isfinite(summary[f"class_spread_w{w}"])
        assert 0 < summary[f"class_spread_se_w{w}"] < summary[f"class_spread_w{w}"]
    assert np.isfinite(summary["kl_nats"])


@pytest.mark.slow
def test_a_conditional_digits_evaluation_asks_the_digit_classifier_at_each_guidance(tmp_path):
    exp = build(tiny("cdrl_digits_conditional", "data.batch_size=48",
                     "objective.initializer_hidden=16", "objective.num_langevin_steps=1"))
    params = initial_state(exp).params
    out = exp.evaluate(params, jax.random.key(0), figure=str(tmp_path / "levels.png"))
    for w in ("0", "1", "3"):
        assert 0.0 <= out[f"classifier_accuracy_w{w}"] <= 1.0
        assert 0.0 <= out[f"class_accuracy_w{w}"] <= 1.0
    assert os.path.isfile(tmp_path / "levels.png")
    # Untrained networks: the samples carry no class, the classifier agrees by chance.
    assert out["classifier_accuracy_w0"] < 0.3
