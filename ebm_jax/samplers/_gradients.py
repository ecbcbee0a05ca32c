"""Private helpers shared by the gradient-based kernels (Langevin, MALA, HMC, descent).

Nothing here is public: the kernels in :mod:`~ebm_jax.samplers.langevin`,
:mod:`~ebm_jax.samplers.mala`, :mod:`~ebm_jax.samplers.hmc` and
:mod:`~ebm_jax.samplers.descent` import these, so that none of them imports another's
private helpers.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_scalar_fn
from ebm_jax.energies import EnergyFn

ONE_CHAIN = "init takes one chain's position: use init_chains for a batch"


def value_and_grad(energy_fn: EnergyFn) -> Callable:
    """``(params, x, *cond) -> (energy, grad)``, the energy with a strong (non-weak) dtype.

    A constant energy (``lambda p, x: 0.0``) returns a weakly-typed scalar; a fixed
    dtype keeps ``lax.scan`` carries stable.
    """
    vg = jax.value_and_grad(energy_fn, argnums=1)

    def fn(params, x, *cond):
        energy, grad = vg(params, x, *cond)
        return jnp.asarray(energy).astype(jnp.result_type(energy)), grad

    return fn


def scalar_value_and_grad(energy_fn: EnergyFn) -> Callable:
    """``(params, x, *cond) -> (energy, grad)`` that raises, at trace time, unless the energy
    of one chain's position is a scalar (a batch passed where one position was expected)."""

    def scalar_energy(params, x, *cond):
        energy = energy_fn(params, x, *cond)
        if jnp.shape(energy) != ():
            raise ValueError(
                f"position has shape {tuple(x.shape)}: energy_fn returned shape "
                f"{jnp.shape(energy)} for it; expected a scalar (one chain's position per "
                "state: use init_chains/run_chains for a batch)")
        return energy

    return jax.value_and_grad(scalar_energy, argnums=1)


def check_floating(position) -> None:
    """The kernels differentiate the energy with respect to the position (static check)."""
    if not jnp.issubdtype(jnp.result_type(position), jnp.floating):
        raise ValueError(f"position has dtype {jnp.result_type(position)}: expected a "
                         "floating-point array (the sampler differentiates the energy with "
                         "respect to it)")


def check_position(energy_fn: EnergyFn, position: jax.Array, params: Any, *cond: Any) -> None:
    """Raise unless ``position`` is floating point and ``energy_fn`` maps it to a scalar.

    Uses ``jax.eval_shape`` (:func:`~ebm_jax._checks.check_scalar_fn`): a trace, no compute.
    """
    check_floating(position)
    check_scalar_fn("energy_fn", energy_fn, params, position, *cond, hint=ONE_CHAIN)


def init_cached(energy_fn: EnergyFn, position: Any, params: Any, *cond: Any):
    """``(position, energy, grad)`` for one chain, after checking the energy is a scalar."""
    position = jnp.asarray(position)
    check_position(energy_fn, position, params, *cond)
    energy, grad = value_and_grad(energy_fn)(params, position, *cond)
    return position, energy, grad


def grad_norm(grad: jax.Array) -> jax.Array:
    """The L2 norm of a gradient (all elements)."""
    return jnp.sqrt(jnp.sum(jnp.square(grad)))


def all_finite(energy: jax.Array, grad: jax.Array) -> jax.Array:
    """Whether an energy and every element of its gradient are finite (bool scalar)."""
    return jnp.isfinite(energy) & jnp.all(jnp.isfinite(grad))


def metropolis(rng_key: jax.Array, log_ratio: jax.Array, valid: jax.Array):
    """Accept/reject from a log acceptance ratio; an invalid proposal is rejected.

    Returns ``(acceptance_rate, is_accepted, ok)``: ``min(1, exp(log_ratio))`` (0 where
    not ``ok``), the accept decision, and ``ok = valid & log_ratio is not NaN``.
    """
    ok = valid & ~jnp.isnan(log_ratio)
    log_ratio = jnp.where(ok, log_ratio, -jnp.inf)
    acceptance_rate = jnp.exp(jnp.minimum(log_ratio, 0.0))
    # u in [0, 1): probability 1 always accepts, probability 0 never does.
    u = jax.random.uniform(rng_key, dtype=acceptance_rate.dtype)
    return acceptance_rate, u < acceptance_rate, ok
