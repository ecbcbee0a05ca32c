"""One loss for the first steps of a run, another after: training in two stages in one run.

:func:`two_stage` switches from ``first`` to ``second`` after ``switch_step`` applied steps,
counted in its own state (so a checkpoint resumes in the right stage, and a rollback rewinds
the count with everything else). Only the active stage is computed (``jax.lax.cond``); each
stage keeps its own state, untouched while the other is active.

Info: the active stage's keys, the other stage's keys at zero (the two branches of a
``cond`` must return one structure), and ``"stage"`` (0 or 1).

DAT (Yin et al. 2025) trains a robust classifier with batch norm's statistics updating, then
its energy with the statistics frozen::

    two_stage(with_batch_statistics(at, model.apply_batch),
              with_frozen_statistics(dat(energy, at)), switch_step=1500)

Example::

    >>> from ebm_jax.losses import cross_entropy
    >>> logits_fn = lambda w, x: w @ x
    >>> first = cross_entropy(logits_fn)
    >>> second = cross_entropy(lambda w, x: 2.0 * (w @ x))
    >>> loss = two_stage(first, second, switch_step=1)
    >>> w, batch = jnp.ones((3, 2)), {"x": jnp.ones((4, 2)), "y": jnp.zeros(4, jnp.int32)}
    >>> state = loss.init(jax.random.key(0), w, batch)
    >>> _, (state, info) = loss.loss(w, state, batch, jax.random.key(1))
    >>> int(info["stage"]), int(state.step)
    (0, 1)
    >>> _, (state, info) = loss.loss(w, state, batch, jax.random.key(2))
    >>> int(info["stage"]), int(state.step)
    (1, 2)
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int
from ebm_jax.losses.base import LossTransform

STAGE = "stage"   # the info key of the active stage (0: first, 1: second)


class TwoStageState(NamedTuple):
    """:func:`two_stage`'s state: ``step`` (``int32``, applied steps so far) and each stage's
    own state."""

    step: jax.Array
    first: Any
    second: Any


def _zeros_like(shapes: dict) -> dict:
    return {k: jnp.zeros(v.shape, v.dtype) for k, v in shapes.items()}


def two_stage(first: LossTransform, second: LossTransform, *,
              switch_step: int) -> LossTransform:
    """``first`` for the first ``switch_step`` steps, ``second`` after (see the module
    docstring).

    Raises:
      TypeError: a stage that is not a loss transform.
      ValueError: ``switch_step < 0``; or (when traced) an info key both stages report with
        different shapes or dtypes.
    """
    for name, term in (("first", first), ("second", second)):
        if not isinstance(term, LossTransform):
            raise TypeError(f"{name}={term!r}: expected a LossTransform")
    switch_step = check_int("switch_step", switch_step, 0)
    # The stages' info shapes, by the avals of (state, batch): tracing a stage only for them
    # would double its trace (a network's PGD loops, say) at every trace of the step.
    info_shapes: dict = {}

    def infos(params, state, batch, rng_key):
        avals = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), (params, state, batch))
        key = (jax.tree.structure((params, state, batch)), tuple(jax.tree.leaves(avals)))
        if key not in info_shapes:
            info_shapes[key] = (
                jax.eval_shape(first.loss, params, state.first, batch, rng_key)[1][1],
                jax.eval_shape(second.loss, params, state.second, batch, rng_key)[1][1])
        return info_shapes[key]

    def init(rng_key, params, example_batch):
        k_first, k_second = jax.random.split(rng_key)
        return TwoStageState(jnp.zeros((), jnp.int32),
                             first.init(k_first, params, example_batch),
                             second.init(k_second, params, example_batch))

    def loss(params, state, batch, rng_key):
        args = (params, state.first, batch, rng_key)
        first_info, second_info = infos(params, state, batch, rng_key)
        for key in set(first_info) & set(second_info):
            a, b = first_info[key], second_info[key]
            if (a.shape, a.dtype) != (b.shape, b.dtype):
                raise ValueError(f"info key {key!r}: the stages report {first_info[key]} and "
                                 f"{second_info[key]}: expected one shape and dtype")
        shapes = {**first_info, **second_info}

        def run_first(_):
            value, (inner, info) = first.loss(*args)
            return value, (TwoStageState(state.step, inner, state.second),
                           {**_zeros_like(shapes), **info})

        def run_second(_):
            value, (inner, info) = second.loss(params, state.second, batch, rng_key)
            return value, (TwoStageState(state.step, state.first, inner),
                           {**_zeros_like(shapes), **info})

        in_second = state.step >= switch_step
        value, (new_state, info) = jax.lax.cond(in_second, run_second, run_first, None)
        info = {**info, STAGE: in_second.astype(jnp.float32)}
        return value, (new_state._replace(step=state.step + 1), info)

    return LossTransform(init, loss)
