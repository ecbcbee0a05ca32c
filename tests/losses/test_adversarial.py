"""PGD-AT, TRADES and WEAT (``ebm_jax.losses.adversarial``), checked where the answer is known.

A binary linear classifier with logits ``(-m/2, m/2)``, ``m = w·x + b``, has closed forms:
the worst cross-entropy within an L-inf (L2) ball of radius ``eps`` moves the margin by
``eps ||w||_1`` (``eps ||w||_2``) toward the boundary; TRADES's KL is convex in the
perturbed margin, so its attack from a random start ends at the corner
``x ± eps sign(w)`` of the side it starts on. Gradients must be those of the per-example
losses with the adversarial examples (and WEAT's weights) held fixed; WEAT's value must be
the TRADES losses weighted by ``1 / softplus(|E|)``, normalised over the batch.

Deliberate breakages, each verified by temporarily editing ``ebm_jax/losses/adversarial.py``
and restoring it:

- the attack descends instead of ascending (``ascent=False`` in ``_run_attack``):
  ``test_pgd_at_attains_the_closed_form_worst_case``,
  ``test_pgd_at_trains_on_the_examples_of_pgd_attack``,
  ``test_trades_attack_ends_at_a_corner_of_the_ball`` and (slow)
  ``test_adversarial_training_makes_a_digits_classifier_robust``;
- the adversarial logits detached from the params (``stop_gradient`` on ``logits_adv``):
  ``test_gradient_holds_the_examples_fixed_and_flows_through_both_inputs`` and
  ``test_weat_is_trades_weighted_by_the_energy``;
- the attack differentiated (the ``stop_gradient`` calls of ``_run_attack`` and
  ``_trades_examples`` removed): ``test_the_attack_is_not_differentiated`` and the gradient
  tests;
- WEAT's weight dropped (``weights = jnp.ones_like(e)``), not normalised, or not held fixed
  (no ``stop_gradient`` on the energies): ``test_weat_is_trades_weighted_by_the_energy``
  (and ``test_weat_with_equal_energies_is_trades`` for the normalisation);
- WEAT's adversarial energies read from the natural inputs:
  ``test_weat_is_trades_weighted_by_the_energy[adversarial]``;
- the KL reversed (``KL(p(x') || p(x))``): the TRADES corner, gradient and WEAT tests;
- ``ce_input`` ignored: ``test_gradient_holds_the_examples_fixed_and_flows_through_both_inputs``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.data.digits import load_digits
from ebm_jax.losses import pgd_adversarial_training, trades, trades_examples, weat
from ebm_jax.metrics import pgd_attack

# Small programs, compiled once each and run briefly (conftest: fast_compile).
pytestmark = pytest.mark.fast_compile


def linear_logits(params, x):
    w, b = params
    m = jnp.dot(w, x) + b
    return jnp.stack([-0.5 * m, 0.5 * m])


def margins(params, x):
    w, b = params
    return np.asarray(x, np.float64) @ np.asarray(w, np.float64) + float(b)


def bernoulli_kl(m, m_adv):
    """KL(Bernoulli(sigmoid m) || Bernoulli(sigmoid m_adv)) for the logits (-m/2, m/2)."""
    p, q = 1 / (1 + np.exp(-m)), 1 / (1 + np.exp(-m_adv))
    return p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))


def softplus(z):
    return np.logaddexp(0.0, z)


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    d, n = 12, 64
    w = rng.normal(size=d).astype(np.float32)
    params = (jnp.asarray(w), jnp.float32(0.2))
    x = rng.uniform(-0.5, 0.5, (n, d)).astype(np.float32)  # inside [-1, 1]: no clipping
    y = rng.integers(0, 2, n).astype(np.int32)
    return params, {"x": jnp.asarray(x), "y": jnp.asarray(y)}


def value_and_info(transform, params, batch, key):
    state = transform.init(jax.random.key(0), params, batch)
    value, (_, info) = jax.jit(transform.loss)(params, state, batch, key)
    return float(value), info


@pytest.mark.parametrize("norm,random_start", [("linf", True), ("l2", False)])
def test_pgd_at_attains_the_closed_form_worst_case(linear_problem, norm, random_start):
    params, batch = linear_problem
    w = np.asarray(params[0], np.float64)
    eps = 0.05
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)
    loss = pgd_adversarial_training(linear_logits, epsilon=eps, num_steps=10, norm=norm,
                                    random_start=random_start)
    value, info = value_and_info(loss, params, batch, jax.random.key(1))
    sign = 2 * np.asarray(batch["y"]) - 1                # +1 for class 1: the margin falls
    m = margins(params, batch["x"])
    worst = m - sign * eps * dual
    np.testing.assert_allclose(value, np.mean(softplus(-sign * worst)), rtol=1e-4)
    energy = -np.logaddexp(m / 2, -m / 2)                   # E = -log(2 cosh(m / 2))
    energy_adv = -np.logaddexp(worst / 2, -worst / 2)
    np.testing.assert_allclose(float(info["log_px_shift"]), np.mean(energy - energy_adv),
                               rtol=1e-4)
    assert float(info["accuracy"]) == np.mean((m > 0) == (sign > 0))


def test_pgd_at_trains_on_the_examples_of_pgd_attack():
    """The loss's attack is :func:`ebm_jax.metrics.pgd_attack` with the same key."""
    rng = np.random.default_rng(1)
    params = {"w1": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
              "w2": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}

    def logits_fn(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]

    x = jnp.asarray(rng.uniform(-1, 1, (8, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 8), jnp.int32)
    key = jax.random.key(3)
    loss = pgd_adversarial_training(logits_fn, epsilon=0.3, num_steps=3, norm="l2")
    value, _ = value_and_info(loss, params, {"x": x, "y": y}, key)
    x_adv = pgd_attack(key, logits_fn, params, x, y, norm="l2", epsilon=0.3, num_steps=3)
    ce = optax.softmax_cross_entropy_with_integer_labels(
        jax.vmap(logits_fn, (None, 0))(params, x_adv), y)
    np.testing.assert_allclose(value, float(jnp.mean(ce)), rtol=1e-5)


def test_trades_attack_ends_at_a_corner_of_the_ball(linear_problem):
    params, batch = linear_problem
    eps, beta = 0.05, 6.0
    key = jax.random.key(2)
    x = np.asarray(batch["x"])
    x_adv = np.asarray(trades_examples(key, linear_logits, params, batch["x"], epsilon=eps,
                                       num_steps=10))
    # x' - x = s eps sign(w), s = +1 or -1 per example: a corner, where the KL is largest
    # on the side the random start fell.
    side = np.sign((x_adv - x) @ np.sign(np.asarray(params[0])))
    np.testing.assert_allclose(x_adv - x, side[:, None] * eps * np.sign(params[0])[None],
                               atol=1e-6)
    assert 0.2 < np.mean(side > 0) < 0.8                        # both sides are visited
    # The loss is TRADES's with those examples.
    m, m_adv = margins(params, x), margins(params, x_adv)
    sign = 2 * np.asarray(batch["y"]) - 1
    expected = np.mean(softplus(-sign * m) + beta * bernoulli_kl(m, m_adv))
    value, info = value_and_info(trades(linear_logits, epsilon=eps, beta=beta, num_steps=10),
                                 params, batch, key)
    np.testing.assert_allclose(value, expected, rtol=1e-4)
    np.testing.assert_allclose(float(info["kl"]), np.mean(bernoulli_kl(m, m_adv)), rtol=1e-4)


# --- a small nonlinear classifier: no closed form, but the same examples by the same key ---
def mlp_logits(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


@pytest.fixture(scope="module")
def mlp_problem():
    rng = np.random.default_rng(4)
    params = {"w1": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32),
              "b1": jnp.asarray(rng.normal(size=8), jnp.float32),
              "w2": jnp.asarray(2 * rng.normal(size=(8, 3)), jnp.float32)}
    batch = {"x": jnp.asarray(rng.uniform(-0.8, 0.8, (16, 6)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 3, 16), jnp.int32)}
    return params, batch


def per_example_trades(params, x, x_adv, y, beta, ce_input="natural"):
    logits = jax.vmap(mlp_logits, (None, 0))(params, x)
    logits_adv = jax.vmap(mlp_logits, (None, 0))(params, x_adv)
    ce_logits = logits if ce_input == "natural" else logits_adv
    ce = optax.softmax_cross_entropy_with_integer_labels(ce_logits, y)
    log_p, log_q = jax.nn.log_softmax(logits), jax.nn.log_softmax(logits_adv)
    kl = jnp.sum(jnp.exp(log_p) * (log_p - log_q), axis=-1)
    return ce + beta * kl


def energies(params, x):
    return -jax.nn.logsumexp(jax.vmap(mlp_logits, (None, 0))(params, x), axis=-1)


ATTACK = dict(epsilon=0.3, num_steps=3, norm="l2")  # few L2 steps: not at an optimum


@pytest.mark.slow
@pytest.mark.parametrize("ce_input", ["natural", "adversarial"])
def test_gradient_holds_the_examples_fixed_and_flows_through_both_inputs(mlp_problem,
                                                                         ce_input):
    params, batch = mlp_problem
    key, beta = jax.random.key(5), 2.0
    loss = trades(mlp_logits, beta=beta, ce_input=ce_input, **ATTACK)
    x_adv = trades_examples(key, mlp_logits, params, batch["x"], **ATTACK)
    grads = jax.jit(jax.grad(lambda p: loss.loss(p, (), batch, key)[0]))(params)
    expected = jax.grad(lambda p: jnp.mean(per_example_trades(
        p, batch["x"], x_adv, batch["y"], beta, ce_input)))(params)
    for name in params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=2e-4, atol=1e-6)


def _loops(jaxpr) -> int:
    """The number of loops (while, scan) in a jaxpr, its sub-jaxprs included."""
    count = 0
    for eqn in jaxpr.eqns:
        count += eqn.primitive.name in ("while", "scan")
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else [value]:
                inner = getattr(sub, "jaxpr", None)
                if inner is not None:
                    count += _loops(getattr(inner, "jaxpr", inner))
    return count


@pytest.mark.parametrize("make", [pgd_adversarial_training, trades, weat])
def test_the_attack_is_not_differentiated(mlp_problem, make):
    """The gradient's program runs the attack loop once, forward only (Danskin)."""
    params, batch = mlp_problem
    loss = make(mlp_logits, **ATTACK)
    grad_fn = jax.grad(lambda p: loss.loss(p, (), batch, jax.random.key(0))[0])
    assert _loops(jax.make_jaxpr(grad_fn)(params).jaxpr) == 1


@pytest.mark.slow
@pytest.mark.parametrize("energy_input", ["natural", "adversarial"])
def test_weat_is_trades_weighted_by_the_energy(mlp_problem, energy_input):
    params, batch = mlp_problem
    key, beta = jax.random.key(6), 3.0
    loss = weat(mlp_logits, beta=beta, energy_input=energy_input, **ATTACK)
    x_adv = trades_examples(key, mlp_logits, params, batch["x"], **ATTACK)
    weighed = batch["x"] if energy_input == "natural" else x_adv
    w = 1.0 / softplus(np.abs(np.asarray(energies(params, weighed), np.float64)))
    assert w.max() / w.min() > 1.5                                  # unequal weights
    per_example = np.asarray(per_example_trades(params, batch["x"], x_adv, batch["y"], beta))
    value, (_, info) = jax.jit(loss.loss)(params, (), batch, key)
    np.testing.assert_allclose(float(value), np.sum(w * per_example) / np.sum(w), rtol=1e-5)
    np.testing.assert_allclose(float(info["weight_max"]), w.max() / w.mean(), rtol=1e-5)
    # Gradient: the weights are constants.
    w_fixed = jnp.asarray(w / w.mean(), jnp.float32)
    grads = jax.jit(jax.grad(lambda p: loss.loss(p, (), batch, key)[0]))(params)
    expected = jax.grad(lambda p: jnp.mean(w_fixed * per_example_trades(
        p, batch["x"], x_adv, batch["y"], beta)))(params)
    for name in params:
        np.testing.assert_allclose(grads[name], expected[name], rtol=2e-4, atol=1e-6)


def test_weat_with_equal_energies_is_trades(linear_problem):
    """Zero margins give every example the same energy, so the same weight."""
    params, batch = linear_problem
    params = (params[0], jnp.float32(0.0))
    batch = {"x": jnp.zeros_like(batch["x"]), "y": batch["y"]}
    key = jax.random.key(7)
    a, _ = value_and_info(weat(linear_logits, epsilon=0.05), params, batch, key)
    b, _ = value_and_info(trades(linear_logits, epsilon=0.05), params, batch, key)
    np.testing.assert_allclose(a, b, rtol=1e-6)


BAD_SETTINGS = [
    (dict(epsilon=-0.1), "epsilon=-0.1: expected a number >= 0"),
    (dict(epsilon=float("nan")), "epsilon=nan: expected a number >= 0"),
    (dict(num_steps=0), "num_steps=0: expected a positive int"),
    (dict(num_steps=2.5), "num_steps=2.5: expected a positive int"),
    (dict(norm="l1"), "norm='l1': expected one of ('linf', 'l2')"),
    (dict(step_size=0.0), "step_size=0.0: expected a positive number, or None"),
    (dict(random_start=1), "random_start=1: expected True or False"),
    (dict(clip_range=(1.0, -1.0)), "clip_range=(1.0, -1.0): expected (low, high)"),
]
KL_SETTINGS = [
    (dict(beta=-1.0), "beta=-1.0: expected a number >= 0"),
    (dict(ce_input="clean"), "ce_input='clean': expected one of ('natural', 'adversarial')"),
]


SETTING_CASES = [(make, settings, message)
                 for make, cases in ((pgd_adversarial_training, BAD_SETTINGS),
                                     (trades, BAD_SETTINGS + KL_SETTINGS),
                                     (weat, BAD_SETTINGS + KL_SETTINGS + [
                                         (dict(energy_input="both"),
                                          "energy_input='both': expected one of ('natural', ")]))
                 for settings, message in cases]


@pytest.mark.parametrize("make,settings,message", SETTING_CASES)
def test_a_bad_setting_is_one_clear_error(make, settings, message):
    with pytest.raises((ValueError, TypeError)) as error:
        make(linear_logits, **{"epsilon": 0.1, **settings})
    assert message in str(error.value)


@pytest.mark.parametrize("batch,message", [
    ({"x": jnp.zeros((4, 12))}, r"needs batch\['y'\]"),
    ({"x": jnp.zeros((4, 12)), "y": jnp.array([0, 1, 2, 0])},
     r"labels in \[0, 2\]: expected labels in \[0, 2\)"),
    ({"x": jnp.zeros((4, 12), jnp.int32), "y": jnp.zeros(4, jnp.int32)},
     "expected floating-point data"),
    ({"x": jnp.zeros((4, 12)), "y": jnp.zeros(3, jnp.int32)}, r"expected \(4,\)"),
])
def test_a_bad_batch_is_refused_at_init(linear_problem, batch, message):
    params, _ = linear_problem
    loss = trades(linear_logits, epsilon=0.1)
    with pytest.raises((ValueError, TypeError, KeyError), match=message):
        loss.init(jax.random.key(0), params, batch)


@pytest.mark.slow
def test_adversarial_training_makes_a_digits_classifier_robust():
    """300 steps of PGD-AT (L-inf 0.2, PGD-5) against cross-entropy alone, same MLP: PGD-10
    at L-inf 0.2 leaves the adversarially trained one far more test digits."""
    data = load_digits()
    rng = np.random.default_rng(0)
    init = {"w1": jnp.asarray(rng.normal(size=(64, 64)) / 8.0, jnp.float32),
            "b1": jnp.zeros(64), "w2": jnp.asarray(rng.normal(size=(64, 10)) / 8.0,
                                                   jnp.float32)}
    optimizer = optax.adam(3e-3)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def logits_fn(p, z):
        return jnp.tanh(z @ p["w1"] + p["b1"]) @ p["w2"]

    def train(loss):
        @jax.jit
        def run(p):
            def step(carry, key):
                p, s = carry
                pick = jax.random.choice(key, x.shape[0], (128,), replace=False)
                batch = {"x": x[pick], "y": y[pick]}
                g = jax.grad(lambda q: loss.loss(q, (), batch, jax.random.fold_in(key, 1))[0])(p)
                u, s = optimizer.update(g, s)
                return (optax.apply_updates(p, u), s), None

            keys = jax.random.split(jax.random.key(0), 300)
            return jax.lax.scan(step, (p, optimizer.init(p)), keys)[0][0]

        return run(init)

    from ebm_jax.losses import cross_entropy
    from ebm_jax.metrics import robust_accuracy_curve

    robust = {}
    for name, loss in (("ce", cross_entropy(logits_fn)),
                       ("at", pgd_adversarial_training(logits_fn, epsilon=0.2, num_steps=5))):
        params = train(loss)
        robust[name] = robust_accuracy_curve(jax.random.key(1), logits_fn, params, data.x_test,
                                             data.y_test, norm="linf", epsilons=[0.0, 0.2],
                                             num_steps=10, batch_size=360)
    assert robust["at"][0.0] > 0.85 and robust["ce"][0.0] > 0.85, robust
    assert robust["at"][0.2] > robust["ce"][0.2] + 0.2, robust
