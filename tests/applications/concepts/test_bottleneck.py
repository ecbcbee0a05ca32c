"""The joint concept-bottleneck baseline (ebm_jax/applications/concepts/bottleneck.py)."""
import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax.applications.concepts.bottleneck import bottleneck_model, bottleneck_predict


def test_intervention_replaces_told_concepts_and_only_those():
    model = bottleneck_model(lambda p, x: jnp.tanh(x @ p), jnp.ones((4, 8)) * 0.3,
                             jax.random.key(0), num_classes=3, num_concepts=5, feature_dim=8)
    x = jax.random.normal(jax.random.key(1), (6, 4))
    classes, probs = bottleneck_predict(model, model.params, x)
    known = jnp.zeros((6, 5), bool).at[:, :2].set(True)
    told = jnp.ones((6, 5), jnp.int32)
    after_classes, after = bottleneck_predict(model, model.params, x, known, told)
    np.testing.assert_array_equal(after[:, :2], 1.0)
    np.testing.assert_array_equal(after[:, 2:], probs[:, 2:])
    logits = jax.vmap(model.class_logits, in_axes=(None, 0))(model.params, after)
    np.testing.assert_array_equal(after_classes, jnp.argmax(logits, -1))
