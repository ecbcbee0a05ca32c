"""rank and more_compatible on a Gaussian energy: the order is the order of distances to the
mean A x."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import more_compatible, rank

pytestmark = pytest.mark.fast_compile  # small programs: mostly compilation

A = jnp.array([[1.0, 2.0], [0.0, -1.0]])


def gaussian(a, x, y):
    """E(x, y) = 0.5 |y - A x|^2: the lower, the closer y is to A x."""
    return 0.5 * jnp.sum((y - a @ x) ** 2)


def test_orders_candidates_by_distance_for_each_input():
    rng = np.random.default_rng(0)
    xs, candidates = rng.normal(size=(3, 2)), rng.normal(size=(3, 20, 2)) * 3.0
    ranking = jax.jit(jax.vmap(lambda x, c: rank(gaussian, A, x, c)))(xs, candidates)
    distance = np.linalg.norm(candidates - (xs @ np.asarray(A).T)[:, None], axis=-1)
    np.testing.assert_array_equal(ranking.order, np.argsort(distance, axis=-1))
    np.testing.assert_allclose(ranking.energies, 0.5 * distance ** 2, rtol=1e-5)
    assert ranking.order.dtype == jnp.int32
    assert np.all(np.diff(np.take_along_axis(np.asarray(ranking.energies),
                                             np.asarray(ranking.order), -1)) >= 0)


def test_ties_keep_the_given_order_and_a_pair_compares_by_energy():
    x = jnp.array([1.0, 0.0])                                # A x = (1, 0)
    near, far = jnp.array([1.0, 0.5]), jnp.array([3.0, 0.0])

    @jax.jit
    def both(x, near, far):
        pairs = [more_compatible(gaussian, A, x, a, b)
                 for a, b in [(near, far), (far, near), (near, near)]]
        return rank(gaussian, A, x, jnp.stack([far, near, near])).order, jnp.stack(pairs)

    order, pairs = both(x, near, far)
    assert order.tolist() == [1, 2, 0] and pairs.tolist() == [True, False, False]


def unsummed(a, x, y):
    return 0.5 * (y - a @ x) ** 2


@pytest.mark.parametrize("energy, candidates, match", [
    (gaussian, jnp.zeros((4, 3)), r"candidates has shape \(4, 3\) with x of shape \(2,\): "
                                  r"energy_fn failed on one candidate of shape \(3,\)"),
    (gaussian, jnp.zeros((0, 2)), r"candidates has shape \(0, 2\): expected a non-empty"),
    (gaussian, jnp.zeros(()), r"candidates has shape \(\): expected a non-empty stack"),
    (unsummed, jnp.zeros((4, 2)), r"candidates has shape \(4, 2\).*returned \(2,\).*"
                                  "expected a floating-point scalar"),
])
def test_candidates_of_a_wrong_shape_are_refused(energy, candidates, match):
    with pytest.raises(ValueError, match=match):
        rank(energy, A, jnp.ones(2), candidates)


def test_a_pair_of_wrong_shapes_is_refused():
    with pytest.raises(ValueError, match=r"y1 has shape \(2,\) and y2 has shape \(3,\)"):
        more_compatible(gaussian, A, jnp.ones(2), jnp.zeros(2), jnp.zeros(3))
    with pytest.raises(ValueError, match=r"y1 has shape \(3,\) with x of shape \(2,\)"):
        more_compatible(gaussian, A, jnp.ones(2), jnp.zeros(3), jnp.zeros(3))
