"""Step-size adaptation by dual averaging (Hoffman & Gelman 2014, Algorithm 5).

The dual-averaging scheme drives the mean Metropolis acceptance probability
``α`` of a kernel to a target ``δ``. With ``H̄_0 = 0``, ``μ = log(10 h_0)`` and
``m = 1, 2, ...``::

    H̄_m       = (1 - 1/(m + t0)) H̄_{m-1} + (δ - α_m) / (m + t0)
    log h_m   = μ - sqrt(m) / γ · H̄_m                      # the step size used next
    log h̄_m   = m^-κ log h_m + (1 - m^-κ) log h̄_{m-1}      # the averaged step size

(``γ = 0.05, t0 = 10, κ = 0.75``). The iterates ``h_m`` explore; the average
``h̄_m`` converges and is the step size to sample with after warm-up.

The pure pieces (:func:`dual_averaging_init`, :func:`dual_averaging_update`,
:func:`final_step_size`) compose into any loop. :func:`adapt_step_size` runs a
warm-up of one chain and :func:`adapt_step_size_chains` of many chains that
share one step size (adapted on their mean acceptance), as one ``lax.scan``.
Both drive a low-level kernel ``kernel(rng_key, state, params, step_size, *cond)``
such as :func:`~ebm_jax.samplers.mala_kernel` or :func:`~ebm_jax.samplers.hmc_kernel`.
:func:`warmup_chains` is the one-call form: from a sampler constructor
``make_sampler(step_size) -> Sampler`` (``functools.partial(mala, energy_fn)``) it
initialises the chains, adapts their shared step size and returns the sampler at that
step size with the warmed-up states. :func:`window_adaptation` is Stan's warm-up, one
compiled scan: the step size and a diagonal or dense mass matrix (the draws' regularised
variances or covariance over doubling windows, :func:`warmup_windows`), for samplers built
as ``make_sampler(step_size, inverse_mass)``.

Targets: 0.574 is optimal for MALA (Roberts & Rosenthal 1998), about 0.65-0.8 for HMC.
"""
from __future__ import annotations

import functools
import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_choice, check_flag, check_int, check_positive_finite
from ebm_jax.samplers.base import Sampler, init_chains

GAMMA = 0.05
T0 = 10.0
KAPPA = 0.75


class DualAveragingState(NamedTuple):
    """State of the dual-averaging scheme (all float32 scalars but ``step``).

    Attributes:
      log_step_size: ``log h_m``, the step size to use for the next transition.
      log_step_size_avg: ``log h̄_m``, the averaged step size (``log h_0`` before any update).
      avg_error: ``H̄_m``, the running mean of ``target - acceptance``.
      step: ``m``, the number of updates so far (int32).
      mu: ``log(10 h_0)``, the point the iterates shrink toward.
    """

    log_step_size: jax.Array
    log_step_size_avg: jax.Array
    avg_error: jax.Array
    step: jax.Array
    mu: jax.Array


class AdaptationInfo(NamedTuple):
    """The trace of a warm-up of ``num_warmup`` steps.

    Attributes:
      step_size: ``[num_warmup]`` the step size each warm-up transition used.
      acceptance_rate: ``[num_warmup]`` the acceptance probability each update saw (the
        mean over chains for :func:`adapt_step_size_chains`).
      info: the kernel's Info of every step, stacked: ``[num_warmup, ...]``, or
        ``[num_warmup, C, ...]`` for :func:`adapt_step_size_chains`.
    """

    step_size: jax.Array
    acceptance_rate: jax.Array
    info: Any


def _check_target(target: Any) -> None:
    if isinstance(target, numbers.Real) and not 0 < target < 1:
        raise ValueError(f"target_acceptance={target!r}: expected a number in (0, 1)")


def _check_hyperparameters(gamma: Any, t0: Any, kappa: Any) -> None:
    check_positive_finite("gamma", gamma)
    if isinstance(t0, numbers.Real) and not (np.isfinite(t0) and t0 >= 0):
        raise ValueError(f"t0={t0!r}: expected a finite number >= 0")
    if isinstance(kappa, numbers.Real) and not 0.5 < kappa <= 1:
        raise ValueError(f"kappa={kappa!r}: expected a number in (0.5, 1]")


def dual_averaging_init(step_size) -> DualAveragingState:
    """Start dual averaging from the initial step size ``h_0 > 0`` (``μ = log(10 h_0)``).

    Example::

      >>> state = dual_averaging_init(0.1)
      >>> round(float(jnp.exp(state.log_step_size)), 6), round(float(final_step_size(state)), 6)
      (0.1, 0.1)
    """
    check_positive_finite("step_size", step_size)
    log_h = jnp.log(jnp.asarray(step_size, jnp.float32))
    zero = jnp.zeros((), jnp.float32)
    return DualAveragingState(log_h, log_h, zero, jnp.zeros((), jnp.int32),
                              log_h + jnp.log(jnp.float32(10.0)))


def dual_averaging_update(state: DualAveragingState, acceptance_rate, target, *,
                          gamma: float = GAMMA, t0: float = T0,
                          kappa: float = KAPPA) -> DualAveragingState:
    """One dual-averaging update from an observed acceptance probability.

    Args:
      state: the current :class:`DualAveragingState`.
      acceptance_rate: scalar ``α_m`` in [0, 1] observed with step ``exp(state.log_step_size)``.
      target: ``δ`` in (0, 1). Acceptance below target shrinks the step, above grows it.
      gamma, t0, kappa: the scheme's constants (Hoffman & Gelman's defaults).

    Returns:
      The new state; ``exp(new.log_step_size)`` is the next step size to try.

    Example::

      >>> state = dual_averaging_update(dual_averaging_init(0.1), 0.9, 0.574)
      >>> float(jnp.exp(state.log_step_size)) > 0.1   # accepted more than wanted: grow
      True
    """
    _check_target(target)
    _check_hyperparameters(gamma, t0, kappa)
    m = state.step + 1
    m_f = m.astype(jnp.float32)
    weight = 1.0 / (m_f + t0)
    avg_error = (1.0 - weight) * state.avg_error + weight * (target - acceptance_rate)
    log_step_size = state.mu - jnp.sqrt(m_f) / gamma * avg_error
    eta = m_f ** (-kappa)
    log_step_size_avg = eta * log_step_size + (1.0 - eta) * state.log_step_size_avg
    return DualAveragingState(log_step_size.astype(jnp.float32),
                              log_step_size_avg.astype(jnp.float32),
                              avg_error.astype(jnp.float32), m, state.mu)


def final_step_size(state: DualAveragingState) -> jax.Array:
    """The averaged step size ``h̄ = exp(log_step_size_avg)``: the one to sample with."""
    return jnp.exp(state.log_step_size_avg)


def _check_warmup(num_warmup: Any, initial_step_size: Any, target_acceptance: Any) -> None:
    check_int("num_warmup", num_warmup)
    check_positive_finite("initial_step_size", initial_step_size)
    _check_target(target_acceptance)


def _warmup(rng_key, transition: Callable, state, initial_step_size, num_warmup: int,
            target_acceptance, gamma, t0, kappa):
    """Scan ``transition(key, state, step_size) -> (state, info, acceptance)`` with
    dual averaging; returns ``(state, final step size, AdaptationInfo)``."""

    def body(carry, key):
        chain_state, da_state = carry
        step_size = jnp.exp(da_state.log_step_size)
        chain_state, info, acceptance = transition(key, chain_state, step_size)
        da_state = dual_averaging_update(da_state, acceptance, target_acceptance,
                                         gamma=gamma, t0=t0, kappa=kappa)
        return (chain_state, da_state), AdaptationInfo(step_size, acceptance, info)

    keys = jax.random.split(rng_key, int(num_warmup))
    carry = (state, dual_averaging_init(initial_step_size))
    (state, da_state), trace = jax.lax.scan(body, carry, keys)
    return state, final_step_size(da_state), trace


def adapt_step_size(rng_key: jax.Array, kernel: Callable, state: Any, params: Any, *cond: Any,
                    initial_step_size, num_warmup: int, target_acceptance: float = 0.574,
                    gamma: float = GAMMA, t0: float = T0,
                    kappa: float = KAPPA) -> tuple[Any, jax.Array, AdaptationInfo]:
    """Warm up one chain while adapting the step size by dual averaging (one ``lax.scan``).

    Args:
      rng_key: one PRNG key (split into a key per warm-up step).
      kernel: ``kernel(rng_key, state, params, step_size, *cond) -> (state, info)`` whose
        info has an ``acceptance_rate`` (e.g. :func:`~ebm_jax.samplers.mala_kernel`).
      state: the chain's state (from the matching sampler's ``init``).
      params: energy parameters.
      *cond: conditioning arguments passed to every step.
      initial_step_size: ``h_0 > 0``.
      num_warmup: number of warm-up transitions (a positive Python int).
      target_acceptance: the target mean acceptance probability, in (0, 1); the default
        0.574 is MALA's optimum; use about 0.65-0.8 for HMC.
      gamma, t0, kappa: dual-averaging constants.

    Returns:
      ``(state, step_size, info)``: the chain's state after warm-up, the averaged step
      size (a JAX float32 scalar) and an :class:`AdaptationInfo` trace.

    Example::

      >>> from ebm_jax.samplers import mala, mala_kernel
      >>> energy = lambda p, x: 0.5 * jnp.sum(x**2)
      >>> state = mala(energy, 0.1).init(jnp.zeros(2), None)
      >>> state, h, _ = adapt_step_size(jax.random.key(0), mala_kernel(energy), state, None,
      ...                               initial_step_size=0.1, num_warmup=500)
      >>> sampler = mala(energy, h)   # sample with the adapted step
    """
    _check_warmup(num_warmup, initial_step_size, target_acceptance)
    _check_hyperparameters(gamma, t0, kappa)

    def transition(key, chain_state, step_size):
        chain_state, info = kernel(key, chain_state, params, step_size, *cond)
        return chain_state, info, info.acceptance_rate

    return _warmup(rng_key, transition, state, initial_step_size, num_warmup, target_acceptance,
                   gamma, t0, kappa)


def adapt_step_size_chains(rng_key: jax.Array, kernel: Callable, states: Any, params: Any,
                           *cond: Any, initial_step_size, num_warmup: int,
                           target_acceptance: float = 0.574, gamma: float = GAMMA,
                           t0: float = T0,
                           kappa: float = KAPPA) -> tuple[Any, jax.Array, AdaptationInfo]:
    """Warm up many chains that share one step size, adapted on their mean acceptance.

    Every warm-up step runs the kernel on all chains (vmapped, independent keys) with
    the same step size, then makes one dual-averaging update from the acceptance
    probability averaged over chains: less noisy than one chain, and one step size for
    the batched chains of an EBM.

    Args:
      rng_key: one PRNG key.
      kernel: ``kernel(rng_key, state, params, step_size, *cond) -> (state, info)``.
      states: chain states with a leading chain axis ``[C, ...]`` (e.g. from
        :func:`~ebm_jax.samplers.init_chains`); every ``cond`` is ``[C, ...]`` too.
      params: shared energy parameters.
      initial_step_size, num_warmup, target_acceptance, gamma, t0, kappa: as in
        :func:`adapt_step_size`.

    Returns:
      ``(states, step_size, info)``: the states after warm-up ``[C, ...]``, the shared
      averaged step size (a JAX float32 scalar) and an :class:`AdaptationInfo` whose
      ``info`` fields are ``[num_warmup, C]``.

    Example::

      >>> from ebm_jax.samplers import init_chains, mala, mala_kernel
      >>> energy = lambda p, x: 0.5 * jnp.sum(x**2)
      >>> sampler = mala(energy, 0.1)
      >>> states = init_chains(sampler, jnp.zeros((128, 2)), None)
      >>> states, h, info = adapt_step_size_chains(
      ...     jax.random.key(0), mala_kernel(energy), states, None,
      ...     initial_step_size=0.1, num_warmup=300)
    """
    _check_warmup(num_warmup, initial_step_size, target_acceptance)
    _check_hyperparameters(gamma, t0, kappa)

    def transition(key, chain_states, step_size):
        def step(k, state, step_params, *c):
            return kernel(k, state, step_params, step_size, *c)

        chain_states, info = _step_chains(step, key, chain_states, params, cond)
        return chain_states, info, jnp.mean(info.acceptance_rate)

    return _warmup(rng_key, transition, states, initial_step_size, num_warmup,
                   target_acceptance, gamma, t0, kappa)


def _step_chains(step: Callable, key: jax.Array, states: Any, params: Any, cond: tuple):
    """One ``step(key, state, params, *cond)`` of every chain ``[C, ...]``, a key each (every
    ``cond`` is ``[C, ...]`` too; ``params`` are shared)."""
    num_chains = jax.tree.leaves(states)[0].shape[0]
    in_axes = (0, 0, None) + (0,) * len(cond)
    return jax.vmap(step, in_axes=in_axes)(jax.random.split(key, num_chains), states, params,
                                           *cond)


def _check_constructor(make_sampler: Any, expected: str) -> None:
    if not callable(make_sampler):
        raise TypeError(f"make_sampler={make_sampler!r}: expected a function {expected}")


def _first_sampler(make_sampler: Callable, args: tuple, shown: str) -> Sampler:
    """``make_sampler(*args)``, or one clear error when it returns no sampler."""
    first = make_sampler(*args)
    if not isinstance(first, Sampler):
        raise TypeError(f"make_sampler({shown}) returned {type(first).__name__}: expected a "
                        "Sampler (init, step)")
    return first


@functools.partial(jax.jit, static_argnames=("make_sampler", "num_warmup", "target_acceptance",
                                             "gamma", "t0", "kappa"))
def _shared_warmup(rng_key, states, params, cond, initial_step_size, *, make_sampler, num_warmup,
                   target_acceptance, gamma, t0, kappa):
    """:func:`adapt_step_size_chains` with the kernel ``make_sampler(h).step``: one compiled
    program whatever the initial step size (a traced argument)."""

    def kernel(key, state, kernel_params, step_size, *c):
        return make_sampler(step_size).step(key, state, kernel_params, *c)

    return adapt_step_size_chains(rng_key, kernel, states, params, *cond,
                                  initial_step_size=initial_step_size, num_warmup=num_warmup,
                                  target_acceptance=target_acceptance, gamma=gamma, t0=t0,
                                  kappa=kappa)


class Warmup(NamedTuple):
    """What :func:`warmup_chains` returns.

    Attributes:
      sampler: ``make_sampler(step_size)``, the sampler to draw with.
      states: the chains' states after warm-up ``[C, ...]``, ready for
        :func:`~ebm_jax.samplers.sample_chains` or :func:`~ebm_jax.samplers.run_chains`.
      step_size: the adapted step size (a JAX float32 scalar).
      info: the :class:`AdaptationInfo` trace (``info`` fields ``[num_warmup, C]``).
    """

    sampler: Sampler
    states: Any
    step_size: jax.Array
    info: AdaptationInfo


def warmup_chains(rng_key: jax.Array, make_sampler: Callable[[Any], Sampler], positions: Any,
                  params: Any, *cond: Any, initial_step_size, num_warmup: int,
                  target_acceptance: float = 0.574, gamma: float = GAMMA, t0: float = T0,
                  kappa: float = KAPPA) -> Warmup:
    """Start chains at ``positions [C, ...]``, warm them up while adapting one shared step
    size by dual averaging (as :func:`adapt_step_size_chains`), and return the sampler
    built at the adapted step size with the warmed-up states: one constructor instead of
    a sampler for the states, its kernel for the adaptation and a sampler again.

    Args:
      rng_key: one PRNG key.
      make_sampler: ``make_sampler(step_size) -> Sampler`` whose steps report an
        ``acceptance_rate`` (MALA, HMC), e.g. ``functools.partial(mala, energy_fn)`` or
        ``lambda h: hmc(energy_fn, h, 10)``; it is called with a traced step size during
        the warm-up.
      positions: chain starts ``[C, ...]`` (every ``cond`` is ``[C, ...]`` too).
      params: shared energy parameters.
      initial_step_size, num_warmup, target_acceptance, gamma, t0, kappa: as in
        :func:`adapt_step_size`.

    Returns:
      A :class:`Warmup` ``(sampler, states, step_size, info)``. It returns a sampler (two
      functions), so call it outside ``jit``; the warm-up itself is one compiled
      ``lax.scan``.

    Example::

      >>> import functools
      >>> from ebm_jax.samplers import mala, sample_chains
      >>> energy = lambda p, x: 0.5 * jnp.sum(x**2)
      >>> warm = warmup_chains(jax.random.key(0), functools.partial(mala, energy),
      ...                      jnp.zeros((64, 2)), None, initial_step_size=0.1, num_warmup=300)
      >>> _, draws = sample_chains(jax.random.key(1), warm.sampler, warm.states, None, 100)
      >>> draws.positions.shape                    # [chains, draws, 2]
      (64, 100, 2)
    """
    _check_constructor(make_sampler, "step_size -> Sampler, e.g. "
                                     "functools.partial(mala, energy_fn)")
    _check_warmup(num_warmup, initial_step_size, target_acceptance)
    _check_hyperparameters(gamma, t0, kappa)
    first = _first_sampler(make_sampler, (initial_step_size,), f"{initial_step_size}")
    states = init_chains(first, positions, params, *cond)
    states, step_size, info = _shared_warmup(
        rng_key, states, params, cond, jnp.float32(initial_step_size), make_sampler=make_sampler,
        num_warmup=num_warmup, target_acceptance=target_acceptance, gamma=gamma, t0=t0,
        kappa=kappa)
    return Warmup(make_sampler(step_size), states, step_size, info)


# -- Stan's windowed adaptation of the step size and a diagonal or dense mass matrix ---------

def warmup_windows(num_warmup: int, initial_buffer: int = 75, final_buffer: int = 50,
                   first_window: int = 25) -> tuple[int, list, int]:
    """Stan's warm-up schedule: a fast initial buffer (step size only), slow windows that
    double in length (each ends with a new mass matrix; the last one stretched to the final
    buffer), a fast final buffer (step size only).

    Below 20 warm-up steps there are no windows (the step size alone adapts); when the
    three default lengths do not fit, Stan's 15% / 75% / 10% split is used.

    Returns:
      ``(initial_buffer, [(start, end), ...], final_buffer)``: the slow windows as
      half-open step ranges.

    Example::

      >>> warmup_windows(1000)       # Stan's default: windows of 25, 50, 100, 200 and 500
      (75, [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)], 50)
    """
    num_warmup = check_int("num_warmup", num_warmup)
    if num_warmup < 20:
        return num_warmup, [], 0
    if initial_buffer + first_window + final_buffer > num_warmup:
        initial_buffer, final_buffer = int(0.15 * num_warmup), int(0.1 * num_warmup)
        first_window = num_warmup - initial_buffer - final_buffer
    windows, start, size, slow_end = [], initial_buffer, first_window, num_warmup - final_buffer
    while start < slow_end:
        end = start + size
        if end + 2 * size >= slow_end:  # the next window would not fit: stretch this one
            end = slow_end
        windows.append((start, end))
        start, size = end, 2 * size
    return initial_buffer, windows, final_buffer


def _shrink(estimate: jax.Array, n) -> jax.Array:
    """Stan's regularisation of a variance (``[D]``) or covariance (``[D, D]``) estimated
    from ``n`` draws: ``n / (n + 5) estimate + 1e-3 * 5 / (n + 5)`` (times the identity)."""
    ridge = 1e-3 * 5.0 / (n + 5.0)
    if estimate.ndim == 2:
        ridge = ridge * jnp.eye(estimate.shape[0], dtype=estimate.dtype)
    return n / (n + 5.0) * estimate + ridge


def regularised_variance(draws: jax.Array) -> jax.Array:
    """Stan's regularised variance of ``draws [n, D]``: ``n / (n + 5) var + 1e-3 * 5 / (n + 5)``
    (shrunk toward a small multiple of the identity, so that a short window cannot give a
    degenerate mass matrix).

    Example::

      >>> draws = jnp.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
      >>> [round(float(v), 4) for v in regularised_variance(draws)]   # var 4 and 0, n = 3
      [1.5006, 0.0006]
    """
    return _shrink(jnp.var(draws, axis=0, ddof=1), draws.shape[0])


def regularised_covariance(draws: jax.Array) -> jax.Array:
    """Stan's regularised covariance of ``draws [n, D]``:
    ``n / (n + 5) cov + 1e-3 * 5 / (n + 5) I`` (the dense counterpart of
    :func:`regularised_variance`; symmetric positive definite whatever ``n``).

    Example::

      >>> draws = jnp.array([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])  # cov [[1, 2], [2, 4]]
      >>> [[round(float(v), 4) for v in row] for row in regularised_covariance(draws)]
      [[0.3756, 0.75], [0.75, 1.5006]]
    """
    size = draws.shape[1]
    return _shrink(jnp.cov(draws, rowvar=False, ddof=1).reshape(size, size), draws.shape[0])


class WindowWarmup(NamedTuple):
    """What :func:`window_adaptation` returns: :class:`Warmup`'s fields plus the adapted
    ``inverse_mass``: ``[D]`` (the draws' regularised variances) or, with
    ``dense_mass=True``, ``[D, D]`` (their regularised covariance).

    Attributes:
      sampler: ``make_sampler(step_size, inverse_mass)``, the sampler to draw with.
      states: the chains' states after warm-up ``[C, ...]``.
      step_size: the adapted step size (a JAX float32 scalar).
      inverse_mass: the adapted inverse mass, ``[D]`` or ``[D, D]``.
      info: the :class:`AdaptationInfo` trace of the whole warm-up (``step_size`` and
        ``acceptance_rate`` ``[num_warmup]``, the kernel's Info ``[num_warmup, C, ...]``).
    """

    sampler: Sampler
    states: Any
    step_size: jax.Array
    inverse_mass: jax.Array
    info: AdaptationInfo


class _PooledMoments(NamedTuple):
    """Running pooled moments of a window's draws: ``count``, ``mean [D]`` and ``scatter``,
    the summed squared deviations from the mean (``[D]``, or ``[D, D]`` outer products)."""

    count: jax.Array
    mean: jax.Array
    scatter: jax.Array


def _no_moments(inverse_mass: jax.Array) -> _PooledMoments:
    """No draws yet, for an inverse mass ``[D]`` or ``[D, D]`` (the scatter's shape)."""
    return _PooledMoments(jnp.zeros((), jnp.float32),
                          jnp.zeros(inverse_mass.shape[0], jnp.float32),
                          jnp.zeros_like(inverse_mass, jnp.float32))


def _add_draws(moments: _PooledMoments, draws: jax.Array) -> _PooledMoments:
    """Pool a batch ``draws [C, D]`` into the running moments (Chan et al.'s parallel update:
    stable in float32, where sums of squares would cancel)."""
    count, mean, scatter = moments
    batch_count = jnp.float32(draws.shape[0])
    batch_mean = draws.mean(axis=0)
    centred = draws - batch_mean
    dense = scatter.ndim == 2
    batch_scatter = centred.T @ centred if dense else jnp.sum(jnp.square(centred), axis=0)
    total = count + batch_count
    delta = batch_mean - mean
    cross = jnp.outer(delta, delta) if dense else jnp.square(delta)
    return _PooledMoments(total, mean + delta * batch_count / total,
                          scatter + batch_scatter + cross * count * batch_count / total)


def _window_schedule(num_warmup: int, initial_buffer: int, windows: list):
    """Per warm-up step: in the initial buffer (all of the warm-up without windows), in a
    slow window, the last step of a window, the last step of a phase (after which dual
    averaging restarts): four bool arrays ``[num_warmup]``."""
    initial = np.arange(num_warmup) < (initial_buffer if windows else num_warmup)
    in_window, window_end, phase_end = (np.zeros(num_warmup, bool) for _ in range(3))
    for start, end in windows:
        in_window[start:end] = True
        window_end[end - 1] = True
        phase_end[end - 1] = True
    if windows and initial_buffer:
        phase_end[initial_buffer - 1] = True
    return initial, in_window, window_end, phase_end


ACCEPTANCE_MEANS = ("harmonic_initial", "harmonic", "arithmetic")


def _pool_acceptance(acceptance_rate: jax.Array, how: str, initial: jax.Array) -> jax.Array:
    """The chains' acceptance probabilities ``[C]`` as one number: their arithmetic mean, or
    their harmonic mean (Hoffman, Radul & Sountsov 2021, ChEES), which a chain that accepts
    nothing drives to 0, so that a step size too large for one chain shrinks;
    ``"harmonic_initial"``: the harmonic mean where ``initial`` (the initial buffer), the
    arithmetic mean after."""
    arithmetic = jnp.mean(acceptance_rate)
    harmonic = 1.0 / jnp.mean(1.0 / jnp.maximum(acceptance_rate, 1e-10))
    if how == "arithmetic":
        return arithmetic
    if how == "harmonic":
        return harmonic
    return jnp.where(initial, harmonic, arithmetic)


@functools.partial(jax.jit, static_argnames=("make_sampler", "num_warmup", "initial_buffer",
                                             "windows", "acceptance_mean",
                                             "target_acceptance", "gamma", "t0", "kappa"))
def _windowed_warmup(rng_key, states, params, cond, initial_step_size, initial_mass, *,
                     make_sampler, num_warmup, initial_buffer, windows, acceptance_mean,
                     target_acceptance, gamma, t0, kappa):
    """Stan's windowed warm-up as one ``lax.scan`` (one compiled program) from the inverse
    mass ``initial_mass`` (``[D]``, or ``[D, D]`` to adapt a dense one): returns
    ``(states, step size, inverse mass, AdaptationInfo)``."""
    num_chains, size = jax.tree.leaves(states)[0].shape[0], initial_mass.shape[0]
    no_draws = _no_moments(initial_mass)

    def body(carry, xs):
        chain_states, da_state, inverse_mass, moments = carry
        key, initial, in_window, window_end, phase_end = xs
        step_size = jnp.exp(da_state.log_step_size)
        chain_states, info = _step_chains(make_sampler(step_size, inverse_mass).step, key,
                                          chain_states, params, cond)
        acceptance = _pool_acceptance(info.acceptance_rate, acceptance_mean, initial)
        da_state = dual_averaging_update(da_state, acceptance, target_acceptance, gamma=gamma,
                                         t0=t0, kappa=kappa)
        draws = chain_states.position.reshape(num_chains, size).astype(jnp.float32)
        moments = jax.tree.map(lambda new, old: jnp.where(in_window, new, old),
                               _add_draws(moments, draws), moments)
        # A window's end: the inverse mass from its pooled draws, and the moments start over.
        variance = moments.scatter / jnp.maximum(moments.count - 1.0, 1.0)
        inverse_mass = jnp.where(window_end, _shrink(variance, moments.count), inverse_mass)
        moments = jax.tree.map(lambda fresh, old: jnp.where(window_end, fresh, old),
                               no_draws, moments)
        # A phase's end: dual averaging restarts from the averaged step size reached.
        da_state = jax.tree.map(lambda fresh, old: jnp.where(phase_end, fresh, old),
                                dual_averaging_init(final_step_size(da_state)), da_state)
        return (chain_states, da_state, inverse_mass, moments), AdaptationInfo(
            step_size, acceptance, info)

    schedule = _window_schedule(num_warmup, initial_buffer, list(windows))
    xs = (jax.random.split(rng_key, num_warmup),) + tuple(jnp.asarray(a) for a in schedule)
    carry = (states, dual_averaging_init(initial_step_size), initial_mass, no_draws)
    (states, da_state, inverse_mass, _), trace = jax.lax.scan(body, carry, xs)
    return states, final_step_size(da_state), inverse_mass, trace


def window_adaptation(rng_key: jax.Array, make_sampler: Callable[..., Sampler], positions: Any,
                      params: Any, *cond: Any, initial_step_size, num_warmup: int,
                      target_acceptance: float = 0.8, initial_buffer: int = 75,
                      final_buffer: int = 50, first_window: int = 25,
                      dense_mass: bool = False, acceptance_mean: str = "harmonic_initial",
                      gamma: float = GAMMA, t0: float = T0,
                      kappa: float = KAPPA) -> WindowWarmup:
    """Stan's warm-up for chains that share a step size and a mass matrix (diagonal, or
    dense with ``dense_mass=True``).

    :func:`warmup_windows` gives the phases. Dual averaging adapts the step size throughout
    (on the chains' acceptance: by default their harmonic mean in the initial buffer, their
    mean after); at the end of each slow window the inverse mass
    matrix becomes the :func:`regularised_variance` (or :func:`regularised_covariance`) of
    that window's draws, pooled over chains (``n`` = chains x window length), and dual
    averaging restarts from the averaged step size reached (as it does after the initial
    buffer). The final buffer adapts the step size to the last mass matrix. The whole
    warm-up is one compiled ``lax.scan`` (the schedule is data, the step size and the mass
    matrix are carried), compiled once for a given sampler, chain count and warm-up length.

    Args:
      rng_key: one PRNG key.
      make_sampler: ``make_sampler(step_size, inverse_mass) -> Sampler`` whose steps report
        an ``acceptance_rate``, e.g. ``lambda h, m: hmc(energy_fn, h, 10, inverse_mass=m)``
        or ``lambda h, m: mala(energy_fn, h, inverse_mass=m)`` (both arguments are
        traced); ``inverse_mass`` is ``[D]`` (``[D, D]`` with ``dense_mass``), ``D`` the
        flattened position size. Its states need a ``position`` field. Pass the same
        function object to reuse the compiled warm-up.
      positions: chain starts ``[C, ...]``.
      params: shared energy parameters.
      initial_step_size, num_warmup, target_acceptance (default 0.8, Stan's), gamma, t0,
        kappa: as in :func:`adapt_step_size`.
      initial_buffer, final_buffer, first_window: Stan's 75, 50 and 25.
      dense_mass: estimate a dense inverse mass (the covariance: correlations included;
        ``D (D + 1) / 2`` numbers, so use enough chains x window draws) instead of the
        diagonal.
      acceptance_mean: how the chains' acceptance probabilities make the one number dual
        averaging sees. ``"harmonic"``: their harmonic mean (ChEES's choice): a chain that
        accepts nothing, e.g. one started where the gradient is huge, pulls it to 0 and the
        shared step shrinks until that chain moves. ``"arithmetic"``: their mean (as
        :func:`adapt_step_size_chains`); measured, a MALA chain of four on a logistic
        regression stayed at its start through 5,000 warm-up steps. ``"harmonic_initial"``
        (default): harmonic in the initial buffer, where chains travel to the typical set,
        arithmetic after (the harmonic mean throughout settles on smaller steps: measured
        ESS/s 0.7-0.9 times the arithmetic mean's on the logistic regression).

    Returns:
      A :class:`WindowWarmup` ``(sampler, states, step_size, inverse_mass, info)``. Call it
      outside ``jit`` (it returns a sampler).

    Example::

      >>> from ebm_jax.samplers import hmc
      >>> energy = lambda p, x: 0.5 * jnp.sum((x / jnp.array([1.0, 10.0])) ** 2)
      >>> warm = window_adaptation(jax.random.key(0),
      ...                          lambda h, m: hmc(energy, h, 10, inverse_mass=m),
      ...                          jnp.zeros((16, 2)), None, initial_step_size=0.1,
      ...                          num_warmup=300)
      >>> warm.inverse_mass.shape            # about the variances (1, 100)
      (2,)
    """
    _check_constructor(make_sampler, "(step_size, inverse_mass) -> Sampler")
    _check_warmup(num_warmup, initial_step_size, target_acceptance)
    _check_hyperparameters(gamma, t0, kappa)
    dense_mass = check_flag("dense_mass", dense_mass)
    check_choice("acceptance_mean", acceptance_mean, ACCEPTANCE_MEANS)
    size = int(np.prod(jnp.shape(positions)[1:]))
    identity = jnp.eye(size, dtype=jnp.float32) if dense_mass else jnp.ones(size, jnp.float32)
    first = _first_sampler(make_sampler, (initial_step_size, identity),
                           f"{initial_step_size}, inverse_mass")
    states = init_chains(first, positions, params, *cond)
    start, windows, _ = warmup_windows(num_warmup, initial_buffer, final_buffer, first_window)
    states, step_size, inverse_mass, info = _windowed_warmup(
        rng_key, states, params, cond, jnp.float32(initial_step_size), identity,
        make_sampler=make_sampler, num_warmup=num_warmup, initial_buffer=start,
        windows=tuple(windows), acceptance_mean=acceptance_mean,
        target_acceptance=target_acceptance, gamma=gamma, t0=t0, kappa=kappa)
    # The cached energies and gradients of HMC/MALA states do not depend on the mass matrix.
    return WindowWarmup(make_sampler(step_size, inverse_mass), states, step_size, inverse_mass,
                        info)
