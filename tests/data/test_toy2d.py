"""Tests for ebm_jax.data.toy2d: seeded 2-D toy densities and their exact log-densities.

Statistical tolerances: unless said otherwise a Monte-Carlo estimate is
compared with its exact value within 5 standard errors (two-sided
P(|Z| > 5) ≈ 6e-7 for a Gaussian estimate), and a chi-square statistic with
``df`` degrees of freedom must stay below ``df + 6 sqrt(2 df)`` (its mean plus
six of its standard deviations; for df between 100 and 1000 the chi-square
tail there is below 1e-6). Keys are fixed, so the tests are deterministic; these bounds
say why they are not fitted to the seed.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import make_moons, make_swiss_roll

from ebm_jax.data import TOY_DENSITIES, Toy2D, get_toy
from ebm_jax.data.toy2d import (EIGHT_GAUSSIANS_MEANS, RINGS_NOISE, RINGS_RADII,
                                SWISS_ROLL_SCALE)

NAMES = ["8gaussians", "two_moons", "rings", "checkerboard", "swiss_roll", "pinwheel",
         "two_spirals", "labelled_8gaussians"]
WITH_LOG_PROB = ["8gaussians", "rings", "checkerboard", "two_spirals", "labelled_8gaussians"]
N = 100_000  # samples for the statistical tests

# Quadrature grid: 400x400 midpoints over [-4.5, 4.5]^2.
GRID_N, GRID_LO, GRID_HI = 400, -4.5, 4.5
GRID_H = (GRID_HI - GRID_LO) / GRID_N


def _grid_points():
    g = GRID_LO + (np.arange(GRID_N) + 0.5) * GRID_H
    xx, yy = np.meshgrid(g, g, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1).astype(np.float32)


_SAMPLE_CACHE = {}
LP_CHUNK = GRID_N * GRID_N


# One XLA program draws N points from every toy, and one per toy evaluates its closed-form
# log_prob on a fixed chunk: compiling per shape would cost most of this file's time budget on
# a 2-core CPU, and evaluating every toy on each call did (two_spirals' mixture takes 0.6 s a
# chunk, the others 0.01 s).
@jax.jit
def _sample_all(rng_key):
    keys = jax.random.split(rng_key, len(NAMES))
    return {name: get_toy(name).sample(k, N) for name, k in zip(NAMES, keys)}


@functools.partial(jax.jit, static_argnums=0)
def _log_prob_chunk(name, x):
    return jax.vmap(get_toy(name).log_prob)(x)


def _samples(name, seed=0):
    """Cached numpy float64 draws ``[N, 2]``."""
    if seed not in _SAMPLE_CACHE:
        _SAMPLE_CACHE[seed] = {k: np.asarray(v, np.float64)
                               for k, v in _sample_all(jax.random.PRNGKey(seed)).items()}
    return _SAMPLE_CACHE[seed][name]


def _log_prob_batch(name, x):
    """float64 ``[M]`` log-densities of ``x[M, 2]``, evaluated in fixed-size chunks."""
    x = np.asarray(x, np.float32)
    out = []
    for i in range(0, len(x), LP_CHUNK):
        chunk = x[i:i + LP_CHUNK]
        padded = np.zeros((LP_CHUNK, 2), np.float32)
        padded[:len(chunk)] = chunk
        out.append(np.asarray(_log_prob_chunk(name, padded), np.float64)[:len(chunk)])
    return np.concatenate(out)


@functools.lru_cache(maxsize=None)
def _grid_log_prob(name):
    """``[400, 400]`` float64 log-density on the quadrature grid (x index first), computed once
    per toy and read-only (tests share it)."""
    grid = _log_prob_batch(name, _grid_points()).reshape(GRID_N, GRID_N)
    grid.setflags(write=False)
    return grid


def _chi2_bound(df):
    return df + 6.0 * math.sqrt(2.0 * df)


# --------------------------------------------------------------------------- registry, shapes


def test_registry_names_and_types():
    assert sorted(TOY_DENSITIES) == sorted(NAMES)
    for name, toy in TOY_DENSITIES.items():
        assert isinstance(toy, Toy2D)
        assert toy.name == name
        assert get_toy(name) is toy
        assert (toy.log_prob is not None) == (name in WITH_LOG_PROB)


def test_labelled_8gaussians_draws_8gaussians_with_their_components():
    """Same key, same points as ``8gaussians``; each label is the component that drew the point
    (within 6 of its std of that mean: 8 components x 2,000 draws leave P(miss) ~ 1e-4)."""
    key = jax.random.PRNGKey(3)
    x, labels = get_toy("labelled_8gaussians").sample_labelled(key, 2000)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(get_toy("8gaussians").sample(key,
                                                                                         2000)))
    labels = np.asarray(labels)
    assert labels.dtype == np.int32 and set(labels.tolist()) == set(range(8))
    distance = np.linalg.norm(np.asarray(x) - EIGHT_GAUSSIANS_MEANS[labels], axis=-1)
    assert distance.max() < 6 * 0.5 / 1.414
    assert all(get_toy(n).sample_labelled is None for n in NAMES if n != "labelled_8gaussians")


def test_unknown_name_raises_with_choices():
    with pytest.raises(ValueError, match=r"toy='spirals': expected one of \[.*'8gaussians'.*\]"):
        get_toy("spirals")


@pytest.mark.slow
def test_shape_dtype_determinism():
    a = _sample_all(jax.random.PRNGKey(0))
    b = _sample_all(jax.random.PRNGKey(0))
    c = _sample_all(jax.random.PRNGKey(1))
    for name in NAMES:
        assert a[name].shape == (N, 2) and a[name].dtype == jnp.float32, name
        assert np.all(np.isfinite(np.asarray(a[name]))), name
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))  # same key
        assert not np.allclose(np.asarray(a[name]), np.asarray(c[name])), name  # new key


@pytest.mark.slow
def test_eager_matches_jit_and_empty_batch():
    # One toy only: eager dispatch compiles every op on first use (~2 s per toy).
    sample = get_toy("rings").sample
    key = jax.random.PRNGKey(2)
    eager = np.asarray(sample(key, 64))
    np.testing.assert_allclose(np.asarray(jax.jit(sample, static_argnums=1)(key, 64)), eager,
                               rtol=1e-5, atol=1e-5)
    assert sample(key, 0).shape == (0, 2)


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_LOG_PROB)
def test_log_prob_scalar_float32_and_batches(name):
    log_prob = get_toy(name).log_prob
    x = jnp.asarray(_samples(name)[:16], jnp.float32)
    lp = jax.jit(log_prob)(x[0])
    assert lp.shape == () and lp.dtype == jnp.float32
    batched = _log_prob_batch(name, x)
    np.testing.assert_allclose(batched[0], float(lp), rtol=1e-5)
    assert np.all(np.isfinite(_log_prob_batch(name, _samples(name))))  # every draw in the support


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("name", ["8gaussians", "rings", "two_spirals"])
def test_smooth_log_prob_integrates_to_one(name):
    # Midpoint rule on 400x400 cells of side h = 0.0225 over [-4.5, 4.5]^2.
    # Error budget, all far below 1e-4: mass outside the box (8gaussians: the
    # nearest mean is 1.67 = 4.7 stds from the edge, tail < 2e-6; rings: the
    # outer ring at 3.0 + 0.08 noise is > 18 stds inside), midpoint error on
    # Gaussians sampled at h/std <= 0.32 (~1e-7), float32 log-densities summed
    # in float64 (~1e-7). A wrong normaliser (e.g. 2π vs π, log 8 vs log 4, a
    # missing Jacobian 1/(2π|x|)) is off by a factor, not by 1e-4. two_spirals: the
    # outermost centre is at radius 3.14, 13 noise stds inside; h/std = 0.225.
    total = np.exp(_grid_log_prob(name)).sum() * GRID_H**2
    assert abs(total - 1.0) < 1e-4, total


def test_checkerboard_log_prob_integrates_exactly():
    # For a piecewise-constant density the midpoint rule counts grid midpoints:
    # each black square [2i, 2i+2) x [2j, 2j+2) contributes (#midpoints in x)
    # (#midpoints in y) h^2 / 32. Count them independently and compare to 1e-6;
    # no midpoint lies within 0.004 of a square edge, so float32 cannot flip one.
    g = GRID_LO + (np.arange(GRID_N) + 0.5) * GRID_H
    count = {i: np.sum((g >= 2 * i) & (g < 2 * i + 2)) for i in (-2, -1, 0, 1)}
    expected = sum(count[i] * count[j] for i in (-2, -1, 0, 1) for j in (-2, -1, 0, 1)
                   if (i + j) % 2 == 0) * GRID_H**2 / 32.0
    lp = _grid_log_prob("checkerboard")
    total = np.exp(lp).sum() * GRID_H**2
    assert abs(expected - 1.0) < 2 * GRID_H  # sanity: each side is 2 +- h
    assert abs(total - expected) < 1e-6, (total, expected)
    inside = np.isfinite(lp)
    np.testing.assert_allclose(lp[inside], -np.log(32.0), rtol=1e-6)
    assert np.all(lp[~inside] == -np.inf)  # -inf, not a large finite negative, off the support


def test_checkerboard_log_prob_pattern():
    log_prob = jax.jit(get_toy("checkerboard").log_prob)
    black = [(-3.0, -3.0), (-1.0, -1.0), (1.0, 1.0), (3.0, 3.0), (-3.0, 1.0), (1.0, -3.0),
             (-1.0, 3.0), (3.0, -1.0)]
    white = [(-1.0, -3.0), (1.0, -1.0), (3.0, 1.0), (-3.0, -1.0), (0.5, 2.5), (-5.0, -3.0),
             (4.5, 0.0), (0.0, 100.0)]
    for p in black:
        assert float(log_prob(jnp.array(p))) == pytest.approx(-np.log(32.0), rel=1e-6), p
    for p in white:
        assert float(log_prob(jnp.array(p))) == -np.inf, p


def test_rings_log_prob_finite_at_origin_with_finite_gradient():
    log_prob = get_toy("rings").log_prob
    value, grad = jax.jit(jax.value_and_grad(log_prob))(jnp.zeros(2))
    assert np.isfinite(float(value)) and float(value) < -20.0  # ~1e-14 density, ~0 mass
    assert np.all(np.isfinite(np.asarray(grad)))


# --------------------------------------------------------------------------- log_prob vs samples


def _chi2_against_density(name, n_bins_side=36, sub=10):
    """Chi-square of a 2-D histogram of N draws against the density's bin masses.

    Bin masses come from the midpoint rule on sub x sub points per bin
    (bins of side 0.25, points 0.025 apart: relative error per bin
    < (0.025 / 0.08)^2 / 24 ≈ 0.4% for the narrowest Gaussian, which adds
    N p δ² < 0.01 per bin to the statistic: negligible against df).
    Bins with expected count < 5 are pooled into one.
    """
    edges = np.linspace(GRID_LO, GRID_HI, n_bins_side + 1)
    h = (GRID_HI - GRID_LO) / (n_bins_side * sub)
    g = GRID_LO + (np.arange(n_bins_side * sub) + 0.5) * h
    xx, yy = np.meshgrid(g, g, indexing="ij")
    dens = np.exp(_log_prob_batch(name, np.stack([xx.ravel(), yy.ravel()], -1)))
    dens = dens.reshape(n_bins_side, sub, n_bins_side, sub).sum(axis=(1, 3)) * h**2
    x = _samples(name)
    observed, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=[edges, edges])
    expected = N * dens
    big = expected >= 5
    obs = np.append(observed[big], observed[~big].sum() + (N - observed.sum()))
    exp = np.append(expected[big], N - expected[big].sum())
    chi2 = np.sum((obs - exp) ** 2 / exp)
    return chi2, len(obs) - 1


@pytest.mark.parametrize("name", ["8gaussians", "rings", "two_spirals"])
def test_histogram_matches_log_prob(name):
    chi2, df = _chi2_against_density(name)
    assert df > 100
    assert chi2 < _chi2_bound(df), (chi2, df)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["8gaussians", "rings", "two_spirals"])
def test_mean_log_prob_of_samples_is_minus_entropy(name):
    # E_p[log p] from the samples vs -H(p) = ∫ p log p by quadrature (same grid and
    # error budget as the normalisation test); 5 standard errors of the mean.
    lp_grid = _grid_log_prob(name)
    neg_entropy = np.sum(np.exp(lp_grid) * lp_grid) * GRID_H**2
    lp = _log_prob_batch(name, _samples(name))
    se = lp.std() / np.sqrt(N)
    assert abs(lp.mean() - neg_entropy) < 5 * se + 1e-4, (lp.mean(), neg_entropy, se)


# --------------------------------------------------------------------------- per-toy geometry


def test_eight_gaussians_components():
    means = EIGHT_GAUSSIANS_MEANS.astype(np.float64)
    angles = np.arctan2(means[:, 1], means[:, 0]) % (2 * np.pi)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 4 / 1.414, rtol=1e-6)
    np.testing.assert_allclose(np.sort(angles), np.arange(8) * np.pi / 4, atol=1e-6)
    x = _samples("8gaussians")
    comp = np.argmin(((x[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    std = 0.5 / 1.414
    # Nearest-mean assignment is almost exact: neighbouring means are 2.16 = 6.1
    # stds apart, so a draw crosses the midline with probability ~1e-9.
    counts = np.bincount(comp, minlength=8)
    se_count = np.sqrt(N * (1 / 8) * (7 / 8))  # binomial
    assert np.all(np.abs(counts - N / 8) < 5 * se_count), counts
    for k in range(8):
        xk = x[comp == k]
        np.testing.assert_array_less(np.abs(xk.mean(0) - means[k]), 5 * std / np.sqrt(len(xk)))
        # sample std: standard error ≈ std / sqrt(2 n)
        np.testing.assert_array_less(np.abs(xk.std(0) - std), 5 * std / np.sqrt(2 * len(xk)))


def test_rings_radius_histogram():
    x = _samples("rings")
    r = np.linalg.norm(x, axis=1)
    radii = np.asarray(RINGS_RADII)
    ring = np.argmin(np.abs(r[:, None] - radii[None]), axis=1)
    # Rings are 0.75 = 9.4 noise stds apart, so the nearest ring is the true one
    # except with probability ~3e-6 per draw.
    counts = np.bincount(ring, minlength=4)
    se_count = np.sqrt(N * 0.25 * 0.75)  # binomial, p = 1/4 per ring
    assert np.all(np.abs(counts - N / 4) < 5 * se_count), counts
    resid = r - radii[ring]
    for k in range(4):
        rk = resid[ring == k]
        assert abs(rk.mean()) < 5 * RINGS_NOISE / np.sqrt(len(rk))
        assert abs(rk.std() - RINGS_NOISE) < 5 * RINGS_NOISE / np.sqrt(2 * len(rk))
    # Uniform angle: E[cos θ] = E[sin θ] = 0, each with variance 1/2 per draw.
    u = x / r[:, None]
    np.testing.assert_array_less(np.abs(u.mean(0)), 5 * np.sqrt(0.5 / N))
    # ... and uniform, not just centred: E[cos 2θ] = E[sin 2θ] = 0 too.
    c2 = np.stack([u[:, 0] ** 2 - u[:, 1] ** 2, 2 * u[:, 0] * u[:, 1]], -1)
    np.testing.assert_array_less(np.abs(c2.mean(0)), 5 * np.sqrt(0.5 / N))


def test_checkerboard_squares_equally_weighted_and_uniform():
    x = _samples("checkerboard")
    assert np.all((x >= -4) & (x < 4))
    cell = np.floor(x / 2).astype(int)
    assert np.all((cell[:, 0] + cell[:, 1]) % 2 == 0)  # only black squares
    index = (cell[:, 0] + 2) * 4 + (cell[:, 1] + 2)
    counts = np.bincount(index, minlength=16)
    black = [(i + 2) * 4 + (j + 2) for i in (-2, -1, 0, 1) for j in (-2, -1, 0, 1)
             if (i + j) % 2 == 0]
    se_count = np.sqrt(N * (1 / 8) * (7 / 8))
    assert np.all(np.abs(counts[black] - N / 8) < 5 * se_count), counts
    # Within a square the position is uniform: mean 1, variance 1/3 on [0, 2).
    frac = x - 2 * cell
    np.testing.assert_array_less(np.abs(frac.mean(0) - 1.0), 5 * np.sqrt(1 / 3 / N))
    # Var of (u - 1)^2 for u ~ U[0, 2): E(u-1)^4 - (1/3)^2 = 1/5 - 1/9 = 4/45.
    np.testing.assert_array_less(np.abs(frac.var(0) - 1 / 3), 5 * np.sqrt(4 / 45 / N))


def _two_sample_chi2(a, b, edges):
    """Chi-square two-sample statistic for equal-size samples on shared 2-D bins.

    Σ (A_i - B_i)^2 / (A_i + B_i) over bins with A_i + B_i >= 10 (the rest
    pooled) is asymptotically χ²(bins - 1) when both come from one law.
    """
    ha, _, _ = np.histogram2d(a[:, 0], a[:, 1], bins=[edges, edges])
    hb, _, _ = np.histogram2d(b[:, 0], b[:, 1], bins=[edges, edges])
    ha = np.append(ha.ravel(), len(a) - ha.sum())  # the outside-the-box bin
    hb = np.append(hb.ravel(), len(b) - hb.sum())
    big = ha + hb >= 10
    ha = np.append(ha[big], ha[~big].sum())
    hb = np.append(hb[big], hb[~big].sum())
    keep = ha + hb > 0
    chi2 = np.sum((ha[keep] - hb[keep]) ** 2 / (ha[keep] + hb[keep]))
    return chi2, keep.sum() - 1


def _distance_to_arc(x, centre, upper, radius=2.0):
    """Distance from each point to the upper (or lower) half circle about ``centre``."""
    rel = x - np.asarray(centre)
    on_side = rel[:, 1] >= 0 if upper else rel[:, 1] <= 0
    radial = np.abs(np.linalg.norm(rel, axis=1) - radius)
    ends = np.array([[radius, 0.0], [-radius, 0.0]])
    to_ends = np.min(np.linalg.norm(rel[:, None, :] - ends[None], axis=-1), axis=1)
    return np.where(on_side, radial, to_ends)


def test_two_spirals_follow_ffjord_curve():
    """Both arms lie on FFJORD's 2spirals curve theta (-cos theta, sin theta) / 3, theta up to
    3 pi, mirrored; samples sit 0.1-std noise from the nearest centre (mean distance from
    the nearest centre < the Rayleigh mean 0.1 sqrt(pi/2) = 0.125, since a nearer
    centre than the drawn one often exists)."""
    from ebm_jax.data.toy2d import TWO_SPIRALS_CENTRES as c

    arm = c[:200].astype(np.float64)
    theta = 3.0 * np.linalg.norm(arm, axis=1)
    np.testing.assert_allclose(arm, np.stack([-np.cos(theta), np.sin(theta)], -1) * theta[:, None]
                               / 3.0, atol=1e-5)
    assert theta.max() < 3 * np.pi and theta.max() > 0.99 * 3 * np.pi
    np.testing.assert_allclose(c[200:], -c[:200])
    x = _samples("two_spirals")[:5000]
    nearest = np.min(np.linalg.norm(x[:, None] - c[None], axis=-1), axis=1)
    assert 0.05 < nearest.mean() < 0.125


def test_two_moons_matches_sklearn_and_geometry():
    x = _samples("two_moons")
    ref = make_moons(N, noise=0.1, random_state=0)[0] * 2 + np.array([-1.0, -0.2])
    chi2, df = _two_sample_chi2(x, ref, np.linspace(-4, 4, 41))
    assert df > 100 and chi2 < _chi2_bound(df), (chi2, df)
    # Point-symmetric about (0, 0.3): that is the mean (5 standard errors).
    np.testing.assert_array_less(np.abs(x.mean(0) - [0.0, 0.3]), 5 * x.std(0) / np.sqrt(N))
    # Half of the draws on each moon: upper = radius-2 arc about (-1, -0.2),
    # lower = radius-2 arc about (1, 0.8); the arcs are >= 1 = 5 noise stds apart.
    d_up = _distance_to_arc(x, centre=(-1.0, -0.2), upper=True)
    d_lo = _distance_to_arc(x, centre=(1.0, 0.8), upper=False)
    upper = d_up < d_lo
    assert abs(upper.mean() - 0.5) < 5 * np.sqrt(0.25 / N)
    # Distance to the nearer arc is the noise's normal component, ~|N(0, 0.2^2)|:
    # its RMS is 0.2 (up to the curvature of radius 2); a wrong scale or offset
    # of a moon would put draws ~1 away.
    d = np.minimum(d_up, d_lo)
    assert abs(np.sqrt(np.mean(d**2)) - 0.2) < 0.01, np.sqrt(np.mean(d**2))


def test_swiss_roll_matches_sklearn_and_moments():
    x = _samples("swiss_roll")
    ref = make_swiss_roll(N, noise=1.0, random_state=0)[0][:, [0, 2]] * SWISS_ROLL_SCALE
    chi2, df = _two_sample_chi2(x, ref, np.linspace(-4.5, 4.5, 41))
    assert df > 100 and chi2 < _chi2_bound(df), (chi2, df)
    # E|x|^2 = s^2 (E t^2 + 2) with t ~ U[1.5π, 4.5π] and unit noise on 2 axes.
    a, b = 1.5 * np.pi, 4.5 * np.pi
    expected = SWISS_ROLL_SCALE**2 * ((b**3 - a**3) / (3 * (b - a)) + 2.0)
    sq = (x**2).sum(1)
    assert abs(sq.mean() - expected) < 5 * sq.std() / np.sqrt(N), (sq.mean(), expected)
    assert np.abs(x).max() < 4.0 + 6 * SWISS_ROLL_SCALE  # "about [-4, 4]": radius 4 + noise


def _ffjord_pinwheel_numpy(rng, batch_size):
    """FFJORD's ``toy_data.inf_train_gen("pinwheel")``, transcribed literally."""
    radial_std, tangential_std, num_classes, rate = 0.3, 0.1, 5, 0.25
    num_per_class = batch_size // 5
    rads = np.linspace(0, 2 * np.pi, num_classes, endpoint=False)
    features = rng.randn(num_classes * num_per_class, 2) * np.array([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = np.repeat(np.arange(num_classes), num_per_class)
    angles = rads[labels] + rate * np.exp(features[:, 0])
    rotations = np.stack([np.cos(angles), -np.sin(angles), np.sin(angles), np.cos(angles)])
    rotations = np.reshape(rotations.T, (-1, 2, 2))
    return 2 * rng.permutation(np.einsum("ti,tij->tj", features, rotations))


def test_pinwheel_matches_ffjord_and_has_five_arms():
    x = _samples("pinwheel")
    ref = _ffjord_pinwheel_numpy(np.random.RandomState(0), N)
    chi2, df = _two_sample_chi2(x, ref, np.linspace(-4, 4, 41))
    assert df > 100 and chi2 < _chi2_bound(df), (chi2, df)
    # E|x|^2 = 4 (1 + 0.3^2 + 0.1^2) = 4.4.
    sq = (x**2).sum(1)
    assert abs(sq.mean() - 4.4) < 5 * sq.std() / np.sqrt(N)
    # Angular harmonics E[e^{ikφ}]: five arms make k = 1..4 vanish (each part has
    # variance <= 1/2 per draw, so 5 standard errors is 5 sqrt(1/(2N))), while
    # k = 5 is large and equals FFJORD's, phase included (which fixes the
    # direction the arms curl).
    z = (x[:, 0] + 1j * x[:, 1]) / np.linalg.norm(x, axis=1)
    zr = (ref[:, 0] + 1j * ref[:, 1]) / np.linalg.norm(ref, axis=1)
    for k in range(1, 5):
        assert abs(np.mean(z**k)) < 5 * np.sqrt(2 * 0.5 / N), k
    h5, h5_ref = np.mean(z**5), np.mean(zr**5)
    assert abs(h5) > 0.3
    # Two independent estimates: the difference has twice the variance of each.
    assert abs(h5 - h5_ref) < 5 * np.sqrt(2) * np.sqrt(2 * 0.5 / N), (h5, h5_ref)
