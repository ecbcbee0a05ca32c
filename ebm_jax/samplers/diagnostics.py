"""MCMC convergence diagnostics: effective sample size (mean, bulk, tail), split R-hat, and
the acceptance of a Metropolis sampler's high-energy draws.

Pure ``jax.numpy`` (they jit and vmap), for draws laid out ``[chains, draws]`` or
``[chains, draws, ...]`` (then computed independently per trailing element),
following Vehtari, Gelman, Simpson, Carpenter & Bürkner (2021), "Rank-normalization,
folding, and localization: an improved R-hat for assessing convergence of MCMC",
as implemented in Stan and ArviZ:

* :func:`effective_sample_size`: chains are split in half (``2C`` chains of
  ``N // 2`` draws; the middle draw of an odd ``N`` is dropped), per-chain
  autocovariances come from an FFT, and the autocorrelation is the combined
  multi-chain estimate ``ρ_t = 1 - (W - mean_c acov_c(t)) / var⁺``; the sum
  ``τ = -1 + 2 Σ_k (ρ_2k + ρ_2k+1)`` is truncated with Geyer's initial positive
  sequence (stop before the first negative pair sum) made monotone (each pair sum
  is capped by the previous one: Geyer's initial monotone sequence), plus ArviZ's
  last positive even lag; ``ESS = C N / max(τ, 1 / log10(C N))``. ``method="mean"``
  (default) applies this to the raw draws: the ESS that gives the Monte Carlo
  standard error of a mean, ``sd / sqrt(ESS)`` (ArviZ ``ess(method="mean")``).
  ``method="bulk"`` applies it to the rank-normalised draws (ArviZ's default
  ``ess_bulk``), robust to heavy tails. ``method="tail"`` is the smaller ESS of the
  indicators ``draws <= q_5%`` and ``draws <= q_95%`` (quantiles of all draws; ArviZ
  ``ess_tail``): how well the chains visit the tails, which a sampler can under-sample
  while the bulk ESS and R-hat look perfect.
* :func:`split_rhat`: the rank-normalised split-R-hat of Vehtari et al. (2021),
  ``max(R̂(z(split draws)), R̂(z(split |draws - median|)))``: the bulk part catches
  chains with different locations, the folded part chains with different scales
  (ArviZ ``rhat(method="rank")``). ``rank_normalize=False`` gives the classic split
  R-hat (Gelman et al., BDA3) of the raw draws.

* :func:`tail_acceptance`: the mean acceptance probability of the steps that start from
  the highest-energy draws against that of all steps. A step size tuned to the mean
  acceptance can be too large where the target curves more, out in its tails: there the
  chains are rejected, get stuck or never go, and the tails are under-sampled while R-hat
  and the ESSs look perfect (measured on a banana, README "Samplers against blackjax").

Ranks are average ranks (ties share their mean rank, as ``scipy.stats.rankdata``).
As in ArviZ, constant draws have an ESS of ``C * N`` and an R-hat of NaN (no variance
to compare).
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

from ebm_jax._checks import check_in_range

_MIN_DRAWS = 4


def _as_draws(samples, name: str = "samples") -> jax.Array:
    shape = getattr(samples, "shape", None)
    if shape is None:
        samples = jnp.asarray(samples)
        shape = samples.shape
    if len(shape) < 2:
        raise ValueError(f"{name} has shape {tuple(shape)}: expected [chains, draws] or "
                         "[chains, draws, ...] (one chain is [1, draws])")
    if shape[0] < 1 or shape[1] < _MIN_DRAWS:
        raise ValueError(f"{name} has shape {tuple(shape)}: expected at least 1 chain and "
                         f"{_MIN_DRAWS} draws per chain ([chains, draws, ...])")
    x = jnp.asarray(samples)
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype.itemsize < 4:
        x = x.astype(jnp.float32)  # integers, booleans and half precision (FFT needs >= f32)
    return x


def _per_element(fn: Callable, x: jax.Array) -> jax.Array:
    """Apply ``fn([C, N]) -> scalar`` to every trailing element of ``x [C, N, ...]``."""
    c, n, *rest = x.shape
    flat = x.reshape(c, n, -1)
    out = jax.vmap(fn, in_axes=2)(flat)
    return out.reshape(rest)


def _split_chains(x: jax.Array) -> jax.Array:
    """``[C, N] -> [2C, N // 2]``: first and last halves (the middle draw of an odd N dropped)."""
    half = x.shape[1] // 2
    return jnp.concatenate([x[:, :half], x[:, x.shape[1] - half:]], axis=0)


def _z_scale(x: jax.Array) -> jax.Array:
    """Rank-normalise all draws of ``x [C, N]`` jointly: ``Φ⁻¹((r - 3/8) / (S + 1/4))``."""
    flat = x.reshape(-1)
    ordered = jnp.sort(flat)
    low = jnp.searchsorted(ordered, flat, side="left")
    high = jnp.searchsorted(ordered, flat, side="right")
    rank = 0.5 * (low + high + 1).astype(x.dtype)  # average 1-based rank of ties
    z = ndtri((rank - 0.375) / (flat.shape[0] + 0.25))
    return z.reshape(x.shape)


def _autocov(x: jax.Array) -> jax.Array:
    """Biased autocovariance of each chain, ``[C, N] -> [C, N]`` (lag 0..N-1), via FFT."""
    n = x.shape[1]
    centred = x - x.mean(axis=1, keepdims=True)
    n_fft = 1 << (2 * n - 1).bit_length()  # >= 2N - 1: no circular wrap-around
    f = jnp.fft.rfft(centred, n=n_fft, axis=1)
    acov = jnp.fft.irfft(f * jnp.conj(f), n=n_fft, axis=1)[:, :n]
    return acov.real.astype(x.dtype) / n


def _ess_2d(x: jax.Array) -> jax.Array:
    """ESS of ``x [C, N]`` (chains already split, draws already transformed)."""
    c, n = x.shape
    acov = _autocov(x)
    mean_var = jnp.mean(acov[:, 0]) * n / (n - 1.0)  # W, the mean within-chain variance
    var_plus = mean_var * (n - 1.0) / n
    if c > 1:
        var_plus = var_plus + jnp.var(x.mean(axis=1), ddof=1)
    rho = 1.0 - (mean_var - jnp.mean(acov, axis=0)) / var_plus  # [N]
    rho = rho.at[0].set(1.0)  # as Stan/ArviZ (the formula gives 1 - W / (N var+))
    # Pairs P_k = rho_2k + rho_2k+1, k = 0..K, as far as Stan/ArviZ look (lag 2K+1 <= N-2).
    last = max((n - 3) // 2, 0)  # K
    pairs = rho[0:2 * last + 1:2] + rho[1:2 * last + 2:2]
    # Geyer's initial positive sequence: the pairs before the first negative one
    # (P_0 = 1 + rho_1 is always kept).
    negative = (pairs < 0).at[0].set(False)
    terminated = jnp.any(negative)
    stop = jnp.where(terminated, jnp.argmax(negative), last)
    kept = jnp.arange(last + 1) < stop
    # ... made monotone: each pair sum capped by the one before (initial monotone sequence).
    monotone = jax.lax.cummin(pairs)
    tau = -1.0 + 2.0 * jnp.sum(jnp.where(kept, monotone, 0.0))
    # Stan/ArviZ then add the even lag of the pair where the search stopped once: when
    # stopped by a negative pair only if that lag is positive; at the end of the lags as is.
    even = rho[2 * stop]
    tau = tau + jnp.where(terminated, jnp.maximum(even, 0.0), even)
    total = c * n
    tau = jnp.maximum(tau, 1.0 / math.log10(total))
    # Constant draws carry no autocorrelation to estimate: ArviZ reports their count.
    return jnp.where(jnp.max(x) == jnp.min(x), float(total), total / tau)


def effective_sample_size(samples, *, method: str = "mean") -> jax.Array:
    """Effective sample size of MCMC draws (Vehtari et al. 2021; Stan/ArviZ).

    Args:
      samples: ``[chains, draws]`` or ``[chains, draws, ...]`` (at least 4 draws).
        One chain is fine (it is split in two).
      method: ``"mean"`` (default): ESS of the raw draws, the one that gives the
        Monte Carlo standard error of their mean, ``sd / sqrt(ess)``. ``"bulk"``:
        ESS of the rank-normalised draws (Stan's/ArviZ's ``ess_bulk``). ``"tail"``: the
        smaller ESS of the 5% and 95% quantile indicators (``ess_tail``); Vehtari et al.
        ask for bulk and tail ESS above ``100 * chains`` before trusting quantiles.

    Returns:
      ESS with shape ``samples.shape[2:]`` (a scalar for ``[chains, draws]``), in
      draws: iid draws give about ``chains * draws``, anti-correlated ones more.

    Example::

      >>> draws = jax.random.normal(jax.random.key(0), (4, 1000, 2))   # iid draws
      >>> ess = effective_sample_size(draws)          # draws [4, 1000, 2] -> ess [2]
      >>> mcse = draws.std(axis=(0, 1)) / jnp.sqrt(ess)
      >>> ess.shape, bool(jnp.all((ess > 3000) & (ess < 5500)))
      ((2,), True)
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method={method!r}: expected one of {', '.join(ESS_METHODS)}")
    return _ess_impl(_as_draws(samples), method)


ESS_METHODS = ("mean", "bulk", "tail")
TAIL_PROBS = (0.05, 0.95)


def _tail_ess_2d(x: jax.Array) -> jax.Array:
    """Tail ESS of ``x [C, N]`` (unsplit): the smaller ESS of the split indicators
    ``x <= quantile(x, p)`` for ``p`` in :data:`TAIL_PROBS` (linear quantiles, as NumPy)."""
    quantiles = jnp.quantile(x, jnp.asarray(TAIL_PROBS, x.dtype))
    return jnp.min(jnp.stack([_ess_2d(_split_chains((x <= q).astype(x.dtype)))
                              for q in quantiles]))


@functools.partial(jax.jit, static_argnums=1)
def _ess_impl(x: jax.Array, method: str) -> jax.Array:
    def one(x2):
        if method == "tail":
            return _tail_ess_2d(x2)
        split = _split_chains(x2)
        return _ess_2d(_z_scale(split) if method == "bulk" else split)

    return _per_element(one, x)


def _rhat_2d(x: jax.Array) -> jax.Array:
    """Classic R-hat of ``x [C, N]`` (chains already split)."""
    n = x.shape[1]
    between = n * jnp.var(x.mean(axis=1), ddof=1)
    within = jnp.mean(jnp.var(x, axis=1, ddof=1))
    var_hat = (n - 1.0) / n * within + between / n
    return jnp.sqrt(var_hat / within)


def split_rhat(samples, *, rank_normalize: bool = True) -> jax.Array:
    """Potential scale reduction factor R-hat of MCMC draws.

    Args:
      samples: ``[chains, draws]`` or ``[chains, draws, ...]`` (at least 4 draws;
        a single chain is split in two, so it is compared with itself).
      rank_normalize: True (default): the rank-normalised, folded split-R-hat of
        Vehtari et al. (2021), the max of the bulk (rank-normalised split draws) and
        tail (rank-normalised split ``|draws - median|``) R-hats, which also sees
        chains that differ only in scale (ArviZ ``method="rank"``). False: the
        classic split-R-hat of the raw draws (ArviZ ``method="split"``).

    Returns:
      R-hat with shape ``samples.shape[2:]``: about 1 for well-mixed chains;
      Vehtari et al. recommend trusting the draws only below 1.01.

    Example::

      >>> draws = jax.random.normal(jax.random.key(0), (4, 1000))
      >>> rhat = split_rhat(draws)   # draws [4, 1000] -> scalar
      >>> rhat.shape, bool(rhat < 1.01)
      ((), True)
    """
    return _rhat_impl(_as_draws(samples), bool(rank_normalize))


@functools.partial(jax.jit, static_argnums=1)
def _rhat_impl(x: jax.Array, rank_normalize: bool) -> jax.Array:
    def one(x2):
        if not rank_normalize:
            return _rhat_2d(_split_chains(x2))
        split = _split_chains(x2)
        bulk = _rhat_2d(_z_scale(split))
        tail = _rhat_2d(_z_scale(jnp.abs(split - jnp.median(split))))
        return jnp.maximum(bulk, tail)

    return _per_element(one, x)


class ChainSummary(NamedTuple):
    """Summary of a statistic over MCMC draws; every field has the statistic's shape.

    ``summary._asdict()`` gives a dict.

    Attributes:
      mean: mean over all chains and draws.
      sd: standard deviation over all chains and draws (ddof=1).
      ess: :func:`effective_sample_size` (``method="mean"``).
      rhat: :func:`split_rhat` (rank-normalised).
      ess_bulk, ess_tail: :func:`effective_sample_size` with ``method="bulk"`` and
        ``"tail"`` (Stan's summary columns).
    """

    mean: jax.Array
    sd: jax.Array
    ess: jax.Array
    rhat: jax.Array
    ess_bulk: jax.Array
    ess_tail: jax.Array

    @property
    def mcse(self) -> jax.Array:
        """Monte Carlo standard error of ``mean``: ``sd / sqrt(ess)``."""
        return self.sd / jnp.sqrt(self.ess)


def chain_summary(samples, statistic: Optional[Callable] = None) -> ChainSummary:
    """Mean, sd, ESS (mean, bulk and tail) and R-hat of a statistic of the draws.

    Args:
      samples: positions ``[chains, draws, *position_shape]``.
      statistic: a function of ONE position, ``f(x[*position_shape]) -> array``
        (vmapped over chains and draws); default the identity (every coordinate).

    Returns:
      A :class:`ChainSummary` whose fields have the statistic's shape (plus the
      ``mcse`` property).

    Example::

      >>> draws = jax.random.normal(jax.random.key(0), (4, 1000, 2))
      >>> s = chain_summary(draws, lambda x: jnp.stack([x[0], x[0] * x[1]]))
      >>> s.mean.shape, s.mcse.shape, s.rhat.shape     # each [2]
      ((2,), (2,), (2,))
    """
    x = _as_draws(samples)
    if statistic is not None:
        if not callable(statistic):
            raise ValueError(f"statistic={statistic!r}: expected a function of one position")
        x = _as_draws(jax.vmap(jax.vmap(statistic))(x), "statistic(samples)")
    count = x.shape[0] * x.shape[1]
    mean = jnp.mean(x, axis=(0, 1))
    sd = jnp.sqrt(jnp.sum(jnp.square(x - mean), axis=(0, 1)) / (count - 1))
    return ChainSummary(mean, sd, effective_sample_size(x), split_rhat(x),
                        effective_sample_size(x, method="bulk"),
                        effective_sample_size(x, method="tail"))


class TailAcceptance(NamedTuple):
    """What :func:`tail_acceptance` returns (float32 scalars).

    Attributes:
      tail: the mean acceptance probability of the steps that started from a draw whose
        energy is above the ``quantile`` of all the draws' energies.
      overall: the mean acceptance probability of all the steps.
      ratio: ``tail / overall``.
    """

    tail: jax.Array
    overall: jax.Array
    ratio: jax.Array


def tail_acceptance(energy, acceptance_rate, *, quantile: float = 0.95) -> TailAcceptance:
    """Acceptance out in the tails against acceptance overall, from a Metropolis sampler's
    recorded Info (MALA, HMC: ``draws.info.energy`` is the energy a step started from,
    ``draws.info.acceptance_rate`` that step's acceptance probability).

    On a Gaussian, high-energy draws accept as well as the rest or better (HMC: measured
    ratio 1.14 at target acceptance 0.8). A ratio well below 1 (below about 0.8) says the
    step size that fits the bulk does not fit the tails: the chains are rejected there and
    the tails are under-sampled, which R-hat and the bulk and tail ESS need not show. Raise
    the target acceptance (0.9-0.95), reparameterise, or use a mass matrix that fits the
    tails. On the README's banana at target 0.8 the ratio was 0.52-0.76 in each of ten runs,
    the curved coordinate's variance 3-7 standard errors low in the runs R-hat passed; at
    0.95, 0.97-0.98 and unbiased.

    Args:
      energy: ``[chains, draws]`` (or any shape) energies at the steps' starting points.
      acceptance_rate: the matching acceptance probabilities (same shape).
      quantile: in (0, 1): the tail is the draws above this quantile of the energies.

    Returns:
      A :class:`TailAcceptance` ``(tail, overall, ratio)``.

    Example::

      >>> energy = jnp.array([[0.1, 0.5, 3.0, 0.2], [0.3, 2.5, 0.4, 0.2]])
      >>> acceptance = jnp.array([[0.9, 0.8, 0.1, 0.9], [0.8, 0.3, 0.9, 0.9]])
      >>> result = tail_acceptance(energy, acceptance, quantile=0.75)   # the two highest
      >>> round(float(result.tail), 3), round(float(result.overall), 3)
      (0.2, 0.7)
    """
    quantile = check_in_range("quantile", quantile, 0, 1, include_low=False,
                              include_high=False, expected="a number in (0, 1)")
    energy, acceptance_rate = jnp.asarray(energy), jnp.asarray(acceptance_rate)
    if energy.shape != acceptance_rate.shape or energy.size < 2:
        raise ValueError(f"energy has shape {energy.shape} and acceptance_rate "
                         f"{acceptance_rate.shape}: expected the same shape, two draws or more")
    return _tail_acceptance(energy.ravel(), acceptance_rate.ravel(), quantile)


@functools.partial(jax.jit, static_argnums=2)
def _tail_acceptance(energy, acceptance_rate, quantile):
    in_tail = energy > jnp.quantile(energy, quantile)
    tail = jnp.sum(jnp.where(in_tail, acceptance_rate, 0.0)) / jnp.maximum(jnp.sum(in_tail), 1)
    overall = jnp.mean(acceptance_rate)
    return TailAcceptance(tail, overall, tail / overall)
