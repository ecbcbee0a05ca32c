"""Surrogate negatives: a few far points that give each class's real-vs-surrogate classifier
a second class to tell its rows from (TabEBM, Margeloiu et al. 2024).

In standardised units the class rows sit near the origin and the surrogates at the corners
of a hypercube of half-width ``distance`` (5 in the paper): far enough that the classifier's
"real" logit, read as a negative energy, is a density over the rows, and few enough that
they never compete with the rows near the data.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int, check_positive_finite


def surrogate_negatives(rng_key: jax.Array, num_features: int, distance: float = 5.0,
                        num_pairs: int = 2) -> jax.Array:
    """Hypercube corners at ``±distance``, in pairs of a corner and its negation.

    One feature: the two ends ``[-d], [d]``. Two features: the four corners. More features:
    ``num_pairs`` corners, each with its negation: the first corner's signs are random, and
    each further corner flips one more coordinate of the first (so the pairs are distinct
    corners whatever the key), the reference code's choice for its two pairs.

    Args:
      rng_key: a PRNG key (used for three or more features).
      num_features: the width ``D`` of a standardised row.
      distance: the half-width of the hypercube (> 0).
      num_pairs: corner pairs for ``D >= 3`` (1 to ``D``).

    Returns:
      ``[M, D]`` float32: ``M = 2`` for one feature, 4 for two, ``2 * num_pairs`` otherwise.

    Example::

      >>> surrogate_negatives(jax.random.key(0), 2).tolist()
      [[-5.0, -5.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]]
      >>> x = surrogate_negatives(jax.random.key(0), 6)
      >>> x.shape, bool(jnp.all(jnp.abs(x) == 5.0)), bool(jnp.all(x[0] == -x[1]))
      ((4, 6), True, True)
    """
    num_features = check_int("num_features", num_features)
    check_positive_finite("distance", distance)
    d = float(distance)
    if num_features == 1:
        return jnp.array([[-d], [d]], jnp.float32)
    if num_features == 2:
        return jnp.array([[-d, -d], [d, d], [-d, d], [d, -d]], jnp.float32)
    num_pairs = check_int("num_pairs", num_pairs, 1, num_features)
    sign_key, flip_key = jax.random.split(rng_key)
    first = jnp.where(jax.random.bernoulli(sign_key, 0.5, (num_features,)), d, -d)
    order = jax.random.permutation(flip_key, num_features)[:num_pairs - 1]
    # corner k flips the coordinates ranked below k: distinct corners, none the negation of
    # another (two corners differ in fewer than D coordinates)
    rank = jnp.full(num_features, num_pairs).at[order].set(jnp.arange(num_pairs - 1))
    flips = rank[None, :] < jnp.arange(num_pairs)[:, None]
    corners = jnp.where(flips, -first, first)
    return jnp.stack([corners, -corners], 1).reshape(2 * num_pairs, num_features)
