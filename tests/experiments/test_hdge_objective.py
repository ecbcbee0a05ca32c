"""The ``hdge`` objective through the registry (preset ``hdge_digits``): the preset compares
with JEM and softmax, the config's checks, the loss it builds, and a tiny run that trains,
evaluates and resumes bit-exactly."""

import jax
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from ebm_jax.losses import hdge
from tests.experiments.tiny import assert_resumes_bit_exactly, run_records, tiny

pytestmark = pytest.mark.fast_compile


def test_the_preset_has_the_network_and_budget_of_jem_and_softmax():
    config = make_config("hdge_digits")
    for other in ("jem_digits", "softmax_digits"):
        base = make_config(other)
        assert (config.model, config.optimizer, config.data, config.run) == \
            (base.model, base.optimizer, base.data, base.run), other
    assert config.objective.kind == "hdge"
    assert config.objective.queue_size >= config.data.batch_size


@pytest.mark.parametrize("overrides,message", [
    (["objective.queue_size=32"], "objective.queue_size=32 with data.batch_size=64: expected "
                                  "queue_size >= batch_size"),
    (["objective.num_shards=3"], "objective.queue_size=1024 with objective.num_shards=3: "
                                 "expected a multiple of num_shards"),
    (["objective.temperature=0"], "objective.temperature=0"),
    (["objective.queue_size=0"], "objective.queue_size=0"),
])
def test_a_bad_setting_names_the_field(overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config("hdge_digits", overrides)
    assert message in str(error.value)


@pytest.mark.slow
def test_the_config_builds_the_loss_of_its_settings():
    overrides = ["model.hidden=16", "data.batch_size=8", "objective.queue_size=16",
                 "objective.temperature=0.3", "objective.generative_weight=0.5"]
    exp = build(make_config("hdge_digits", overrides))
    batch = {"x": exp.data.x_train[:8], "y": exp.data.y_train[:8]}
    state = initial_state(exp).loss_state
    _, (state, _) = exp.loss.loss(exp.params, state, batch, jax.random.key(0))  # queue filled

    def value(loss):
        return float(jax.jit(loss.loss)(exp.params, state, batch, jax.random.key(1))[0])

    built = value(exp.loss)
    np.testing.assert_allclose(built, value(hdge(exp.logits_fn, 16, 0.3, generative_weight=0.5)),
                               rtol=1e-5)
    assert abs(value(hdge(exp.logits_fn, 16, 0.1, generative_weight=0.5)) - built) > 1e-3
    assert abs(value(hdge(exp.logits_fn, 16, 0.3, generative_weight=1.0)) - built) > 1e-3


def test_shared_forward_false_builds_the_combine_route():
    """``objective.shared_forward=false`` builds the same loss through ``combine``: the same
    value, and twice the network's matrix products in the jaxpr of the loss."""
    overrides = ["model.hidden=16", "data.batch_size=8", "objective.queue_size=16"]
    built = {flag: build(make_config("hdge_digits",
                                     overrides + [f"objective.shared_forward={flag}"]))
             for flag in ("true", "false")}
    exp = built["true"]
    batch = {"x": exp.data.x_train[:8], "y": exp.data.y_train[:8]}
    state = initial_state(exp).loss_state

    def run(loss):
        return jax.jit(loss.loss)(exp.params, state, batch, jax.random.key(1))

    def dots(loss):
        jaxpr = jax.make_jaxpr(lambda p: loss.loss(p, state, batch, jax.random.key(1))[0])
        return str(jaxpr(exp.params)).count("dot_general")

    np.testing.assert_allclose(float(run(built["false"].loss)[0]), float(run(exp.loss)[0]),
                               rtol=1e-5)
    assert dots(built["false"].loss) == 2 * dots(exp.loss) > 0


def test_the_normalised_log_px_is_logsumexp_of_normalised_logits_over_tau():
    """The score of the density the normalised contrastive term trains: numpy's formula, and
    unchanged when the logits are scaled (the raw ``logsumexp f(x)`` is not)."""
    from ebm_jax.experiments.objectives.hdge import normalised_log_px

    exp = build(tiny("hdge_digits"))
    x = exp.data.x_test[:6]
    logits = np.stack([np.asarray(exp.logits_fn(exp.params, xi)) for xi in x]).astype(np.float64)
    z = logits / np.linalg.norm(logits, axis=1, keepdims=True) / 0.2
    expected = np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1)
    score = normalised_log_px(exp.logits_fn, 0.2)
    np.testing.assert_allclose(np.asarray(score(exp.params, x)), expected, rtol=1e-5)
    scaled = normalised_log_px(lambda p, xi: 3.0 * exp.logits_fn(p, xi), 0.2)
    np.testing.assert_allclose(np.asarray(scaled(exp.params, x)), expected, rtol=1e-5)


def test_the_evaluation_adds_the_normalised_log_px_aurocs():
    """With ``normalize`` the method's metrics hold the AUROC of the normalised log p(x) on
    each offline OOD set and their mean; none in the periodic (quick) evaluation, none
    without ``normalize``."""
    exp = build(tiny("hdge_digits"))
    out = exp.evaluate(exp.params, jax.random.key(0))
    sets = ["gaussian_noise", "hflip", "interpolations", "inverted", "uniform_noise", "vflip"]
    assert sorted(out) == sorted([f"ood_normalised_log_px/{s}" for s in sets]
                                 + ["ood_normalised_log_px/mean"])
    values = [out[f"ood_normalised_log_px/{s}"] for s in sets]
    assert all(0.0 <= v <= 1.0 for v in values)
    np.testing.assert_allclose(out["ood_normalised_log_px/mean"], np.mean(values), rtol=1e-6)
    assert exp.evaluate(exp.params, jax.random.key(0), quick=True) == {}
    raw = build(tiny("hdge_digits", "objective.normalize=false"))
    assert raw.evaluate(raw.params, jax.random.key(0)) == {}


@pytest.mark.slow
def test_a_tiny_run_trains_evaluates_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    summary = train(tiny("hdge_digits", "run.num_steps=20", "objective.queue_size=64"),
                    str(workdir), progress=False, devices=1)
    assert summary["steps"] == 20 and 0.0 <= summary["test_accuracy"] <= 1.0
    assert np.isfinite(summary["ece"]) and np.isfinite(summary["auroc_uniform_noise"])
    assert 0.0 <= summary["ood_normalised_log_px/mean"] <= 1.0
    records = run_records(workdir)
    assert not [r for r in records if r.get("event") == "rollback"]
    fills = [r["generative/queue_fill"] for r in records if "generative/queue_fill" in r]
    assert fills[-1] == 1.0            # 64 slots, 32 a step: full from the third step
    assert_resumes_bit_exactly(workdir, summary, capsys)
