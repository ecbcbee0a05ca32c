"""Sample grids and 2-D scatter plots, written to PNG."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tile_images(images: np.ndarray, image_shape: Sequence[int], columns: int = 10) -> np.ndarray:
    """Tile ``[N, H*W*C]`` (or ``[N, H, W, C]``) images into one ``[rows*H, columns*W]`` array.

    Only the first channel is kept (grids here are grayscale). Missing tiles stay blank.
    """
    h, w = image_shape[0], image_shape[1]
    images = np.asarray(images).reshape(len(images), h, w, -1)[..., 0]
    rows = int(np.ceil(len(images) / columns))
    grid = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return grid


def save_image_grids(path: str, grids: dict, image_shape: Sequence[int], *, columns: int = 10,
                     value_range: tuple = (-1.0, 1.0)) -> None:
    """Save one or more titled image grids side by side: ``grids = {title: [N, D] images}``."""
    plt = _figure()
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 5.4), squeeze=False)
    for ax, (title, images) in zip(axes[0], grids.items()):
        ax.imshow(tile_images(images, image_shape, columns), cmap="gray_r",
                  vmin=value_range[0], vmax=value_range[1], interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_scatter(path: str, panels: dict, *, limits: Optional[tuple] = (-4.5, 4.5)) -> None:
    """Save 2-D point clouds side by side: ``panels = {title: [N, 2] points}``."""
    plt = _figure()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, points) in zip(axes[0], panels.items()):
        points = np.asarray(points)
        ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5)
        if limits is not None:
            ax.set_xlim(*limits)
            ax.set_ylim(*limits)
        ax.set_aspect("equal")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
