"""Inference by energy minimisation, drawn: the "thinking curve" (quality against the number
of descent steps) and a 2-D energy surface ``E(x, y)`` with the descent paths on it."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from ebm_jax.plots.diagnostics import _finite_1d
from ebm_jax.plots.grids import _figure


def save_thinking_curve(path: str, curves: Mapping[str, tuple], *,
                        trained_steps: Optional[Mapping[str, float]] = None,
                        baselines: Optional[Mapping[str, float]] = None,
                        ylabel: str = "PSNR (dB)", title: Optional[str] = None) -> None:
    """Quality against inference steps, one line per method, the steps each was trained with
    marked (a dashed vertical line and a dot on its curve).

    Args:
      path: PNG path.
      curves: ``{method: (steps [S], values [S])}``: e.g. PSNR after ``s`` descent steps.
      trained_steps: ``{method: K}``: the number of steps the method was trained with (drawn
        for the methods named; ``K`` must be one of that curve's steps).
      baselines: ``{name: value}``: horizontal lines (a feed-forward model's PSNR).
      ylabel, title: axis label and optional title.

    Example::

      >>> steps = np.arange(0, 9)
      >>> save_thinking_curve("thinking.png", {"System 2": (steps, 18 + np.log1p(steps))},
      ...                     trained_steps={"System 2": 4}, baselines={"feed-forward": 19.5})
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError(f"curves is {type(curves).__name__} {curves!r:.60}: expected a non-empty "
                         "mapping {method: (steps, values)}")
    parsed = {}
    for name, pair in curves.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curves[{name!r}] is {type(pair).__name__}: expected a pair "
                             "(steps [S], values [S])")
        steps, values = np.asarray(pair[0], np.float64), np.asarray(pair[1], np.float64)
        if steps.ndim != 1 or steps.shape != values.shape or steps.size == 0:
            raise ValueError(f"curves[{name!r}] has steps {steps.shape} and values "
                             f"{values.shape}: expected two non-empty 1-D arrays of one length")
        _finite_1d(f"curves[{name!r}] values", values)
        parsed[name] = (steps, values)
    for name, k in (trained_steps or {}).items():
        if name not in parsed:
            raise ValueError(f"trained_steps names {name!r}: expected one of {sorted(parsed)}")
        if not np.any(parsed[name][0] == k):
            raise ValueError(f"trained_steps[{name!r}] = {k}: expected one of its curve's steps "
                             f"{parsed[name][0].tolist()}")
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, (steps, values) in parsed.items():
        (line,) = ax.plot(steps, values, marker="o", ms=3, lw=1.6, label=name)
        if trained_steps and name in trained_steps:
            k = trained_steps[name]
            ax.axvline(k, color=line.get_color(), ls="--", lw=0.9, alpha=0.7)
            ax.plot([k], [values[steps == k][0]], "o", ms=8, color=line.get_color(),
                    markeredgecolor="black", label=f"{name}: trained steps ({k:g})")
    for name, value in (baselines or {}).items():
        ax.axhline(float(value), color="gray", ls=":", lw=1.2, label=name)
    ax.set_xlabel("inference steps")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")  # "best" warns when slow
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_energy_paths(path: str, energies, extent: Sequence[float], paths, *,
                      targets: Optional[Sequence] = None, xlabel: str = "x", ylabel: str = "y",
                      title: Optional[str] = None, max_paths: int = 64) -> None:
    """A 2-D energy surface ``E(x, y)`` with descent paths drawn on it (start hollow, end
    filled).

    Args:
      path: PNG path.
      energies: ``[H, W]`` energies on a grid: row ``i`` is the ``i``-th ``y`` value (from
        ``extent``'s ``y_low`` up), column ``j`` the ``j``-th ``x``. Shown shifted so that its
        least finite value is 0, clipped at its 95th percentile (the basins stay visible).
      extent: ``(x_low, x_high, y_low, y_high)``.
      paths: ``[P, T, 2]``: ``P`` paths of ``T`` points ``(x, y)`` (for ``y_hat =
        argmin_y E(x, y)``, ``x`` stays fixed and each path is vertical).
      targets: optional ``[(xs, ys), ...]`` curves drawn as thin white lines (the true
        answers, e.g. both branches).
      xlabel, ylabel, title: labels.
      max_paths: draw at most this many paths (the first ones).

    Example::

      >>> xs, ys = np.linspace(-1, 1, 50), np.linspace(-1.5, 1.5, 60)
      >>> grid = (ys[:, None] ** 2 - (1 - xs[None] ** 2)) ** 2        # [60, 50]: E(x, y)
      >>> paths = np.stack([np.full(5, 0.3), np.linspace(0.1, 0.95, 5)], -1)[None]  # [1, 5, 2]
      >>> save_energy_paths("branches.png", grid, (-1, 1, -1.5, 1.5), paths)
    """
    grid = np.asarray(energies, np.float64)
    if grid.ndim != 2 or min(grid.shape) < 2:
        raise ValueError(f"energies has shape {grid.shape}: expected a grid [H, W] with H, W >= 2")
    finite = np.isfinite(grid)
    if not finite.any():
        raise ValueError("energies: every value is NaN/inf; expected a finite energy surface")
    box = np.asarray(extent, np.float64)
    if box.shape != (4,) or not (box[0] < box[1] and box[2] < box[3]):
        raise ValueError(f"extent is {extent!r}: expected (x_low, x_high, y_low, y_high) with "
                         "low < high")
    lines = np.asarray(paths, np.float64)
    if lines.ndim != 3 or lines.shape[-1] != 2 or lines.shape[1] == 0:
        raise ValueError(f"paths has shape {lines.shape}: expected [P, T, 2] points (x, y)")
    shown = grid - np.min(grid[finite])
    top = np.percentile(shown[finite], 95)
    shown = np.where(finite, np.minimum(shown, top), np.nan)
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.0, 4.6))
    image = ax.imshow(shown, origin="lower", extent=tuple(box), aspect="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="E(x, y) - min (clipped at the 95th percentile)")
    for x_curve, y_curve in (targets or []):
        ax.plot(x_curve, y_curve, color="white", lw=0.8, alpha=0.8)
    for line in lines[:max_paths]:
        ax.plot(line[:, 0], line[:, 1], color="tab:orange", lw=1.0, alpha=0.9)
        ax.plot(line[0, 0], line[0, 1], "o", ms=4, mfc="none", mec="tab:orange")
        ax.plot(line[-1, 0], line[-1, 1], "o", ms=4, color="tab:red")
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
