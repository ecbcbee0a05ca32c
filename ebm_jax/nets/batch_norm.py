"""Batch normalisation whose statistics are explicit parameters (for DAT's two stages: a robust
classifier trained with the statistics updating, then the statistics frozen).

The running mean and variance of every :class:`BatchNorm` layer are leaves of the params
pytree (named ``running_mean`` and ``running_var``): they checkpoint, shard and resume with
everything else, and a per-example function ``apply(params, x)`` (the toolkit's convention)
normalises with them. Training with the statistics *updating* needs the batch, so
:func:`pure_batch_norm` gives a second, batched function ``apply_batch(params, xs) -> (out,
targets)`` that normalises by the batch's own statistics and returns them as *targets*: a
params-shaped pytree whose statistic leaves hold the batch's values.

How they move: :func:`statistics_matching` is ``½ Σ |s - stop_gradient(t)|²`` over the
statistic leaves ``s`` and their targets ``t``, added to a loss; its gradient with respect to
``s`` is ``s - t``, and :func:`with_running_statistics` sends the statistic leaves to
``optax.sgd(update_rate)`` while the optimizer given trains the rest, so one step is
``s <- (1 - update_rate) s + update_rate t``: exactly the usual running average (PyTorch's
``momentum=0.1``). Frozen (``frozen=True``) they get no update at all, while the affine
weights and the rest of the network train. The task's gradient never reaches a statistic:
in batch mode the forward pass does not read them, and frozen they are masked.

Example::

    >>> import optax
    >>> from ebm_jax.nets import MLP
    >>> model = pure_batch_norm(MLP(2, (8,), 3, batch_norm=True, rngs=nnx.Rngs(0)))
    >>> xs = jnp.arange(8.0).reshape(4, 2)
    >>> out, targets = model.apply_batch(model.params, xs)
    >>> out.shape, model.apply(model.params, xs[0]).shape
    ((4, 3), (3,))
    >>> opt = with_running_statistics(optax.adam(1e-3), update_rate=0.1)
    >>> grads = jax.grad(statistics_matching)(model.params, targets)
    >>> params = optax.apply_updates(model.params, opt.update(grads, opt.init(model.params),
    ...                                                       model.params)[0])
    >>> # the running mean moved a tenth of the way to the batch's mean
    >>> bool(jnp.allclose(statistic_leaves(params)[0],
    ...                   0.1 * statistic_leaves(targets)[0], atol=1e-6))
    True
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from ebm_jax.nets.adapters import split_params

STATISTICS = ("running_mean", "running_var")   # the leaf names of the running statistics
EPSILON = 1e-5
UPDATE_RATE = 0.1   # PyTorch's BatchNorm momentum: the share of the batch's statistic per step


class ObservedStatistic(nnx.Variable):
    """A batch statistic a :class:`BatchNorm` layer saw in batch mode (not a parameter)."""


class BatchNorm(nnx.Module):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias`` over the last axis's features.

    ``mean, var``: the running statistics (parameters named ``running_mean``,
    ``running_var``), or in batch mode (``use_batch_statistics = True``, set by
    :func:`pure_batch_norm`'s ``apply_batch``) the batch's, over every axis but the last,
    which the layer also keeps in ``observed_mean`` and ``observed_var``.

    Example::

      >>> bn = BatchNorm(3)
      >>> bn(jnp.full((2, 3), 2.0)).round(4).tolist()    # running stats 0 and 1: ~identity
      [[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]]
    """

    def __init__(self, num_features: int, *, epsilon: float = EPSILON):
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.observed_mean = ObservedStatistic(jnp.zeros((num_features,), jnp.float32))
        self.observed_var = ObservedStatistic(jnp.ones((num_features,), jnp.float32))
        self.epsilon = epsilon
        self.use_batch_statistics = False

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.use_batch_statistics:
            axes = tuple(range(x.ndim - 1))
            mean = jnp.mean(x, axis=axes)
            var = jnp.mean(jnp.square(x - mean), axis=axes)
            self.observed_mean[...], self.observed_var[...] = mean, var
        else:
            mean, var = self.running_mean[...], self.running_var[...]
        scale = self.scale[...] * jax.lax.rsqrt(var.astype(x.dtype) + self.epsilon)
        return (x - mean.astype(x.dtype)) * scale.astype(x.dtype) + self.bias[...].astype(x.dtype)


def _keys(path) -> tuple:
    """A pytree path (or an NNX module path) as a tuple of strings."""
    return tuple(str(getattr(p, "key", getattr(p, "name", p))) for p in path)


def _is_statistic(path) -> bool:
    return _keys(path)[-1] in STATISTICS


def statistics_mask(params: Any) -> Any:
    """A pytree of bools over ``params``: True at the running statistics.

    Example::

      >>> statistics_mask({"bn": {"running_mean": 0.0, "scale": 1.0}})
      {'bn': {'running_mean': True, 'scale': False}}
    """
    return jax.tree_util.tree_map_with_path(lambda path, _: _is_statistic(path), params)


def statistic_leaves(params: Any) -> list:
    """The running statistics' leaves of ``params``, in tree order."""
    mask = statistics_mask(params)
    return [leaf for leaf, is_stat in zip(jax.tree.leaves(params), jax.tree.leaves(mask))
            if is_stat]


def statistics_matching(params: Any, targets: Any) -> jax.Array:
    """``½ Σ |s - stop_gradient(t)|²`` over the running statistics ``s`` of ``params`` and
    their ``targets`` (a batch's statistics, :class:`BatchNormModel`'s ``apply_batch``):
    its gradient is ``s - t`` at the statistics and zero elsewhere. 0 without batch norm.

    Example::

      >>> p = {"bn": {"running_mean": jnp.zeros(2), "scale": jnp.ones(2)}}
      >>> t = {"bn": {"running_mean": jnp.ones(2), "scale": jnp.ones(2)}}
      >>> float(statistics_matching(p, t))
      1.0
    """
    mask = jax.tree.leaves(statistics_mask(params))
    total = jnp.zeros((), jnp.float32)
    for is_stat, s, t in zip(mask, jax.tree.leaves(params), jax.tree.leaves(targets)):
        if is_stat:
            total = total + 0.5 * jnp.sum(jnp.square(s - jax.lax.stop_gradient(t)))
    return total


def with_running_statistics(optimizer: optax.GradientTransformation, *,
                            update_rate: float = UPDATE_RATE,
                            frozen: bool = False) -> optax.GradientTransformation:
    """``optimizer`` on every parameter but the running statistics, which take
    ``optax.sgd(update_rate)`` (with :func:`statistics_matching`'s gradient: the running
    average) or, ``frozen``, no update at all.

    Raises:
      ValueError: ``update_rate`` outside ``(0, 1]``.
    """
    if not 0.0 < update_rate <= 1.0:
        raise ValueError(f"update_rate={update_rate!r}: expected a number in (0, 1] (the "
                         "share of a batch's statistic taken per step)")
    statistics = optax.set_to_zero() if frozen else optax.sgd(update_rate)

    def labels(params):
        return jax.tree.map(lambda is_stat: "statistics" if is_stat else "weights",
                            statistics_mask(params))

    return optax.multi_transform({"weights": optimizer, "statistics": statistics}, labels)


class BatchNormModel(NamedTuple):
    """A network with batch norm as pure functions and its initial params.

    Attributes:
      apply: ``apply(params, x) -> out`` for one example, normalising by the running
        statistics (evaluation, attacks, samplers, frozen training).
      apply_batch: ``apply_batch(params, xs [B, ...]) -> (out [B, ...], targets)``,
        normalising by the batch's statistics; ``targets`` is ``params`` with the batch's
        statistics at the statistic leaves (for :func:`statistics_matching`).
      params: a nested dict of arrays, the running statistics among them.
    """

    apply: Callable[[Any, jax.Array], jax.Array]
    apply_batch: Callable[[Any, jax.Array], tuple]
    params: Any


def pure_batch_norm(module: nnx.Module) -> BatchNormModel:
    """Split ``module`` (which may hold :class:`BatchNorm` layers) into
    :class:`BatchNormModel`'s pure functions and its params."""
    merged, params = split_params(module, "BatchNormModel.params")

    def apply(params, x):
        return merged(params)(x[None])[0]

    def apply_batch(params, xs):
        net = merged(params)
        layers = {_keys(path): layer for path, layer in nnx.iter_modules(net)
                  if isinstance(layer, BatchNorm)}
        for layer in layers.values():
            layer.use_batch_statistics = True
        out = net(xs)
        observed = {path: (layer.observed_mean[...], layer.observed_var[...])
                    for path, layer in layers.items()}

        def target(path, leaf):
            keys = _keys(path)
            if keys[-1] not in STATISTICS or keys[:-1] not in observed:
                return leaf
            mean, var = observed[keys[:-1]]
            return mean if keys[-1] == "running_mean" else var

        return out, jax.tree_util.tree_map_with_path(target, params)

    return BatchNormModel(apply, apply_batch, params)
