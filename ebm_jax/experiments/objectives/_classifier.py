"""What the classifier objectives (JEM, softmax, adversarial training) share: the network read
as logits, and their own metrics, robustness under PGD and how attacks move the energy."""
from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np

from ebm_jax import metrics
from ebm_jax.energies import energy_from_logits
from ebm_jax.experiments.networks import make_network, network_shape
from ebm_jax.nets import pure, pure_batch_norm

CLASSIFIER_MODELS = ("mlp", "conv", "wrn")
CLASSIFIER_MODELS_NOTE = ("a classifier has K outputs; 'igebm_resnet' has one, the energy, "
                          "and 'resnet' is level-conditioned")

# The robustness every classifier's summary reports (in the data's units: digits and images
# live in [-1, 1], so L-inf 0.2 is a tenth of the range and L2 1.0 over 64 pixels is 0.125
# per pixel): PGD-20 from a random start, on at most run.robust_eval_examples test examples.
ROBUST_LINF = 0.2
ROBUST_L2 = 1.0
ROBUST_PGD_STEPS = 20
ROBUST_BATCH = 500
ROBUST_KEYS = ("robust_accuracy_linf", "robust_accuracy_l2", "energy_sign_untargeted",
               "energy_sign_targeted")


def classifier_model(config, data, rngs):
    """The classifier network of ``config.model`` as pure functions: a
    :class:`~ebm_jax.nets.BatchNormModel` with ``model.batch_norm`` (its ``apply_batch``
    normalises by the batch), else ``pure(net)``; ``apply`` is the logits either way."""
    in_features = int(np.prod(data.x_train.shape[1:]))
    net = make_network(config.model, in_features, network_shape(data), data.num_classes, rngs)
    return pure_batch_norm(net) if config.model.batch_norm else pure(net)


def build_classifier(config, data, rngs):
    """``(params, logits_fn, energy_fn)`` of a classifier read as an EBM,
    ``E(x) = -logsumexp f(x)``."""
    model = classifier_model(config, data, rngs)
    return model.params, model.apply, energy_from_logits(model.apply)


def robust_evaluation(data, logits_fn: Callable, num_examples: int) -> Callable:
    """A classifier's own metrics, ``evaluate(params, rng_key, *, quick=False, figure=None)``
    (see :class:`~ebm_jax.experiments.objectives.Pieces`), on the first ``num_examples``
    test examples (a run's ``run.robust_eval_examples``); nothing with ``quick`` (the
    periodic evaluation) or without examples.

    Keys: ``robust_accuracy_linf`` and ``robust_accuracy_l2``, the accuracy under PGD-20
    with a random start at L-inf :data:`ROBUST_LINF` and L2 :data:`ROBUST_L2` (cross-entropy
    ascent, clamped to the data range); ``energy_sign_untargeted``, the share of examples
    whose energy ``E(x) = -logsumexp f(x)`` that L-inf attack lowers, and
    ``energy_sign_targeted``, the share whose energy the same attack toward a random other
    class raises (:func:`ebm_jax.metrics.attack_energy_shift`; Mirza et al. 2024 report both
    shares high on CIFAR-10 classifiers). Two compiled programs per call.
    """
    x = np.asarray(data.x_test[:num_examples])
    y = np.asarray(data.y_test[:num_examples])
    batch = min(len(x), ROBUST_BATCH)
    options = dict(num_steps=ROBUST_PGD_STEPS, batch_size=batch, clip_range=data.data_range)

    def evaluate(params, rng_key, *, quick: bool = False,
                 figure: Optional[str] = None) -> dict:
        del figure  # no picture of its own
        if quick or not len(x):
            return {}
        k_linf, k_l2 = jax.random.split(rng_key)
        # One L-inf program: the untargeted attack's accuracy and energies, the targeted one's.
        linf = metrics.attack_energy_shift(k_linf, logits_fn, params, x, y, norm="linf",
                                           epsilon=ROBUST_LINF, num_classes=data.num_classes,
                                           **options)
        l2 = metrics.robust_accuracy_curve(k_l2, logits_fn, params, x, y, norm="l2",
                                           epsilons=[ROBUST_L2], **options)
        return {"robust_accuracy_linf": linf["untargeted_accuracy"],
                "robust_accuracy_l2": l2[ROBUST_L2],
                "energy_sign_untargeted": linf["untargeted"],
                "energy_sign_targeted": linf["targeted"]}

    return evaluate
