"""The sampler protocol and the chain runner.

A sampler is a NamedTuple of two pure functions for **one chain**::

    state = sampler.init(position, params, *cond)
    state, info = sampler.step(rng_key, state, params, *cond)

Params are a step argument because they change every training step; many
chains are a ``jax.vmap`` over keys and states (see :func:`init_chains` and
:func:`run_chains`). ``init`` takes the params too, so that samplers whose
state caches the energy and its gradient (MALA, HMC) can fill the cache;
samplers without a cache (SGLD) accept and ignore them (``params`` may be
omitted there). Re-initialise after the params change: a cached energy of
old params is stale.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ebm_jax._checks import check_int
from ebm_jax.parallel.mesh import split_along_data


class Sampler(NamedTuple):
    """``init(position, params, *cond) -> State`` and
    ``step(rng_key, state, params, *cond) -> (State, Info)``.

    ``support`` is the box ``(low, high)`` the sampler keeps its chains in (its
    ``clip_range``), or None: a chain start whose noise law was left to its default draws
    from ``U(support)`` (see :func:`~ebm_jax.samplers.chain_starts.follow_support`).
    """

    init: Callable[..., Any]
    step: Callable[..., tuple[Any, Any]]
    support: Optional[tuple[float, float]] = None


def _check_chain_axis(what: str, tree: Any, cond: tuple) -> int:
    """The number of chains ``C``: every leaf of ``tree`` and of every ``cond`` must have a
    leading axis of that length (static shapes: checked at trace time, under jit too)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        raise ValueError(f"{what} has no arrays: expected a batch of chains [C, ...]")
    shapes = [jnp.shape(leaf) for leaf in leaves]
    if any(len(shape) == 0 for shape in shapes):
        raise ValueError(f"{what} has a leaf of shape (): expected a leading chain axis [C, ...] "
                         "on every leaf (batch one chain with init_chains)")
    num_chains = shapes[0][0]
    if any(shape[0] != num_chains for shape in shapes):
        raise ValueError(f"{what} has leaves with leading axes {sorted({s[0] for s in shapes})}: "
                         "expected one chain axis [C, ...] shared by every leaf")
    for i, c in enumerate(cond):
        for leaf in jax.tree.leaves(c):
            shape = jnp.shape(leaf)
            if len(shape) == 0 or shape[0] != num_chains:
                raise ValueError(f"cond[{i}] has shape {tuple(shape)}: expected a leading axis "
                                 f"of {num_chains}, one entry per chain of {what}")
    return num_chains


def init_chains(sampler: Sampler, positions: Any, params: Any, *cond: Any) -> Any:
    """Initialise one chain per row of ``positions`` (``[C, ...]``; every ``cond`` too).

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> sampler = langevin(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), step_size=0.1)
      >>> params = jnp.ones(2)
      >>> states = init_chains(sampler, jnp.zeros((128, 2)), params)
      >>> run = jax.jit(lambda key, states, params: run_chains(key, sampler, states, params, 100))
      >>> states, info = run(jax.random.key(0), states, params)
      >>> states.position.shape, info.energy.shape
      ((128, 2), (128,))
    """
    _check_chain_axis("positions", positions, cond)
    in_axes = (0, None) + (0,) * len(cond)
    return jax.vmap(sampler.init, in_axes=in_axes)(positions, params, *cond)


def _steps(sampler: Sampler, state: Any, params: Any, keys: jax.Array, cond: tuple,
           unroll: int) -> tuple[Any, Any]:
    """One step per key; only the last Info is kept: ``len(keys) - 1`` steps in a
    ``lax.scan`` without outputs, then one more."""
    def body(carry, key):
        return sampler.step(key, carry, params, *cond)[0], None

    state, _ = jax.lax.scan(body, state, keys[:-1], unroll=unroll)
    return sampler.step(keys[-1], state, params, *cond)


def _over_chains(rng_key: jax.Array, states: Any, cond: tuple, one: Callable) -> Any:
    """``one(key, state, *cond)`` vmapped over chains ``[C, ...]``, a key each; under a device
    mesh the chains are split across devices (a no-op on one device)."""
    num_chains = _check_chain_axis("states", states, cond)
    keys = jax.random.split(rng_key, num_chains)
    keys, states, cond = split_along_data((keys, states, cond))
    return jax.vmap(one)(keys, states, *cond)


def run_chain(rng_key: jax.Array, sampler: Sampler, state: Any, params: Any, num_steps: int,
              *cond: Any, unroll: int = 1, trace: bool = False) -> tuple[Any, Any]:
    """Run one chain for ``num_steps`` steps as a single ``lax.scan``.

    Args:
      rng_key: one PRNG key; split into a key per step.
      sampler: a :class:`Sampler`.
      state: the chain's state (from ``sampler.init``).
      params: energy parameters, constant along the chain.
      num_steps: a Python int (the scan length is static).
      *cond: conditioning arguments passed to every step (for example a label).
      unroll: ``lax.scan`` unroll factor (a speed lever on CPU).
      trace: if True, return the Info of every step (stacked, leading axis
        ``num_steps``); otherwise only the last step's Info, which costs nothing.

    Returns:
      ``(final_state, info)``.

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> sampler = langevin(lambda p, x: 0.5 * x @ x, step_size=0.1)
      >>> run = jax.jit(lambda key, state: run_chain(key, sampler, state, None, 50))
      >>> state, info = run(jax.random.key(0), sampler.init(jnp.ones(2), None))
    """
    num_steps = check_int("num_steps", num_steps, expected="a positive Python int")
    keys = jax.random.split(rng_key, num_steps)
    if trace:
        def body(carry, key):
            return sampler.step(key, carry, params, *cond)

        return jax.lax.scan(body, state, keys, unroll=unroll)
    return _steps(sampler, state, params, keys, cond, unroll)


def run_chains(rng_key: jax.Array, sampler: Sampler, states: Any, params: Any, num_steps: int,
               *cond: Any, unroll: int = 1, trace: bool = False) -> tuple[Any, Any]:
    """Run many independent chains: :func:`run_chain` vmapped over chain states.

    ``states`` (and every ``cond``) carry a leading chain axis ``[C, ...]``;
    ``params`` are shared. Info gains the chain axis first (``[C, ...]``, or
    ``[C, num_steps, ...]`` with ``trace=True``).
    """
    def one(key, state, *c):
        return run_chain(key, sampler, state, params, num_steps, *c, unroll=unroll, trace=trace)

    return _over_chains(rng_key, states, cond, one)


class Draws(NamedTuple):
    """Recorded draws of one chain (``[num_draws, ...]``) or of many (``[C, num_draws, ...]``,
    the ``[chains, draws, ...]`` layout of :mod:`ebm_jax.samplers.diagnostics`).

    Attributes:
      positions: the position after every ``thin``-th step.
      info: the sampler's Info of those steps (acceptance, energy, ...).
    """

    positions: Any
    info: Any


def _position(state: Any) -> Any:
    position = getattr(state, "position", None)
    if position is None:
        raise ValueError(f"a sampler state of type {type(state).__name__} has no 'position' "
                         "field: expected a state such as LangevinState, MALAState or HMCState")
    return position


def sample_chain(rng_key: jax.Array, sampler: Sampler, state: Any, params: Any, num_draws: int,
                 *cond: Any, thin: int = 1, unroll: int = 1) -> tuple[Any, Draws]:
    """Run one chain for ``num_draws * thin`` steps and record its position every ``thin``
    steps (memory ``num_draws`` positions, whatever ``thin``).

    The steps use the keys :func:`run_chain` would use for ``num_draws * thin`` steps, so
    the final state is the one ``run_chain`` reaches (to float rounding: another compiled
    program); the draws are the positions after steps ``thin, 2 thin, ...,
    num_draws * thin``. Warm up (or adapt) first: every recorded
    draw counts.

    Returns:
      ``(final_state, Draws)`` with ``positions [num_draws, ...]`` and the Info of the
      recorded steps (leading axis ``num_draws``).

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> sampler = langevin(lambda p, x: 0.5 * x @ x, step_size=0.1)
      >>> run = jax.jit(lambda key, state: sample_chain(key, sampler, state, None, 100, thin=5))
      >>> state, draws = run(jax.random.key(0), sampler.init(jnp.ones(2), None))
      >>> draws.positions.shape                     # 100 draws, one every 5 steps
      (100, 2)
    """
    num_draws = check_int("num_draws", num_draws, expected="a positive Python int")
    thin = check_int("thin", thin, expected="a positive Python int")
    _position(state)
    keys = jax.random.split(rng_key, num_draws * thin)
    keys = keys.reshape((num_draws, thin) + keys.shape[1:])

    def one_draw(carry, draw_keys):
        carry, info = _steps(sampler, carry, params, draw_keys, cond, unroll)
        return carry, (_position(carry), info)

    state, (positions, info) = jax.lax.scan(one_draw, state, keys)
    return state, Draws(positions, info)


def sample_chains(rng_key: jax.Array, sampler: Sampler, states: Any, params: Any,
                  num_draws: int, *cond: Any, thin: int = 1,
                  unroll: int = 1) -> tuple[Any, Draws]:
    """:func:`sample_chain` vmapped over chains (keys split as :func:`run_chains` splits
    them): ``Draws.positions [C, num_draws, ...]``, ready for
    :func:`~ebm_jax.samplers.diagnostics.chain_summary`.

    Example::

      >>> from ebm_jax.samplers import langevin
      >>> from ebm_jax.samplers.diagnostics import chain_summary
      >>> sampler = langevin(lambda p, x: 0.5 * x @ x, step_size=0.1)
      >>> states = init_chains(sampler, jnp.zeros((4, 2)), None)
      >>> _, draws = jax.jit(lambda k, s: sample_chains(k, sampler, s, None, 200))(
      ...     jax.random.key(0), states)
      >>> chain_summary(draws.positions).mean.shape  # draws [4, 200, 2] -> per coordinate
      (2,)
    """
    def one(key, state, *c):
        return sample_chain(key, sampler, state, params, num_draws, *c, thin=thin,
                            unroll=unroll)

    return _over_chains(rng_key, states, cond, one)
