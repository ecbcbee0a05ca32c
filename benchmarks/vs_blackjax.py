"""Samplers against blackjax: effective samples per second of MALA, HMC and NUTS, each with its
own library's adaptation, and their moments against exact or long reference values.

    python benchmarks/vs_blackjax.py              # 3 targets x 3 samplers x 2 libraries, 3 repeats
    python benchmarks/vs_blackjax.py --quick      # 1 repeat, half the draws (a few minutes)
    python benchmarks/vs_blackjax.py --targets funnel10 --samplers nuts --repeats 5

Targets (``--targets``; log-densities of a flat position ``[D]``):

==============  ===========================================================================
``gaussian10``  N(0, S), D = 10: sds geometric from 0.1 to 10, correlation 0.9^|i-j|
                (exact moments).
``funnel10``    Neal's funnel, D = 10: v ~ N(0, 3^2), x_1..9 | v ~ N(0, e^v) (exact: the
                means, and v's variance 9; x_i's variance e^4.5 ~ 90 is too heavy-tailed for
                a standard error, so it is not checked).
``logistic``    Bayesian logistic regression on scikit-learn's breast-cancer data (569 rows,
                30 standardised features and an intercept, D = 31, prior N(0, 1)); its
                reference moments are a long run of blackjax's NUTS in the same benchmark
                (8 chains x 4,000 draws after 1,000 warm-up; ``--quick``: 4 x 2,000).
==============  ===========================================================================

Samplers (``--samplers``), each library with its own adaptation, ``--chains`` chains (4), both
starting from the same draws and the same initial step size 0.1, with the same warm-up and
draws per chain (per sampler, :data:`WARMUP` and :data:`DRAWS`: MALA 5,000 and 20,000, HMC
1,000 and 2,000, NUTS 1,000 and 1,000, so that every ESS is in the hundreds):

* ``mala``: the toolkit's ``mala`` preconditioned by a diagonal inverse mass, adapted by
  ``window_adaptation`` (Stan's windows, target acceptance 0.574, one step size and mass
  shared by the chains; dual averaging on their harmonic mean acceptance in the initial
  buffer, their mean after); blackjax's ``mala`` has no mass matrix, so its own recipe is the dual
  averaging of ``blackjax.adaptation.step_size`` (target 0.574), each chain its own step;
* ``hmc``: ``--leapfrog`` steps (10), diagonal mass; ``window_adaptation`` (target 0.8)
  against ``blackjax.window_adaptation(blackjax.hmc)`` run per chain (vmapped, as blackjax's
  documentation runs many chains);
* ``nuts``: blackjax's NUTS kernel in both, through the toolkit's ``from_blackjax`` adapter and
  ``window_adaptation`` against ``blackjax.window_adaptation(blackjax.nuts)`` per chain: the
  row measures the adaptation and the chain plumbing, the kernel being the same.

Timing (compile excluded and reported): each warm-up runs first with another key (that
run's time minus the timed run's is ``compile_seconds_warmup``), then timed; the sampling
program is lowered and compiled apart (``compile_seconds_sampling``), then timed (the best of
3 calls). ``ess_per_s`` = the smallest bulk ESS over the coordinates
(``ebm_jax.samplers.effective_sample_size(method="bulk")``, the same estimator for both
libraries' draws) / sampling seconds; ``ess_per_s_total`` divides by warm-up + sampling
seconds. ``ratio_vs_blackjax`` = toolkit ess_per_s / blackjax ess_per_s in the same repeat
(paired); the summary row gives its median and range over ``--repeats`` (3) seeds.

Moments: per checked coordinate, the mean and the variance against the exact or reference
values, as z-scores over the combined Monte Carlo standard error (``sd(f) / sqrt(ESS(f))``
of the draws, plus the reference's own); ``max_abs_z`` and ``moments_within_3_mcse``
(every |z| <= 3; with up to 62 checks per row, a correct sampler exceeds 3 somewhere about
15% of the time).

One JSON object per row, appended to benchmarks/results/<device>-<date>.json (``--no-save``:
not written), then a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from typing import Callable, NamedTuple, Optional

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from blackjax.adaptation.step_size import dual_averaging_adaptation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax.samplers import (effective_sample_size, from_blackjax, hmc, mala,  # noqa: E402
                              sample_chains, window_adaptation)

SAMPLERS = ("mala", "hmc", "nuts")
TARGET_ACCEPTANCE = {"mala": 0.574, "hmc": 0.8, "nuts": 0.8}
# Per sampler, so that every row's ESS is in the hundreds at least (an ESS estimate below ~100
# is noise): MALA mixes in many more, cheaper steps. --quick halves the draws.
WARMUP = {"mala": 5000, "hmc": 1000, "nuts": 1000}
DRAWS = {"mala": 20000, "hmc": 2000, "nuts": 1000}
TIMED_CALLS = 3  # the sampling program's time is the best of these calls
INITIAL_STEP_SIZE = 0.1


class Target(NamedTuple):
    """A log-density of a flat position ``[D]`` with its known (or reference) moments."""

    dim: int
    logdensity: Callable
    start_scale: float  # chains start at N(0, start_scale^2 I)
    exact_mean: Optional[np.ndarray]  # None: from a reference run
    exact_var: Optional[np.ndarray]
    check_var: np.ndarray  # which coordinates' variances are compared (bool [D])


def correlated_gaussian(dim: int = 10, rho: float = 0.9) -> Target:
    sds = np.geomspace(0.1, 10.0, dim)
    lags = np.abs(np.subtract.outer(np.arange(dim), np.arange(dim)))
    cov = np.outer(sds, sds) * rho ** lags
    precision = jnp.asarray(np.linalg.inv(cov), jnp.float32)
    return Target(dim, lambda x: -0.5 * x @ precision @ x, 1.0, np.zeros(dim), sds ** 2,
                  np.ones(dim, bool))


def funnel(dim: int = 10) -> Target:
    def logdensity(x):
        v, rest = x[0], x[1:]
        return (-v ** 2 / 18.0 - 0.5 * jnp.sum(rest ** 2) * jnp.exp(-v)
                - 0.5 * (dim - 1) * v)

    var = np.full(dim, np.exp(4.5))
    var[0] = 9.0
    return Target(dim, logdensity, 1.0, np.zeros(dim), var, np.arange(dim) == 0)


def logistic_regression() -> Target:
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    features = (features - features.mean(0)) / features.std(0)
    design = jnp.asarray(np.hstack([np.ones((len(features), 1)), features]), jnp.float32)
    labels = jnp.asarray(labels, jnp.float32)

    def logdensity(beta):
        logits = design @ beta
        return jnp.sum(labels * logits - jax.nn.softplus(logits)) - 0.5 * jnp.sum(beta ** 2)

    dim = design.shape[1]
    return Target(dim, logdensity, 0.1, None, None, np.ones(dim, bool))


TARGETS = {"gaussian10": correlated_gaussian, "funnel10": funnel, "logistic": logistic_regression}


class Run(NamedTuple):
    """One library's run: draws ``[C, N, D]`` and its times and diagnostics."""

    draws: np.ndarray
    warmup_seconds: float
    sample_seconds: float
    compile_seconds_warmup: float
    compile_seconds_sampling: float
    grad_evals: int
    acceptance: float
    step_size: float  # the mean over chains (blackjax adapts one per chain)
    divergences: Optional[int]


def _timed(fn, *args, calls: int = 1):
    """``fn(*args)`` and its best wall-clock time over ``calls`` calls."""
    best = float("inf")
    for _ in range(calls):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return out, best


class _PhaseTimer:
    """One runner's warm-up and sampling times, compile apart: the first warm-up runs first
    with another key (its time over the timed run's is the compile); the sampling program is
    lowered and compiled once, then timed (the best of :data:`TIMED_CALLS` calls)."""

    def __init__(self):
        self.first_warmup: Optional[float] = None
        self.sample_compile: Optional[float] = None
        self._sample = None

    def warmup(self, adapt: Callable, first_args: tuple, args: tuple):
        """``(adapt(*args), its seconds, the compile's seconds)``."""
        if self.first_warmup is None:
            start = time.perf_counter()
            jax.block_until_ready(adapt(*first_args))
            self.first_warmup = time.perf_counter() - start
        out, seconds = _timed(adapt, *args)
        return out, seconds, max(self.first_warmup - seconds, 0.0)

    def sample(self, jitted: Callable, args: tuple):
        """``(the compiled jitted(*args), its best seconds)``."""
        if self._sample is None:
            start = time.perf_counter()
            self._sample = jitted.lower(*args).compile()
            self.sample_compile = time.perf_counter() - start
        return _timed(self._sample, *args, calls=TIMED_CALLS)


# -- the toolkit -----------------------------------------------------------------------------

def toolkit_runner(sampler: str, target: Target, num_warmup: int, num_draws: int,
                   leapfrog: int) -> Callable:
    """``run(key, starts) -> Run`` with the toolkit's samplers and ``window_adaptation``; the
    constructor and the sampling program are built once, so repeats reuse their compiles."""
    def energy_fn(params, x):
        return -target.logdensity(x)

    if sampler == "mala":
        def make(h, m):
            return mala(energy_fn, h, inverse_mass=m)
    elif sampler == "hmc":
        def make(h, m):
            return hmc(energy_fn, h, leapfrog, inverse_mass=m)
    else:
        def make(h, m):
            return from_blackjax(blackjax.nuts, energy_fn, step_size=h, inverse_mass_matrix=m)

    @jax.jit
    def sample(key, states, step_size, inverse_mass):
        _, draws = sample_chains(key, make(step_size, inverse_mass), states, None, num_draws)
        return draws

    def adapt(key, starts):
        warm = window_adaptation(key, make, starts, None, initial_step_size=INITIAL_STEP_SIZE,
                                 num_warmup=num_warmup,
                                 target_acceptance=TARGET_ACCEPTANCE[sampler])
        return warm.states, warm.step_size, warm.inverse_mass

    timer = _PhaseTimer()

    def run(key, starts) -> Run:
        key_warm, key_sample = jax.random.split(key)
        (states, step_size, inverse_mass), warm_s, warm_compile = timer.warmup(
            adapt, (jax.random.fold_in(key_warm, 1), starts), (key_warm, starts))
        draws, sample_s = timer.sample(sample, (key_sample, states, step_size, inverse_mass))
        if sampler == "nuts":
            grad_evals = int(np.sum(draws.info.num_integration_steps))
            divergences = int(np.sum(draws.info.is_divergent))
        else:
            grad_evals = int(draws.positions.shape[0] * num_draws * (leapfrog if sampler == "hmc"
                                                                     else 1))
            divergences = int(np.sum(draws.info.nonfinite))
        return Run(np.asarray(draws.positions), warm_s, sample_s, warm_compile,
                   timer.sample_compile, grad_evals,
                   float(np.mean(draws.info.acceptance_rate)), float(step_size), divergences)

    return run


# -- blackjax ---------------------------------------------------------------------------------

def _blackjax_mala_warmup(logdensity, num_warmup):
    """blackjax's own recipe for MALA (which has no mass matrix): dual averaging of the step
    size (``blackjax.adaptation.step_size``), one chain."""
    da_init, da_update, da_final = dual_averaging_adaptation(TARGET_ACCEPTANCE["mala"])

    def warmup(key, position):
        state = blackjax.mala(logdensity, INITIAL_STEP_SIZE).init(position)

        def body(carry, k):
            state, da_state = carry
            step_size = jnp.exp(da_state.log_step_size)
            state, info = blackjax.mala(logdensity, step_size).step(k, state)
            return (state, da_update(da_state, info.acceptance_rate)), None

        (state, da_state), _ = jax.lax.scan(body, (state, da_init(INITIAL_STEP_SIZE)),
                                            jax.random.split(key, num_warmup))
        return state, {"step_size": da_final(da_state)}

    return warmup


def blackjax_runner(sampler: str, target: Target, num_warmup: int, num_draws: int,
                    leapfrog: int) -> Callable:
    """``run(key, starts) -> Run`` written as blackjax's documentation writes many chains:
    the warm-up vmapped over chains (each its own parameters), then a scan of the kernel per
    chain, vmapped."""
    logdensity = target.logdensity
    if sampler == "mala":
        one_warmup = _blackjax_mala_warmup(logdensity, num_warmup)

        def algorithm(params):
            return blackjax.mala(logdensity, params["step_size"])
    else:
        build = blackjax.hmc if sampler == "hmc" else blackjax.nuts
        extra = {"num_integration_steps": leapfrog} if sampler == "hmc" else {}
        adaptation = blackjax.window_adaptation(
            build, logdensity, initial_step_size=INITIAL_STEP_SIZE,
            target_acceptance_rate=TARGET_ACCEPTANCE[sampler],
            adaptation_info_fn=get_filter_adapt_info_fn(), **extra)

        def one_warmup(key, position):
            (state, params), _ = adaptation.run(key, position, num_steps=num_warmup)
            return state, params

        def algorithm(params):  # the adapted params repeat the fixed ones: take the two
            return build(logdensity, step_size=params["step_size"],
                         inverse_mass_matrix=params["inverse_mass_matrix"], **extra)

    adapt = jax.jit(jax.vmap(one_warmup))

    def one_chain(key, state, params):
        kernel = algorithm(params).step

        def body(state, k):
            state, info = kernel(k, state)
            steps = getattr(info, "num_integration_steps", jnp.int32(1))
            divergent = getattr(info, "is_divergent", jnp.bool_(False))
            return state, (state.position, info.acceptance_rate, steps, divergent)

        return jax.lax.scan(body, state, jax.random.split(key, num_draws))[1]

    sample = jax.jit(jax.vmap(one_chain))
    timer = _PhaseTimer()

    def run(key, starts) -> Run:
        key_warm, key_sample = jax.random.split(key)
        num_chains = starts.shape[0]
        first_keys = jax.random.split(jax.random.fold_in(key_warm, 1), num_chains)
        (states, params), warm_s, warm_compile = timer.warmup(
            adapt, (first_keys, starts), (jax.random.split(key_warm, num_chains), starts))
        (positions, acceptance, steps, divergent), sample_s = timer.sample(
            sample, (jax.random.split(key_sample, num_chains), states, params))
        return Run(np.asarray(positions), warm_s, sample_s, warm_compile, timer.sample_compile,
                   int(np.sum(steps)), float(np.mean(acceptance)),
                   float(np.mean(params["step_size"])),
                   int(np.sum(divergent)) if sampler != "mala" else None)

    return run


RUNNERS = {"ebm_jax": toolkit_runner, "blackjax": blackjax_runner}


# -- statistics -------------------------------------------------------------------------------

class Moments(NamedTuple):
    """Per coordinate ``[D]``: the mean and variance of draws and their standard errors."""

    mean: np.ndarray
    var: np.ndarray
    mean_se: np.ndarray
    var_se: np.ndarray


def moments(draws: np.ndarray) -> Moments:
    """Means and variances of draws ``[C, N, D]`` with Monte Carlo standard errors
    ``sd(f) / sqrt(ESS(f))`` for ``f = x`` and ``f = (x - mean)^2``."""
    draws = np.asarray(draws, np.float64)
    mean = draws.mean(axis=(0, 1))
    squares = (draws - mean) ** 2
    var = squares.mean(axis=(0, 1))

    def se(f):
        ess = np.asarray(effective_sample_size(jnp.asarray(f, jnp.float32)), np.float64)
        return f.std(axis=(0, 1), ddof=1) / np.sqrt(ess)

    return Moments(mean, var, se(draws), se(squares))


def moment_z_scores(got: Moments, target: Target, reference: Optional[Moments]) -> np.ndarray:
    """z-scores of the checked means and variances against the exact or reference values."""
    if target.exact_mean is not None:
        ref_mean, ref_var = target.exact_mean, target.exact_var
        ref_mean_se = ref_var_se = np.zeros(target.dim)
    else:
        ref_mean, ref_var = reference.mean, reference.var
        ref_mean_se, ref_var_se = reference.mean_se, reference.var_se
    z_mean = (got.mean - ref_mean) / np.hypot(got.mean_se, ref_mean_se)
    z_var = (got.var - ref_var) / np.hypot(got.var_se, ref_var_se)
    return np.concatenate([z_mean, z_var[target.check_var]])


def min_bulk_ess(draws: np.ndarray) -> float:
    return float(np.min(np.asarray(effective_sample_size(jnp.asarray(draws), method="bulk"))))


def reference_moments(target: Target, quick: bool) -> Moments:
    """A long blackjax NUTS run: 8 x 4,000 draws after 1,000 warm-up (quick: 4 x 2,000)."""
    chains, draws = (4, 2000) if quick else (8, 4000)
    run = blackjax_runner("nuts", target, 1000, draws, 10)
    starts = target.start_scale * jax.random.normal(jax.random.key(12345), (chains, target.dim))
    return moments(run(jax.random.key(54321), starts).draws)


# -- the benchmark ----------------------------------------------------------------------------

def run_pair(target_name: str, target: Target, sampler: str, args, reference) -> list[dict]:
    """Both libraries, ``args.repeats`` seeds each (interleaved, so that the paired ratios
    share the machine's state); one row per run and a summary row."""
    num_warmup = args.warmup or WARMUP[sampler]
    num_draws = args.draws or DRAWS[sampler] // (2 if args.quick else 1)
    runners = {lib: make(sampler, target, num_warmup, num_draws, args.leapfrog)
               for lib, make in RUNNERS.items()}
    rows, ratios, ratios_total = [], [], []
    for seed in range(args.repeats):
        key = jax.random.key(seed)
        starts = target.start_scale * jax.random.normal(jax.random.fold_in(key, 7),
                                                        (args.chains, target.dim))
        per_lib = {}
        for lib, runner in runners.items():
            result = runner(key, starts)
            z = moment_z_scores(moments(result.draws), target, reference)
            ess = min_bulk_ess(result.draws)
            row = dict(benchmark="vs_blackjax", kind="run", target=target_name,
                       sampler=sampler, library=lib, seed=seed, chains=args.chains,
                       num_warmup=num_warmup, num_draws=num_draws,
                       min_ess_bulk=round(ess, 1),
                       ess_per_s=ess / result.sample_seconds,
                       ess_per_s_total=ess / (result.warmup_seconds + result.sample_seconds),
                       ess_per_grad=ess / max(result.grad_evals, 1),
                       warmup_seconds=result.warmup_seconds,
                       sample_seconds=result.sample_seconds,
                       compile_seconds_warmup=result.compile_seconds_warmup,
                       compile_seconds_sampling=result.compile_seconds_sampling,
                       grad_evals=result.grad_evals, acceptance=result.acceptance,
                       step_size=result.step_size, divergences=result.divergences,
                       max_abs_z=float(np.max(np.abs(z))),
                       num_beyond_3=int(np.sum(np.abs(z) > 3)), num_checks=int(z.size),
                       moments_within_3_mcse=bool(np.all(np.abs(z) <= 3)))
            per_lib[lib] = row
            rows.append(row)
        ratios.append(per_lib["ebm_jax"]["ess_per_s"] / per_lib["blackjax"]["ess_per_s"])
        ratios_total.append(per_lib["ebm_jax"]["ess_per_s_total"]
                            / per_lib["blackjax"]["ess_per_s_total"])
    ours = [r for r in rows if r["library"] == "ebm_jax"]
    theirs = [r for r in rows if r["library"] == "blackjax"]
    rows.append(dict(
        benchmark="vs_blackjax", kind="summary", target=target_name, sampler=sampler,
        repeats=args.repeats, ratio_vs_blackjax=statistics.median(ratios),
        ratio_range=[min(ratios), max(ratios)], ratios=ratios,
        ratio_total_vs_blackjax=statistics.median(ratios_total),
        ess_per_s=statistics.median(r["ess_per_s"] for r in ours),
        blackjax_ess_per_s=statistics.median(r["ess_per_s"] for r in theirs),
        compile_seconds=ours[0]["compile_seconds_warmup"] + ours[0]["compile_seconds_sampling"],
        blackjax_compile_seconds=(theirs[0]["compile_seconds_warmup"]
                                  + theirs[0]["compile_seconds_sampling"]),
        max_abs_z=max(r["max_abs_z"] for r in ours),
        blackjax_max_abs_z=max(r["max_abs_z"] for r in theirs),
        moments_within_3_mcse=all(r["moments_within_3_mcse"] for r in ours),
        blackjax_moments_within_3_mcse=all(r["moments_within_3_mcse"] for r in theirs)))
    return rows


def print_table(rows: list) -> None:
    print("| target | sampler | ESS/s ebm_jax | ESS/s blackjax | ratio (median, range) | "
          "compile s (ours / bj) | max abs z (ours / bj) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("kind") != "summary":
            continue
        low, high = r["ratio_range"]
        print(f"| {r['target']} | {r['sampler']} | {r['ess_per_s']:,.0f} | "
              f"{r['blackjax_ess_per_s']:,.0f} | {r['ratio_vs_blackjax']:.2f} "
              f"({low:.2f}-{high:.2f}) | {r['compile_seconds']:.1f} / "
              f"{r['blackjax_compile_seconds']:.1f} | {r['max_abs_z']:.1f} / "
              f"{r['blackjax_max_abs_z']:.1f} |")


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS))
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up steps (default per sampler: mala 5000, hmc and nuts 1000)")
    parser.add_argument("--draws", type=int, default=None,
                        help="draws per chain (default per sampler: mala 20000, hmc 2000, nuts "
                             "1000; --quick halves them)")
    parser.add_argument("--leapfrog", type=int, default=10, help="HMC's steps per trajectory")
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    for name in ("chains", "warmup", "draws", "leapfrog", "repeats"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)}: expected a positive int")
    path = None if args.no_save else results_path()
    stamp = dict(device=device_name(), date=datetime.date.today().isoformat(),
                 jax=jax.__version__, blackjax=blackjax.__version__, quick=args.quick)
    rows = []
    for target_name in args.targets:
        target = TARGETS[target_name]()
        reference = (None if target.exact_mean is not None
                     else reference_moments(target, args.quick))
        for sampler in args.samplers:
            for row in run_pair(target_name, target, sampler, args, reference):
                row.update(stamp)
                print(json.dumps(row), flush=True)
                if path:
                    append_row(row, path)
                rows.append(row)
    print_table(rows)
    return rows


if __name__ == "__main__":
    main()
