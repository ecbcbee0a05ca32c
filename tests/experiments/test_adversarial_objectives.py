"""The adversarial-training objectives through the registry (``pgd_at``, ``trades``,
``weat``: presets ``at_digits``, ``trades_digits``, ``weat_digits``) and the robustness that
every classifier's summary reports (``robust_accuracy_linf``, ``robust_accuracy_l2``,
``energy_sign_untargeted``, ``energy_sign_targeted``).

Deliberate breakages, each verified by temporarily editing the package and restoring it:

- a setting that does not reach the loss (``beta=settings.beta`` -> ``beta=6.0`` in
  ``objectives/trades.py``, ``energy_input`` left at its default in ``objectives/weat.py``,
  ``clip_range=data.data_range`` -> ``None`` in ``objectives/_adversarial.py``):
  ``test_the_config_builds_the_loss_of_its_settings``;
- the summary's robustness drawn with another key than ``ebm-jax evaluate``'s
  (``method_key`` in ``evaluation.evaluate`` -> ``jax.random.PRNGKey(0)``):
  ``test_a_tiny_run_reports_the_robustness_in_its_summary_and_its_evaluation``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.experiments import ConfigError, build, make_config
from ebm_jax.experiments.evaluation import evaluate_run
from ebm_jax.experiments.objectives._classifier import ROBUST_KEYS
from ebm_jax.losses import pgd_adversarial_training, trades, weat
from tests.experiments.conftest import _train_tiny

pytestmark = pytest.mark.fast_compile

ADVERSARIAL = ("at_digits", "trades_digits", "weat_digits")


@pytest.mark.parametrize("preset", ADVERSARIAL)
def test_presets_train_the_network_of_the_softmax_and_jem_presets(preset):
    config, baseline = make_config(preset), make_config("softmax_digits")
    for section in ("data", "model", "optimizer", "run", "guard"):
        assert getattr(config, section) == getattr(baseline, section), section
    assert getattr(config, "model") == make_config("jem_digits").model
    assert (config.objective.norm, config.objective.epsilon) == ("linf", 0.2)


SMALL = ["model.hidden=16", "data.batch_size=8"]
# preset: (overrides, the factory with those settings, the factory with the preset's own)
CASES = {
    "at_digits": (["objective.norm=l2", "objective.epsilon=0.5", "objective.num_steps=3"],
                  lambda f: pgd_adversarial_training(f, norm="l2", epsilon=0.5, num_steps=3),
                  lambda f: pgd_adversarial_training(f, epsilon=0.2)),
    "trades_digits": (["objective.beta=2.5", "objective.step_size=0.03",
                       "objective.ce_input=adversarial"],
                      lambda f: trades(f, beta=2.5, step_size=0.03, epsilon=0.2,
                                       ce_input="adversarial"),
                      lambda f: trades(f, epsilon=0.2)),
    "weat_digits": (["objective.energy_input=adversarial", "objective.random_start=false",
                     "objective.num_steps=4"],
                    lambda f: weat(f, energy_input="adversarial", random_start=False,
                                   epsilon=0.2, num_steps=4),
                    lambda f: weat(f, epsilon=0.2)),
}


@pytest.mark.parametrize("preset", ADVERSARIAL)
def test_the_config_builds_the_loss_of_its_settings(preset):
    """The built loss equals the factory's with the same settings (and the data range as the
    clamp), on a batch where the settings matter: the preset's own settings give another
    value."""
    overrides, make, make_default = CASES[preset]
    exp = build(make_config(preset, SMALL + overrides))
    batch = {"x": jnp.asarray(exp.data.x_train[:8]) * 0.99,
             "y": jnp.asarray(exp.data.y_train[:8])}
    params = jax.tree.map(lambda a: 3.0 * a, exp.params)  # confident: unequal energies
    key = jax.random.key(1)

    def value(loss):
        return float(jax.jit(loss.loss)(params, (), batch, key)[0])

    built = value(exp.loss)
    np.testing.assert_allclose(built, value(make(exp.logits_fn)), rtol=1e-6)
    assert abs(value(make_default(exp.logits_fn)) - built) > 1e-3


@pytest.mark.parametrize("override,message", [
    ("objective.epsilon=0", "objective.epsilon=0.0: expected a positive number"),
    ("objective.norm=l1", "objective.norm='l1': expected one of ['linf', 'l2']"),
    ("objective.step_size=-1", "objective.step_size=-1.0: expected a positive number or none"),
    ("objective.energy_input=both",
     "objective.energy_input='both': expected one of ['natural', 'adversarial']"),
    ("objective.beta=-1", "objective.beta=-1.0: expected a number >= 0"),
])
def test_a_bad_setting_names_the_field(override, message):
    with pytest.raises(ConfigError) as error:
        make_config("weat_digits", [override])
    assert message in str(error.value)


@pytest.fixture(scope="module")
def weat_run(tmp_path_factory):
    return _train_tiny(tmp_path_factory, "weat_digits", "run.num_steps=20",
                       "run.robust_eval_examples=100")


@pytest.mark.slow
def test_a_tiny_run_reports_the_robustness_in_its_summary_and_its_evaluation(weat_run):
    workdir, summary = weat_run
    for key in ROBUST_KEYS:
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["robust_accuracy_linf"] <= summary["test_accuracy"] + 1e-9
    report = evaluate_run(str(workdir), metrics_requested=("classification",), figures=False)
    assert set(ROBUST_KEYS) <= set(report["method_metrics"])
    for key in ROBUST_KEYS:
        assert report[key] == summary[key], key  # the same attacks: the same key
