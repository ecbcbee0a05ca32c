"""The class-energy backends against what they are defined to be: the kernel classifier's
logits and bandwidths computed independently in NumPy, padding that changes nothing, and the
network backend's NCE reading of a known density."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from ebm_jax.applications.tabular import (LOO_GRID, MIN_DIAGONAL_SHARE, SharedKernelParams,
                                          class_energy, class_sampler, in_context_backend,
                                          kernel_backend, loo_bandwidth, network_backend,
                                          pooled_within_class_std, scott_bandwidth,
                                          scott_diagonal_bandwidth, scott_pooled_bandwidth,
                                          shared_kernel_energy)


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


def test_the_diagonal_bandwidth_is_scotts_rule_per_feature_with_a_floor():
    rows, _ = _class(0, n=40, d=3)
    rows = rows * np.array([1.0, 0.3, 0.0], np.float32)  # the last feature constant
    n, d = rows.shape
    std = rows.std(0)
    expected = np.maximum(std, MIN_DIAGONAL_SHARE * std.mean()) * n ** (-1 / (d + 4))
    np.testing.assert_allclose(scott_diagonal_bandwidth(rows, np.ones(n, bool)), expected,
                               rtol=1e-5)


def test_the_pooled_bandwidth_is_scotts_rule_per_feature_with_the_within_class_spread():
    """Two classes of 7 and 4 rows in 3 features, padded to 7 with values that must not count:
    each feature's spread is the squared deviations from each row's own class mean, summed
    and divided by 11 - 2 (computed in NumPy); each class's bandwidth takes Scott's factor of
    its own count. The table-level statistic is what the backend hands each class's fit."""
    rng = np.random.default_rng(4)
    first = (rng.normal(size=(7, 3)) * [1.0, 0.2, 0.0]).astype(np.float32)
    second = (rng.normal(size=(4, 3)) * [0.5, 0.4, 0.0] + 3.0).astype(np.float32)
    rows = np.full((2, 7, 3), 9.0, np.float32)
    rows[0], rows[1, :4] = first, second
    mask = np.arange(7)[None] < np.array([[7], [4]])
    deviations = np.concatenate([first - first.mean(0), second - second.mean(0)])
    spread = np.sqrt((deviations ** 2).sum(0) / (11 - 2))
    np.testing.assert_allclose(pooled_within_class_std(rows, mask), spread, rtol=1e-5)
    floored = np.maximum(spread, MIN_DIAGONAL_SHARE * spread.mean())  # the constant feature
    backend = kernel_backend("scott_pooled")
    initial = backend.init_from_table(jnp.asarray(rows), jnp.asarray(mask))
    for c, n in enumerate((7, 4)):
        expected = floored * n ** (-1 / (3 + 4))
        np.testing.assert_allclose(scott_pooled_bandwidth(rows[c], mask[c], spread), expected,
                                   rtol=1e-5)
        params = backend.fit(None, initial[c], rows[c], mask[c], np.zeros((2, 3), np.float32))
        np.testing.assert_allclose(params.bandwidth, expected, rtol=1e-5)
    alone = backend.fit(None, backend.init(None, 3), first, np.ones(7, bool),
                        np.zeros((2, 3), np.float32))  # a class fitted alone: unit spreads
    np.testing.assert_allclose(alone.bandwidth, np.full(3, 7 ** (-1 / 7)), rtol=1e-5)
    assert kernel_backend("scott_diagonal").init_from_table is None


def test_a_diagonal_bandwidth_reads_the_kernel_sums_per_feature():
    """Logits with ``h = (0.5, 0.9, 1.3)`` against NumPy; equal widths give the scalar
    kernel's logits and the shared ablation's energy."""
    rows, negatives = _class()
    backend = kernel_backend("scott_diagonal")
    params = backend.fit(None, (), rows, np.ones(len(rows), bool), negatives)
    widths = np.array([0.5, 0.9, 1.3], np.float32)
    params = params._replace(bandwidth=jnp.asarray(widths))
    point = np.array([0.3, -1.0, 2.0], np.float32)
    real = logsumexp(-(((point - rows) / widths) ** 2).sum(1) / 2)
    fake = logsumexp(-(((point - negatives) / widths) ** 2).sum(1) / 2)
    np.testing.assert_allclose(backend.logits(params, point), [real, fake], rtol=1e-5)
    np.testing.assert_allclose(backend.step_scale(params), widths ** 2, rtol=1e-6)
    scalar = params._replace(bandwidth=jnp.float32(0.7))
    equal = params._replace(bandwidth=jnp.full(3, 0.7, jnp.float32))
    np.testing.assert_allclose(backend.logits(equal, point), backend.logits(scalar, point),
                               rtol=1e-6)
    both = np.stack([rows, rows + 1.0])
    shared = [SharedKernelParams(both, jnp.zeros((2, len(rows))), widths_k, jnp.array(0))
              for widths_k in (jnp.array([0.7, 1.1]), jnp.array([[0.7] * 3, [1.1] * 3]))]
    np.testing.assert_allclose(shared_kernel_energy(shared[1], point),
                               shared_kernel_energy(shared[0], point), rtol=1e-6)


@pytest.mark.slow
def test_diagonal_steps_sample_the_kernel_density_in_every_feature():
    """Five rows spread 1 and 0.1 apart in two features; the temperature form with each
    feature's step in units of its own squared bandwidth (noise ``sqrt(2 step)`` per feature)
    samples the kernel density: each feature's variance is the rows' plus ``h_j^2`` (2,000
    chains: a variance's standard error is 3%; the tolerance 10%). One step for both features
    (the smallest) leaves the wide feature 25% short in 200 steps."""
    rows = (np.random.default_rng(3).normal(size=(5, 2)) * [1.0, 0.1]).astype(np.float32)
    mask = np.ones(5, bool)
    negatives = np.array([[5.0, 5.0], [-5.0, -5.0], [5.0, -5.0], [-5.0, 5.0]], np.float32)
    backend = kernel_backend("scott_diagonal")
    params = backend.fit(None, (), rows, mask, negatives)
    scale = backend.step_scale(params)
    sample = jax.jit(class_sampler(class_energy(backend), 2000, num_steps=200))
    x = np.asarray(sample(jax.random.key(0), params, rows, mask, scale, jnp.sqrt(0.2 * scale)))
    expected = rows.var(0) + np.asarray(params.bandwidth) ** 2
    np.testing.assert_allclose(x.var(0), expected, rtol=0.10)


@pytest.mark.slow
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
    ("silverman", r"bandwidth='silverman': expected one of \['scott', 'loo', 'scott_diagonal', "
                  r"'scott_pooled'\]"),
    (-1.0, "bandwidth=-1.0"),
])
def test_a_bad_bandwidth_is_named(bad, message):
    with pytest.raises(ValueError, match=message):
        kernel_backend(bad)


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_the_network_reads_the_log_density_of_a_gaussian_class():
    """A 1-D standard normal class against noise twice as wide (``noise_scale=2``, so that the
    network has a log-ratio to learn): the noise is N(mean, (2 std)^2) of its rows, the network's
    output r the NCE estimate of log N(x) - log q(x), and the real logit log q + r the class's
    log-density, so logit(0) - logit(x) = x^2 / 2 inside the class's bulk (400 rows pin the
    differences to about 0.15 at |x| <= 1.5); the surrogate logit is log q itself. A network
    trained with the labels swapped, or a real logit without log q, misses by far."""
    rows = jax.random.normal(jax.random.key(0), (400, 1))
    negatives = jnp.array([[-5.0], [5.0]])
    backend = network_backend(hidden=(32, 32), num_steps=400, learning_rate=1e-2,
                              noise_scale=2.0)
    params = jax.jit(backend.fit)(jax.random.key(2), backend.init(jax.random.key(1), 1), rows,
                                  jnp.ones(400, bool), negatives)
    std = 2.0 * np.sqrt(np.var(np.asarray(rows)) + 0.1 ** 2)
    np.testing.assert_allclose(params.std, [std], rtol=1e-5)
    np.testing.assert_allclose(params.mean, np.asarray(rows).mean(0), atol=1e-6)
    points = jnp.array([[0.0], [0.75], [-0.75], [1.5], [-1.5]])
    logits = jax.vmap(backend.logits, (None, 0))(params, points)
    log_q = -0.5 * ((points[:, 0] - params.mean[0]) / std) ** 2 - np.log(std * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(logits[:, 1], log_q, rtol=1e-5)
    np.testing.assert_allclose(logits[0, 0] - logits[1:, 0], points[1:, 0] ** 2 / 2, atol=0.25)
    assert float(backend.step_scale(params)) == pytest.approx(std ** 2, rel=1e-5)


@pytest.mark.slow
def test_network_chains_sample_their_class_in_30_dimensions():
    """Two 30-D Gaussian classes of 20 rows (std 1, one column std 0.05), sampled in the
    temperature form for 200 steps from the rows: the chains sample the class (per-coordinate
    std within 0.6-1.4 of 1, the mean within 0.5 of the centre on average: 20 rows leave it
    0.22 off; every coordinate within 6), and stay finite. Before, with uniform noise in the
    box as the NCE noise and no log q in the logits, the network's log-ratio grew away from the
    rows and the chains ran off to 30 standardised units; without the step scaled by the
    noise's variance the tight column's curvature (80) blows the chains up."""
    from ebm_jax.applications.tabular import TabEBM

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(20, 30)), rng.normal(size=(20, 30)) + 3.0])
    X[:, 0] *= 0.05
    y = np.repeat([0, 1], 20)
    model = TabEBM(backend="network", noise_scale=None, network_steps=200).fit(X, y)
    synthetic, labels = model.generate(40, seed=0)
    assert np.all(np.isfinite(synthetic))
    for c, centre in ((0, 0.0), (1, 3.0)):
        part = synthetic[labels == c][:, 1:]
        assert np.abs(part - centre).max() < 6.0
        assert 0.6 < part.std(0).mean() < 1.4
        assert np.abs(part.mean(0) - centre).mean() < 0.5
        assert synthetic[labels == c][:, 0].std() < 0.3  # the tight column stays tight
