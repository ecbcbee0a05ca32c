"""Energies: the protocol, classifier-as-EBM readings, composition (AND/OR/NOT), analytic
energies, and normalised noise distributions (:mod:`ebm_jax.energies.distributions`)."""
from ebm_jax.energies import distributions
from ebm_jax.energies._base import (
    EnergyFn,
    LogitsFn,
    batch_energy,
    energy_from_logits,
    joint_energy_from_logits,
    with_temperature,
)
from ebm_jax.energies.analytic import AnalyticEnergy, gaussian, gaussian_mixture
from ebm_jax.energies.distributions import NoiseDistribution
from ebm_jax.energies.composition import (
    ClassConditional,
    class_conditional,
    class_energy,
    classes_and,
    classes_or,
    composed_class_energy,
    guided,
    mixture,
    negation,
    product,
)

__all__ = [
    "AnalyticEnergy",
    "ClassConditional",
    "EnergyFn",
    "LogitsFn",
    "NoiseDistribution",
    "batch_energy",
    "class_conditional",
    "class_energy",
    "classes_and",
    "classes_or",
    "composed_class_energy",
    "distributions",
    "energy_from_logits",
    "gaussian",
    "gaussian_mixture",
    "guided",
    "joint_energy_from_logits",
    "mixture",
    "negation",
    "product",
    "with_temperature",
]
