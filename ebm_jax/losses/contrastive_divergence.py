"""Maximum likelihood by (persistent) contrastive divergence.

The gradient of the negative log-likelihood of an EBM is
``E_data[∇E(x)] - E_model[∇E(x)]``; the model expectation is estimated with
short-run Langevin chains started from a replay buffer (IGEBM, JEM). The loss
whose gradient this is::

    L = mean E(x_data) - mean E(x_sample) + α (mean E(x_data)² + mean E(x_sample)²)

with samples held constant (``stop_gradient``) and the energy L2
regulariser ``α`` of IGEBM keeping energies near zero.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.losses.base import LossTransform, require_keys
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.samplers.base import Sampler, run_chains


class CDState(NamedTuple):
    """State of :func:`contrastive_divergence`: the replay buffer of persistent chains."""

    buffer: rb.ReplayBuffer


def contrastive_divergence(energy_fn: EnergyFn, sampler: Sampler, *, num_steps: int = 20,
                           buffer_capacity: int = 10_000, reinit_prob: float = 0.05,
                           init_fn: Optional[rb.InitFn] = None, energy_l2: float = 0.0,
                           num_classes: Optional[int] = None, unroll: int = 1) -> LossTransform:
    """Persistent contrastive divergence with a replay buffer.

    Args:
      energy_fn: per-example ``energy_fn(params, x)``, or ``energy_fn(params, x, y)``
        when ``num_classes`` is given (class-conditional chains, per-class buffer slots).
      sampler: a sampler built on the same energy (e.g. :func:`~ebm_jax.samplers.langevin`).
      num_steps: sampler steps per training step (> 0).
      buffer_capacity: replay buffer size.
      reinit_prob: probability that a chain restarts from ``init_fn``.
      init_fn: initial distribution ``init(rng_key, shape)``, default ``U(-1, 1)``.
      energy_l2: weight ``α`` of the energy L2 regulariser (>= 0).
      num_classes: split the buffer into per-class slots and sample ``E(x, y)``
        for uniformly drawn ``y``; data energies use ``batch["y"]``.
      unroll: scan unroll factor of the chain loop.

    Info: ``energy_data``, ``energy_sample`` (means over the batch), ``sample_grad_norm``
    (mean energy-gradient norm over all chain steps), ``nonfinite_steps`` (number of
    chain steps, over all chains, whose energy or gradient was not finite). The
    sampler's Info must have ``grad_norm`` and ``nonfinite`` fields.

    Example::

      >>> sampler = langevin(energy_fn, step_size=1.0, noise_scale=0.01)
      >>> cd = contrastive_divergence(energy_fn, sampler, num_steps=20, energy_l2=0.1)
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r}: expected a positive int")
    if energy_l2 < 0:
        raise ValueError(f"energy_l2={energy_l2!r}: expected a number >= 0")
    if not 0.0 <= reinit_prob <= 1.0:
        raise ValueError(f"reinit_prob={reinit_prob!r}: expected a probability in [0, 1]")
    conditional = num_classes is not None
    batched = batch_energy(energy_fn)

    def init(rng_key, params, example_batch):
        require_keys(example_batch, ("x", "y") if conditional else ("x",), "contrastive_divergence")
        shape = example_batch["x"].shape[1:]
        return CDState(rb.init_buffer(rng_key, shape, capacity=buffer_capacity, init_fn=init_fn,
                                      num_classes=num_classes))

    def loss(params, state, batch, rng_key):
        x = batch["x"]
        batch_size = x.shape[0]
        k_label, k_buffer, k_chain = jax.random.split(rng_key, 3)
        labels = (jax.random.randint(k_label, (batch_size,), 0, num_classes) if conditional else None)
        x0, labels, indices = rb.sample(k_buffer, state.buffer, batch_size, reinit_prob=reinit_prob,
                                        init_fn=init_fn, labels=labels, num_classes=num_classes)
        cond = (labels,) if conditional else ()
        frozen = jax.lax.stop_gradient(params)
        # trace=True keeps every step's scalar diagnostics ([chains, num_steps], a few KB), so a
        # non-finite step early in a chain is counted, not only the last one.
        chains, info = run_chains(k_chain, sampler, jax.vmap(sampler.init)(x0), frozen, num_steps,
                                  *cond, unroll=unroll, trace=True)
        samples = jax.lax.stop_gradient(chains.position)
        e_data = batched(params, x, *((batch["y"],) if conditional else ()))
        e_sample = batched(params, samples, *cond)
        value = jnp.mean(e_data) - jnp.mean(e_sample)
        if energy_l2:
            value = value + energy_l2 * (jnp.mean(e_data**2) + jnp.mean(e_sample**2))
        new_state = CDState(rb.push(state.buffer, samples, indices))
        info = {
            "energy_data": jnp.mean(e_data),
            "energy_sample": jnp.mean(e_sample),
            "sample_grad_norm": jnp.mean(info.grad_norm),
            "nonfinite_steps": jnp.sum(info.nonfinite),
        }
        return value, (new_state, info)

    return LossTransform(init, loss)
