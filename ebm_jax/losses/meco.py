"""MECO: maximum likelihood by compositional optimisation (Jiang et al., ICML 2023).

The negative log-likelihood of an energy ``E`` is ``E_data[E(x)] + log Z`` with
``Z = ∫ exp(-E(x)) dx``. Against a normalised noise density ``q`` that can be sampled,
``Z`` is an expectation,

    Z = g(θ) = E_{y ~ q}[exp(-E(y)) / q(y)],

so the NLL ``F(θ) = E_data[E(x)] + log g(θ)`` is a *compositional* objective: a
nonlinear function (``log``) of an expectation. Plugging a minibatch estimate ``ĝ``
into ``log`` biases the gradient ``∇g / g``; stochastic compositional optimisation
instead tracks the inner expectation with a moving average

    u_t = (1 - γ) u_{t-1} + γ ĝ_t(θ_t)

and steps along ``E_data[∇E(x)] + ∇ĝ_t(θ_t) / u_t``. Unlike NCE, whose loss flattens
when the noise is far from the data (for a 1-D Gaussian mean against ``q = N(0, 1)`` its
smallest curvature at the optimum falls from 0.21 to 3.5e-7 as the mean moves from 1 to
8), this is the likelihood's own landscape (curvature 1 there); the noise only sets the
variance of ``ĝ``. No sampling from the model, no learned normaliser: ``log u`` is the
tracked ``log Z``.

``u`` is kept in the log domain (``log u_t = logaddexp(log(1-γ) + log u_{t-1}, log γ +
log ĝ_t)``), so energies of any scale neither overflow nor underflow.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_probability
from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.energies.distributions import NoiseDistribution
from ebm_jax.losses.base import LossTransform
from ebm_jax.losses.nce import _check_noise_batch, _check_noise_settings

# The weight of the newest minibatch estimate in the moving average (γ): 0.9, the default
# of the authors' stochastic compositional methods (SogCLR, SOX) for the inner estimate.
DEFAULT_RATE = 0.9


class MECOState(NamedTuple):
    """MECO's loss state.

    Attributes:
      log_u: scalar float32, ``log u``: the moving average of the inner expectation
        ``Z = E_q[exp(-E(y)) / q(y)]`` in the log domain, the tracked ``log Z``.
    """

    log_u: jax.Array


def log_z_estimate(energy_fn: EnergyFn, noise: NoiseDistribution, params, noise_samples):
    """The importance-sampling estimate ``log ĝ = log mean_j exp(-E(y_j) - log q(y_j))``.

    Args:
      energy_fn: per-example ``energy_fn(params, x[*shape]) -> scalar``.
      noise: the normalised noise ``q`` the samples came from.
      params: the energy's params.
      noise_samples: ``[M, *shape]`` draws of ``q``.

    Returns:
      A scalar: an estimate of ``log Z`` (consistent as ``M`` grows; biased low for small
      ``M`` by Jensen's inequality, which is why MECO averages ``ĝ``, not ``log ĝ``).

    Example::

      >>> from ebm_jax.energies.distributions import uniform_box
      >>> energy_fn = lambda w, x: 0.5 * jnp.sum(x ** 2)       # Z = 2π
      >>> noise = uniform_box(-6.0, 6.0, (2,))
      >>> y = noise.sample(jax.random.key(0), 100_000)
      >>> estimate = log_z_estimate(energy_fn, noise, None, y)
      >>> round(float(estimate), 1), round(math.log(2 * math.pi), 1)
      (1.8, 1.8)
    """
    log_w = -batch_energy(energy_fn)(params, noise_samples) - jax.vmap(noise.log_prob)(
        noise_samples)
    return jax.nn.logsumexp(log_w) - math.log(noise_samples.shape[0])


def meco(energy_fn: EnergyFn, noise: NoiseDistribution, *, noise_ratio: float = 1.0,
         rate: float = DEFAULT_RATE) -> LossTransform:
    """Maximum likelihood of an energy by compositional optimisation (MECO).

    The loss's ``params`` are the energy's own (no learned normaliser). Each step draws
    ``M = round(ν B)`` noise samples, estimates ``ĝ`` (:func:`log_z_estimate`), moves
    ``log u`` towards it with weight ``rate`` and returns a value whose gradient is
    MECO's: ``mean_x ∇E(x) + ∇ĝ / u``. The value itself is the NLL estimate ``mean_x E(x)
    + log u`` (the gradient's surrogate term adds exactly zero to it).

    ``init`` starts ``log u`` at an estimate from the initial params (``M`` draws from the
    init key), so the first step is already a moving average of two estimates.

    Args:
      energy_fn: per-example ``energy_fn(params, x[*shape]) -> scalar``.
      noise: a normalised :class:`~ebm_jax.energies.distributions.NoiseDistribution` of
        the data's example shape; its support must cover the data.
      noise_ratio: ``ν > 0``, noise samples per data example.
      rate: ``γ`` in ``(0, 1]``, the weight of the new minibatch estimate in ``u``; 1 uses
        the plain minibatch estimate (biased gradient).

    Info: ``log_z`` (the tracked ``log u``), ``log_z_batch`` (this step's ``log ĝ``),
    ``nll`` (``mean E(x) + log u``), ``energy_data`` and ``energy_noise`` (means).

    Raises:
      ValueError: at construction for ``noise_ratio <= 0`` or ``rate`` outside ``(0, 1]``;
        at ``init`` and at the first trace of ``loss`` if the batch has no ``"x"`` or the
        noise's shape does not match it.

    Example::

      >>> from ebm_jax.energies.distributions import fit_gaussian
      >>> data = 3.0 + jax.random.normal(jax.random.key(0), (256, 1))
      >>> energy_fn = lambda mean, x: 0.5 * jnp.sum((x - mean) ** 2)   # Z = sqrt(2π)
      >>> loss = meco(energy_fn, fit_gaussian(data, scale=1.5), noise_ratio=4.0)
      >>> mean = jnp.full(1, 3.0)
      >>> state = loss.init(jax.random.key(1), mean, {"x": data})
      >>> value, (state, info) = jax.jit(loss.loss)(mean, state, {"x": data}, jax.random.key(2))
      >>> sorted(info), abs(float(state.log_u) - 0.919) < 0.1          # log sqrt(2π) = 0.919
      (['energy_data', 'energy_noise', 'log_z', 'log_z_batch', 'nll'], True)
    """
    noise_ratio = _check_noise_settings(noise, noise_ratio)
    rate = check_probability("rate", rate, include_zero=False,
                             expected="a moving-average weight in (0, 1]")
    batched = batch_energy(energy_fn)
    noise_log_prob = jax.vmap(noise.log_prob)
    log_rate, log_keep = math.log(rate), (math.log1p(-rate) if rate < 1 else -math.inf)

    def check(batch) -> int:
        return _check_noise_batch(batch, noise, noise_ratio, "meco")

    def init(rng_key, params, example_batch):
        num_noise = check(example_batch)
        y = noise.sample(rng_key, num_noise)
        log_u = log_z_estimate(energy_fn, noise, jax.lax.stop_gradient(params), y)
        return MECOState(log_u=jnp.asarray(log_u, jnp.float32))

    def loss(params, state, batch, rng_key):
        num_noise = check(batch)
        x = batch["x"]
        y = jax.lax.stop_gradient(noise.sample(rng_key, num_noise))
        e_data = batched(params, x)
        e_noise = batched(params, y)
        log_w = -e_noise - noise_log_prob(y)                           # log exp(-E)/q
        log_g = jax.nn.logsumexp(log_w) - math.log(num_noise)          # log ĝ_t
        log_u = jnp.logaddexp(log_keep + state.log_u, log_rate + jax.lax.stop_gradient(log_g))
        log_u = jax.lax.stop_gradient(log_u)
        surrogate = jnp.exp(log_g - log_u)             # ĝ / u: its gradient is ∇ĝ / u
        nll = jnp.mean(e_data) + log_u
        value = nll + (surrogate - jax.lax.stop_gradient(surrogate))
        info = {"log_z": log_u, "log_z_batch": jax.lax.stop_gradient(log_g), "nll": nll,
                "energy_data": jnp.mean(e_data), "energy_noise": jnp.mean(e_noise)}
        return value, (MECOState(log_u=log_u.astype(jnp.float32)), info)

    return LossTransform(init, loss)
