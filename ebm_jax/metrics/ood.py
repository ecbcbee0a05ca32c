"""Out-of-distribution detection metrics."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _check_score_vectors(scores_in, scores_out) -> tuple[jax.Array, jax.Array]:
    """Two non-empty real score vectors ``[N]`` and ``[M]``, as arrays, or a clear error.

    Where the scores are concrete (an eager call), NaN scores raise: a NaN has no rank, so
    AUROC/AUPR of NaN scores would be meaningless. ``±inf`` rank fine and are accepted.
    Under ``jit`` the values are traced and not checked.
    """
    try:
        scores_in, scores_out = jnp.asarray(scores_in), jnp.asarray(scores_out)
    except TypeError as err:
        raise TypeError(f"scores_in/scores_out: expected two vectors of real scores ({err})") \
            from None
    if scores_in.ndim != 1 or scores_out.ndim != 1 or scores_in.size == 0 or scores_out.size == 0:
        raise ValueError(f"scores have shapes {scores_in.shape} and {scores_out.shape}: "
                         "expected two non-empty vectors [N] and [M]")
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        if not (jnp.issubdtype(scores.dtype, jnp.integer)
                or jnp.issubdtype(scores.dtype, jnp.floating) or scores.dtype == jnp.bool_):
            raise TypeError(f"{name} has dtype {scores.dtype}: expected real scores")
    # Bools and unsigned ints do not negate (AUPR-Out ranks -score): give them a float dtype.
    scores_in, scores_out = (s.astype(jnp.float32) if s.dtype == jnp.bool_
                             or jnp.issubdtype(s.dtype, jnp.unsignedinteger) else s
                             for s in (scores_in, scores_out))
    for name, scores in (("scores_in", scores_in), ("scores_out", scores_out)):
        if not isinstance(scores, jax.core.Tracer):
            bad = int(np.sum(np.isnan(np.asarray(scores)))) \
                if jnp.issubdtype(scores.dtype, jnp.floating) \
                else 0
            if bad:
                raise ValueError(f"{name} has {bad} NaN values: expected real scores (a NaN has "
                                 "no rank; drop or fix those examples)")
    return scores_in, scores_out


def auroc(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
    """Area under the ROC curve for telling in-distribution from OOD, higher score = in.

    Computed exactly as the Mann-Whitney statistic
    ``P(s_in > s_out) + ½ P(s_in = s_out)`` with sorting (O(N log N)), jit-friendly.

    Args:
      scores_in: ``[N]`` scores of in-distribution examples (e.g. ``-E(x)``).
      scores_out: ``[M]`` scores of OOD examples.

    Raises:
      ValueError: for empty or non-vector scores, or (called eagerly) NaN scores;
        ``±inf`` scores are ranked as usual.

    Example::

      >>> float(auroc(jnp.array([2.0, 3.0]), jnp.array([0.0, 1.0])))
      1.0
    """
    scores_in, scores_out = _check_score_vectors(scores_in, scores_out)
    return _auroc(scores_in, scores_out)


@jax.jit
def _auroc(scores_in: jax.Array, scores_out: jax.Array) -> jax.Array:
    sorted_out = jnp.sort(scores_out)
    below = jnp.searchsorted(sorted_out, scores_in, side="left")
    below_or_equal = jnp.searchsorted(sorted_out, scores_in, side="right")
    wins = below + 0.5 * (below_or_equal - below)
    return jnp.sum(wins) / (scores_in.size * scores_out.size)
