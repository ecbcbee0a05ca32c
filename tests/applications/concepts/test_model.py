"""ECBM's energies (ebm_jax/applications/concepts/model.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.applications.concepts.model import _tiny_model, concept_energy_model, joint_energy


def test_relaxed_energies_at_vertices_are_the_hard_energies():
    model = _tiny_model()
    p, x = model.params, jnp.linspace(-1, 1, 4)
    c = jnp.array([1, 0, 1])

    @jax.jit
    def both(y):
        relaxed = model.relaxed_energies(p, x, jax.nn.one_hot(y, 3), c.astype(jnp.float32))
        hard = jnp.stack([model.class_energies(p, x)[y],
                          jnp.take_along_axis(model.concept_energies(p, x), c[:, None], 1).sum(),
                          model.global_energies(p, c)[y]])
        return relaxed, hard

    for y in range(3):
        relaxed, hard = both(y)
        np.testing.assert_allclose(relaxed, hard, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(joint_energy(model, p, x, y, c, (3.0, 1.0, 1.0)),
                                   3 * hard[0] + hard[1] + hard[2], rtol=1e-5)


def test_energies_depend_on_their_arguments():
    model = _tiny_model()
    p = model.params
    e = model.class_energies(p, jnp.ones(4))
    assert float(jnp.std(e)) > 0                                   # classes differ
    assert not np.allclose(model.global_energies(p, jnp.zeros(3)),
                           model.global_energies(p, jnp.ones(3)))  # concepts matter
    ec = model.concept_energies(p, jnp.ones(4))
    assert not np.allclose(ec[:, 0], ec[:, 1])


def test_backbone_of_the_wrong_width_is_refused():
    model = concept_energy_model(lambda p, x: x, None, jax.random.key(0), num_classes=3,
                                 num_concepts=2, feature_dim=5)
    with pytest.raises(ValueError, match=r"features of shape \(4,\): expected \(5,\)"):
        model.class_energies(model.params, jnp.zeros(4))
    with pytest.raises(ValueError, match="num_classes"):
        concept_energy_model(lambda p, x: x, None, jax.random.key(0), num_classes=1,
                             num_concepts=2, feature_dim=5)
