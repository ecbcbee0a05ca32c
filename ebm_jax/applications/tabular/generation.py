"""TabEBM's sampler: SGLD on one class's energy from jittered rows of that class.

Chains start at the class's rows drawn with replacement plus ``N(0, start_noise^2)`` and take
``num_steps`` steps of ``x' = x - step_size ∇E_c(x) + noise_scale ε`` (the toolkit's
:func:`~ebm_jax.samplers.langevin` in its decoupled form; the paper: 0.1, 0.01, 200 steps from
starts jittered by 0.01).

The reference code differentiates the *mean* energy of its batch of chains, so each chain
moves by ``step_size / N`` times its own gradient (``N`` chains); ``batch_mean_gradient=True``
reproduces that exactly by dividing the step, and the default takes each chain's own
gradient at the full step.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebm_jax.samplers import Sampler, langevin, langevin_kernel, run_chains


def jittered_starts(rng_key: jax.Array, rows: jax.Array, row_mask: jax.Array, num_chains: int,
                    start_noise: float) -> jax.Array:
    """``[num_chains, D]``: rows drawn uniformly with replacement among the masked ones, plus
    Gaussian noise of standard deviation ``start_noise``.

    Example::

      >>> rows = jnp.array([[0.0, 0.0], [9.0, 9.0]])
      >>> starts = jittered_starts(jax.random.key(0), rows, jnp.array([True, False]), 5, 0.01)
      >>> starts.shape, bool(jnp.all(jnp.abs(starts) < 0.1))
      ((5, 2), True)
    """
    pick_key, noise_key = jax.random.split(rng_key)
    weights = jnp.asarray(row_mask, rows.dtype)
    index = jax.random.choice(pick_key, rows.shape[0], (num_chains,), p=weights / weights.sum())
    return rows[index] + start_noise * jax.random.normal(noise_key, (num_chains,) + rows.shape[1:],
                                                         rows.dtype)


def class_sampler(energy_fn: Callable[[Any, jax.Array], jax.Array], num_chains: int, *,
                  num_steps: int = 200, step_size: float = 0.1, noise_scale: float = 0.01,
                  start_noise: float = 0.01, batch_mean_gradient: bool = False) -> Callable:
    """``sample(rng_key, params, rows [N, D], row_mask [N], step_scale=1.0, noise=None)
    -> [num_chains, D]``: TabEBM's chains on one class, pure (jit it; vmap it over classes with
    padded rows). The step is ``step_size * step_scale`` (divided by ``num_chains`` with
    ``batch_mean_gradient``); ``step_scale`` may be traced, one per class (the kernel
    backend's squared bandwidth, :attr:`ClassEnergyBackend.step_scale`), a scalar or one per
    feature (``[D]``: a diagonal preconditioner). A ``noise`` given to
    ``sample`` (possibly traced) replaces ``noise_scale``, so that one compiled program serves
    any steps and noises.

    Example::

      >>> energy = lambda p, x: 0.5 * jnp.sum((x - p) ** 2)   # a Gaussian at p
      >>> sample = jax.jit(class_sampler(energy, 500, num_steps=300, noise_scale=0.45))
      >>> x = sample(jax.random.key(0), jnp.ones(2), jnp.zeros((1, 2)), jnp.ones(1, bool))
      >>> [round(float(v), 1) for v in x.mean(0)]
      [1.0, 1.0]
    """
    step = step_size / num_chains if batch_mean_gradient else step_size
    checked = langevin(energy_fn, step, noise_scale)  # checks the settings now, before compute
    kernel = langevin_kernel(energy_fn)

    def sample(rng_key, params, rows, row_mask, step_scale=1.0, noise=None):
        # the kernel takes the step and the noise as arguments: scalars, or one per feature
        # (a diagonal preconditioner, from a per-feature step_scale)
        chain_step, chain_noise = step * step_scale, noise_scale if noise is None else noise
        sampler = Sampler(checked.init, lambda key, state, p: kernel(key, state, p, chain_step,
                                                                     chain_noise))
        start_key, chain_key = jax.random.split(rng_key)
        starts = jittered_starts(start_key, rows, row_mask, num_chains, start_noise)
        states = jax.vmap(sampler.init)(starts)
        final, _ = run_chains(chain_key, sampler, states, params, num_steps)
        return final.position

    return sample
