"""Maximum likelihood by (persistent) contrastive divergence, with the literature's variants.

The gradient of the negative log-likelihood of an EBM is
``E_data[∇E(x)] - E_model[∇E(x)]``; the model expectation is estimated with
short-run Langevin chains started from a replay buffer (IGEBM, JEM). The loss
whose gradient this is (``objective="ml"``)::

    L = mean E(x_data) - mean E(x_sample) + α (mean E(x_data)² + mean E(x_sample)²)

with samples held constant (``stop_gradient``) and the energy L2 regulariser
``α`` of IGEBM keeping energies near zero. Variants:

- ``objective="softplus"`` (IGEBM): ``mean softplus(τ (E(x_data) - E(x_sample)))``, a
  bounded version that saturates once data sit below samples.
- ``objective="logsumexp"`` (IGEBM): the negative term is an importance-weighted
  average, weights ``∝ exp(-τ E(x_sample))`` over the batch (self-normalised,
  held constant), which emphasises the samples the model likes most.
- ``kl_weight`` (Du et al. 2021, improved CD): the sampler's last step is
  differentiated with respect to the parameters and ``E_θ̄(x_K(θ))`` (energy
  with frozen parameters) is added, the term of the CD gradient that plain CD drops.
- ``entropy_weight`` (Du et al. 2021): a nearest-neighbour entropy estimate of
  the final samples against replay-buffer samples is maximised through the same
  differentiable last step, which keeps samples diverse.
"""
from __future__ import annotations

import numbers
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.losses.base import (LossTransform, check_examples, check_labels, check_weight,
                                 require_keys)
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.samplers.base import Sampler, init_chains, run_chains

OBJECTIVES = ("ml", "softplus", "logsumexp")


class CDState(NamedTuple):
    """State of :func:`contrastive_divergence`: the replay buffer of persistent chains."""

    buffer: rb.ReplayBuffer


def _is_positive_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def _check(num_steps, energy_l2, reinit_prob, objective, temperature, kl_weight, entropy_weight,
           num_classes, buffer_capacity):
    if not _is_positive_int(num_steps):
        raise ValueError(f"num_steps={num_steps!r}: expected a positive int")
    if not _is_positive_int(buffer_capacity):
        raise ValueError(f"buffer_capacity={buffer_capacity!r}: expected a positive int (the "
                         "replay buffer's capacity)")
    check_weight("energy_l2", energy_l2, 0.0)
    check_weight("reinit_prob", reinit_prob)
    if not 0.0 <= reinit_prob <= 1.0:
        raise ValueError(f"reinit_prob={reinit_prob!r}: expected a probability in [0, 1]")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}: expected one of {list(OBJECTIVES)}")
    check_weight("temperature", temperature)
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected a positive number")
    check_weight("kl_weight", kl_weight, 0.0)
    check_weight("entropy_weight", entropy_weight, 0.0)
    if num_classes is not None and not _is_positive_int(num_classes):
        raise ValueError(f"num_classes={num_classes!r}: expected a positive int or None")


def _check_batch(batch, num_classes, sample_shape=None) -> jax.Array:
    """Static checks of a batch (trace time); labels' values only where concrete."""
    require_keys(batch, ("x", "y") if num_classes is not None else ("x",),
                 "contrastive_divergence")
    x = check_examples(batch, "contrastive_divergence")
    if sample_shape is not None and tuple(x.shape[1:]) != tuple(sample_shape):
        raise ValueError(f"contrastive_divergence: batch['x'] has shape {tuple(x.shape)}: "
                         f"expected [B, {', '.join(map(str, sample_shape))}], the example shape "
                         "of the replay buffer made by init")
    if num_classes is not None:
        check_labels(batch, "contrastive_divergence", x.shape[0], num_classes)
    return x


def maximum_likelihood_term(e_data: jax.Array, e_sample: jax.Array, objective: str = "ml",
                            temperature: float = 1.0) -> jax.Array:
    """The data-vs-sample term of CD for energies ``e_data [B]`` and ``e_sample [B]``.

    See the module docstring for the three objectives; every one has the
    gradient ``τ (mean ∇E(x_data) - Σ w_i ∇E(x_sample_i))`` with ``w`` uniform
    (``ml``), sigmoid-weighted per pair (``softplus``) or softmax-weighted (``logsumexp``).
    """
    if objective == "ml":
        return temperature * (jnp.mean(e_data) - jnp.mean(e_sample))
    if objective == "softplus":
        return jnp.mean(jax.nn.softplus(temperature * (e_data - e_sample)))
    weights = jax.lax.stop_gradient(jax.nn.softmax(-temperature * e_sample))
    return temperature * (jnp.mean(e_data) - jnp.sum(weights * e_sample))


def nearest_neighbour_entropy(samples: jax.Array, reference: jax.Array) -> jax.Array:
    """Entropy estimate up to constants: mean log distance from each sample to its nearest reference.

    ``samples [B, ...]`` (differentiable), ``reference [M, ...]`` (held constant).
    """
    flat = samples.reshape(samples.shape[0], -1)
    ref = jax.lax.stop_gradient(reference.reshape(reference.shape[0], -1))
    sq = jnp.sum(flat**2, 1)[:, None] + jnp.sum(ref**2, 1)[None, :] - 2.0 * flat @ ref.T
    return jnp.mean(0.5 * jnp.log(jnp.maximum(jnp.min(sq, axis=1), 1e-12)))


def contrastive_divergence(energy_fn: EnergyFn, sampler: Sampler, *, num_steps: int = 20,
                           buffer_capacity: int = 10_000, reinit_prob: float = 0.05,
                           init_fn: Optional[rb.InitFn] = None, energy_l2: float = 0.0,
                           num_classes: Optional[int] = None, objective: str = "ml",
                           temperature: float = 1.0, kl_weight: float = 0.0,
                           entropy_weight: float = 0.0, reinit_from_data: bool = False,
                           unroll: int = 1, buffer_shards: int = 1) -> LossTransform:
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
      objective: ``"ml"``, ``"softplus"`` or ``"logsumexp"`` (module docstring).
      temperature: ``τ`` of the objectives (> 0).
      kl_weight: weight of the KL term through the last sampler step (>= 0).
      entropy_weight: weight of the nearest-neighbour entropy bonus (>= 0).
      reinit_from_data: restart chains from the batch's data (Hinton's CD-k start)
        instead of ``init_fn``; on multi-modal toys this keeps every mode
        populated where uniform restarts let mass collapse onto one.
      unroll: scan unroll factor of the chain loop.
      buffer_shards: split the buffer and the batch into this many blocks, chain
        slice ``b`` drawing from block ``b`` only (see
        :mod:`~ebm_jax.samplers.replay_buffer`): a multiple of the device count
        keeps buffer sampling on each device; results depend on this number,
        not on the devices.

    Info: ``energy_data``, ``energy_sample`` (means over the batch), ``sample_grad_norm``
    (mean energy-gradient norm over all chain steps), ``nonfinite_steps`` (number of
    chain steps, over all chains, whose energy or gradient was not finite), and
    ``kl_term`` / ``entropy`` when those are on. The sampler's Info must have
    ``grad_norm`` and ``nonfinite`` fields.

    Example::

      >>> sampler = langevin(energy_fn, step_size=1.0, noise_scale=0.01)
      >>> cd = contrastive_divergence(energy_fn, sampler, num_steps=20, energy_l2=0.1)
    """
    _check(num_steps, energy_l2, reinit_prob, objective, temperature, kl_weight, entropy_weight,
           num_classes, buffer_capacity)
    num_steps, buffer_capacity = int(num_steps), int(buffer_capacity)
    num_classes = None if num_classes is None else int(num_classes)
    conditional = num_classes is not None
    differentiable_last_step = kl_weight > 0 or entropy_weight > 0
    if differentiable_last_step and num_steps < 2:
        raise ValueError(f"num_steps={num_steps} with kl_weight/entropy_weight: expected at least 2 "
                         "(the last step is the differentiable one)")
    batched = batch_energy(energy_fn)

    def init(rng_key, params, example_batch):
        shape = _check_batch(example_batch, num_classes).shape[1:]
        return CDState(rb.init_buffer(rng_key, shape, capacity=buffer_capacity, init_fn=init_fn,
                                      num_classes=num_classes, num_shards=buffer_shards))

    def loss(params, state, batch, rng_key):
        x = _check_batch(batch, num_classes, state.buffer.samples.shape[1:])
        batch_size = x.shape[0]
        k_label, k_buffer, k_chain, k_last, k_ref = jax.random.split(rng_key, 5)
        labels = (jax.random.randint(k_label, (batch_size,), 0, num_classes) if conditional else None)
        restart_fn = (lambda key, shape: x[jax.random.permutation(key, batch_size)]) \
            if reinit_from_data else init_fn
        x0, labels, indices = rb.sample(k_buffer, state.buffer, batch_size, reinit_prob=reinit_prob,
                                        init_fn=restart_fn, labels=labels, num_classes=num_classes,
                                        num_shards=buffer_shards)
        cond = (labels,) if conditional else ()
        frozen = jax.lax.stop_gradient(params)
        chain_steps = num_steps - 1 if differentiable_last_step else num_steps
        # trace=True keeps every step's scalar diagnostics ([chains, num_steps], a few KB), so a
        # non-finite step early in a chain is counted, not only the last one.
        states = init_chains(sampler, x0, frozen, *cond)
        chains, info = run_chains(k_chain, sampler, states, frozen, chain_steps, *cond,
                                  unroll=unroll, trace=True)
        info_out = {}
        extra = jnp.zeros(())
        if differentiable_last_step:
            # One more step with live params: x_K depends on θ through ∇ₓE(θ, x_{K-1}).
            keys = jax.random.split(k_last, batch_size)
            last, _ = jax.vmap(sampler.step, in_axes=(0, 0, None) + (0,) * len(cond))(
                keys, jax.lax.stop_gradient(chains), params, *cond)
            x_last = last.position
            if kl_weight > 0:
                kl_term = jnp.mean(batched(frozen, x_last, *cond))
                extra = extra + kl_weight * kl_term
                info_out["kl_term"] = kl_term
            if entropy_weight > 0:
                ref_idx = jax.random.randint(k_ref, (batch_size,), 0, state.buffer.samples.shape[0])
                entropy = nearest_neighbour_entropy(x_last, state.buffer.samples[ref_idx])
                extra = extra - entropy_weight * entropy
                info_out["entropy"] = entropy
            samples = jax.lax.stop_gradient(x_last)
        else:
            samples = jax.lax.stop_gradient(chains.position)
        e_data = batched(params, x, *((batch["y"],) if conditional else ()))
        e_sample = batched(params, samples, *cond)
        value = maximum_likelihood_term(e_data, e_sample, objective, temperature) + extra
        if energy_l2:
            value = value + energy_l2 * (jnp.mean(e_data**2) + jnp.mean(e_sample**2))
        new_state = CDState(rb.push(state.buffer, samples, indices, num_shards=buffer_shards))
        info_out.update({
            "energy_data": jnp.mean(e_data),
            "energy_sample": jnp.mean(e_sample),
            "sample_grad_norm": jnp.mean(info.grad_norm),
            "nonfinite_steps": jnp.sum(info.nonfinite),
        })
        return value, (new_state, info_out)

    return LossTransform(init, loss)
