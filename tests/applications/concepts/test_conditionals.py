"""Boltzmann conditionals of ECBM (ebm_jax/applications/concepts/conditionals.py)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.concepts.conditionals import (all_concept_vectors, class_posterior,
                                                        concept_marginals)
from ebm_jax.applications.concepts.model import _tiny_model


@pytest.fixture(scope="module")
def sharp():
    """The tiny model with its global energy scaled by 4, so that marginals sit far from 1/2
    and a sampler that draws from the wrong conditional is caught."""
    model = _tiny_model()
    head = dict(model.params["head"])
    head["global_out"] = jax.tree.map(lambda a: 4.0 * a, head["global_out"])
    return model, {**model.params, "head": head}


def _brute_force(model, params, given=None):
    vectors = [np.array(v) for v in itertools.product((0, 1), repeat=model.num_concepts)]
    if given:
        vectors = [v for v in vectors if all(v[j] == b for j, b in given.items())]
    energies = np.stack([np.asarray(model.global_energies(params, jnp.asarray(v, jnp.float32)))
                         for v in vectors])                                     # [V, K]
    weights = np.exp(-(energies - energies.min(0)))
    weights /= weights.sum(0)
    return weights.T @ np.stack(vectors)


def test_all_concept_vectors_are_every_binary_vector_once():
    v = np.asarray(all_concept_vectors(5))
    assert v.shape == (32, 5) and len({tuple(r) for r in v}) == 32


def test_enumerated_marginals_match_a_brute_force_sum(sharp):
    model, params = sharp
    exact = np.asarray(concept_marginals(model, params))
    np.testing.assert_allclose(exact, _brute_force(model, params), atol=1e-5)
    assert np.abs(exact - 0.5).max() > 0.3          # sharp enough for the sampler test
    given = np.asarray(concept_marginals(model, params, given={2: 1}))
    np.testing.assert_allclose(given, _brute_force(model, params, {2: 1}), atol=1e-5)
    np.testing.assert_allclose(given[:, 2], 1.0, atol=1e-6)


def test_gibbs_estimate_agrees_with_enumeration(sharp):
    model, params = sharp
    exact = np.asarray(concept_marginals(model, params))
    sampled = np.asarray(concept_marginals(model, params, max_enumerated=1, num_sweeps=200,
                                           num_chains=16, rng_key=jax.random.key(0)))
    # 16 chains x 100 kept sweeps = 1,600 draws per class; a marginal's standard error is at
    # most 0.5 / 40 = 0.0125 for independent draws (more with autocorrelation): 0.06 allows
    # ~4.8 of them, while drawing from the flipped conditional moves marginals by > 0.3.
    np.testing.assert_allclose(sampled, exact, atol=0.06)


def test_class_posterior_is_the_softmax_of_negative_class_energies():
    model = _tiny_model()
    x = jax.random.normal(jax.random.key(0), (3, 4))
    expected = jax.nn.softmax(-jax.vmap(model.class_energies, in_axes=(None, 0))(model.params, x))
    np.testing.assert_allclose(class_posterior(model, model.params, x), expected, rtol=1e-6)


def test_bad_conditions_are_refused():
    model = _tiny_model()
    with pytest.raises(ValueError, match="concept index 3"):
        concept_marginals(model, model.params, given={3: 1})
    with pytest.raises(ValueError, match=r"given\[0\] = 2"):
        concept_marginals(model, model.params, given={0: 2})
    with pytest.raises(ValueError, match="pass rng_key"):
        concept_marginals(model, model.params, max_enumerated=2)
