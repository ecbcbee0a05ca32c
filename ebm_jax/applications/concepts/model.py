"""ECBM's three energies over a shared backbone (Xu et al., "Energy-based concept bottleneck
models", ICLR 2024).

For an example ``x`` with backbone features ``h = backbone(x)`` (``[F]``), a class ``y`` of
``K`` and a binary concept vector ``c`` of ``C``:

- the **class energy** ``E(x, y)``: ``w · relu(u + u ⊙ v_y) + b`` with ``u = W h + b'`` and
  ``v_y`` the class's (L2-normalised) embedding;
- the **concept energy** ``E(x, c) = Σ_k E_k(x, c_k)``, each concept with an embedding for
  ``c_k = 1`` and one for ``c_k = 0`` and its own output layer;
- the **global energy** ``E(c, y)``: the concept vector's embeddings (one per concept and
  value, concatenated and projected) gated by the same class embeddings ``v_y``.

Every energy is also defined at *relaxed* arguments, which gradient inference optimises: a
probability vector over classes (the embedding is the weighted mean of the class
embeddings) and a probability per concept (the mix ``p e_{k,1} + (1 - p) e_{k,0}``). The
reference code's global energy at inference picks each concept's embedding by a hard
threshold at 0.5, through which no gradient flows to the concepts; here the mix is soft
throughout, so the global energy moves the concepts too (which interventions rely on).
Dropout of the reference network is left out: the energies are deterministic functions.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int


class ConceptEnergyModel(NamedTuple):
    """ECBM's energies as pure per-example functions of ``params = {"backbone", "head"}``.

    Attributes:
      class_energies: ``(params, x) -> [K]``, ``E(x, y)`` for every class.
      concept_energies: ``(params, x) -> [C, 2]``, ``E_k(x, c_k)`` for ``c_k = 0`` and ``1``.
      global_energies: ``(params, c) -> [K]``, ``E(c, y)`` for every class at a concept vector
        ``c`` (``[C]``, 0/1 or probabilities).
      relaxed_energies: ``(params, x, class_probs [K], concept_probs [C]) -> [3]``: the class,
        concept (summed over concepts) and global energies at relaxed arguments.
      params: the initial parameters.
      num_classes, num_concepts: ``K`` and ``C``.
    """

    class_energies: Callable[[Any, jax.Array], jax.Array]
    concept_energies: Callable[[Any, jax.Array], jax.Array]
    global_energies: Callable[[Any, jax.Array], jax.Array]
    relaxed_energies: Callable[..., jax.Array]
    params: Any
    num_classes: int
    num_concepts: int


def _dense(rng_key, n_in: int, n_out: int) -> dict:
    return {"w": jax.random.normal(rng_key, (n_in, n_out)) / jnp.sqrt(n_in),
            "b": jnp.zeros(n_out)}


def init_head(rng_key: jax.Array, feature_dim: int, num_classes: int, num_concepts: int,
              hidden: int = 64) -> dict:
    """The energy head's parameters (a dict of arrays) for ``feature_dim`` backbone features.

    Example::

      >>> head = init_head(jax.random.key(0), 16, num_classes=10, num_concepts=7, hidden=32)
      >>> head["concept_embedding"].shape, head["class_embedding"].shape
      ((7, 2, 32), (10, 32))
    """
    feature_dim = check_int("feature_dim", feature_dim)
    num_classes = check_int("num_classes", num_classes, 2)
    num_concepts = check_int("num_concepts", num_concepts)
    hidden = check_int("hidden", hidden)
    keys = jax.random.split(rng_key, 8)
    return {
        "class_in": _dense(keys[0], feature_dim, hidden),
        "class_out": _dense(keys[1], hidden, 1),
        "class_embedding": jax.random.normal(keys[2], (num_classes, hidden)),
        "concept_in": _dense(keys[3], feature_dim, hidden),
        "concept_out": {"w": jax.random.normal(keys[4], (num_concepts, hidden)) / jnp.sqrt(hidden),
                        "b": jnp.zeros(num_concepts)},
        "concept_embedding": jax.random.normal(keys[5], (num_concepts, 2, hidden)),
        "global_embedding": jax.random.normal(keys[6], (num_concepts, 2, hidden)),
        "global_in": _dense(keys[7], num_concepts * hidden, hidden),
        "global_out": _dense(jax.random.fold_in(keys[7], 1), hidden, 1),
    }


def _normalise(v: jax.Array) -> jax.Array:
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)


def _mix(embedding: jax.Array, probs: jax.Array) -> jax.Array:
    """``[C, H]``: each concept's embedding at probability ``probs`` (``[C]``) of being 1."""
    return (1.0 - probs)[:, None] * embedding[:, 0] + probs[:, None] * embedding[:, 1]


def _gated_energy(u: jax.Array, v: jax.Array, out: dict) -> jax.Array:
    """``w · relu(u + u ⊙ v) + b``: the reference's gating of an input by an embedding."""
    return jax.nn.relu(u + u * v) @ out["w"][:, 0] + out["b"][0]


def class_energy(head: dict, features: jax.Array, class_probs: jax.Array) -> jax.Array:
    """``E(x, y)`` at a class distribution ``class_probs`` (``[K]``; one-hot for a class)."""
    u = features @ head["class_in"]["w"] + head["class_in"]["b"]
    return _gated_energy(u, _normalise(class_probs @ head["class_embedding"]), head["class_out"])


def concept_energy_terms(head: dict, features: jax.Array, concept_probs: jax.Array) -> jax.Array:
    """``[C]``: ``E_k(x, c_k)`` at ``concept_probs`` (``[C]``, each the probability of 1)."""
    u = features @ head["concept_in"]["w"] + head["concept_in"]["b"]
    m = _normalise(_mix(head["concept_embedding"], concept_probs))
    z = jax.nn.relu(u[None] + u[None] * m)
    return jnp.sum(z * head["concept_out"]["w"], axis=-1) + head["concept_out"]["b"]


def global_energy(head: dict, concept_probs: jax.Array, class_probs: jax.Array) -> jax.Array:
    """``E(c, y)`` at relaxed concepts (``[C]``) and a class distribution (``[K]``)."""
    g = _mix(head["global_embedding"], concept_probs).reshape(-1)
    g = g @ head["global_in"]["w"] + head["global_in"]["b"]
    return _gated_energy(g, _normalise(class_probs @ head["class_embedding"]), head["global_out"])


def concept_energy_model(backbone_fn: Callable[[Any, jax.Array], jax.Array], backbone_params: Any,
                         rng_key: jax.Array, *, num_classes: int, num_concepts: int,
                         feature_dim: int, hidden: int = 64) -> ConceptEnergyModel:
    """ECBM's energies on any backbone ``backbone_fn(params, x) -> [feature_dim]``.

    Args:
      backbone_fn: a pure per-example feature extractor, e.g. ``pure(MLP(...)).apply``.
      backbone_params: its parameters.
      rng_key: initialises the energy head.
      num_classes, num_concepts: ``K`` and ``C``.
      feature_dim: the backbone's output width.
      hidden: the head's embedding width.

    Example::

      >>> from flax import nnx
      >>> from ebm_jax.nets import MLP, pure
      >>> backbone = pure(MLP(64, (32,), 16, rngs=nnx.Rngs(0)))
      >>> model = concept_energy_model(backbone.apply, backbone.params, jax.random.key(1),
      ...                              num_classes=10, num_concepts=7, feature_dim=16)
      >>> x = jnp.zeros(64)
      >>> model.class_energies(model.params, x).shape, model.concept_energies(model.params, x).shape
      ((10,), (7, 2))
      >>> model.global_energies(model.params, jnp.ones(7)).shape
      (10,)
    """
    head = init_head(rng_key, feature_dim, num_classes, num_concepts, hidden)
    eye = jnp.eye(num_classes)

    def features(params, x):
        h = backbone_fn(params["backbone"], x)
        if h.shape != (feature_dim,):
            raise ValueError(f"the backbone returned features of shape {h.shape}: expected "
                             f"({feature_dim},), feature_dim")
        return h

    def class_energies(params, x):
        h = features(params, x)
        return jax.vmap(lambda p: class_energy(params["head"], h, p))(eye)

    def concept_energies(params, x):
        h = features(params, x)
        zeros = jnp.zeros(num_concepts)
        return jnp.stack([concept_energy_terms(params["head"], h, zeros),
                          concept_energy_terms(params["head"], h, zeros + 1.0)], axis=-1)

    def global_energies(params, c):
        c = jnp.asarray(c, jnp.float32)
        return jax.vmap(lambda p: global_energy(params["head"], c, p))(eye)

    def relaxed_energies(params, x, class_probs, concept_probs):
        h = features(params, x)
        return jnp.stack([class_energy(params["head"], h, class_probs),
                          jnp.sum(concept_energy_terms(params["head"], h, concept_probs)),
                          global_energy(params["head"], concept_probs, class_probs)])

    return ConceptEnergyModel(class_energies, concept_energies, global_energies,
                              relaxed_energies, {"backbone": backbone_params, "head": head},
                              num_classes, num_concepts)


def joint_energy(model: ConceptEnergyModel, params: Any, x: jax.Array, y: jax.Array,
                 c: jax.Array, weights: Optional[tuple] = (3.0, 1.0, 1.0)) -> jax.Array:
    """The joint energy ``λ_y E(x, y) + λ_c E(x, c) + λ_g E(c, y)`` of one example at a class
    ``y`` (int) and a concept vector ``c`` (``[C]`` of 0/1).

    Example::

      >>> from ebm_jax.applications.concepts.model import _tiny_model
      >>> model = _tiny_model()
      >>> float(joint_energy(model, model.params, jnp.zeros(4), 1, jnp.array([1, 0, 1]))) != 0
      True
    """
    probs = jax.nn.one_hot(y, model.num_classes)
    terms = model.relaxed_energies(params, x, probs, jnp.asarray(c, jnp.float32))
    return jnp.dot(jnp.asarray(weights, jnp.float32), terms)


def _tiny_model() -> ConceptEnergyModel:
    """A 4-feature, 3-class, 3-concept model on a linear backbone (docstring examples)."""
    w = jax.random.normal(jax.random.key(0), (4, 8))
    return concept_energy_model(lambda p, x: jnp.tanh(x @ p + 1.0), w, jax.random.key(1),
                                num_classes=3, num_concepts=3, feature_dim=8, hidden=8)
