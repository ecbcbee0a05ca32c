"""Energies: the protocol, classifier-as-EBM readings, and analytic energies."""
from ebm_jax.energies._base import (
    EnergyFn,
    LogitsFn,
    batch_energy,
    energy_from_logits,
    joint_energy_from_logits,
    with_temperature,
)
from ebm_jax.energies.analytic import AnalyticEnergy, gaussian, gaussian_mixture

__all__ = [
    "AnalyticEnergy",
    "EnergyFn",
    "LogitsFn",
    "batch_energy",
    "energy_from_logits",
    "gaussian",
    "gaussian_mixture",
    "joint_energy_from_logits",
    "with_temperature",
]
