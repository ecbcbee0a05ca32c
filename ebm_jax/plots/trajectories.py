"""Paths in the plane, drawn: a policy's episodes among the obstacles and regions of its
task, successes and failures in two colours."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ebm_jax.plots.grids import _figure

SUCCESS_COLOR, FAILURE_COLOR = "tab:blue", "tab:red"


def save_trajectories(path: str, panels: Mapping[str, tuple], *, discs: Sequence = (),
                      boxes: Sequence = (), limits: Sequence[float] = (-1.0, 1.0, -1.0, 1.0),
                      max_paths: int = 40, columns: int = 4) -> None:
    """One square panel per entry: paths ``[P, T, 2]``, successes in blue and failures in red
    (start hollow, end filled), over grey discs (obstacles) and dashed boxes (regions).

    Args:
      path: PNG path.
      panels: ``{title: (paths [P, T, 2], succeeded bool [P])}`` (the first ``max_paths``).
      discs: ``((cx, cy), radius)`` each, filled grey.
      boxes: ``(label, (x_low, x_high), (y_low, y_high))`` each, dashed outlines.
      limits: ``(x_low, x_high, y_low, y_high)``.
      max_paths: paths drawn per panel.
      columns: panels per row.

    Example::

      >>> paths = np.stack([np.linspace([-0.8, 0.0], [0.8, 0.5], 10)] * 2)
      >>> save_trajectories("paths.png", {"policy": (paths, np.array([True, False]))},
      ...                   discs=[((0.0, 0.0), 0.3)], boxes=[("start", (-0.9, -0.7), (-0.1, 0.1))])
    """
    if not isinstance(panels, Mapping) or not panels:
        raise ValueError(f"panels is {type(panels).__name__}: expected a non-empty mapping "
                         "{title: (paths [P, T, 2], succeeded [P])}")
    parsed = {}
    for title, pair in panels.items():
        paths, succeeded = np.asarray(pair[0], np.float64), np.asarray(pair[1], bool)
        if paths.ndim != 3 or paths.shape[-1] != 2 or succeeded.shape != paths.shape[:1]:
            raise ValueError(f"panels[{title!r}] has paths {paths.shape} and succeeded "
                             f"{succeeded.shape}: expected [P, T, 2] and [P]")
        parsed[title] = (paths[:max_paths], succeeded[:max_paths])
    plt = _figure()
    cols = min(columns, len(parsed))
    rows = -(-len(parsed) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(parsed):]:
        ax.set_axis_off()
    for ax, (title, (paths, succeeded)) in zip(axes.ravel(), parsed.items()):
        for (cx, cy), radius in discs:
            ax.add_patch(_circle((cx, cy), radius))
        for label, (x_low, x_high), (y_low, y_high) in boxes:
            ax.plot([x_low, x_high, x_high, x_low, x_low], [y_low, y_low, y_high, y_high, y_low],
                    ls="--", lw=0.9, color="gray")
            ax.annotate(label, (x_low, y_high), fontsize=7, color="dimgray",
                        textcoords="offset points", xytext=(0, 2))
        for one, ok in zip(paths, succeeded):
            color = SUCCESS_COLOR if ok else FAILURE_COLOR
            ax.plot(one[:, 0], one[:, 1], color=color, lw=0.9, alpha=0.7)
            ax.plot(*one[0], "o", ms=3, mfc="none", color=color)
            ax.plot(*one[-1], "o", ms=3, color=color)
        ax.set_xlim(limits[0], limits[1])
        ax.set_ylim(limits[2], limits[3])
        ax.set_aspect("equal")
        share = float(np.mean(succeeded)) if succeeded.size else float("nan")
        ax.set_title(f"{title}\n{len(paths)} episodes: {share:.0%} succeed (blue)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _circle(center, radius):
    from matplotlib.patches import Circle

    return Circle(center, radius, color="lightgray", ec="gray")
