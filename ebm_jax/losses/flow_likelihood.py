"""Maximum likelihood for a normalised density, e.g. a normalising flow.

A flow's ``log_prob`` is normalised, so it trains by minimising the mean negative
log-likelihood of the data, ``L = -1/B Σ log q(x_i)``, with no sampling.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebm_jax.losses.base import LossTransform, check_examples, require_keys

__all__ = ["flow_maximum_likelihood"]


def flow_maximum_likelihood(log_prob_fn: Callable[[Any, jax.Array], jax.Array]) -> LossTransform:
    """The mean negative log-likelihood of ``batch["x"]`` under a normalised density.

    Stateless (its state is ``()``); the key is unused. Train a flow with the standard
    train step (:func:`ebm_jax.train.make_train_step`) and the flow's params.

    Args:
      log_prob_fn: per-example ``log_prob_fn(params, x[*shape]) -> scalar``, normalised
        (e.g. :attr:`ebm_jax.nets.FlowFunctions.log_prob`).

    Info: ``nll``, the loss's value (nats per example).

    Example::

      >>> log_prob_fn = lambda mu, x: -0.5 * jnp.sum((x - mu) ** 2) - jnp.log(2 * jnp.pi)
      >>> loss = flow_maximum_likelihood(log_prob_fn)
      >>> batch = {"x": jnp.zeros((4, 2))}
      >>> value, (_, info) = jax.jit(loss.loss)(jnp.zeros(2), (), batch, jax.random.key(0))
      >>> round(float(value), 4), sorted(info)
      (1.8379, ['nll'])
    """
    if not callable(log_prob_fn):
        raise TypeError(f"log_prob_fn={log_prob_fn!r}: expected a function "
                        "log_prob_fn(params, x) -> scalar")

    def check(batch):
        require_keys(batch, ("x",), "flow_maximum_likelihood")
        return check_examples(batch, "flow_maximum_likelihood", floating=True)

    def init(rng_key, params, example_batch):
        check(example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        x = check(batch)
        log_q = jax.vmap(log_prob_fn, (None, 0))(params, x)
        if log_q.shape != x.shape[:1]:
            raise ValueError(f"log_prob_fn returned shape {log_q.shape[1:]} per example: "
                             "expected a scalar")
        value = -jnp.mean(log_q)
        return value, (state, {"nll": value})

    return LossTransform(init, loss)
