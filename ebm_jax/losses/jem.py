"""The JEM hybrid loss (Grathwohl et al. 2020): log p(y|x) + log p(x) from one classifier."""
from __future__ import annotations

from typing import Optional

from ebm_jax._checks import check_weight
from ebm_jax.energies import LogitsFn, energy_from_logits
from ebm_jax.losses.base import LossTransform, combine
from ebm_jax.losses.classification import cross_entropy
from ebm_jax.losses.contrastive_divergence import contrastive_divergence
from ebm_jax.samplers.base import Sampler
from ebm_jax.samplers.chain_starts import ChainStart


def jem_hybrid(logits_fn: LogitsFn, sampler: Sampler, *, chain_start: Optional[ChainStart] = None,
               classification_weight: float = 1.0, generative_weight: float = 1.0,
               **cd_options) -> LossTransform:
    """JEM's hybrid objective: cross-entropy on p(y|x) plus contrastive divergence on p(x).

    The classifier ``logits_fn(params, x) -> [K]`` is read as the energy
    ``E(x) = -logsumexp f(x)``; ``sampler`` must sample that energy (build it
    with ``langevin(energy_from_logits(logits_fn), ...)``).

    Args:
      logits_fn: per-example logits.
      sampler: SGLD on ``energy_from_logits(logits_fn)``.
      chain_start: where the SGLD chains start (a :class:`~ebm_jax.samplers.ChainStart`);
        default JEM's replay buffer of 10,000 with 5% noise restarts. A start without its
        own ``init_fn`` fills and restarts in ``U(clip_range)`` of the sampler (in
        ``U(-1, 1)`` without one); ``replay_buffer_start(init_fn=uniform_init(low, high))``
        fixes the law.
      classification_weight: weight of the cross-entropy term.
      generative_weight: weight of the generative (CD) term.
      **cd_options: passed to :func:`~ebm_jax.losses.contrastive_divergence`
        (``num_steps``, ``energy_l2``, ...).

    Info keys are ``classification/...`` and ``generative/...``.

    Example::

      >>> from ebm_jax.samplers import langevin, replay_buffer_start
      >>> logits_fn = lambda params, x: params @ x                  # a linear classifier
      >>> energy = energy_from_logits(logits_fn)
      >>> loss = jem_hybrid(logits_fn, langevin(energy, 1.0, 0.01), num_steps=5,
      ...                   chain_start=replay_buffer_start(capacity=64, reinit_prob=0.05))
      >>> params, batch = jnp.zeros((3, 2)), {"x": jnp.zeros((8, 2)), "y": jnp.arange(8) % 3}
      >>> state = loss.init(jax.random.key(0), params, batch)
      >>> value, (state, info) = loss.loss(params, state, batch, jax.random.key(1))
      >>> "classification/accuracy" in info, "generative/energy_sample" in info
      (True, True)
    """
    check_weight("classification_weight", classification_weight, 0.0)
    check_weight("generative_weight", generative_weight, 0.0)
    return combine(
        classification=(classification_weight, cross_entropy(logits_fn)),
        generative=(generative_weight,
                    contrastive_divergence(energy_from_logits(logits_fn), sampler,
                                           chain_start=chain_start, **cd_options)),
    )
