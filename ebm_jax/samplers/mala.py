"""Metropolis-adjusted Langevin (MALA) as a pure ``init/step`` sampler.

The target is ``π(x) ∝ exp(-E(x) / T)``. One step proposes a Langevin move::

    x' = x - h Σ ∇E(x) + sqrt(2 h T) L ε,   ε ~ N(0, I),   Σ = L Lᵀ

so that ``q(x' | x) = N(x'; x - h Σ ∇E(x), 2 h T Σ)``, and accepts it with
probability ``min(1, exp(-(E(x') - E(x)) / T) q(x | x') / q(x' | x))``. The
preconditioner ``Σ`` (``inverse_mass``) is the identity by default, or a diagonal or a
dense matrix set to (an estimate of) the target's covariance (see
:mod:`~ebm_jax.samplers.mass_matrix`; :func:`~ebm_jax.samplers.window_adaptation`
estimates it).
This is the unadjusted Langevin step of :func:`~ebm_jax.samplers.langevin`
(temperature form) plus a Metropolis-Hastings correction, which removes its
discretisation bias: the chain leaves ``π`` exactly invariant at any step size.

The state caches the energy and its gradient, so one step costs one
energy-and-gradient evaluation (at the proposal). A proposal whose energy or
gradient is NaN/inf is rejected and counted in ``MALAInfo.nonfinite``.

Two levels, as in blackjax:

* :func:`mala_kernel` builds ``kernel(rng_key, state, params, step_size, *cond)``,
  with the step size an argument (possibly traced): what step-size adaptation
  (:mod:`ebm_jax.samplers.adaptation`) drives;
* :func:`mala` fixes the step size and returns a :class:`~ebm_jax.samplers.Sampler`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_bounds, check_positive_finite
from ebm_jax.energies import EnergyFn
from ebm_jax.samplers._gradients import (all_finite, grad_norm, init_cached, metropolis,
                                         value_and_grad)
from ebm_jax.samplers.base import Sampler
from ebm_jax.samplers.mass_matrix import check_inverse_mass, check_mass_size, mass_matrix


class MALAState(NamedTuple):
    """One chain: its position and the energy and gradient there.

    Attributes:
      position: one example, any shape ``[...]`` (floating point).
      energy: scalar ``E(position)`` for the params given to ``init``/``step``.
      grad: ``∇E(position)``, the shape of ``position``.
    """

    position: jax.Array
    energy: jax.Array
    grad: jax.Array


class MALAInfo(NamedTuple):
    """Diagnostics of one step.

    Attributes:
      energy: scalar energy at the position the step started from (as in
        :class:`~ebm_jax.samplers.LangevinInfo`; the new one is ``state.energy``).
      grad_norm: L2 norm of the energy gradient there.
      acceptance_rate: the Metropolis-Hastings acceptance probability
        ``min(1, ratio)`` of this step's proposal (0 for a non-finite proposal).
        Its mean over steps or chains is the usual acceptance rate.
      is_accepted: whether the proposal was accepted (bool).
      nonfinite: 1 if the proposal's energy, gradient or acceptance ratio was
        NaN/inf (the proposal is then rejected), else 0.
    """

    energy: jax.Array
    grad_norm: jax.Array
    acceptance_rate: jax.Array
    is_accepted: jax.Array
    nonfinite: jax.Array


# -- MALA -----------------------------------------------------------------------------

def _mala_log_ratio(x, energy, grad, x_new, energy_new, grad_new, step_size, temperature,
                    velocity):
    """``log [π(x') q(x | x')] - log [π(x) q(x' | x)]`` for ``π ∝ exp(-E/T)``.

    With ``log q(b | a) = -(b - a + h Σ∇E(a))ᵀ Σ⁻¹ (b - a + h Σ∇E(a)) / (4 h T) + const``,
    ``δ = x' - x``, ``g = ∇E(x)`` and ``g' = ∇E(x')``, the ``δᵀΣ⁻¹δ`` terms cancel
    analytically::

        log q(x | x') - log q(x' | x) = [δ·(g + g') / 2 + h (gᵀΣg - g'ᵀΣg') / 4] / T

    which needs ``Σ`` (``velocity(v) = Σ v``) but not its inverse, has no ``1/h`` (no
    cancellation of large terms at small steps) and is exactly 0 for a flat energy.
    """
    delta = x_new - x
    log_q_ratio = (0.5 * jnp.sum(delta * (grad + grad_new))
                   + 0.25 * step_size * (jnp.sum(grad * velocity(grad))
                                         - jnp.sum(grad_new * velocity(grad_new))))
    return (log_q_ratio - (energy_new - energy)) / temperature


def mala_kernel(energy_fn: EnergyFn, temperature: float = 1.0, *,
                clip_range: Optional[tuple[float, float]] = None,
                inverse_mass: Any = None) -> Callable:
    """The MALA transition with the step size as an argument.

    Args:
      energy_fn: pure per-example energy ``energy_fn(params, x, *cond) -> scalar``.
      temperature: ``T > 0``; the kernel targets ``exp(-E/T)``.
      clip_range: if given, ``(low, high)``: a proposal with any element outside the box
        is rejected, so the target is ``exp(-E/T)`` restricted to the box (positions are
        never clamped: that would break the Metropolis correction). Chains must start
        inside the box.
      inverse_mass: the preconditioner ``Σ``: ``None`` (identity), its diagonal ``[D]``
        or a dense symmetric positive definite ``[D, D]``, ``D`` the position's
        flattened size; it may be traced.

    Returns:
      ``kernel(rng_key, state, params, step_size, *cond) -> (MALAState, MALAInfo)`` for
      one chain; ``step_size`` (``h > 0``) may be a traced scalar. States come from
      ``mala(...).init`` (the step size plays no part in them).

    Example::

      >>> kernel = mala_kernel(lambda p, x: 0.5 * jnp.sum(x**2))
      >>> state = mala(lambda p, x: 0.5 * jnp.sum(x**2), 0.1).init(jnp.zeros(3), None)
      >>> state, info = kernel(jax.random.key(0), state, None, jnp.float32(0.3))
    """
    check_positive_finite("temperature", temperature)
    check_bounds("clip_range", clip_range, allow_none=True)
    inverse_mass = check_inverse_mass(inverse_mass)
    energy_and_grad = value_and_grad(energy_fn)

    def kernel(rng_key, state: MALAState, params, step_size, *cond):
        x, energy, grad = state
        mass = mass_matrix(inverse_mass, x)
        key_noise, key_accept = jax.random.split(rng_key)
        noise = mass.scale_noise(jax.random.normal(key_noise, x.shape, x.dtype))
        x_new = (x - step_size * mass.velocity(grad)
                 + jnp.sqrt(2.0 * step_size * temperature) * noise)
        energy_new, grad_new = energy_and_grad(params, x_new, *cond)
        log_ratio = _mala_log_ratio(x, energy, grad, x_new, energy_new, grad_new, step_size,
                                    temperature, mass.velocity)
        finite = all_finite(energy_new, grad_new)
        valid = finite
        if clip_range is not None:
            valid = valid & jnp.all((x_new >= clip_range[0]) & (x_new <= clip_range[1]))
        acceptance_rate, accept, _ = metropolis(key_accept, log_ratio, valid)
        new_state = MALAState(jnp.where(accept, x_new, x), jnp.where(accept, energy_new, energy),
                              jnp.where(accept, grad_new, grad))
        # A proposal outside clip_range is rejected but is not counted as non-finite.
        nonfinite = ~(finite & ~jnp.isnan(log_ratio))
        info = MALAInfo(energy, grad_norm(grad), acceptance_rate, accept,
                        nonfinite.astype(jnp.int32))
        return new_state, info

    return kernel


def mala(energy_fn: EnergyFn, step_size: float, *, temperature: float = 1.0,
         clip_range: Optional[tuple[float, float]] = None, inverse_mass: Any = None) -> Sampler:
    """Build a MALA sampler targeting ``exp(-E/T)`` for the per-example ``energy_fn``.

    Args:
      energy_fn: pure per-example energy ``energy_fn(params, x, *cond) -> scalar``.
      step_size: ``h > 0`` in ``x' = x - h Σ ∇E(x) + sqrt(2 h T) L ε``. A Python/NumPy number
        is checked here; a JAX array (e.g. from :func:`~ebm_jax.samplers.adapt_step_size`)
        is used as is.
      temperature: ``T > 0``; the stationary law is ``exp(-E/T)`` (a Gaussian's
        covariance scales by ``T``).
      clip_range: if given, ``(low, high)``: proposals outside the box are rejected (the
        target restricted to the box; see :func:`mala_kernel`).
      inverse_mass: the preconditioner ``Σ``: ``None`` (identity), a diagonal ``[D]`` or a
        dense ``[D, D]`` (checked in ``init``);
        :func:`~ebm_jax.samplers.window_adaptation` estimates either.

    Returns:
      A :class:`~ebm_jax.samplers.Sampler`: ``init(position, params, *cond) -> MALAState``
      for one chain (computes and caches the energy and gradient; re-initialise after the
      params change) and ``step(rng_key, state, params, *cond) -> (MALAState, MALAInfo)``.

    Example::

      >>> from ebm_jax.samplers import init_chains, run_chains
      >>> sampler = mala(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), step_size=0.5)
      >>> states = init_chains(sampler, jnp.zeros((64, 2)), jnp.ones(2))
      >>> states, info = run_chains(jax.random.key(0), sampler, states, jnp.ones(2), 100)
      >>> info.acceptance_rate.shape
      (64,)
    """
    check_positive_finite("step_size", step_size)
    kernel = mala_kernel(energy_fn, temperature, clip_range=clip_range,
                         inverse_mass=inverse_mass)
    checked_mass = check_inverse_mass(inverse_mass)

    def init(position, params, *cond) -> MALAState:
        check_mass_size(checked_mass, jnp.shape(position))
        return MALAState(*init_cached(energy_fn, position, params, *cond))

    def step(rng_key, state: MALAState, params, *cond):
        return kernel(rng_key, state, params, step_size, *cond)

    return Sampler(init, step, support=check_bounds("clip_range", clip_range, allow_none=True))
