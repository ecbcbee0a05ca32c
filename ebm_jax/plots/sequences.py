"""Examples that are neither images nor 2-D points (signals, sequences, feature vectors),
drawn as lines: one panel per source, a few examples each."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ebm_jax.plots.grids import _figure


def save_sequence_panels(path: str, panels: dict, *, num: int = 8,
                         value_range: Optional[tuple] = None) -> None:
    """Save ``panels = {title: [N, ...] examples}`` side by side, the first ``num`` examples
    of each flattened and drawn as lines over their index (a signal's time axis; a table's
    columns), on a shared value axis.

    Example::

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "samples.png")
      >>> x = np.sin(np.linspace(0, 6, 40))[None] * np.ones((3, 1))
      >>> save_sequence_panels(path, {"data": x, "samples": -x}, num=2)
      >>> os.path.getsize(path) > 1000
      True
    """
    plt = _figure()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False,
                             sharey=True)
    for ax, (title, examples) in zip(axes[0], panels.items()):
        examples = np.asarray(examples)
        lines = examples.reshape(len(examples), -1)[:num]
        ax.plot(lines.T, linewidth=0.8, alpha=0.8)
        if value_range is not None:
            ax.set_ylim(*value_range)
        ax.set_title(title)
        ax.set_xlabel("index")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["save_sequence_panels"]
