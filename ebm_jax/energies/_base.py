"""Energy protocol and the helpers that turn classifiers into energies.

An energy function is pure and per-example::

    energy_fn(params, x, *cond) -> scalar        # low energy = likely, E = -log p~(x)

Batching is `jax.vmap`; :func:`batch_energy` does it for you.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_positive_finite

EnergyFn = Callable[..., jax.Array]
LogitsFn = Callable[[Any, jax.Array], jax.Array]


def _check_batched(xs: Any, conds: tuple) -> None:
    """``xs`` must be ``[B, ...]`` and every ``cond`` leaf ``[B, ...]`` (static shapes)."""
    shape = jnp.shape(xs)
    if len(shape) == 0:
        raise ValueError("xs has shape (): expected a batch [B, ...] of examples (for one "
                         "example call energy_fn itself)")
    for i, cond in enumerate(conds):
        for leaf in jax.tree.leaves(cond):
            if len(jnp.shape(leaf)) == 0 or jnp.shape(leaf)[0] != shape[0]:
                raise ValueError(f"conds[{i}] has shape {tuple(jnp.shape(leaf))}: expected a "
                                 f"leading axis of {shape[0]}, one entry per example of xs "
                                 f"{tuple(shape)}")


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
        _check_batched(xs, conds)
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
      ``energy_fn(params, x, y) -> scalar`` with ``y`` an integer class index (a scalar:
      batch with :func:`batch_energy`). A concrete ``y`` outside ``[0, K)`` raises a
      ``ValueError``; a traced one (under ``jit``/``vmap``) gives a NaN energy, which
      samplers count in their ``nonfinite`` diagnostics, rather than a wrong class's energy.
    """

    def energy_fn(params, x, y):
        y = jnp.asarray(y)
        if y.shape != () or not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"y has shape {y.shape} and dtype {y.dtype}: expected one integer "
                             "class index (a scalar; batch examples with batch_energy)")
        logits = logits_fn(params, x)
        num_classes = jnp.shape(logits)[-1]
        if not isinstance(y, jax.core.Tracer) and not 0 <= int(y) < num_classes:
            raise ValueError(f"y={int(y)}: expected a class index in [0, {num_classes})")
        in_range = (y >= 0) & (y < num_classes)
        value = -jnp.take(logits, jnp.clip(y, 0, num_classes - 1), axis=-1)
        return jnp.where(in_range, value, jnp.nan)

    return energy_fn


def with_temperature(energy_fn: EnergyFn, temperature: float) -> EnergyFn:
    """Scale an energy by ``1 / temperature``: p_T(x) ∝ exp(-E(x) / T).

    ``temperature`` may be a traced value (an annealing schedule under jit); a
    concrete one (Python, NumPy or JAX scalar) is checked to be a positive finite number.
    """
    check_positive_finite("temperature", temperature, "a positive number (finite)")

    def tempered(params, x, *cond):
        return energy_fn(params, x, *cond) / temperature

    return tempered
