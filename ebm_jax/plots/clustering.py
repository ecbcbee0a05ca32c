"""Clusters on the plane: each panel the model's energy with the points coloured by their
cluster."""
from __future__ import annotations

from typing import Mapping

import jax
import numpy as np
from matplotlib import colormaps

from ebm_jax.metrics.likelihood import grid_points
from ebm_jax.plots.grids import _figure


def save_cluster_panels(path: str, panels: Mapping[str, tuple], *, size: int = 150,
                        margin: float = 0.5) -> None:
    """Save one panel per 2-D dataset: the model's energy ``E(x)`` on a grid around the points
    (dark: low energy; the colour scale clipped to the grid's 1st-90th percentiles, as the
    energy far from the data dwarfs the structure near it), and the points as dots coloured by
    their assigned cluster.

    Args:
      path: the PNG to write.
      panels: ``{title: (points [N, 2], clusters [N] ints, energy_fn)}`` with
        ``energy_fn([2]) -> scalar`` (params bound).
      size: grid points per side.
      margin: how far the grid reaches beyond the points.

    Example::

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "clusters.png")
      >>> x = np.random.default_rng(0).normal(size=(40, 2))
      >>> save_cluster_panels(path, {"blob": (x, (x[:, 0] > 0).astype(int),
      ...                                      lambda p: 0.5 * jnp.sum(p ** 2))}, size=30)
      >>> os.path.getsize(path) > 1000
      True
    """
    plt = _figure()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), squeeze=False)
    colours = colormaps["tab10"]
    for ax, (title, (points, clusters, energy_fn)) in zip(axes[0], panels.items()):
        points, clusters = np.asarray(points), np.asarray(clusters)
        limit = float(np.abs(points).max()) + margin
        grid, _ = grid_points(limit, size)
        energy = np.asarray(jax.jit(jax.vmap(energy_fn))(grid)).reshape(size, size)
        low, high = np.percentile(energy, [1, 90])
        ax.imshow(energy, origin="lower", extent=(-limit, limit, -limit, limit), cmap="bone",
                  vmin=low, vmax=high, interpolation="nearest")
        for k in np.unique(clusters):
            mine = points[clusters == k]
            ax.scatter(mine[:, 0], mine[:, 1], s=6, color=colours(int(k) % 10),
                       label=f"cluster {k}")
        ax.set_title(f"{title}: energy and clusters", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
