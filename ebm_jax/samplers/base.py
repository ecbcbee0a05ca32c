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

    def body(carry, key):
        new_state, info = sampler.step(key, carry, params, *cond)
        return new_state, info

    if trace:
        return jax.lax.scan(body, state, keys, unroll=unroll)
    # Only the last Info is kept: run num_steps - 1 steps without outputs, then one more.
    state, _ = jax.lax.scan(lambda c, k: (body(c, k)[0], None), state, keys[:-1], unroll=unroll)
    return body(state, keys[-1])


def run_chains(rng_key: jax.Array, sampler: Sampler, states: Any, params: Any, num_steps: int,
               *cond: Any, unroll: int = 1, trace: bool = False) -> tuple[Any, Any]:
    """Run many independent chains: :func:`run_chain` vmapped over chain states.

    ``states`` (and every ``cond``) carry a leading chain axis ``[C, ...]``;
    ``params`` are shared. Info gains the chain axis first (``[C, ...]``, or
    ``[C, num_steps, ...]`` with ``trace=True``).
    """
    num_chains = _check_chain_axis("states", states, cond)
    keys = jax.random.split(rng_key, num_chains)
    # Under a device mesh, chains are split across devices (a no-op on one device).
    keys, states, cond = split_along_data((keys, states, cond))

    def one(key, state, *c):
        return run_chain(key, sampler, state, params, num_steps, *c, unroll=unroll, trace=trace)

    return jax.vmap(one)(keys, states, *cond)
