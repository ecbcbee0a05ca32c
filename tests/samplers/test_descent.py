"""Tests of the descent/ascent sampler (``ebm_jax.samplers.descent``).

Known answers: the argmin of a quadratic (and its constrained argmins in a box, an L-inf
ball and an L2 ball), FGSM's closed form for one sign step, the step length of L2 steps,
and SGLD's step for the noisy variant.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers import (DescentState, descent, descent_kernel, init_chains, langevin,
                              pgd_chain, project_to_ball, random_ball_offset, run_chains)

# Mostly compilation, brief runs: compile with fewer XLA optimisations (conftest).
pytestmark = pytest.mark.fast_compile

# E(x; m) = ½ (x - m)ᵀ A (x - m) with a diagonal A: its argmin is m, and in a box or an
# L-inf ball (both separable) the constrained argmin is m clipped to it.
A = jnp.array([1.0, 4.0, 0.5])


def quadratic(params, x, m):
    return 0.5 * jnp.sum(params * (x - m) ** 2)


def run(sampler, x0, m, num_steps=400, params=A):
    # Jitted as a whole: op by op, each run compiled dozens of small programs.
    @jax.jit
    def chains(x0, params, m):
        states = init_chains(sampler, x0, params, m)
        return run_chains(jax.random.key(0), sampler, states, params, num_steps, m)

    states, info = chains(x0, params, m)
    return np.asarray(states.position), info


X0 = jnp.zeros((4, 3))
M = jnp.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [-0.2, 0.3, 2.0], [0.0, 0.0, 0.0]])


def test_raw_descent_converges_to_the_argmin_per_example():
    """Raw steps of h = 0.2 contract each coordinate by |1 - h a_i| <= 0.9 per step, so
    400 steps reach m (the cond, one per chain) to float precision. Ascent of -E is the
    same walk. A flipped step diverges (|1 + h a| > 1)."""
    x, info = run(descent(quadratic, 0.2), X0, M)
    np.testing.assert_allclose(x, M, atol=1e-5)
    assert int(jnp.sum(info.nonfinite)) == 0

    def negative(params, x, m):
        return -quadratic(params, x, m)

    x_up, _ = run(descent(negative, 0.2, ascent=True), X0, M)
    np.testing.assert_allclose(x_up, M, atol=1e-5)


def test_clamp_gives_the_box_constrained_argmin():
    x, _ = run(descent(quadratic, 0.2, clip_range=(-0.5, 0.5)), X0, M)
    np.testing.assert_allclose(x, np.clip(M, -0.5, 0.5), atol=1e-5)
    assert x.min() >= -0.5 and x.max() <= 0.5


def test_linf_ball_gives_the_ball_constrained_argmin():
    """Projected descent within eps of the start: the argmin of a separable quadratic over
    the L-inf ball is x0 + clip(m - x0, -eps, eps)."""
    start = jnp.full((4, 3), 0.25)
    x, _ = run(descent(quadratic, 0.2, ball="linf", epsilon=0.3), start, M)
    np.testing.assert_allclose(x, start + np.clip(M - start, -0.3, 0.3), atol=1e-5)
    assert np.abs(x - start).max() <= 0.3 + 1e-6


def test_l2_ball_gives_the_ball_constrained_argmin():
    """An isotropic quadratic's argmin over the L2 ball of radius eps around x0 is
    x0 + eps (m - x0) / |m - x0| when m lies outside."""
    iso = jnp.ones(3)
    x, _ = run(descent(quadratic, 0.2, ball="l2", epsilon=0.5), X0[:3], M[:3], params=iso)
    d = np.asarray(M[:3])
    want = 0.5 * d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(x, want, atol=1e-5)
    np.testing.assert_array_less(np.linalg.norm(x, axis=1), 0.5 + 1e-5)


def test_sign_ascent_step_is_fgsm():
    """One ascent sign step of size eps inside the eps ball is FGSM:
    x_adv = clip(x + eps sign(∇_x L(x, y)), low, high)."""
    w = jax.random.normal(jax.random.key(1), (5, 3))

    def ce(params, x, y):
        return -jax.nn.log_softmax(x @ params)[y]

    x = jax.random.uniform(jax.random.key(2), (8, 5), minval=-1.0, maxval=1.0)
    y = jnp.arange(8) % 3
    eps = 0.1
    sampler = descent(ce, eps, normalize="sign", ascent=True, ball="linf", epsilon=eps,
                      clip_range=(-1.0, 1.0))

    @jax.jit
    def step_and_grads(x, w, y):
        states = init_chains(sampler, x, w, y)
        states, _ = run_chains(jax.random.key(0), sampler, states, w, 1, y)
        return states, jax.vmap(jax.grad(ce, argnums=1), in_axes=(None, 0, 0))(w, x, y)

    states, grads = step_and_grads(x, w, y)
    np.testing.assert_allclose(states.position,
                               np.clip(x + eps * np.sign(grads), -1.0, 1.0), atol=1e-6)


def test_l2_steps_have_the_step_length():
    """normalize="l2": every step moves exactly step_size along -∇E/|∇E| (far from m)."""
    sampler = descent(quadratic, 0.05, normalize="l2")
    state = sampler.init(jnp.zeros(3), A, M[0])
    new, info = sampler.step(None, state, A, M[0])
    move = np.asarray(new.position - state.position)
    grad = np.asarray(jax.grad(quadratic, argnums=1)(A, jnp.zeros(3), M[0]))
    np.testing.assert_allclose(np.linalg.norm(move), 0.05, rtol=1e-6)
    np.testing.assert_allclose(move, -0.05 * grad / np.linalg.norm(grad), rtol=1e-6)
    np.testing.assert_allclose(info.grad_norm, np.linalg.norm(grad), rtol=1e-6)


def test_noisy_descent_is_the_sgld_step():
    """With noise and raw steps, a step is SGLD's decoupled step (same key, same noise)."""
    def energy(params, x):
        return 0.5 * jnp.sum(x**2)

    noisy = descent(energy, 0.1, noise_scale=0.3)
    sgld = langevin(energy, 0.1, 0.3)
    key = jax.random.key(4)
    a, _ = noisy.step(key, noisy.init(jnp.ones(3)), None)
    b, _ = sgld.step(key, sgld.init(jnp.ones(3)), None)
    np.testing.assert_array_equal(a.position, b.position)


def test_traced_step_size_and_radius_compile_once():
    kernel = descent_kernel(quadratic, normalize="sign", ball="linf")

    @jax.jit
    def f(h, eps):
        state = DescentState(jnp.zeros(3), jnp.zeros(3))
        return kernel(None, state, A, h, eps, None, M[1])[0].position

    np.testing.assert_allclose(f(0.5, 0.2), [0.2, 0.0, -0.2])
    np.testing.assert_allclose(f(0.1, 0.2), [0.1, 0.0, -0.1])
    assert f._cache_size() == 1


def test_nonfinite_step_leaves_the_position():
    def energy(params, x):
        return jnp.where(x[0] > 0.5, jnp.nan, jnp.sum(x))

    sampler = descent(energy, 0.1)
    new, info = sampler.step(None, sampler.init(jnp.ones(2)), None)
    np.testing.assert_array_equal(new.position, jnp.ones(2))
    assert int(info.nonfinite) == 1


def test_projection_and_random_start_helpers():
    np.testing.assert_allclose(project_to_ball(jnp.array([3.0, 4.0]), 1.0, "l2"), [0.6, 0.8],
                               rtol=1e-6)
    np.testing.assert_allclose(project_to_ball(jnp.array([3.0, -0.5]), 1.0, "linf"), [1.0, -0.5])

    @jax.jit
    def offsets(key):
        keys = jax.random.split(key, 2000)
        return [jax.vmap(lambda k: random_ball_offset(k, (4,), jnp.float32, 0.2, ball))(keys)
                for ball in ("linf", "l2")]

    linf, l2 = offsets(jax.random.key(0))
    assert float(jnp.abs(linf).max()) <= 0.2
    assert float(jnp.linalg.norm(l2, axis=1).max()) <= 0.2 + 1e-6
    # Uniform in the 4-D L2 ball: the radius r/eps has P(r <= t) = t^4, mean 4/5.
    r = np.asarray(jnp.linalg.norm(l2, axis=1)) / 0.2
    assert abs(r.mean() - 0.8) < 5 * np.sqrt(4 / 6 - 0.64) / np.sqrt(r.size)


@pytest.mark.parametrize("norm,ascent", [("linf", True), ("linf", False), ("l2", True)])
def test_pgd_chain_reaches_the_extreme_point_of_a_linear_score(norm, ascent):
    """A linear score w·x has its maximum over the ball at x0 + eps sign(w) (L-inf) or
    x0 + eps w/|w| (L2), its minimum opposite. Sign steps from a random start get there
    exactly (and the clamp cuts the last coordinate at 1); L2 steps from x0 go along w."""
    w = jnp.array([1.0, -2.0, 0.5, 3.0])
    x0 = jnp.array([0.2, -0.3, 0.0, 0.9 if norm == "linf" else 0.5])

    @jax.jit
    def chains(keys):
        return jax.vmap(lambda k: pgd_chain(k, lambda p, x: jnp.dot(p, x), w, x0, norm=norm,
                                            epsilon=0.2, step_size=0.05, num_steps=10,
                                            ascent=ascent, random_start=norm == "linf",
                                            clip_range=(-1.0, 1.0)))(keys)

    x = np.asarray(chains(jax.random.split(jax.random.key(0), 5)))
    direction = np.sign(w) if norm == "linf" else np.asarray(w) / np.linalg.norm(w)
    want = np.clip(np.asarray(x0) + (1 if ascent else -1) * 0.2 * direction, -1, 1)
    assert norm == "l2" or not ascent or want[3] == 1.0   # the clamp binds
    np.testing.assert_allclose(x, np.broadcast_to(want, x.shape), atol=1e-5)


def test_pgd_chain_without_steps_is_its_start():
    start = pgd_chain(jax.random.key(1), lambda p, x: jnp.sum(x), None, jnp.zeros(3),
                      norm="linf", epsilon=0.1, step_size=0.1, num_steps=0)
    np.testing.assert_array_equal(start, 0.1 * np.asarray(jax.random.uniform(
        jax.random.key(1), (3,), minval=-1.0, maxval=1.0)))
    same = pgd_chain(None, lambda p, x: jnp.sum(x), None, jnp.zeros(3), norm="l2",
                     epsilon=0.1, step_size=0.1, num_steps=0, random_start=False)
    np.testing.assert_array_equal(same, np.zeros(3))
    with pytest.raises(ValueError, match=r"norm=None: expected one of \('linf', 'l2'\)"):
        pgd_chain(None, lambda p, x: jnp.sum(x), None, jnp.zeros(3), norm=None, epsilon=0.1,
                  step_size=0.1, num_steps=1)
    with pytest.raises(ValueError, match="num_steps=-1: expected an int >= 0"):
        pgd_chain(None, lambda p, x: jnp.sum(x), None, jnp.zeros(3), norm="l2", epsilon=0.1,
                  step_size=0.1, num_steps=-1)


@pytest.mark.parametrize("kwargs, field", [
    ({"normalize": "linf"}, "normalize='linf'"),
    ({"ball": "l1", "epsilon": 0.1}, "ball='l1'"),
    ({"ball": "linf"}, "epsilon=None with ball='linf'"),
    ({"epsilon": 0.1}, "epsilon=0.1 with ball=None"),
    ({"ball": "l2", "epsilon": -1.0}, "epsilon=-1.0"),
    ({"clip_range": (1.0, -1.0)}, "clip_range"),
    ({"noise_scale": -0.1}, "noise_scale=-0.1"),
    ({"ascent": "yes"}, "ascent='yes'"),
])
def test_bad_arguments_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace("(", r"\(").replace(")", r"\)")):
        descent(quadratic, 0.1, **kwargs)


def test_bad_step_size():
    with pytest.raises(ValueError, match="step_size=0"):
        descent(quadratic, 0)
