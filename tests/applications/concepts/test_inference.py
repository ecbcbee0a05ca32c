"""ECBM's gradient inference, exact inference and interventions
(ebm_jax/applications/concepts/inference.py)."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.concepts.inference import (PIN_LOGIT, infer, infer_exact, intervene,
                                                     random_known_mask)
from ebm_jax.applications.concepts.model import _tiny_model, joint_energy

X = jax.random.normal(jax.random.key(3), (4, 4))


@pytest.fixture(scope="module")
def model():
    return _tiny_model()


def _relaxed_joint(model, x, a, b, weights=(3.0, 1.0, 1.0)):
    terms = model.relaxed_energies(model.params, x, jax.nn.softmax(a),
                                   jax.nn.softmax(b, axis=-1)[:, 1])
    return jnp.dot(jnp.asarray(weights), terms)


@pytest.mark.slow
def test_gradient_inference_descends_the_joint_energy(model):
    start = infer(model, model.params, X, num_steps=0)
    assert float(jnp.abs(start.class_logits).max()) == 0.0
    out = jax.jit(functools.partial(infer, model, num_steps=30))(model.params, X)
    joint = jax.jit(jax.vmap(functools.partial(_relaxed_joint, model)))
    before = joint(X, start.class_logits, start.concept_logits)
    after = joint(X, out.class_logits, out.concept_logits)
    np.testing.assert_allclose(out.energy, after, rtol=1e-5)
    assert (after < before - 1e-3).all()


@pytest.mark.slow
def test_exact_inference_is_the_brute_force_minimiser(model):
    out = infer_exact(model, model.params, X)
    pairs = [(y, c) for y in range(3) for c in itertools.product((0, 1), repeat=3)]
    energies = jax.jit(jax.vmap(lambda x: jnp.stack(
        [joint_energy(model, model.params, x, y, jnp.array(c)) for y, c in pairs])))(X)
    for i in range(len(X)):
        y, c = pairs[int(jnp.argmin(energies[i]))]
        assert int(out.classes[i]) == y and out.concepts[i].tolist() == list(c)
        np.testing.assert_allclose(out.energy[i], energies[i].min(), rtol=1e-5)
    known = jnp.zeros((4, 3), bool).at[:, 0].set(True)
    told = jnp.ones((4, 3), jnp.int32) - out.concepts     # tell the opposite of the minimiser
    after = infer_exact(model, model.params, X, known=known, concepts=told)
    for i in range(len(X)):
        allowed = [k for k, (y, c) in enumerate(pairs) if c[0] == int(told[i, 0])]
        y, c = pairs[allowed[int(jnp.argmin(energies[i][jnp.array(allowed)]))]]
        assert int(after.classes[i]) == y and after.concepts[i].tolist() == list(c)


@pytest.mark.slow
def test_interventions_pin_told_concepts_frozen_or_drifting(model):
    before = infer(model, model.params, X, num_steps=10)
    known = jnp.zeros((4, 3), bool).at[:, 1].set(True)
    told = jnp.ones((4, 3), jnp.int32)
    frozen = intervene(model, model.params, X, before, known, told, num_steps=20)
    np.testing.assert_array_equal(frozen.concept_logits[:, 1], jnp.array([-PIN_LOGIT, PIN_LOGIT])
                                  * jnp.ones((4, 1)))
    assert (frozen.concepts[:, 1] == 1).all()
    drifting = intervene(model, model.params, X, before, known, told, num_steps=20, drift=True)
    assert float(jnp.abs(drifting.concept_logits[:, 1] - frozen.concept_logits[:, 1]).max()) > 0.1
    # The untold concepts start from the first inference and the class from uniform.
    unmoved = intervene(model, model.params, X, before, known, told, num_steps=0)
    np.testing.assert_array_equal(unmoved.concept_logits[:, 0], before.concept_logits[:, 0])
    assert float(jnp.abs(unmoved.class_logits).max()) == 0.0


def test_random_known_mask_tells_count_concepts_uniformly():
    mask = np.asarray(random_known_mask(jax.random.key(0), 3000, 7, 2))
    assert (mask.sum(1) == 2).all()
    # Each concept told with probability 2/7 = 0.286 over 3,000 rows: sd 0.008.
    np.testing.assert_allclose(mask.mean(0), 2 / 7, atol=0.035)


def test_bad_arguments_are_refused(model):
    with pytest.raises(ValueError, match="three weights"):
        infer(model, model.params, X, weights=(1.0, 1.0))
    before = infer(model, model.params, X, num_steps=0)
    with pytest.raises(ValueError, match=r"known has shape \(4, 2\)"):
        intervene(model, model.params, X, before, jnp.zeros((4, 2), bool), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="max_enumerated=2"):
        infer_exact(model, model.params, X, max_enumerated=2)
