"""The loss-transform protocol and the weighted combinator.

A loss transform is a NamedTuple of two pure functions, in the optax style::

    loss_state = transform.init(rng_key, params, example_batch)
    value, (loss_state, info) = transform.loss(params, loss_state, batch, rng_key)

``loss`` takes ``params`` first so that
``jax.value_and_grad(transform.loss, has_aux=True)`` differentiates it.
``batch`` is a dict with ``"x"`` (``[B, ...]``) and, for labelled data, ``"y"``
(``[B]`` int). ``info`` is a flat dict of scalar diagnostics.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_weight  # noqa: F401  (the losses' weight check)


class LossTransform(NamedTuple):
    """``init(rng_key, params, example_batch) -> LossState`` and
    ``loss(params, state, batch, rng_key) -> (scalar, (LossState, Info))``."""

    init: Callable[..., Any]
    loss: Callable[..., tuple[jax.Array, tuple[Any, dict]]]


def combine(**terms: tuple[float, LossTransform]) -> LossTransform:
    """Sum named loss transforms with weights, like ``optax.chain`` for losses.

    Each term gets its own state (the combined state is a dict by name) and
    its own key. Info keys are prefixed ``"<name>/"``; the combined info also
    holds each term's unweighted value as ``"<name>/loss"``.

    Args:
      **terms: ``name=(weight, transform)``.

    Example::

      >>> from ebm_jax.losses import cross_entropy, denoising_score_matching
      >>> logits_fn = lambda w, x: x @ w                    # a linear classifier, 3 classes
      >>> energy_fn = lambda w, x: -jax.nn.logsumexp(logits_fn(w, x))   # read as an EBM
      >>> hybrid = combine(classification=(1.0, cross_entropy(logits_fn)),
      ...                  generative=(0.5, denoising_score_matching(energy_fn, sigma=0.1)))
      >>> w, batch = jnp.zeros((2, 3)), {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
      >>> state = hybrid.init(jax.random.key(0), w, batch)
      >>> value, (state, info) = jax.jit(hybrid.loss)(w, state, batch, jax.random.key(1))
      >>> sorted(k for k in info if k.endswith("/loss"))
      ['classification/loss', 'generative/loss']
    """
    if not terms:
        raise ValueError("combine() got no terms: expected name=(weight, transform) pairs")
    for name, term in terms.items():
        if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[1], LossTransform)):
            raise TypeError(f"term {name!r}: expected a (weight, LossTransform) pair, got {term!r}")
        check_weight(f"term {name!r} weight", term[0])
    names = sorted(terms)

    def init(rng_key, params, example_batch):
        keys = jax.random.split(rng_key, len(names))
        return {n: terms[n][1].init(k, params, example_batch) for n, k in zip(names, keys)}

    def loss(params, state, batch, rng_key):
        keys = jax.random.split(rng_key, len(names))
        total = jnp.zeros(())
        new_state, info = {}, {}
        for name, key in zip(names, keys):
            weight, transform = terms[name]
            value, (new_state[name], term_info) = transform.loss(params, state[name], batch, key)
            total = total + weight * value
            info[f"{name}/loss"] = value
            info.update({f"{name}/{k}": v for k, v in term_info.items()})
        return total, (new_state, info)

    return LossTransform(init, loss)


class WarmupState(NamedTuple):
    """State of :func:`after_warmup`: ``count`` (int32 scalar, the loss evaluations so far)
    and the wrapped transform's state."""

    count: jax.Array
    inner: Any


def after_warmup(transform: LossTransform, num_steps: int) -> LossTransform:
    """``transform`` switched on after its first ``num_steps`` evaluations (one a train step):
    its value is 0 until then (computed, so its state and info still move), then itself. For
    curricula such as GEDI's, whose clustering terms wait until the generative term has
    shaped the features. Info adds ``active`` (0.0 or 1.0).

    Example::

      >>> from ebm_jax.losses import cross_entropy
      >>> late = after_warmup(cross_entropy(lambda w, x: x @ w), 2)
      >>> w, batch = jnp.ones((2, 3)), {"x": jnp.ones((4, 2)), "y": jnp.zeros(4, jnp.int32)}
      >>> state = late.init(jax.random.key(0), w, batch)
      >>> values = []
      >>> for _ in range(3):
      ...     value, (state, info) = late.loss(w, state, batch, jax.random.key(1))
      ...     values.append(round(float(value), 4))
      >>> values                                             # log 3 from the third step
      [0.0, 0.0, 1.0986]
    """
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps={num_steps}: expected a number of steps >= 0")

    def init(rng_key, params, example_batch):
        return WarmupState(jnp.zeros((), jnp.int32), transform.init(rng_key, params,
                                                                    example_batch))

    def loss(params, state, batch, rng_key):
        value, (inner, info) = transform.loss(params, state.inner, batch, rng_key)
        active = state.count >= num_steps
        value = jnp.where(active, value, jnp.zeros_like(value))
        info = {**info, "active": active.astype(jnp.float32)}
        return value, (WarmupState(state.count + 1, inner), info)

    return LossTransform(init, loss)


def require_keys(batch: Mapping, keys: tuple[str, ...], who: str) -> None:
    """Raise a clear error if ``batch`` is not a dict or lacks one of ``keys`` (checked at
    trace time)."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"{who} got a batch of type {type(batch).__name__}: expected a dict "
                        f"with keys {list(keys)}")
    for key in keys:
        if key not in batch:
            raise KeyError(f"{who} needs batch[{key!r}]: the batch has keys {sorted(batch)}")


def check_examples(batch: Mapping, who: str, *, floating: bool = False) -> jax.Array:
    """``batch["x"]`` as an array ``[B, ...]`` with ``B >= 1`` (floating point if ``floating``).

    Shapes and dtypes are static, so this runs at trace time under ``jit`` too.
    """
    x = jnp.asarray(batch["x"])
    if x.ndim < 1 or x.shape[0] == 0:
        raise ValueError(f"{who}: batch['x'] has shape {tuple(x.shape)}: expected a non-empty "
                         "batch [B, ...] with B >= 1")
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{who}: batch['x'] has dtype {x.dtype}: expected floating-point data "
                        "(cast it, e.g. x.astype(jnp.float32))")
    return x


def check_labels(batch: Mapping, who: str, batch_size: int, num_classes: Optional[int], *,
                 unlabelled: bool = False) -> jax.Array:
    """``batch["y"]`` as ``[batch_size]`` integer labels.

    The shape and dtype are checked always (at trace time under ``jit``); the values, in
    ``[0, num_classes)`` (``-1`` too when ``unlabelled``), only when they are concrete (an
    eager call, e.g. ``init`` on an example batch): traced values cannot be inspected.
    """
    y = jnp.asarray(batch["y"])
    if y.shape != (batch_size,):
        raise ValueError(f"{who}: batch['y'] has shape {tuple(y.shape)}: expected "
                         f"({batch_size},), one label per example of batch['x']")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise TypeError(f"{who}: batch['y'] has dtype {y.dtype}: expected integer class labels")
    if num_classes is not None and batch_size and not isinstance(y, jax.core.Tracer):
        values = np.asarray(y)   # concrete: under jit a jnp reduction would be staged
        low, high = int(values.min()), int(values.max())
        lowest = -1 if unlabelled else 0
        if low < lowest or high >= num_classes:
            extra = " (-1 marks an unlabelled example)" if unlabelled else ""
            raise ValueError(f"{who}: batch['y'] has labels in [{low}, {high}]: expected labels "
                             f"in [{lowest}, {num_classes}){extra}")
    return y
