"""Analytic energies with a known normaliser, for tests and toy use.

Each factory returns an :class:`AnalyticEnergy`: a pure per-example
``energy_fn(params, x)`` (``params`` is ignored, pass ``None``), its exact
``log_z`` (so that ``log p(x) = -E(x) - log_z``), a sampler of exact draws,
and the true mean and covariance.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class AnalyticEnergy(NamedTuple):
    """An energy whose normaliser and moments are known in closed form.

    Attributes:
      energy_fn: ``energy_fn(params, x[D]) -> scalar`` (params ignored).
      log_z: ``log ∫ exp(-E(x)) dx``.
      sample: ``sample(rng_key, n) -> [n, D]`` exact draws.
      mean: ``[D]`` true mean.
      covariance: ``[D, D]`` true covariance.
    """

    energy_fn: Callable
    log_z: jax.Array
    sample: Callable
    mean: jax.Array
    covariance: jax.Array

    def log_prob(self, x: jax.Array) -> jax.Array:
        """Normalised log-density of one example ``x[D]``."""
        return -self.energy_fn(None, x) - self.log_z


def _check_covariance(cov: np.ndarray, name: str) -> None:
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{name} has shape {cov.shape}: expected a square [D, D] matrix")
    if not np.allclose(cov, cov.T, atol=1e-6):
        raise ValueError(f"{name} is not symmetric: expected a symmetric positive-definite matrix")
    if np.linalg.eigvalsh(cov).min() <= 0:
        raise ValueError(f"{name} is not positive definite: expected a symmetric positive-definite matrix")


def gaussian(mean, covariance) -> AnalyticEnergy:
    """Multivariate Gaussian ``N(mean, covariance)`` as an energy.

    ``E(x) = ½ (x-μ)ᵀ Σ⁻¹ (x-μ)`` and ``log Z = ½ log det(2π Σ)``.

    Example::

      >>> g = gaussian(jnp.zeros(2), jnp.eye(2))
      >>> float(g.log_z)   # log(2π)
      1.8378...
    """
    mean = jnp.asarray(mean, jnp.float32)
    cov_np = np.asarray(covariance, np.float64)
    if mean.ndim != 1:
        raise ValueError(f"mean has shape {mean.shape}: expected a vector [D]")
    _check_covariance(cov_np, "covariance")
    if cov_np.shape[0] != mean.shape[0]:
        raise ValueError(
            f"covariance has shape {cov_np.shape}: expected [{mean.shape[0]}, {mean.shape[0]}] to match mean")
    precision = jnp.asarray(np.linalg.inv(cov_np), jnp.float32)
    chol = jnp.asarray(np.linalg.cholesky(cov_np), jnp.float32)
    log_z = jnp.float32(0.5 * np.linalg.slogdet(2 * np.pi * cov_np)[1])

    def energy_fn(params, x):
        d = x - mean
        return 0.5 * d @ precision @ d

    def sample(rng_key, n):
        return mean + jax.random.normal(rng_key, (n, mean.shape[0])) @ chol.T

    return AnalyticEnergy(energy_fn, log_z, sample, mean, jnp.asarray(cov_np, jnp.float32))


def gaussian_mixture(weights, means, stds) -> AnalyticEnergy:
    """Mixture of isotropic Gaussians as an energy, with ``log Z = 0``.

    ``E(x) = -log Σ_k w_k N(x; μ_k, σ_k² I)``: normalised, so ``log_z`` is 0.

    Args:
      weights: ``[K]`` positive mixture weights (normalised here).
      means: ``[K, D]`` component means.
      stds: ``[K]`` component standard deviations.
    """
    weights = np.asarray(weights, np.float64)
    means_np = np.asarray(means, np.float64)
    stds_np = np.asarray(stds, np.float64)
    if means_np.ndim != 2:
        raise ValueError(f"means has shape {means_np.shape}: expected [K, D]")
    k, dim = means_np.shape
    if weights.shape != (k,) or stds_np.shape != (k,):
        raise ValueError(
            f"weights {weights.shape} and stds {stds_np.shape}: expected both of shape ({k},) to match means")
    if np.any(weights <= 0) or np.any(stds_np <= 0):
        raise ValueError("weights and stds must be positive")
    weights = weights / weights.sum()
    log_w = jnp.asarray(np.log(weights), jnp.float32)
    mu = jnp.asarray(means_np, jnp.float32)
    sd = jnp.asarray(stds_np, jnp.float32)

    def energy_fn(params, x):
        sq = jnp.sum((x - mu) ** 2, axis=-1)
        log_comp = -0.5 * sq / sd**2 - dim * jnp.log(sd) - 0.5 * dim * jnp.log(2 * jnp.pi)
        return -jax.nn.logsumexp(log_w + log_comp)

    def sample(rng_key, n):
        k_comp, k_noise = jax.random.split(rng_key)
        comp = jax.random.categorical(k_comp, log_w, shape=(n,))
        return mu[comp] + sd[comp, None] * jax.random.normal(k_noise, (n, dim))

    mean = weights @ means_np
    centred = means_np - mean
    cov = (weights[:, None, None] * (centred[:, :, None] * centred[:, None, :]
                                     + stds_np[:, None, None] ** 2 * np.eye(dim))).sum(0)
    return AnalyticEnergy(energy_fn, jnp.float32(0.0), sample,
                          jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32))
