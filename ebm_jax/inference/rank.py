"""Ranking candidate outputs by energy: the lower ``E(x, y)``, the more compatible ``y`` is
with ``x``.

:func:`rank` orders a stack of candidates ``[M, *y_shape]`` for one input (one vmapped
energy call, one sort); :func:`more_compatible` compares two.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax.inference._common import check_candidates, check_energy_takes, shape_of


class Ranking(NamedTuple):
    """What :func:`rank` returns for one input.

    Attributes:
      order: ``int32 [M]``, candidate indices from the most compatible (lowest energy) to
        the least; ties keep the candidates' order, NaN energies come last.
      energies: ``[M]``, each candidate's energy in the order given (``energies[order]`` is
        ascending).
    """

    order: jax.Array
    energies: jax.Array


def rank(energy_fn: Callable, params: Any, x: Any, candidates: jax.Array,
         *cond: Any) -> Ranking:
    """Order ``candidates [M, *y_shape]`` for ``x`` by ``energy_fn(params, x, y, *cond)``,
    ascending.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, y, *cond) -> scalar``.
      params: the energy's parameters.
      x: one input (``jax.vmap`` for a batch of inputs, each with its candidates).
      candidates: ``[M, *y_shape]``, ``M >= 1``: the outputs to rank.
      *cond: further conditions of the energy.

    Returns:
      :class:`Ranking` ``(order, energies)``.

    Raises:
      ValueError: ``candidates`` without a leading candidate axis, empty, or of a trailing
        shape the energy cannot take for ``x`` (``jax.eval_shape``, before any compute; an
        energy that broadcasts a wrong shape to a scalar cannot be told apart).

    Example::

      >>> energy = lambda p, x, y: 0.5 * jnp.sum((y - x) ** 2)
      >>> ranking = rank(energy, None, jnp.zeros(2), jnp.array([[3.0, 0.0], [0.0, 1.0],
      ...                                                       [1.0, 1.0]]))
      >>> ranking.order.tolist(), ranking.energies.tolist()
      ([1, 2, 0], [4.5, 0.5, 1.0])
    """
    check_candidates("candidates", energy_fn, params, x, candidates, *cond)
    energies = jax.vmap(lambda y: energy_fn(params, x, y, *cond))(jnp.asarray(candidates))
    return Ranking(jnp.argsort(energies, stable=True).astype(jnp.int32), energies)


def more_compatible(energy_fn: Callable, params: Any, x: Any, y1: jax.Array, y2: jax.Array,
                    *cond: Any) -> jax.Array:
    """Whether ``y1`` is more compatible with ``x`` than ``y2``: ``E(x, y1) < E(x, y2)``.

    Returns a JAX boolean scalar (``bool(...)`` for a Python bool; under ``jit`` or
    ``vmap`` it stays an array). Equal energies give False.

    Raises:
      ValueError: ``y1`` and ``y2`` of different shapes, or of a shape the energy cannot take
        for ``x`` (before any compute).

    Example::

      >>> energy = lambda p, x, y: 0.5 * jnp.sum((y - x) ** 2)
      >>> bool(more_compatible(energy, None, jnp.zeros(2), jnp.ones(2), jnp.full(2, 2.0)))
      True
    """
    if shape_of(y1) != shape_of(y2):
        raise ValueError(f"y1 has shape {shape_of(y1)} and y2 has shape {shape_of(y2)}: "
                         "expected two outputs of one shape")
    check_energy_takes("y1", energy_fn, params, x, y1, *cond)
    return energy_fn(params, x, y1, *cond) < energy_fn(params, x, y2, *cond)


__all__ = ["Ranking", "more_compatible", "rank"]
