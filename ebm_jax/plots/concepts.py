"""Concept models at a glance: intervention curves, and Boltzmann conditionals beside the
frequencies they should match."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np

from ebm_jax.plots.grids import _figure


def save_intervention_curves(path: str, curves: Mapping[str, Sequence], *,
                             spreads: Optional[Mapping[str, Sequence]] = None,
                             title: str = "class accuracy after telling concepts") -> None:
    """Save class accuracy against the share of concepts told, one line per method.

    Args:
      path: the PNG to write.
      curves: ``{method: [[ratio, accuracy], ...]}`` (e.g. a benchmark row's
        ``intervention_curve``, or its mean over seeds).
      spreads: optional ``{method: [std, ...]}`` drawn as bands.

    Example::

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "curves.png")
      >>> curves = {"ecbm": [[0, 0.9], [1, 1.0]], "cbm": [[0, 0.8], [1, 1.0]]}
      >>> save_intervention_curves(path, curves)
      >>> os.path.getsize(path) > 1000
      True
    """
    plt = _figure()
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
    for method, curve in curves.items():
        curve = np.asarray(curve, np.float64)
        ax.plot(curve[:, 0], curve[:, 1], marker="o", label=method)
        if spreads and method in spreads:
            spread = np.asarray(spreads[method], np.float64)
            ax.fill_between(curve[:, 0], curve[:, 1] - spread, curve[:, 1] + spread, alpha=0.2)
    ax.set_xlabel("share of concepts told")
    ax.set_ylabel("class accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_conditional_table(path: str, model_probs, frequencies, *,
                           concept_names: Optional[Sequence[str]] = None,
                           class_names: Optional[Sequence[str]] = None) -> None:
    """Save ``p(c_k = 1 | y)`` under the model beside the training frequencies, as two
    heat maps (classes down, concepts across) with the values written in, and their absolute
    difference as a third.

    Args:
      path: the PNG to write.
      model_probs, frequencies: ``[K, C]`` probabilities.

    Example::

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "table.png")
      >>> p = np.random.default_rng(0).uniform(size=(3, 4))
      >>> save_conditional_table(path, p, p.round())
      >>> os.path.getsize(path) > 1000
      True
    """
    model_probs = np.asarray(model_probs, np.float64)
    frequencies = np.asarray(frequencies, np.float64)
    k, c = model_probs.shape
    concept_names = list(concept_names or [f"c{j}" for j in range(c)])
    class_names = list(class_names or [str(i) for i in range(k)])
    panels = [("model p(c_k = 1 | y)", model_probs), ("training frequency", frequencies),
              (f"|difference| (mean {np.nanmean(np.abs(model_probs - frequencies)):.3f})",
               np.abs(model_probs - frequencies))]
    plt = _figure()
    fig, axes = plt.subplots(1, 3, figsize=(3.0 + 1.1 * 3 * c * 0.5, 0.45 * k + 1.6))
    for ax, (title, values) in zip(axes, panels):
        ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis")
        for i in range(k):
            for j in range(c):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if values[i, j] < 0.5 else "black")
        ax.set_xticks(range(c))
        ax.set_xticklabels(concept_names, rotation=60, fontsize=7, ha="right")
        ax.set_yticks(range(k))
        ax.set_yticklabels(class_names, fontsize=7)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
