"""Energy protocol and the helpers that turn classifiers into energies.

An energy function is pure and per-example::

    energy_fn(params, x, *cond) -> scalar        # low energy = likely, E = -log p~(x)

Batching is `jax.vmap`; :func:`batch_energy` does it for you.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

EnergyFn = Callable[..., jax.Array]
LogitsFn = Callable[[Any, jax.Array], jax.Array]


def batch_energy(energy_fn: EnergyFn) -> EnergyFn:
    """Vectorise a per-example energy over a leading batch axis.

    Params are shared; ``x`` and every conditioning argument are batched.

    Args:
      energy_fn: ``energy_fn(params, x, *cond) -> scalar``.

    Returns:
      ``batched(params, xs, *conds) -> [B]``.

    Example::

      >>> e = batch_energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2))
      >>> e(0.0, jnp.ones((4, 2))).shape
      (4,)
    """

    def batched(params, xs, *conds):
        in_axes = (None, 0) + (0,) * len(conds)
        return jax.vmap(energy_fn, in_axes=in_axes)(params, xs, *conds)

    return batched


def energy_from_logits(logits_fn: LogitsFn) -> EnergyFn:
    """Read a classifier as an unconditional EBM: ``E(x) = -logsumexp_y f(x)[y]``.

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]`` for one example ``x``.

    Returns:
      ``energy_fn(params, x) -> scalar``.

    Example::

      >>> energy = energy_from_logits(lambda p, x: x)   # the logits are x itself
      >>> float(energy(None, jnp.zeros(3)))             # -log 3
      -1.0986...
    """

    def energy_fn(params, x):
        return -jax.nn.logsumexp(logits_fn(params, x), axis=-1)

    return energy_fn


def joint_energy_from_logits(logits_fn: LogitsFn) -> EnergyFn:
    """Read a classifier as a joint EBM over (x, y): ``E(x, y) = -f(x)[y]``.

    Args:
      logits_fn: ``logits_fn(params, x) -> [K]``.

    Returns:
      ``energy_fn(params, x, y) -> scalar`` with ``y`` an integer class index.
    """

    def energy_fn(params, x, y):
        return -jnp.take(logits_fn(params, x), y, axis=-1)

    return energy_fn


def with_temperature(energy_fn: EnergyFn, temperature: float) -> EnergyFn:
    """Scale an energy by ``1 / temperature``: p_T(x) ∝ exp(-E(x) / T).

    ``temperature`` may be a traced value (an annealing schedule under jit);
    a Python number is checked to be positive.
    """
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature={temperature!r}: expected a positive number")

    def tempered(params, x, *cond):
        return energy_fn(params, x, *cond) / temperature

    return tempered
