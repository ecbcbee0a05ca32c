"""Exact divergences for 2-D energies by quadrature on a grid."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def grid_points(limit: float = 4.5, size: int = 400) -> tuple[jax.Array, float]:
    """Cell centres of a ``size x size`` grid over ``[-limit, limit]^2`` and the cell area.

    Returns:
      ``(points [size*size, 2], cell_area)``.
    """
    edges = np.linspace(-limit, limit, size + 1)
    centres = 0.5 * (edges[1:] + edges[:-1])
    xx, yy = np.meshgrid(centres, centres, indexing="xy")
    points = np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)
    return jnp.asarray(points), float((2 * limit / size) ** 2)


def log_z_by_quadrature(model_energy: Callable[[jax.Array], jax.Array], *, limit: float = 4.5,
                        size: int = 400) -> jax.Array:
    """``log ∫ exp(-E(x)) dx`` over the box ``[-limit, limit]^2`` by the midpoint rule.

    The normaliser that NCE learns and MECO tracks, for a 2-D energy whose mass lies in the
    box (the toys' grid).

    Example::

      >>> energy = lambda x: 0.5 * jnp.sum(x ** 2)            # Z = 2π
      >>> round(float(log_z_by_quadrature(energy)), 4), round(float(jnp.log(2 * jnp.pi)), 4)
      (1.8379, 1.8379)
    """
    points, area = grid_points(limit, size)
    return jax.jit(lambda p: jax.nn.logsumexp(-jax.vmap(model_energy)(p)))(points) + \
        jnp.log(area)


def kl_by_quadrature(true_log_prob: Callable[[jax.Array], jax.Array],
                     model_energy: Callable[[jax.Array], jax.Array], *, limit: float = 4.5,
                     size: int = 400) -> jax.Array:
    """``KL(p_true || p_model)`` in nats, with both densities normalised on the grid.

    The model's normaliser is computed by the same quadrature, so any energy
    works; the true density is renormalised on the grid too, so mass outside
    the box is ignored for both (the box is chosen to hold it).

    Args:
      true_log_prob: ``[2] -> scalar`` log-density (``-inf`` where it is zero).
      model_energy: ``[2] -> scalar`` energy of the model.
      limit, size: the grid ``[-limit, limit]^2`` with ``size^2`` cells.
    """
    points, area = grid_points(limit, size)

    @jax.jit  # one program instead of one compile per operation
    def kl(points):
        log_p = jax.vmap(true_log_prob)(points)
        log_q = -jax.vmap(model_energy)(points)
        log_p = log_p - jax.nn.logsumexp(log_p) - jnp.log(area)
        log_q = log_q - jax.nn.logsumexp(log_q) - jnp.log(area)
        p = jnp.exp(log_p)
        return jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0)) * area

    return kl(points)
