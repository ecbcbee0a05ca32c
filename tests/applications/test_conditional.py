"""Tests of class-conditional and composed sampling (``ebm_jax.applications.conditional``).

Two toy classifiers:

* ``hadamard_logits``: linear logits ``f(x) = 0.5 H x`` over ``x ∈ [-1, 1]^16`` with the
  rows of a 16 x 16 Hadamard matrix for 10 classes. Under the JEM sampler (SGLD, step 1,
  noise 0.01, clamped to ``[-1, 1]``), ``E(x, y) = -f(x)[y]`` drives the chain to the
  corner ``sign(H_y)``, where the classifier gives class ``y`` a margin of 8 logits: a
  conditional sampler must produce samples classified as the requested class far above
  the chance rate 1/10.
* ``gaussian_logits``: ``f(x) = W x + b - |x|²/2`` (the classifier ``softmax(W x + b)`` is
  linear, the quadratic term is common to all classes), whose class-conditional
  ``p(x | y) ∝ exp f(x)[y]`` is exactly ``N(W_y, I)``, whatever ``b``. Compositions of
  classes are Gaussian too: AND of classes a, b is ``N((W_a + W_b)/2, I/2)``, and
  "a NOT b" with strength α is ``N((W_a - α W_b)/(1 - α), I/(1 - α))``.

Moment tests use the temperature form of SGLD (ULA) with a known discretisation bias (on
an isotropic Gaussian of variance c, ULA's stationary variance is ``c / (1 - h/(2c))``;
see ``tests/test_langevin.py::ula_covariance``; the mean is unbiased), or MALA (unbiased).
Every chain runs far past its mixing time and only its final position is kept, so the
draws are independent (ESS = number of chains): each statistic must be within Z = 5
standard errors ``sd / sqrt(n)``. Keys are fixed; the tests are deterministic.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.conditional import sample_composed, sample_conditional
from ebm_jax.energies import joint_energy_from_logits
from ebm_jax.samplers import mala

Z = 5.0

# Sylvester's 16 x 16 Hadamard matrix: rows are orthogonal ±1 vectors.
_H2 = np.array([[1.0, 1.0], [1.0, -1.0]])
HADAMARD = np.kron(np.kron(np.kron(_H2, _H2), _H2), _H2)[:10].astype(np.float32)
JEM = dict(num_steps=30, step_size=1.0, noise_scale=0.01, clip_range=(-1.0, 1.0))


def hadamard_logits(params, x):
    return 0.5 * params @ x


def classify(params, x):
    return np.asarray(jnp.argmax(jax.vmap(hadamard_logits, in_axes=(None, 0))(params, x), -1))


GAUSS_PARAMS = {"w": jnp.array([[2.0, 2.0], [-2.0, 2.0], [-2.0, -2.0], [2.0, -2.0]]),
                "b": jnp.array([0.5, -1.0, 2.0, 0.0])}  # biases do not change p(x | y)


def gaussian_logits(params, x):
    return params["w"] @ x + params["b"] - 0.5 * jnp.sum(x**2)


def check_isotropic(x, mean, var):
    """Independent draws ``x [n, 2]`` have this mean and covariance ``var * I`` (each of the
    5 statistics within Z standard errors). Returns the z-scores."""
    d = np.asarray(x, np.float64) - mean
    stats = {"mean[0]": d[:, 0], "mean[1]": d[:, 1], "var[0]": d[:, 0] ** 2 - var,
             "var[1]": d[:, 1] ** 2 - var, "cov[0,1]": d[:, 0] * d[:, 1]}
    z = {k: f.mean() / (f.std() / np.sqrt(len(f))) for k, f in stats.items()}
    assert all(abs(v) < Z for v in z.values()), f"z-scores beyond {Z}: {z}"
    return z


# -- conditional sampling ---------------------------------------------------------------

# Breakages caught (checked by editing conditional.py, then restoring it):
#  - the sign of the class energy flipped (+f(x)[y]): rate 0.0;
#  - the labels ignored (the marginal energy -logsumexp f(x)): rate ~0.1, chance;
#  - labels misaligned with the chains (reversed): rate 0.0.
def test_sample_conditional_produces_the_requested_class():
    params = jnp.asarray(HADAMARD)
    labels = jnp.tile(jnp.arange(10), 20)  # 200 chains, 20 per class
    x = sample_conditional(jax.random.PRNGKey(0), hadamard_logits, params, labels, shape=(16,),
                           **JEM)
    assert x.shape == (200, 16) and x.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(x)) <= 1.0)
    rate = np.mean(classify(params, x) == np.asarray(labels))
    assert rate > 0.9, f"classified as the requested class at rate {rate} (chance 0.1)"


# Breakages caught: labels misaligned with the chains (a variance off by 112 SE); the
# marginal energy instead of the joint one (19-50 SE); the energy's sign flipped (the
# chains run off: 99 SE). Measured |z| < 2 with the keys below; against the exact variance
# 1 instead of ULA's 1/(1 - h/2) the variances are off by 7-9 SE at h = 0.4, so the ULA
# law is what the test checks.
def test_sample_conditional_matches_gaussian_class_conditionals():
    """SGLD (ULA, h = 0.4) on the Gaussian toy: residuals x - W_y are N(0, I / (1 - h/2))."""
    h, per_class = 0.4, 1000
    labels = jnp.repeat(jnp.arange(4), per_class)
    x = sample_conditional(jax.random.PRNGKey(1), gaussian_logits, GAUSS_PARAMS, labels,
                           shape=(2,), num_steps=200, step_size=h)
    residual = np.asarray(x) - np.asarray(GAUSS_PARAMS["w"])[np.asarray(labels)]
    check_isotropic(residual, 0.0, 1.0 / (1.0 - h / 2.0))


# Breakage caught: labels misaligned (a variance off by 123 SE). Measured |z| < 1.6.
@pytest.mark.slow
def test_sample_conditional_with_a_mala_sampler_is_exact():
    """A MALA sampler on the joint energy (the label its cond): residuals are N(0, I)."""
    labels = jnp.repeat(jnp.arange(4), 1000)
    sampler = mala(joint_energy_from_logits(gaussian_logits), 0.8)
    x = sample_conditional(jax.random.PRNGKey(2), gaussian_logits, GAUSS_PARAMS, labels,
                           shape=(2,), num_steps=200, sampler=sampler)
    residual = np.asarray(x) - np.asarray(GAUSS_PARAMS["w"])[np.asarray(labels)]
    check_isotropic(residual, 0.0, 1.0)


# -- composed sampling ------------------------------------------------------------------

# Breakages caught: classes_or taking all the classes (rate in {2, 7}: 0.205); only the
# first class of any_of used (no 7s). Measured: 98 twos and 102 sevens of 200.
def test_sample_composed_or_of_classes():
    params = jnp.asarray(HADAMARD)
    x = sample_composed(jax.random.PRNGKey(3), hadamard_logits, params, 200, shape=(16,),
                        any_of=(2, 7), **JEM)
    predicted = classify(params, x)
    assert np.mean(np.isin(predicted, [2, 7])) > 0.95, np.bincount(predicted, minlength=10)
    # Both classes are reached, from the basins of the uniform start.
    assert np.mean(predicted == 2) > 0.25 and np.mean(predicted == 7) > 0.25


# Breakages caught (in composition.py): negation's sign flipped (precision 1 + alpha: the
# mean off by 380 SE); alpha ignored (precision 0, a linear energy: the chains run off,
# >600 SE); classes_and keeping only its first class (118 SE); classes_or over all the
# classes (164 SE). Measured |z| < 1.7.
@pytest.mark.slow
@pytest.mark.parametrize("query, mean, var", [
    (dict(all_of=(0, 1)), np.array([0.0, 2.0]), 0.5),                      # (W0 + W1) / 2
    (dict(any_of=(0,), none_of=(2,), alpha=0.5), np.array([6.0, 6.0]), 2.0),  # (W0 - W2/2)/0.5
], ids=["and", "not"])
def test_sample_composed_and_not_match_closed_form_gaussians(query, mean, var):
    h = 0.2
    x = sample_composed(jax.random.PRNGKey(4), gaussian_logits, GAUSS_PARAMS, 4000, shape=(2,),
                        num_steps=300, step_size=h, **query)
    check_isotropic(x, mean, var / (1.0 - h / (2.0 * var)))


# -- argument checks --------------------------------------------------------------------

P = jnp.asarray(HADAMARD)
LABELS = jnp.arange(4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(labels=jnp.array([0, 10])), r"labels contains 10: expected class indices in \[0, 10\) "
                                      r"\(logits_fn returns 10 classes\)"),
    (dict(labels=jnp.array([-1, 2])), r"labels contains -1: expected class indices in \[0, 10\)"),
    (dict(labels=jnp.array([0.0, 1.0])), r"labels has dtype float32: expected integer class"),
    (dict(labels=jnp.zeros((2, 2), jnp.int32)), r"labels has shape \(2, 2\): expected \[B\]"),
    (dict(labels=jnp.zeros((0,), jnp.int32)),
     r"labels has shape \(0,\): expected \[B\] with B >= 1"),
    (dict(shape=(3,)), r"shape=\(3,\): logits_fn raised TypeError on one example of this shape"),
    (dict(shape=()), r"shape=\(\): expected the shape of one example, a non-empty tuple"),
    (dict(shape=(16, 0)), r"shape=\(16, 0\): expected the shape of one example"),
    (dict(num_steps=0), r"num_steps=0: expected a positive Python int"),
    (dict(step_size=None), r"step_size is None: expected a positive SGLD step size"),
    (dict(step_size=-1.0), r"step_size=-1.0: expected a positive finite number"),
    (dict(sampler=mala(joint_energy_from_logits(hadamard_logits), 0.1)),
     r"step_size, noise_scale, clip_range given with a sampler"),
    (dict(clip_range=(1.0, 1.0)), r"clip_range=\(1.0, 1.0\): expected \(low, high\)"),
    (dict(logits_fn=None), r"logits_fn is a NoneType: expected a callable"),
])
# Removing the label range check fails its two cases.
def test_sample_conditional_rejects_bad_input(kwargs, message):
    args = dict(rng_key=jax.random.PRNGKey(0), logits_fn=hadamard_logits, params=P,
                labels=LABELS, shape=(16,), **JEM)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample_conditional(**args)


@pytest.mark.parametrize("kwargs, message", [
    (dict(any_of=(3, 12)), r"class index 12 is out of range: logits_fn returned 10 classes"),
    (dict(any_of=(1,), none_of=(2,)), r"none_of is given but alpha is None"),
    (dict(any_of=None, none_of=(2,), alpha=0.5), r"any_of and all_of are both None"),
    (dict(any_of=(1,), none_of=(2,), alpha=-1.0), r"alpha=-1.0: expected a positive finite"),
    (dict(any_of=()), r"classes is empty"),
    (dict(num_samples=0), r"num_samples=0: expected a positive int"),
])
def test_sample_composed_rejects_bad_input(kwargs, message):
    args = dict(rng_key=jax.random.PRNGKey(0), logits_fn=hadamard_logits, params=P,
                num_samples=4, shape=(16,), any_of=(1, 2), **JEM)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample_composed(**args)


def test_generation_by_ascent_sweeps_the_step_count_and_keeps_the_best():
    from ebm_jax.applications.conditional import generate_by_ascent
    from ebm_jax.losses.dat import pgd_contrastive_samples

    def logits_fn(w, x):
        return w @ x
    w = jnp.array([[3.0, 4.0], [0.0, 1.0]])           # class 0 climbs along (0.6, 0.8)
    seeds = jnp.zeros((6, 2))
    labels = jnp.array([0, 1, 0, 1, 0, 1])
    target = np.where(np.asarray(labels)[:, None] == 0, [0.24, 0.32], [0.0, 0.4])  # 4 steps
    sweep = generate_by_ascent(logits_fn, w, seeds, labels, [2, 4, 6],
                               lambda x: float(np.abs(x - target).max()), step_size=0.1)
    assert sweep.best_steps == 4 and sweep.scores[4] < 1e-6 < sweep.scores[2]
    np.testing.assert_allclose(sweep.samples[6], pgd_contrastive_samples(
        logits_fn, w, seeds, labels, 6, step_size=0.1), atol=1e-6)
    with pytest.raises(ValueError, match=r"steps=\[\]"):
        generate_by_ascent(logits_fn, w, seeds, labels, [], lambda x: 0.0)
    with pytest.raises(ValueError, match="labels has shape"):
        generate_by_ascent(logits_fn, w, seeds, labels[:3], [1], lambda x: 0.0)
