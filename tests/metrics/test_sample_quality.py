"""Tests of KID, the Fréchet distance (FID) and kernel MMD (``ebm_jax.metrics.sample_quality``).

Truths are computed independently of the code under test: closed forms for Gaussians
(diagonal covariances; the 2x2 identity ``Tr sqrt(M) = sqrt(tr M + 2 sqrt(det M))``;
``scipy.linalg.sqrtm``; the population polynomial-kernel MMD² of two zero-mean Gaussians)
and brute-force double loops. Statistical tolerances are derived in each test.

BLAS is limited to one thread here: on a loaded 2-core machine OpenBLAS's own threads
make small matrix products ~30x slower.

Breakages checked by editing sample_quality.py and restoring it:
  * within-set kernel diagonals kept (the biased V-statistic): test_kid_is_unbiased (+2.1
    off against a tolerance of 0.033), test_polynomial_mmd_matches_brute_force and
    test_kid_of_one_distribution_is_near_zero;
  * n² instead of n(n-1) in the within-set terms: test_kid_is_unbiased (-0.31 off against
    0.021) and the brute-force test;
  * Tr((Σ₁Σ₂)^{1/2}) replaced by Σ sqrt(diag(Σ₁) diag(Σ₂)) (right only for diagonal
    covariances): test_frechet_distance_non_commuting_closed_forms;
  * covariances with ddof=0 instead of 1: test_frechet_distance_of_features_is_the_
    statistics_formula.

Precision, recall, density, coverage and class diversity, broken the same way (each fails
the brute-force loops and at least one statistical test besides):
  * precision and recall returned swapped, or the real and generated sets swapped: the
    collapsed and the broad/narrow sets;
  * a row counted as its own neighbour (radius at the (k-1)-th neighbour): the known answers
    of one distribution (density 0.8, coverage 0.94) and the broad/narrow sets;
  * precision/recall with k = 5 by default, or density/coverage with k = 3: the known
    answers of one distribution;
  * recall's radii from the real set, or density's from the generated set: the collapsed
    and the broad/narrow sets;
  * density not divided by k: the known answers; coverage counted over the generated
    samples instead of the real balls: the collapsed, broad and shifted sets;
  * class diversity grouping the samples by the real labels instead of the ones they were
    generated for: test_class_diversity_is_per_class_spread_relative_to_the_real_class.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_limits

from ebm_jax.metrics.mmd import mmd
from ebm_jax.metrics.sample_quality import (
    ClassDiversity,
    KIDResult,
    class_diversity,
    density_coverage,
    extract_features,
    fid,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
    kernel_mmd,
    kid,
    kth_neighbour_distances,
    mean_pairwise_distance,
    precision_recall,
)


@pytest.fixture(autouse=True, scope="module")
def single_threaded_blas():
    with threadpool_limits(1, user_api="blas"):
        yield


def gaussian_sample(rng, n, mean, cov):
    return np.asarray(mean) + rng.standard_normal((n, len(mean))) @ np.linalg.cholesky(cov).T


# -- Fréchet distance against closed forms ------------------------------------------------

def test_frechet_distance_diagonal_closed_form():
    """Commuting (diagonal) covariances: Tr(S1 + S2 - 2 (S1 S2)^{1/2}) = Σ (√a - √b)²."""
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    a, b = rng.uniform(0.1, 3.0, 6), rng.uniform(0.1, 3.0, 6)
    truth = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b))
    np.testing.assert_allclose(got, truth, rtol=1e-12)
    assert frechet_distance_from_statistics(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(
        0.0, abs=1e-12)


def test_frechet_distance_non_commuting_closed_forms():
    # 2x2: S1 S2 has positive eigenvalues l1, l2 and (√l1 + √l2)² = tr + 2 sqrt(det).
    s1 = np.array([[2.0, 0.9], [0.9, 0.7]])
    s2 = np.array([[0.5, -0.3], [-0.3, 1.5]])
    m = s1 @ s2
    trace_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([1.0, 2.0]), np.array([-0.5, 0.0])
    truth = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    np.testing.assert_allclose(frechet_distance_from_statistics(mu1, s1, mu2, s2), truth,
                               rtol=1e-12)
    # 10-D, against scipy's general matrix square root (pytorch-fid's formula).
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((10, 10)), rng.standard_normal((10, 10))
    s1, s2 = a @ a.T / 10 + 0.1 * np.eye(10), b @ b.T / 10 + 0.1 * np.eye(10)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    truth = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
             - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real))
    got = frechet_distance_from_statistics(mu1, s1, mu2, s2)
    np.testing.assert_allclose(got, truth, rtol=1e-9)
    np.testing.assert_allclose(frechet_distance_from_statistics(mu2, s2, mu1, s1), got,
                               rtol=1e-12)  # symmetric


def test_frechet_distance_of_features_is_the_statistics_formula():
    """frechet_distance = the formula on (mean, covariance with ddof=1), as pytorch-fid."""
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((50, 3)), 2.0 * rng.standard_normal((40, 3)) + 1.0
    mu, sigma = gaussian_statistics(x)
    np.testing.assert_allclose(sigma, np.cov(x.T, ddof=1), rtol=1e-12)
    expected = frechet_distance_from_statistics(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    np.testing.assert_allclose(frechet_distance(x, y), expected, rtol=1e-12)


def test_frechet_distance_of_samples_matches_the_population_value():
    """N = 20,000 per sample of two correlated 3-D Gaussians. Over 100 repetitions the
    sample FID's error had mean -0.0001 and sd 0.019 (its bias, ~(2D + D(D+1)/2) / N ~
    0.001, is below that); the tolerance is 5 sd."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    s1, s2 = a @ a.T / 3 + 0.3 * np.eye(3), b @ b.T / 3 + 0.3 * np.eye(3)
    mu1, mu2 = np.zeros(3), np.array([0.5, -0.2, 0.1])
    truth = frechet_distance_from_statistics(mu1, s1, mu2, s2)
    assert truth > 0.5
    x = gaussian_sample(rng, 20_000, mu1, s1)
    y = gaussian_sample(rng, 20_000, mu2, s2)
    assert abs(frechet_distance(x, y) - truth) < 5 * 0.019


def test_frechet_distance_of_one_distribution_is_its_finite_sample_bias():
    """Two samples of N(0, I_D), N each: FID is ~0 up to its known positive bias
    E ≈ 2D/N (means) + D(D+1)/(2N) (covariances) = 0.013 for D = 8, N = 4000 (200
    repetitions: mean 0.0133, sd 0.0034, range [0.007, 0.028])."""
    rng = np.random.default_rng(4)
    d, n = 8, 4000
    value = frechet_distance(rng.standard_normal((n, d)), rng.standard_normal((n, d)))
    expected = 2 * d / n + d * (d + 1) / (2 * n)
    assert abs(value - expected) < 5 * 0.0034, value
    # A real difference (mean shift 0.3 in one coordinate: +0.09) is far above it.
    shifted = frechet_distance(rng.standard_normal((n, d)), rng.standard_normal((n, d)) + 0.3
                               * np.eye(d)[0])
    assert shifted > expected + 10 * 0.0034


def test_frechet_distance_with_singular_covariances():
    """Fewer samples than features (N = 30 < D = 100): the covariances are singular, the
    trace of the square root stays real and finite; zero features add nothing."""
    rng = np.random.default_rng(5)
    x3, y3 = rng.standard_normal((30, 3)), rng.standard_normal((30, 3)) + 0.5
    pad = np.zeros((30, 97))
    got = frechet_distance(np.hstack([x3, pad]), np.hstack([y3, pad]))
    np.testing.assert_allclose(got, frechet_distance(x3, y3), rtol=1e-9)
    # Identical inputs: 0 up to the rounding of square roots of ~0 eigenvalues
    # (~sqrt(machine eps) each): measured -3.6e-6 against a total variance of ~200.
    x = rng.standard_normal((30, 100))
    assert abs(frechet_distance(x, x)) < 1e-7 * 2 * np.trace(np.cov(x.T))


# -- KID and kernel MMD -----------------------------------------------------------------

def brute_force_poly_mmd2(x, y, degree, gamma, coef0):
    k = lambda a, b: (gamma * float(a @ b) + coef0) ** degree  # noqa: E731
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_polynomial_mmd_matches_brute_force():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((7, 3)) + 0.5
    np.testing.assert_allclose(kernel_mmd(x, y, "polynomial", degree=2, gamma=0.5, coef0=0.3),
                               brute_force_poly_mmd2(x, y, 2, 0.5, 0.3), rtol=1e-12)
    np.testing.assert_allclose(kernel_mmd(x, y, "polynomial"),
                               brute_force_poly_mmd2(x, y, 3, 1 / 3, 1.0), rtol=1e-12)
    # KID with one subset of everything is the same statistic (order does not matter).
    result = kid(x[:5], y[:5], num_subsets=1, subset_size=5)
    assert isinstance(result, KIDResult) and result.std == 0.0
    np.testing.assert_allclose(result.mean, brute_force_poly_mmd2(x[:5], y[:5], 3, 1 / 3, 1.0),
                               rtol=1e-12)


def test_kernel_mmd_gaussian_is_our_mmd():
    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((60, 4)), rng.standard_normal((50, 4)) + 0.3
    np.testing.assert_allclose(kernel_mmd(x, y), float(mmd(jnp.asarray(x, jnp.float32),
                                                           jnp.asarray(y, jnp.float32))),
                               rtol=1e-6)
    np.testing.assert_allclose(kernel_mmd(x, y, "gaussian", bandwidths=[0.5, 2.0]),
                               float(mmd(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                         [0.5, 2.0])), rtol=1e-6)


@pytest.mark.slow
def test_kid_is_unbiased():
    """Mean over many small subsets = the population MMD².

    For zero-mean P = N(0, S_p), Q = N(0, S_q) and k = (γ a·b + 1)³, the odd moments of
    s = a·b vanish and E[s²] = tr(S_a S_b), so MMD² = 3 γ² ||S_p - S_q||_F² exactly
    (0.06375 here). With subsets of 10 the biased V-statistic would be off by ~+2 (measured).
    Tolerance: the subset mean varies by std²/S given the pools, and the pools' own
    U-statistic by at most std² m/N (a U-statistic's variance ratio between sizes N and m
    is <= m/N); 4 sd of the sum. Measured over 5 seeds: z in [-1.3, +1.3]."""
    rng = np.random.default_rng(8)
    n, m, s = 400_000, 10, 40_000
    var_q = np.array([1.5, 1.0, 1.0, 0.7])
    x = rng.standard_normal((n, 4))
    y = rng.standard_normal((n, 4)) * np.sqrt(var_q)
    truth = 3 / 16 * np.sum((1.0 - var_q) ** 2)
    result = kid(x, y, num_subsets=s, subset_size=m, rng_key=jax.random.PRNGKey(0))
    assert result.values.shape == (s,)
    tolerance = 4 * result.std * np.sqrt(1 / s + m / n)
    assert abs(result.mean - truth) < tolerance, (result.mean, truth, tolerance)


@pytest.mark.slow
def test_kid_of_one_distribution_is_near_zero():
    """Same distribution: every subset estimate has mean 0, and their average varies much
    less than one subset's (std); measured |mean| / std = 0.26 here. A shift of 0.3 in
    every coordinate gives a KID ~60 std away."""
    rng = np.random.default_rng(9)
    x, y = rng.standard_normal((2000, 16)), rng.standard_normal((2000, 16))
    same = kid(x, y, num_subsets=100, subset_size=500)
    assert abs(same.mean) < same.std
    shifted = kid(x, y + 0.3, num_subsets=100, subset_size=500)
    assert shifted.mean > 20 * same.std
    # The subsets are chosen by the key: reproducible, and a new key gives new subsets.
    first = kid(x, y, num_subsets=3, subset_size=100, rng_key=jax.random.key(1))
    np.testing.assert_array_equal(
        kid(x, y, num_subsets=3, subset_size=100, rng_key=jax.random.key(1)).values,
        first.values)
    other = kid(x, y, num_subsets=3, subset_size=100, rng_key=jax.random.key(2))
    assert not np.any(np.isin(other.values, first.values))


# -- fid with a user feature_fn -----------------------------------------------------------

def test_fid_uses_feature_fn_in_fixed_size_batches():
    rng = np.random.default_rng(10)
    w = jnp.asarray(rng.standard_normal((16, 5)), jnp.float32)
    seen = []

    @jax.jit
    def features(batch):  # [B, 4, 4] "images" -> [B, 5]
        return jnp.tanh(batch.reshape(batch.shape[0], -1) @ w)

    def feature_fn(batch):
        seen.append(batch.shape)
        return features(batch)

    x = rng.standard_normal((53, 4, 4)).astype(np.float32)
    y = (rng.standard_normal((40, 4, 4)) + 0.5).astype(np.float32)
    got = fid(x, y, feature_fn, batch_size=16)
    assert set(seen) == {(16, 4, 4)}  # the last batches were padded: one compile
    expected = frechet_distance(np.asarray(features(x)), np.asarray(features(y)))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    np.testing.assert_allclose(extract_features(x, feature_fn, 16), np.asarray(features(x)),
                               rtol=1e-6)


# -- argument checks --------------------------------------------------------------------

A4, B5 = np.zeros((10, 4)), np.zeros((10, 5))


@pytest.mark.parametrize("call, message", [
    (lambda: kid(A4, B5, subset_size=5),
     r"features_x has shape \(10, 4\) and features_y \(10, 5\): expected the same feature "
     r"dimension D"),
    (lambda: frechet_distance(A4, B5), r"features_x has shape \(10, 4\) and features_y"),
    (lambda: kernel_mmd(A4, B5), r"features_x has shape \(10, 4\) and features_y"),
    (lambda: kernel_mmd(A4, B5, "polynomial"), r"features_x has shape \(10, 4\)"),
    (lambda: kernel_mmd(A4, A4, "laplacian"),
     r"kernel='laplacian': expected 'gaussian' or 'polynomial'"),
    (lambda: kid(A4, A4, subset_size=11),
     r"subset_size=11 with 10 rows in features_x and 10 in features_y: expected subset_size "
     r"<= 10"),
    (lambda: kid(A4, A4, subset_size=1), r"subset_size=1: expected a Python int >= 2"),
    (lambda: kid(A4, A4, num_subsets=0, subset_size=5), r"num_subsets=0: expected a Python int"),
    (lambda: kid(A4, A4, subset_size=5, degree=0), r"degree=0: expected a Python int >= 1"),
    (lambda: kid(A4, A4, subset_size=5, gamma=-1.0), r"gamma=-1.0: expected a positive"),
    (lambda: kid(A4, A4, subset_size=5, coef0=float("nan")), r"coef0=nan"),
    (lambda: kid(A4, A4, subset_size=5, rng_key="abc"), r"rng_key='abc': expected a JAX PRNG"),
    (lambda: kid(np.zeros(10), A4, subset_size=5),
     r"features_x has shape \(10,\): expected \[N, D\] features with N >= 2"),
    (lambda: frechet_distance(A4, np.full((10, 4), np.nan)),
     r"features_y has 40 non-finite values: expected finite features"),
    (lambda: frechet_distance(np.zeros((1, 4)), A4), r"features_x has shape \(1, 4\)"),
    (lambda: frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)),
     r"mu1 \(3,\), sigma1 \(3, 3\), mu2 \(2,\), sigma2 \(2, 2\): expected means \[D\] and "
     r"covariances \[D, D\] of one D"),
    (lambda: frechet_distance_from_statistics(np.zeros(2), np.array([[1.0, 0.5], [0.0, 1.0]]),
                                              np.zeros(2), np.eye(2)),
     r"sigma1 is not symmetric"),
    (lambda: fid(np.zeros((1, 4)), np.zeros((5, 4)), lambda b: b, 2),
     r"x has shape \(1, 4\): expected \[N, ...\] examples with N >= 2"),
    (lambda: fid(np.zeros((5, 4)), np.zeros((5, 4)), "inception", 2),
     r"feature_fn='inception': expected a callable"),
    (lambda: fid(np.zeros((5, 4)), np.zeros((5, 4)), lambda b: b, 0),
     r"batch_size=0: expected a Python int >= 1"),
    (lambda: fid(np.zeros((5, 4)), np.zeros((5, 4)), lambda b: b.sum(1), 2),
     r"feature_fn returned shape \(2,\) for a batch of shape \(2, 4\): expected \[2, D\]"),
    (lambda: fid(np.zeros((5, 2, 2)), np.zeros((5, 3, 3)), lambda b: b.reshape(len(b), -1), 2),
     r"features_x has shape \(5, 4\) and features_y \(5, 9\): expected the same feature"),
])
def test_bad_arguments_raise_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- precision, recall, density, coverage -------------------------------------------------

def brute_force_prdc(real, generated, k):
    """The papers' definitions, one loop per quantity: each row's ball reaches its k-th
    nearest neighbour among the other rows of its own set; balls are closed."""
    def radii(points):
        return [sorted(np.linalg.norm(points[i] - points[j]) for j in range(len(points))
                       if j != i)[k - 1] for i in range(len(points))]

    radius = {id(real): radii(real), id(generated): radii(generated)}

    def inside(point, centres, c):
        return np.linalg.norm(point - centres[c]) <= radius[id(centres)][c]

    n, m = len(real), len(generated)
    precision = np.mean([any(inside(generated[j], real, i) for i in range(n)) for j in range(m)])
    recall = np.mean([any(inside(real[i], generated, j) for j in range(m)) for i in range(n)])
    density = sum(inside(generated[j], real, i) for i in range(n) for j in range(m)) / (k * m)
    coverage = np.mean([any(inside(generated[j], real, i) for j in range(m)) for i in range(n)])
    return precision, recall, density, coverage


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_density_coverage_are_the_papers_definitions(k):
    """Two sets of different sizes and spreads (so that swapping them, or taking a ball's
    radius from the other set, changes every value): the vectorised code equals the loops."""
    rng = np.random.default_rng(11)
    real = rng.standard_normal((40, 3))
    generated = 1.8 * rng.standard_normal((25, 3)) + 0.4
    pr = precision_recall(real, generated, k=k)
    dc = density_coverage(real, generated, k=k)
    expected = brute_force_prdc(real, generated, k)
    np.testing.assert_allclose([pr.precision, pr.recall, dc.density, dc.coverage], expected,
                               rtol=1e-12)
    swapped = brute_force_prdc(generated, real, k)
    assert not np.allclose(expected, swapped, atol=0.02)  # the test can tell the roles apart


def test_the_default_neighbours_are_the_papers_k3_and_k5():
    rng = np.random.default_rng(12)
    real, generated = rng.standard_normal((30, 2)), 1.5 * rng.standard_normal((20, 2))
    p, r, _, _ = brute_force_prdc(real, generated, 3)
    _, _, d, c = brute_force_prdc(real, generated, 5)
    assert tuple(precision_recall(real, generated)) == pytest.approx((p, r), abs=1e-12)
    assert tuple(density_coverage(real, generated)) == pytest.approx((d, c), abs=1e-12)
    assert kth_neighbour_distances(np.array([[0.0], [1.0], [3.0], [3.0]]), 1).tolist() == [
        1.0, 1.0, 0.0, 0.0]   # a duplicate row is a neighbour at distance 0


def _mean_over_seeds(make_generated, seeds=range(5), n=400, d=4):
    """Precision, recall, density and coverage of ``make_generated(rng, n, d)`` against n
    draws of N(0, I_d), averaged over seeds."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(100 + seed)
        real = rng.standard_normal((n, d))
        generated = make_generated(rng, n, d)
        rows.append((*precision_recall(real, generated), *density_coverage(real, generated)))
    return np.mean(rows, axis=0)


def test_two_samples_of_one_distribution_get_the_known_answers():
    """Known answers for any continuous distribution (Naeem et al. 2020): E[density] = 1 and
    E[coverage] = 1 - Π_{i<=5} (N - i) / (N + M - i) = 0.9693 at N = M = 400; with N = M,
    E[precision] = E[recall] by symmetry. Over 100 seeds one draw (N(0, I_4)) had sd 0.029
    (density), 0.010 (coverage) and 0.023 (precision - recall), mean precision 0.943; the
    tolerances are 4 sd of the mean of 5 draws. A ball that counted its own row (the 4th
    neighbour instead of the 5th) would give density 0.8 and coverage 0.938."""
    n = 400
    precision, recall, density, coverage = _mean_over_seeds(
        lambda rng, n, d: rng.standard_normal((n, d)), n=n)
    expected_coverage = 1.0 - np.prod([(n - i) / (2 * n - i) for i in range(1, 6)])
    sd_of_mean = 1 / np.sqrt(5)
    assert abs(density - 1.0) < 4 * 0.029 * sd_of_mean, density
    assert abs(coverage - expected_coverage) < 4 * 0.010 * sd_of_mean, coverage
    assert abs(precision - recall) < 4 * 0.023 * sd_of_mean, (precision, recall)
    assert 0.9 < precision < 0.98, precision


def test_a_collapsed_set_keeps_precision_and_loses_recall_and_coverage():
    """Ten real-looking samples, each repeated 40 times with a tiny jitter: every sample
    lies on the data (measured precision 0.95, density 1.06) but they cover almost none of
    it: recall 0.000 (their own balls have radii ~1e-3), coverage 0.13 (ten points, each in
    about k = 5 of the 400 real balls), against 0.94 and 0.97 for a sample of the data."""
    def collapsed(rng, n, d):
        return np.repeat(rng.standard_normal((10, d)), n // 10, 0) + 1e-3 * rng.standard_normal(
            (n, d))
    precision, recall, density, coverage = _mean_over_seeds(collapsed, seeds=range(2))
    assert precision > 0.8 and density > 0.6, (precision, density)
    assert recall < 0.01 and coverage < 0.2, (recall, coverage)


def test_broad_samples_lose_precision_and_narrow_ones_recall():
    """N(0, 9 I) samples around N(0, I) data spread past it: precision and density fall
    (measured 0.14 and 0.10) while recall stays high (1.00), and coverage, which uses only the
    data's balls, falls to 0.36. N(0, I / 9) samples are the mirror image: precision 1.00,
    recall 0.20, density 1.24 (crowding the data's dense centre), coverage 0.41."""
    broad = _mean_over_seeds(lambda rng, n, d: 3.0 * rng.standard_normal((n, d)), seeds=[0])
    narrow = _mean_over_seeds(lambda rng, n, d: rng.standard_normal((n, d)) / 3.0, seeds=[0])
    precision, recall, density, coverage = broad
    assert precision < 0.3 and density < 0.3 and recall > 0.9 and coverage < 0.45, broad
    precision, recall, density, coverage = narrow
    assert precision > 0.95 and recall < 0.35 and density > 1.0 and coverage < 0.5, narrow


def test_precision_density_and_coverage_fall_as_the_samples_move_off_the_data():
    """Samples shifted by s along one axis of N(0, I_4): each measure falls with s
    (measured precision 0.94, 0.89, 0.21 and coverage 0.97, 0.73, 0.12 at s = 0, 1.5, 4)."""
    values = [_mean_over_seeds(lambda rng, n, d: rng.standard_normal((n, d)) + s * np.eye(d)[0],
                               seeds=[0]) for s in (0.0, 1.5, 4.0)]
    precision, recall, density, coverage = np.transpose(values)
    for measure in (precision, recall, density, coverage):
        assert measure[0] > measure[1] > measure[2], np.round(values, 3)
    assert precision[2] < 0.4 and coverage[2] < 0.25, np.round(values, 3)


# -- diversity within a class ---------------------------------------------------------------

def test_mean_pairwise_distance_is_the_mean_over_pairs():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((7, 2, 3))
    flat = x.reshape(7, -1)
    pairs = [np.linalg.norm(flat[i] - flat[j]) for i in range(7) for j in range(i + 1, 7)]
    np.testing.assert_allclose(mean_pairwise_distance(x), np.mean(pairs), rtol=1e-8)
    assert np.isnan(mean_pairwise_distance(x[:1]))


def test_class_diversity_is_per_class_spread_relative_to_the_real_class():
    """Real classes of different spreads. Samples drawn from each class's own distribution
    score ~1 in every class (measured 0.98-1.02); samples of one image per class ~0; and
    the classes are the ones the samples were generated for: class c given the images of
    class c + 1 scores spread(c + 1) / spread(c)."""
    rng = np.random.default_rng(14)
    spreads = np.array([0.5, 1.0, 2.0])
    labels = np.repeat(np.arange(3), 200)
    real = rng.standard_normal((600, 6)) * spreads[labels, None] + 5.0 * labels[:, None]
    resampled = rng.standard_normal((600, 6)) * spreads[labels, None] + 5.0 * labels[:, None]
    same = class_diversity(resampled, labels, real, labels)
    assert isinstance(same, ClassDiversity) and same.by_class.shape == (3,)
    np.testing.assert_allclose(same.by_class, 1.0, atol=0.06)
    np.testing.assert_allclose(same.real_spread / same.real_spread[0], spreads / spreads[0],
                               rtol=0.06)
    collapsed = class_diversity(real[[0, 200, 400]].repeat(10, 0), np.repeat(np.arange(3), 10),
                                real, labels)
    assert collapsed.ratio == 0.0 and np.all(collapsed.generated_spread == 0.0)
    shifted = class_diversity(real[200:], labels[:400], real, labels, num_classes=3)
    np.testing.assert_allclose(shifted.by_class[:2], [2.0, 2.0], rtol=0.1)
    assert np.isnan(shifted.by_class[2])          # no sample generated for class 2
    assert shifted.ratio == pytest.approx(np.mean(shifted.by_class[:2]))


@pytest.mark.parametrize("call, message", [
    (lambda: precision_recall(A4, B5), r"real_features has shape \(10, 4\) and "
     r"generated_features \(10, 5\): expected the same feature dimension"),
    (lambda: precision_recall(A4, np.zeros((3, 4))),
     r"k=3 with 3 rows in generated_features: expected k < 3"),
    (lambda: density_coverage(np.zeros((5, 4)), A4),
     r"k=5 with 5 rows in real_features: expected k < 5"),
    (lambda: density_coverage(A4, A4, k=0), r"k=0: expected a Python int >= 1"),
    (lambda: class_diversity(A4, np.zeros(9, int), A4, np.zeros(10, int)),
     r"the labels of samples have shape \(9,\) and dtype int64: expected \[10\] non-negative "
     r"integer class labels"),
    (lambda: class_diversity(A4, np.zeros(10, int), B5, np.zeros(10, int)),
     r"samples have 4 values per example and real 5"),
    (lambda: class_diversity(A4, np.arange(10), A4, np.zeros(10, int), num_classes=3),
     r"num_classes=3 with labels up to 9: expected num_classes >= 10"),
])
def test_bad_prdc_and_diversity_arguments_raise_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()
