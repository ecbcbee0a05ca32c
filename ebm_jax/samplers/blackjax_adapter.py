"""Use any blackjax sampling algorithm as an ebm_jax :class:`~ebm_jax.samplers.Sampler`.

blackjax algorithms close over a fixed ``logdensity_fn``; EBM params change every
training step, so the adapter rebuilds the algorithm inside ``init`` and ``step``
from ``logdensity(x) = -energy_fn(params, x, *cond)``. Rebuilding is Python-side
work at trace time only: under ``jit`` it costs nothing per step, and the params
stay a runtime argument (one compilation across param values).

blackjax stays an optional dependency: this module never imports it; the caller
passes the algorithm's constructor (``blackjax.mala``, ``blackjax.hmc``, ...).

NUTS with Stan's warm-up (step size and a diagonal or dense mass matrix) is the adapter inside
:func:`~ebm_jax.samplers.window_adaptation`::

    warm = window_adaptation(key, lambda h, m: from_blackjax(
        blackjax.nuts, energy_fn, step_size=h, inverse_mass_matrix=m),
        positions, params, initial_step_size=0.1, num_warmup=1000)
    _, draws = sample_chains(key2, warm.sampler, warm.states, params, 1000)
"""
from __future__ import annotations

from typing import Any, Callable

from ebm_jax.samplers.base import Sampler


def _probe_logdensity(x):  # stands in for the real target when checking `build`'s kwargs
    raise RuntimeError("the probe log-density is never evaluated")


def _describe(build) -> str:
    name = getattr(build, "__name__", None)
    if name:
        return name
    inner = getattr(build, "differentiable", None)  # blackjax's GenerateSamplingAPI wrapper
    if inner is not None:
        return f"{getattr(inner, '__module__', '?')} ({type(build).__name__})"
    return repr(build)


def from_blackjax(build: Callable, energy_fn: Callable, **kwargs: Any) -> Sampler:
    """Adapt a blackjax algorithm constructor to the ``init/step`` sampler protocol.

    Args:
      build: a blackjax top-level constructor whose first argument is the
        ``logdensity_fn`` and that returns an object with ``init(position)`` and
        ``step(rng_key, state)`` (``blackjax.mala``, ``blackjax.hmc``,
        ``blackjax.nuts``, ``blackjax.barker_proposal``, ...).
      energy_fn: per-example ``energy_fn(params, x, *cond) -> scalar``.
      **kwargs: the algorithm's parameters, passed to ``build`` as keywords
        (``step_size=...``, ``inverse_mass_matrix=...``, ``num_integration_steps=...``).

    Returns:
      A :class:`~ebm_jax.samplers.Sampler`:
      ``init(position, params, *cond)`` returns blackjax's state (which caches the
      log-density and its gradient at ``params``: re-initialise after the params
      change), and ``step(rng_key, state, params, *cond)`` returns blackjax's
      ``(state, info)`` unchanged. Works with :func:`~ebm_jax.samplers.run_chain`,
      :func:`~ebm_jax.samplers.init_chains` and :func:`~ebm_jax.samplers.run_chains`.
      Algorithms whose ``init`` needs an ``rng_key`` (e.g. ``ghmc``) do not fit
      this ``init`` and are not supported.

    Raises:
      ValueError: if ``build`` or ``energy_fn`` is not callable, or ``build`` rejects
        ``kwargs`` (checked once, here, by building with a placeholder target).

    Example::

      >>> import blackjax
      >>> from ebm_jax.samplers import init_chains, run_chains
      >>> energy_fn = lambda params, x: 0.5 * jnp.sum((x - params) ** 2)
      >>> params = jnp.ones(2)
      >>> sampler = from_blackjax(blackjax.hmc, energy_fn, step_size=0.1,
      ...                         inverse_mass_matrix=jnp.ones(2), num_integration_steps=10)
      >>> states = init_chains(sampler, jnp.zeros((8, 2)), params)   # 8 chains
      >>> states, info = run_chains(jax.random.key(0), sampler, states, params, 100)
      >>> info.acceptance_rate.shape                                  # one per chain
      (8,)
    """
    if not callable(build):
        raise ValueError(f"build={build!r}: expected a blackjax algorithm constructor such as "
                         "blackjax.mala, called as build(logdensity_fn, **kwargs)")
    if not callable(energy_fn):
        raise ValueError(f"energy_fn={energy_fn!r}: expected a callable "
                         "energy_fn(params, x, *cond)")
    try:  # constructing is cheap and evaluates nothing; it surfaces misspelt or missing kwargs
        probe = build(_probe_logdensity, **kwargs)
    except TypeError as err:
        raise ValueError(f"kwargs={kwargs!r} were rejected by build={_describe(build)}: "
                         f"{err}") from None
    if not (callable(getattr(probe, "init", None)) and callable(getattr(probe, "step", None))):
        raise ValueError(f"build={_describe(build)} returned {type(probe).__name__}: expected an "
                         "object with init(position) and step(rng_key, state), as blackjax "
                         "algorithms are")

    def algorithm(params, cond):
        def logdensity_fn(x):
            return -energy_fn(params, x, *cond)

        return build(logdensity_fn, **kwargs)

    def init(position, params=None, *cond):
        return algorithm(params, cond).init(position)

    def step(rng_key, state, params, *cond):
        return algorithm(params, cond).step(rng_key, state)

    return Sampler(init, step)
