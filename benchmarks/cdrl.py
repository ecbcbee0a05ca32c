"""Cooperative diffusion recovery likelihood against diffusion recovery likelihood on 2-D toys
and the digits, and classifier-free guidance (issue 20's targets).

    python benchmarks/cdrl.py                                # checkerboard, rings; seeds 0-2
    python benchmarks/cdrl.py --datasets rings --seeds 0 --no-guidance
    python benchmarks/cdrl.py --datasets digits --no-variance   # FD on the digit yardstick
    python benchmarks/cdrl.py --quick --no-save              # 1/10 of the steps, print only
    python benchmarks/cdrl.py --datasets rings --no-guidance --set objective.step_scale=5e-4

For each dataset and seed, in one process:

* ``cdrl``: ``cdrl_2d_<toy>`` (``cdrl_digits``) trained (15 Langevin steps per level), then
  generation with ``K`` = 0 (the initializer alone), 5 and 15 refinement steps per level from
  the same EMA params: one row per ``K`` (``sample_candidates``: the candidates generation's
  chains start from a pick among, 0 for the initializer's proposal itself);
* ``rl``: ``rl_2d_<toy>`` (``rl_digits``) trained and sampled with ``K`` = 15 MALA steps per
  level (the preset's 30 set to 15), the same MLP and batch.

Each row: ``method``, ``dataset``, ``seed``, ``langevin_steps`` (generation's ``K``),
``mmd`` (the mean over 8 generations of 2,000 samples, each against the same 2,000 test
points; ``mmd_sd`` their standard deviation, ``mmd_draws`` 8; rows before 2026-12-06's last
runs used one generation), ``kl_nats`` (the level-0 energy's, by
quadrature: one value per trained model), ``seconds_per_sample`` (generating 2,000 samples,
1,000 on the digits, compiled, median of 3 repeats, divided by their number),
``train_seconds``, ``frechet_distance``
(None on the toys; on the digits the yardstick's, :func:`ebm_jax.metrics.score_digits`, the
mean over 3 generations of 1,000 digits, ``frechet_sd`` their spread, ``mmd`` None),
``guidance_w`` and ``class_accuracy`` (None without labels),
``stopped_at`` (the step the guard stopped the run at, measured then at its last good
checkpoint; None for a run that finished), ``overrides`` (``--set KEY=VALUE`` given to the
CDRL presets, a variant measured beside recovery likelihood; ``[]`` for the presets as
they are).
With guidance (default), per seed: ``cdrl_2d_labelled_8gaussians`` when a toy is measured,
``cdrl_digits_conditional`` when the digits are; one row per ``w`` in 0, 1, 3 with
``class_accuracy`` (on the toy the share of samples of class ``c`` nearest the data's mean of
``c``; on the digits the shipped digit classifier's agreement with ``c``),
``class_spread`` and ``class_spread_se`` (its standard error), from ``guidance_samples``
samples a ``w`` (16,000 on the toy, 2,000 on the digits); ``--no-compare`` gives these rows
alone. With ``--variance`` (default): per trained CDRL model, the
variance over 64 draws (one example per level each, the same params) of each level's EBM
gradient estimate with shared-noise pairs against the diffusion's own pairs (``x_{t+1}``
drawn from ``x_t``: the joint that posterior sampling also draws), rows ``variance_ratio``
at levels 1-3 (``estimate: chains``); and the same with exact chains, the training set
taken as the data law so that ``q(x_t | x_{t+1})`` can be drawn exactly, with the positive
phase's variance given ``x_{t+1}`` (``positive_ratio``; ``estimate: exact``, 64 and 1,024
draws; :func:`exact_chain_variances`). Rows go to benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

from ebm_jax import metrics  # noqa: E402
from ebm_jax.experiments import build, make_config, train  # noqa: E402
from ebm_jax.experiments.config import ConfigError, apply_overrides  # noqa: E402
from ebm_jax.experiments.data import TOY_LIMIT  # noqa: E402
from ebm_jax.experiments.evaluation import load_run  # noqa: E402
from ebm_jax.experiments.objectives.cdrl import build_model, make_loss  # noqa: E402
from ebm_jax.samplers import pair_posterior, sample_pair_posterior  # noqa: E402
from ebm_jax.train.guard import TrainingDiverged  # noqa: E402

TOYS = ("checkerboard", "rings")
# dataset -> (the CDRL preset, recovery likelihood's preset with the same networks and batch)
PRESETS = {"checkerboard": ("cdrl_2d_checkerboard", "rl_2d_checkerboard"),
           "rings": ("cdrl_2d_rings", "rl_2d_rings"),
           "digits": ("cdrl_digits", "rl_digits")}
# dataset -> (its guided preset, the summary key its class accuracy is read from, samples per
# w of its guidance sweep). On the toy the exact guided law's spread falls by 0.0025 from w = 1
# to 3 (quadrature, README), under half of 2,000 samples' standard error (0.0056); 16,000
# bring it to 0.002 (common draws across w cut the difference's further).
GUIDED = {"labelled_8gaussians": ("cdrl_2d_labelled_8gaussians", "class_accuracy", 16000),
          "digits": ("cdrl_digits_conditional", "classifier_accuracy", 2000)}
# measured dataset -> the guided dataset that goes with it (the toys share the labelled one)
GUIDED_WITH = {"checkerboard": "labelled_8gaussians", "rings": "labelled_8gaussians",
               "digits": "digits"}
CDRL_STEPS = (0, 5, 15)
RL_STEPS = 15
GUIDANCE = (0.0, 1.0, 3.0)
NUM_SAMPLES = 2000
MMD_DRAWS = 8
NUM_DIGITS = 1000  # the yardstick's sample size (sample_quality.py): FD is biased by it
FRECHET_DRAWS = 3


def measure_generation(exp, params, num: Optional[int] = None, repeats: int = 3,
                       draws: Optional[int] = None) -> dict:
    """``mmd``: the mean over ``draws`` independent generations of ``num`` samples of their MMD
    against the test set's first ``num`` points (``mmd_sd`` their standard deviation; one
    draw's MMD varies by about 0.0006 on rings, as much as the methods differ), and
    ``seconds_per_sample`` of the compiled generation (median of ``repeats``). On the digits,
    ``frechet_distance`` instead (the yardstick's, ``frechet_sd``, ``frechet_draws``). ``num``
    and ``draws`` default to 2,000 and 8 on a toy, 1,000 and 3 on the digits."""
    digits = exp.config.data.dataset == "digits"
    num = num or (NUM_DIGITS if digits else NUM_SAMPLES)
    draws = draws or (FRECHET_DRAWS if digits else MMD_DRAWS)
    generate = jax.jit(exp.generate, static_argnums=2)
    jax.block_until_ready(generate(jax.random.key(1), params, num))  # compiles
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(generate(jax.random.key(2 + r), params, num))
        times.append(time.perf_counter() - start)
    timing = {"seconds_per_sample": statistics.median(times) / num}
    key, name = ("frechet_distance", "frechet") if digits else ("mmd", "mmd")
    scores = []
    for d in range(draws):
        samples = np.asarray(generate(jax.random.key(100 + d), params, num))
        if not np.all(np.isfinite(samples)):
            scores = None
            break
        scores.append(metrics.score_digits(samples.reshape(num, -1))["frechet_distance"]
                      if digits else float(metrics.mmd(samples, exp.data.x_test[:num])))
    return {key: None if scores is None else float(np.mean(scores)),
            f"{name}_sd": None if scores is None else float(np.std(scores)),
            f"{name}_draws": draws, **timing}


def level_gradient_variances(exp, params, *, shared_noise: bool, draws: int = 64,
                             seed: int = 0) -> np.ndarray:
    """``[T]``: for each level, the summed variance over ``draws`` of the EBM params' gradient
    of that level's loss term, one example per level per draw (the EBM term only: the
    initializer's never reaches the EBM's params)."""
    config = exp.config
    model = build_model(config, exp.data, nnx.Rngs(0))
    loss = make_loss(config, model, shared_noise=shared_noise, per_level_info=True)
    levels = model.schedule.num_levels
    rng = np.random.default_rng(seed)
    batches = jnp.asarray(exp.data.x_train[rng.choice(len(exp.data.x_train), draws * levels)]
                          .reshape(draws, levels, -1))
    state = loss.init(None, params, {"x": batches[0]})

    def level_losses(p, x, key):
        info = loss.loss(p, state, {"x": x}, key)[1][1]
        return jnp.stack([info[f"loss/level_{t}"] for t in range(levels)])

    def flat_jacobian(x, key):
        jac = jax.jacrev(level_losses)(params, x, key)["energy"]
        return jnp.concatenate([leaf.reshape(levels, -1) for leaf in jax.tree.leaves(jac)], 1)

    grads = jax.jit(jax.vmap(flat_jacobian))(batches, jax.random.split(jax.random.key(seed),
                                                                       draws))
    return np.asarray(jnp.sum(jnp.var(grads, axis=0), axis=-1))


def exact_chain_variances(grad_fn, data, schedule, levels, *, data_noise: float,
                          draws: int = 64, seed: int = 0) -> dict:
    """Each level's gradient variances when the chains sample ``q(x_t | x_{t+1})`` exactly.

    The data is the empirical law of ``data`` (``[N, ...]``, level 0 diffused once by
    ``data_noise``), so that both couplings' posteriors are exact
    (:func:`ebm_jax.samplers.pair_posterior`). Per draw: ``x_{t+1}`` from its marginal (the
    same for both couplings), two draws ``x_t, x_t'`` of each coupling's ``x_t`` given it, and
    ``y`` from the diffusion's posterior (an exact chain). ``grad_fn(x, t)`` is the flat
    gradient ``g`` of one example's energy in the EBM's params. Returns ``[len(levels)]``
    arrays, each summed over the params:

    * ``positive_shared``, ``positive_joint``: ``E Var(g(x_t) | x_{t+1})``, the positive
      phase's variance given the condition the negative phase shares (mean of
      ``|g(x_t) - g(x_t')|² / 2``); the diffusion's own pairs are posterior sampling's law;
    * ``whole_shared``, ``whole_joint``: the variance over draws of ``g(x_t) - g(y)``, one
      example's whole recovery-likelihood gradient with exact chains. As ``y`` is independent of
      ``x_t`` given ``x_{t+1}`` and matches the joint's conditional, the joint's is
      ``2 E Var_q(g | x_{t+1})`` while the shared pairs' keeps ``E Var_q(g | x_{t+1})``: their
      ratio is at least 1/2 whatever ``g``, the data and the schedule.
    """
    data = jnp.asarray(data)
    scale = float(np.sqrt(1.0 - data_noise**2))
    mean_scales = np.asarray(schedule.marginal_alphas)
    noise_scales = np.asarray(schedule.marginal_sigmas)

    def one_draw(key, level):
        k_i, k_n, k_e, k_s, k_j, k_y = jax.random.split(key, 6)
        x0 = (scale * data[jax.random.randint(k_i, (), 0, data.shape[0])]
              + data_noise * jax.random.normal(k_n, data.shape[1:]))
        x_next = (jnp.asarray(mean_scales, jnp.float32)[level + 1] * x0
                  + jnp.asarray(noise_scales, jnp.float32)[level + 1]
                  * jax.random.normal(k_e, data.shape[1:]))
        posteriors = {name: pair_posterior(schedule, data, x_next, level, shared_noise=shared,
                                           data_noise=data_noise)
                      for name, shared in (("joint", False), ("shared", True))}
        exact_chain = grad_fn(sample_pair_posterior(k_y, posteriors["joint"]), level)
        out = {}
        for name, k in (("joint", k_j), ("shared", k_s)):
            k1, k2 = jax.random.split(k)
            g1 = grad_fn(sample_pair_posterior(k1, posteriors[name]), level)
            g2 = grad_fn(sample_pair_posterior(k2, posteriors[name]), level)
            out[f"positive_{name}"] = 0.5 * jnp.sum(jnp.square(g1 - g2))
            out[f"whole_{name}"] = g1 - exact_chain
        return out

    result = {k: [] for k in ("positive_shared", "positive_joint", "whole_shared",
                              "whole_joint")}
    all_draws = jax.jit(jax.vmap(one_draw, in_axes=(0, None)))   # one program for every level
    for level in levels:
        keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), level), draws)
        out = all_draws(keys, jnp.int32(level))
        for name in ("positive_shared", "positive_joint"):
            result[name].append(float(jnp.mean(out[name])))
        for name in ("whole_shared", "whole_joint"):
            result[name].append(float(jnp.sum(jnp.var(out[name], axis=0))))
    return {k: np.asarray(v) for k, v in result.items()}


def energy_gradient_fn(model, params):
    """``grad_fn(x, t)`` for :func:`exact_chain_variances`: the flat gradient of one example's
    level-``t`` energy in the EBM's params (``params`` of a CDRL ``model``)."""

    def grad_fn(x, level):
        grads = jax.grad(lambda p: model.level_energy({**params, "energy": p}, x, level))(
            params["energy"])
        return jnp.concatenate([leaf.reshape(-1) for leaf in jax.tree.leaves(grads)])

    return grad_fn


VARIANCE_LEVELS = (1, 2, 3)
EXACT_DRAWS = (64, 1024)   # the 64, and enough to read the ratio to a few percent


def variance_rows(toy: str, seed: int, exp, params) -> list:
    """Rows ``cdrl_variance`` per level 1-3: with the run's chains (``estimate: chains``, 64
    draws) and with exact chains over the training set (``estimate: exact``, 64 and 1,024
    draws; also the positive phase's conditional variances, ``positive_*``)."""
    shared = level_gradient_variances(exp, params, shared_noise=True, seed=seed)
    joint = level_gradient_variances(exp, params, shared_noise=False, seed=seed)
    today = datetime.date.today().isoformat()
    base = {"benchmark": "cdrl_variance", "method": "cdrl", "dataset": toy, "seed": seed}
    rows = [{**base, "level": t, "estimate": "chains", "draws": 64,
             "variance_shared": float(shared[t]), "variance_joint": float(joint[t]),
             "variance_ratio": float(shared[t] / joint[t]), "date": today}
            for t in VARIANCE_LEVELS]
    model = build_model(exp.config, exp.data, nnx.Rngs(0))
    for draws in EXACT_DRAWS:
        exact = exact_chain_variances(energy_gradient_fn(model, params), exp.data.x_train,
                                      model.schedule, VARIANCE_LEVELS,
                                      data_noise=float(model.scales.data_noise), draws=draws,
                                      seed=seed)
        for i, t in enumerate(VARIANCE_LEVELS):
            rows.append({**base, "level": t, "estimate": "exact", "draws": draws,
                         "variance_shared": float(exact["whole_shared"][i]),
                         "variance_joint": float(exact["whole_joint"][i]),
                         "variance_ratio": float(exact["whole_shared"][i]
                                                 / exact["whole_joint"][i]),
                         "positive_shared": float(exact["positive_shared"][i]),
                         "positive_joint": float(exact["positive_joint"][i]),
                         "positive_ratio": float(exact["positive_shared"][i]
                                                 / exact["positive_joint"][i]),
                         "date": today})
    return rows


def row(method, toy, seed, steps, summary, measured, **extra) -> dict:
    return {"benchmark": "cdrl", "method": method, "dataset": toy, "seed": seed,
            "langevin_steps": steps, "mmd": measured.get("mmd"),
            "mmd_sd": measured.get("mmd_sd"), "mmd_draws": measured.get("mmd_draws"),
            "kl_nats": summary.get("kl_nats"),
            "seconds_per_sample": measured.get("seconds_per_sample"),
            "train_seconds": summary.get("train_seconds"),
            "frechet_distance": measured.get("frechet_distance"),
            "frechet_sd": measured.get("frechet_sd"),
            "guidance_w": None, "class_accuracy": None,
            "stopped_at": summary.get("stopped_at"), **extra,
            "date": datetime.date.today().isoformat()}


def trained(preset: str, overrides: list, quick: bool):
    """``(summary, exp, state)`` of a run of ``preset`` (a tenth of its steps with ``quick``).

    A run the guard stops is measured at its last good checkpoint: the summary then holds
    ``kl_nats`` of that checkpoint (toys) and ``stopped_at``, the step it stopped at. Stopped
    before its first checkpoint, it has nothing to measure: ``exp`` and ``state`` are None."""
    config = make_config(preset, overrides)
    if quick:
        config = make_config(preset, overrides + [f"run.num_steps={config.run.num_steps // 10}"])
    with tempfile.TemporaryDirectory() as workdir:
        try:
            summary = train(config, workdir, progress=False)
        except TrainingDiverged as stopped:
            summary = {"stopped_at": stopped.step}
            if not os.listdir(os.path.join(workdir, "checkpoints")):
                return summary, None, None
        exp, state = load_run(workdir)
    if "stopped_at" in summary and exp.data.log_prob is not None:
        params = state.ema_params
        summary["kl_nats"] = float(metrics.kl_by_quadrature(
            exp.data.log_prob, lambda x: exp.energy_fn(params, x), limit=TOY_LIMIT))
    return summary, exp, state


def compare(toy: str, seed: int, quick: bool, variance: bool = True,
            overrides: tuple = ()) -> list:
    """The rows of CDRL (K = 0, 5, 15; its preset changed by ``overrides``, dotted
    ``key=value``) and RL (K = 15) on ``toy`` (a key of :data:`PRESETS`) for ``seed`` (and
    the gradient variances of the CDRL model)."""
    rows = []
    cdrl_preset, rl_preset = PRESETS[toy]
    summary, exp, state = trained(cdrl_preset, [f"run.seed={seed}", *overrides], quick)
    if variance and state is not None:
        rows += [{**r, "overrides": list(overrides)}
                 for r in variance_rows(toy, seed, exp, state.ema_params)]
    for steps in CDRL_STEPS:   # a run stopped before any checkpoint: rows without figures
        measured, candidates = {}, None
        if state is not None:
            # K = 0 is the initializer alone, whatever starts the refinement otherwise
            config = apply_overrides(exp.config, [f"objective.sample_langevin_steps={steps}"]
                                     + (["objective.sample_candidates=0"] if steps == 0 else []))
            candidates = config.objective.sample_candidates
            measured = measure_generation(build(config), state.ema_params)
        rows.append(row("cdrl", toy, seed, steps, summary, measured,
                        sample_candidates=candidates, overrides=list(overrides)))
    summary, exp, state = trained(rl_preset, [f"run.seed={seed}",
                                              f"objective.num_langevin_steps={RL_STEPS}"],
                                  quick)
    rows.append(row("rl", toy, seed, RL_STEPS, summary,
                    {} if state is None else measure_generation(exp, state.ema_params),
                    overrides=[]))
    return rows


def guidance(seed: int, quick: bool, dataset: str = "labelled_8gaussians") -> list:
    """One row per ``w``: class accuracy and spread of guided samples on ``dataset`` (a key of
    :data:`GUIDED`; on the digits the accuracy is the shipped classifier's agreement)."""
    preset, accuracy, samples = GUIDED[dataset]
    summary, _, _ = trained(preset, [f"run.seed={seed}", f"objective.guidance_samples={samples}"],
                            quick)
    return [row("cdrl", dataset, seed, 15, summary, {"mmd": summary.get("mmd")},
                guidance_w=w, class_accuracy=summary.get(f"{accuracy}_w{w:g}"),
                class_spread=summary.get(f"class_spread_w{w:g}"),
                class_spread_se=summary.get(f"class_spread_se_w{w:g}"),
                guidance_samples=samples, overrides=[])
            for w in GUIDANCE]


def guided_datasets(datasets) -> list:
    """The guided datasets that go with the measured ``datasets``, each once, in order."""
    return list(dict.fromkeys(GUIDED_WITH[d] for d in datasets))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", "--toys", dest="datasets", nargs="+", default=list(TOYS),
                        choices=list(PRESETS), help="the 2-D toys by default; digits on demand")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--no-guidance", action="store_true")
    parser.add_argument("--no-compare", action="store_true",
                        help="only the guidance rows (no CDRL against recovery likelihood)")
    parser.add_argument("--no-variance", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tenth of each preset's steps")
    parser.add_argument("--no-save", action="store_true", help="print the rows only")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="change the CDRL presets (repeatable; e.g. "
                        "objective.step_scale=5e-4): recorded in each row as overrides")
    args = parser.parse_args(argv)
    for toy in args.datasets:        # a bad key or value: one line, before any training
        try:
            make_config(PRESETS[toy][0], args.overrides)
        except ConfigError as error:
            parser.error(f"--set: {error}")
    path = results_path()
    for seed in args.seeds:
        rows = [] if args.no_compare else [
            r for toy in args.datasets
            for r in compare(toy, seed, args.quick, not args.no_variance, tuple(args.overrides))]
        if not args.no_guidance:
            for guided in guided_datasets(args.datasets):
                rows += guidance(seed, args.quick, guided)
        for r in rows:
            r["quick"] = args.quick
            print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()},
                  flush=True)
            if not args.no_save:
                append_row(r, path)


if __name__ == "__main__":
    main()
