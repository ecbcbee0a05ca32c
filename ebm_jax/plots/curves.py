"""Training curves from the metrics log."""
from __future__ import annotations

import json
from typing import Iterable, Sequence

from ebm_jax.plots.grids import _figure


def read_metrics(path: str) -> list[dict]:
    """Read a ``metrics.jsonl`` file into a list of records."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_curves(path: str, records: Iterable[dict], panels: Sequence[Sequence[str]]) -> None:
    """Plot metric curves against ``step``: one panel per group of metric names.

    Metrics missing from every record are skipped, so one panel layout serves
    every objective. Example: ``panels=[("loss",), ("energy_data", "energy_sample")]``.
    """
    records = list(records)
    plt = _figure()
    panels = [[k for k in group if any(k in r for r in records)] for group in panels]
    panels = [group for group in panels if group]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.5 * max(len(panels), 1), 3.6),
                             squeeze=False)
    for ax, group in zip(axes[0], panels):
        for key in group:
            points = [(r["step"], r[key]) for r in records if key in r]
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key,
                    marker="o" if len(points) < 20 else None)
        ax.set_xlabel("step")
        ax.legend(fontsize=8, loc="center right")  # "best" warns when slow; curves end high or low
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
