"""Noise schedules of a variance-preserving diffusion, and its forward process.

Used by diffusion recovery likelihood (:func:`~ebm_jax.losses.recovery_likelihood`) and
its samplers (:func:`~ebm_jax.samplers.recovery_langevin`,
:func:`~ebm_jax.samplers.progressive_sample`). The forward diffusion (``t`` grows with
the noise; level 0 is the data)::

    x_{t+1} = sqrt(1 - σ_t²) x_t + σ_t ε,        ε ~ N(0, I),   σ_t = schedule.sigmas[t]
    x_t     = ᾱ_t x_0 + sqrt(1 - ᾱ_t²) ε,         ᾱ_t = Π_{s<t} sqrt(1 - σ_s²)

Example::

  >>> schedule = noise_schedule("t6")
  >>> x_t, x_next = diffuse(jax.random.key(0), schedule, jnp.zeros((4, 2)), 2)
  >>> x_t.shape
  (4, 2)
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_in_range, check_int, is_traced

SCHEDULES = ("t6", "ddpm", "linear", "geometric", "cosine")


class NoiseSchedule(NamedTuple):
    """The noise levels of a variance-preserving diffusion, as NumPy float64 arrays.

    Attributes:
      sigmas: ``[T]``: ``sigmas[t]`` is the noise std of the step from level ``t``
        to level ``t+1`` (the paper's ``σ_{t+1}``); non-decreasing, in (0, 1).
      alphas: ``[T]``: ``sqrt(1 - sigmas**2)``, the scaling of ``x_t`` in that step.
      marginal_alphas: ``[T+1]``: ``ᾱ_t = Π_{s<t} alphas[s]`` (``ᾱ_0 = 1``), so that
        ``x_t = ᾱ_t x_0 + sqrt(1 - ᾱ_t²) ε``.
      marginal_sigmas: ``[T+1]``: ``sqrt(1 - ᾱ_t²)`` (0 at level 0, increasing).

    ``T = len(sigmas)`` is the number of EBM levels ``t = 0..T-1``; level ``T`` is
    the end of the diffusion, where generation starts from ``N(0, I)`` (exact
    when ``marginal_alphas[-1] ≈ 0``).
    """

    sigmas: np.ndarray
    alphas: np.ndarray
    marginal_alphas: np.ndarray
    marginal_sigmas: np.ndarray

    @property
    def num_levels(self) -> int:
        """``T``, the number of EBM levels."""
        return len(self.sigmas)


def _ddpm_sigmas(num_levels: int) -> np.ndarray:
    """The paper's T-level schedule, subsampled from DDPM's 1000 linear betas (1e-4 .. 0.02).

    Following the reference implementation, the 1000 steps are cut at
    ``0, s, 2s, ..., (T-1) s`` and 999 with ``s = 1000 // (2 (T-1))``, and each
    level's ``σ`` is that of the composed steps between cuts. The reference
    also diffuses the data once by the first step (``σ = 0.01``) and calls that
    level 0; here level 0 is the data itself, so that first ``σ`` is dropped
    and the ``T`` remaining ones are returned.
    """
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    sqrt_alphas = np.sqrt(1.0 - betas)
    spacing = 1000 // (2 * (num_levels - 1))
    cuts = np.concatenate([np.arange(num_levels) * spacing, [999]])
    a = np.array([np.prod(sqrt_alphas[cuts[i - 1] + 1:cuts[i] + 1]) for i in range(1, len(cuts))])
    return np.sqrt(1.0 - a**2)


def cosine_logsnr(num_levels: int, logsnr_max: float = 9.8, logsnr_min: float = -5.1
                  ) -> np.ndarray:
    """``[T+1]`` log signal-to-noise ratios of the truncated cosine schedule (CDRL's).

    ``logsnr(u) = -2 log tan(a u + b)`` at ``u = k / T``, ``k = 0..T``, with ``a`` and ``b``
    chosen so that it runs from ``logsnr_max`` at ``u = 0`` down to ``logsnr_min`` at
    ``u = 1`` (the cosine schedule of improved DDPM, whose log-SNR is exactly this with
    ``a = π/2``, ``b = 0``, truncated). In a variance-preserving diffusion level ``k`` is
    ``sqrt(sigmoid(logsnr_k)) x + sqrt(sigmoid(-logsnr_k)) ε``.

    Example::

      >>> cosine_logsnr(6).round(2)
      array([ 9.8 ,  2.69,  1.2 ,  0.14, -0.88, -2.17, -5.1 ])
    """
    num_levels = check_int("num_levels", num_levels)
    if not (np.isfinite(logsnr_max) and np.isfinite(logsnr_min) and logsnr_max > logsnr_min):
        raise ValueError(f"logsnr_max={logsnr_max!r}, logsnr_min={logsnr_min!r}: expected finite "
                         "numbers with logsnr_max > logsnr_min (the signal falls with the level)")
    b = np.arctan(np.exp(-0.5 * logsnr_max))
    a = np.arctan(np.exp(-0.5 * logsnr_min)) - b
    u = np.arange(num_levels + 1, dtype=np.float64) / num_levels
    return -2.0 * np.log(np.tan(a * u + b))


def _cosine_sigmas(num_levels: int, logsnr_max: float, logsnr_min: float) -> np.ndarray:
    """Per-step noise stds between consecutive levels of :func:`cosine_logsnr`: the step from
    level ``k`` to ``k+1`` scales by ``sqrt(ᾱ_{k+1} / ᾱ_k)``, ``ᾱ = sigmoid(logsnr)``."""
    log_signal = -np.logaddexp(0.0, -cosine_logsnr(num_levels, logsnr_max, logsnr_min))
    return np.sqrt(-np.expm1(np.diff(log_signal)))


def noise_schedule(name_or_sigmas: Union[str, Sequence[float], np.ndarray, NoiseSchedule] = "t6",
                   *, num_levels: Optional[int] = None, sigma_min: Optional[float] = None,
                   sigma_max: Optional[float] = None, logsnr_max: Optional[float] = None,
                   logsnr_min: Optional[float] = None) -> NoiseSchedule:
    """Build (and validate) a :class:`NoiseSchedule`.

    Noise increases with the level: ``sigmas`` must be non-decreasing, every
    value strictly inside (0, 1).

    Args:
      name_or_sigmas: one of

        * ``"t6"``: the paper's 6-level schedule (``sigmas`` ≈ 0.324, 0.516,
          0.632, 0.713, 0.773, 0.9997; marginal noise ≈ 0, 0.32, 0.59, 0.78,
          0.90, 0.96 and 0.99998 at the end);
        * ``"ddpm"``: the same construction with ``num_levels`` levels (2..501);
        * ``"linear"`` / ``"geometric"``: ``num_levels`` sigmas spaced linearly /
          geometrically from ``sigma_min`` to ``sigma_max``;
        * ``"cosine"``: CDRL's truncated cosine log-SNR schedule (:func:`cosine_logsnr`),
          ``num_levels`` steps (default 6) from ``logsnr_max`` (default 9.8) to
          ``logsnr_min`` (default -5.1). Level 0 here is the data at ``logsnr_max``: CDRL
          diffuses the data once, by ``sqrt(sigmoid(-logsnr_max))`` ≈ 0.0074, which the
          loss does (:func:`~ebm_jax.losses.cdrl`), not the schedule;
        * an explicit sequence of per-level sigmas (or a ``NoiseSchedule``, revalidated).
      num_levels: number of levels for ``"ddpm"``, ``"linear"``, ``"geometric"`` and
        ``"cosine"``.
      sigma_min, sigma_max: the range for ``"linear"`` and ``"geometric"``.
      logsnr_max, logsnr_min: the log-SNR range of ``"cosine"``.

    Example::

      >>> s = noise_schedule("t6")
      >>> s.num_levels, s.sigmas.round(3)
      (6, array([0.324, 0.516, 0.632, 0.713, 0.773, 1.   ]))
      >>> noise_schedule("geometric", num_levels=4, sigma_min=0.1, sigma_max=0.8).sigmas
      array([0.1, 0.2, 0.4, 0.8])
      >>> noise_schedule("cosine").sigmas.round(3)
      array([0.252, 0.424, 0.551, 0.671, 0.808, 0.97 ])
      >>> noise_schedule([0.5, 0.3])
      Traceback (most recent call last):
      ValueError: sigmas[1]=0.3 < sigmas[0]=0.5: ...
    """
    named = isinstance(name_or_sigmas, str)
    what = f"{name_or_sigmas!r}" if named else "explicit sigmas"
    if not named or name_or_sigmas == "t6":
        for field, value in (("num_levels", num_levels), ("sigma_min", sigma_min),
                             ("sigma_max", sigma_max)):
            if value is not None:
                raise ValueError(f"{field}={value!r}: not used by the {what} schedule; "
                                 "it is for 'ddpm', 'linear', 'geometric' and 'cosine'")
    if name_or_sigmas != "cosine":
        for field, value in (("logsnr_max", logsnr_max), ("logsnr_min", logsnr_min)):
            if value is not None:
                raise ValueError(f"{field}={value!r}: not used by the {what} schedule; it is "
                                 "for 'cosine'")
    if named:
        name = name_or_sigmas
        if name not in SCHEDULES:
            raise ValueError(f"schedule={name!r}: expected one of {list(SCHEDULES)} or a sequence "
                             "of per-level sigmas")
        if name == "t6":
            sigmas = _ddpm_sigmas(6)
        elif name == "cosine":
            for field, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
                if value is not None:
                    raise ValueError(f"{field}={value!r}: not used by the 'cosine' schedule; "
                                     "its range is logsnr_max, logsnr_min")
            sigmas = _cosine_sigmas(6 if num_levels is None else num_levels,
                                    9.8 if logsnr_max is None else logsnr_max,
                                    -5.1 if logsnr_min is None else logsnr_min)
        else:
            check_int("num_levels", num_levels,
                      expected=f"a positive int for the {name!r} schedule")
            if name == "ddpm":
                if sigma_min is not None or sigma_max is not None:
                    raise ValueError("sigma_min/sigma_max are not used by the 'ddpm' schedule")
                if not 2 <= num_levels <= 501:
                    raise ValueError(f"num_levels={num_levels!r}: the 'ddpm' schedule needs 2..501")
                sigmas = _ddpm_sigmas(num_levels)
            else:
                for field, value in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
                    check_in_range(field, value, 0, 1, include_low=False, include_high=False,
                                   expected=f"a number in (0, 1) for the {name!r} schedule")
                if sigma_min > sigma_max:
                    raise ValueError(f"sigma_min={sigma_min!r} > sigma_max={sigma_max!r}: noise "
                                     "increases with the level, expected sigma_min <= sigma_max")
                space = np.linspace if name == "linear" else np.geomspace
                sigmas = space(float(sigma_min), float(sigma_max), num_levels)
    else:
        if isinstance(name_or_sigmas, NoiseSchedule):
            name_or_sigmas = name_or_sigmas.sigmas
        sigmas = np.asarray(name_or_sigmas, np.float64)
        if sigmas.ndim != 1 or sigmas.size == 0:
            raise ValueError(f"sigmas has shape {sigmas.shape}: expected a non-empty 1-D sequence "
                             "of per-level noise stds")
    for t, s in enumerate(sigmas):
        if not (np.isfinite(s) and 0.0 < s < 1.0):
            raise ValueError(f"sigmas[{t}]={float(s)!r}: expected a noise std strictly inside "
                             "(0, 1)")
    for t in range(1, len(sigmas)):
        if sigmas[t] < sigmas[t - 1]:
            raise ValueError(f"sigmas[{t}]={float(sigmas[t])!r} < "
                             f"sigmas[{t - 1}]={float(sigmas[t - 1])!r}: noise "
                             "increases with the level, expected a non-decreasing sequence")
    alphas = np.sqrt(1.0 - sigmas**2)
    marginal_alphas = np.concatenate([[1.0], np.cumprod(alphas)])
    marginal_sigmas = np.sqrt(1.0 - marginal_alphas**2)
    return NoiseSchedule(sigmas, alphas, marginal_alphas, marginal_sigmas)


def as_noise_schedule(schedule: Any) -> NoiseSchedule:
    """``schedule`` if it is a :class:`NoiseSchedule`, else :func:`noise_schedule` of a name
    or a sequence of sigmas; anything else raises ``TypeError``.

    Example::

      >>> as_noise_schedule([0.3, 0.5]).num_levels
      2
    """
    if isinstance(schedule, NoiseSchedule):
        return schedule
    if isinstance(schedule, (str, Sequence, np.ndarray)):
        return noise_schedule(schedule)
    raise TypeError(f"schedule={schedule!r}: expected a NoiseSchedule (from noise_schedule), "
                    "a schedule name or a sequence of sigmas")


def float32_array(a: np.ndarray) -> jax.Array:
    """A NumPy schedule array as a float32 JAX array (rounded once, from float64)."""
    return jnp.asarray(np.asarray(a, np.float32))


def diffuse(rng_key: jax.Array, schedule: NoiseSchedule, x0: jax.Array,
            level) -> tuple[jax.Array, jax.Array]:
    """Draw ``(x_t, x_{t+1})`` from the forward diffusion of clean data ``x0``.

    Args:
      rng_key: a PRNG key.
      schedule: a :class:`NoiseSchedule`.
      x0: clean data, any shape (a batch ``[B, ...]`` or one example).
      level: ``t`` in ``[0, T)``, a Python int or a traced int scalar (a
        concrete one is range-checked).

    Returns:
      ``x_t = ᾱ_t x0 + sqrt(1-ᾱ_t²) ε`` and ``x_{t+1} = a_t x_t + σ_t ε'``, both
      shaped like ``x0``.

    Example::

      >>> x0 = jnp.zeros((8, 2))
      >>> x_t, x_next = diffuse(jax.random.key(0), noise_schedule("t6"), x0, 2)
      >>> x_t.shape, x_next.shape
      ((8, 2), (8, 2))
    """
    schedule = as_noise_schedule(schedule)
    check_level(level, schedule.num_levels)
    k1, k2 = jax.random.split(rng_key)
    x0 = jnp.asarray(x0)
    mean_scale = float32_array(schedule.marginal_alphas)[level]
    noise_scale = float32_array(schedule.marginal_sigmas)[level]
    x_t = mean_scale * x0 + noise_scale * jax.random.normal(k1, x0.shape, x0.dtype)
    x_next = (float32_array(schedule.alphas)[level] * x_t
              + float32_array(schedule.sigmas)[level] * jax.random.normal(k2, x0.shape, x0.dtype))
    return x_t, x_next


def diffuse_shared(rng_key: jax.Array, schedule: NoiseSchedule, x0: jax.Array,
                   level) -> tuple[jax.Array, jax.Array]:
    """Draw ``(x_t, x_{t+1})`` with one noise draw for both (CDRL's variance reduction).

    ``x_t = ᾱ_t x0 + sqrt(1-ᾱ_t²) ε`` and ``x_{t+1} = ᾱ_{t+1} x0 + sqrt(1-ᾱ_{t+1}²) ε``, the
    same ``ε``. Each is exactly distributed as its level's marginal (as with :func:`diffuse`),
    but the pair is not the diffusion's joint: it is a coupling of the two marginals. Recovery
    likelihood's gradient, ``E_{x_t}[∇E(x_t, t)] - E_{x_{t+1}} E_{p(x | x_{t+1})}[∇E(x, t)]``,
    reads each marginal alone, so any coupling leaves it unbiased; this one makes the data
    term and the chains' condition move together, which cancels much of the variance of their
    difference (:func:`~ebm_jax.losses.cdrl`).

    Arguments and returns as in :func:`diffuse`.

    Example::

      >>> x_t, x_next = diffuse_shared(jax.random.key(0), noise_schedule("cosine"),
      ...                              jnp.zeros((4, 2)), 2)
      >>> bool(jnp.allclose(x_next / x_t, x_next[0, 0] / x_t[0, 0]))    # the same ε
      True
    """
    schedule = as_noise_schedule(schedule)
    check_level(level, schedule.num_levels)
    x0 = jnp.asarray(x0)
    eps = jax.random.normal(rng_key, x0.shape, x0.dtype)
    mean_scales = float32_array(schedule.marginal_alphas)
    noise_scales = float32_array(schedule.marginal_sigmas)
    return (mean_scales[level] * x0 + noise_scales[level] * eps,
            mean_scales[level + 1] * x0 + noise_scales[level + 1] * eps)


class PairPosterior(NamedTuple):
    """The law of ``x_t`` given ``x_{t+1}`` when the data is a finite set (an empirical law).

    A mixture over the data points ``i``: pick ``i`` with probability ``exp(log_weights[i])``,
    then ``x_t ~ N(means[i], std² I)``.

    Attributes:
      log_weights: ``[N]``: ``log p(i | x_{t+1})``, normalised.
      means: ``[N, ...]``: ``E[x_t | x_{t+1}, i]``, shaped like the data.
      std: a scalar: the std of each coordinate of ``x_t`` given ``x_{t+1}`` and ``i`` (0 for
        shared-noise pairs without data noise: ``x_t`` is then a function of both).
    """

    log_weights: jax.Array
    means: jax.Array
    std: jax.Array


def pair_posterior(schedule: NoiseSchedule, data: jax.Array, x_next: jax.Array, level, *,
                   shared_noise: bool, data_noise: float = 0.0) -> PairPosterior:
    """The exact law of ``x_t`` given one ``x_{t+1}``, the data being the points ``data``.

    Level 0 is ``sqrt(1 - d²) x_i + d n`` for a data point ``x_i`` drawn uniformly (``d =
    data_noise``; CDRL's data diffused once) and the pair ``(x_t, x_{t+1})`` is drawn from it
    by :func:`diffuse_shared` (``shared_noise=True``) or by the diffusion itself
    (:func:`diffuse`). Given ``i``, ``u = x_t - ᾱ_t c x_i`` and ``v = x_{t+1} - ᾱ_{t+1} c x_i``
    (``c = sqrt(1 - d²)``) are per coordinate a zero-mean Gaussian pair with
    ``var u = ᾱ_t² d² + σ̄_t²``, ``var v = ᾱ_{t+1}² d² + σ̄_{t+1}²`` and covariance
    ``ᾱ_t ᾱ_{t+1} d² + σ̄_t σ̄_{t+1}`` (shared noise) or ``a_t var u`` (the diffusion), so the
    posterior is a mixture of Gaussians over ``i``. With ``shared_noise=False`` it is recovery
    likelihood's exact target ``q(x_t | x_{t+1})`` for the empirical law: an exact sampler to
    hold chains against, and the baseline of CDRL's variance reduction
    (``benchmarks/cdrl.py``).

    Args:
      schedule: a :class:`NoiseSchedule`.
      data: ``[N, ...]``: the data points.
      x_next: one ``x_{t+1}``, shaped like a data point.
      level: ``t`` in ``[0, T)``.
      shared_noise: which pairs (above).
      data_noise: ``d`` in ``[0, 1)``.

    Returns:
      A :class:`PairPosterior`.

    Example::

      >>> data = jnp.array([[-2.0], [2.0]])
      >>> post = pair_posterior(noise_schedule("cosine"), data, jnp.array([1.9]), 1,
      ...                       shared_noise=False)
      >>> bool(jnp.exp(post.log_weights[1]) > 0.99), post.means.shape
      (True, (2, 1))
    """
    schedule = as_noise_schedule(schedule)
    check_level(level, schedule.num_levels)
    data_noise = check_in_range("data_noise", data_noise, 0.0, 1.0, include_high=False)
    data, x_next = jnp.asarray(data), jnp.asarray(x_next)
    if x_next.shape != data.shape[1:]:
        raise ValueError(f"x_next.shape={x_next.shape}: expected one data point's shape "
                         f"{data.shape[1:]}")
    mean_scales = float32_array(schedule.marginal_alphas)
    noise_scales = float32_array(schedule.marginal_sigmas)
    m_t, m_next = mean_scales[level], mean_scales[level + 1]
    s_t, s_next = noise_scales[level], noise_scales[level + 1]
    d_sq = jnp.float32(data_noise) ** 2
    var_u = m_t**2 * d_sq + s_t**2
    var_v = m_next**2 * d_sq + s_next**2
    cov = (m_t * m_next * d_sq + s_t * s_next if shared_noise
           else float32_array(schedule.alphas)[level] * var_u)
    points = jnp.sqrt(1.0 - d_sq) * data
    v = x_next - m_next * points
    sq_dist = jnp.sum(jnp.square(v).reshape(data.shape[0], -1), axis=-1)
    log_weights = jax.nn.log_softmax(-sq_dist / (2.0 * var_v))
    means = m_t * points + (cov / var_v) * v
    return PairPosterior(log_weights, means, jnp.sqrt(jnp.maximum(var_u - cov**2 / var_v, 0.0)))


def sample_pair_posterior(rng_key: jax.Array, posterior: PairPosterior) -> jax.Array:
    """One draw of ``x_t`` from a :class:`PairPosterior` (shaped like a data point).

    Example::

      >>> post = pair_posterior(noise_schedule("cosine"), jnp.zeros((3, 2)), jnp.ones(2), 0,
      ...                       shared_noise=True, data_noise=0.1)
      >>> sample_pair_posterior(jax.random.key(0), post).shape
      (2,)
    """
    k_pick, k_noise = jax.random.split(rng_key)
    i = jax.random.categorical(k_pick, posterior.log_weights)
    mean = posterior.means[i]
    return mean + posterior.std * jax.random.normal(k_noise, mean.shape, mean.dtype)


def check_level(level, num_levels: int) -> None:
    """Raise unless a concrete ``level`` is an int scalar in ``[0, num_levels)`` (a traced
    one is left alone)."""
    if is_traced(level):
        return
    value = np.asarray(level)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or not (
            0 <= int(value) < num_levels):
        raise ValueError(f"level={level!r}: expected an int scalar in [0, {num_levels})")
