"""Noise-contrastive estimation (Gutmann & Hyvärinen 2012).

NCE fits an unnormalised model by logistic regression: tell the data apart
from ``ν B`` draws of a known, normalised noise density ``p_n``. The model's
log normaliser is a learned scalar ``log_z``, so the model density is

    log p_model(x) = -E(x) - log_z

and the classifier's log-odds that ``x`` is data are

    G(x) = log p_model(x) - log p_n(x) - log ν.

The loss is the mean binary cross-entropy over all ``B + M`` points
(``M = round(ν B)``; ``ν`` in ``G`` is the actual ratio ``M / B``)::

    L = [Σ_data softplus(-G(x)) + Σ_noise softplus(G(y))] / (B + M).

Its population minimiser is ``p_model = p_data`` whenever the model family
holds the data density (and ``p_n > 0`` wherever ``p_data > 0``): NCE is
consistent for both the energy and ``log_z``, with no sampling from the model.
The noise should be close to the data (e.g. :func:`~ebm_jax.energies.distributions.fit_gaussian`
with ``scale`` 1-1.5, or a flow: flow contrastive estimation).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_in_range
from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.energies.distributions import NoiseDistribution, check_noise
from ebm_jax.losses.base import LossTransform, require_keys


def nce_params(energy_params: Any, log_z=0.0) -> dict:
    """The parameters NCE trains: ``{"energy": energy_params, "log_z": scalar float32}``.

    Example::

      >>> energy_fn = lambda scale, x: 0.5 * jnp.sum((x / scale) ** 2)
      >>> params = nce_params(jnp.ones(2))             # log_z starts at 0
      >>> float(params["log_z"]), float(energy_fn(params["energy"], jnp.ones(2)))  # E alone
      (0.0, 1.0)
    """
    log_z = jnp.asarray(log_z, jnp.float32)
    if log_z.shape != ():
        raise ValueError(f"log_z has shape {log_z.shape}: expected a scalar")
    return {"energy": energy_params, "log_z": log_z}


def _check_params(params) -> None:
    if not (isinstance(params, Mapping) and set(params) == {"energy", "log_z"}):
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"nce params are {got}: expected a dict with keys ['energy', 'log_z'] "
                         "(build it with nce_params(energy_params))")
    if jnp.shape(params["log_z"]) != ():
        raise ValueError(f"params['log_z'] has shape {jnp.shape(params['log_z'])}: "
                         "expected a scalar")


_MAX_NOISE = 2**31 - 1  # an array dimension must fit in int32


def _num_noise(noise_ratio: float, batch_size: int) -> int:
    total = noise_ratio * batch_size
    if not total <= _MAX_NOISE:   # also catches an overflow to inf
        raise ValueError(f"noise_ratio={noise_ratio!r} with a batch of {batch_size}: "
                         f"noise_ratio * batch_size = {total:.4g} noise samples, expected at "
                         f"most {_MAX_NOISE}")
    num = int(round(total))
    if num < 1:
        raise ValueError(f"noise_ratio={noise_ratio!r} with a batch of {batch_size}: expected "
                         "noise_ratio * batch_size >= 0.5 (at least one noise sample)")
    return num


def _check_noise_settings(noise: NoiseDistribution, noise_ratio) -> float:
    """The construction checks of a loss against a noise (NCE, MECO): the checked ratio."""
    # a count ratio, not an array value: any positive finite float (a concrete 0-d array too)
    noise_ratio = check_in_range("noise_ratio", noise_ratio, 0, math.inf, include_low=False,
                                 expected="a positive finite number")
    if not isinstance(noise, NoiseDistribution):
        raise ValueError(f"noise={noise!r}: expected a NoiseDistribution (see "
                         "ebm_jax.energies.distributions: fit_gaussian, uniform_box, from_pair)")
    return noise_ratio


def _check_noise_batch(batch, noise: NoiseDistribution, noise_ratio: float, who: str) -> int:
    """A batch's checks against the noise (before compute): the number of noise samples."""
    require_keys(batch, ("x",), who)
    x = batch["x"]
    if jnp.ndim(x) < 1 or jnp.shape(x)[0] == 0:
        raise ValueError(f"batch['x'] has shape {jnp.shape(x)}: expected a non-empty "
                         "batch [B, ...] with B >= 1")
    check_noise(noise, jnp.shape(x)[1:], who="noise")
    return _num_noise(noise_ratio, jnp.shape(x)[0])


def nce(energy_fn: EnergyFn, noise: NoiseDistribution, *,
        noise_ratio: float = 1.0) -> LossTransform:
    """Noise-contrastive estimation of an energy and its log normaliser.

    Stateless (its state is ``()``). The loss's ``params`` are
    ``{"energy": energy_params, "log_z": scalar}`` (see :func:`nce_params`);
    ``energy_fn(params["energy"], x)`` is the per-example energy.

    Args:
      energy_fn: per-example ``energy_fn(energy_params, x[*shape]) -> scalar``.
      noise: a normalised :class:`~ebm_jax.energies.distributions.NoiseDistribution`
        whose examples have the data's shape.
      noise_ratio: ``ν > 0``, noise samples per data example; each step draws
        ``round(ν B)`` fresh noise samples.

    Info: ``accuracy`` (fraction of the ``B + M`` points classified right,
    ``G > 0`` for data), ``log_z``, ``energy_data`` and ``energy_noise`` (means).

    Raises:
      ValueError: at construction if ``noise_ratio <= 0``; at ``init`` and at
        the first trace of ``loss`` if the noise's samples or ``log_prob`` do not
        match the data example shape, or the params are not ``nce_params``.

    Example::

      >>> from ebm_jax.energies.distributions import fit_gaussian
      >>> data = jax.random.normal(jax.random.key(0), (256, 2))
      >>> energy_fn = lambda scale, x: 0.5 * jnp.sum((x / scale) ** 2)
      >>> loss = nce(energy_fn, fit_gaussian(data, scale=1.25), noise_ratio=2.0)
      >>> params = nce_params(jnp.ones(2))
      >>> value, (_, info) = jax.jit(loss.loss)(params, (), {"x": data}, jax.random.key(1))
      >>> value.shape, sorted(info)
      ((), ['accuracy', 'energy_data', 'energy_noise', 'log_z'])
    """
    noise_ratio = _check_noise_settings(noise, noise_ratio)
    batched = batch_energy(energy_fn)
    noise_log_prob = jax.vmap(noise.log_prob)

    def check(params, batch):
        require_keys(batch, ("x",), "nce")
        _check_params(params)
        return _check_noise_batch(batch, noise, noise_ratio, "nce")

    def init(rng_key, params, example_batch):
        check(params, example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        num_noise = check(params, batch)
        x = batch["x"]
        batch_size = x.shape[0]
        y = jax.lax.stop_gradient(noise.sample(rng_key, num_noise))
        log_nu = math.log(num_noise / batch_size)
        log_z = params["log_z"]
        e_data = batched(params["energy"], x)
        e_noise = batched(params["energy"], y)
        g_data = -e_data - log_z - noise_log_prob(x) - log_nu
        g_noise = -e_noise - log_z - noise_log_prob(y) - log_nu
        value = (jnp.sum(jax.nn.softplus(-g_data)) + jnp.sum(jax.nn.softplus(g_noise))) \
            / (batch_size + num_noise)
        correct = jnp.sum(g_data > 0) + jnp.sum(g_noise < 0)
        info = {
            "accuracy": correct / (batch_size + num_noise),
            "log_z": log_z,
            "energy_data": jnp.mean(e_data),
            "energy_noise": jnp.mean(e_noise),
        }
        return value, (state, info)

    return LossTransform(init, loss)
