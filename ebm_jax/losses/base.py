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

from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp


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

      >>> jem = combine(classification=(1.0, cross_entropy(logits_fn)),
      ...               generative=(1.0, contrastive_divergence(energy_fn, sampler)))
    """
    if not terms:
        raise ValueError("combine() got no terms: expected name=(weight, transform) pairs")
    for name, term in terms.items():
        if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[1], LossTransform)):
            raise TypeError(f"term {name!r}: expected a (weight, LossTransform) pair, got {term!r}")
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


def require_keys(batch: Mapping, keys: tuple[str, ...], who: str) -> None:
    """Raise a clear error if ``batch`` lacks one of ``keys`` (checked at trace time)."""
    for key in keys:
        if key not in batch:
            raise KeyError(f"{who} needs batch[{key!r}]: the batch has keys {sorted(batch)}")
