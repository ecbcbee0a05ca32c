"""Kernel maximum mean discrepancy between two samples."""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp


def _sq_distances(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.maximum(jnp.sum(a**2, 1)[:, None] + jnp.sum(b**2, 1)[None, :] - 2.0 * a @ b.T, 0.0)


def mmd(x: jax.Array, y: jax.Array, bandwidths: Optional[Sequence[float]] = None) -> jax.Array:
    """Unbiased squared MMD with a sum of Gaussian kernels ``exp(-|a-b|² / (2 h²))``.

    Args:
      x: ``[N, ...]`` samples (flattened per example).
      y: ``[M, ...]`` samples.
      bandwidths: kernel widths ``h``; default ``(0.1, 0.2, 0.5, 1, 2, 5)`` times the
        median pairwise distance of the pooled samples (robust to the scale of the data).

    Returns:
      A scalar, ~0 when ``x`` and ``y`` come from the same distribution (it can be
      slightly negative, being unbiased).

    Example::

      >>> mmd(jax.random.normal(k1, (500, 2)), jax.random.normal(k2, (500, 2)))   # ≈ 0
    """
    x = jnp.asarray(x, jnp.float32).reshape(x.shape[0], -1)
    y = jnp.asarray(y, jnp.float32).reshape(y.shape[0], -1)
    if x.shape[0] < 2 or y.shape[0] < 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"samples have shapes {x.shape} and {y.shape}: expected at least 2 examples "
                         "each and the same size per example")
    return _mmd(x, y, None if bandwidths is None else tuple(float(b) for b in bandwidths))


@functools.partial(jax.jit, static_argnums=2)
def _mmd(x: jax.Array, y: jax.Array, bandwidths: Optional[tuple]) -> jax.Array:
    dxx, dyy, dxy = _sq_distances(x, x), _sq_distances(y, y), _sq_distances(x, y)
    if bandwidths is None:
        pooled = jnp.concatenate([dxx.ravel(), dyy.ravel(), dxy.ravel()])
        median = jnp.sqrt(jnp.median(pooled))
        scales = median * jnp.array([0.1, 0.2, 0.5, 1.0, 2.0, 5.0])
    else:
        scales = jnp.asarray(bandwidths, jnp.float32)

    def kernel(d):
        return jnp.sum(jnp.exp(-d[None] / (2.0 * scales[:, None, None] ** 2)), axis=0)

    n, m = x.shape[0], y.shape[0]
    kxx = (jnp.sum(kernel(dxx)) - jnp.trace(kernel(dxx))) / (n * (n - 1))
    kyy = (jnp.sum(kernel(dyy)) - jnp.trace(kernel(dyy))) / (m * (m - 1))
    return kxx + kyy - 2.0 * jnp.mean(kernel(dxy))
