"""The class-energy backends against what they are defined to be: the kernel classifier's
logits and bandwidths computed independently in NumPy, padding that changes nothing, and the
network backend's NCE reading of a known density."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from ebm_jax.applications.tabular import (LOO_GRID, class_energy, in_context_backend,
                                          kernel_backend, loo_bandwidth, network_backend,
                                          scott_bandwidth)


def _class(seed=0, n=12, d=3):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, d)).astype(np.float32)
    negatives = 5.0 * np.sign(rng.normal(size=(4, d))).astype(np.float32)
    return rows, negatives


def test_kernel_logits_and_energy_are_the_kernel_sums():
    rows, negatives = _class()
    backend = kernel_backend(bandwidth=0.7)
    params = backend.fit(None, (), rows, np.ones(len(rows), bool), negatives)
    x = np.random.default_rng(1).normal(size=(10, 3)).astype(np.float32) * 2
    for point in x:
        real = logsumexp(-((point - rows) ** 2).sum(1) / (2 * 0.7 ** 2))
        fake = logsumexp(-((point - negatives) ** 2).sum(1) / (2 * 0.7 ** 2))
        np.testing.assert_allclose(backend.logits(params, point), [real, fake], rtol=1e-5)
        np.testing.assert_allclose(class_energy(backend)(params, point),
                                   -np.logaddexp(real, fake), rtol=1e-5)


def _scott(rows):
    n, d = rows.shape
    return rows.std(0).mean() * n ** (-1 / (d + 4))


def _loo(rows):
    n, d = rows.shape
    sq = ((rows[:, None] - rows[None]) ** 2).sum(-1)
    best = None
    for factor in LOO_GRID:
        h = rows.std(0).mean() * factor
        log_k = np.where(np.eye(n, dtype=bool), -np.inf, -sq / (2 * h * h))
        value = (logsumexp(log_k, 1) - math.log(n - 1) - d * math.log(h)
                 - 0.5 * d * math.log(2 * math.pi)).sum()
        best = (value, h) if best is None or value > best[0] else best
    return best[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_bandwidths_are_scotts_rule_and_the_leave_one_out_optimum(seed):
    rows, _ = _class(seed, n=40, d=2)
    mask = np.ones(40, bool)
    np.testing.assert_allclose(scott_bandwidth(rows, mask), _scott(rows), rtol=1e-5)
    np.testing.assert_allclose(loo_bandwidth(rows, mask), _loo(rows.astype(np.float64)),
                               rtol=1e-4)


def test_padding_rows_changes_nothing():
    """Rows past the mask (any values) leave bandwidths, logits and gradients as they were."""
    rows, negatives = _class(n=9)
    padded = np.concatenate([rows, np.full((5, 3), 0.3, np.float32)])
    mask = np.arange(14) < 9
    x = jnp.array([0.2, -0.4, 1.0])
    for bandwidth in ("scott", "loo"):
        backend = kernel_backend(bandwidth)
        exact = backend.fit(None, (), rows, np.ones(9, bool), negatives)
        pad = backend.fit(None, (), padded, mask, negatives)
        np.testing.assert_allclose(pad.bandwidth, exact.bandwidth, rtol=1e-6)
        gradient = jax.jit(jax.grad(class_energy(backend), 1))
        np.testing.assert_allclose(gradient(pad, x), gradient(exact, x), rtol=1e-5, atol=1e-6)


def test_an_in_context_function_gets_the_rows_then_the_negatives():
    rows, negatives = _class(n=5)
    seen = {}

    def logits_fn(cx, cy, x):
        seen["x"], seen["y"] = cx, cy
        return jnp.stack([-jnp.sum(x ** 2), 0.0])

    backend = in_context_backend(logits_fn)
    params = backend.fit(None, (), rows, np.ones(5, bool), negatives)
    backend.logits(params, jnp.zeros(3))
    np.testing.assert_array_equal(seen["x"], np.concatenate([rows, negatives]))
    assert seen["y"].tolist() == [0] * 5 + [1] * 4
    assert not backend.vmappable
    with pytest.raises(TypeError, match="logits_fn=3: expected a function"):
        in_context_backend(3)


@pytest.mark.parametrize("bad,message", [
    ("silverman", r"bandwidth='silverman': expected one of \['scott', 'loo'\]"),
    (-1.0, "bandwidth=-1.0"),
])
def test_a_bad_bandwidth_is_named(bad, message):
    with pytest.raises(ValueError, match=message):
        kernel_backend(bad)


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_the_network_reads_the_log_density_ratio_of_a_gaussian_class():
    """A 1-D standard normal class against uniform noise on [-5, 5]: the real logit g is the
    NCE estimate of log N(x) - log U(x) + const, so g(0) - g(x) = x^2 / 2 inside the class's
    bulk. 400 rows pin the differences to about 0.15 at |x| <= 1.5; a network trained with
    the labels swapped reads the negative of the curve and fails by far."""
    rows = jax.random.normal(jax.random.key(0), (400, 1))
    negatives = jnp.array([[-5.0], [5.0]])
    backend = network_backend(hidden=(32, 32), num_steps=400, learning_rate=1e-2)
    params = jax.jit(backend.fit)(jax.random.key(2), backend.init(jax.random.key(1), 1), rows,
                                  jnp.ones(400, bool), negatives)
    points = jnp.array([[0.0], [0.75], [-0.75], [1.5], [-1.5]])
    g = jax.vmap(backend.logits, (None, 0))(params, points)[:, 0]
    assert float(jax.vmap(backend.logits, (None, 0))(params, points)[:, 1].max()) == 0.0
    np.testing.assert_allclose(g[0] - g[1:], points[1:, 0] ** 2 / 2, atol=0.25)
