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


def save_level_grid(path: str, rows: dict, column_titles: Sequence[str], *,
                    image_shape: Optional[Sequence[int]] = None, per_cell: int = 16,
                    limits: Optional[tuple] = (-4.5, 4.5), value_range: tuple = (-1.0, 1.0)
                    ) -> None:
    """Save samples level by level: one row per ``rows`` entry, one column per level.

    Args:
      path: PNG path.
      rows: ``{row title: [L, N, D]}`` samples at each of ``L`` levels (e.g. an initializer's
        proposals and their refinements, CDRL's progressive sampling).
      column_titles: ``L`` titles, one per level.
      image_shape: draw the first ``per_cell`` examples of each cell as an image grid of this
        shape; without it, ``D = 2`` points are scattered in ``limits``.
      per_cell: images per cell (a square number tiles best).
      limits, value_range: the scatter's box; the images' grey range.

    Example::

      >>> save_level_grid("levels.png", {"proposal": np.zeros((3, 10, 2)),
      ...                                "refined": np.ones((3, 10, 2))}, ["t=2", "t=1", "t=0"])
    """
    plt = _figure()
    num_cols = len(column_titles)
    for title, samples in rows.items():
        if np.shape(samples)[0] != num_cols:
            raise ValueError(f"rows[{title!r}] has {np.shape(samples)[0]} levels: expected "
                             f"{num_cols}, one per column title")
    fig, axes = plt.subplots(len(rows), num_cols, figsize=(2.4 * num_cols, 2.4 * len(rows)),
                             squeeze=False)
    columns = max(int(np.sqrt(per_cell)), 1)
    for r, (title, samples) in enumerate(rows.items()):
        for c in range(num_cols):
            ax = axes[r, c]
            cell = np.asarray(samples[c])
            if image_shape is None:
                ax.scatter(cell[:, 0], cell[:, 1], s=1, alpha=0.4)
                if limits is not None:
                    ax.set_xlim(*limits)
                    ax.set_ylim(*limits)
                ax.set_aspect("equal")
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                grid = tile_images(cell[:per_cell], image_shape, columns)
                ax.imshow(grid, cmap="gray_r", vmin=value_range[0], vmax=value_range[1],
                          interpolation="nearest")
                ax.axis("off")
            if r == 0:
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(title)
                if image_shape is not None:   # axis("off") hides the label: write it instead
                    ax.text(-0.08, 0.5, title, transform=ax.transAxes, rotation=90,
                            ha="right", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
