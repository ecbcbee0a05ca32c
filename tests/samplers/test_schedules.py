"""The exact posterior of a diffusion pair over an empirical data law (``pair_posterior``):
closed forms for one data point, and the joint law of the forward draws recovered from it."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers import (diffuse, diffuse_shared, noise_schedule, pair_posterior,
                              sample_pair_posterior)

COSINE = noise_schedule("cosine")


@pytest.mark.parametrize("level", [0, 2])
def test_one_data_point_gives_ddpm_s_posterior_or_a_deterministic_shared_pair(level):
    ma, ms = COSINE.marginal_alphas, COSINE.marginal_sigmas
    a, s = COSINE.alphas[level], COSINE.sigmas[level]
    x0, x_next = 0.7, -0.4
    joint = pair_posterior(COSINE, jnp.array([[x0]]), jnp.array([x_next]), level,
                           shared_noise=False)
    # DDPM's q(x_t | x_{t+1}, x_0), written with the step's (a, s) and the marginal std
    mean = (ma[level] * s**2 * x0 + a * ms[level]**2 * x_next) / ms[level + 1]**2
    np.testing.assert_allclose(joint.means[0, 0], mean, atol=1e-6)
    np.testing.assert_allclose(joint.std, s * ms[level] / ms[level + 1], atol=1e-6)
    np.testing.assert_allclose(joint.log_weights, [0.0], atol=1e-6)
    shared = pair_posterior(COSINE, jnp.array([[x0]]), jnp.array([x_next]), level,
                            shared_noise=True)
    eps = (x_next - ma[level + 1] * x0) / ms[level + 1]       # the one noise draw
    np.testing.assert_allclose(shared.means[0, 0], ma[level] * x0 + ms[level] * eps, atol=1e-6)
    assert float(shared.std) < 1e-3


@pytest.mark.parametrize("level", [1, 3])
@pytest.mark.parametrize("shared_noise", [True, False])
def test_drawing_x_t_from_it_gives_back_the_forward_pairs_joint_law(shared_noise, level):
    # Three data points diffused once (d = 0.3), level 3. (x_t, x_{t+1}) from the forward
    # draws; x_t' from the posterior of each x_{t+1}: (x_t', x_{t+1}) must have the pairs'
    # exact moments. The two couplings' covariances differ by 0.23, eight standard errors of
    # 20,000 draws: the other coupling's posterior, uniform weights (no data term) or a
    # dropped data noise each fail.
    d, n = 0.3, 20_000
    points = jnp.array([[-0.3], [0.1], [0.4]])
    c = math.sqrt(1 - d**2)
    k_pick, k_noise, k_pair, k_post = jax.random.split(jax.random.key(0), 4)
    x0 = c * points[jax.random.randint(k_pick, (n,), 0, 3)] + d * jax.random.normal(
        k_noise, (n, 1))
    x_t, x_next = (diffuse_shared if shared_noise else diffuse)(k_pair, COSINE, x0, level)

    def draw(key, x):
        return sample_pair_posterior(key, pair_posterior(
            COSINE, points, x, level, shared_noise=shared_noise, data_noise=d))

    x_post = jax.vmap(draw)(jax.random.split(k_post, n), x_next)
    ma, ms = COSINE.marginal_alphas, COSINE.marginal_sigmas
    m2 = c**2 * float(jnp.mean(points**2))
    var_u = ma[level]**2 * d**2 + ms[level]**2
    cov = (ma[level] * ma[level + 1] * d**2 + ms[level] * ms[level + 1] if shared_noise
           else COSINE.alphas[level] * var_u)
    exact = {"mean": ma[level] * c * float(jnp.mean(points)),
             "second moment": ma[level]**2 * m2 + var_u,
             "cross moment": ma[level] * ma[level + 1] * m2 + cov}
    for draws in (x_t, x_post):            # the forward draws themselves pass, as a control
        x, y = np.asarray(draws[:, 0], np.float64), np.asarray(x_next[:, 0], np.float64)
        for name, values in (("mean", x), ("second moment", x * x), ("cross moment", x * y)):
            se = values.std() / math.sqrt(n)
            assert abs(values.mean() - exact[name]) < 4 * se, (name, values.mean(), exact[name])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"x_next.shape=\(3,\)"):
        pair_posterior(COSINE, jnp.zeros((4, 2)), jnp.zeros(3), 1, shared_noise=True)
    with pytest.raises(ValueError, match="data_noise=1.0"):
        pair_posterior(COSINE, jnp.zeros((4, 2)), jnp.zeros(2), 1, shared_noise=True,
                       data_noise=1.0)
    with pytest.raises(ValueError, match="level=6"):
        pair_posterior(COSINE, jnp.zeros((4, 2)), jnp.zeros(2), 6, shared_noise=True)
