"""Annealed Langevin dynamics as a pure ``init/step`` sampler with a step counter.

The chain's state carries an int32 step counter; the step it is at decides the
*stage* of the anneal, and the stage decides the level (and the step size and
noise) used::

    stage(s) = min(s // steps_per_level, num_levels - 1)

so running :func:`~ebm_jax.samplers.run_chain` for ``num_levels * steps_per_level``
steps performs the whole anneal in one ``lax.scan`` (:func:`annealed_sample` does
exactly that for a batch of chains). Steps past the end stay at the last stage.

Two modes:

* ``mode="noise"`` (NCSN, Song & Ermon 2019; diffusion recovery likelihood):
  ``energy_fn(params, x, level, *cond)`` is a noise-conditional energy,
  ``level`` an int32 scalar with **level 0 the least noise** (as in
  :mod:`ebm_jax.losses.recovery_likelihood`, where the level grows with the
  noise). ``levels`` are the per-level noise scales ``sigmas[0] <= sigmas[1] <= ...``
  and the anneal runs from the highest level down to level 0:
  ``level(s) = num_levels - 1 - stage(s)``. Each step targets ``exp(-E(x, level))``.
* ``mode="temperature"``: ``energy_fn(params, x, *cond)`` and ``levels`` are
  temperatures ``T_0 >= T_1 >= ...`` in annealing order; stage ``k`` targets
  ``exp(-E(x) / T_k)``: ``level(s) = stage(s)``.

Either way one step is the Langevin step (:func:`~ebm_jax.samplers.langevin_kernel`,
temperature form) at the current level::

    x' = clip(x - h_l ∇E_l(x) + s_l ε),    ε ~ N(0, I),    s_l = sqrt(2 h_l T_l)

with ``T_l = 1`` in noise mode, unless ``noise_scales`` gives the per-level
``s_l`` explicitly (the decoupled form). ``step_sizes[l]`` and ``noise_scales[l]``
go with ``levels[l]``.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_bounds, check_choice, check_in_range, check_int
from ebm_jax.samplers.base import Sampler, init_chains, run_chains
from ebm_jax.samplers.langevin import LangevinState, langevin_kernel

_MODES = ("noise", "temperature")


class AnnealedState(NamedTuple):
    """One chain of annealed Langevin.

    Attributes:
      position: one example, any shape.
      step: int32 scalar, the number of steps taken (the anneal's clock).
    """

    position: jax.Array
    step: jax.Array


class AnnealedInfo(NamedTuple):
    """Diagnostics of one step, measured at the position the step started from.

    Attributes:
      energy: scalar energy at the step's level (``E(x, level)`` in noise mode,
        the untempered ``E(x)`` in temperature mode).
      grad_norm: L2 norm of that energy's gradient.
      level: int32, the index into ``levels`` (and ``step_sizes``) this step used:
        the noise level passed to ``energy_fn`` in noise mode, the temperature's
        index in temperature mode.
      nonfinite: 1 if the energy or gradient was NaN/inf, else 0 (that step
        leaves the position unchanged).
    """

    energy: jax.Array
    grad_norm: jax.Array
    level: jax.Array
    nonfinite: jax.Array


class AnnealingSchedule(NamedTuple):
    """The static schedule of an annealed sampler (NumPy float64 arrays, validated).

    Attributes:
      mode: ``"noise"`` or ``"temperature"``.
      levels: ``[L]`` noise scales (non-decreasing) or temperatures (non-increasing).
      steps_per_level: steps spent at each level.
      step_sizes: ``[L]`` step size at each level.
      noise_scales: ``[L]`` noise standard deviation at each level.
    """

    mode: str
    levels: np.ndarray
    steps_per_level: int
    step_sizes: np.ndarray
    noise_scales: np.ndarray

    @property
    def num_levels(self) -> int:
        """``L``."""
        return len(self.levels)

    @property
    def num_steps(self) -> int:
        """``L * steps_per_level``: the length of the whole anneal."""
        return self.num_levels * self.steps_per_level

    def level_at(self, step):
        """The level index used at step ``step`` (int or int array; works traced).

        Stage ``min(step // steps_per_level, L - 1)``; the level is the stage in
        temperature mode and ``L - 1 - stage`` in noise mode.
        """
        stage = jnp.minimum(jnp.asarray(step) // self.steps_per_level, self.num_levels - 1)
        return (self.num_levels - 1 - stage) if self.mode == "noise" else stage


class AnnealedSampler(Sampler):
    """A :class:`~ebm_jax.samplers.Sampler` ``(init, step, support)`` that also carries its
    :class:`AnnealingSchedule` as the attribute ``schedule`` (used by
    :func:`annealed_sample` to run exactly the whole anneal)."""

    def __new__(cls, init, step, schedule: AnnealingSchedule, support=None):
        self = super().__new__(cls, init, step, support)
        self.schedule = schedule
        return self

    def __getnewargs__(self):
        return (self.init, self.step, self.schedule, self.support)

    def _replace(self, **kwargs) -> "AnnealedSampler":
        plain = Sampler(self.init, self.step, self.support)._replace(**kwargs)
        return AnnealedSampler(plain.init, plain.step, self.schedule, plain.support)


def _per_level(name: str, value, num_levels: int, *, allow_zero: bool) -> np.ndarray:
    """A scalar or a ``[num_levels]`` sequence of positive (or >= 0) finite numbers."""
    expected = (f"a {'non-negative' if allow_zero else 'positive'} number or a sequence of "
                f"{num_levels} such numbers (one per level)")
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: expected {expected}") from None
    if arr.ndim == 0:
        arr = np.full(num_levels, float(arr))
    if arr.shape != (num_levels,):
        raise ValueError(f"{name}={value!r} has shape {np.shape(value)}: expected {expected}")
    bad = ~np.isfinite(arr) | ((arr < 0) if allow_zero else (arr <= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}={value!r}: element {i} is {float(arr[i])!r}; "
                         f"expected {expected}")
    return arr


def _check_levels(levels, mode: str) -> np.ndarray:
    what = ("noise scales sigmas[0] <= sigmas[1] <= ... (level 0 the least noise)"
            if mode == "noise" else "temperatures T_0 >= T_1 >= ... (in annealing order)")
    expected = f"a non-empty 1-D sequence of positive finite {what}"
    try:
        arr = np.asarray(levels, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"levels={levels!r}: expected {expected}") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"levels={levels!r} has shape {arr.shape}: expected {expected}")
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"levels={levels!r}: element {i} is {float(arr[i])!r}; "
                         f"expected {expected}")
    wrong = np.diff(arr) < 0 if mode == "noise" else np.diff(arr) > 0
    if wrong.any():
        i = int(np.argmax(wrong))
        relation = "<" if mode == "noise" else ">"
        raise ValueError(f"levels={levels!r}: levels[{i + 1}]={float(arr[i + 1])!r} {relation} "
                         f"levels[{i}]={float(arr[i])!r}; expected {what}")
    return arr


def song_ermon_step_sizes(sigmas: Union[Sequence[float], np.ndarray], eps: float) -> np.ndarray:
    """Song & Ermon's (2019) per-level step sizes ``eps * sigma_i**2 / sigma_min**2``.

    Their ``α_i = ε σ_i² / σ_L²`` with ``σ_L`` the *smallest* noise; here levels are
    indexed with level 0 the least noise, so ``sigma_min = sigmas[0]`` and the
    step size grows with the level. The step size at level 0 is ``eps``.

    Args:
      sigmas: ``[L]`` positive non-decreasing noise scales.
      eps: the step size at the smallest noise (> 0).

    Returns:
      ``[L]`` NumPy float64 step sizes, ready for ``annealed_langevin(..., step_sizes=...)``.

    Example::

      >>> song_ermon_step_sizes([0.1, 0.2, 0.4], 1e-3)
      array([0.001, 0.004, 0.016])
    """
    sigmas = _check_levels(sigmas, "noise")
    eps = check_in_range("eps", eps, 0, math.inf, include_low=False,
                         expected="a positive number")
    return eps * sigmas**2 / sigmas.min() ** 2


def annealed_langevin(energy_fn, levels, steps_per_level: int, step_sizes, *, mode: str = "noise",
                      noise_scales=None,
                      clip_range: Optional[tuple[float, float]] = None) -> AnnealedSampler:
    """Build an annealed Langevin sampler.

    Args:
      energy_fn: in noise mode ``energy_fn(params, x, level, *cond) -> scalar`` with
        ``level`` an int32 scalar (0 = least noise); in temperature mode
        ``energy_fn(params, x, *cond) -> scalar``.
      levels: ``[L]`` noise scales ``sigmas`` (noise mode: non-decreasing with the
        level index, level 0 the least noise; annealing visits ``L-1, ..., 0``) or
        temperatures (temperature mode: non-increasing, visited in order). Positive.
      steps_per_level: Python int > 0, steps spent at each level.
      step_sizes: a positive number or ``[L]`` positive numbers, ``step_sizes[l]``
        used at ``levels[l]`` (see :func:`song_ermon_step_sizes` for noise mode).
      mode: ``"noise"`` or ``"temperature"``.
      noise_scales: optional number or ``[L]`` numbers >= 0: the noise standard
        deviation at each level (decoupled form). Default ``sqrt(2 h_l T_l)`` (the
        temperature form; ``T_l = 1`` in noise mode), the exact Langevin diffusion's
        Euler step targeting ``exp(-E_l / T_l)``.
      clip_range: if given, ``(low, high)``: clamp positions after every step.

    Returns:
      An :class:`AnnealedSampler`: ``init(position, params=None, *cond) -> AnnealedState``
      (counter at 0) and ``step(rng_key, state, params, *cond) -> (AnnealedState,
      AnnealedInfo)``; its ``schedule`` attribute holds the validated schedule.

    Example::

      >>> energy_fn = lambda params, x, level: 0.5 * jnp.sum((x - params) ** 2)
      >>> params, key = jnp.ones(2), jax.random.key(0)
      >>> sigmas = np.geomspace(0.01, 1.0, 5)
      >>> sampler = annealed_langevin(energy_fn, sigmas, 10, song_ermon_step_sizes(sigmas, 2e-5))
      >>> states = init_chains(sampler, jax.random.uniform(key, (64, 2)), params)
      >>> run = jax.jit(lambda key, states: run_chains(key, sampler, states, params,
      ...                                              sampler.schedule.num_steps))
      >>> states, info = run(key, states)
      >>> x, info = annealed_sample(key, sampler, jax.random.uniform(key, (64, 2)), params)
      >>> x.shape, int(info.level[0])          # the last step is at level 0 (least noise)
      ((64, 2), 0)
    """
    check_choice("mode", mode, _MODES)
    if not callable(energy_fn):
        raise ValueError(f"energy_fn={energy_fn!r}: expected a callable energy_fn(params, x, ...)")
    levels_np = _check_levels(levels, mode)
    num_levels = len(levels_np)
    steps_per_level = check_int("steps_per_level", steps_per_level,
                                expected="a positive Python int")
    step_np = _per_level("step_sizes", step_sizes, num_levels, allow_zero=False)
    temps_np = levels_np if mode == "temperature" else np.ones(num_levels)
    if noise_scales is None:
        noise_np = np.sqrt(2.0 * step_np * temps_np)
    else:
        noise_np = _per_level("noise_scales", noise_scales, num_levels, allow_zero=True)
    clip_range = check_bounds("clip_range", clip_range, allow_none=True)
    schedule = AnnealingSchedule(mode, levels_np, steps_per_level, step_np, noise_np)

    kernel = langevin_kernel(energy_fn, clip_range=clip_range)
    noise_mode = mode == "noise"

    def init(position, params=None, *cond) -> AnnealedState:
        del params, cond  # nothing is cached
        return AnnealedState(jnp.asarray(position), jnp.zeros((), jnp.int32))

    def step(rng_key, state: AnnealedState, params, *cond):
        x = state.position
        level = schedule.level_at(state.step).astype(jnp.int32)
        h = jnp.asarray(step_np, x.dtype)[level]
        s = jnp.asarray(noise_np, x.dtype)[level]
        energy_cond = (level, *cond) if noise_mode else cond
        new, info = kernel(rng_key, LangevinState(x), params, h, s, *energy_cond)
        info = AnnealedInfo(info.energy, info.grad_norm, level, info.nonfinite)
        return AnnealedState(new.position, state.step + 1), info

    return AnnealedSampler(init, step, schedule, clip_range)


def annealed_sample(rng_key: jax.Array, sampler: AnnealedSampler, positions: Any, params: Any,
                    *cond: Any, unroll: int = 1, trace: bool = False) -> tuple[Any, AnnealedInfo]:
    """Run the whole anneal (``schedule.num_steps`` steps) on a batch of fresh chains.

    Args:
      rng_key: one PRNG key.
      sampler: from :func:`annealed_langevin`.
      positions: ``[C, ...]`` starting points, one chain per row (counters start at 0).
      params: energy parameters, shared by the chains.
      *cond: conditioning arguments with a leading chain axis ``[C, ...]``.
      unroll, trace: as in :func:`~ebm_jax.samplers.run_chains`.

    Returns:
      ``(positions [C, ...], info)``: the final positions and the
      :class:`AnnealedInfo` of the last step (``[C]`` fields), or of every step
      (``[C, num_steps]``) with ``trace=True``. Same result as ``run_chains`` for
      ``num_steps`` steps with the same key. Jit it at the outer level.

    Example::

      >>> sampler = annealed_langevin(lambda p, x: 0.5 * jnp.sum(x**2), [2.0, 1.0], 5, 0.1,
      ...                             mode="temperature")
      >>> x0, params = jnp.zeros((16, 2)), None
      >>> run = jax.jit(lambda k, x0: annealed_sample(k, sampler, x0, params))
      >>> x, info = run(jax.random.key(0), x0)
      >>> x.shape, info.level.shape
      ((16, 2), (16,))
    """
    schedule = getattr(sampler, "schedule", None)
    if not isinstance(schedule, AnnealingSchedule):
        raise ValueError(f"sampler={sampler!r}: expected a sampler built by annealed_langevin "
                         "(one with a `schedule` attribute)")
    states = init_chains(sampler, positions, params, *cond)
    states, info = run_chains(rng_key, sampler, states, params, schedule.num_steps, *cond,
                              unroll=unroll, trace=trace)
    return states.position, info
