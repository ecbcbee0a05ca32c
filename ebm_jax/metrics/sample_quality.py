"""Sample quality on feature vectors: KID, Fréchet distance (FID) and kernel MMD.

All four measures compare two sets of *features*, ``[N, D]`` and ``[M, D]``:
whatever network (or identity map) produced them is the user's choice, and the
numbers are only comparable between runs that used the same feature extractor
and preprocessing.

* :func:`kid`: kernel inception distance (Bińkowski et al. 2018), the unbiased
  squared MMD with the cubic polynomial kernel ``k(a, b) = (a·b / D + 1)³``,
  averaged over random subsets. Unbiased at any sample size, so it can be
  compared across sample sizes (FID cannot).
* :func:`frechet_distance` / :func:`frechet_distance_from_statistics`: the FID
  formula ``|μ₁ - μ₂|² + Tr(Σ₁ + Σ₂ - 2 (Σ₁ Σ₂)^{1/2})`` (Heusel et al. 2017) on
  Gaussians fitted to the features. Biased upwards at finite ``N`` (by about
  ``D (D + 1) / (2N)`` plus ``2D / N`` for two samples of one distribution with
  identity covariance), so compare FIDs only at equal sample sizes.
* :func:`fid`: features by a user-supplied ``feature_fn``, in batches, then
  :func:`frechet_distance`.
* :func:`kernel_mmd`: unbiased squared MMD on the full sets, Gaussian kernel
  (our :func:`~ebm_jax.metrics.mmd`) or polynomial kernel.
* :func:`precision_recall` (Kynkäänniemi et al. 2019) and :func:`density_coverage` (Naeem et
  al. 2020): fidelity and diversity as two numbers each, from k-nearest-neighbour balls
  around the feature vectors. Unlike the three distances above they are asymmetric: the
  first argument is the real set, the second the generated one.
* :func:`class_diversity`: how varied the samples generated for each class are, as the
  mean pairwise distance within a class relative to the real examples of that class.

These are evaluation code: the statistics are computed in float64 with NumPy and
SciPy on the host (FID needs the trace of a matrix square root of products of
``D x D`` covariances, which float32 gets visibly wrong for ``D = 2048``), not
jitted, and return Python floats.

Example::

    >>> rng = np.random.default_rng(0)
    >>> fx, fy = rng.normal(size=(500, 4)), 1.0 + rng.normal(size=(500, 4))   # [N, D], [M, D]
    >>> round(frechet_distance(fx, fy))                   # ≈ |Δμ|² = 4 (the same covariance)
    4
    >>> bool(kid(fx, fy, num_subsets=10, subset_size=100).mean > 0)
    True
"""
from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.metrics.mmd import mmd

__all__ = ["ClassDiversity", "DensityCoverage", "KIDResult", "PrecisionRecall",
           "class_diversity", "density_coverage", "extract_features", "fid",
           "frechet_distance", "frechet_distance_from_statistics", "gaussian_statistics",
           "kernel_mmd", "kid", "kth_neighbour_distances", "mean_pairwise_distance",
           "precision_recall"]

_KERNELS = ("gaussian", "polynomial")
_CHUNK_ELEMENTS = 2**22  # kernel entries per vectorised chunk of subsets (32 MiB of float64)


class KIDResult(NamedTuple):
    """The outcome of :func:`kid`.

    Attributes:
      mean: KID, the mean of the per-subset unbiased MMD² estimates (report this;
        papers often report it x 1000). It can be slightly negative.
      std: their standard deviation over subsets (``ddof=1``; 0 for one subset):
        the spread of a single subset's estimate, not the standard error of
        ``mean`` (subsets overlap, so ``std / sqrt(num_subsets)`` underestimates that).
      values: ``[num_subsets]`` the per-subset estimates.
    """

    mean: float
    std: float
    values: np.ndarray


# -- checks -----------------------------------------------------------------------------

def _as_features(name: str, features) -> np.ndarray:
    try:
        f = np.asarray(features, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={type(features).__name__}: expected a [N, D] array of "
                         "features") from None
    if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(f"{name} has shape {f.shape}: expected [N, D] features with N >= 2 "
                         "examples (flatten or pool per-example features first)")
    if not np.all(np.isfinite(f)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(f)))} non-finite values: "
                         "expected finite features")
    return f


def _as_pair(features_x, features_y, names=("features_x", "features_y")
             ) -> tuple[np.ndarray, np.ndarray]:
    x = _as_features(names[0], features_x)
    y = _as_features(names[1], features_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"{names[0]} has shape {x.shape} and {names[1]} {y.shape}: expected "
                         "the same feature dimension D (features from the same extractor)")
    return x, y


def _check_int(name: str, value, minimum: int) -> int:
    return check_int(name, value, minimum, expected=f"a Python int >= {minimum}")


def _check_poly(degree, gamma, coef0, dim: int) -> tuple[int, float, float]:
    degree = _check_int("degree", degree, 1)
    if gamma is None:
        gamma = 1.0 / dim
    elif isinstance(gamma, (bool, np.bool_)) or not isinstance(gamma, numbers.Real) \
            or not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma={gamma!r}: expected a positive finite number or None (1 / D)")
    if isinstance(coef0, (bool, np.bool_)) or not isinstance(coef0, numbers.Real) \
            or not (math.isfinite(coef0) and coef0 >= 0):
        raise ValueError(f"coef0={coef0!r}: expected a non-negative finite number")
    return degree, float(gamma), float(coef0)


# -- polynomial-kernel MMD ----------------------------------------------------------------

def _poly_mmd2(x: np.ndarray, y: np.ndarray, degree: int, gamma: float,
               coef0: float) -> np.ndarray:
    """Unbiased MMD² for stacks of sets ``x [S, n, D]``, ``y [S, m, D]`` -> ``[S]``.

    ``Σ_{i≠j} k(x_i, x_j) / (n(n-1)) + Σ_{i≠j} k(y_i, y_j) / (m(m-1))
    - 2 Σ_ij k(x_i, y_j) / (nm)``: the within-set terms drop the diagonal (a
    U-statistic), the cross term needs nothing dropped (x and y are independent).
    """
    def k(a, b):
        base = np.matmul(a, np.swapaxes(b, 1, 2))
        base *= gamma
        base += coef0
        out = base.copy()
        for _ in range(degree - 1):  # an integer power by products: ~10x faster than **
            out *= base
        return out

    def within(a):
        kaa = k(a, a)
        n = a.shape[1]
        return (kaa.sum((1, 2)) - np.trace(kaa, axis1=1, axis2=2)) / (n * (n - 1))

    return within(x) + within(y) - 2.0 * k(x, y).mean((1, 2))


def _rng(rng_key) -> np.random.Generator:
    """A NumPy generator seeded by a JAX PRNG key (default ``PRNGKey(0)``: reproducible)."""
    if rng_key is None:
        return np.random.default_rng(0)
    try:
        data = np.asarray(jax.random.key_data(rng_key))
    except (TypeError, ValueError):
        raise ValueError(f"rng_key={rng_key!r}: expected a JAX PRNG key "
                         "(jax.random.key(0) or jax.random.PRNGKey(0)) or None") from None
    return np.random.default_rng([int(v) for v in data.ravel()])


def _std(values: np.ndarray) -> float:
    """``std(values, ddof=1)`` (0 for one value) without overflowing for huge values: the
    squares of 1e160 overflow float64, so the values are scaled by their largest magnitude."""
    if len(values) < 2:
        return 0.0
    top = float(np.max(np.abs(values)))
    if top == 0.0 or not math.isfinite(top):
        return 0.0 if top == 0.0 else float("nan")
    return top * float(np.std(values / top, ddof=1))


def kid(features_x, features_y, *, num_subsets: int = 100, subset_size: int = 1000,
        degree: int = 3, gamma: Optional[float] = None, coef0: float = 1.0,
        rng_key: Optional[jax.Array] = None) -> KIDResult:
    """Kernel inception distance: unbiased polynomial-kernel MMD² averaged over subsets.

    For each of ``num_subsets`` subsets, ``subset_size`` rows of ``features_x``
    and of ``features_y`` are drawn without replacement and the unbiased MMD²
    (Bińkowski, Sutherland, Arbel & Gretton 2018) with ``k(a, b) = (γ a·b + c)^degree``
    (``γ = 1/D``, ``c = 1``, degree 3: the KID kernel) is computed; the result is
    their mean and standard deviation. Each subset's estimate is unbiased, so
    ``mean`` is an unbiased estimate of the population MMD² at any subset size
    (the biased V-statistic would be off by ``O(1 / subset_size)``).

    Computed in float64 NumPy (``3 subset_size² D`` multiply-adds per subset:
    ~6 GFLOP for the common ``subset_size = 1000``, ``D = 2048``).

    Args:
      features_x: ``[N, D]`` features of one sample (e.g. real data).
      features_y: ``[M, D]`` features of the other (e.g. model samples).
      num_subsets: number of subsets ``S >= 1`` (100 in the literature).
      subset_size: rows per subset, ``2 <= subset_size <= min(N, M)`` (1000 in
        the literature; use ``min(N, M)`` for small sets).
      degree, gamma, coef0: the polynomial kernel; ``gamma=None`` means ``1 / D``.
      rng_key: a JAX PRNG key choosing the subsets; ``None`` uses a fixed key,
        so that the metric is reproducible.

    Returns:
      A :class:`KIDResult` ``(mean, std, values [S])``.

    Example::

      >>> rng = np.random.default_rng(0)
      >>> real_features, sample_features = rng.normal(size=(500, 4)), rng.normal(size=(500, 4))
      >>> res = kid(real_features, sample_features, num_subsets=10, subset_size=100)
      >>> bool(abs(res.mean) < 3 * res.std), res.values.shape    # ≈ 0: one distribution
      (True, (10,))
    """
    x, y = _as_pair(features_x, features_y)
    num_subsets = _check_int("num_subsets", num_subsets, 1)
    subset_size = _check_int("subset_size", subset_size, 2)
    if subset_size > min(len(x), len(y)):
        raise ValueError(f"subset_size={subset_size} with {len(x)} rows in features_x and "
                         f"{len(y)} in features_y: expected subset_size <= {min(len(x), len(y))} "
                         "(subsets are drawn without replacement)")
    degree, gamma, coef0 = _check_poly(degree, gamma, coef0, x.shape[1])
    rng = _rng(rng_key)
    chunk = max(1, _CHUNK_ELEMENTS // subset_size**2)
    values = []
    for start in range(0, num_subsets, chunk):
        s = min(chunk, num_subsets - start)
        ix = np.stack([rng.choice(len(x), subset_size, replace=False) for _ in range(s)])
        iy = np.stack([rng.choice(len(y), subset_size, replace=False) for _ in range(s)])
        values.append(_poly_mmd2(x[ix], y[iy], degree, gamma, coef0))
    values = np.concatenate(values)
    return KIDResult(float(np.mean(values)), _std(values), values)


def kernel_mmd(features_x, features_y, kernel: str = "gaussian", *,
               bandwidths: Optional[Sequence[float]] = None, degree: int = 3,
               gamma: Optional[float] = None, coef0: float = 1.0) -> float:
    """Unbiased squared MMD between two full sets of features.

    * ``kernel="gaussian"``: :func:`ebm_jax.metrics.mmd` (a sum of Gaussian
      kernels, bandwidths ``bandwidths`` or multiples of the median distance;
      jitted, float32).
    * ``kernel="polynomial"``: ``k(a, b) = (γ a·b + coef0)^degree``, ``γ = 1/D`` by
      default (the KID kernel: this is :func:`kid` with one subset of everything),
      float64 NumPy; ``O((N + M)² D)`` time and ``O((N + M)²)`` memory.

    Args:
      features_x: ``[N, D]``; features_y: ``[M, D]``.
      kernel: ``"gaussian"`` or ``"polynomial"``.
      bandwidths: Gaussian kernel widths (``kernel="gaussian"`` only).
      degree, gamma, coef0: polynomial kernel (``kernel="polynomial"`` only).

    Returns:
      A Python float, ~0 (possibly slightly negative) for two samples of one distribution.

    Example::

      >>> rng = np.random.default_rng(0)
      >>> fx, fy = rng.normal(size=(200, 4)), 1.0 + rng.normal(size=(200, 4))
      >>> kernel_mmd(fx, fy, "polynomial") > kernel_mmd(fx, fx[::-1], "polynomial")
      True
    """
    x, y = _as_pair(features_x, features_y)
    if kernel not in _KERNELS:
        raise ValueError(f"kernel={kernel!r}: expected 'gaussian' or 'polynomial'")
    if kernel == "gaussian":
        return float(mmd(x.astype(np.float32), y.astype(np.float32), bandwidths))
    degree, gamma, coef0 = _check_poly(degree, gamma, coef0, x.shape[1])
    return float(_poly_mmd2(x[None], y[None], degree, gamma, coef0)[0])


# -- Fréchet distance ---------------------------------------------------------------------

def gaussian_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (``ddof=1``, as pytorch-fid) of ``features [N, D]``,
    in float64: the "statistics" FID compares (store them for a reference set)."""
    f = _as_features("features", features)
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative
    eigenvalues from rounding are clipped to 0)."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
    """``|μ₁ - μ₂|² + Tr(Σ₁) + Tr(Σ₂) - 2 Tr((Σ₁ Σ₂)^{1/2})``, the Fréchet (2-Wasserstein²)
    distance between ``N(μ₁, Σ₁)`` and ``N(μ₂, Σ₂)``.

    The trace of the square root is computed stably: ``Σ₁ Σ₂`` has the same
    eigenvalues as the symmetric PSD ``Σ₁^{1/2} Σ₂ Σ₁^{1/2}``, so
    ``Tr((Σ₁ Σ₂)^{1/2}) = Σ_i sqrt(λ_i(Σ₁^{1/2} Σ₂ Σ₁^{1/2}))`` with two symmetric
    eigendecompositions (no general ``sqrtm``, no complex round-off, singular
    covariances welcome: e.g. fewer samples than features). With singular
    covariances the result is exact up to ~1e-7 of ``Tr(Σ₁) + Tr(Σ₂)`` (square roots
    of eigenvalues that are 0 up to rounding).

    Args:
      mu1, mu2: ``[D]`` means; sigma1, sigma2: ``[D, D]`` symmetric PSD covariances.

    Example::

      >>> frechet_distance_from_statistics(np.zeros(2), np.eye(2), np.ones(2), np.eye(2))
      2.0
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else None
    if d is None or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 "
                         f"{s2.shape}: expected means [D] and covariances [D, D] of one D "
                         f"(D from mu1)")
    for name, value in (("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{name} has non-finite values: expected finite statistics")
    for name, s in (("sigma1", s1), ("sigma2", s2)):
        scale = max(float(np.max(np.abs(s))), 1e-300)
        if not np.allclose(s, s.T, rtol=1e-6, atol=1e-9 * scale):
            raise ValueError(f"{name} is not symmetric: expected a covariance matrix")
    s1, s2 = 0.5 * (s1 + s1.T), 0.5 * (s2 + s2.T)
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    eigenvalues = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    trace_sqrt = float(np.sum(np.sqrt(np.clip(eigenvalues, 0.0, None))))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def frechet_distance(features_x, features_y) -> float:
    """The FID formula on two sets of features ``[N, D]`` and ``[M, D]`` (see
    :func:`frechet_distance_from_statistics`); float64 NumPy.

    With an InceptionV3 pool3 feature map this *is* FID; with any other feature
    map it is a Fréchet distance in that space (not comparable with published
    FIDs). Biased upwards at finite sample sizes (module docstring): compare
    values computed with equal ``N``, and use ``N >= D`` (50,000 samples is the
    convention for ``D = 2048``).

    Example::

      >>> rng = np.random.default_rng(0)
      >>> real_features = rng.normal(size=(1000, 4))
      >>> round(frechet_distance(real_features, 2.0 * real_features), 1)   # tr Σ (2 - 1)² ≈ D
      4.0
    """
    x, y = _as_pair(features_x, features_y)
    return frechet_distance_from_statistics(*gaussian_statistics(x), *gaussian_statistics(y))


def extract_features(x, feature_fn: Callable, batch_size: int) -> np.ndarray:
    """Apply ``feature_fn`` to ``x [N, ...]`` in batches of exactly ``batch_size``.

    The last batch is padded (by repeating its last example) to ``batch_size``
    and the padding's features dropped, so a jitted ``feature_fn`` compiles once.
    This assumes ``feature_fn`` treats examples independently (e.g. batch norm in
    inference mode).

    Returns:
      ``[N, D]`` float64 features.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if not callable(feature_fn):
        raise ValueError(f"feature_fn={feature_fn!r}: expected a callable [B, ...] -> [B, D]")
    x = np.asarray(x)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x has shape {x.shape}: expected [N, ...] examples with N >= 1")
    out = []
    for start in range(0, x.shape[0], batch_size):
        batch = x[start:start + batch_size]
        n = batch.shape[0]
        if n < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - n, axis=0)])
        f = np.asarray(feature_fn(batch), np.float64)
        if f.ndim != 2 or f.shape[0] != batch_size:
            raise ValueError(f"feature_fn returned shape {f.shape} for a batch of shape "
                             f"{batch.shape}: expected [{batch_size}, D] (one feature vector "
                             "per example)")
        out.append(f[:n])
    return np.concatenate(out)


def fid(x, y, feature_fn: Callable, batch_size: int = 100) -> float:
    """Fréchet distance between ``feature_fn`` features of ``x [N, ...]`` and ``y [M, ...]``.

    No network weights are downloaded or bundled: ``feature_fn`` is yours,
    ``[B, ...] -> [B, D]``, typically a jitted JAX function. For the standard FID:

    * use an InceptionV3 whose weights are the TF-slim/pytorch-fid ones
      (``pt_inception-2015-12-05``), converted by you to Flax/JAX (e.g. with a
      port such as ``jax-fid`` or by loading the PyTorch state dict into an
      equivalent Flax module), and return the 2048-d pool3 features (the global
      average pool before the logits);
    * preprocess as the reference implementation does: images in ``[0, 255]``
      (or ``[0, 1]``) mapped to ``[-1, 1]``, resized to 299 x 299 bilinearly,
      grayscale images repeated to 3 channels;
    * use 50,000 samples, and the same ``N`` for every model compared.

    ``feature_fn = jax.jit(lambda imgs: inception_apply(params, preprocess(imgs)))``.

    FIDs computed with different feature extractors, weights, resizing or
    sample sizes are **not comparable** with one another or with published
    numbers; a small domain-specific network (e.g. a classifier trained on the
    data) gives a useful relative measure within one study.

    Args:
      x, y: ``[N, ...]`` and ``[M, ...]`` examples (e.g. real data and samples).
      feature_fn: ``[batch_size, ...] -> [batch_size, D]``.
      batch_size: the batch size ``feature_fn`` sees (every call, last batch padded).

    Returns:
      A Python float.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> digits = load_digits().x_test                       # [360, 64]
      >>> w = jax.random.normal(jax.random.key(0), (64, 16))  # a stand-in feature extractor
      >>> feature_fn = jax.jit(lambda b: jnp.tanh(b @ w))   # [B, 64] -> [B, 16]
      >>> abs(fid(digits[:180], digits[:180], feature_fn, batch_size=64)) < 1e-6   # one sample
      True
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if not callable(feature_fn):
        raise ValueError(f"feature_fn={feature_fn!r}: expected a callable [B, ...] -> [B, D]")
    for name, value in (("x", x), ("y", y)):
        shape = np.shape(value)
        if len(shape) < 1 or shape[0] < 2:
            raise ValueError(f"{name} has shape {shape}: expected [N, ...] examples with N >= 2 "
                             "(a covariance needs at least 2)")
    fx = extract_features(x, feature_fn, batch_size)
    fy = extract_features(y, feature_fn, batch_size)
    return frechet_distance(fx, fy)


# -- precision, recall, density and coverage: k-nearest-neighbour balls ----------------------

_REAL_AND_GENERATED = ("real_features", "generated_features")


class PrecisionRecall(NamedTuple):
    """The outcome of :func:`precision_recall` (Kynkäänniemi et al. 2019).

    Attributes:
      precision: the fraction of generated samples inside the real manifold (the union of
        the real examples' k-nearest-neighbour balls): fidelity.
      recall: the fraction of real examples inside the generated manifold (the union of
        the generated samples' balls): diversity.
    """

    precision: float
    recall: float


class DensityCoverage(NamedTuple):
    """The outcome of :func:`density_coverage` (Naeem et al. 2020).

    Attributes:
      density: the number of real balls that hold a generated sample, averaged over the
        samples and divided by ``k``: 1 in expectation when the two sets come from one
        distribution, below 1 for samples off the data, above 1 for samples crowding
        round the data's dense regions. Not bounded by 1.
      coverage: the fraction of real examples whose ball holds at least one generated
        sample: diversity measured on the real examples' balls only, so that generated
        outliers (whose balls are large) do not inflate it as they inflate recall.
    """

    density: float
    coverage: float


def _check_k(k, sizes: dict) -> int:
    """``1 <= k < N`` for every named set size (a k-th neighbour other than the point
    itself)."""
    k = _check_int("k", k, 1)
    name, smallest = min(sizes.items(), key=lambda item: item[1])
    if k >= smallest:
        raise ValueError(f"k={k} with {smallest} rows in {name}: expected k < {smallest} (the "
                         f"k-th nearest neighbour of a row among the other rows)")
    return k


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[P, C]`` between rows of ``a [P, D]`` and ``b [C, D]`` (float64;
    the dot-product form, clipped at 0 against rounding)."""
    sq = np.sum(a * a, 1)[:, None] + np.sum(b * b, 1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _row_chunks(num_rows: int, num_columns: int):
    """Slices of rows such that each chunk of a ``[num_rows, num_columns]`` matrix holds at
    most :data:`_CHUNK_ELEMENTS` entries."""
    step = max(1, _CHUNK_ELEMENTS // max(num_columns, 1))
    return (slice(start, start + step) for start in range(0, num_rows, step))


def kth_neighbour_distances(features: np.ndarray, k: int) -> np.ndarray:
    """The distance ``[N]`` from each row of ``features [N, D]`` to its ``k``-th nearest
    neighbour among the *other* rows (a duplicate row is a neighbour at distance 0): the
    radius of its ball in :func:`precision_recall` and :func:`density_coverage`.

    Example::

      >>> kth_neighbour_distances(np.array([[0.0], [1.0], [3.0]]), 1)
      array([1., 1., 2.])
    """
    f = _as_features("features", features)
    k = _check_k(k, {"features": len(f)})
    radii = np.empty(len(f))
    for rows in _row_chunks(len(f), len(f)):
        d = _pairwise_distances(f[rows], f)
        index = np.arange(len(f))[rows]
        d[np.arange(len(index)), index] = np.inf  # not its own neighbour
        radii[rows] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def _ball_counts(points: np.ndarray, centres: np.ndarray,
                 radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For balls ``B(centres[c], radii[c])`` (closed, as in both papers): how many balls hold
    each point ``[P]``, and how many points each ball holds ``[C]``."""
    per_point = np.empty(len(points), np.int64)
    per_ball = np.zeros(len(centres), np.int64)
    for rows in _row_chunks(len(points), len(centres)):
        inside = _pairwise_distances(points[rows], centres) <= radii[None, :]
        per_point[rows] = inside.sum(1)
        per_ball += inside.sum(0)
    return per_point, per_ball


def precision_recall(real_features, generated_features, *, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019).

    Each set's manifold is the union of balls round its rows, each ball reaching the row's
    ``k``-th nearest neighbour within its own set. Precision is the fraction of generated
    samples inside the real manifold, recall the fraction of real examples inside the
    generated manifold. A model that makes only a few good images has high precision and low
    recall; one that makes varied images off the data, the reverse.

    Both are biased by the set sizes and ``k`` (a ball reaches past its k-th neighbour only
    to the next points' gaps), so compare values computed with the same ``k`` and sizes; two
    samples of one distribution of equal size have equal expected precision and recall,
    below 1 (about 0.7-0.9 in 8-32 dimensions at ``k = 3`` and a few hundred rows). Float64
    NumPy, ``O(N M D)`` time, memory bounded by chunks of rows.

    Args:
      real_features: ``[N, D]`` features of real examples (the reference set).
      generated_features: ``[M, D]`` features of generated samples.
      k: the neighbour that sets each ball's radius, ``1 <= k < min(N, M)`` (3, as in the
        paper).

    Returns:
      A :class:`PrecisionRecall` of two Python floats in [0, 1].

    Example::

      >>> rng = np.random.default_rng(0)
      >>> real = rng.normal(size=(500, 2))                        # [N, D]
      >>> collapsed = np.repeat(rng.normal(size=(5, 2)), 100, 0)  # [M, D]: 5 distinct samples
      >>> result = precision_recall(real, collapsed)
      >>> result.precision > 0.8, result.recall < 0.05           # good samples, few of them
      (True, True)
    """
    real, generated = _as_pair(real_features, generated_features, _REAL_AND_GENERATED)
    k = _check_k(k, {"real_features": len(real), "generated_features": len(generated)})
    in_real, _ = _ball_counts(generated, real, kth_neighbour_distances(real, k))
    in_generated, _ = _ball_counts(real, generated, kth_neighbour_distances(generated, k))
    return PrecisionRecall(float(np.mean(in_real > 0)), float(np.mean(in_generated > 0)))


def density_coverage(real_features, generated_features, *, k: int = 5) -> DensityCoverage:
    """Density and coverage (Naeem, Oh, Uh, Choi & Yoo 2020), on the real examples' balls.

    Every real example ``X_i`` gets the ball ``B(X_i, r_i)``, ``r_i`` the distance to its
    ``k``-th nearest real neighbour. Density counts the balls holding each generated sample,
    ``Σ_j Σ_i 1[Y_j ∈ B(X_i, r_i)] / (k M)``; coverage is the fraction of real balls that
    hold at least one generated sample. Only real balls are used, so the outliers of a model
    (whose own k-nearest-neighbour balls are large) cannot make its manifold look large.

    Known answers for two independent samples of one continuous distribution (any
    distribution, any dimension): ``E[density] = 1`` exactly, and
    ``E[coverage] = 1 - Π_{i=1..k} (N - i) / (N + M - i)`` (``1 - 2^-k`` for ``M = N``
    large: 0.969 at ``k = 5``).

    Args:
      real_features: ``[N, D]`` features of real examples (the reference set).
      generated_features: ``[M, D]`` features of generated samples.
      k: the neighbour that sets each real ball's radius, ``1 <= k < N`` (5, the paper's
        recommendation).

    Returns:
      A :class:`DensityCoverage` of two Python floats (density >= 0, coverage in [0, 1]).

    Example::

      >>> rng = np.random.default_rng(0)
      >>> real, same = rng.normal(size=(1000, 4)), rng.normal(size=(1000, 4))
      >>> result = density_coverage(real, same)                 # E: 1 and 0.969
      >>> abs(result.density - 1.0) < 0.1, abs(result.coverage - 0.969) < 0.02
      (True, True)
      >>> density_coverage(real, same + 3.0).coverage < 0.1     # samples off the data
      True
    """
    real, generated = _as_pair(real_features, generated_features, _REAL_AND_GENERATED)
    k = _check_k(k, {"real_features": len(real)})
    per_sample, per_real = _ball_counts(generated, real, kth_neighbour_distances(real, k))
    return DensityCoverage(float(per_sample.mean() / k), float(np.mean(per_real > 0)))


# -- diversity within a class -------------------------------------------------------------

class ClassDiversity(NamedTuple):
    """The outcome of :func:`class_diversity`.

    Attributes:
      ratio: the mean over classes of ``by_class`` (classes where it is NaN left out):
        1 for samples as varied within a class as the real examples, near 0 for a
        class that collapsed onto one image.
      by_class: ``[K]`` generated spread / real spread per class (NaN where either set has
        fewer than 2 rows of the class).
      generated_spread: ``[K]`` the mean pairwise distance within each class's samples.
      real_spread: ``[K]`` the same for the real examples.
    """

    ratio: float
    by_class: np.ndarray
    generated_spread: np.ndarray
    real_spread: np.ndarray


def mean_pairwise_distance(x) -> float:
    """The mean Euclidean distance over the ``N (N - 1) / 2`` pairs of rows of ``x [N, ...]``
    (flattened per row); NaN for fewer than 2 rows.

    Example::

      >>> mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]))  # 5, 5, 0
      3.333...
    """
    x = np.asarray(x, np.float64)
    if len(x) < 2:
        return float("nan")
    x = x.reshape(len(x), -1)
    total = 0.0
    for rows in _row_chunks(len(x), len(x)):
        total += float(_pairwise_distances(x[rows], x).sum())
    return total / (len(x) * (len(x) - 1))  # each pair counted twice, the diagonal is 0


def _as_labelled(name: str, x, labels) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} has shape {x.shape}: expected [N, ...] examples")
    x = x.reshape(len(x), -1)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(x)))} non-finite values: "
                         "expected finite examples")
    y = np.asarray(labels)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or np.any(y < 0):
        raise ValueError(f"the labels of {name} have shape {y.shape} and dtype {y.dtype}: "
                         f"expected [{len(x)}] non-negative integer class labels")
    return x, y


def class_diversity(samples, sample_labels, real, real_labels, *,
                    num_classes: Optional[int] = None) -> ClassDiversity:
    """How varied class-conditional samples are: for each class, the mean pairwise distance
    between the samples generated for it, divided by the same for the real examples of it.

    A sampler that collapses onto one image per class scores near 0 whatever the quality
    of that image; 1 means as varied as the data (in the space given: pixels, or the
    features of an extractor). The classes are those the samples were *generated for*
    (``sample_labels``), not a classifier's reading of them.

    Args:
      samples: ``[M, ...]`` class-conditional samples.
      sample_labels: ``[M]`` the class each sample was generated for.
      real: ``[N, ...]`` real examples of the same shape per example.
      real_labels: ``[N]`` their classes.
      num_classes: ``K`` (default: the largest label of either set, plus 1).

    Returns:
      A :class:`ClassDiversity`.

    Example::

      >>> rng = np.random.default_rng(0)
      >>> real, labels = rng.normal(size=(200, 8)), np.repeat(np.arange(2), 100)
      >>> round(class_diversity(real[::-1], labels[::-1], real, labels).ratio, 3)  # the data
      1.0
      >>> collapsed = real[[0, 100]].repeat(50, 0) + 0.01 * rng.normal(size=(100, 8))
      >>> collapsed_labels = np.repeat(np.arange(2), 50)          # one image per class
      >>> class_diversity(collapsed, collapsed_labels, real, labels).ratio < 0.05
      True
    """
    samples, sample_labels = _as_labelled("samples", samples, sample_labels)
    real, real_labels = _as_labelled("real", real, real_labels)
    if samples.shape[1] != real.shape[1]:
        raise ValueError(f"samples have {samples.shape[1]} values per example and real "
                         f"{real.shape[1]}: expected the same shape per example")
    largest = int(max(sample_labels.max(), real_labels.max())) + 1
    if num_classes is None:
        num_classes = largest
    num_classes = _check_int("num_classes", num_classes, 1)
    if largest > num_classes:
        raise ValueError(f"num_classes={num_classes} with labels up to {largest - 1}: "
                         f"expected num_classes >= {largest}")
    generated_spread = np.array([mean_pairwise_distance(samples[sample_labels == c])
                                 for c in range(num_classes)])
    real_spread = np.array([mean_pairwise_distance(real[real_labels == c])
                            for c in range(num_classes)])
    with np.errstate(divide="ignore", invalid="ignore"):
        by_class = np.where(real_spread > 0, generated_spread / real_spread, np.nan)
    measured = by_class[np.isfinite(by_class)]
    ratio = float(measured.mean()) if measured.size else float("nan")
    return ClassDiversity(ratio, by_class, generated_spread, real_spread)
