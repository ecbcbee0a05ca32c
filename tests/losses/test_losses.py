"""Tests of the loss transforms: contrastive divergence, cross-entropy, JEM, ``combine``."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.energies import batch_energy, energy_from_logits
from ebm_jax.losses import (CDState, LossTransform, combine, contrastive_divergence,
                            cross_entropy, jem_hybrid)
from ebm_jax.samplers import langevin
from ebm_jax.samplers import replay_buffer as rb
from ebm_jax.samplers import replay_buffer_start
from ebm_jax.train.state import init_train_state
from ebm_jax.train.step import make_train_step


def quadratic(params, x):
    """E(x) = 0.5 |x - mu|^2, so dE/dmu = mu - x."""
    return 0.5 * jnp.sum((x - params["mu"]) ** 2)


@functools.lru_cache(maxsize=None)
def vg(loss_fn):
    """Jitted value-and-grad of a loss transform's ``loss`` (one compile per loss and
    shapes, shared by the tests that use the same loss; not op-by-op)."""
    return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))


def constant_init(value):
    return lambda rng_key, shape: jnp.full(shape, value, jnp.float32)


# A deterministic CD setup whose negative samples are known in closed form: the buffer
# (and any reinitialisation) is the constant C0 and the sampler is noise-free gradient
# descent on the quadratic, so every chain ends at
#     x_s = mu + (1 - h)^K (C0 - mu),
# a function of mu: if gradients leaked through the chains they would change dL/dmu.
H, K, C0 = 0.1, 5, 0.0
SHRINK = (1 - H) ** K


def deterministic_cd(**options):
    sampler = langevin(quadratic, step_size=H, noise_scale=0.0)
    return contrastive_divergence(quadratic, sampler, num_steps=K, **options)


DETERMINISTIC_CD = deterministic_cd(
    chain_start=replay_buffer_start(capacity=64, init_fn=constant_init(C0)))


def data_batch(n=32, dim=2, loc=2.0, seed=0):
    return {"x": loc + 0.5 * jax.random.normal(jax.random.PRNGKey(seed), (n, dim))}


# -- contrastive divergence ---------------------------------------------------------

def test_cd_gradient_step_moves_mean_toward_data():
    """Data at +2, negative samples near 0 (buffer U(-0.1, 0.1), short noisy chains at
    mu = 0): one SGD step on the CD loss must raise mu toward the data. A flipped sign
    (E_sample - E_data) moves mu away, and fails."""
    sampler = langevin(quadratic, step_size=0.1, noise_scale=0.01)
    cd = contrastive_divergence(quadratic, sampler, num_steps=5,
                                chain_start=replay_buffer_start(
                                    capacity=100, init_fn=rb.uniform_init(-0.1, 0.1)))
    params = {"mu": jnp.zeros(2)}
    batch = {"x": jnp.full((32, 2), 2.0)}
    state = cd.init(jax.random.PRNGKey(0), params, batch)
    (value, (_, info)), grads = vg(cd.loss)(
        params, state, batch, jax.random.PRNGKey(1))
    # E_data = 0.5 * 2 * 2^2 = 4; the samples stay within ~0.1 of 0, so E_sample < 0.05.
    np.testing.assert_allclose(info["energy_data"], 4.0, rtol=1e-6)
    assert 0.0 <= float(info["energy_sample"]) < 0.05
    assert 3.9 < float(value) <= 4.0
    # dL/dmu = mean(x_sample) - mean(x_data) ~ 0 - 2.
    assert np.all(np.asarray(grads["mu"]) < -1.8)
    opt = optax.sgd(0.1)
    updates, _ = opt.update(grads, opt.init(params))
    new_mu = optax.apply_updates(params, updates)["mu"]
    assert np.all((np.asarray(new_mu) > 0.15) & (np.asarray(new_mu) < 2.0))


def test_cd_gradient_is_analytic_with_samples_held_constant():
    params = {"mu": jnp.array([0.5, -0.3])}
    batch = data_batch()
    cd = DETERMINISTIC_CD
    state = cd.init(jax.random.PRNGKey(0), params, batch)
    (value, (_, info)), grads = vg(cd.loss)(
        params, state, batch, jax.random.PRNGKey(1))
    mu, x = np.asarray(params["mu"], np.float64), np.asarray(batch["x"], np.float64)
    x_s = mu + SHRINK * (C0 - mu)
    e_data = 0.5 * np.sum((x - mu) ** 2, axis=1)
    e_sample = 0.5 * np.sum((x_s - mu) ** 2)
    np.testing.assert_allclose(value, e_data.mean() - e_sample, rtol=1e-5)
    np.testing.assert_allclose(info["energy_sample"], e_sample, rtol=1e-5)
    # E_data[dE/dmu] - E_sample[dE/dmu] = mean(mu - x) - (mu - x_s) = x_s - mean(x).
    # Differentiating through the chains would add -(x_s - mu)(1 - SHRINK) = +0.121 on
    # the first coordinate (~7% of the gradient, thousands of times the tolerance).
    np.testing.assert_allclose(grads["mu"], x_s - x.mean(0), rtol=1e-5, atol=1e-6)


def test_cd_energy_l2_term():
    alpha = 0.3
    params = {"mu": jnp.array([0.5, -0.3])}
    batch = data_batch()
    reg = deterministic_cd(chain_start=replay_buffer_start(capacity=64, init_fn=constant_init(C0)),
                           energy_l2=alpha)
    state = reg.init(jax.random.PRNGKey(0), params, batch)
    (value, _), grads = vg(reg.loss)(params, state, batch, jax.random.PRNGKey(1))
    mu, x = np.asarray(params["mu"], np.float64), np.asarray(batch["x"], np.float64)
    x_s = mu + SHRINK * (C0 - mu)
    e_d = 0.5 * np.sum((x - mu) ** 2, axis=1)
    e_s = 0.5 * np.sum((x_s - mu) ** 2)
    # The unregularised value mean(E_d) - E_s is checked against the loss in the test above.
    np.testing.assert_allclose(value - (e_d.mean() - e_s),
                               alpha * (np.mean(e_d**2) + e_s**2), rtol=1e-5)
    # d/dmu of mean Ed - Es + alpha (mean Ed^2 + Es^2), samples constant:
    grad = np.mean((1 + 2 * alpha * e_d)[:, None] * (mu - x), axis=0) \
        - (1 - 2 * alpha * e_s) * (mu - x_s)
    np.testing.assert_allclose(grads["mu"], grad, rtol=1e-5, atol=1e-6)


def test_cd_writes_chain_ends_back_to_the_buffer():
    params = {"mu": jnp.array([0.5, -0.3])}
    batch = data_batch()
    cd = DETERMINISTIC_CD
    state = cd.init(jax.random.PRNGKey(0), params, batch)
    assert isinstance(state, CDState) and state.buffer.samples.shape == (64, 2)
    _, (new_state, _) = vg(cd.loss)(params, state, batch, jax.random.PRNGKey(2))[0]
    old, new = np.asarray(state.buffer.samples), np.asarray(new_state.buffer.samples)
    changed = np.any(old != new, axis=1)
    # The 32 chains drew 32 of 64 slots with replacement (~25 distinct); those slots now
    # hold the chain ends and the rest are untouched.
    assert 10 <= changed.sum() <= 32
    x_s = np.asarray(params["mu"]) * (1 - SHRINK)
    np.testing.assert_allclose(new[changed], np.broadcast_to(x_s, new[changed].shape), rtol=1e-5)
    np.testing.assert_array_equal(new[~changed], C0)
    assert int(new_state.buffer.pointer) == int(state.buffer.pointer)


def test_cd_argument_errors():
    sampler = langevin(quadratic, step_size=0.1, noise_scale=0.0)
    with pytest.raises(ValueError, match="num_steps"):
        contrastive_divergence(quadratic, sampler, num_steps=0)
    with pytest.raises(ValueError, match="energy_l2"):
        contrastive_divergence(quadratic, sampler, energy_l2=-1.0)
    with pytest.raises(ValueError, match="reinit_prob"):
        replay_buffer_start(reinit_prob=1.5)
    with pytest.raises(ValueError, match="chain_start is a dict: expected None or a ChainStart"):
        contrastive_divergence(quadratic, sampler, chain_start={"capacity": 10})
    cond = contrastive_divergence(quadratic, sampler, num_classes=3,
                                  chain_start=replay_buffer_start(capacity=30, num_classes=3))
    with pytest.raises(KeyError, match="'y'"):
        cond.init(jax.random.PRNGKey(0), {"mu": jnp.zeros(2)}, {"x": jnp.zeros((4, 2))})


def test_conditional_cd_uses_per_class_slots():
    """E(x, y) = 0.5 |x - mu_y|^2 with per-class buffer slots: each chain runs with its
    slot's class, so slot i must end at (1 - SHRINK) mu_{label_i} (C0 = 0)."""
    def energy(params, x, y):
        return 0.5 * jnp.sum((x - params["mu"][y]) ** 2)

    mus = jnp.array([[1.0, 1.0], [-2.0, 0.5], [0.0, 3.0]])
    params = {"mu": mus}
    sampler = langevin(energy, step_size=H, noise_scale=0.0)
    cd = contrastive_divergence(energy, sampler, num_steps=K, num_classes=3,
                                chain_start=replay_buffer_start(capacity=300, num_classes=3,
                                                                init_fn=constant_init(C0)))
    y = jnp.array([0, 1, 2, 1] * 8, jnp.int32)
    batch = {"x": data_batch(n=32)["x"], "y": y}
    state = cd.init(jax.random.PRNGKey(0), params, batch)
    np.testing.assert_array_equal(state.buffer.labels, np.repeat(np.arange(3), 100))
    (_, (new_state, info)), grads = vg(cd.loss)(
        params, state, batch, jax.random.PRNGKey(1))
    new = np.asarray(new_state.buffer.samples)
    changed = np.flatnonzero(np.any(new != C0, axis=1))
    assert 1 <= changed.size <= 32
    labels = np.asarray(new_state.buffer.labels)[changed]
    assert len(np.unique(labels)) == 3  # 32 chains with uniform labels hit every class
    np.testing.assert_allclose(new[changed], (1 - SHRINK) * np.asarray(mus)[labels], rtol=1e-5)
    # Data energies use batch["y"].
    x = np.asarray(batch["x"])
    e_data = 0.5 * np.sum((x - np.asarray(mus)[np.asarray(y)]) ** 2, axis=1)
    np.testing.assert_allclose(info["energy_data"], e_data.mean(), rtol=1e-5)
    assert grads["mu"].shape == (3, 2)


# Learning a Gaussian by persistent CD.
TRUE_MU, TRUE_SIGMA, N_DATA, SGLD_STEP = 1.5, 0.5, 512, 0.01


def scaled_quadratic(params, x):
    return 0.5 * jnp.sum(((x - params["mu"]) * jnp.exp(-params["log_sigma"])) ** 2)


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_cd_learns_gaussian_mean_and_scale():
    """Fit N(mu, diag sigma^2) in 2-D to 512 draws of N(1.5, 0.5^2) by persistent CD.

    The fixed point of CD is where the sampler's moments equal the data's. For this
    energy that is mu = data mean and, since ULA at step h has variance
    sigma^2 / (1 - h/(2 sigma^2)) (see test_langevin.py), sigma = s sqrt(1 - h/(2 s^2))
    with s the data's (MLE) standard deviation: ~1% below s at h = 0.01. We compare to
    this fixed point, which removes the data's own sampling error (0.022 in the mean).

    Tolerances: what remains is the Monte Carlo noise of the chains. One training step's
    512 samples have mean SE sigma/sqrt(512) = 0.022 and std SE 0.016; Adam with a
    cosine-decayed rate averages many steps, and over 6 seeds the final errors had SD
    ~0.004 (mu) and ~0.002 (sigma). We allow 0.025 and 0.012 (about one single-step
    SE, > 5 seed SDs). Starting from mu = 0, sigma = 1, a flipped gradient sign, skipped
    update or frozen chains end far outside these bounds.
    The buffer starts at U(-1, 1) and reinit_prob = 0: chains restarted from U(-1, 1)
    would bias the model samples toward 0 (20 steps of h = 0.01 only contract the offset
    by 0.96^20 = 0.44 at sigma = 0.5).
    """
    data = TRUE_MU + TRUE_SIGMA * jax.random.normal(jax.random.PRNGKey(42), (N_DATA, 2))
    batch = {"x": data}
    sampler = langevin(scaled_quadratic, step_size=SGLD_STEP)
    cd = contrastive_divergence(scaled_quadratic, sampler, num_steps=20,
                                chain_start=replay_buffer_start(capacity=1024, reinit_prob=0.0))
    num_steps = 400
    opt = optax.adam(optax.cosine_decay_schedule(0.05, num_steps))
    params = {"mu": jnp.zeros(2), "log_sigma": jnp.zeros(2)}
    state = init_train_state(jax.random.PRNGKey(0), params, opt, cd, batch)
    step = jax.jit(make_train_step(cd, opt), donate_argnums=0)
    for _ in range(num_steps):
        state, metrics = step(state, batch)
    assert int(metrics["nonfinite_steps"]) == 0
    s = np.asarray(data.std(0), np.float64)
    mu = np.asarray(state.params["mu"])
    sigma = np.exp(np.asarray(state.params["log_sigma"]))
    np.testing.assert_allclose(mu, np.asarray(data.mean(0)), atol=0.025)
    np.testing.assert_allclose(sigma, s * np.sqrt(1 - SGLD_STEP / (2 * s**2)), atol=0.012)
    # And so near the truth, up to the data's sampling error (SE 0.022 / 0.016, 5 SE).
    np.testing.assert_allclose(mu, TRUE_MU, atol=0.025 + 5 * 0.022)
    np.testing.assert_allclose(sigma, TRUE_SIGMA, atol=0.012 + 0.005 + 5 * 0.016)


# -- combine ------------------------------------------------------------------------

def counting_term(scale):
    """A stateful toy loss: value = scale * sum(w * mean x); its state counts calls."""

    def init(rng_key, params, example_batch):
        return jnp.zeros((), jnp.int32)

    def loss(params, state, batch, rng_key):
        value = scale * jnp.sum(params["w"] * jnp.mean(batch["x"], 0))
        return value, (state + 1, {"double": 2 * value})

    return LossTransform(init, loss)


def test_combine_sums_weighted_terms_and_prefixes_info():
    params = {"w": jnp.array([1.0, -2.0])}
    batch = {"x": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
    a, b = counting_term(1.0), counting_term(3.0)
    both = combine(alpha=(0.5, a), beta=(2.0, b))
    state = both.init(jax.random.PRNGKey(0), params, batch)
    assert set(state) == {"alpha", "beta"}
    (value, (new_state, info)), grads = vg(both.loss)(
        params, state, batch, jax.random.PRNGKey(1))
    va = a.loss(params, 0, batch, None)[0]  # 1*(2 - 6) = -4
    vb = b.loss(params, 0, batch, None)[0]  # -12
    np.testing.assert_allclose(value, 0.5 * va + 2.0 * vb)
    assert set(info) == {"alpha/loss", "alpha/double", "beta/loss", "beta/double"}
    np.testing.assert_allclose(info["alpha/loss"], va)  # unweighted
    np.testing.assert_allclose(info["beta/double"], 2 * vb)
    assert int(new_state["alpha"]) == 1 and int(new_state["beta"]) == 1
    # Gradient of sum_i w_i f_i = sum_i w_i grad f_i; mean x = [2, 3].
    np.testing.assert_allclose(grads["w"], (0.5 * 1.0 + 2.0 * 3.0) * np.array([2.0, 3.0]))


def test_combine_errors():
    term = counting_term(1.0)
    with pytest.raises(ValueError, match="no terms"):
        combine()
    for bad in (term, (1.0,), (1.0, "not a loss"), (1.0, term, 2.0)):
        with pytest.raises(TypeError, match="bad"):
            combine(bad=bad)


# -- cross-entropy and JEM ----------------------------------------------------------

def linear_logits(params, x):
    return x @ params["w"] + params["b"]


def classifier_setup(n=40, dim=5, k=4):
    kw, kb, kx, ky = jax.random.split(jax.random.PRNGKey(3), 4)
    params = {"w": jax.random.normal(kw, (dim, k)), "b": jax.random.normal(kb, (k,))}
    batch = {"x": jax.random.normal(kx, (n, dim)), "y": jax.random.randint(ky, (n,), 0, k)}
    return params, batch


def test_cross_entropy_equals_optax():
    params, batch = classifier_setup()
    ce = cross_entropy(linear_logits)
    state = ce.init(jax.random.PRNGKey(0), params, batch)
    (value, (_, info)), grads = vg(ce.loss)(
        params, state, batch, jax.random.PRNGKey(0))

    def reference(p):
        logits = batch["x"] @ p["w"] + p["b"]
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]))

    ref_value, ref_grads = jax.jit(jax.value_and_grad(reference))(params)
    np.testing.assert_allclose(value, ref_value, rtol=1e-6)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-7),
                 grads, ref_grads)
    logits = np.asarray(batch["x"] @ params["w"] + params["b"])
    accuracy = np.mean(logits.argmax(1) == np.asarray(batch["y"]))
    np.testing.assert_allclose(info["accuracy"], accuracy)


def test_cross_entropy_label_smoothing_and_errors():
    params, batch = classifier_setup()
    eps, k = 0.2, 4
    value, _ = cross_entropy(linear_logits, label_smoothing=eps).loss(params, (), batch, None)
    logp = np.asarray(jax.nn.log_softmax(batch["x"] @ params["w"] + params["b"]), np.float64)
    y = np.asarray(batch["y"])
    ref = -(1 - eps) * logp[np.arange(len(y)), y] - eps / k * logp.sum(1)
    np.testing.assert_allclose(value, ref.mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(linear_logits, label_smoothing=1.0)
    with pytest.raises(KeyError, match="'y'"):
        cross_entropy(linear_logits).init(None, params, {"x": batch["x"]})


def test_cross_entropy_ignores_unlabelled_examples():
    """Labels -1 (unlabelled, semi-supervised) leave value, gradient and accuracy those of the
    labelled rows alone; a batch with no labels gives 0 and a zero gradient."""
    params, batch = classifier_setup()
    ce = cross_entropy(linear_logits)
    hidden = batch["y"].at[::3].set(-1)
    keep = np.asarray(hidden) >= 0
    (value, (_, info)), grads = vg(ce.loss)(params, (), {"x": batch["x"], "y": hidden}, None)
    labelled = {"x": batch["x"][keep], "y": batch["y"][keep]}
    (ref, (_, ref_info)), ref_grads = vg(ce.loss)(params, (), labelled, None)
    np.testing.assert_allclose(value, ref, rtol=1e-6)
    np.testing.assert_allclose(info["accuracy"], ref_info["accuracy"], rtol=1e-6)
    jax.tree.map(lambda g, r: np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-7),
                 grads, ref_grads)
    none = {"x": batch["x"], "y": jnp.full_like(batch["y"], -1)}
    (value, _), grads = vg(ce.loss)(params, (), none, None)
    assert float(value) == 0.0
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads))


@pytest.mark.slow
def test_jem_hybrid_equals_ce_plus_cd():
    """With a constant buffer and a noise-free sampler the CD term does not depend on the
    key, so the hybrid loss must equal the separately computed weighted sum exactly."""
    params, batch = classifier_setup()
    energy = energy_from_logits(linear_logits)
    sampler = langevin(energy, step_size=0.05, noise_scale=0.0)
    cd_opts = dict(num_steps=4, energy_l2=0.1,
                   chain_start=replay_buffer_start(capacity=50, init_fn=constant_init(0.3)))
    jem = jem_hybrid(linear_logits, sampler, classification_weight=0.7, generative_weight=1.3,
                     **cd_opts)
    ce = cross_entropy(linear_logits)
    cd = contrastive_divergence(energy, sampler, **cd_opts)
    state = jem.init(jax.random.PRNGKey(0), params, batch)
    assert set(state) == {"classification", "generative"}
    (value, (_, info)), grads = vg(jem.loss)(params, state, batch, jax.random.PRNGKey(1))
    (v_ce, _), g_ce = vg(ce.loss)(params, (), batch, jax.random.PRNGKey(2))
    (v_cd, (_, cd_info)), g_cd = vg(cd.loss)(
        params, cd.init(jax.random.PRNGKey(3), params, batch), batch, jax.random.PRNGKey(4))
    np.testing.assert_allclose(value, 0.7 * v_ce + 1.3 * v_cd, rtol=1e-5)
    np.testing.assert_allclose(info["classification/loss"], v_ce, rtol=1e-6)
    np.testing.assert_allclose(info["generative/loss"], v_cd, rtol=1e-5)
    np.testing.assert_allclose(info["generative/energy_sample"], cd_info["energy_sample"],
                               rtol=1e-5)
    assert "classification/accuracy" in info and "generative/energy_data" in info
    jax.tree.map(lambda g, a, b: np.testing.assert_allclose(g, 0.7 * a + 1.3 * b, rtol=1e-4,
                                                            atol=1e-5),
                 grads, g_ce, g_cd)
    # The CD term reads the classifier as E(x) = -logsumexp f(x).
    e_data = -jax.nn.logsumexp(batch["x"] @ params["w"] + params["b"], axis=1)
    np.testing.assert_allclose(info["generative/energy_data"], e_data.mean(), rtol=1e-5)
    np.testing.assert_allclose(batch_energy(energy)(params, batch["x"]), e_data, rtol=1e-5)


def test_cd_counts_nonfinite_steps_anywhere_in_the_chain():
    # The energy is NaN for x > 0.5. Chains start at 0 and drift up by 0.3 per step (a constant
    # negative slope below 0.5, no noise): steps 1 and 2 are finite (x = 0, 0.3), the position
    # reaches 0.6 after step 2, and every later step is non-finite and stays put. With 5 steps
    # and 4 chains that is exactly 3 * 4 = 12 non-finite steps; counting only the last step
    # would give 4.
    def energy(params, x):
        e = -0.3 * jnp.sum(x)
        return jnp.where(jnp.sum(x) > 0.5, jnp.nan, e)

    sampler = langevin(energy, 1.0, 0.0)
    cd = contrastive_divergence(energy, sampler, num_steps=5,
                                chain_start=replay_buffer_start(
                                    capacity=8, reinit_prob=0.0,
                                    init_fn=lambda k, shape: jnp.zeros(shape)))
    batch = {"x": jnp.zeros((4, 1))}
    state = cd.init(jax.random.PRNGKey(0), None, batch)
    _, (_, info) = cd.loss(None, state, batch, jax.random.PRNGKey(1))
    assert int(info["nonfinite_steps"]) == 12


# ----------------------------------------------------------------- CD variants (IGEBM, Du et al.)

from ebm_jax.losses.contrastive_divergence import (  # noqa: E402
    maximum_likelihood_term,
    nearest_neighbour_entropy,
)


def test_objectives_values_and_gradients():
    e_data, e_sample = jnp.array([1.0, 2.0]), jnp.array([0.0, 3.0])
    assert float(maximum_likelihood_term(e_data, e_sample, "ml", 2.0)) == pytest.approx(0.0)
    softplus = np.mean(np.log1p(np.exp(2.0 * np.array([1.0, -1.0]))))
    assert float(maximum_likelihood_term(e_data, e_sample, "softplus", 2.0)) == pytest.approx(softplus,
                                                                                             rel=1e-6)
    # logsumexp: self-normalised weights w ∝ exp(-τ E_s), held constant in the gradient.
    w = np.exp(-2.0 * np.array([0.0, 3.0]))
    w /= w.sum()
    grad = jax.grad(lambda es: maximum_likelihood_term(e_data, es, "logsumexp", 2.0))(e_sample)
    np.testing.assert_allclose(grad, -2.0 * w, rtol=1e-6)
    grad_data = jax.grad(lambda ed: maximum_likelihood_term(ed, e_sample, "logsumexp", 2.0))(e_data)
    np.testing.assert_allclose(grad_data, [1.0, 1.0], rtol=1e-6)


def _quadratic_cd(**options):
    # E(x) = ½ (x - μ)²; noise-free chains of step h from 0, every chain restarted (reinit 1).
    def energy(params, x):
        return 0.5 * jnp.sum((x - params["mu"]) ** 2)

    sampler = langevin(energy, 0.1, 0.0)
    options.setdefault("chain_start", replay_buffer_start(
        capacity=8, reinit_prob=1.0, init_fn=lambda k, shape: jnp.zeros(shape)))
    cd = contrastive_divergence(energy, sampler, num_steps=3, **options)
    return energy, cd


@pytest.mark.slow
def test_kl_term_differentiates_through_the_last_sampler_step():
    h, mu = 0.1, 1.5
    batch = {"x": jnp.full((4, 1), 2.0)}
    params = {"mu": jnp.array([mu])}
    grads = {}
    for kl_weight in (0.0, 1.0):
        _, cd = _quadratic_cd(kl_weight=kl_weight)
        state = cd.init(jax.random.PRNGKey(0), params, batch)
        grads[kl_weight] = jax.grad(lambda p: cd.loss(p, state, batch, jax.random.PRNGKey(1))[0])(
            params)["mu"]
    # Chains from 0: x_k = (1 - (1-h)^k) μ, and x_3 = x_2 - h (x_2 - μ) so ∂x_3/∂μ = h.
    # KL term E_frozen(x_3) = ½ (x_3 - μ̄)² has gradient (x_3 - μ) h with respect to μ.
    x3 = (1 - (1 - h) ** 3) * mu
    np.testing.assert_allclose(grads[1.0] - grads[0.0], [(x3 - mu) * h], rtol=1e-5)


@pytest.mark.slow
def test_entropy_term_and_estimate():
    samples = jnp.array([[0.0, 0.0], [3.0, 0.0]])
    reference = jnp.array([[0.0, 1.0], [3.0, 2.0], [10.0, 10.0]])
    # nearest distances 1 and 2
    assert float(nearest_neighbour_entropy(samples, reference)) == pytest.approx(np.mean(np.log([1, 2])),
                                                                                 rel=1e-5)
    _, cd = _quadratic_cd(entropy_weight=0.5)
    batch = {"x": jnp.full((4, 1), 2.0)}
    params = {"mu": jnp.array([1.5])}
    state = cd.init(jax.random.PRNGKey(0), params, batch)
    _, (_, info) = cd.loss(params, state, batch, jax.random.PRNGKey(1))
    assert "entropy" in info and np.isfinite(float(info["entropy"]))


def test_cd_variant_errors():
    energy, _ = _quadratic_cd()
    sampler = langevin(energy, 0.1, 0.0)
    with pytest.raises(ValueError, match=r"objective='hinge': expected one of \['ml', 'softplus'"):
        contrastive_divergence(energy, sampler, objective="hinge")
    with pytest.raises(ValueError, match="temperature=0: expected a positive number"):
        contrastive_divergence(energy, sampler, temperature=0)
    with pytest.raises(ValueError, match="num_steps=1 with kl_weight"):
        contrastive_divergence(energy, sampler, num_steps=1, kl_weight=1.0)


@pytest.mark.slow
def test_reinit_from_data_restarts_chains_at_the_batch():
    # A flat energy and a noise-free sampler leave chains where they start, so with
    # reinit_prob=1 the pushed samples must be exactly a permutation of the batch.
    def energy(params, x):
        return 0.0 * jnp.sum(x)

    cd = contrastive_divergence(energy, langevin(energy, 0.1, 0.0), num_steps=2,
                                chain_start=replay_buffer_start(capacity=16, reinit_prob=1.0,
                                                                restart_from_data=True))
    batch = {"x": jnp.arange(12.0).reshape(6, 2)}
    state = cd.init(jax.random.PRNGKey(0), None, batch)
    _, (new_state, _) = cd.loss(None, state, batch, jax.random.PRNGKey(1))
    changed = ~np.all(np.asarray(new_state.buffer.samples) == np.asarray(state.buffer.samples), axis=1)
    written = np.asarray(new_state.buffer.samples)[changed]
    assert len(written) > 0
    rows = {tuple(r) for r in np.asarray(batch["x"]).tolist()}
    assert all(tuple(r) in rows for r in written.tolist())
