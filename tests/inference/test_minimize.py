"""minimize: descent on y for one x, against the closed form of a quadratic energy, and its
gradient with respect to the step size and the params against finite differences."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import minimize

pytestmark = pytest.mark.fast_compile  # small programs: mostly compilation

A = jnp.array([[2.0, 0.5], [-1.0, 1.0]])
X = jnp.array([1.0, -2.0])
Y0 = jnp.array([0.5, 3.0])


def quadratic(a, x, y):
    """E(x, y) = 0.5 |y - A x|^2: the descent contracts y - A x by (1 - h) per step."""
    return 0.5 * jnp.sum((y - a @ x) ** 2)


def double_well(p, x, y):
    return jnp.sum((y ** 2 - 1.0) ** 2 + 0.3 * y)


def test_quadratic_converges_to_ax_at_the_rate_one_minus_h_per_step():
    h, k = 0.3, 12
    out = jax.jit(lambda a, x, y0: minimize(quadratic, a, x, y0, num_steps=k, step_size=h))(
        A, X, Y0)
    target = np.asarray(A @ X)
    gap0 = np.asarray(Y0) - target
    np.testing.assert_allclose(out.y, target + (1 - h) ** k * gap0, rtol=1e-5, atol=1e-6)
    expected = 0.5 * (1 - h) ** (2 * np.arange(k + 1)) * np.sum(gap0 ** 2)
    assert out.energies.shape == (k + 1,)
    np.testing.assert_allclose(out.energies, expected, rtol=1e-4)
    assert float(out.energy) == float(out.energies[-1])


def test_energies_never_increase_for_a_small_step_and_a_batch_is_a_vmap():
    starts = jnp.linspace(-2.0, 2.0, 9)[:, None]
    solve = jax.jit(jax.vmap(lambda y0: minimize(double_well, None, None, y0, num_steps=60,
                                                 step_size=0.02)))
    out = solve(starts)
    assert out.y.shape == (9, 1) and out.energies.shape == (9, 61)
    assert np.all(np.diff(np.asarray(out.energies), axis=1) <= 1e-6)
    # every start ends at one of the two wells' minima, 4y(y^2 - 1) + 0.3 = 0
    residual = 4 * out.y * (out.y ** 2 - 1) + 0.3
    assert np.all(np.abs(np.asarray(out.y)) > 0.9) and np.all(np.abs(residual) < 0.05)


def test_the_gradient_through_the_descent_matches_finite_differences():
    """d/dh and d/dparams of a loss of the final y: analytic on the quadratic, and central
    differences on a nonlinear energy."""
    k = 6
    # quadratic: y_k = A x + (1 - h)^k (y0 - A x), so dy_k/dh = -k (1 - h)^(k-1) (y0 - A x)
    dy_dh = jax.jit(jax.jacobian(lambda h: minimize(quadratic, A, X, Y0, num_steps=k,
                                                    step_size=h).y))(0.3)
    np.testing.assert_allclose(dy_dh, -k * 0.7 ** (k - 1) * (Y0 - A @ X), rtol=1e-5)

    def energy(w, x, y):
        return 0.5 * jnp.sum((y - jnp.tanh(w @ x)) ** 2) + 0.1 * jnp.sum(y ** 4)

    def loss(w, h):
        out = minimize(energy, w, X, Y0, num_steps=k, step_size=h)
        return jnp.sum(out.y * jnp.array([1.0, -2.0])) + out.energy

    w0, h0 = jnp.array([[0.3, -0.2], [0.5, 0.1]]), 0.2
    value_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    _, (g_w, g_h) = value_grad(w0, h0)
    f = jax.jit(loss)
    eps = 2e-3
    fd_h = (f(w0, h0 + eps) - f(w0, h0 - eps)) / (2 * eps)
    np.testing.assert_allclose(g_h, fd_h, rtol=2e-3)
    direction = jnp.array([[1.0, -0.5], [0.25, 2.0]])
    fd_w = (f(w0 + eps * direction, h0) - f(w0 - eps * direction, h0)) / (2 * eps)
    np.testing.assert_allclose(jnp.sum(g_w * direction), fd_w, rtol=2e-3)


def test_noise_gives_the_stationary_law_of_the_noisy_descent_and_the_clamp_holds():
    """On the quadratic, y - A x is an AR(1) chain (1 - h) e + s eps: its stationary variance
    is s^2 / (1 - (1 - h)^2) per coordinate."""
    h, s = 0.5, 0.3

    def run(key, clip):
        return minimize(quadratic, A, X, Y0, num_steps=30, step_size=h, noise_scale=s,
                        rng_key=key, clip_range=clip)

    @jax.jit
    def both(key):
        keys = jax.random.split(key, 2000)
        return jax.vmap(lambda k: run(k, None))(keys), run(keys[0], (-1.0, 1.0))

    out, clamped = both(jax.random.key(0))
    gap = np.asarray(out.y - A @ X)
    np.testing.assert_allclose(gap.mean(0), 0.0, atol=0.03)
    np.testing.assert_allclose(gap.var(0), s ** 2 / (1 - (1 - h) ** 2), rtol=0.1)
    # A x = (1, -3): the clamped chain sits at the range's edge
    assert np.all(np.abs(np.asarray(clamped.y)) <= 1.0) and float(clamped.y[1]) == -1.0


@pytest.mark.parametrize("kwargs, y0, error, match", [
    (dict(num_steps=0, step_size=0.1), Y0, ValueError, r"num_steps=0: expected a positive"),
    (dict(num_steps=2.5, step_size=0.1), Y0, ValueError, r"num_steps=2.5: expected"),
    (dict(num_steps=3, step_size=0.0), Y0, ValueError, r"step_size=0.0: expected a positive"),
    (dict(num_steps=3, step_size=-0.1), Y0, ValueError, r"step_size=-0.1: expected a positive"),
    (dict(num_steps=3, step_size=0.1, noise_scale=-1.0), Y0, ValueError,
     r"noise_scale=-1.0: expected a number >= 0"),
    (dict(num_steps=3, step_size=0.1, noise_scale=0.1), Y0, ValueError,
     r"rng_key=None with noise_scale=0.1: expected a PRNG key"),
    (dict(num_steps=3, step_size=0.1), jnp.zeros(3), ValueError,
     r"y0 has shape \(3,\) with x of shape \(2,\): energy_fn failed on it"),
    (dict(num_steps=3, step_size=0.1), jnp.zeros(2, jnp.int32), ValueError,
     r"y0 has dtype int32: expected a floating-point array"),
])
def test_bad_input_is_refused_before_any_compute(kwargs, y0, error, match):
    with pytest.raises(error, match=match):
        minimize(quadratic, A, X, y0, **kwargs)


def test_an_energy_that_is_not_a_scalar_for_y0_is_refused():
    with pytest.raises(ValueError, match=r"y0 has shape \(2,\).*returned \(2,\).*expected a "
                                         "floating-point scalar"):
        minimize(lambda a, x, y: y - a @ x, A, X, Y0, num_steps=3, step_size=0.1)
