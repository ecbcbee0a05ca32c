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

from typing import Any, Callable, NamedTuple

import jax

from ebm_jax.parallel.mesh import split_along_data


class Sampler(NamedTuple):
    """``init(position, params, *cond) -> State`` and
    ``step(rng_key, state, params, *cond) -> (State, Info)``."""

    init: Callable[..., Any]
    step: Callable[..., tuple[Any, Any]]


def init_chains(sampler: Sampler, positions: Any, params: Any, *cond: Any) -> Any:
    """Initialise one chain per row of ``positions`` (``[C, ...]``; every ``cond`` too).

    Example::

      >>> states = init_chains(sampler, jnp.zeros((128, 2)), params)
      >>> states, info = run_chains(jax.random.key(0), sampler, states, params, 100)
    """
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

      >>> sampler = langevin(lambda p, x: 0.5 * x @ x, step_size=0.1)
      >>> state, info = run_chain(jax.random.key(0), sampler, sampler.init(jnp.ones(2), None),
      ...                         None, 50)
    """
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r}: expected a positive Python int")
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
    num_chains = jax.tree.leaves(states)[0].shape[0]
    keys = jax.random.split(rng_key, num_chains)
    # Under a device mesh, chains are split across devices (a no-op on one device).
    keys, states, cond = split_along_data((keys, states, cond))

    def one(key, state, *c):
        return run_chain(key, sampler, state, params, num_steps, *c, unroll=unroll, trace=trace)

    return jax.vmap(one)(keys, states, *cond)
