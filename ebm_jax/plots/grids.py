"""Sample grids and 2-D scatter plots, written to PNG."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


class _Figures:
    """``subplots``/``close`` on ``matplotlib.figure.Figure``, without pyplot.

    Figures made this way never touch pyplot's global state or its backend, so
    saving a PNG from a notebook leaves the notebook's inline plots alone.
    """

    @staticmethod
    def subplots(*args, figsize=None, **kwargs):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kwargs)

    @staticmethod
    def close(fig) -> None:
        fig.clear()


def _figure() -> _Figures:
    return _Figures()


def tile_images(images: np.ndarray, image_shape: Sequence[int], columns: int = 10) -> np.ndarray:
    """Tile ``[N, H*W*C]`` (or ``[N, H, W, C]``) images into one array.

    Grayscale images (C = 1) give ``[rows*H, columns*W]``; colour images (C = 3)
    keep their channels, ``[rows*H, columns*W, 3]``; other channel counts keep
    the first. Missing tiles stay blank (NaN).
    """
    h, w = image_shape[0], image_shape[1]
    images = np.asarray(images).reshape(len(images), h, w, -1)
    if images.shape[-1] != 3:
        images = images[..., :1]
    rows = int(np.ceil(len(images) / columns))
    grid = np.full((rows * (h + 1) - 1, columns * (w + 1) - 1, images.shape[-1]), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = image
    return grid if grid.shape[-1] == 3 else grid[..., 0]


def save_image_grids(path: str, grids: dict, image_shape: Sequence[int], *, columns: int = 10,
                     value_range: tuple = (-1.0, 1.0)) -> None:
    """Save one or more titled image grids side by side: ``grids = {title: [N, D] images}``."""
    plt = _figure()
    # A panel is 5 inches wide and as tall as its rows need (a square grid: 5), plus the title.
    rows = max(-(-len(images) // columns) for images in grids.values())
    height = 5 * min(rows, columns) / columns + 0.4
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), height), squeeze=False)
    low, high = value_range
    for ax, (title, images) in zip(axes[0], grids.items()):
        grid = tile_images(images, image_shape, columns)
        if grid.ndim == 3:  # colour: map the value range to [0, 1], blanks to white
            rgb = np.clip((grid - low) / (high - low), 0.0, 1.0)
            ax.imshow(np.where(np.isnan(rgb), 1.0, rgb), interpolation="nearest")
        else:
            ax.imshow(grid, cmap="gray_r", vmin=low, vmax=high, interpolation="nearest")
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
