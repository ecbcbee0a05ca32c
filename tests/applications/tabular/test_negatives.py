import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.tabular import surrogate_negatives


def test_one_and_two_features_take_the_ends_and_the_four_corners():
    assert surrogate_negatives(jax.random.key(0), 1, 5.0).tolist() == [[-5.0], [5.0]]
    corners = {tuple(c) for c in surrogate_negatives(jax.random.key(0), 2, 3.0).tolist()}
    assert corners == {(-3.0, -3.0), (3.0, 3.0), (-3.0, 3.0), (3.0, -3.0)}


@pytest.mark.parametrize("num_features,num_pairs", [(3, 2), (6, 2), (9, 4), (5, 5)])
def test_more_features_take_distinct_corners_each_with_its_negation(num_features, num_pairs):
    for seed in range(5):
        x = np.asarray(surrogate_negatives(jax.random.key(seed), num_features, 5.0, num_pairs))
        assert x.shape == (2 * num_pairs, num_features)
        assert np.all(np.abs(x) == 5.0)
        np.testing.assert_array_equal(x[0::2], -x[1::2])
        assert len({tuple(row) for row in x}) == 2 * num_pairs  # no corner repeats


def test_the_key_chooses_the_corners():
    draws = {tuple(np.asarray(surrogate_negatives(jax.random.key(s), 8))[0]) for s in range(20)}
    assert len(draws) > 10
    np.testing.assert_array_equal(surrogate_negatives(jax.random.key(3), 8),
                                  surrogate_negatives(jax.random.key(3), 8))


@pytest.mark.parametrize("kwargs,message", [
    ({"num_features": 0}, "num_features=0: expected a positive int"),
    ({"num_features": 3, "distance": 0.0}, "distance=0.0"),
    ({"num_features": 3, "num_pairs": 4}, r"num_pairs=4: expected an int in \[1, 3\]"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        surrogate_negatives(jax.random.key(0), **kwargs)


def test_jittable_under_a_traced_key():
    x = jax.jit(lambda k: surrogate_negatives(k, 4))(jax.random.key(1))
    assert bool(jnp.all(jnp.abs(x) == 5.0))
