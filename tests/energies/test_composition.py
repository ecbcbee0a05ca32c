"""Tests of the energy combinators (``ebm_jax.energies.composition``).

Each composition is checked on 2-D analytic densities whose composition is known in
closed form, twice: **pointwise** (the combined energy equals the closed-form energy,
up to the additive constant that does not change the density, over random points) and
**by sampling** (MALA, which is unbiased at any step size, must reproduce the closed-form
mean and centred second moments):

* AND, ``product``: ``N(m1, S1)^w1 N(m2, S2)^w2`` is Gaussian with precision
  ``P = w1 P1 + w2 P2`` and mean ``P⁻¹ (w1 P1 m1 + w2 P2 m2)``;
* OR, ``mixture`` of normalised parts: the mixture ``Σ w_i N_i`` itself;
* NOT, ``negation``: ``N(ma, Sa) / N(mb, Sb)^α`` is Gaussian with precision
  ``Pa - α Pb`` (positive definite here) and mean ``(Pa - α Pb)⁻¹ (Pa ma - α Pb mb)``.

Sampling tests follow ``tests/test_mala.py``: C = 256 vmapped chains started from
*exact* draws of the target, 100 burn-in steps (room for a wrong energy to move the
chains to its own law), then N = 400 recorded steps; each statistic (2 means, 3 centred
second moments) must be within ``Z * sd / sqrt(ESS)`` of its exact value, Z = 5, with ESS
the multi-chain effective sample size of :func:`ebm_jax.samplers.diagnostics.
effective_sample_size`. The keys are fixed: the tests are deterministic, and under
another seed a correct implementation fails one of the 15 checks with probability ~1e-5.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.energies import batch_energy, gaussian, gaussian_mixture, with_temperature
from ebm_jax.energies.composition import (ClassConditional, class_conditional, class_energy,
                                          classes_and, classes_or, composed_class_energy,
                                          guided, mixture, negation, product)
from ebm_jax.samplers import init_chains, langevin, mala, run_chains
from ebm_jax.samplers.diagnostics import effective_sample_size

Z = 5.0
NUM_CHAINS, BURN_IN, NUM_SAMPLES = 256, 100, 400

M1, S1 = np.array([1.0, -2.0]), np.array([[1.0, 0.5], [0.5, 0.75]])
M2, S2 = np.array([-1.0, 0.5]), np.array([[0.8, -0.3], [-0.3, 1.2]])
# For NOT: P_a - 0.5 P_b is positive definite (eigenvalues ~2.2 and ~0.32), P_a - P_b is not.
MA, SA = np.array([0.5, 1.0]), np.array([[1.0, 0.3], [0.3, 0.5]])
MB, SB = np.array([-1.0, 2.0]), 0.9 * np.eye(2)
ALPHA = 0.5
MIXTURE = dict(weights=[0.3, 0.7], means=[[-1.2, -0.4], [1.0, 0.6]], stds=[0.6, 0.8])


def _points(seed, n=64, scale=2.0):
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(n, 2)), jnp.float32)


def _gaussian_product(weights):
    """Mean and covariance of N(M1, S1)^w1 N(M2, S2)^w2."""
    p1, p2 = np.linalg.inv(S1), np.linalg.inv(S2)
    precision = weights[0] * p1 + weights[1] * p2
    cov = np.linalg.inv(precision)
    return cov @ (weights[0] * p1 @ M1 + weights[1] * p2 @ M2), cov


def _gaussian_negation(alpha):
    """Mean and covariance of N(MA, SA) / N(MB, SB)^alpha."""
    pa, pb = np.linalg.inv(SA), np.linalg.inv(SB)
    precision = pa - alpha * pb
    assert np.linalg.eigvalsh(precision).min() > 0
    cov = np.linalg.inv(precision)
    return cov @ (pa @ MA - alpha * pb @ MB), cov


def _normalised(g):
    """``-log_prob`` of an analytic Gaussian: a normalised energy."""
    return lambda params, x: g.energy_fn(params, x) + g.log_z


def sample_chains(rng_key, energy_fn, params, x0, step_size):
    """MALA positions ``[C, NUM_SAMPLES, 2]`` after BURN_IN steps, and the mean acceptance.

    One chain is one ``lax.scan`` of BURN_IN + NUM_SAMPLES steps (a single compiled
    program: compilation, not sampling, dominates the cost here), vmapped over chains."""
    sampler = mala(energy_fn, step_size)

    @jax.jit
    def run(rng_key, x0):
        def chain(key, x):
            def body(state, key):
                state, info = sampler.step(key, state, params)
                return state, (state.position, info.acceptance_rate)

            _, (xs, acc) = jax.lax.scan(body, sampler.init(x, params),
                                        jax.random.split(key, BURN_IN + NUM_SAMPLES))
            return xs[BURN_IN:], jnp.mean(acc[BURN_IN:])

        xs, acc = jax.vmap(chain)(jax.random.split(rng_key, x0.shape[0]), x0)
        return xs, jnp.mean(acc)

    xs, acc = run(rng_key, jnp.asarray(x0, jnp.float32))
    return np.asarray(xs, np.float64), float(acc)


def energies(energy_fn, params, x):
    """``energy_fn`` at every row of ``x``, jitted (one compile instead of op-by-op)."""
    return np.asarray(jax.jit(batch_energy(energy_fn))(params, x), np.float64)


def check_moments(xs, mean, cov):
    """Assert that draws ``xs [C, N, D]`` have this mean and these centred second moments,
    each within Z Monte Carlo standard errors (ESS-based). Returns the z-scores."""
    d = xs.shape[-1]
    names, stats = [], []
    for i in range(d):
        names.append(f"mean[{i}]")
        stats.append(xs[..., i] - mean[i])
    for i in range(d):
        for j in range(i, d):
            names.append(f"cov[{i},{j}]")
            stats.append((xs[..., i] - mean[i]) * (xs[..., j] - mean[j]) - cov[i][j])
    f = np.stack(stats, axis=-1)  # [C, N, S]
    ess = np.asarray(effective_sample_size(jnp.asarray(f, jnp.float32)), np.float64)
    se = f.reshape(-1, f.shape[-1]).std(0) / np.sqrt(ess)
    z = dict(zip(names, f.reshape(-1, f.shape[-1]).mean(0) / se))
    assert all(abs(v) < Z for v in z.values()), f"z-scores beyond {Z}: {z}"
    return z


# -- AND: product of experts -------------------------------------------------------------

# Breakages caught (checked by editing composition.py, then restoring it):
#  - weights ignored (plain sum): the pointwise check fails; with that check removed, the
#    MALA moments are off by 18-96 SE (correct: |z| < 1.8, acceptance 0.83);
#  - weight applied to the wrong part (w[i] -> w[n-1-i]): the pointwise check fails.
@pytest.mark.slow
def test_product_of_gaussians_is_the_gaussian_with_summed_precisions():
    weights = (1.0, 2.0)
    mean, cov = _gaussian_product(weights)
    a, b = gaussian(M1, S1), gaussian(M2, S2)
    both = product(a.energy_fn, b.energy_fn, weights=weights)
    target = gaussian(mean, cov)
    x = _points(0)
    offset = energies(both, (None, None), x) - energies(target.energy_fn, None, x)
    # Equal up to a constant (the normaliser): the same density.
    np.testing.assert_allclose(offset, offset[0], atol=2e-4 * (1 + abs(float(offset[0]))))

    x0 = target.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    xs, acc = sample_chains(jax.random.PRNGKey(0), both, (None, None), x0, 0.15)
    assert 0.5 < acc < 0.95
    check_moments(xs, mean, cov)


# -- OR: mixture -------------------------------------------------------------------------

# Breakages caught: weights forgotten (log w_i dropped): the pointwise check fails, and
# with equal weights instead of 0.3/0.7 the MALA moments are off by 22-25 SE (correct:
# |z| < 2.5, acceptance 0.70); weights not normalised (log w_i instead of log(w_i / Σ w)):
# the pointwise check (the mixture of normalised parts must be *exactly* the normalised
# mixture, with no offset); sign of -E_i flipped inside the logsumexp: pointwise check.
@pytest.mark.slow
def test_or_of_normalised_gaussians_is_their_mixture():
    mix = gaussian_mixture(**MIXTURE)
    parts = [gaussian(np.asarray(m), s**2 * np.eye(2))
             for m, s in zip(MIXTURE["means"], MIXTURE["stds"])]
    either = mixture(*[_normalised(g) for g in parts], weights=[3.0, 7.0])  # normalised here
    x = _points(1)
    # The energy pointwise equals -log of the mixture density (log Z = 0): no offset at all.
    np.testing.assert_allclose(energies(either, (None, None), x), energies(mix.energy_fn, None, x),
                               rtol=1e-5, atol=1e-5)

    x0 = mix.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    xs, acc = sample_chains(jax.random.PRNGKey(0), either, (None, None), x0, 0.5)
    assert 0.5 < acc < 0.95
    check_moments(xs, np.asarray(mix.mean), np.asarray(mix.covariance))


def test_or_of_unnormalised_parts_reweights_them_by_their_normalisers():
    """The documented caveat: with unnormalised parts, the effective weights are
    w_i Z_i / Σ w_j Z_j (here Z_i = exp(log_z_i) of the analytic Gaussians)."""
    parts = [gaussian(np.zeros(2), np.eye(2)), gaussian(np.ones(2), 9.0 * np.eye(2))]
    either = mixture(*[g.energy_fn for g in parts])                  # equal weights
    z = np.exp([float(g.log_z) for g in parts])
    effective = gaussian_mixture(weights=z / z.sum(), means=[[0, 0], [1, 1]], stds=[1.0, 3.0])
    x = _points(2)
    offset = energies(either, (None, None), x) - energies(effective.energy_fn, None, x)
    np.testing.assert_allclose(offset, offset[0], atol=1e-4)


# -- NOT: negation -----------------------------------------------------------------------

# Breakages caught: wrong sign (E_a + alpha E_b): the pointwise check fails, and with it
# removed the MALA moments are off by 47-427 SE (correct: |z| < 2.2, acceptance 0.88);
# alpha ignored (E_a - E_b, improper here: Pa - Pb has a negative eigenvalue): pointwise
# fails, and MALA drifts away (acceptance 0.01, moments off by >70 SE).
def test_not_of_gaussians_is_the_gaussian_with_subtracted_precision():
    mean, cov = _gaussian_negation(ALPHA)
    a, b = gaussian(MA, SA), gaussian(MB, SB)
    assert np.linalg.eigvalsh(np.linalg.inv(SA) - np.linalg.inv(SB)).min() < 0  # alpha matters
    a_not_b = negation(a.energy_fn, b.energy_fn, ALPHA)
    target = gaussian(mean, cov)
    x = _points(3)
    offset = energies(a_not_b, (None, None), x) - energies(target.energy_fn, None, x)
    np.testing.assert_allclose(offset, offset[0], atol=2e-4 * (1 + abs(float(offset[0]))))

    x0 = target.sample(jax.random.PRNGKey(1), NUM_CHAINS)
    xs, acc = sample_chains(jax.random.PRNGKey(0), a_not_b, (None, None), x0, 0.3)
    assert 0.5 < acc < 0.95
    check_moments(xs, mean, cov)


# -- class-conditional energies ----------------------------------------------------------

def _linear_logits(params, x):
    return params["w"] @ x + params["b"]


def _classifier(seed, k=5, d=3):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(k, d)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(k,)), jnp.float32)}


def _logsumexp(a, axis=-1):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True)))[..., 0]


# Breakages caught: classes_or taking the logsumexp over all the classes instead of the
# chosen ones; classes_and summing all the classes; class_energy's sign flipped (+f[y]);
# mixture's weights not normalised (the log 2 offset below).
def test_class_energies_on_linear_logits_reproduce_logsumexp_pointwise():
    params = _classifier(0)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(50, 3)), jnp.float32)
    labels = jnp.full(50, 2)
    cc = class_conditional(_linear_logits)
    assert isinstance(cc, ClassConditional)
    fns = {
        "class_2": class_energy(_linear_logits, 2),
        "or_13": classes_or(_linear_logits, (1, 3)),
        "and_024": classes_and(_linear_logits, [0, 2, 4]),
        "cc_or_all": cc.classes_or(range(5)),
        "cc_marginal": cc.marginal,
        "cc_joint_2": lambda p, x, y: cc.joint(p, x, y),
        "cc_class_2": cc.class_energy(2),
        "mixture_13": mixture(cc.class_energy(1), cc.class_energy(3), shared_params=True),
        "cc_or_13": cc.classes_or((1, 3)),
        "product_04": product(cc.class_energy(0), cc.class_energy(4), shared_params=True),
        "cc_and_04": cc.classes_and((0, 4)),
    }

    @jax.jit
    def evaluate(params, x, labels):  # one compile for all of them
        out = {k: batch_energy(f)(params, x) for k, f in fns.items() if k != "cc_joint_2"}
        out["cc_joint_2"] = batch_energy(fns["cc_joint_2"])(params, x, labels)
        out["logits"] = jax.vmap(_linear_logits, in_axes=(None, 0))(params, x)
        return out

    e = {k: np.asarray(v, np.float64) for k, v in evaluate(params, x, labels).items()}
    logits = e["logits"]
    close = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e["class_2"], -logits[:, 2], **close)
    np.testing.assert_allclose(e["or_13"], -_logsumexp(logits[:, [1, 3]]), **close)
    np.testing.assert_allclose(e["and_024"], -logits[:, [0, 2, 4]].sum(-1), **close)
    # All the classes: the JEM marginal energy; the joint energy at y = 2 is class 2's.
    np.testing.assert_allclose(e["cc_or_all"], e["cc_marginal"], **close)
    np.testing.assert_allclose(e["cc_or_all"], -_logsumexp(logits), **close)
    np.testing.assert_allclose(e["cc_joint_2"], e["cc_class_2"], **close)
    # OR of class energies of one network is the (shared-params) mixture of them, up to the
    # log of the number of parts (the mixture normalises its weights); AND is their product.
    np.testing.assert_allclose(e["mixture_13"], e["cc_or_13"] + np.log(2.0), **close)
    np.testing.assert_allclose(e["product_04"], e["cc_and_04"], **close)
    np.testing.assert_allclose(e["cc_and_04"], -logits[:, [0, 4]].sum(-1), **close)


# Breakages caught: negation's sign flipped or alpha ignored; classes_or/classes_and over
# all the classes.
def test_composed_class_energy_is_or_and_not():
    params = _classifier(2, k=6)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(20, 3)), jnp.float32)
    logits = np.asarray(x, np.float64) @ np.asarray(params["w"], np.float64).T + np.asarray(
        params["b"], np.float64)
    energy = composed_class_energy(_linear_logits, any_of=(1, 2), all_of=(3,), none_of=(0, 5),
                                   alpha=0.25)
    expected = (-_logsumexp(logits[:, [1, 2]]) - logits[:, 3]
                + 0.25 * _logsumexp(logits[:, [0, 5]]))
    np.testing.assert_allclose(energies(energy, params, x), expected, rtol=1e-4, atol=1e-4)


# -- composed energies are ordinary energies ---------------------------------------------

def test_compositions_nest_take_cond_and_run_in_samplers_under_jit():
    shift_energy = lambda p, x, shift: 0.5 * jnp.sum((x - p - shift) ** 2)  # noqa: E731
    inner = product(shift_energy, shift_energy, weights=[1.0, 3.0])
    outer = mixture(inner, with_temperature(shift_energy, 2.0), weights=[0.5, 0.5])
    params = ((jnp.zeros(2), jnp.ones(2)), jnp.full(2, -1.0))
    shift = jnp.full((8, 2), 0.5)
    e_inner = 0.5 * 0.5 + 3.0 * 0.5 * 4.5  # |x - 0 - 0.5|² = 0.5, |x - 1 - 0.5|² = 4.5 at x = 0
    e_temp = 0.5 * 0.5 / 2.0               # |x + 1 - 0.5|² = 0.5, at T = 2
    expected = -np.log(0.5 * np.exp(-e_inner) + 0.5 * np.exp(-e_temp))

    sampler = langevin(outer, step_size=0.05)

    @jax.jit
    def run(key, params):
        states = init_chains(sampler, jnp.zeros((8, 2)), params, shift)
        return run_chains(key, sampler, states, params, 20, shift, trace=True)

    states, info = run(jax.random.PRNGKey(0), params)
    # The first step's energy is the composed energy at the start, x = 0.
    np.testing.assert_allclose(info.energy[:, 0], expected, rtol=1e-6)
    assert states.position.shape == (8, 2) and np.all(np.isfinite(states.position))
    assert int(info.nonfinite.sum()) == 0


def test_weights_may_be_traced():
    a, b = gaussian(M1, S1), gaussian(M2, S2)

    @jax.jit
    def f(w, x):
        return (product(a.energy_fn, b.energy_fn, weights=w)((None, None), x),
                mixture(a.energy_fn, b.energy_fn, weights=w)((None, None), x))

    x = jnp.array([0.3, -0.2])
    got_p, got_m = f(jnp.array([1.0, 2.0]), x)
    np.testing.assert_allclose(got_p, product(a.energy_fn, b.energy_fn, weights=[1.0, 2.0])(
        (None, None), x), rtol=1e-6)
    np.testing.assert_allclose(got_m, mixture(a.energy_fn, b.energy_fn, weights=[1.0, 2.0])(
        (None, None), x), rtol=1e-6)


# -- argument checks ---------------------------------------------------------------------

E = gaussian(M1, S1).energy_fn


@pytest.mark.parametrize("build, message", [
    (lambda: product(), r"product\(\) got no energy functions: expected at least one"),
    (lambda: mixture(), r"mixture\(\) got no energy functions"),
    (lambda: product([E, E]), r"energy_fns\[0\] is a list: expected a callable.*product\(e1, e2\)"),
    (lambda: mixture(E, 3.0), r"energy_fns\[1\] is a float: expected a callable"),
    (lambda: product(E, E, weights=[1.0]), r"weights has shape \(1,\): expected \(2,\)"),
    (lambda: mixture(E, E, weights=[1.0, 2.0, 3.0]), r"weights has shape \(3,\): expected \(2,\)"),
    (lambda: mixture(E, E, weights=[1.0, 0.0]), r"weights=\[1.0, 0.0\]: expected positive"),
    (lambda: product(E, E, weights=[1.0, -2.0]), r"weights=\[1.0, -2.0\]: expected positive"),
    (lambda: product(E, E, weights=[1.0, float("nan")]), r"weights=\[1.0, nan\]"),
    (lambda: product(E, E, weights="ab"), r"weights='ab': expected a sequence of 2 positive"),
    (lambda: negation(E, E, -0.5), r"alpha=-0.5: expected a positive finite number"),
    (lambda: negation(E, E, 0.0), r"alpha=0.0: expected a positive finite number"),
    (lambda: negation(E, E, float("inf")), r"alpha=inf"),
    (lambda: negation(E, E, np.array([0.1, 0.2])), r"alpha has shape \(2,\): expected a scalar"),
    (lambda: negation(E, None, 0.5), r"energy_fns\[1\] is a NoneType"),
    (lambda: class_energy(_linear_logits, -1), r"y=-1: expected a non-negative class index"),
    (lambda: class_energy(_linear_logits, 1.5), r"y=1.5: expected a non-negative Python int"),
    (lambda: classes_or(_linear_logits, []), r"classes is empty: expected at least one"),
    (lambda: classes_and(_linear_logits, (1, 1)), r"repeated indices: expected distinct"),
    (lambda: classes_or(_linear_logits, 3), r"classes=3: expected a sequence of class indices"),
    (lambda: classes_or(_linear_logits, (0, -2)), r"classes\[1\]=-2: expected a non-negative"),
    (lambda: composed_class_energy(_linear_logits, none_of=(1,), alpha=0.5),
     r"any_of and all_of are both None"),
    (lambda: composed_class_energy(_linear_logits, any_of=(1,), none_of=(2,)),
     r"none_of is given but alpha is None"),
    (lambda: class_conditional("f"), r"logits_fn is a str: expected a callable"),
])
def test_bad_arguments_raise_at_construction(build, message):
    # Each check was removed in turn (weights positivity, alpha, params length): its cases
    # fail here.
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("energy, params, message", [
    (product(E, E), None, r"params is a NoneType: expected a tuple or list of 2 params, one per "
                          r"energy in the order given to product\(\).*shared_params=True"),
    (mixture(E, E, E), (None, None), r"params is a tuple of length 2: expected a tuple or list "
                                     r"of 3 params"),
    (negation(E, E, 0.1), [None], r"params is a list of length 1: expected a tuple or list of 2"),
    (class_energy(_linear_logits, 5), _classifier(0), r"class index 5 is out of range: "
                                                      r"logits_fn returned 5 classes"),
    (classes_or(_linear_logits, (0, 7)), _classifier(0), r"class index 7 is out of range"),
])
def test_bad_params_or_classes_raise_when_traced(energy, params, message):
    """Checked when the energy is traced (shapes only), before any compute."""
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(energy, params, jnp.zeros(2 if params is None or
                                                 isinstance(params, (tuple, list)) else 3))


# ------------------------------------------------------------------ classifier-free guidance

def _class_gaussians(x, y):
    """E(x, y) = |x - μ_y|² / 2 with μ_0 = 0 the null class (the unconditional energy)."""
    means = jnp.array([[0.0, 0.0], [2.0, 0.0], [0.0, -1.0]])
    return 0.5 * jnp.sum((x - means[y]) ** 2)


@pytest.mark.parametrize("weight", [0.0, 1.0, 3.0])
def test_guidance_moves_the_class_mode_to_one_plus_w_times_its_mean(weight):
    # (1+w)|x-μ|²/2 - w|x|²/2 = |x - (1+w)μ|²/2 + const: the mode is (1+w)μ, the curvature 1
    energy = guided(lambda p, x, y: _class_gaussians(x, y), weight, null_label=0)
    grad = jax.grad(energy, argnums=1)(None, (1 + weight) * jnp.array([2.0, 0.0]), 1)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    hess = jax.hessian(energy, argnums=1)(None, jnp.zeros(2), 1)
    np.testing.assert_allclose(hess, jnp.eye(2), atol=1e-6)


def test_guidance_zero_is_the_energy_and_the_null_class_is_unchanged():
    energy = guided(lambda p, x, y: _class_gaussians(x, y), 2.5, null_label=0)
    x = jnp.array([0.3, -0.7])
    np.testing.assert_allclose(energy(None, x, 0), _class_gaussians(x, 0), rtol=1e-6)
    plain = guided(lambda p, x, y: _class_gaussians(x, y), 0.0, null_label=0)
    np.testing.assert_allclose(plain(None, x, 2), _class_gaussians(x, 2), rtol=1e-6)
    # batched labels, one per example
    batched = jax.vmap(energy, in_axes=(None, 0, 0))(None, jnp.stack([x, x]), jnp.array([1, 2]))
    assert batched.shape == (2,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight=-1.0, null_label=0), "weight=-1.0"),
    (dict(weight=float("nan"), null_label=0), "weight=nan"),
    (dict(weight=1.0, null_label=-1), "null_label=-1"),
    (dict(weight=1.0, null_label=1.5), "null_label=1.5"),
])
def test_bad_guidance_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        guided(lambda p, x, y: 0.0, **kwargs)
