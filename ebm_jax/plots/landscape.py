"""Energy landscapes of 2-D models beside the true density and the samples."""
from __future__ import annotations

from typing import Callable, Optional

import jax
import numpy as np

from ebm_jax.metrics.likelihood import grid_points
from ebm_jax.plots.grids import _figure


def _normalise(log_p: np.ndarray, area: float, size: int) -> np.ndarray:
    log_p = np.asarray(log_p, np.float64)
    log_p = log_p - log_p[np.isfinite(log_p)].max()
    p = np.where(np.isfinite(log_p), np.exp(log_p), 0.0)
    return (p / (p.sum() * area)).reshape(size, size)


def density_on_grid(log_density: Callable, limit: float = 4.5, size: int = 200) -> np.ndarray:
    """``[size, size]`` density ``exp(log_density)`` normalised on the grid (rows are y)."""
    points, area = grid_points(limit, size)
    return _normalise(jax.jit(jax.vmap(log_density))(points), area, size)


def save_energy_landscape(path: str, model_energy: Callable, *, true_log_prob: Optional[Callable] = None,
                          samples: Optional[np.ndarray] = None, limit: float = 4.5,
                          size: int = 200) -> None:
    """Write panels: true density (if known), model density ``∝ exp(-E)``, energy, samples.

    Args:
      path: PNG path.
      model_energy: ``[2] -> scalar`` energy with the params bound.
      true_log_prob: ``[2] -> scalar`` log-density of the data, when known.
      samples: ``[N, 2]`` model samples to scatter.
    """
    plt = _figure()
    panels = []
    if true_log_prob is not None:
        panels.append(("true density", density_on_grid(true_log_prob, limit, size), "viridis"))
    points, area = grid_points(limit, size)
    energy = np.asarray(jax.jit(jax.vmap(model_energy))(points))
    panels.append(("model density ∝ exp(-E)", _normalise(-energy, area, size), "viridis"))
    panels.append(("energy E(x)", energy.reshape(size, size), "magma_r"))
    count = len(panels) + (samples is not None)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    extent = (-limit, limit, -limit, limit)
    for ax, (title, image, cmap) in zip(axes[0], panels):
        # Energies far from the data dwarf the structure near it: clip the colour scale.
        low, high = np.percentile(image, [0, 90]) if cmap == "magma_r" else (None, None)
        ax.imshow(image, origin="lower", extent=extent, cmap=cmap, interpolation="nearest",
                  vmin=low, vmax=high)
        ax.set_title(title)
    if samples is not None:
        ax = axes[0][-1]
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.5)
        ax.set_xlim(-limit, limit)
        ax.set_ylim(-limit, limit)
        ax.set_aspect("equal")
        ax.set_title("samples")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_density_panels(path: str, log_densities: dict, *, limit: float = 4.5,
                        size: int = 200) -> None:
    """Write one panel per 2-D density, each normalised on the grid, side by side.

    Args:
      path: PNG path.
      log_densities: ``{title: log_density}``, each ``[2] -> scalar`` (unnormalised is
        fine: ``-E`` for an energy), e.g. the data's, a flow's and an EBM's.

    Example::

      >>> save_density_panels("densities.png", {"N(0, I)": lambda x: -0.5 * jnp.sum(x ** 2),
      ...                                       "N(1, I)": lambda x: -0.5 * jnp.sum((x - 1) ** 2)},
      ...                     size=50)
    """
    plt = _figure()
    count = len(log_densities)
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.2), squeeze=False)
    extent = (-limit, limit, -limit, limit)
    for ax, (title, log_density) in zip(axes[0], log_densities.items()):
        ax.imshow(density_on_grid(log_density, limit, size), origin="lower", extent=extent,
                  cmap="viridis", interpolation="nearest")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
