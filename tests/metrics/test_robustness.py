"""PGD attacks, robust-accuracy curves and SGLD purification (``ebm_jax.metrics.robustness``).

The attack is checked where the optimum is known in closed form: for a
linear logit margin ``m = w·x + b`` the smallest perturbation that flips the
prediction has L-inf norm ``|m| / ||w||_1`` and L2 norm ``|m| / ||w||_2``, and
the best attack within the budget moves the margin by exactly
``epsilon * ||w||_1`` (resp. ``||w||_2``). On a trained MLP on digits the
adversarial examples must stay in the ball and the data range, and accuracy
must fall monotonically with the budget.

Deliberate breakages, each verified by temporarily editing
``ebm_jax/metrics/robustness.py`` and restoring it:

- gradient *descent* (``z - step_size * direction``):
  ``test_pgd_attains_the_closed_form_optimum_on_a_linear_classifier`` (nothing flips) and
  ``test_robust_accuracy_falls_monotonically_with_the_budget_on_a_trained_mlp`` (no drop);
- no projection onto the epsilon ball (``_project`` returns ``delta``):
  ``test_adversarial_examples_stay_in_the_ball_and_the_data_range`` (outside the ball) and
  ``test_pgd_attains_the_closed_form_optimum_on_a_linear_classifier`` (examples beyond
  the budget flip: the steps add up to 2.5 epsilon);
- no clip to the data range (``clip`` returns ``z``):
  ``test_adversarial_examples_stay_in_the_ball_and_the_data_range``;
- the padding of the last batch counted as examples (``mask`` ignored):
  ``test_robust_accuracy_falls_monotonically_with_the_budget_on_a_trained_mlp`` (epsilon 0
  no longer gives the clean accuracy);
- no projection with an explicit step size: ``test_zero_budget_changes_nothing`` too;
- the defence ignored in ``robust_accuracy_curve``:
  ``test_defence_classifies_purified_inputs``;
- a targeted attack that ascends (``ascent=not targeted`` -> ``ascent=True`` in ``_pgd``):
  ``test_targeted_pgd_attains_the_closed_form_optimum`` (the own-class margin shrinks);
- the energy shift's signs flipped, or targets equal to the labels (``randint(..., 1, K)``
  -> ``randint(..., 0, 1)``): ``test_attack_energy_shift_has_the_closed_form_shares``.

The energy shift is checked on the linear classifier, whose energy
``E = -log(2 cosh(m / 2))`` falls as ``|m|`` grows: an attack that moves the margin by
``delta = eps ||w||_1`` toward (and past) the boundary lowers it exactly where
``|m| < delta / 2``; with two classes the targeted attack (toward the other class) is the
untargeted one, so the two shares add up to 1.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.data.digits import load_digits
from ebm_jax.energies import energy_from_logits
from ebm_jax.metrics.robustness import (
    attack_energy_shift,
    pgd_attack,
    robust_accuracy_curve,
    sgld_purification,
)

# A handful of small programs (PGD loops on a linear model or a 64-32-10 MLP), each compiled
# once and run briefly: see the fast_compile marker in tests/conftest.py.
pytestmark = pytest.mark.fast_compile


# --- a binary linear classifier with logits (-m/2, m/2), m = w·x + b: class 1 iff m > 0 ---
def linear_logits(params, x):
    w, b = params
    m = jnp.dot(w, x) + b
    return jnp.stack([-0.5 * m, 0.5 * m])


@pytest.fixture(scope="module")
def linear_problem():
    rng = np.random.default_rng(0)
    d, n = 20, 400
    w = rng.normal(size=d).astype(np.float32)
    b = np.float32(0.1)
    x = rng.uniform(-0.5, 0.5, (n, d)).astype(np.float32)  # far enough inside (-1, 1): no clipping
    margin = x.astype(np.float64) @ w + b
    y = (margin > 0).astype(np.int32)  # the classifier's own predictions: clean accuracy 1
    return (jnp.asarray(w), jnp.asarray(b)), x, y, margin, w.astype(np.float64)


@pytest.mark.slow
@pytest.mark.parametrize("norm,random_start,loss,band", [
    ("linf", True, "ce", 1e-3),      # sign steps reach the corner -eps·sign(w) exactly
    ("linf", False, "margin", 1e-3),
    ("l2", False, "ce", 1e-3),       # from x, every step is along w: the boundary point exactly
    ("l2", True, "margin", 5e-2),    # from a random start the projected steps turn toward w
])
def test_pgd_attains_the_closed_form_optimum_on_a_linear_classifier(linear_problem, norm,
                                                                    random_start, band, loss):
    params, x, y, margin, w = linear_problem
    dual = np.abs(w).sum() if norm == "linf" else np.linalg.norm(w)  # ||w||_1 or ||w||_2
    distance = np.abs(margin) / dual          # the smallest perturbation that flips
    epsilon = float(np.median(distance))      # half the examples are within the budget
    x_adv = pgd_attack(jax.random.PRNGKey(1), linear_logits, params, x, y, norm=norm,
                       epsilon=epsilon, num_steps=20, random_start=random_start, loss=loss)
    adv_margin = np.asarray(x_adv, np.float64) @ w + float(params[1])
    flipped = (adv_margin > 0) != (margin > 0)
    ratio = distance / epsilon
    assert flipped[ratio < 1 - band].all()      # within the budget: flipped
    assert not flipped[ratio > 1 + band].any()  # beyond it: not
    assert ((ratio > 1 - band) & (ratio < 1 + band)).mean() < 0.05  # the band is narrow
    # The margin moves by the optimal amount eps * ||w||_dual toward the boundary.
    optimum = margin - np.sign(margin) * epsilon * dual
    np.testing.assert_allclose(adv_margin, optimum, atol=band * epsilon * dual + 1e-5)


@pytest.mark.parametrize("toward", ["own", "other"])
def test_targeted_pgd_attains_the_closed_form_optimum(linear_problem, toward):
    """Descending the loss of the own class pushes the margin away from the boundary by
    eps ||w||_1; of the other class, toward it: the untargeted optimum."""
    params, x, y, margin, w = linear_problem
    dual = np.abs(w).sum()
    epsilon = 0.05
    targets = y if toward == "own" else 1 - y
    x_adv = pgd_attack(jax.random.PRNGKey(1), linear_logits, params, x, targets, norm="linf",
                       epsilon=epsilon, num_steps=10, targeted=True)
    adv_margin = np.asarray(x_adv, np.float64) @ w + float(params[1])
    direction = np.sign(margin) if toward == "own" else -np.sign(margin)
    np.testing.assert_allclose(adv_margin, margin + direction * epsilon * dual, atol=1e-4)


def test_attack_energy_shift_has_the_closed_form_shares(linear_problem):
    params, x, y, margin, w = linear_problem
    delta = 0.05 * np.abs(w).sum()
    lowered = np.abs(margin) < delta / 2        # the margin crosses and ends farther out
    clear = np.abs(np.abs(margin) - delta / 2) > 1e-3
    assert 0.05 < lowered.mean() < 0.95
    # 400 = 3 x 128 + 16: a padded last batch, which must not count.
    out = attack_energy_shift(jax.random.PRNGKey(2), linear_logits, params, x[clear],
                              y[clear], norm="linf", epsilon=0.05, num_steps=10,
                              batch_size=128)
    assert out["untargeted"] == pytest.approx(lowered[clear].mean())
    assert out["targeted"] == pytest.approx(1.0 - lowered[clear].mean())
    energy = -np.logaddexp(margin / 2, -margin / 2)
    shift = -np.logaddexp((np.abs(margin) - delta) / 2, -(np.abs(margin) - delta) / 2) - energy
    assert out["untargeted_mean"] == pytest.approx(shift[clear].mean(), abs=1e-3)
    assert out["targeted_mean"] == pytest.approx(out["untargeted_mean"], abs=1e-6)


# --- a small MLP trained on digits ---
def mlp_logits(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


@pytest.fixture(scope="module")
def trained_mlp():
    """64 -> 32 -> 10 tanh MLP, 300 full-batch Adam steps in one jitted scan (test acc ~0.97)."""
    data = load_digits()
    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.normal(size=(64, 32)) / 8.0, jnp.float32),
              "b1": jnp.zeros(32), "w2": jnp.asarray(rng.normal(size=(32, 10)) / 32**0.5,
                                                     jnp.float32), "b2": jnp.zeros(10)}
    optimizer = optax.adam(1e-2)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)

    def loss(p):
        logits = jax.vmap(mlp_logits, (None, 0))(p, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def train_and_predict(p, x_test):
        def step(carry, _):
            p, s = carry
            u, s = optimizer.update(jax.grad(loss)(p), s)
            return (optax.apply_updates(p, u), s), None

        p = jax.lax.scan(step, (p, optimizer.init(p)), None, length=300)[0][0]
        return p, jnp.argmax(jax.vmap(mlp_logits, (None, 0))(p, x_test), -1)

    params, predictions = train_and_predict(params, data.x_test)
    clean = int(np.sum(np.asarray(predictions) == data.y_test)) / len(data.y_test)
    assert clean > 0.9
    return params, data.x_test, data.y_test, clean


@pytest.mark.slow
@pytest.mark.parametrize("norm,epsilon", [("linf", 0.5), ("l2", 3.0)])
def test_adversarial_examples_stay_in_the_ball_and_the_data_range(trained_mlp, norm, epsilon):
    params, x, y, _ = trained_mlp
    x, y = x[:128], y[:128]
    x_adv = np.asarray(pgd_attack(jax.random.PRNGKey(2), mlp_logits, params, x, y, norm=norm,
                                  epsilon=epsilon, num_steps=10))
    delta = (x_adv - x).astype(np.float64)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= epsilon * (1 + 1e-5)
    assert size.mean() > 0.5 * epsilon  # the attack does use its budget
    assert x_adv.min() >= -1.0 and x_adv.max() <= 1.0
    # The range does bind here (digits have many pixels at -1): without it the attack leaves it.
    unclipped = np.asarray(pgd_attack(jax.random.PRNGKey(2), mlp_logits, params, x, y, norm=norm,
                                      epsilon=epsilon, num_steps=10, clip_range=None))
    assert unclipped.min() < -1.0 or unclipped.max() > 1.0
    # Deterministic given the key.
    np.testing.assert_array_equal(x_adv, pgd_attack(jax.random.PRNGKey(2), mlp_logits, params, x,
                                                    y, norm=norm, epsilon=epsilon, num_steps=10))


@pytest.mark.slow
def test_zero_budget_changes_nothing(trained_mlp):
    params, x, y, _ = trained_mlp
    for norm in ("linf", "l2"):  # same shapes and settings as the ball test: no new compile
        # The default (0 here) and a fixed step, as a float32 scalar like the default's: a
        # Python float would be weakly typed, another program.
        for step_size in (None, np.float32(0.1)):
            x_adv = pgd_attack(jax.random.PRNGKey(3), mlp_logits, params, x[:128], y[:128],
                               norm=norm, epsilon=0.0, num_steps=10, step_size=step_size)
            np.testing.assert_array_equal(np.asarray(x_adv), x[:128])
    # The curves below start at epsilon = 0, which must give the clean accuracy exactly.


@pytest.mark.slow
@pytest.mark.parametrize("norm,epsilons", [("linf", [0.0, 0.02, 0.05, 0.1, 0.2, 0.4]),
                                           ("l2", [0.0, 0.25, 0.5, 1.0, 2.0, 4.0])])
def test_robust_accuracy_falls_monotonically_with_the_budget_on_a_trained_mlp(trained_mlp, norm,
                                                                             epsilons):
    params, x, y, clean = trained_mlp
    # 360 = 2 x 128 + 104: the last batch is padded and its padding must not count.
    curve = robust_accuracy_curve(jax.random.PRNGKey(4), mlp_logits, params, x, y, norm=norm,
                                  epsilons=epsilons, num_steps=10, batch_size=128)
    assert list(curve) == [float(e) for e in epsilons]
    acc = np.array(list(curve.values()))
    assert acc[0] == pytest.approx(clean)
    assert (np.diff(acc) <= 0).all(), curve
    assert acc[-1] < 0.2 < clean - 0.5, curve  # a large budget breaks an undefended MLP


@pytest.mark.slow
def test_attack_energy_shift_on_a_trained_mlp(trained_mlp):
    """The targeted half of Mirza et al.'s observation holds on this MLP (the untargeted half
    does not: see the README); the untargeted attack's accuracy is the robust accuracy."""
    params, x, y, clean = trained_mlp
    out = attack_energy_shift(jax.random.PRNGKey(6), mlp_logits, params, x, y, epsilon=0.2,
                              num_steps=10, batch_size=128)
    curve = robust_accuracy_curve(jax.random.PRNGKey(4), mlp_logits, params, x, y,
                                  norm="linf", epsilons=[0.2], num_steps=10, batch_size=128)
    assert out["targeted"] > 0.9 and out["targeted_mean"] > 0, out
    assert out["untargeted_accuracy"] == pytest.approx(curve[0.2], abs=0.05)
    assert out["untargeted_accuracy"] < clean - 0.2, out


def test_sgld_purification_follows_the_energy_gradient_and_the_range():
    # E(x) = ½||x||², no noise: each step x <- x - s x, so K steps give (1 - s)^K x.
    purify = jax.jit(sgld_purification(lambda p, x: 0.5 * jnp.sum(x**2), num_steps=3,
                                       step_size=0.5, noise_scale=0.0, clip_range=(-1.0, 1.0)))
    x = jnp.array([[0.8, -0.4], [1.0, 0.0]])
    np.testing.assert_allclose(purify(jax.random.PRNGKey(0), None, x), 0.125 * x, rtol=1e-6)
    # E(x) = -10 x_0 pushes the first feature out of the range (clipped at 1); the second
    # feature feels only the noise, which is keyed.
    noisy = jax.jit(sgld_purification(lambda p, x: -10.0 * x[0], num_steps=2, step_size=1.0,
                                      noise_scale=0.1))
    a, b = noisy(jax.random.PRNGKey(2), None, x), noisy(jax.random.PRNGKey(2), None, x)
    np.testing.assert_array_equal(a[:, 0], 1.0)
    np.testing.assert_array_equal(a, b)
    c = noisy(jax.random.PRNGKey(3), None, x)
    assert not np.array_equal(a[:, 1], c[:, 1])
    assert 0.0 < np.abs(a[:, 1] - x[:, 1]).max() < 1.0


@pytest.mark.slow
def test_defence_classifies_purified_inputs(trained_mlp):
    params, x, y, _ = trained_mlp
    x, y = x[:100], y[:100]
    kwargs = {"norm": "linf", "epsilons": [0.0, 0.1], "num_steps": 5, "batch_size": 64}
    # A defence that maps every input to the blank image: accuracy is that of the blank image.
    blank_class = int(jnp.argmax(mlp_logits(params, -jnp.ones(64))))
    blank = robust_accuracy_curve(jax.random.PRNGKey(5), mlp_logits, params, x, y,
                                  defence=lambda key, p, z: -jnp.ones_like(z), **kwargs)
    assert blank == {0.0: pytest.approx(np.mean(y == blank_class)),
                     0.1: pytest.approx(np.mean(y == blank_class))}
    # JEM purification on the classifier's own energy runs end to end and keeps accuracy sane.
    purify = sgld_purification(energy_from_logits(mlp_logits), num_steps=5, step_size=0.1,
                               noise_scale=0.01)
    jem = robust_accuracy_curve(jax.random.PRNGKey(5), mlp_logits, params, x, y,
                                defence=purify, **kwargs)
    assert set(jem) == {0.0, 0.1} and jem[0.0] > 0.8


def test_bad_arguments_raise_one_clear_error(linear_problem):
    params, x, y, _, _ = linear_problem
    key = jax.random.PRNGKey(0)
    attack = {"epsilon": 0.1, "num_steps": 5}
    with pytest.raises(ValueError, match=r"norm='l1': expected one of \('linf', 'l2'\)"):
        pgd_attack(key, linear_logits, params, x, y, norm="l1", **attack)
    with pytest.raises(ValueError, match="epsilon=-0.1: expected a number >= 0"):
        pgd_attack(key, linear_logits, params, x, y, epsilon=-0.1, num_steps=5)
    with pytest.raises(ValueError, match="num_steps=0: expected a positive Python int"):
        pgd_attack(key, linear_logits, params, x, y, epsilon=0.1, num_steps=0)
    with pytest.raises(ValueError, match="step_size=0.0: expected a positive number or None"):
        pgd_attack(key, linear_logits, params, x, y, step_size=0.0, **attack)
    with pytest.raises(ValueError, match=r"loss='hinge': expected one of \('ce', 'margin'\)"):
        pgd_attack(key, linear_logits, params, x, y, loss="hinge", **attack)
    with pytest.raises(ValueError, match=r"clip_range=\(1, -1\): expected None or \(low, high\)"):
        pgd_attack(key, linear_logits, params, x, y, clip_range=(1, -1), **attack)
    with pytest.raises(ValueError, match=r"y has shape \(399,\) and dtype int32: expected integer "
                                         r"labels \(400,\) matching x \(400, 20\)"):
        pgd_attack(key, linear_logits, params, x, y[:-1], **attack)
    with pytest.raises(ValueError, match=r"y has shape \(400,\) and dtype float32"):
        pgd_attack(key, linear_logits, params, x, y.astype(np.float32), **attack)
    curve = {"norm": "linf", "num_steps": 5, "batch_size": 64}
    with pytest.raises(ValueError, match=r"epsilons=\[0.1, -0.2\]: expected a non-empty sequence"):
        robust_accuracy_curve(key, linear_logits, params, x, y, epsilons=[0.1, -0.2], **curve)
    with pytest.raises(ValueError, match="batch_size=0: expected a positive int"):
        robust_accuracy_curve(key, linear_logits, params, x, y, epsilons=[0.1], norm="linf",
                              num_steps=5, batch_size=0)
    with pytest.raises(ValueError, match="defence='sgld': expected None or a callable"):
        robust_accuracy_curve(key, linear_logits, params, x, y, epsilons=[0.1], defence="sgld",
                              **curve)
    with pytest.raises(ValueError, match="targeted='yes': expected True or False"):
        pgd_attack(key, linear_logits, params, x, y, targeted="yes", **attack)
    with pytest.raises(ValueError, match="num_classes=1: expected an int >= 2"):
        attack_energy_shift(key, linear_logits, params, x, y, num_classes=1, batch_size=64,
                            **attack)
    with pytest.raises(ValueError, match="num_steps=0: expected a positive Python int"):
        sgld_purification(lambda p, z: jnp.sum(z), num_steps=0, step_size=1.0, noise_scale=0.0)
