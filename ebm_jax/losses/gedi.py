"""GEDI (Sansone & Manhaeve, TMLR 2025): self-supervised clustering and an EBM on one head.

A network ``f(x) -> [K]`` (the cluster logits) is read twice: as a cluster assigner
``q(y|x) = softmax(f(x) / tau)`` and as an EBM ``E(x) = -logsumexp_y f(x)[y]``. GEDI trains
both with a lower bound on the data log-likelihood whose three terms each penalise one
failure mode of cluster-based self-supervised learning:

* **generative** (against representation collapse): maximum likelihood of the EBM,
  estimated by (persistent) contrastive divergence with SGLD chains from a replay buffer,
  i.e. :func:`~ebm_jax.losses.contrastive_divergence` on ``E(x)``;
* **invariance** (against permutations of the cluster assignments): the cluster
  assignments of two random augmentations ``x', x''`` of an example agree, the
  cross-entropy symmetrised over the two views, *without* a stop-gradient on either::

      L_inv = -1/2 mean_i [ q(.|x''_i) . log q(.|x'_i) + q(.|x'_i) . log q(.|x''_i) ]

  (:func:`invariance`);
* **prior** (against cluster collapse): the batch-marginal cluster distribution
  ``qbar = mean_i q(.|x_i)`` is pulled to the uniform prior::

      L_prior = KL(qbar || U) = log K + sum_k qbar_k log qbar_k          (divergence="kl")
      L_prior = KL(U || qbar) = -log K - 1/K sum_k log qbar_k   (divergence="reverse_kl")

  both zero exactly at a uniform marginal (:func:`uniform_prior`).

:func:`gedi` returns ``combine(generative=..., invariance=..., prior=...)``; a weight of 0
switches a term off without changing the state or the info keys, so the ablations (no
generative term, no prior term) run the same program. Batches are unlabelled,
``{"x": [B, ...]}``.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_choice, check_int, check_positive_finite, check_weight
from ebm_jax.energies import LogitsFn, energy_from_logits
from ebm_jax.losses.base import (LossTransform, after_warmup, check_examples, combine,
                                 require_keys)
from ebm_jax.losses.contrastive_divergence import contrastive_divergence
from ebm_jax.samplers.base import Sampler
from ebm_jax.samplers.chain_starts import ChainStart

__all__ = ["DIVERGENCES", "gedi", "invariance", "symmetric_cross_entropy", "uniform_prior",
           "uniform_prior_divergence"]

DIVERGENCES = ("kl", "reverse_kl")


class _Stateless(NamedTuple):
    """The (empty) state of :func:`invariance` and :func:`uniform_prior`."""


def _batched_logits(logits_fn, params, x, who):
    logits = jax.vmap(logits_fn, in_axes=(None, 0))(params, x)
    if logits.ndim != 2:
        raise ValueError(f"{who}: logits_fn returned shape {tuple(logits.shape[1:])} per "
                         "example: expected cluster logits [K]")
    if logits.shape[-1] < 2:
        raise ValueError(f"{who}: logits_fn returned {logits.shape[-1]} logit per example: "
                         "expected K >= 2 clusters")
    return logits


def symmetric_cross_entropy(logits_a: jax.Array, logits_b: jax.Array,
                            temperature: float = 1.0) -> jax.Array:
    """``-1/2 mean_i [q_b . log q_a + q_a . log q_b]`` for logits ``[B, K]`` of two views,
    ``q = softmax(logits / temperature)``; gradients flow through both views (no stop-gradient).

    Its minimum over both views is 0: identical one-hot assignments.

    Example::

      >>> a = jnp.array([[10.0, -10.0], [-10.0, 10.0]])      # confident, two clusters
      >>> same, swapped = symmetric_cross_entropy(a, a), symmetric_cross_entropy(a, -a)
      >>> round(float(same), 4), round(float(swapped), 1)
      (0.0, 20.0)
    """
    log_a = jax.nn.log_softmax(logits_a / temperature, -1)
    log_b = jax.nn.log_softmax(logits_b / temperature, -1)
    cross = jnp.sum(jnp.exp(log_b) * log_a, -1) + jnp.sum(jnp.exp(log_a) * log_b, -1)
    return -0.5 * jnp.mean(cross)


def uniform_prior_divergence(logits: jax.Array, temperature: float = 1.0,
                             divergence: str = "kl") -> jax.Array:
    """The divergence between the batch marginal ``qbar = mean_i softmax(logits_i / tau)``
    (``logits [B, K]``) and the uniform distribution over ``K`` clusters (module docstring);
    0 exactly when ``qbar`` is uniform, ``log K`` (``"kl"``) when the batch sits in one cluster.

    Example::

      >>> balanced = jnp.array([[5.0, -5.0], [-5.0, 5.0]])      # one example per cluster
      >>> collapsed = jnp.array([[5.0, -5.0], [5.0, -5.0]])
      >>> round(float(uniform_prior_divergence(balanced)), 4)
      0.0
      >>> round(float(uniform_prior_divergence(collapsed)), 2)  # near log 2
      0.69
    """
    check_choice("divergence", divergence, list(DIVERGENCES))
    log_q = jax.nn.log_softmax(logits / temperature, -1)
    num = logits.shape[-1]
    log_marginal = jax.nn.logsumexp(log_q, 0) - jnp.log(logits.shape[0])     # [K], stable
    if divergence == "kl":
        return jnp.sum(jnp.exp(log_marginal) * log_marginal) + jnp.log(num)
    return -jnp.mean(log_marginal) - jnp.log(num)


def _check_batch(batch, who):
    require_keys(batch, ("x",), who)
    return check_examples(batch, who, floating=True)


def _check_logits_fn(logits_fn) -> None:
    if not callable(logits_fn):
        raise ValueError(f"logits_fn is a {type(logits_fn).__name__}: expected a "
                         "logits_fn(params, x) -> [K] function")


def _stateless_init(logits_fn, who: str):
    """A term's ``init``: checks the example batch and the logits' shape (no compute)."""
    def init(rng_key, params, example_batch):
        del rng_key
        x = _check_batch(example_batch, who)
        jax.eval_shape(lambda p, v: _batched_logits(logits_fn, p, v, who), params, x)
        return _Stateless()

    return init


def _shares(logits):
    """Info: the largest share of the batch's argmax assignments, and the marginal's entropy."""
    num = logits.shape[-1]
    counts = jnp.sum(jax.nn.one_hot(jnp.argmax(logits, -1), num), 0)
    marginal = jnp.mean(jax.nn.softmax(logits, -1), 0)
    entropy = -jnp.sum(marginal * jnp.log(jnp.maximum(marginal, 1e-30)))
    return jnp.max(counts) / logits.shape[0], entropy


def invariance(logits_fn: LogitsFn, augment, *, temperature: float = 1.0) -> LossTransform:
    """GEDI's invariance term: two augmentations of each example get the same clusters.

    Args:
      logits_fn: per-example cluster logits ``logits_fn(params, x) -> [K]``.
      augment: a per-example ``augment(rng_key, x) -> x'`` (:mod:`ebm_jax.data.augment`);
        each example gets two independent views a step.
      temperature: ``tau`` of ``q(y|x) = softmax(f(x) / tau)`` (> 0).

    Shapes: ``batch["x"] [B, ...]`` floating point (labels, if any, are ignored); the state is
    empty. Value: :func:`symmetric_cross_entropy` of the two views' logits, differentiated
    through both views. Info: ``agreement`` (share of examples whose two views have the same
    argmax cluster), ``entropy`` (mean entropy of ``q(.|x')``).

    Example::

      >>> from ebm_jax.data.augment import gaussian_noise
      >>> term = invariance(lambda w, x: x @ w, gaussian_noise(0.1))   # linear, 2 clusters
      >>> w = jnp.array([[4.0, -4.0], [0.0, 0.0]])
      >>> batch = {"x": jnp.array([[-1.0, 0.0], [1.0, 0.0]])}
      >>> state = term.init(jax.random.key(0), w, batch)
      >>> value, (state, info) = jax.jit(term.loss)(w, state, batch, jax.random.key(1))
      >>> float(info["agreement"]), bool(value < 0.01)
      (1.0, True)
    """
    _check_logits_fn(logits_fn)
    if not callable(augment):
        raise ValueError(f"augment is a {type(augment).__name__}: expected an "
                         "augment(rng_key, x) -> x' function, e.g. gaussian_noise(0.1)")
    check_positive_finite("temperature", temperature)
    who = "gedi invariance"

    init = _stateless_init(logits_fn, who)

    def loss(params, state, batch, rng_key):
        x = _check_batch(batch, who)
        k_a, k_b = jax.random.split(rng_key)
        view_a = jax.vmap(augment)(jax.random.split(k_a, x.shape[0]), x)
        view_b = jax.vmap(augment)(jax.random.split(k_b, x.shape[0]), x)
        logits = _batched_logits(logits_fn, params, jnp.concatenate([view_a, view_b]), who)
        logits_a, logits_b = jnp.split(logits, 2)
        value = symmetric_cross_entropy(logits_a, logits_b, temperature)
        q_a = jax.nn.softmax(logits_a / temperature, -1)
        entropy = -jnp.mean(jnp.sum(q_a * jax.nn.log_softmax(logits_a / temperature, -1), -1))
        agreement = jnp.mean(jnp.argmax(logits_a, -1) == jnp.argmax(logits_b, -1))
        return value, (state, {"agreement": agreement.astype(value.dtype), "entropy": entropy})

    return LossTransform(init, loss)


def uniform_prior(logits_fn: LogitsFn, *, temperature: float = 1.0,
                  divergence: str = "kl") -> LossTransform:
    """GEDI's prior term: the batch-marginal cluster distribution is pulled to uniform.

    Args:
      logits_fn: per-example cluster logits ``logits_fn(params, x) -> [K]``.
      temperature: ``tau`` of ``q(y|x) = softmax(f(x) / tau)`` (> 0).
      divergence: ``"kl"`` for ``KL(qbar || U)`` or ``"reverse_kl"`` for ``KL(U || qbar)``
        (:func:`uniform_prior_divergence`).

    Shapes: ``batch["x"] [B, ...]`` (the un-augmented batch); the state is empty. Info:
    ``largest_cluster_share`` (the largest share of the batch in one argmax cluster) and
    ``marginal_entropy`` (entropy of ``qbar`` at ``tau = 1``, ``log K`` at most).

    Example::

      >>> term = uniform_prior(lambda w, x: x @ w)               # linear, 2 clusters
      >>> batch = {"x": jnp.array([[1.0], [-1.0]])}
      >>> state = term.init(jax.random.key(0), jnp.array([[3.0, -3.0]]), batch)
      >>> value, (_, info) = term.loss(jnp.array([[3.0, -3.0]]), state, batch, jax.random.key(1))
      >>> round(float(value), 4), float(info["largest_cluster_share"])     # balanced
      (0.0, 0.5)
    """
    _check_logits_fn(logits_fn)
    check_positive_finite("temperature", temperature)
    check_choice("divergence", divergence, list(DIVERGENCES))
    who = "gedi prior"

    init = _stateless_init(logits_fn, who)

    def loss(params, state, batch, rng_key):
        del rng_key
        x = _check_batch(batch, who)
        logits = _batched_logits(logits_fn, params, x, who)
        value = uniform_prior_divergence(logits, temperature, divergence)
        share, entropy = _shares(logits)
        return value, (state, {"largest_cluster_share": share, "marginal_entropy": entropy})

    return LossTransform(init, loss)


def gedi(logits_fn: LogitsFn, sampler: Sampler, augment, *, generative_weight: float = 1.0,
         invariance_weight: float = 1.0, prior_weight: float = 1.0, temperature: float = 1.0,
         divergence: str = "kl", chain_start: Optional[ChainStart] = None,
         num_steps: int = 20, energy_l2: float = 0.0, warmup_steps: int = 0,
         **cd_kwargs: Any) -> LossTransform:
    """GEDI's three-term loss on one network's cluster logits (module docstring).

    Args:
      logits_fn: per-example cluster logits ``logits_fn(params, x) -> [K]``; the EBM is
        ``E(x) = -logsumexp(logits_fn(params, x))``
        (:func:`~ebm_jax.energies.energy_from_logits`).
      sampler: a sampler of that energy, e.g.
        ``langevin(energy_from_logits(logits_fn), step_size=1.0, noise_scale=0.01)``.
      augment: a per-example ``augment(rng_key, x) -> x'`` (:mod:`ebm_jax.data.augment`).
      generative_weight / invariance_weight / prior_weight: the terms' weights (>= 0; 0
        switches a term off, same state and info keys, so ablations run the same code).
      temperature: ``tau`` of the cluster assignments ``softmax(f(x) / tau)`` (> 0).
      divergence: the prior term's ``"kl"`` or ``"reverse_kl"`` (:func:`uniform_prior`).
      warmup_steps: train steps on the generative term alone before the invariance and
        prior terms switch on (:func:`~ebm_jax.losses.base.after_warmup`; 0: from the start).
        On the 2-D sets, half the run: without it the circles are cut in half by a line.
      chain_start, num_steps, energy_l2, **cd_kwargs: passed to
        :func:`~ebm_jax.losses.contrastive_divergence` (default chain start: a replay buffer
        of 10,000 with 5% noise restarts drawn in the sampler's box).

    Returns:
      ``combine(generative=(generative_weight, contrastive_divergence(...)),
      invariance=(invariance_weight, invariance(...)), prior=(prior_weight,
      uniform_prior(...)))``: state ``{"generative": CDState, "invariance": (),
      "prior": ()}`` (each of the last two inside a
      :class:`~ebm_jax.losses.base.WarmupState` with ``warmup_steps``); info ``generative/...``, ``invariance/...``, ``prior/...`` with each
      term's unweighted value as ``<name>/loss``.

    Example::

      >>> from ebm_jax.data.augment import gaussian_noise
      >>> from ebm_jax.samplers import langevin, replay_buffer_start
      >>> logits_fn = lambda w, x: jnp.tanh(x @ w)                 # 2 features, 3 clusters
      >>> sampler = langevin(energy_from_logits(logits_fn), step_size=0.1, noise_scale=0.01)
      >>> loss = gedi(logits_fn, sampler, gaussian_noise(0.05), prior_weight=0.0, num_steps=5,
      ...             chain_start=replay_buffer_start(capacity=32))
      >>> w, batch = 0.1 * jnp.ones((2, 3)), {"x": jnp.ones((8, 2))}
      >>> state = loss.init(jax.random.key(0), w, batch)
      >>> (value, (state, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
      ...     w, state, batch, jax.random.key(1))
      >>> sorted(k for k in info if k.endswith("/loss")), grads.shape
      (['generative/loss', 'invariance/loss', 'prior/loss'], (2, 3))
    """
    for name, weight in (("generative_weight", generative_weight),
                         ("invariance_weight", invariance_weight),
                         ("prior_weight", prior_weight)):
        check_weight(name, weight, 0.0)
    check_int("num_steps", num_steps)
    check_int("warmup_steps", warmup_steps, 0)
    if "num_classes" in cd_kwargs:
        raise ValueError("gedi: num_classes is not an option: the EBM is unconditional, "
                         "E(x) = -logsumexp(f(x)), and batches are unlabelled")
    energy_fn = energy_from_logits(logits_fn)
    generative = contrastive_divergence(energy_fn, sampler, chain_start=chain_start,
                                        num_steps=num_steps, energy_l2=energy_l2, **cd_kwargs)
    clustering = {"invariance": (invariance_weight,
                                 invariance(logits_fn, augment, temperature=temperature)),
                  "prior": (prior_weight, uniform_prior(logits_fn, temperature=temperature,
                                                        divergence=divergence))}
    if warmup_steps:
        clustering = {name: (weight, after_warmup(term, warmup_steps))
                      for name, (weight, term) in clustering.items()}
    return combine(generative=(generative_weight, generative), **clustering)
