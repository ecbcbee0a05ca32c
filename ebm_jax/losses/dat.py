"""Dual adversarial training (DAT, Yin et al. 2025): a classifier learns its energy
``E(x) = -logsumexp f(x)`` from PGD-contrastive samples instead of SGLD, beside ordinary
adversarial training.

**The energy term** (:func:`dat_energy`). Contrastive samples start from an
out-of-distribution pool (a :class:`~ebm_jax.samplers.ChainStart`, e.g.
:func:`~ebm_jax.samplers.pool_start` over :func:`~ebm_jax.data.ood_pool`) and climb the
model's own logit of the batch's labels, ``f(x)[y]``, by ``T`` PGD steps: L2-normalised
steps of ``step_size``, no radius, clamped to the data range (the descent kernel,
:func:`~ebm_jax.samplers.descent_kernel`). Reading ``s(x) = logsumexp f(x)`` as the logit of
"real", the loss is the binary cross-entropy ``softplus(-s(x_real)) + softplus(s(x_contr))``,
the samples detached.

**The curriculum** (in the loss state, :class:`DATState`, so that it checkpoints and resumes
exactly): ``T`` starts at ``initial_steps`` (0: the pool itself is the first contrast) and
grows by one, up to ``max_steps``, whenever the AUROC of ``s`` for real against contrastive
samples, averaged over a window of recent steps covering ``auroc_images`` real images,
reaches ``auroc_target``; the window then starts afresh. An easy contrast is learned first,
and the samples get harder as the energy gets sharper.

**The whole loss** (:func:`dat`) adds an adversarial-training term (any loss transform, e.g.
PGD-AT) on an independently drawn batch: the batch of ``2B`` examples is split in halves (the
batches are random draws, so the halves are independent), the first for the energy term,
the second for the adversarial term. DAT's second stage freezes batch norm's statistics:
with a network built by :func:`~ebm_jax.nets.pure_batch_norm`, train this loss on
``apply`` (the running statistics) with :func:`~ebm_jax.nets.with_running_statistics`
``(frozen=True)``; its first stage is the adversarial term alone under
:func:`~ebm_jax.losses.with_batch_statistics`.

Example::

    >>> from ebm_jax.samplers import pool_start
    >>> logits_fn = lambda w, x: w @ x                      # a linear classifier, 3 classes
    >>> pool = jax.random.uniform(jax.random.key(0), (50, 2), minval=-1.0, maxval=1.0)
    >>> loss = dat_energy(logits_fn, pool_start(pool), initial_steps=2, auroc_images=16)
    >>> w = jnp.ones((3, 2))
    >>> batch = {"x": jnp.full((8, 2), 0.5), "y": jnp.zeros(8, jnp.int32)}
    >>> state = loss.init(jax.random.key(1), w, batch)
    >>> value, (state, info) = loss.loss(w, state, batch, jax.random.key(2))
    >>> int(state.num_steps), state.aurocs.shape             # a window of 16 / 8 steps
    (2, (2,))
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_bounds, check_int, check_positive_finite, check_probability
from ebm_jax.losses.base import LossTransform, check_labels
from ebm_jax.samplers.chain_starts import ChainStart
from ebm_jax.samplers.descent import DescentState, descent_kernel

# info keys
CURRICULUM_STEPS = "curriculum_T"
AUROC = "auroc_real_vs_contrastive"


class DATState(NamedTuple):
    """The energy term's state.

    Attributes:
      num_steps: ``int32``, ``T``: the contrastive chains' ascent steps.
      aurocs: ``float32 [W]``, the real-vs-contrastive AUROCs of the steps since ``T`` last
        changed (a ring; ``W = ceil(auroc_images / B)``).
      filled: ``int32``, how many of them were written.
      start: the chain start's state.
    """

    num_steps: jax.Array
    aurocs: jax.Array
    filled: jax.Array
    start: Any


def pgd_contrastive_samples(logits_fn: Callable, params: Any, x0: jax.Array,
                            labels: jax.Array, num_steps: Any, *, step_size: float = 0.1,
                            clip_range: Optional[tuple[float, float]] = (-1.0, 1.0)
                            ) -> jax.Array:
    """``[B, ...]``: ``num_steps`` (may be traced) PGD ascent steps on ``f(x)[y]`` from
    ``x0 [B, ...]`` toward ``labels [B]``: ``x <- clip(x + step_size ∇f_y / |∇f_y|₂)``.

    Example: on a linear logit each step moves ``step_size`` along the class's weights::

      >>> logits_fn = lambda w, x: w @ x
      >>> w = jnp.array([[3.0, 4.0], [0.0, 1.0]])
      >>> x = pgd_contrastive_samples(logits_fn, w, jnp.zeros((1, 2)), jnp.array([0]), 2,
      ...                             step_size=0.5)
      >>> np.round(np.asarray(x, np.float64), 4).tolist()     # 2 x 0.5 along (3, 4) / 5
      [[0.6, 0.8]]
    """
    def logit(p, x, y):
        return logits_fn(p, x)[y]

    kernel = descent_kernel(logit, normalize="l2", ascent=True, clip_range=clip_range)

    def one(x, y):
        def body(_, state):
            return kernel(None, state, params, step_size, None, None, y)[0]
        return jax.lax.fori_loop(0, num_steps, body, DescentState(x, x)).position

    return jax.vmap(one)(x0, labels)


def pairwise_auroc(scores_pos: jax.Array, scores_neg: jax.Array) -> jax.Array:
    """The AUROC of ``scores_pos [N]`` against ``scores_neg [M]``: the share of pairs ranked
    right, ties counting half (jittable; for a batch's few hundred pairs).

    Example::

      >>> float(pairwise_auroc(jnp.array([2.0, 3.0]), jnp.array([1.0, 2.0])))
      0.875
    """
    diff = scores_pos[:, None] - scores_neg[None, :]
    return jnp.mean((diff > 0).astype(jnp.float32) + 0.5 * (diff == 0).astype(jnp.float32))


def dat_energy(logits_fn: Callable, start: ChainStart, *, step_size: float = 0.1,
               clip_range: Optional[tuple[float, float]] = (-1.0, 1.0),
               initial_steps: int = 0, max_steps: int = 50, auroc_target: float = 0.8,
               auroc_images: int = 1000) -> LossTransform:
    """DAT's energy term with its curriculum (see the module docstring).

    Args:
      logits_fn: per-example ``logits_fn(params, x) -> [K]``.
      start: where the contrastive chains start (:func:`~ebm_jax.samplers.pool_start`).
      step_size: the L2 length of every ascent step (DAT: 0.1 for images in [-1, 1]).
      clip_range: the data range the samples are clamped to (None: no clamp).
      initial_steps: ``T`` at the start.
      max_steps: the largest ``T``.
      auroc_target: the window's mean AUROC at which ``T`` grows.
      auroc_images: real images the window covers (its length is this over the batch size).

    Batch: ``{"x": [B, ...], "y": [B]}``. State: :class:`DATState`. Info: ``energy_data``
    and ``energy_sample`` (mean ``E`` of real and contrastive samples), :data:`AUROC`,
    :data:`CURRICULUM_STEPS` (``T`` used this step).
    """
    if not callable(logits_fn):
        raise TypeError(f"logits_fn={logits_fn!r}: expected logits_fn(params, x) -> [K]")
    if not isinstance(start, ChainStart):
        raise TypeError(f"start={start!r}: expected a ChainStart (e.g. pool_start(pool))")
    check_positive_finite("step_size", step_size)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    max_steps = check_int("max_steps", max_steps, 0)
    initial_steps = check_int("initial_steps", initial_steps, 0)
    if initial_steps > max_steps:
        raise ValueError(f"initial_steps={initial_steps} > max_steps={max_steps}: expected "
                         "initial_steps <= max_steps")
    check_probability("auroc_target", auroc_target)
    auroc_images = check_int("auroc_images", auroc_images)

    def energies(params, x):
        return -jax.vmap(lambda v: jax.nn.logsumexp(logits_fn(params, v)))(x)

    def init(rng_key, params, example_batch):
        x = jnp.asarray(example_batch["x"])
        check_labels(example_batch, "dat_energy", x.shape[0], None)
        window = max(1, math.ceil(auroc_images / x.shape[0]))
        return DATState(jnp.asarray(initial_steps, jnp.int32), jnp.zeros((window,), jnp.float32),
                        jnp.zeros((), jnp.int32), start.init(rng_key, x.shape[1:]))

    def loss(params, state, batch, rng_key):
        x = jnp.asarray(batch["x"])
        y = check_labels(batch, "dat_energy", x.shape[0], None)
        x0, labels, handle = start.draw(rng_key, state.start, params, x, y)
        samples = jax.lax.stop_gradient(pgd_contrastive_samples(
            logits_fn, params, x0, labels, state.num_steps, step_size=step_size,
            clip_range=clip_range))
        e_real, e_fake = energies(params, x), energies(params, samples)
        # s = -E is the logit of "real": BCE(s_real, 1) + BCE(s_fake, 0)
        value = jnp.mean(jax.nn.softplus(e_real)) + jnp.mean(jax.nn.softplus(-e_fake))
        auroc = pairwise_auroc(-jax.lax.stop_gradient(e_real), -jax.lax.stop_gradient(e_fake))
        window = state.aurocs.shape[0]
        aurocs = state.aurocs.at[state.filled % window].set(auroc)
        filled = state.filled + 1
        grow = ((filled >= window) & (jnp.mean(aurocs) >= auroc_target)
                & (state.num_steps < max_steps))
        new_state = DATState(state.num_steps + grow.astype(jnp.int32), aurocs,
                             jnp.where(grow, 0, filled),
                             start.update(state.start, samples, handle))
        info = {"energy_data": jnp.mean(e_real), "energy_sample": jnp.mean(e_fake),
                AUROC: auroc, CURRICULUM_STEPS: state.num_steps.astype(jnp.float32)}
        return value, (new_state, info)

    return LossTransform(init, loss)


def dat(energy_term: LossTransform, adversarial_term: LossTransform, *,
        energy_weight: float = 1.0) -> LossTransform:
    """DAT's loss: ``energy_weight * energy_term`` on the first half of the batch plus
    ``adversarial_term`` on the second half (two independently drawn batches of ``B``).

    Info: the terms' own keys (an adversarial term's key that the energy term also reports
    prefixed ``"adversarial/"``) and ``"energy/loss"``, ``"adversarial/loss"``. State:
    ``{"energy": ..., "adversarial": ...}``.

    Raises:
      ValueError: (at ``init``/``loss``) a batch of an odd size.
    """
    for name, term in (("energy_term", energy_term), ("adversarial_term", adversarial_term)):
        if not isinstance(term, LossTransform):
            raise TypeError(f"{name}={term!r}: expected a LossTransform")
    check_positive_finite("energy_weight", energy_weight)

    def halves(batch):
        size = jnp.shape(batch["x"])[0]
        if size % 2:
            raise ValueError(f"dat: batch['x'] has {size} examples: expected an even number "
                             "(half for the energy term, half for the adversarial term)")
        half = size // 2
        first = {k: v[:half] for k, v in batch.items()}
        second = {k: v[half:] for k, v in batch.items()}
        return first, second

    def init(rng_key, params, example_batch):
        first, second = halves(example_batch)
        k_energy, k_adv = jax.random.split(rng_key)
        return {"energy": energy_term.init(k_energy, params, first),
                "adversarial": adversarial_term.init(k_adv, params, second)}

    def loss(params, state, batch, rng_key):
        first, second = halves(batch)
        k_energy, k_adv = jax.random.split(rng_key)
        e_value, (e_state, e_info) = energy_term.loss(params, state["energy"], first, k_energy)
        a_value, (a_state, a_info) = adversarial_term.loss(params, state["adversarial"], second,
                                                           k_adv)
        # Unprefixed where the terms' keys differ, so that a run's curves (accuracy, energies)
        # go on across a switch from adversarial training alone (two_stage).
        a_info = {(f"adversarial/{k}" if k in e_info else k): v for k, v in a_info.items()}
        info = {**e_info, **a_info, "energy/loss": e_value, "adversarial/loss": a_value}
        return (energy_weight * e_value + a_value,
                ({"energy": e_state, "adversarial": a_state}, info))

    return LossTransform(init, loss)
