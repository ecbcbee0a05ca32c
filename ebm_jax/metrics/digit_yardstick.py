"""A yardstick for generated 8x8 digits: distances to the test digits in a fixed feature space.

:func:`score_digits` embeds generated digits and the 360 test digits of
:func:`ebm_jax.data.load_digits` with the shipped digit classifier's feature layer
(:func:`ebm_jax.metrics.digit_features`, 32 features) and compares the two sets:

* ``frechet_distance``: the FID formula on these features (lower is better; biased upwards
  at small sample sizes, so compare at equal sizes);
* ``kid`` (and ``kid_std``): unbiased polynomial-kernel MMD², averaged over subsets of
  ``min(1000, N, 360)`` rows (0 for the data's own distribution, at any size);
* ``precision`` and ``recall`` (k = 3) and ``density`` and ``coverage`` (k = 5): fidelity
  and diversity from k-nearest-neighbour balls (:func:`~ebm_jax.metrics.precision_recall`,
  :func:`~ebm_jax.metrics.density_coverage`).

What the data itself scores (the floor) is measured by scoring real digits that are not the
test digits: ``score_digits(load_digits().x_train)``; see ``benchmarks/sample_quality.py``
and the README's table. :func:`digit_diversity` adds, for class-conditional samples, the
mean pairwise pixel distance within each class relative to the test digits of that class
(1: as varied as the data; near 0: the class collapsed onto one image).

Example::

    >>> from ebm_jax.data import load_digits
    >>> train = load_digits().x_train                     # real digits, not the test ones
    >>> scores = score_digits(train[:500], kid_subsets=10)
    >>> sorted(scores) == sorted(YARDSTICK_KEYS + ("kid_std", "num_samples"))
    True
    >>> scores["precision"] > 0.5, scores["kid"] < 0.05
    (True, True)
    >>> noise = np.random.default_rng(0).uniform(-1, 1, (500, 64))
    >>> score_digits(noise, kid_subsets=10)["precision"]    # nothing like a digit
    0.0
"""
from __future__ import annotations

import functools
from typing import Optional

import jax
import numpy as np

from ebm_jax.metrics.digit_classifier import digit_features
from ebm_jax.metrics.sample_quality import (ClassDiversity, class_diversity, density_coverage,
                                            frechet_distance, kid, precision_recall)

__all__ = ["MIN_SAMPLES", "YARDSTICK_KEYS", "digit_diversity", "reference_digits",
           "score_digits"]

YARDSTICK_KEYS = ("frechet_distance", "kid", "precision", "recall", "density", "coverage")
PRECISION_RECALL_K = 3   # Kynkäänniemi et al. 2019
DENSITY_COVERAGE_K = 5   # Naeem et al. 2020
KID_SUBSET_SIZE = 1000   # at most; never more than either set's size
MIN_SAMPLES = PRECISION_RECALL_K + 1  # a 3rd nearest neighbour among the other samples


@functools.lru_cache(maxsize=1)
def reference_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 360 test digits ``[360, 64]`` and their labels ``[360]``
    (:func:`ebm_jax.data.load_digits`' fixed split): the reference of every score here."""
    from ebm_jax.data import load_digits

    data = load_digits()
    return data.x_test, data.y_test


@functools.lru_cache(maxsize=1)
def _reference_features() -> np.ndarray:
    return digit_features(reference_digits()[0])


def score_digits(samples, *, kid_subsets: int = 100,
                 rng_key: Optional[jax.Array] = None) -> dict:
    """Generated digits against the test digits, on the digit classifier's features.

    Args:
      samples: ``[N, 64]`` generated digits (or ``[N, 8, 8]``), pixels scaled as
        :func:`ebm_jax.data.load_digits` scales them ([-1, 1]); ``N >= 4``.
      kid_subsets: subsets KID averages over (100 in the literature; fewer is faster and
        noisier, ``kid_std`` says how noisy one subset is).
      rng_key: a JAX key choosing KID's subsets (default fixed: reproducible).

    Returns:
      ``{frechet_distance, kid, kid_std, precision, recall, density, coverage, num_samples}``
      (Python floats; ``num_samples`` an int).

    Raises:
      ValueError: fewer than :data:`MIN_SAMPLES` samples, a shape other than 64 pixels per
        sample, or non-finite pixels.
    """
    from threadpoolctl import threadpool_limits

    generated = digit_features(samples)
    if len(generated) < MIN_SAMPLES:
        raise ValueError(f"samples has {len(generated)} digits: expected at least "
                         f"{MIN_SAMPLES} (precision and recall need the {PRECISION_RECALL_K}rd "
                         "nearest neighbour of each sample among the others)")
    real = _reference_features()
    subset = min(KID_SUBSET_SIZE, len(generated), len(real))
    # Matrices of a few hundred rows by 32: BLAS threads cost more than they save (KID took
    # 7.4 s with OpenBLAS's threads on a busy 2-core machine, 0.43 s with one).
    with threadpool_limits(1, user_api="blas"):
        kid_result = kid(real, generated, num_subsets=kid_subsets, subset_size=subset,
                         rng_key=rng_key)
        fidelity = precision_recall(real, generated, k=PRECISION_RECALL_K)
        coverage = density_coverage(real, generated, k=DENSITY_COVERAGE_K)
        distance = frechet_distance(real, generated)
    return {"frechet_distance": distance, "kid": kid_result.mean,
            "kid_std": kid_result.std, "precision": fidelity.precision,
            "recall": fidelity.recall, "density": coverage.density,
            "coverage": coverage.coverage, "num_samples": len(generated)}


def digit_diversity(samples, labels) -> ClassDiversity:
    """How varied class-conditional digits are within each class, relative to the test digits.

    For each class, the mean pairwise distance (in pixels, [-1, 1] scale) between the samples
    generated for it, divided by the same for the 36 test digits of that class
    (:func:`~ebm_jax.metrics.class_diversity`).

    Args:
      samples: ``[N, 64]`` class-conditional samples (or ``[N, 8, 8]``).
      labels: ``[N]`` the class each was generated for, in 0..9.

    Returns:
      A :class:`~ebm_jax.metrics.ClassDiversity`: ``ratio`` (the mean over classes; 1 for
      samples as varied as the data, near 0 for one image per class) and ``by_class [10]``.

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()
      >>> round(digit_diversity(data.x_train, data.y_train).ratio, 1)   # other real digits
      1.0
      >>> one_each = np.stack([data.x_train[data.y_train == c][0] for c in range(10)])
      >>> digit_diversity(np.repeat(one_each, 10, 0), np.repeat(np.arange(10), 10)).ratio
      0.0
    """
    real, real_labels = reference_digits()
    samples = np.asarray(samples, np.float64)
    return class_diversity(samples.reshape(len(samples), -1), labels, real, real_labels,
                           num_classes=10)
