"""Any loss transform, trained with batch norm's statistics updating.

:func:`with_batch_statistics` wraps a loss written for a per-example function (``logits_fn(
params, x)``, the toolkit's convention) so that a network with
:class:`~ebm_jax.nets.BatchNorm` layers normalises by the *batch's* statistics while it
trains: each call measures them on the clean batch ``batch["x"]`` with the network's batched
pass (``apply_batch``), hands the inner loss the params with those statistics in place of the
running ones (differentiable functions of the weights, as batch norm's are), so every
per-example evaluation inside it (attacks, contrastive chains, the loss's own terms) sees
the same normalisation, and adds :func:`~ebm_jax.nets.statistics_matching`, whose gradient
moves the running statistics toward the batch's through
:func:`~ebm_jax.nets.with_running_statistics` (the running average). Normalising extra
inputs (adversarial examples, chains) by the clean batch's statistics is virtual batch norm
(Salimans et al. 2016) with the clean batch as the reference.

Without the wrapper, the same loss on the same network normalises by the running statistics;
:func:`with_frozen_statistics` also stops the loss's gradient at them, so that an optimizer
built by :func:`~ebm_jax.nets.with_running_statistics` leaves them where they are (the frozen
stage of DAT, Yin et al. 2025) while the rest of the network trains.

Example::

    >>> from flax import nnx
    >>> from ebm_jax.losses import cross_entropy
    >>> from ebm_jax.nets import MLP, pure_batch_norm
    >>> model = pure_batch_norm(MLP(2, (8,), 3, batch_norm=True, rngs=nnx.Rngs(0)))
    >>> loss = with_batch_statistics(cross_entropy(model.apply), model.apply_batch)
    >>> batch = {"x": jnp.ones((4, 2)), "y": jnp.zeros(4, jnp.int32)}
    >>> state = loss.init(jax.random.key(0), model.params, batch)
    >>> value, (state, info) = loss.loss(model.params, state, batch, jax.random.key(1))
    >>> sorted(k for k in info if k.startswith("batch_"))
    ['batch_statistics_matching']
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from ebm_jax.losses.base import LossTransform
from ebm_jax.nets.batch_norm import statistics_mask, statistics_matching

MATCHING = "batch_statistics_matching"   # the info key of the matching term


def with_batch_statistics(loss: LossTransform,
                          apply_batch: Callable[[Any, Any], tuple]) -> LossTransform:
    """``loss`` evaluated at the params with the batch's statistics, plus the statistics'
    matching term (see the module docstring).

    Args:
      loss: any loss transform over the network's params.
      apply_batch: ``apply_batch(params, xs) -> (out, batch_params)``
        (:class:`~ebm_jax.nets.BatchNormModel`'s): ``batch_params`` is ``params`` with each
        running statistic replaced by the batch's.

    Returns:
      A loss transform with the inner loss's state and info, and the info key
      :data:`MATCHING` (the matching term, whose value does not depend on the weights).
    """
    if not isinstance(loss, LossTransform):
        raise TypeError(f"loss={loss!r}: expected a LossTransform")
    if not callable(apply_batch):
        raise TypeError(f"apply_batch={apply_batch!r}: expected a callable apply_batch(params, "
                        "xs) -> (out, batch_params), a BatchNormModel's")

    def init(rng_key, params, example_batch):
        return loss.init(rng_key, params, example_batch)

    def loss_fn(params, state, batch, rng_key):
        _, batch_params = apply_batch(params, batch["x"])
        value, (state, info) = loss.loss(batch_params, state, batch, rng_key)
        matching = statistics_matching(params, batch_params)
        return value + matching, (state, {**info, MATCHING: matching})

    return LossTransform(init, loss_fn)


def freeze_statistics(params: Any) -> Any:
    """``params`` with ``stop_gradient`` at the running statistics (values unchanged)."""
    return jax.tree.map(lambda leaf, is_stat: jax.lax.stop_gradient(leaf) if is_stat else leaf,
                        params, statistics_mask(params))


def with_frozen_statistics(loss: LossTransform) -> LossTransform:
    """``loss`` whose gradient at the running statistics of batch norm is zero: evaluated at
    :func:`freeze_statistics` ``(params)``. With
    :func:`~ebm_jax.nets.with_running_statistics`, whose statistics take plain SGD, they then
    stay frozen, whatever the rest of the params do.

    Example::

      >>> from flax import nnx
      >>> from ebm_jax.losses import cross_entropy
      >>> from ebm_jax.nets import MLP, pure_batch_norm
      >>> model = pure_batch_norm(MLP(2, (8,), 3, batch_norm=True, rngs=nnx.Rngs(0)))
      >>> loss = with_frozen_statistics(cross_entropy(model.apply))
      >>> batch = {"x": jnp.ones((4, 2)), "y": jnp.zeros(4, jnp.int32)}
      >>> state = loss.init(jax.random.key(0), model.params, batch)
      >>> grads = jax.grad(lambda p: loss.loss(p, state, batch, jax.random.key(1))[0])(
      ...     model.params)
      >>> float(jnp.abs(grads["norms"][0]["running_mean"]).max())
      0.0
    """
    if not isinstance(loss, LossTransform):
        raise TypeError(f"loss={loss!r}: expected a LossTransform")

    def loss_fn(params, state, batch, rng_key):
        return loss.loss(freeze_statistics(params), state, batch, rng_key)

    return LossTransform(loss.init, loss_fn)
