"""Tests of inpainting, denoising and their scores (``ebm_jax.applications.inpainting``).

Statistical tests inpaint a Gaussian ``N(μ, S)``, where the law of the missing
coordinates given the observed ones is known in closed form (Gaussian conditioning,
the Schur complement)::

    x_M | x_O  ~  N(μ_M + S_MO S_OO⁻¹ (x_O - μ_O),  C = S_MM - S_MO S_OO⁻¹ S_OM = (P_MM)⁻¹)

Every example has its own observed values (exact draws of the joint), so the conditional
mean differs per example; the residuals ``d = x_M - E[x_M | x_O]`` must have mean 0 and
second moments ``C``. MALA is unbiased at any step size; SGLD (the temperature form,
i.e. the unadjusted Langevin algorithm, ULA) targets the conditional only up to its
discretisation bias: on a Gaussian with precision ``P_MM`` its stationary law is
``N(E[x_M | x_O], C (I - h/2 P_MM)⁻¹)`` (derived in ``tests/test_langevin.py::
ula_covariance``), and the mean is unbiased; the tests compare SGLD with that law.

Each of the B chains is run for many more steps than its mixing time and only its final
position is kept, so the B draws are independent: the effective sample size of every
statistic is B, and each must be within Z = 5 standard errors ``sd / sqrt(B)`` of its
exact value. The keys are fixed (deterministic tests); a correct implementation fails one
of these checks under another seed with probability ~1e-5.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.inpainting import (ReconstructionError, box_mask, denoise,
                                             half_image_mask, inpaint, masked_energy,
                                             progressive_inpaint, random_pixel_mask,
                                             reconstruction_error)
from ebm_jax.energies import gaussian
from ebm_jax.samplers import initializer_start, mala, noise_schedule

Z = 5.0

# A 10-D Gaussian with a dense covariance (eigenvalues 0.3 ... 2.0, random eigenvectors).
_rng = np.random.default_rng(0)
_Q, _ = np.linalg.qr(_rng.normal(size=(10, 10)))
COV10 = (_Q * np.linspace(0.3, 2.0, 10)) @ _Q.T
COV10 = 0.5 * (COV10 + COV10.T)
MEAN10 = _rng.normal(size=10)
MISSING10 = np.array([0, 2, 3, 5, 7, 8])
OBSERVED10 = np.setdiff1d(np.arange(10), MISSING10)
MASK10 = np.zeros((1, 10), np.float32)
MASK10[0, MISSING10] = 1.0
B10 = 4000


def conditional(mean, cov, missing, observed, x):
    """Per-example conditional means ``[B, |M|]`` and the shared conditional covariance."""
    gain = cov[np.ix_(missing, observed)] @ np.linalg.inv(cov[np.ix_(observed, observed)])
    cond_cov = cov[np.ix_(missing, missing)] - gain @ cov[np.ix_(observed, missing)]
    cond_mean = mean[missing] + (x[:, observed] - mean[observed]) @ gain.T
    return cond_mean, cond_cov


def ula_covariance(cov, step_size):
    """Stationary covariance of ULA (temperature 1) on N(m, cov): cov (I - h/2 cov⁻¹)⁻¹."""
    lam, vecs = np.linalg.eigh(cov)
    assert step_size < 2 * lam.min(), "ULA is unstable at this step size"
    return (vecs * (lam / (1.0 - step_size / (2.0 * lam)))) @ vecs.T


def check_residuals(d, cov):
    """Assert that independent residuals ``d [B, k]`` have mean 0 and second moments ``cov``,
    each statistic within Z standard errors (ESS = B: one draw per independent chain)."""
    n, k = d.shape
    stats = {f"mean[{i}]": d[:, i] for i in range(k)}
    for i in range(k):
        for j in range(i, k):
            stats[f"cov[{i},{j}]"] = d[:, i] * d[:, j] - cov[i, j]
    z = {name: f.mean() / (f.std() / np.sqrt(n)) for name, f in stats.items()}
    assert all(abs(v) < Z for v in z.values()), f"z-scores beyond {Z}: {z}"
    return z


def gaussian10_draws():
    target = gaussian(MEAN10, COV10)
    x = target.sample(jax.random.PRNGKey(1), B10)
    return target, x, np.asarray(x, np.float64)


# -- inpainting a Gaussian: the conditional law -----------------------------------------

# Breakages caught (checked by editing inpainting.py, then restoring it):
#  - gradient not masked (masked_energy evaluating E at z instead of where(mask, z, x_obs)):
#    MALA's proposals then move the observed coordinates too and its accept/reject uses
#    them, so the missing ones no longer follow the conditional (off by 11 SE). (For SGLD
#    the per-step reset alone makes the masking redundant: its gradient on the missing
#    pixels is the same, so that breakage is invisible to the SGLD test, rightly.)
#  - "sample everything, paste the observed pixels back at the end" (no masking, no reset,
#    a final where): the draws follow the marginal, not the conditional (21 SE);
#  - the rows of x_observed misaligned with the chains: observed pixels not bit-identical,
#    and the conditional means wrong (20 SE);
#  - no reset of the observed pixels: they are no longer bit-identical;
#  - the mask inverted: observed pixels not bit-identical.
# Measured: |z| < 2.3 with the keys below.
@pytest.mark.slow
def test_inpaint_10d_gaussian_with_mala_matches_the_conditional_law():
    target, x, x64 = gaussian10_draws()
    sampler = mala(masked_energy(target.energy_fn), 0.5)
    filled = inpaint(jax.random.PRNGKey(0), sampler, None, x, MASK10, num_steps=200,
                     init="mean")
    filled = np.asarray(filled, np.float64)
    np.testing.assert_array_equal(filled[:, OBSERVED10], x64[:, OBSERVED10])  # bit-identical
    cond_mean, cond_cov = conditional(MEAN10, COV10, MISSING10, OBSERVED10, x64)
    check_residuals(filled[:, MISSING10] - cond_mean, cond_cov)


# Breakages caught: the mask inverted, no reset, or rows misaligned (observed pixels not
# bit-identical); "paste at the end" (the marginal law: off by 18 SE). The ULA bias matters
# at this step size: compared with the exact conditional covariance instead of the ULA
# one, the variances are off by up to 11 SE (|z| < 2.1 against the ULA law), so the test
# pins the sampler to ULA's law, not merely to something near the conditional.
@pytest.mark.slow
def test_inpaint_10d_gaussian_with_sgld_matches_the_ula_conditional_law():
    target, x, x64 = gaussian10_draws()
    step_size = 0.3
    filled = inpaint(jax.random.PRNGKey(2), target.energy_fn, None, x, MASK10, num_steps=150,
                     step_size=step_size, init="noise")
    filled = np.asarray(filled, np.float64)
    np.testing.assert_array_equal(filled[:, OBSERVED10], x64[:, OBSERVED10])
    cond_mean, cond_cov = conditional(MEAN10, COV10, MISSING10, OBSERVED10, x64)
    check_residuals(filled[:, MISSING10] - cond_mean, ula_covariance(cond_cov, step_size))


# Breakages caught: the mask inverted, no reset, rows misaligned (not bit-identical);
# "paste at the end" (the 1-D residual variances off by 17 SE).
def test_inpaint_2d_per_example_masks():
    """Each example misses coordinate 0 or 1 (a [B, 2] mask): the residual of each, scaled
    by the ULA standard deviation of its 1-D conditional, is N(0, 1)."""
    mean, cov = np.array([1.0, -2.0]), np.array([[1.0, 0.8], [0.8, 1.5]])
    target = gaussian(mean, cov)
    n, step_size = 4000, 0.3
    x = target.sample(jax.random.PRNGKey(3), n)
    x64 = np.asarray(x, np.float64)
    missing = np.asarray(jax.random.bernoulli(jax.random.PRNGKey(4), 0.5, (n,)), np.int64)
    mask = np.eye(2, dtype=np.float32)[missing]  # row i: 1 at the missing coordinate
    filled = np.asarray(inpaint(jax.random.PRNGKey(5), target.energy_fn, None, x, mask,
                                num_steps=150, step_size=step_size, init="noise"), np.float64)
    rows = np.arange(n)
    np.testing.assert_array_equal(filled[rows, 1 - missing], x64[rows, 1 - missing])
    z = np.empty(n)
    for k in (0, 1):
        sel = missing == k
        cond_mean, cond_cov = conditional(mean, cov, np.array([k]), np.array([1 - k]), x64[sel])
        sd = np.sqrt(ula_covariance(cond_cov, step_size)[0, 0])
        z[sel] = (filled[sel, k] - cond_mean[:, 0]) / sd
        check_residuals(z[sel][:, None], np.ones((1, 1)))


# -- observed pixels are kept exactly ---------------------------------------------------

def smooth_image_energy(params, x):
    """A quadratic image prior: neighbouring pixels alike, values near ``params``."""
    dx = x[1:, :] - x[:-1, :]
    dy = x[:, 1:] - x[:, :-1]
    return 2.0 * (jnp.sum(dx**2) + jnp.sum(dy**2)) + 0.5 * jnp.sum((x - params) ** 2)


# Breakages caught: no reset after the step (clip_range clamps the observed values outside
# [-1, 1], and the noise moves them); the mask inverted; rows misaligned.
def test_observed_pixels_are_bit_identical_and_missing_ones_filled():
    images = jnp.asarray(1.5 * np.random.default_rng(1).uniform(-1, 1, size=(8, 8, 8)),
                         jnp.float32)  # a third of the values lie outside clip_range
    mask = random_pixel_mask(jax.random.PRNGKey(0), (8, 8, 8), 0.5)
    filled = inpaint(jax.random.PRNGKey(1), smooth_image_energy, jnp.float32(0.3), images, mask,
                     num_steps=50, step_size=0.01, noise_scale=0.01, clip_range=(-1.0, 1.0))
    observed = np.asarray(mask) == 0
    np.testing.assert_array_equal(np.asarray(filled)[observed], np.asarray(images)[observed])
    changed = np.asarray(filled)[~observed] != np.asarray(images)[~observed]
    assert changed.mean() > 0.99
    assert np.all(np.abs(np.asarray(filled)[~observed]) <= 1.0)  # SGLD clamps what it samples


# Breakages caught: the batch-wide mean instead of each image's; the mask inverted.
def test_init_mean_starts_from_each_images_observed_mean():
    """One tiny noiseless step: the masked pixels stay at their image's observed mean."""
    images = jnp.asarray(np.random.default_rng(2).normal(size=(3, 4, 4)), jnp.float32)
    mask = half_image_mask((4, 4), "right")
    filled = inpaint(jax.random.PRNGKey(0), lambda p, x: jnp.sum(x**2), None, images, mask,
                     num_steps=1, step_size=1e-12, noise_scale=0.0, init="mean")
    obs = np.asarray(images)[:, :, :2]
    expected = np.broadcast_to(obs.mean(axis=(1, 2))[:, None, None], (3, 4, 2))
    np.testing.assert_allclose(np.asarray(filled)[:, :, 2:], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(filled)[:, :, :2], obs)


def test_inpaint_jits_at_the_outermost_level():
    """Under an outer jit (mask and images traced) the result equals the eager one."""
    target = gaussian(np.array([1.0, -2.0]), np.array([[1.0, 0.8], [0.8, 1.5]]))
    x = jnp.asarray(np.random.default_rng(5).normal(size=(6, 2)), jnp.float32)
    mask = jnp.asarray([[0.0, 1.0]] * 3 + [[1.0, 0.0]] * 3)

    def run(key, x, mask):
        return inpaint(key, target.energy_fn, None, x, mask, num_steps=20, step_size=0.1,
                       init="mean", clip_range=(-5.0, 5.0))

    eager = run(jax.random.PRNGKey(0), x, mask)
    jitted = jax.jit(run)(jax.random.PRNGKey(0), x, mask)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(jitted)[np.asarray(mask) == 0],
                                  np.asarray(x)[np.asarray(mask) == 0])


# -- denoising --------------------------------------------------------------------------

# Breakages caught: the gradient step's sign flipped (diverges); noise added (1e-3 per
# step: off by 0.013); the clamp skipped (the constrained mode is clip(μ), not μ).
def test_denoise_converges_to_the_mode_of_a_quadratic_energy():
    target = gaussian(MEAN10, COV10)
    noisy = jnp.asarray(MEAN10 + np.random.default_rng(3).normal(size=(16, 10)), jnp.float32)
    # Precision eigenvalues 0.5 ... 3.33: step 0.25 contracts every direction by <= 0.875.
    clean = denoise(target.energy_fn, None, noisy, num_steps=200, step_size=0.25)
    np.testing.assert_allclose(np.asarray(clean), np.broadcast_to(MEAN10, (16, 10)), atol=1e-4)

    # With clip_range: projected gradient descent on a separable quadratic converges to the
    # clamped mode.
    mode = np.array([2.0, -0.5, -3.0, 0.25])
    diag = gaussian(mode, np.diag([0.5, 1.0, 2.0, 0.8]))
    clean = denoise(diag.energy_fn, None, jnp.zeros((4, 4)), num_steps=200, step_size=0.25,
                    clip_range=(-1.0, 1.0))
    np.testing.assert_allclose(np.asarray(clean), np.broadcast_to(np.clip(mode, -1, 1), (4, 4)),
                               atol=1e-5)


# -- scoring ----------------------------------------------------------------------------

# Breakages caught: the mean taken over all the pixels (mse 0.01 -> ~1000 here); the mask
# ignored in the per-example errors; PSNR with data_range instead of data_range² (3 dB).
def test_reconstruction_error_ignores_unmasked_pixels():
    rng = np.random.default_rng(4)
    x_true = rng.normal(size=(4, 6)).astype(np.float32)
    mask = (rng.uniform(size=(4, 6)) < 0.5).astype(np.float32)
    mask[:, 0] = 1.0  # every example has a masked pixel
    x_filled = np.where(mask == 1, x_true + 0.1, x_true + 50.0).astype(np.float32)
    err = reconstruction_error(x_filled, x_true, mask)
    assert isinstance(err, ReconstructionError)
    np.testing.assert_allclose(err.mse, 0.01, rtol=1e-4)
    np.testing.assert_allclose(err.mse_per_example, np.full(4, 0.01), rtol=1e-4)
    np.testing.assert_allclose(err.psnr, 10 * np.log10(4.0 / 0.01), rtol=1e-5)
    np.testing.assert_allclose(reconstruction_error(x_filled, x_true, mask, data_range=1.0).psnr,
                               20.0, rtol=1e-5)
    # Unmasked pixels do not count at all: changing them changes nothing.
    other = np.where(mask == 1, x_filled, -7.0).astype(np.float32)
    np.testing.assert_array_equal(reconstruction_error(other, x_true, mask).mse, err.mse)
    # A broadcast [1, D] mask weights every example alike; a perfect fill has infinite PSNR.
    row = np.zeros((1, 6), np.float32)
    row[0, :2] = 1.0
    x_half = x_true.copy()
    x_half[:, 0] += 0.2  # error 0.04 on one of the two masked pixels of every example
    np.testing.assert_allclose(reconstruction_error(x_half, x_true, row).mse, 0.02, rtol=1e-4)
    assert np.isinf(float(reconstruction_error(x_true, x_true, row).psnr))


# -- masks ------------------------------------------------------------------------------

def test_mask_helpers():
    for side, region in [("top", (slice(0, 2), slice(None))),
                         ("bottom", (slice(3, 5), slice(None))),
                         ("left", (slice(None), slice(0, 3))),
                         ("right", (slice(None), slice(3, 6)))]:
        m = half_image_mask((5, 6, 3), side)
        assert m.shape == (1, 5, 6, 3) and m.dtype == np.float32
        expected = np.zeros((5, 6, 3), np.float32)
        expected[region] = 1.0
        np.testing.assert_array_equal(m[0], expected, err_msg=side)
    box = box_mask((8, 8), top=1, left=2, height=3, width=4)
    assert box.shape == (1, 8, 8) and box.sum() == 12 and box[0, 1:4, 2:6].all()
    m = np.asarray(random_pixel_mask(jax.random.PRNGKey(0), (64, 7, 7), 0.3))
    assert m.shape == (64, 7, 7) and set(np.unique(m)) == {0.0, 1.0}
    np.testing.assert_array_equal(m.sum(axis=(1, 2)), round(0.3 * 49))  # exactly k each
    assert len({row.tobytes() for row in m}) == 64  # each example its own pixels
    # Every pixel about equally likely: 64 * 15 / 49 ~ 19.6 hits per pixel.
    assert 5 < m.sum(axis=0).min() and m.sum(axis=0).max() < 40
    np.testing.assert_array_equal(m, random_pixel_mask(jax.random.PRNGKey(0), (64, 7, 7), 0.3))


# -- argument checks --------------------------------------------------------------------

E2 = gaussian(np.zeros(2), np.eye(2)).energy_fn
X2 = jnp.zeros((4, 2))
M2 = np.array([[1.0, 0.0]], np.float32)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mask=np.ones((4, 3))), r"mask has shape \(4, 3\): expected \(4 or 1, 2 or 1\) to match "
                                 r"x_observed of shape \(4, 2\)"),
    (dict(mask=np.ones((3, 2))), r"mask has shape \(3, 2\): expected \(4 or 1, 2 or 1\)"),
    (dict(mask=np.ones(2)), r"mask has shape \(2,\): expected \(4 or 1, 2 or 1\)"),
    (dict(mask=np.array([[0.5, 0.0]])), r"mask has values other than 0 and 1 \(e.g. 0.5\): "
                                        r"expected 1 = missing pixel to fill, 0 = observed"),
    (dict(mask=np.array([[2, 0]])), r"mask has values other than 0 and 1 \(e.g. 2\)"),
    (dict(x_observed=jnp.zeros(2)), r"x_observed has shape \(2,\): expected a batch \[B, D...\]"),
    (dict(x_observed=jnp.zeros((4, 2), jnp.int32)), r"x_observed has dtype int32: expected a "
                                                    r"floating-point array"),
    (dict(num_steps=0), r"num_steps=0: expected a positive Python int"),
    (dict(num_steps=2.5), r"num_steps=2.5"),
    (dict(step_size=None), r"step_size is None: expected a positive step size"),
    (dict(step_size=-0.1), r"step_size=-0.1: expected a positive finite number"),
    (dict(init="zeros"), r"init='zeros': expected 'noise', 'mean' or an array of shape \(4, 2\)"),
    (dict(init=jnp.zeros((3, 2))), r"init has shape \(3, 2\): expected \(4, 2\)"),
    (dict(clip_range=(1.0, -1.0)), r"clip_range=\(1.0, -1.0\): expected \(low, high\) with low"),
    (dict(cond=(jnp.zeros(3),)), r"cond\[0\] has shape \(3,\): expected a leading batch axis of 4"),
    (dict(sampler_or_energy=3), r"sampler_or_energy is a int: expected an energy_fn"),
    (dict(sampler_or_energy=lambda p, x: x), r"sampler_or_energy returned \(2,\) \(dtype "
                                             r"float32\) for one example of shape \(2,\): "
                                             r"expected a floating-point scalar"),
    (dict(sampler_or_energy=mala(masked_energy(E2), 0.1)),
     r"step_size given with a Sampler: expected them only with an energy_fn"),
    (dict(sampler_or_energy=mala(E2, 0.1), step_size=None),
     r"sampler_or_energy is a Sampler whose init.*failed.*expected a Sampler built on "
     r"masked_energy\(energy_fn\)"),
])
# Removing the 0/1 check of the mask fails its three cases (here and below).
def test_inpaint_rejects_bad_input(kwargs, message):
    args = dict(rng_key=jax.random.PRNGKey(0), sampler_or_energy=E2, params=None,
                x_observed=X2, mask=M2, num_steps=5, step_size=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        inpaint(**args)


@pytest.mark.parametrize("call, message", [
    (lambda: denoise(E2, None, X2, num_steps=5, step_size=0.0), r"step_size=0.0: expected a "
                                                                r"positive finite number"),
    (lambda: denoise(None, E2, X2, num_steps=5, step_size=0.1), r"energy_fn is a NoneType"),
    (lambda: denoise(E2, None, jnp.zeros(2), num_steps=5, step_size=0.1),
     r"x_noisy has shape \(2,\): expected a batch"),
    (lambda: reconstruction_error(X2, jnp.zeros((4, 3)), M2),
     r"x_filled has shape \(4, 2\): expected \(4, 3\), the shape of x_true"),
    (lambda: reconstruction_error(X2, X2, np.zeros((1, 2))), r"mask has no missing pixels"),
    (lambda: reconstruction_error(X2, X2, np.full((1, 2), 0.3)), r"mask has values other than"),
    (lambda: reconstruction_error(X2, X2, np.ones((2, 2))), r"mask has shape \(2, 2\): expected "
                                                            r"\(4 or 1, 2 or 1\) to match x_true"),
    (lambda: half_image_mask((8, 8), "middle"), r"side='middle': expected one of"),
    (lambda: half_image_mask((8,), "top"), r"image_shape=\(8,\): expected \(H, W\) or \(H, W, C\)"),
    (lambda: box_mask((8, 8), 6, 0, 4, 2), r"box rows \[6, 10\) x columns \[0, 2\): expected it "
                                           r"inside the 8 x 8 image"),
    (lambda: box_mask((8, 8), 0, 0, 0, 2), r"height=0: expected an int >= 1"),
    (lambda: random_pixel_mask(jax.random.PRNGKey(0), (4, 4), 1.5),
     r"fraction=1.5: expected a number in \[0, 1\]"),
    (lambda: random_pixel_mask(jax.random.PRNGKey(0), (16,), 0.5),
     r"shape=\(16,\): expected \(B, D...\)"),
])
def test_other_functions_reject_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- progressive inpainting through noise levels ---------------------------------------------


def replacement_moments(schedule, cov, observed_value):
    """Mean and std of the missing coordinate that the replacement method gives for data
    ``N(0, cov)`` (2-D, coordinate 0 observed) when every level's conditional
    ``p(x_t | x_{t+1})`` is the diffusion's own (exact level energies) and sampled exactly:
    a linear-Gaussian recursion. The state ``x_{t+1}`` is Gaussian; at level ``t`` the
    observed coordinate is the observation diffused to ``t`` (independent of the past) and the
    missing one is drawn from ``p(x_t | x_{t+1})`` conditioned on it."""
    ma, ms = schedule.marginal_alphas, schedule.marginal_sigmas
    top = schedule.num_levels
    mean, state_cov = np.array([ma[top] * observed_value, 0.0]), np.diag([ms[top] ** 2, 1.0])
    for t in range(top - 1, -1, -1):
        alpha, sigma = schedule.alphas[t], schedule.sigmas[t]
        marginal = ma[t] ** 2 * cov + ms[t] ** 2 * np.eye(2)
        k = np.linalg.inv(np.linalg.inv(marginal) + (alpha / sigma) ** 2 * np.eye(2))
        gain = k * alpha / sigma ** 2                 # E[x_t | x_{t+1}] = gain @ x_{t+1}
        c_obs = k[1, 0] / k[0, 0]
        c_state = gain[1] - c_obs * gain[0]
        obs_mean, obs_var = ma[t] * observed_value, ms[t] ** 2
        missing_var = (c_state @ state_cov @ c_state + c_obs ** 2 * obs_var
                       + k[1, 1] - k[1, 0] ** 2 / k[0, 0])
        mean = np.array([obs_mean, c_state @ mean + c_obs * obs_mean])
        state_cov = np.array([[obs_var, c_obs * obs_var], [c_obs * obs_var, missing_var]])
    return mean[1], np.sqrt(state_cov[1, 1])


@pytest.mark.slow  # a long statistical check (over 1.5 s)
@pytest.mark.parametrize("start", ["rescaled", "initializer"])
def test_progressive_inpainting_matches_the_replacement_methods_law(start):
    """Data N(0, [[1, .9], [.9, 1]]), the exact level energies, x_0 observed at 1: 4,000 fills
    by 100 MALA steps a level have the missing coordinate's mean and std of the recursion
    above (0.716 and 0.518 on the cosine schedule; the exact conditional's are 0.9 and 0.436:
    the method's own bias) within 5 standard errors. Not diffusing the observation (0.787)
    or not injecting it (0) is more than 8 standard errors away. The learned-initializer
    start (CDRL's chain start, here the rescaled sample with no noise) gives the same law."""
    schedule, cov, num = noise_schedule("cosine"), np.array([[1.0, 0.9], [0.9, 1.0]]), 4000
    precisions = jnp.asarray(np.stack([np.linalg.inv(
        schedule.marginal_alphas[t] ** 2 * cov + schedule.marginal_sigmas[t] ** 2 * np.eye(2))
        for t in range(schedule.num_levels)]), jnp.float32)

    def energy_fn(params, x, t):
        return 0.5 * x @ precisions[t] @ x

    chain = {"chain_init": "rescaled"}
    if start == "initializer":
        alphas = jnp.asarray(schedule.alphas, jnp.float32)
        chain = {"chain_start": initializer_start(lambda p, x, t: x / alphas[t],
                                                  np.zeros(schedule.num_levels))}
    x = jnp.tile(jnp.array([[1.0, -3.0]]), (num, 1))    # the missing entry's value is ignored
    filled = np.asarray(jax.jit(lambda key: progressive_inpaint(
        key, energy_fn, None, schedule, x, jnp.array([[0, 1]]), num_langevin_steps=100,
        **chain))(jax.random.key(0)))
    assert np.all(filled[:, 0] == 1.0)
    mean, std = replacement_moments(schedule, cov, 1.0)
    assert abs(filled[:, 1].mean() - mean) < Z * std / np.sqrt(num)
    assert abs(filled[:, 1].std() - std) < Z * std / np.sqrt(2 * num)


def test_progressive_inpainting_refuses_a_bad_observation():
    with pytest.raises(ValueError, match="mask has shape"):
        progressive_inpaint(jax.random.key(0), lambda p, x, t: jnp.sum(x), None, "t6",
                            jnp.ones((2, 4)), jnp.ones((2, 3)), chain_init="rescaled")
    with pytest.raises(ValueError, match="observed with chain_init='importance'"):
        progressive_inpaint(jax.random.key(0), lambda p, x, t: jnp.sum(x), None, "t6",
                            jnp.ones((2, 4)), jnp.ones((1, 4)))
