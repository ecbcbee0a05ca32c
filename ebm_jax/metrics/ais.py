"""Annealed importance sampling (AIS) estimates of the log normaliser ``log Z`` of an energy.

For an energy ``E`` (``p(x) = exp(-E(x)) / Z``) and a normalised *base*
distribution ``p_b`` that can be sampled, AIS (Neal 2001) walks chains along
the geometric path of unnormalised densities::

    f_β(x) = p_b(x)^(1-β) exp(-E(x))^β,      0 = β_0 <= β_1 <= ... <= β_{T-1} = 1,

i.e. the tempered energies ``E_β(x) = β E(x) - (1 - β) log p_b(x)``, with
``Z_0 = 1`` (``p_b`` is normalised) and ``Z_{T-1} = Z``. Each chain starts from
an exact draw ``x ~ p_b`` and, for ``t = 1, ..., T-1``, adds the incremental
log-weight ``log f_{β_t}(x) - log f_{β_{t-1}}(x) = -(β_t - β_{t-1}) (E(x) + log p_b(x))``
and then (for ``t < T-1``) moves ``x`` by ``K`` MALA steps that leave
``f_{β_t}`` invariant. Every weight ``w`` has ``E[w] = Z``, so::

    log Ẑ = log mean_c w_c                     (AISResult.log_z)

Lower bound. ``Ẑ`` is unbiased for ``Z`` but ``log Ẑ`` is not: by Jensen,
``E[log Ẑ] <= log E[Ẑ] = log Z``, so the forward estimate is a *stochastic
lower bound* of ``log Z`` (it can exceed it on a given run, not on average;
and ``P(log Ẑ > log Z + a) <= exp(-a)`` by Markov's inequality). To second order
the bias is ``E[log Ẑ] - log Z ≈ -Var(w) / (2 C E[w]²) = -stderr² / 2``: negligible
when the reported ``log_z_stderr`` is small, but a degenerate run (tiny ``ess``)
both underestimates ``log Z`` and underestimates its own standard error, since
the weights' variance is dominated by rare chains that were never drawn. More
temperatures (and more MCMC steps) shrink the bias. In ``tests/metrics/test_ais.py``
(Gaussians in 2-D and 10-D and a 2-D mixture, 512 chains, 100-200 temperatures),
over 100 seeds per target the error divided by the reported stderr had standard
deviation 0.9-1.1 and the mean error was below what 100 seeds resolve.

Tuning: watch ``acceptance_rate`` (per temperature; ~0.6-0.9 for MALA here) and
``ess``; a base close to the target (e.g. ``fit_gaussian`` to data, widened)
needs fewer temperatures; the step size usually has to shrink along the path
as the tempered density sharpens (pass one per temperature). Increasing the
number of temperatures beats adding MCMC steps at few temperatures.

Reverse AIS (upper bound). With ``reverse=True`` and ``init_positions`` exact
draws of the *target* ``p`` (available for simulated data, e.g. an
:class:`~ebm_jax.energies.AnalyticEnergy` or data generated from the model),
the same chains run the path backwards (``β`` from 1 to 0); their weights
estimate ``1 / Z`` without bias, and ``log_z = -log mean_c w_c`` is a stochastic
*upper* bound: ``E[log_z] >= log Z``. Forward and reverse together sandwich
``log Z`` (bidirectional Monte Carlo, Grosse, Ghahramani & Adams 2015); the gap
between them bounds the error of either. Starting reverse chains from
approximate samples (e.g. a long MCMC run) voids the guarantee.

Cost: ``(T - 2) (K + 1) + 1`` energy-and-gradient evaluations per chain (the
transition at ``β = 1`` would not change any weight and is skipped).

Example::

    >>> from ebm_jax.energies.distributions import fit_gaussian
    >>> energy_fn = lambda scale, x: 0.5 * jnp.sum((x / scale) ** 2)   # log Z = log 2π s1 s2
    >>> data = 2.0 * jax.random.normal(jax.random.key(0), (1000, 2))  # roughly the model
    >>> base = fit_gaussian(data, scale=1.5)
    >>> res = ais_log_z(jax.random.key(1), energy_fn, jnp.array([2.0, 2.0]), base=base,
    ...                 num_chains=128, num_temperatures=50, step_size=0.5)
    >>> bool(abs(res.log_z - jnp.log(8 * jnp.pi)) < 4 * res.log_z_stderr + 0.05)
    True
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int, check_positive_finite, check_scalar_fn
from ebm_jax.energies.distributions import NoiseDistribution, check_noise
from ebm_jax.samplers.mala import MALAState, mala_kernel

__all__ = ["AISResult", "ais_betas", "ais_log_z"]

_SCHEDULES = ("linear", "sigmoid")


class AISResult(NamedTuple):
    """The outcome of :func:`ais_log_z`.

    Attributes:
      log_z: scalar estimate of ``log Z``: ``logmeanexp(log_weights)`` (forward,
        a stochastic lower bound), or ``-logmeanexp(log_weights)`` (reverse, a
        stochastic upper bound).
      log_weights: ``[num_chains]`` log importance weights; ``exp`` of each is an
        unbiased estimate of ``Z`` (forward) or of ``1 / Z`` (reverse).
      log_z_stderr: scalar delta-method standard error of ``log_z``:
        ``sd(w) / (sqrt(C) mean(w))`` (sample sd, ``ddof=1``). It is only
        trustworthy when ``ess`` is a sizeable fraction of ``num_chains``.
      ess: scalar effective sample size of the weights, ``(Σ w)² / Σ w²``, in
        ``[1, num_chains]``.
      acceptance_rate: ``[num_temperatures - 2]`` mean MALA acceptance
        probability at each intermediate temperature (over chains and the ``K``
        steps), in the order the chains visited them; aim for ~0.5-0.8 everywhere.
      positions: ``[num_chains, *shape]`` the chains' final positions (forward:
        weighted approximate draws of the target, to be reweighted by
        ``softmax(log_weights)``).
    """

    log_z: jax.Array
    log_weights: jax.Array
    log_z_stderr: jax.Array
    ess: jax.Array
    acceptance_rate: jax.Array
    positions: jax.Array


class _ById:
    """A hashable-by-identity box, so that any callable or distribution can be a static jit
    argument (an AnalyticEnergy holds arrays and is not hashable)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __hash__(self):
        return id(self.value)

    def __eq__(self, other):
        return isinstance(other, _ById) and other.value is self.value


def _is_tracer(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def _check_int(name: str, value, minimum: int) -> int:
    return check_int(name, value, minimum, expected=f"a Python int >= {minimum}")


def ais_betas(num_temperatures: int, schedule: str = "sigmoid", *,
              sigmoid_scale: float = 4.0) -> jax.Array:
    """An annealing schedule ``β [num_temperatures]`` from exactly 0 to exactly 1.

    * ``"linear"``: equally spaced.
    * ``"sigmoid"`` (Grosse, Ghahramani & Adams 2015, the schedule of their and Wu
      et al. 2017's AIS experiments): ``β̃_t = σ(δ (2t / (T-1) - 1))`` rescaled to
      ``[0, 1]``, with ``δ = sigmoid_scale``: denser near both ends, where for
      targets much narrower or wider than the base the path changes fastest.

    Args:
      num_temperatures: ``T >= 2``, the number of distributions on the path,
        both ends included.
      schedule: ``"linear"`` or ``"sigmoid"``.
      sigmoid_scale: ``δ > 0`` (4 in the papers); larger packs more
        temperatures at the ends.

    Example::

      >>> ais_betas(5, "linear")
      Array([0.  , 0.25, 0.5 , 0.75, 1.  ], dtype=float32)
    """
    num_temperatures = _check_int("num_temperatures", num_temperatures, 2)
    if schedule not in _SCHEDULES:
        raise ValueError(f"schedule={schedule!r}: expected 'linear', 'sigmoid' or an array of "
                         "betas")
    check_positive_finite("sigmoid_scale", sigmoid_scale)
    u = np.linspace(-1.0, 1.0, num_temperatures)
    if schedule == "linear":
        betas = (u + 1.0) / 2.0
    else:
        s = 1.0 / (1.0 + np.exp(-float(sigmoid_scale) * u))
        betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0
    return jnp.asarray(betas, jnp.float32)


def _resolve_betas(schedule, num_temperatures, sigmoid_scale) -> jax.Array:
    if isinstance(schedule, str):
        if num_temperatures is None:
            raise ValueError(f"num_temperatures=None with schedule={schedule!r}: expected a "
                             "Python int >= 2 (or pass the betas themselves as schedule)")
        return ais_betas(num_temperatures, schedule, sigmoid_scale=sigmoid_scale)
    try:
        betas = jnp.asarray(schedule)
    except TypeError:
        raise ValueError(f"schedule={schedule!r}: expected 'linear', 'sigmoid' or an array of "
                         "betas") from None
    if betas.ndim != 1 or betas.shape[0] < 2 or not jnp.issubdtype(betas.dtype, jnp.number):
        raise ValueError(f"schedule has shape {betas.shape} and dtype {betas.dtype}: expected a "
                         "1-D array of at least 2 betas from 0 to 1")
    if num_temperatures is not None and num_temperatures != betas.shape[0]:
        raise ValueError(f"num_temperatures={num_temperatures!r} but schedule has "
                         f"{betas.shape[0]} betas: expected them equal (or num_temperatures=None)")
    if not _is_tracer(betas):
        b = np.asarray(schedule, np.float64)  # the user's values, for the message
        if not (np.all(np.isfinite(b)) and b[0] == 0.0 and b[-1] == 1.0
                and np.all(np.diff(b) >= 0)):
            raise ValueError(f"schedule={np.array2string(b, threshold=8)}: expected "
                             "non-decreasing betas with betas[0] == 0 and betas[-1] == 1")
    return betas.astype(jnp.float32)


def _resolve_step_sizes(step_size, num_temperatures: int) -> jax.Array:
    bad = (f"step_size={step_size!r}: expected a positive finite number or an array of "
           f"{num_temperatures} of them (one per temperature)")
    if isinstance(step_size, (bool, np.bool_)):
        raise ValueError(bad)
    try:
        h = jnp.asarray(step_size)
    except TypeError:
        raise ValueError(bad) from None
    if h.shape not in ((), (num_temperatures,)) or not jnp.issubdtype(h.dtype, jnp.number):
        raise ValueError(f"step_size has shape {h.shape}: expected a scalar or "
                         f"({num_temperatures},), one per temperature")
    if not _is_tracer(h):
        values = np.asarray(step_size, np.float64)
        if not (np.all(np.isfinite(values)) and np.all(values > 0)):
            raise ValueError(bad if h.shape == () else
                             f"step_size={np.array2string(values, threshold=8)}: expected "
                             "positive finite numbers")
    return jnp.broadcast_to(h.astype(jnp.float32), (num_temperatures,))


def _check_base(base) -> tuple[tuple[int, ...], Any]:
    """The example shape and sample dtype of ``base``, checked by tracing (no compute)."""
    if not (callable(getattr(base, "sample", None)) and callable(getattr(base, "log_prob", None))):
        raise ValueError(f"base={base!r}: expected a NoiseDistribution "
                         "(ebm_jax.energies.distributions, e.g. fit_gaussian(data)) or any "
                         "object with sample(rng_key, n) -> [n, *shape] and a normalised "
                         "per-example log_prob(x) -> scalar")
    try:
        samples = jax.eval_shape(lambda k: base.sample(k, 2), jax.random.PRNGKey(0))
    except (TypeError, ValueError) as err:
        raise ValueError(f"base.sample(rng_key, 2) failed ({type(err).__name__}: {err}): "
                         "expected sample(rng_key, n) -> [n, *shape]") from err
    if not hasattr(samples, "shape") or samples.ndim < 1 or samples.shape[0] != 2 \
            or not jnp.issubdtype(samples.dtype, jnp.floating):
        got = getattr(samples, "shape", type(samples).__name__)
        raise ValueError(f"base.sample(rng_key, 2) returned {got}: expected a floating-point "
                         "array [2, *shape]")
    shape = tuple(samples.shape[1:])
    if isinstance(base, NoiseDistribution):
        check_noise(base, shape, who="base")
    else:
        try:
            out = jax.eval_shape(base.log_prob, jax.ShapeDtypeStruct(shape, samples.dtype))
        except (TypeError, ValueError) as err:
            raise ValueError(f"base.log_prob failed on one example of shape {shape} "
                             f"({type(err).__name__}: {err}): expected a per-example "
                             "log_prob(x) -> scalar") from err
        if getattr(out, "shape", None) != ():
            raise ValueError(f"base.log_prob of one example of shape {shape} returned shape "
                             f"{getattr(out, 'shape', type(out).__name__)}: expected a scalar "
                             "(log_prob is per example)")
    return shape, samples.dtype


def _check_energy(energy_fn, params, cond, shape, dtype) -> None:
    check_scalar_fn("energy_fn", energy_fn, params, jax.ShapeDtypeStruct(shape, dtype), *cond)


def ais_log_z(rng_key: jax.Array, energy_fn, params: Any, *cond: Any, base,
              num_chains: int, step_size: Union[float, jax.Array, Sequence[float]],
              num_temperatures: Optional[int] = None,
              schedule: Union[str, jax.Array, Sequence[float]] = "sigmoid",
              num_mcmc_steps: int = 1, sigmoid_scale: float = 4.0, reverse: bool = False,
              init_positions: Optional[jax.Array] = None) -> AISResult:
    """Estimate ``log Z = log ∫ exp(-E(x)) dx`` by annealed importance sampling from ``base``.

    See the module docstring for the path, the weights, why the forward estimate
    is a stochastic lower bound (``E[log Ẑ] <= log Z``) and the reverse one an
    upper bound. One ``lax.scan`` over the temperatures, chains ``vmap``-ed,
    transitions by :func:`~ebm_jax.samplers.mala_kernel` on the tempered energy
    ``E_β(x) = β E(x, *cond) - (1 - β) log p_b(x)``. Pure and jittable
    (``num_chains``, ``num_temperatures``, ``num_mcmc_steps``, ``reverse``, the
    string schedule, ``energy_fn`` and ``base`` must be static); the work itself
    runs under an internal ``jax.jit``, compiled once per ``energy_fn``/``base``
    object and sizes.

    Args:
      rng_key: a PRNG key.
      energy_fn: pure per-example energy ``energy_fn(params, x[*shape], *cond) -> scalar``.
      params: the energy's parameters (a pytree; may be traced).
      *cond: conditioning arguments passed to every energy call and shared by
        all chains (e.g. a class label, to estimate ``log Z(y)``).
      base: a normalised distribution with ``sample(rng_key, n) -> [n, *shape]``
        and per-example ``log_prob(x[*shape]) -> scalar``: a
        :class:`~ebm_jax.energies.distributions.NoiseDistribution` (e.g.
        ``fit_gaussian(data, scale=1.5)``, or a standard normal
        ``from_pair(lambda k, n: jax.random.normal(k, (n, D)), lambda x: -0.5 * x @ x
        - 0.5 * D * jnp.log(2 * jnp.pi), (D,))``) or an
        :class:`~ebm_jax.energies.AnalyticEnergy`. The closer it is to the
        target, the fewer temperatures are needed. Its ``log_prob`` must be the
        normalised density of its ``sample``: any mismatch biases ``log Z``.
      num_chains: ``C >= 2`` independent chains (weights).
      step_size: MALA step size ``h``: a positive number, or an array
        ``[num_temperatures]`` with ``step_size[t]`` used at ``betas[t]`` (the
        end entries are unused). A good per-temperature choice for a Gaussian-ish
        target of precision ``P`` from a standard-normal base: ``h_t ≈ c /
        ((1 - β_t) + β_t λ_max(P))`` with ``c ≈ 1`` in 2-D, smaller in higher
        dimension (``∝ D^{-1/3}``). Check ``acceptance_rate``.
      num_temperatures: ``T >= 2`` betas, both ends included (required with a
        string ``schedule``; with an array it may be omitted).
      schedule: ``"sigmoid"`` (default), ``"linear"`` (see :func:`ais_betas`), or
        the betas themselves: a non-decreasing ``[T]`` array with ``betas[0] == 0``
        and ``betas[-1] == 1``.
      num_mcmc_steps: ``K >= 1`` MALA steps at each intermediate temperature.
      sigmoid_scale: ``δ`` of the sigmoid schedule.
      reverse: run the path from the target to the base (upper bound); needs
        ``init_positions``.
      init_positions: ``[num_chains, *shape]`` exact draws of the target, for
        ``reverse=True`` only.

    Returns:
      An :class:`AISResult` (``log_z``, ``log_weights [C]``, ``log_z_stderr``,
      ``ess``, ``acceptance_rate [T - 2]``, ``positions [C, *shape]``).

    Raises:
      ValueError: before any compute, naming the argument, what was got and
        what was expected.

    Example::

      >>> from ebm_jax.energies import gaussian
      >>> from ebm_jax.energies.distributions import from_pair
      >>> start = gaussian(jnp.zeros(2), jnp.eye(2))
      >>> base = from_pair(start.sample, lambda x: -start.energy_fn(None, x) - start.log_z, (2,))
      >>> target = gaussian(jnp.ones(2), 0.5 * jnp.eye(2))     # log Z known
      >>> res = ais_log_z(jax.random.key(0), target.energy_fn, None, base=base,
      ...                 num_chains=128, num_temperatures=50, step_size=0.3)
      >>> bool(abs(res.log_z - target.log_z) < 4 * res.log_z_stderr + 0.05)   # ≈ equal
      True
    """
    num_chains = _check_int("num_chains", num_chains, 2)
    num_mcmc_steps = _check_int("num_mcmc_steps", num_mcmc_steps, 1)
    if num_temperatures is not None:
        num_temperatures = _check_int("num_temperatures", num_temperatures, 2)
    if not isinstance(reverse, (bool, np.bool_)):
        raise ValueError(f"reverse={reverse!r}: expected True or False")
    shape, dtype = _check_base(base)
    _check_energy(energy_fn, params, cond, shape, dtype)
    betas = _resolve_betas(schedule, num_temperatures, sigmoid_scale)
    step_sizes = _resolve_step_sizes(step_size, betas.shape[0])
    if reverse:
        if init_positions is None:
            raise ValueError("init_positions=None with reverse=True: expected "
                             f"[{num_chains}, *{shape}] exact draws of the target")
        init_positions = jnp.asarray(init_positions)
        if init_positions.shape != (num_chains, *shape) \
                or not jnp.issubdtype(init_positions.dtype, jnp.floating):
            raise ValueError(f"init_positions has shape {init_positions.shape} and dtype "
                             f"{init_positions.dtype}: expected floating-point "
                             f"{(num_chains, *shape)} ([num_chains, *base example shape])")
        init_positions = init_positions.astype(dtype)
    elif init_positions is not None:
        raise ValueError("init_positions was given with reverse=False: expected None (forward "
                         "AIS starts from exact draws of the base)")
    return _ais(rng_key, params, cond, betas, step_sizes, init_positions,
                energy_fn=_ById(energy_fn), base=_ById(base), num_chains=num_chains,
                num_mcmc_steps=num_mcmc_steps, reverse=bool(reverse))


@functools.partial(jax.jit, static_argnames=("energy_fn", "base", "num_chains",
                                             "num_mcmc_steps", "reverse"))
def _ais(rng_key, params, cond, betas, step_sizes, init_positions, *, energy_fn, base,
         num_chains, num_mcmc_steps, reverse):
    energy_fn, base = energy_fn.value, base.value
    log_prob = base.log_prob

    def tempered_energy(params, x, beta, *cond):
        return beta * energy_fn(params, x, *cond) - (1.0 - beta) * log_prob(x)

    kernel = jax.vmap(mala_kernel(tempered_energy), in_axes=(0, 0, None, None, None)
                      + (None,) * len(cond))
    energy_vg = jax.vmap(jax.value_and_grad(energy_fn, argnums=1),
                         in_axes=(None, 0) + (None,) * len(cond))
    log_prob_vg = jax.vmap(jax.value_and_grad(log_prob))

    key_init, key_path = jax.random.split(rng_key)
    if reverse:
        betas, step_sizes, x = betas[::-1], step_sizes[::-1], init_positions
    else:
        x = base.sample(key_init, num_chains)
    num_temperatures = betas.shape[0]
    log_w = jnp.zeros(num_chains, jnp.float32)

    def temperature(carry, inputs):
        x, log_w = carry
        beta_prev, beta, h, key = inputs
        e, grad_e = energy_vg(params, x, *cond)
        lp, grad_lp = log_prob_vg(x)
        # log f_β(x) - log f_β'(x) with log f_β = (1 - β) log p_b - β E.
        log_w = log_w + (beta - beta_prev) * (-e - lp)
        state = MALAState(x, beta * e - (1.0 - beta) * lp,
                          beta * grad_e - (1.0 - beta) * grad_lp)

        def mcmc_step(state, step_key):
            state, info = kernel(jax.random.split(step_key, num_chains), state, params, h, beta,
                                 *cond)
            return state, jnp.mean(info.acceptance_rate)

        state, acceptance = jax.lax.scan(mcmc_step, state,
                                         jax.random.split(key, num_mcmc_steps))
        return (state.position, log_w), jnp.mean(acceptance)

    inputs = (betas[:-2], betas[1:-1], step_sizes[1:-1],
              jax.random.split(key_path, num_temperatures - 2))
    (x, log_w), acceptance_rate = jax.lax.scan(temperature, (x, log_w), inputs)
    e = jax.vmap(energy_fn, in_axes=(None, 0) + (None,) * len(cond))(params, x, *cond)
    lp = jax.vmap(log_prob)(x)
    log_w = log_w + (betas[-1] - betas[-2]) * (-e - lp)

    log_mean_w = jax.nn.logsumexp(log_w) - jnp.log(num_chains)
    w = jnp.exp(log_w - jnp.max(log_w))  # rescaled weights, max 1
    stderr = jnp.std(w, ddof=1) / (jnp.sqrt(num_chains) * jnp.mean(w))
    ess = jnp.sum(w) ** 2 / jnp.sum(w**2)
    log_z = -log_mean_w if reverse else log_mean_w
    return AISResult(log_z, log_w, stderr, ess, acceptance_rate, x)
