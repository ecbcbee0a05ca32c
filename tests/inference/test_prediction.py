"""Batched prediction: the labels, probabilities and energies of a direct computation, for any
number of examples, from one compiled program."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import predict
from ebm_jax.inference.prediction import _batch_prediction


def logits_fn(w, x):
    return jnp.tanh(x) @ w


W = jax.random.normal(jax.random.key(0), (3, 4))
X = np.asarray(jax.random.normal(jax.random.key(1), (11, 3)))


def test_matches_the_direct_computation_whatever_the_batch_size():
    logits = np.asarray(jnp.tanh(X) @ W)
    for batch_size in (1, 4, 11, 64):
        out = predict(logits_fn, W, X, batch_size=batch_size)
        np.testing.assert_array_equal(out.labels, logits.argmax(-1))
        np.testing.assert_allclose(out.probs, jax.nn.softmax(logits, -1), rtol=1e-5)
        np.testing.assert_allclose(out.energy, -jax.nn.logsumexp(logits, -1), rtol=1e-5)
        assert out.labels.dtype == np.int32 and out.probs.shape == (11, 4)


def test_every_batch_runs_one_program():
    run = _batch_prediction(logits_fn)
    before = run._cache_size()
    predict(logits_fn, W, X[:5], batch_size=4)    # 4 + 1 padded to 4
    predict(logits_fn, W, X[:7], batch_size=4)    # 4 + 3 padded to 4
    assert run._cache_size() - before <= 1 and _batch_prediction(logits_fn) is run


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match=r"x has shape \(0, 3\): expected a non-empty batch"):
        predict(logits_fn, W, np.zeros((0, 3)))
    with pytest.raises(ValueError, match="batch_size"):
        predict(logits_fn, W, X, batch_size=0)
