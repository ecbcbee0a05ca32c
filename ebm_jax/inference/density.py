"""The conditional density ``p(y | x) = exp(-E(x, y)) / Z(x)``, normalised exactly over a
finite set of outputs.

Over ``M`` candidates ``y_1..y_M`` (a finite output space), ``p(y_i | x) =
softmax(-E(x, y))_i``. Over a grid of cells of volume ``v`` (a 1-D or 2-D continuous
output, :func:`make_grid`), the density at each cell centre is ``softmax(-E)_i / v``: the
Riemann sum ``sum_i p(y_i | x) v`` is 1, and ``log Z(x) ≈ logsumexp(-E) + log v``. Both
are exact up to float rounding (``logsumexp``), with no sampling.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_bounds, check_int, check_positive_finite
from ebm_jax.inference._common import check_candidates


class Grid(NamedTuple):
    """A regular grid of cells over a box of outputs, from :func:`make_grid`.

    Attributes:
      points: the cell centres, ``[M]`` for a scalar ``y`` or ``[M, d]`` for ``y`` of shape
        ``(d,)``, in row-major order over the axes (``M = prod(shape)``).
      cell_volume: the volume (length, area) of one cell, a Python float.
      shape: the number of cells along each axis; ``values.reshape(shape)`` lays a ``[M]``
        result out on the grid.
    """

    points: jax.Array
    cell_volume: float
    shape: tuple


class ConditionalDensity(NamedTuple):
    """What :func:`conditional_density` returns for one input (``[M]`` arrays in the
    candidates' or the grid's order).

    Attributes:
      probs: ``p(y_i | x)``, the probability of each candidate or cell; sums to 1.
      density: ``probs / cell_volume``, the density at each cell centre (``probs`` itself
        over a finite candidate set).
      log_normalizer: scalar ``log Z(x)``: ``logsumexp(-E)`` (+ ``log cell_volume`` on a
        grid, where it approximates ``log ∫ exp(-E(x, y)) dy``).
      energies: ``E(x, y_i)``.
    """

    probs: jax.Array
    density: jax.Array
    log_normalizer: jax.Array
    energies: jax.Array


def make_grid(low: Union[float, Sequence[float]], high: Union[float, Sequence[float]],
              num: Union[int, Sequence[int]]) -> Grid:
    """A grid of ``num`` equal cells per axis over the box ``[low, high]``, at their centres.

    Args:
      low, high: numbers (a scalar ``y``) or sequences of ``d`` numbers (``y`` of shape
        ``(d,)``; ``d = 1`` gives ``y`` of shape ``(1,)``), with ``low < high`` on each axis.
      num: cells per axis: a positive int (every axis) or ``d`` of them.

    Example::

      >>> grid = make_grid(0.0, 1.0, 4)
      >>> grid.points.tolist(), grid.cell_volume, grid.shape
      ([0.125, 0.375, 0.625, 0.875], 0.25, (4,))
      >>> grid = make_grid((0.0, -1.0), (1.0, 1.0), (2, 4))
      >>> grid.points.shape, grid.cell_volume, grid.shape
      ((8, 2), 0.25, (2, 4))
    """
    scalar = np.ndim(low) == 0 and np.ndim(high) == 0
    lows, highs = np.atleast_1d(low).tolist(), np.atleast_1d(high).tolist()
    if np.ndim(low) > 1 or np.ndim(high) > 1 or len(lows) != len(highs) or not lows:
        raise ValueError(f"low={low!r}, high={high!r}: expected two numbers or two sequences "
                         "of d numbers (the box's corners)")
    bounds = [check_bounds(f"(low, high)[{i}]", pair) for i, pair in enumerate(zip(lows, highs))]
    nums = [num] * len(bounds) if np.ndim(num) == 0 else list(num)
    if len(nums) != len(bounds):
        raise ValueError(f"num={num!r}: expected one positive int or {len(bounds)} of them "
                         "(cells per axis)")
    nums = [check_int("num", k, expected="a positive int (cells per axis)") for k in nums]
    axes = [lo + (np.arange(k) + 0.5) * (hi - lo) / k for (lo, hi), k in zip(bounds, nums)]
    cell_volume = float(np.prod([(hi - lo) / k for (lo, hi), k in zip(bounds, nums)]))
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    points = mesh[:, 0] if scalar else mesh
    return Grid(jnp.asarray(points, jnp.float32), cell_volume, tuple(nums))


def conditional_density(energy_fn: Callable, params: Any, x: Any,
                        grid_or_candidates: Union[Grid, jax.Array], *cond: Any,
                        cell_volume: Optional[float] = None) -> ConditionalDensity:
    """``p(y | x) ∝ exp(-energy_fn(params, x, y, *cond))``, normalised over a candidate set
    or a grid.

    Args:
      energy_fn: pure per-example ``energy_fn(params, x, y, *cond) -> scalar``.
      params: the energy's parameters.
      x: one input (``jax.vmap`` for a batch).
      grid_or_candidates: a :class:`Grid` (:func:`make_grid`; its cell volume is used), or
        the outputs ``[M, *y_shape]``: a finite candidate set, or the centres of cells of
        volume ``cell_volume``.
      *cond: further conditions of the energy.
      cell_volume: with an array of outputs, the volume of each one's cell (``> 0``): the
        result is then a density (``sum(density) * cell_volume == 1``). None: a finite set
        (``density`` equals ``probs``).

    Returns:
      :class:`ConditionalDensity` ``(probs, density, log_normalizer, energies)``, ``[M]``
      arrays (``.reshape(grid.shape)`` lays them out on a grid).

    Raises:
      ValueError: outputs without a leading axis, empty, or of a shape the energy cannot
        take for ``x``; a non-positive ``cell_volume``, or one given with a :class:`Grid`.

    Example: a Gaussian ``p(y | x) = N(x, 1)`` on a 1-D grid, and a three-way choice::

      >>> energy = lambda p, x, y: 0.5 * (y - x) ** 2
      >>> grid = make_grid(-8.0, 8.0, 1600)
      >>> out = jax.jit(lambda x: conditional_density(energy, None, x, grid))(1.0)
      >>> round(float(out.density.sum() * grid.cell_volume), 4)
      1.0
      >>> round(float(out.log_normalizer), 4), round(0.5 * float(np.log(2 * np.pi)), 4)
      (0.9189, 0.9189)
      >>> over_set = jax.jit(lambda ys: conditional_density(energy, None, 0.0, ys).probs)
      >>> probs = over_set(jnp.array([0.0, 1.0, 2.0]))
      >>> [round(float(p), 3) for p in probs]
      [0.574, 0.348, 0.078]
    """
    if isinstance(grid_or_candidates, Grid):
        if cell_volume is not None:
            raise ValueError(f"cell_volume={cell_volume!r} with a Grid: expected None (the "
                             f"grid's own cell_volume, {grid_or_candidates.cell_volume!r}, is "
                             "used)")
        ys, cell_volume = grid_or_candidates.points, grid_or_candidates.cell_volume
        name = "grid.points"
    else:
        ys, name = grid_or_candidates, "grid_or_candidates"
    if cell_volume is not None:
        check_positive_finite("cell_volume", cell_volume)
    check_candidates(name, energy_fn, params, x, ys, *cond)
    energies = jax.vmap(lambda y: energy_fn(params, x, y, *cond))(jnp.asarray(ys))
    log_z = jax.nn.logsumexp(-energies)
    probs = jnp.exp(-energies - log_z)
    if cell_volume is None:
        return ConditionalDensity(probs, probs, log_z, energies)
    return ConditionalDensity(probs, probs / cell_volume, log_z + jnp.log(cell_volume),
                              energies)


__all__ = ["ConditionalDensity", "Grid", "conditional_density", "make_grid"]
