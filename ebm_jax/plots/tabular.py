"""Real and synthetic table rows side by side: a pair plot of the first features, per class."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from matplotlib import colormaps

from ebm_jax.plots.grids import _figure


def save_pair_plot(path: str, X_real, y_real, X_synth, y_synth, *, num_features: int = 3,
                   feature_names: Optional[Sequence[str]] = None) -> None:
    """Save a pair plot of the first ``num_features`` numeric columns: each off-diagonal panel
    scatters one feature against another, real rows as filled dots and synthetic rows as
    crosses, one colour per class; the diagonal shows each feature's histograms (real solid,
    synthetic dashed).

    Args:
      path: the PNG to write.
      X_real, X_synth: ``[N, C]`` and ``[M, C]`` numeric rows (arrays or DataFrames).
      y_real, y_synth: ``[N]`` and ``[M]`` class labels.
      num_features: how many leading columns to show (at most ``C``).
      feature_names: column titles (default: a DataFrame's names, else ``x0, x1, ...``).

    Example::

      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "pairs.png")
      >>> X = np.random.default_rng(0).normal(size=(30, 3)); y = np.arange(30) % 2
      >>> save_pair_plot(path, X, y, X + 0.1, y, num_features=2)
      >>> os.path.getsize(path) > 1000
      True
    """
    if feature_names is None and hasattr(X_real, "columns"):
        feature_names = [str(name) for name in X_real.columns]
    X_real, X_synth = np.asarray(X_real, np.float64), np.asarray(X_synth, np.float64)
    y_real, y_synth = np.asarray(y_real), np.asarray(y_synth)
    k = min(num_features, X_real.shape[1])
    names = list(feature_names or [f"x{j}" for j in range(X_real.shape[1])])[:k]
    plt = _figure()
    fig, axes = plt.subplots(k, k, figsize=(2.8 * k, 2.8 * k), squeeze=False)
    classes = np.unique(np.concatenate([y_real, y_synth]))
    colours = colormaps["tab10"]
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            for c, label in enumerate(classes):
                real, synth = X_real[y_real == label], X_synth[y_synth == label]
                colour = colours(c % 10)
                if i == j:
                    ax.hist(real[:, j], bins=15, color=colour, alpha=0.5, density=True)
                    ax.hist(synth[:, j], bins=15, color=colour, histtype="step",
                            linestyle="--", density=True)
                else:
                    ax.scatter(real[:, j], real[:, i], s=14, color=colour, alpha=0.8,
                               label=f"{label} real" if (i, j) == (0, 1) else None)
                    ax.scatter(synth[:, j], synth[:, i], s=10, marker="x", color=colour,
                               alpha=0.5, label=f"{label} synthetic" if (i, j) == (0, 1)
                               else None)
            if i == k - 1:
                ax.set_xlabel(names[j])
            if j == 0:
                ax.set_ylabel(names[i])
    if k > 1:
        axes[0, 1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["save_pair_plot"]
