"""Normalised noise distributions: a pure ``(sample, log_prob)`` pair.

Noise-contrastive estimation (:func:`ebm_jax.losses.nce.nce`) needs a
distribution it can both sample and evaluate, with a *normalised* density.
A :class:`NoiseDistribution` is just those two pure functions (and the shape
of one example)::

    x = noise.sample(rng_key, n)            # [n, *shape] float32
    lp = jax.vmap(noise.log_prob)(x)        # [n]; log_prob is per example

Factories:

- :func:`fit_gaussian`: a Gaussian fitted to data (full or diagonal
  covariance), optionally widened; the usual NCE noise.
- :func:`uniform_box`: uniform on an axis-aligned box.
- :func:`mixture`: a weighted mixture of noise distributions.
- :func:`from_pair`: any user pair, e.g. a trained normalising flow (flow
  contrastive estimation) or a toy density with a closed-form ``log_prob``.

Every factory checks its arguments and raises a ``ValueError`` naming the
argument, the value and what was expected. The functions are pure and
jittable (``n`` must be static, as for ``jax.random``).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_in_range, check_int

__all__ = ["NoiseDistribution", "check_noise", "fit_gaussian", "from_pair", "mixture",
           "uniform_box"]

SampleFn = Callable[[jax.Array, int], jax.Array]
LogProbFn = Callable[[jax.Array], jax.Array]


class NoiseDistribution(NamedTuple):
    """A normalised distribution as a pure pair of functions.

    Attributes:
      sample: ``sample(rng_key, n) -> [n, *shape]`` draws (``n`` a Python int).
      log_prob: ``log_prob(x[*shape]) -> scalar`` normalised log-density of one
        example (``-inf`` outside the support); batch it with ``jax.vmap``.
      shape: the shape of one example, or ``None`` where unknown (a pair built
        by hand); :func:`check_noise` then infers it from ``sample``.
    """

    sample: SampleFn
    log_prob: LogProbFn
    shape: Optional[tuple[int, ...]] = None


def _check_shape(shape, name: str = "shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(d) for d in shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r}: expected a tuple of positive ints") from None
    if any(d < 1 for d in shape):
        raise ValueError(f"{name}={shape!r}: expected a tuple of positive ints")
    return shape


def check_noise(noise: NoiseDistribution, example_shape: Sequence[int], who: str = "noise"):
    """Check, by tracing only (``jax.eval_shape``, no compute), that ``noise`` fits the data.

    ``noise.sample(key, 2)`` must return ``[2, *example_shape]`` floats and
    ``noise.log_prob(x[*example_shape])`` a scalar.

    Args:
      noise: a :class:`NoiseDistribution`.
      example_shape: the shape of one data example (``batch["x"].shape[1:]``).
      who: the name used in error messages.

    Raises:
      ValueError: naming the shape that was got and the one expected.
    """
    if not isinstance(noise, NoiseDistribution):
        raise ValueError(f"{who}={noise!r}: expected a NoiseDistribution "
                         "(see ebm_jax.energies.distributions)")
    example_shape = tuple(example_shape)
    if noise.shape is not None and tuple(noise.shape) != example_shape:
        raise ValueError(f"{who} has shape {tuple(noise.shape)}: expected {example_shape} "
                         "to match the data")
    samples = jax.eval_shape(lambda k: noise.sample(k, 2), jax.random.PRNGKey(0))
    if not hasattr(samples, "shape") or samples.shape != (2, *example_shape):
        got = getattr(samples, "shape", type(samples).__name__)
        raise ValueError(f"{who} samples have shape {got} for n=2: expected {(2, *example_shape)} "
                         f"([n, *example shape {example_shape}]) to match the data")
    if not jnp.issubdtype(samples.dtype, jnp.floating):
        raise ValueError(f"{who} samples have dtype {samples.dtype}: expected a floating dtype")
    log_prob = jax.eval_shape(noise.log_prob, jax.ShapeDtypeStruct(example_shape, jnp.float32))
    if not hasattr(log_prob, "shape") or log_prob.shape != ():
        got = getattr(log_prob, "shape", type(log_prob).__name__)
        raise ValueError(f"{who}.log_prob of one example of shape {example_shape} returned shape "
                         f"{got}: expected a scalar () (log_prob is per example; "
                         "batch it with vmap)")


def _require_example(x: jax.Array, shape: tuple[int, ...], who: str) -> None:
    if x.shape != shape:
        raise ValueError(f"{who}.log_prob got x of shape {x.shape}: expected one example of shape "
                         f"{shape} (log_prob is per example; batch it with jax.vmap)")


def _check_n(n, who: str) -> int:
    return check_int(f"{who}.sample got n", n, 0, expected="a non-negative Python int")


def fit_gaussian(x, covariance: str = "full", scale: float = 1.0, *,
                 jitter: float = 1e-6) -> NoiseDistribution:
    """A Gaussian fitted to data by moments (maximum likelihood), optionally widened.

    The mean and (biased, ``1/N``) covariance of ``x`` are computed in float64
    NumPy; ``jitter`` is added to the variances so that constant features do
    not make it singular, and the standard deviation is multiplied by
    ``scale`` (covariance by ``scale²``): NCE noise a little wider than the
    data (``scale`` 1.2-1.5) covers the tails the model must learn.

    Examples of any shape ``x[N, *shape]`` are flattened to ``D = prod(shape)``
    features; samples come back as ``[n, *shape]``.

    Args:
      x: ``[N, *shape]`` data, ``N >= 2``, all finite.
      covariance: ``"full"`` (``D x D``) or ``"diagonal"`` (per-feature variances).
      scale: positive factor on the standard deviation.
      jitter: non-negative number added to the variances (the diagonal).

    Returns:
      A :class:`NoiseDistribution` of ``N(mean, scale² (cov + jitter I))``.

    Example::

      >>> data = jax.random.normal(jax.random.key(0), (100, 2))
      >>> noise = fit_gaussian(data, scale=1.25)
      >>> noise.sample(jax.random.key(1), 5).shape
      (5, 2)
      >>> jax.vmap(noise.log_prob)(data).shape
      (100,)
    """
    if covariance not in ("full", "diagonal"):
        raise ValueError(f"covariance={covariance!r}: expected 'full' or 'diagonal'")
    scale = check_in_range("scale", scale, 0, math.inf, include_low=False,
                           expected="a positive finite number")
    jitter = check_in_range("jitter", jitter, 0, math.inf,
                            expected="a non-negative finite number")
    data = np.asarray(x, np.float64)
    if data.ndim < 2 or data.shape[0] < 2:
        raise ValueError(f"x has shape {data.shape}: expected [N, *shape] data with N >= 2 "
                         "examples and at least one feature axis")
    if not np.all(np.isfinite(data)):
        raise ValueError("x has non-finite values: expected finite data to fit a Gaussian")
    shape = tuple(data.shape[1:])
    flat = data.reshape(data.shape[0], -1)
    dim = flat.shape[1]
    mean = flat.mean(0)
    centred = flat - mean
    if covariance == "full":
        cov = centred.T @ centred / flat.shape[0] + jitter * np.eye(dim)
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(
                f"the fitted {dim}x{dim} covariance of x (N={flat.shape[0]}) is singular: expected "
                "more examples than features or non-degenerate data; use covariance='diagonal' "
                "or a larger jitter") from None
        chol = scale * chol
        inv_chol = np.linalg.inv(chol)
        log_det_half = float(np.sum(np.log(np.diag(chol))))
    else:
        var = centred.var(0) + jitter
        if np.any(var <= 0):
            raise ValueError("x has features of zero variance: expected non-constant features, "
                             "or a positive jitter")
        std = scale * np.sqrt(var)
        log_det_half = float(np.sum(np.log(std)))
    log_norm = jnp.float32(-log_det_half - 0.5 * dim * math.log(2 * math.pi))
    mu = jnp.asarray(mean, jnp.float32)

    if covariance == "full":
        chol_j = jnp.asarray(chol, jnp.float32)
        inv_chol_j = jnp.asarray(inv_chol, jnp.float32)

        def sample(rng_key, n):
            n = _check_n(n, "fit_gaussian")
            eps = jax.random.normal(rng_key, (n, dim), jnp.float32)
            return (mu + eps @ chol_j.T).reshape(n, *shape)

        def whiten(flat_x):
            return inv_chol_j @ (flat_x - mu)
    else:
        std_j = jnp.asarray(std, jnp.float32)

        def sample(rng_key, n):
            n = _check_n(n, "fit_gaussian")
            eps = jax.random.normal(rng_key, (n, dim), jnp.float32)
            return (mu + eps * std_j).reshape(n, *shape)

        def whiten(flat_x):
            return (flat_x - mu) / std_j

    def log_prob(x):
        x = jnp.asarray(x)
        _require_example(x, shape, "fit_gaussian")
        z = whiten(x.reshape(-1))
        return log_norm - 0.5 * jnp.sum(z**2)

    return NoiseDistribution(sample, log_prob, shape)


def uniform_box(low, high, shape: Sequence[int]) -> NoiseDistribution:
    """Uniform on the box ``[low, high]`` (per element) of examples of shape ``shape``.

    ``log_prob`` is ``-Σ log(high - low)`` inside the box and ``-inf`` outside.

    Args:
      low, high: numbers or arrays broadcastable to ``shape``, ``low < high`` everywhere.
      shape: the shape of one example, e.g. ``(2,)``.

    Example::

      >>> noise = uniform_box(-4.0, 4.0, (2,))
      >>> float(noise.log_prob(jnp.zeros(2)))      # -log 64
      -4.158...
    """
    shape = _check_shape(shape)
    try:
        lo = np.broadcast_to(np.asarray(low, np.float64), shape)
        hi = np.broadcast_to(np.asarray(high, np.float64), shape)
    except ValueError:
        raise ValueError(f"low {np.shape(low)} and high {np.shape(high)}: expected numbers or "
                         f"arrays broadcastable to shape {shape}") from None
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise ValueError(f"low={low!r}, high={high!r}: expected finite bounds")
    if not np.all(lo < hi):
        raise ValueError(f"low={low!r}, high={high!r}: expected low < high in every element")
    log_volume = float(np.sum(np.log(hi - lo)))
    lo_j, hi_j = jnp.asarray(lo, jnp.float32), jnp.asarray(hi, jnp.float32)

    def sample(rng_key, n):
        n = _check_n(n, "uniform_box")
        return jax.random.uniform(rng_key, (n, *shape), jnp.float32, lo_j, hi_j)

    def log_prob(x):
        x = jnp.asarray(x)
        _require_example(x, shape, "uniform_box")
        inside = jnp.all((x >= lo_j) & (x <= hi_j))
        return jnp.where(inside, jnp.float32(-log_volume), -jnp.inf).astype(jnp.float32)

    return NoiseDistribution(sample, log_prob, shape)


def mixture(components: Sequence[NoiseDistribution], weights=None) -> NoiseDistribution:
    """A weighted mixture ``Σ_k w_k p_k(x)`` of noise distributions of one shape.

    Sampling draws every component ``n`` times and keeps one draw per example
    (``K`` times the cost of one component, but jittable with a static ``n``).

    Args:
      components: a non-empty sequence of :class:`NoiseDistribution` of the same shape.
      weights: ``[K]`` positive weights (normalised here); default equal.

    Example::

      >>> data = jax.random.normal(jax.random.key(0), (100, 2))
      >>> noise = mixture([fit_gaussian(data), uniform_box(-4, 4, (2,))], weights=[0.9, 0.1])
      >>> noise.sample(jax.random.key(1), 5).shape, noise.log_prob(jnp.zeros(2)).shape
      ((5, 2), ())
    """
    components = list(components) if isinstance(components, (list, tuple)) else components
    if not isinstance(components, list) or not components:
        raise ValueError(f"components={components!r}: expected a non-empty list of "
                         "NoiseDistribution")
    shapes = []
    for i, comp in enumerate(components):
        if not isinstance(comp, NoiseDistribution):
            raise ValueError(f"components[{i}]={comp!r}: expected a NoiseDistribution")
        shape = comp.shape
        if shape is None:
            shape = jax.eval_shape(lambda k, c=comp: c.sample(k, 1),
                                   jax.random.PRNGKey(0)).shape[1:]
        shapes.append(tuple(shape))
    if any(s != shapes[0] for s in shapes):
        raise ValueError(f"components have shapes {shapes}: expected all the same example shape")
    shape = shapes[0]
    k = len(components)
    w = np.full(k, 1.0 / k) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (k,):
        raise ValueError(f"weights has shape {w.shape}: expected ({k},), one per component")
    if not (np.all(np.isfinite(w)) and np.all(w > 0)):
        raise ValueError(f"weights={weights!r}: expected positive finite numbers")
    log_w = jnp.asarray(np.log(w / w.sum()), jnp.float32)

    def sample(rng_key, n):
        n = _check_n(n, "mixture")
        k_comp, *k_each = jax.random.split(rng_key, k + 1)
        which = jax.random.categorical(k_comp, log_w, shape=(n,))
        draws = jnp.stack([c.sample(kk, n) for c, kk in zip(components, k_each)])  # [K, n, ...]
        return jnp.take_along_axis(draws, which.reshape(1, n, *([1] * len(shape))), axis=0)[0]

    def log_prob(x):
        x = jnp.asarray(x)
        _require_example(x, shape, "mixture")
        return jax.nn.logsumexp(log_w + jnp.stack([c.log_prob(x) for c in components]))

    return NoiseDistribution(sample, log_prob, shape)


def from_pair(sample: SampleFn, log_prob: LogProbFn, shape: Sequence[int]) -> NoiseDistribution:
    """Wrap any user ``(sample, log_prob)`` pair, checked by tracing (no compute).

    Use it for a normalising flow (flow contrastive estimation: NCE against a
    flow's samples and exact density), a toy density with a closed form, or
    an :class:`~ebm_jax.energies.analytic.AnalyticEnergy`.

    Args:
      sample: ``sample(rng_key, n) -> [n, *shape]``; must be pure (close over
        fixed flow parameters).
      log_prob: ``log_prob(x[*shape]) -> scalar``, normalised.
      shape: the shape of one example.

    Raises:
      ValueError: if ``sample`` or ``log_prob`` do not return the shapes above.

    Example::

      >>> from ebm_jax.energies import gaussian
      >>> g = gaussian(jnp.zeros(2), jnp.eye(2))          # an AnalyticEnergy
      >>> noise = from_pair(g.sample, lambda x: -g.energy_fn(None, x) - g.log_z, (2,))
      >>> round(float(noise.log_prob(jnp.zeros(2))), 4)    # -log 2π
      -1.8379
    """
    if not callable(sample):
        raise ValueError(f"sample={sample!r}: expected a callable "
                         "sample(rng_key, n) -> [n, *shape]")
    if not callable(log_prob):
        raise ValueError(f"log_prob={log_prob!r}: expected a callable log_prob(x) -> scalar")
    shape = _check_shape(shape)
    noise = NoiseDistribution(sample, log_prob, shape)
    check_noise(noise, shape, who="from_pair")
    return noise
