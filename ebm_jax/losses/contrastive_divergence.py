"""Maximum likelihood by (persistent) contrastive divergence, with the literature's variants.

The gradient of the negative log-likelihood of an EBM is
``E_data[∇E(x)] - E_model[∇E(x)]``; the model expectation is estimated with
short-run Langevin chains started where a chain start says
(:mod:`~ebm_jax.samplers.chain_starts`): by default a replay buffer (IGEBM, JEM), or the
data (CD-k), or noise. The loss
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

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_choice, check_int, check_weight
from ebm_jax.energies import EnergyFn, batch_energy
from ebm_jax.losses.base import LossTransform, check_examples, check_labels, require_keys
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.samplers.base import Sampler, init_chains, run_chains
from ebm_jax.samplers.chain_starts import ChainStart, follow_support, replay_buffer_start

OBJECTIVES = ("ml", "softplus", "logsumexp")


class CDState(NamedTuple):
    """State of :func:`contrastive_divergence`: the chain start's state.

    Attributes:
      buffer: the :class:`~ebm_jax.samplers.ChainStart`'s state: the
        :class:`~ebm_jax.samplers.ReplayBuffer` of persistent chains for
        :func:`~ebm_jax.samplers.replay_buffer_start` (the default), ``()`` for the
        stateless data and noise starts. (The field keeps its name so that checkpoints
        written before chain starts existed restore.)
    """

    buffer: Any


def _check(num_steps, energy_l2, objective, temperature, kl_weight, entropy_weight, num_classes,
           chain_start):
    check_int("num_steps", num_steps)
    check_weight("energy_l2", energy_l2, 0.0)
    check_choice("objective", objective, list(OBJECTIVES))
    check_weight("temperature", temperature)
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected a positive number")
    check_weight("kl_weight", kl_weight, 0.0)
    check_weight("entropy_weight", entropy_weight, 0.0)
    if num_classes is not None:
        check_int("num_classes", num_classes, expected="a positive int or None")
    if chain_start is not None and not all(callable(getattr(chain_start, f, None))
                                           for f in ("init", "draw", "update")):
        raise ValueError(f"chain_start is a {type(chain_start).__name__}: expected None or a "
                         "ChainStart (init, draw, update), e.g. replay_buffer_start(...), "
                         "data_start() or noise_start()")


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


def contrastive_divergence(energy_fn: EnergyFn, sampler: Sampler, *,
                           chain_start: Optional[ChainStart] = None, num_steps: int = 20,
                           energy_l2: float = 0.0, num_classes: Optional[int] = None,
                           objective: str = "ml", temperature: float = 1.0,
                           kl_weight: float = 0.0, entropy_weight: float = 0.0,
                           unroll: int = 1) -> LossTransform:
    """(Persistent) contrastive divergence: short-run chains from a chain start.

    Args:
      energy_fn: per-example ``energy_fn(params, x)``, or ``energy_fn(params, x, y)``
        when ``num_classes`` is given (class-conditional chains).
      sampler: a sampler built on the same energy (e.g. :func:`~ebm_jax.samplers.langevin`).
      chain_start: where the chains start, a :class:`~ebm_jax.samplers.ChainStart`:
        :func:`~ebm_jax.samplers.replay_buffer_start` (persistent chains, restarts from
        noise or data, sharded blocks), :func:`~ebm_jax.samplers.data_start` (CD-k) or
        :func:`~ebm_jax.samplers.noise_start`. Default: a replay buffer of 10,000 with 5%
        noise restarts (with per-class slots when ``num_classes`` is given), i.e.
        ``replay_buffer_start(num_classes=num_classes)``. A start whose noise law was left
        to its default draws it from ``U(clip_range)`` of a sampler that has one (its
        ``support``), else ``U(-1, 1)``; pass ``init_fn`` to the start to choose.
      num_steps: sampler steps per training step (> 0).
      energy_l2: weight ``α`` of the energy L2 regulariser (>= 0).
      num_classes: sample ``E(x, y)`` for uniformly drawn ``y`` (passed to the chain start's
        ``draw`` as labels; a replay buffer must have the same ``num_classes``); data
        energies use ``batch["y"]``.
      objective: ``"ml"``, ``"softplus"`` or ``"logsumexp"`` (module docstring).
      temperature: ``τ`` of the objectives (> 0).
      kl_weight: weight of the KL term through the last sampler step (>= 0).
      entropy_weight: weight of the nearest-neighbour entropy bonus (>= 0), measured
        against replay-buffer samples (needs a replay-buffer chain start).
      unroll: scan unroll factor of the chain loop.

    State: :class:`CDState`, whose ``buffer`` is the chain start's state.

    Info: ``energy_data``, ``energy_sample`` (means over the batch), ``sample_grad_norm``
    (mean energy-gradient norm over all chain steps), ``nonfinite_steps`` (number of
    chain steps, over all chains, whose energy or gradient was not finite), and
    ``kl_term`` / ``entropy`` when those are on. The sampler's Info must have
    ``grad_norm`` and ``nonfinite`` fields.

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)
      >>> sampler = langevin(energy_fn, step_size=0.1, noise_scale=0.01)
      >>> cd = contrastive_divergence(energy_fn, sampler, num_steps=5, energy_l2=0.1,
      ...                             chain_start=replay_buffer_start(capacity=64,
      ...                                                             reinit_prob=0.05))
      >>> batch = {"x": jnp.zeros((8, 2))}
      >>> state = cd.init(jax.random.key(0), jnp.ones(2), batch)
      >>> loss_and_grad = jax.jit(jax.value_and_grad(cd.loss, has_aux=True))
      >>> (loss, (state, info)), grads = loss_and_grad(jnp.ones(2), state, batch, jax.random.key(1))
      >>> state.buffer.samples.shape, grads.shape, sorted(info)
      ((64, 2), (2,), ['energy_data', 'energy_sample', 'nonfinite_steps', 'sample_grad_norm'])
    """
    _check(num_steps, energy_l2, objective, temperature, kl_weight, entropy_weight, num_classes,
           chain_start)
    num_steps = int(num_steps)
    num_classes = None if num_classes is None else int(num_classes)
    if chain_start is None:
        chain_start = replay_buffer_start(num_classes=num_classes)
    chain_start = follow_support(chain_start, sampler)  # a default noise law: the sampler's box
    conditional = num_classes is not None
    differentiable_last_step = kl_weight > 0 or entropy_weight > 0
    if differentiable_last_step and num_steps < 2:
        raise ValueError(f"num_steps={num_steps} with kl_weight/entropy_weight: expected at least 2 "
                         "(the last step is the differentiable one)")
    batched = batch_energy(energy_fn)

    def init(rng_key, params, example_batch):
        shape = _check_batch(example_batch, num_classes).shape[1:]
        start_state = chain_start.init(rng_key, shape)
        if entropy_weight > 0 and not isinstance(start_state, rb.ReplayBuffer):
            raise ValueError(f"entropy_weight={entropy_weight!r} with a chain start whose state "
                             f"is a {type(start_state).__name__}: expected a replay-buffer chain "
                             "start (the entropy is measured against buffer samples)")
        return CDState(start_state)

    def loss(params, state, batch, rng_key):
        stored = state.buffer
        x = _check_batch(batch, num_classes, stored.samples.shape[1:]
                         if isinstance(stored, rb.ReplayBuffer) else None)
        batch_size = x.shape[0]
        k_label, k_buffer, k_chain, k_last, k_ref = jax.random.split(rng_key, 5)
        labels = (jax.random.randint(k_label, (batch_size,), 0, num_classes) if conditional else None)
        x0, labels, handle = chain_start.draw(k_buffer, stored, params, x, labels)
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
                ref_idx = jax.random.randint(k_ref, (batch_size,), 0, stored.samples.shape[0])
                entropy = nearest_neighbour_entropy(x_last, stored.samples[ref_idx])
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
        new_state = CDState(chain_start.update(stored, samples, handle))
        info_out.update({
            "energy_data": jnp.mean(e_data),
            "energy_sample": jnp.mean(e_sample),
            "sample_grad_norm": jnp.mean(info.grad_norm),
            "nonfinite_steps": jnp.sum(info.nonfinite),
        })
        return value, (new_state, info_out)

    return LossTransform(init, loss)
