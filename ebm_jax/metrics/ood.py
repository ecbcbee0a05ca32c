"""Out-of-distribution detection metrics."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def auroc(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
    """Area under the ROC curve for telling in-distribution from OOD, higher score = in.

    Computed exactly as the Mann-Whitney statistic
    ``P(s_in > s_out) + ½ P(s_in = s_out)`` with sorting (O(N log N)), jit-friendly.

    Args:
      scores_in: ``[N]`` scores of in-distribution examples (e.g. ``-E(x)``).
      scores_out: ``[M]`` scores of OOD examples.

    Example::

      >>> float(auroc(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0])))
      1.0
    """
    if scores_in.ndim != 1 or scores_out.ndim != 1 or scores_in.size == 0 or scores_out.size == 0:
        raise ValueError(f"scores have shapes {scores_in.shape} and {scores_out.shape}: "
                         "expected two non-empty vectors")
    return _auroc(scores_in, scores_out)


@jax.jit
def _auroc(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
    sorted_out = jnp.sort(scores_out)
    below = jnp.searchsorted(sorted_out, scores_in, side="left")
    below_or_equal = jnp.searchsorted(sorted_out, scores_in, side="right")
    wins = below + 0.5 * (below_or_equal - below)
    return jnp.sum(wins) / (scores_in.size * scores_out.size)
