"""ECBM's joint training loss: three energies, each trained as softmax cross-entropy over
negative energies (Xu et al., "Energy-based concept bottleneck models", ICLR 2024).

With ``E(x, y)`` (``[K]`` per example), ``E_k(x, c_k)`` (``[C, 2]``) and ``E(c, y)``
(``[K]`` at a concept vector)::

    L = λ_y mean_b CE(-E(x, ·), y) + λ_c Σ_k mean_b CE(-E_k(x, ·), c_k)
        + λ_g mean_b CE(-E(c̃, ·), y)

where ``c̃`` is the training concept vector with a share ``perturb_examples`` of the batch's
vectors perturbed (``ceil(perturb_concepts C)`` of their concepts flipped), which the
reference code does so that the global energy does not trust one exact code. Defaults are
the reference configuration (class 3, concept 1, global 1; 20% of the examples, 20% of
the concepts). Batches are ``{"x": [B, ...], "y": [B], "c": [B, C]}``.

The paper's global term normalises ``E(c, y)`` over classes only, so ``p(c | y) ∝
exp(-E(c, y))`` is left untrained along ``c``: minimising the joint energy over concepts
then follows an arbitrary slope (measured on the seven-segment digits: concept accuracy
0.74 at global weight 1 against 0.97 at 0.01, the reference's inference weight), and the
Boltzmann conditionals ``p(c_k | y)`` mean nothing. ``pseudo_likelihood_weight`` adds
``λ_pl mean_b Σ_k -log p(c_k | c_{-k}, y)`` under the global energy (each concept against
its flip, at the true class and the clean training concepts): a consistent estimate of
``p(c | y)`` at ``2C`` energy evaluations per example, for any number of concepts.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_probability, check_weight
from ebm_jax.losses.base import LossTransform, check_examples, check_labels, require_keys


def energy_cross_entropy(energies: jax.Array, labels: jax.Array) -> jax.Array:
    """``E[label] + logsumexp(-E)`` over the last axis: ``-log softmax(-E)[label]``.

    Example::

      >>> round(float(energy_cross_entropy(jnp.zeros(4), jnp.array(2))), 4)   # log 4
      1.3863
    """
    picked = jnp.take_along_axis(energies, labels[..., None], axis=-1)[..., 0]
    return picked + jax.nn.logsumexp(-energies, axis=-1)


def check_concept_batch(batch, who: str) -> tuple:
    """``(x [B, ...], y [B], c [B, C])`` of a concept batch ``{"x", "y", "c"}``, checked at
    trace time (shapes and dtypes; label values where concrete)."""
    require_keys(batch, ("x", "y", "c"), who)
    x = check_examples(batch, who, floating=True)
    y = check_labels(batch, who, x.shape[0], None)
    c = jnp.asarray(batch["c"])
    if c.ndim != 2 or c.shape[0] != x.shape[0] or not jnp.issubdtype(c.dtype, jnp.integer):
        raise ValueError(f"{who}: batch['c'] has shape {tuple(c.shape)} and dtype {c.dtype}: "
                         f"expected ({x.shape[0]}, C) integer concepts in {{0, 1}}")
    return x, y, c


def perturb_concept_vectors(rng_key: jax.Array, concepts: jax.Array, *,
                            perturb_examples: float = 0.2,
                            perturb_concepts: float = 0.2) -> jax.Array:
    """``[B, C]``: ``concepts`` with each example chosen with probability ``perturb_examples``
    and ``ceil(perturb_concepts C)`` of a chosen example's concepts (a random set) flipped.

    Example::

      >>> c = jnp.zeros((1000, 10), jnp.int32)
      >>> flipped = perturb_concept_vectors(jax.random.key(0), c).sum(1)
      >>> sorted(set(flipped.tolist())), 0.15 < float((flipped > 0).mean()) < 0.25
      ([0, 2], True)
    """
    batch, num_concepts = concepts.shape
    count = math.ceil(perturb_concepts * num_concepts)
    pick_key, which_key = jax.random.split(rng_key)
    chosen = jax.random.bernoulli(pick_key, perturb_examples, (batch,))
    # A random set of `count` concepts per example: the ones with the smallest random scores.
    scores = jax.random.uniform(which_key, (batch, num_concepts))
    ranks = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    flip = chosen[:, None] & (ranks < count)
    return jnp.where(flip, 1 - concepts, concepts)


def concept_pseudo_likelihood(global_energies_fn: Callable[[Any, jax.Array], jax.Array],
                              params: Any, concepts: jax.Array, y: jax.Array) -> jax.Array:
    """``[C]``: ``-log p(c_k | c_{-k}, y)`` under ``p(c | y) ∝ exp(-E(c, y))`` for one example:
    each concept's energy at its value against the energy with it flipped.

    Example::

      >>> fn = lambda p, c: jnp.stack([jnp.sum(c), -jnp.sum(c)])   # class 0 likes zeros
      >>> out = concept_pseudo_likelihood(fn, None, jnp.zeros(2, jnp.int32), jnp.array(0))
      >>> [round(float(v), 3) for v in out]              # log(1 + e^-1) each
      [0.313, 0.313]
    """
    num_concepts = concepts.shape[0]
    both = jnp.stack([jnp.tile(concepts, (num_concepts, 1)),
                      jnp.tile(concepts, (num_concepts, 1))])          # [2, C, C]
    eye = jnp.eye(num_concepts, dtype=bool)
    both = both.at[0].set(jnp.where(eye, 0, both[0])).at[1].set(jnp.where(eye, 1, both[1]))
    energies = jax.vmap(jax.vmap(lambda c: global_energies_fn(params, c)[y]))(
        both.astype(jnp.float32))                                       # [2, C]
    return energy_cross_entropy(energies.T, concepts)


def ecbm_loss(class_energies_fn: Callable[[Any, jax.Array], jax.Array],
              concept_energies_fn: Callable[[Any, jax.Array], jax.Array],
              global_energies_fn: Callable[[Any, jax.Array], jax.Array], *,
              class_weight: float = 3.0, concept_weight: float = 1.0, global_weight: float = 1.0,
              perturb_examples: float = 0.2, perturb_concepts: float = 0.2,
              pseudo_likelihood_weight: float = 0.0) -> LossTransform:
    """ECBM's joint loss as a loss transform (state ``()``).

    Args:
      class_energies_fn: ``(params, x) -> [K]``, ``E(x, y)`` for every class.
      concept_energies_fn: ``(params, x) -> [C, 2]``, ``E_k(x, c_k)`` for ``c_k = 0, 1``.
      global_energies_fn: ``(params, c [C] float) -> [K]``, ``E(c, y)`` for every class.
      class_weight, concept_weight, global_weight: ``λ_y, λ_c, λ_g`` (>= 0).
      perturb_examples, perturb_concepts: the global energy's concept perturbation.
      pseudo_likelihood_weight: ``λ_pl`` (>= 0) of the global energy's pseudo-likelihood
        over concepts given the class (0 in the paper).

    Info: ``class_loss``, ``concept_loss`` (summed over concepts), ``global_loss``,
    ``pseudo_likelihood`` (summed over concepts),
    ``class_accuracy`` and ``concept_accuracy`` (argmin of each energy).

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> loss = ecbm_loss(model.class_energies, model.concept_energies, model.global_energies)
      >>> batch = {"x": jnp.ones((8, 4)), "y": jnp.zeros(8, jnp.int32),
      ...          "c": jnp.ones((8, 3), jnp.int32)}
      >>> value, (_, info) = loss.loss(model.params, (), batch, jax.random.key(0))
      >>> sorted(info)[:3]
      ['class_accuracy', 'class_loss', 'concept_accuracy']
    """
    for name, weight in (("class_weight", class_weight), ("concept_weight", concept_weight),
                         ("global_weight", global_weight),
                         ("pseudo_likelihood_weight", pseudo_likelihood_weight)):
        check_weight(name, weight, 0.0)
    check_probability("perturb_examples", perturb_examples)
    check_probability("perturb_concepts", perturb_concepts)

    def check(batch):
        return check_concept_batch(batch, "ecbm_loss")

    def init(rng_key, params, example_batch):
        check(example_batch)
        return ()

    def loss(params, state, batch, rng_key):
        x, y, c = check(batch)
        e_class = jax.vmap(class_energies_fn, in_axes=(None, 0))(params, x)
        e_concept = jax.vmap(concept_energies_fn, in_axes=(None, 0))(params, x)
        perturbed = perturb_concept_vectors(rng_key, c, perturb_examples=perturb_examples,
                                            perturb_concepts=perturb_concepts)
        e_global = jax.vmap(global_energies_fn, in_axes=(None, 0))(
            params, perturbed.astype(jnp.float32))
        class_loss = jnp.mean(energy_cross_entropy(e_class, y))
        concept_loss = jnp.sum(jnp.mean(energy_cross_entropy(e_concept, c), axis=0))
        global_loss = jnp.mean(energy_cross_entropy(e_global, y))
        pseudo = jnp.zeros(())
        if pseudo_likelihood_weight:
            pseudo = jnp.sum(jnp.mean(jax.vmap(
                lambda c_b, y_b: concept_pseudo_likelihood(global_energies_fn, params, c_b, y_b)
            )(c, y), axis=0))
        total = (class_weight * class_loss + concept_weight * concept_loss
                 + global_weight * global_loss + pseudo_likelihood_weight * pseudo)
        info = {"class_loss": class_loss, "concept_loss": concept_loss,
                "global_loss": global_loss, "pseudo_likelihood": pseudo,
                "class_accuracy": jnp.mean(jnp.argmin(e_class, -1) == y),
                "concept_accuracy": jnp.mean(jnp.argmin(e_concept, -1) == c)}
        return total, (state, info)

    return LossTransform(init, loss)
