"""ECBM's conditional interpretations: Boltzmann normalisations over enumerated alternatives.

- ``p(y | x) = softmax_y(-E(x, y))``: :func:`class_posterior`;
- ``p(c_k = 1 | y) = Σ_{c: c_k = 1} exp(-E(c, y)) / Σ_c exp(-E(c, y))`` under the global
  energy: :func:`concept_marginals`;
- ``p(c_k = 1 | y, c_j = v)``: the same sum over the concept vectors with ``c_j = v``
  (:func:`concept_marginals` with ``given={j: v}``).

The sums run over all ``2^C`` concept vectors when ``C <= max_enumerated`` (exact; ``2^7 =
128`` on the seven-segment digits); beyond, a Gibbs sampler over the binary concepts (each
concept drawn from its exact conditional given the others and the class) estimates them.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.applications.concepts.model import ConceptEnergyModel


def all_concept_vectors(num_concepts: int) -> jax.Array:
    """``[2^C, C]`` int32: every binary concept vector, in binary counting order.

    Example::

      >>> all_concept_vectors(2).tolist()
      [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    num_concepts = check_int("num_concepts", num_concepts, 1, 24)
    codes = np.arange(2 ** num_concepts)[:, None] >> np.arange(num_concepts)[::-1]
    return jnp.asarray(codes & 1, jnp.int32)


def class_posterior(model: ConceptEnergyModel, params: Any, x: jax.Array) -> jax.Array:
    """``[B, K]``: ``p(y | x) = softmax(-E(x, y))`` for a batch ``x``.

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> class_posterior(model, model.params, jnp.zeros((2, 4))).sum(-1).round(5).tolist()
      [1.0, 1.0]
    """
    energies = jax.vmap(model.class_energies, in_axes=(None, 0))(params, x)
    return jax.nn.softmax(-energies, axis=-1)


def _given_arrays(given: Optional[Mapping[int, int]], num_concepts: int):
    mask = np.zeros(num_concepts, bool)
    values = np.zeros(num_concepts, np.int32)
    for j, v in (given or {}).items():
        if not (isinstance(j, (int, np.integer)) and 0 <= j < num_concepts):
            raise ValueError(f"given has concept index {j!r}: expected an int in "
                             f"[0, {num_concepts})")
        if v not in (0, 1):
            raise ValueError(f"given[{j}] = {v!r}: expected a concept value 0 or 1")
        mask[j], values[j] = True, v
    return jnp.asarray(mask), jnp.asarray(values)


def _enumerated(model, params, mask, values):
    vectors = all_concept_vectors(model.num_concepts)                        # [V, C]
    energies = jax.vmap(model.global_energies, in_axes=(None, 0))(
        params, vectors.astype(jnp.float32))                                 # [V, K]
    consistent = jnp.all(jnp.where(mask, vectors == values, True), axis=1)   # [V]
    logits = jnp.where(consistent[:, None], -energies, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=0)                                 # [V, K]
    return weights.T @ vectors.astype(jnp.float32)                           # [K, C]


def _gibbs(model, params, mask, values, rng_key, num_sweeps, num_chains):
    num_classes, num_concepts = model.num_classes, model.num_concepts

    def energy(c, y):
        return model.global_energies(params, c.astype(jnp.float32))[y]

    def sweep(c, key, y):
        keys = jax.random.split(key, num_concepts)

        def one(k, c):
            e0, e1 = energy(c.at[k].set(0), y), energy(c.at[k].set(1), y)
            draw = jax.random.bernoulli(keys[k], jax.nn.sigmoid(e0 - e1)).astype(jnp.int32)
            return c.at[k].set(jnp.where(mask[k], values[k], draw))

        return jax.lax.fori_loop(0, num_concepts, one, c)

    def chain(key, y):
        start_key, run_key = jax.random.split(key)
        c0 = jnp.where(mask, values, jax.random.bernoulli(start_key, 0.5, (num_concepts,)))

        def body(c, key):
            c = sweep(c, key, y)
            return c, c

        _, samples = jax.lax.scan(body, c0.astype(jnp.int32),
                                  jax.random.split(run_key, num_sweeps))
        return samples[num_sweeps // 2:].mean(0)                         # second half

    keys = jax.random.split(rng_key, num_classes * num_chains).reshape(num_classes, num_chains)
    per_chain = jax.vmap(lambda ks, y: jax.vmap(lambda k: chain(k, y))(ks))(
        keys, jnp.arange(num_classes))
    return per_chain.mean(1)


def concept_marginals(model: ConceptEnergyModel, params: Any, *,
                      given: Optional[Mapping[int, int]] = None, max_enumerated: int = 16,
                      rng_key: Optional[jax.Array] = None, num_sweeps: int = 200,
                      num_chains: int = 16) -> jax.Array:
    """``[K, C]``: ``p(c_k = 1 | y, given)`` under ``p(c | y) ∝ exp(-E(c, y))``.

    Args:
      given: concepts to condition on, ``{index: value}`` (their own column is then 0 or 1).
      max_enumerated: enumerate the ``2^C`` vectors up to this many concepts, else sample.
      rng_key, num_sweeps, num_chains: the Gibbs estimate's key (required then), sweeps per
        chain (the first half discarded) and chains per class.

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> exact = concept_marginals(model, model.params)
      >>> exact.shape, bool(((exact > 0) & (exact < 1)).all())
      ((3, 3), True)
      >>> concept_marginals(model, model.params, given={1: 0})[:, 1].tolist()
      [0.0, 0.0, 0.0]
    """
    mask, values = _given_arrays(given, model.num_concepts)
    if model.num_concepts <= check_int("max_enumerated", max_enumerated, 1, 24):
        return _enumerated(model, params, mask, values)
    if rng_key is None:
        raise ValueError(f"concept_marginals: {model.num_concepts} concepts exceed "
                         f"max_enumerated={max_enumerated}, so they are sampled: pass rng_key")
    return _gibbs(model, params, mask, values, rng_key, check_int("num_sweeps", num_sweeps, 2),
                  check_int("num_chains", num_chains))
