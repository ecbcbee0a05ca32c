"""The ``ecbm`` and ``cbm`` objectives through the registry (presets ``ecbm_digits``,
``cbm_digits``): the concept dataset and its batches, the config's checks, the losses they
build, and a tiny run that trains, evaluates its concepts and resumes bit-exactly."""
import jax
import numpy as np
import pytest

from ebm_jax.data import Batches
from ebm_jax.experiments import ConfigError, build, initial_state, make_config, train
from ebm_jax.experiments.data import example_batch
from ebm_jax.losses import concept_bottleneck_loss, ecbm_loss
from tests.experiments.tiny import assert_resumes_bit_exactly, run_records, tiny

pytestmark = pytest.mark.fast_compile


def test_presets_share_data_backbone_and_budget():
    ecbm, cbm = make_config("ecbm_digits"), make_config("cbm_digits")
    assert (ecbm.model, ecbm.data, ecbm.run, ecbm.optimizer) == \
        (cbm.model, cbm.data, cbm.run, cbm.optimizer)
    assert ecbm.data.dataset == "seven_segment_digits"


@pytest.mark.parametrize("preset,overrides,message", [
    ("ecbm_digits", ["data.dataset=digits"], "objective='ecbm' with data.dataset='digits': "
                                             "expected a concept dataset"),
    ("jem_digits", ["data.dataset=seven_segment_digits"],
     "expected an objective that learns concepts, one of ['cbm', 'ecbm']"),
    ("ecbm_digits", ["objective.inference_weights=1,1"], "expected three weights >= 0"),
    ("ecbm_digits", ["objective.inference=sampling"], "objective.inference='sampling'"),
])
def test_a_bad_setting_names_the_field(preset, overrides, message):
    with pytest.raises(ConfigError) as error:
        make_config(preset, overrides)
    assert message in str(error.value)


def test_batches_carry_the_concepts_of_their_examples():
    exp = build(tiny("ecbm_digits"))
    data = exp.data
    assert example_batch(exp.config, data)["c"].shape == (32, 7)
    batch = next(Batches(data.x_train, data.y_train, 32, seed=0, extras={"c": data.c_train}))
    # The digit classes determine the clean codes; 5% of the training bits are flipped.
    from ebm_jax.data.concepts import SEVEN_SEGMENT_CODES
    agree = (batch["c"] == SEVEN_SEGMENT_CODES[batch["y"]]).mean()
    assert 0.85 < agree < 1.0 or agree == 1.0
    rows = [np.flatnonzero((data.x_train == x).all(1))[0] for x in batch["x"][:5]]
    np.testing.assert_array_equal(batch["c"][:5], data.c_train[rows])
    with pytest.raises(ValueError, match=r"extras\['c'\] has 3 rows"):
        Batches(data.x_train, data.y_train, 32, seed=0, extras={"c": data.c_train[:3]})


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["ecbm_digits", "cbm_digits"])
def test_the_config_builds_the_loss_of_its_settings(preset):
    weight = "objective.global_weight=0.5" if preset == "ecbm_digits" else \
        "objective.concept_weight=0.5"
    exp = build(tiny(preset, weight))
    batch = example_batch(exp.config, exp.data)
    state = initial_state(exp).loss_state
    built = float(exp.loss.loss(exp.params, state, batch, jax.random.key(0))[0])
    if preset == "ecbm_digits":
        energies = exp.loss  # the objective's own model: rebuild the loss by hand from its info
        _, (_, info) = energies.loss(exp.params, state, batch, jax.random.key(0))
        by_hand = (3.0 * info["class_loss"] + info["concept_loss"] + 0.5 * info["global_loss"]
                   + info["pseudo_likelihood"])
        np.testing.assert_allclose(built, by_hand, rtol=1e-5)
        assert callable(ecbm_loss)
    else:
        _, (_, info) = exp.loss.loss(exp.params, state, batch, jax.random.key(0))
        np.testing.assert_allclose(built, info["class_loss"] + 0.5 * info["concept_loss"],
                                   rtol=1e-5)
        assert callable(concept_bottleneck_loss)


@pytest.mark.slow
def test_a_tiny_ecbm_run_trains_evaluates_concepts_and_resumes_bit_exactly(tmp_path, capsys):
    workdir = tmp_path / "run"
    summary = train(tiny("ecbm_digits", "run.num_steps=20"), str(workdir), progress=False,
                    devices=1)
    assert summary["steps"] == 20
    for key in ("concept_accuracy", "overall_concept_accuracy", "concept_class_accuracy",
                "intervention_accuracy", "test_accuracy"):
        assert 0.0 <= summary[key] <= 1.0, key
    # The concepts reach the loss: their term falls over twenty steps (from 7 log 2 = 4.85).
    losses = [r["concept_loss"] for r in run_records(workdir) if "concept_loss" in r]
    assert losses[-1] < losses[0] - 0.1
    assert_resumes_bit_exactly(workdir, summary, capsys)


@pytest.mark.parametrize("inference", ["exact", "gradient"])
def test_both_inferences_score_the_concepts(inference):
    exp = build(tiny("ecbm_digits", f"objective.inference={inference}",
                     "objective.inference_steps=5"))
    scores = exp.evaluate(exp.params, jax.random.key(0), quick=True)
    assert set(scores) == {"concept_accuracy", "overall_concept_accuracy",
                           "concept_class_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
