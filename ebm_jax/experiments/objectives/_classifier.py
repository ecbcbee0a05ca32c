"""What the classifier objectives (JEM, softmax) share: the network read as logits."""
from __future__ import annotations

import numpy as np

from ebm_jax.energies import energy_from_logits
from ebm_jax.experiments.networks import make_network, network_shape
from ebm_jax.nets import pure

CLASSIFIER_MODELS = ("mlp", "conv", "wrn")
CLASSIFIER_MODELS_NOTE = ("a classifier has K outputs; 'igebm_resnet' has one, the energy, "
                          "and 'resnet' is level-conditioned")


def build_classifier(config, data, rngs):
    """``(params, logits_fn, energy_fn)`` of a classifier read as an EBM,
    ``E(x) = -logsumexp f(x)``."""
    in_features = int(np.prod(data.x_train.shape[1:]))
    net = make_network(config.model, in_features, network_shape(data), data.num_classes, rngs)
    model = pure(net)
    return model.params, model.apply, energy_from_logits(model.apply)
