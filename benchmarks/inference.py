"""Energy-based transformers (EBT) against feed-forward baselines: denoising, multimodal
regression and ranking, with inference by energy minimisation (:mod:`ebm_jax.inference`).

    python benchmarks/inference.py --quick          # 1 seed, 600 steps a run (a smoke test)
    python benchmarks/inference.py                  # 3 seeds, 4,000 steps a run
    python benchmarks/inference.py --seeds 0 --figure   # also the pictures (PNGs)

Tasks (one JSON row per task, method and seed, appended to
benchmarks/results/<device>-<date>.json; ``--no-save`` only prints):

* ``ebt_digits_denoise``: the 8x8 digits with ``x_noisy = clip(x + 0.3 N(0, I), -1, 1)``;
  an MLP energy over (noisy image, candidate), the prediction ``K = 4`` learned-step descent
  steps from the noisy image. Methods: ``ebt_system1`` (reconstruction averaged over the
  ``K`` steps), ``ebt_system2`` (final step, steps drawn in ``[1, 3K]``, step jitter, starts
  ``y0 + 0.1 N``, a replay buffer, and stationarity, calibration and batch-negative terms),
  and ``feedforward``, an MLP denoiser with the same parameter count, loss, batch and steps.
  Row keys: ``psnr`` (at ``K`` steps), ``psnr_2k``, ``thinking_gain_db`` (``psnr_2k -
  psnr``), ``thinking_gain_db_noise05`` (the same at test noise 0.5),
  ``best_of_n_gain_db`` (best-of-8 by energy over starts ``y0 + 0.2 N``, ``K`` steps each,
  minus a random pick of the same 8), ``energy_error_spearman`` (over the test images, the
  final energy at ``K`` steps against the final squared error).
* ``ranking`` (its own rows, one per EBT model of the denoising task): for each noisy test
  image, the clean digit against 9 other test digits, ordered by ``E(x_noisy, candidate)``;
  ``rank1_accuracy``: the fraction ranked first.
* ``ebt_branches``: ``y = ±sqrt(1 - x²) + 0.02 ε``, ``x ~ U(-1, 1)``; EBT trained from
  perturbed targets (``y0="target"``) with a contrastive term, predicting from ``N(0, 1)``
  starts, against an MSE regressor. ``branch_hit_rate``: predictions within 0.1 of a
  branch; ``branch_shares``: over 16 starts per ``x``, the share of best-of-16 picks on the
  upper and on the lower branch.

PSNR is over the whole test set, for data in [-1, 1] (peak-to-peak 2):
``10 log10(4 / MSE)``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

from ebm_jax import plots  # noqa: E402
from ebm_jax.data import load_digits  # noqa: E402
from ebm_jax.experiments.objectives.ebt import psnr as psnr_over_set  # noqa: E402
from ebm_jax.experiments.objectives.ebt import spearman  # noqa: E402
from ebm_jax.inference import best_of_n, minimize, rank  # noqa: E402
from ebm_jax.losses import (denoising_pairs, ebt, ebt_descent, ebt_energy,  # noqa: E402
                            ebt_params, ebt_step_size)
from ebm_jax.nets import MLP, pure  # noqa: E402
from ebm_jax.train import init_train_state, make_train_step  # noqa: E402

DATA_RANGE = (-1.0, 1.0)
NOISE, TEST_NOISE = 0.3, 0.5
NUM_STEPS = 4               # K: the trained steps of System 1 (System 2 draws in [1, 3K])
BEST_OF, START_NOISE = 8, 0.1  # System 2 trains from starts y0 + 0.1 N
BEST_OF_NOISE = 0.2            # best-of-N at test: starts y0 + 0.2 N (random-of-N: the same)
BRANCH_STARTS, BRANCH_TOL = 16, 0.1
NUM_CANDIDATES = 10
SUMMARY_KEYS = ("task", "method", "seed", "psnr", "thinking_gain_db", "best_of_n_gain_db",
                "energy_error_spearman", "branch_hit_rate", "rank1_accuracy")


# -- networks ---------------------------------------------------------------------------------
def concat_energy(hidden, in_x, in_y, seed):
    """An MLP energy over the concatenation ``[x, y]``: ``energy_fn(params, x, y)``."""
    model = pure(MLP(in_x + in_y, hidden, 1, rngs=nnx.Rngs(seed)))

    def energy_fn(params, x, y):
        return model.apply(params, jnp.concatenate([jnp.ravel(x), jnp.ravel(y)]))[0]

    return energy_fn, model.params


def num_params(params) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(params)))


def matched_width(target: int, depth: int, d_in: int, d_out: int) -> int:
    """The hidden width of a ``depth``-layer MLP ``d_in -> d_out`` closest to ``target``
    parameters."""
    def count(w):
        return d_in * w + w + (depth - 1) * (w * w + w) + w * d_out + d_out
    return min(range(1, 4096), key=lambda w: abs(count(w) - target))


# -- training -----------------------------------------------------------------------------------
def train(loss, params, make_batch, steps, seed, learning_rate=1e-3, chunk=500):
    """Adam with the toolkit's guarded train step, ``chunk`` steps per ``lax.scan``; batches
    are drawn inside the program from the step's key."""
    optimizer = optax.adam(learning_rate)
    state = init_train_state(jax.random.key(seed), params, optimizer, loss,
                             make_batch(jax.random.key(0)))
    step = make_train_step(loss, optimizer)

    @jax.jit
    def run(state, keys):
        def body(state, key):
            state, metrics = step(state, make_batch(key))
            return state, {k: metrics[k] for k in ("loss", "diverged") if k in metrics}
        return jax.lax.scan(body, state, keys)

    keys = jax.random.split(jax.random.key(seed + 1000), steps)
    diverged, last = 0.0, None
    for start in range(0, steps, chunk):
        state, metrics = run(state, keys[start:start + chunk])
        diverged += float(jnp.sum(metrics.get("diverged", jnp.zeros(()))))
        last = float(metrics["loss"][-1])
    return state.params, {"final_loss": last, "diverged_steps": int(diverged)}


def mse_loss(apply):
    """A feed-forward regressor's MSE as a loss transform (``state ()``)."""
    from ebm_jax.losses import LossTransform

    def loss(params, state, batch, rng_key):
        pred = jax.vmap(apply, in_axes=(None, 0))(params, batch["x"])
        value = jnp.mean(jnp.square(pred.reshape(batch["y"].shape) - batch["y"]))
        return value, (state, {"reconstruction": value})

    return LossTransform(lambda key, params, batch: (), loss)


# -- metrics ------------------------------------------------------------------------------------
def psnr(pred, target) -> float:
    """Over the whole test set, for data in [-1, 1] (peak-to-peak 2)."""
    return psnr_over_set(pred, target, DATA_RANGE[1] - DATA_RANGE[0])


# -- denoising ----------------------------------------------------------------------------------
def denoise_methods(num_steps):
    common = dict(num_steps=num_steps, y0="input", clip_range=None)
    return {
        "ebt_system1": dict(mode="system1", **common),
        # System 2: steps drawn in [1, 3K] (thinking longer than System 1 is trained to),
        # step jitter, starts around the noisy image (best-of-N draws them so), a replay
        # buffer of its own predictions, and three terms: stationarity (the clean image a
        # fixed point: extra steps do not walk away), calibration (the energy reads as the
        # error: best-of-N and energy-error ranking) and batch negatives (ranking).
        "ebt_system2": dict(mode="system2", max_steps=3 * num_steps, step_jitter=0.2,
                            start_noise=START_NOISE, replay_capacity=1024, replay_fraction=0.25,
                            stationarity_weight=1.0, calibration_weight=0.1,
                            contrastive_weight=0.1, batch_negatives=8, **common),
    }


def run_denoise(seed, steps, hidden, batch_size=64, methods=None, figures=None):
    """The denoising rows (and ranking rows) of one seed; ``figures`` (a dict), when given,
    receives the thinking curves and ten denoised test digits per method."""
    data = load_digits()
    x_train, x_test = jnp.asarray(data.x_train), jnp.asarray(data.x_test)
    dim = x_train.shape[1]
    test_key = jax.random.key(10_000 + seed)
    test = denoising_pairs(test_key, x_test, NOISE, clip_range=DATA_RANGE)
    test_05 = denoising_pairs(test_key, x_test, TEST_NOISE, clip_range=DATA_RANGE)

    def make_batch(key):
        k_index, k_noise = jax.random.split(key)
        index = jax.random.randint(k_index, (batch_size,), 0, x_train.shape[0])
        return denoising_pairs(k_noise, x_train[index], NOISE, clip_range=DATA_RANGE)

    rows = []
    energy_fn, net_params = concat_energy(hidden, dim, dim, seed)
    size = num_params(net_params)
    energy = ebt_energy(energy_fn)
    configs = denoise_methods(NUM_STEPS)
    for method in methods or list(configs) + ["feedforward"]:
        started = time.perf_counter()
        if method == "feedforward":
            width = matched_width(size, len(hidden), dim, dim)
            model = pure(MLP(dim, (width,) * len(hidden), dim, rngs=nnx.Rngs(seed)))
            params, log = train(mse_loss(model.apply), model.params, make_batch, steps, seed)
            pred = jax.vmap(model.apply, in_axes=(None, 0))(params, test["x"])
            if figures is not None:
                figures.setdefault("baselines", {})[method] = psnr(pred, test["y"])
                figures.setdefault("digits", {"noisy": test["x"][:10]})[method] = pred[:10]
            rows.append({"task": "ebt_digits_denoise", "method": method, "seed": seed,
                         "steps": steps, "params": num_params(params),
                         "psnr": psnr(pred, test["y"]), "psnr_noisy": psnr(test["x"],
                                                                           test["y"]),
                         "thinking_gain_db": None, "best_of_n_gain_db": None,
                         "energy_error_spearman": None, "branch_hit_rate": None,
                         "rank1_accuracy": None, **log,
                         "wall_seconds": round(time.perf_counter() - started, 1)})
            continue
        loss = ebt(energy_fn, **configs[method])
        params, log = train(loss, ebt_params(net_params, 0.1), make_batch, steps, seed)
        row = {"task": "ebt_digits_denoise", "method": method, "seed": seed, "steps": steps,
               "params": num_params(params["energy"]) + 1,
               "trained_steps": NUM_STEPS, "step_size": float(ebt_step_size(params)),
               **evaluate_denoiser(energy, params, test, test_05, seed), **log}
        row["wall_seconds"] = round(time.perf_counter() - started, 1)
        if figures is not None:
            ys = thinking_path(energy, params, test["x"], 3 * NUM_STEPS)   # [3K, N, D]
            figures.setdefault("curves", {})[method] = (
                np.arange(1, 3 * NUM_STEPS + 1), [psnr(y, test["y"]) for y in ys])
            digits = figures.setdefault("digits", {"noisy": test["x"][:10]})
            digits[method] = ys[NUM_STEPS - 1, :10]
            figures["digits"]["clean"] = test["y"][:10]
        rows.append(row)
        rows.append({"task": "ranking", "method": method, "seed": seed, "steps": steps,
                     "candidates": NUM_CANDIDATES,
                     "rank1_accuracy": ranking_accuracy(energy, params, test, seed)})
    return rows


def descend(energy, params, x, y0, num_steps):
    h = ebt_step_size(params)
    return jax.jit(jax.vmap(lambda x, y0: minimize(energy, params, x, y0, num_steps=num_steps,
                                                   step_size=h)))(x, y0)


def thinking_path(energy, params, x, num_steps):
    """Predictions after each of ``num_steps`` descent steps from the noisy inputs ``x [N, D]``:
    ``[num_steps, N, D]`` (one descent, :func:`ebm_jax.losses.ebt_descent`)."""
    h = ebt_step_size(params)
    path = jax.jit(jax.vmap(lambda x: ebt_descent(energy, params, x, x, num_steps=num_steps,
                                                  step_size=h).ys))(x)
    return jnp.swapaxes(path, 0, 1)


def evaluate_denoiser(energy, params, test, test_05, seed):
    out = {}
    for name, pairs in (("", test), ("_noise05", test_05)):
        at_k = descend(energy, params, pairs["x"], pairs["x"], NUM_STEPS)
        at_2k = descend(energy, params, pairs["x"], pairs["x"], 2 * NUM_STEPS)
        p_k, p_2k = psnr(at_k.y, pairs["y"]), psnr(at_2k.y, pairs["y"])
        out[f"psnr{name}"] = p_k
        out[f"psnr_2k{name}"] = p_2k
        out[f"thinking_gain_db{name}"] = p_2k - p_k
        if not name:
            errors = jnp.mean(jnp.square(at_k.y - pairs["y"]), axis=1)
            out["energy_error_spearman"] = spearman(at_k.energy, errors)
            out["psnr_noisy"] = psnr(pairs["x"], pairs["y"])
    h = ebt_step_size(params)

    def one(key, x):
        starts = x[None] + BEST_OF_NOISE * jax.random.normal(key, (BEST_OF, *x.shape))
        return best_of_n(key, energy, params, x, starts, num_steps=NUM_STEPS, step_size=h)

    keys = jax.random.split(jax.random.key(20_000 + seed), test["x"].shape[0])
    best = jax.jit(jax.vmap(one))(keys, test["x"])
    pick = jax.random.randint(jax.random.key(30_000 + seed), (test["x"].shape[0],), 0, BEST_OF)
    random_pick = best.results.y[jnp.arange(pick.shape[0]), pick]
    out["psnr_best_of_n"] = psnr(best.y, test["y"])
    out["psnr_random_of_n"] = psnr(random_pick, test["y"])
    out["best_of_n_gain_db"] = out["psnr_best_of_n"] - out["psnr_random_of_n"]
    return out


def ranking_accuracy(energy, params, test, seed) -> float:
    """The clean digit against ``NUM_CANDIDATES - 1`` other test digits, for each noisy input:
    the fraction ranked first by energy."""
    n = test["x"].shape[0]
    rng = np.random.default_rng(seed)
    others = np.stack([rng.choice(np.delete(np.arange(n), i), NUM_CANDIDATES - 1,
                                  replace=False) for i in range(n)])
    candidates = jnp.concatenate([test["y"][:, None], test["y"][others]], axis=1)
    ranking = jax.jit(jax.vmap(lambda x, c: rank(energy, params, x, c)))(test["x"], candidates)
    return float(jnp.mean(ranking.order[:, 0] == 0))


# -- branches -----------------------------------------------------------------------------------
def branch_batch(key, size):
    k_x, k_s, k_e = jax.random.split(key, 3)
    x = jax.random.uniform(k_x, (size, 1), minval=-1.0, maxval=1.0)
    sign = jnp.where(jax.random.bernoulli(k_s, 0.5, (size, 1)), 1.0, -1.0)
    y = sign * jnp.sqrt(1.0 - x ** 2) + 0.02 * jax.random.normal(k_e, (size, 1))
    return {"x": x, "y": y}


BRANCH_EBT = dict(mode="system1", num_steps=8, y0="target", start_noise=0.5,
                  contrastive_weight=0.1, batch_negatives=8)


def run_branches(seed, steps, hidden, batch_size=128, figures=None):
    """The branches rows of one seed; ``figures``, when given, receives ``E(x, y)`` on a grid
    and descent paths from a few starts."""
    rows = []
    test = branch_batch(jax.random.key(40_000 + seed), 1000)
    x = test["x"]
    branch = jnp.sqrt(1.0 - x ** 2)

    def hit_rate(pred):
        distance = jnp.minimum(jnp.abs(pred - branch), jnp.abs(pred + branch))
        return float(jnp.mean(distance < BRANCH_TOL))

    make_batch = lambda key: branch_batch(key, batch_size)  # noqa: E731
    started = time.perf_counter()
    energy_fn, net_params = concat_energy(hidden, 1, 1, seed)
    config = BRANCH_EBT
    params, log = train(ebt(energy_fn, **config), ebt_params(net_params, 0.1), make_batch,
                        steps, seed)
    energy = ebt_energy(energy_fn)
    h = ebt_step_size(params)
    k = config["num_steps"]
    starts = jax.random.normal(jax.random.key(50_000 + seed), x.shape)    # N(0, 1) starts
    single = descend(energy, params, x, starts, k)

    def one(key, x):
        draw = lambda key: jax.random.normal(key, (1,))  # noqa: E731
        return best_of_n(key, energy, params, x, draw, BRANCH_STARTS, num_steps=k,
                         step_size=h)

    best = jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(60_000 + seed),
                                                   x.shape[0]), x)
    upper = float(jnp.mean(best.y > 0))
    if figures is not None:
        figures["branches"] = branch_surface(energy, params, k)
    rows.append({"task": "ebt_branches", "method": "ebt_system1", "seed": seed, "steps": steps,
                 "psnr": None, "thinking_gain_db": None, "best_of_n_gain_db": None,
                 "energy_error_spearman": None, "rank1_accuracy": None,
                 "branch_hit_rate": hit_rate(single.y),
                 "branch_hit_rate_best_of_n": hit_rate(best.y),
                 "branch_shares": [upper, 1.0 - upper], "step_size": float(h), **log,
                 "wall_seconds": round(time.perf_counter() - started, 1)})
    started = time.perf_counter()
    model = pure(MLP(1, hidden, 1, rngs=nnx.Rngs(seed)))
    params, log = train(mse_loss(model.apply), model.params, make_batch, steps, seed)
    pred = jax.vmap(model.apply, in_axes=(None, 0))(params, x)
    rows.append({"task": "ebt_branches", "method": "mse_regressor", "seed": seed,
                 "steps": steps, "psnr": None, "thinking_gain_db": None,
                 "best_of_n_gain_db": None, "energy_error_spearman": None,
                 "rank1_accuracy": None, "branch_hit_rate": hit_rate(pred), **log,
                 "wall_seconds": round(time.perf_counter() - started, 1)})
    return rows


def branch_surface(energy, params, num_steps, size=121):
    """``E(x, y)`` on ``[-1, 1] x [-1.5, 1.5]`` and descent paths ``[P, num_steps + 1, 2]``
    from starts spread over ``y`` at a few ``x``."""
    xs, ys = np.linspace(-1.0, 1.0, size), np.linspace(-1.5, 1.5, size)
    grid = jax.jit(jax.vmap(jax.vmap(lambda x, y: energy(params, x[None], y[None]),
                                     (0, None)), (None, 0)))(jnp.asarray(xs), jnp.asarray(ys))
    x0 = jnp.repeat(jnp.linspace(-0.8, 0.8, 5), 6)[:, None]
    y0 = jnp.tile(jnp.linspace(-1.2, 1.2, 6), 5)[:, None]
    h = ebt_step_size(params)
    path = jax.jit(jax.vmap(lambda x, y: ebt_descent(energy, params, x, y, num_steps=num_steps,
                                                     step_size=h).ys))(x0, y0)  # [P, K, 1]
    path = jnp.concatenate([y0[:, None], path], axis=1)[..., 0]
    points = jnp.stack([jnp.broadcast_to(x0, path.shape), path], axis=-1)
    return np.asarray(grid), np.asarray(points)


# -- figure -------------------------------------------------------------------------------------
def write_figures(figures, directory, seed) -> list:
    """The thinking curve, denoised digits and the branches' energy surface, as PNGs."""
    written = []
    if "curves" in figures:
        path = os.path.join(directory, "inference_thinking.png")
        plots.save_thinking_curve(path, figures["curves"],
                                  trained_steps={m: NUM_STEPS for m in figures["curves"]},
                                  baselines={f"{m} (one pass)": v for m, v in
                                             figures.get("baselines", {}).items()},
                                  title=f"denoising 8x8 digits, noise {NOISE}, seed {seed}")
        written.append(path)
    if "digits" in figures:
        path = os.path.join(directory, "inference_denoised.png")
        digits = figures["digits"]
        order = ["noisy"] + [k for k in digits if k not in ("noisy", "clean")] + ["clean"]
        short = {"ebt_system1": "S1", "ebt_system2": "S2", "feedforward": "FF"}
        title = "rows: " + ", ".join(short.get(k, k) for k in order)
        plots.save_image_grids(path, {title: np.concatenate(
            [np.asarray(digits[k]) for k in order])}, (8, 8), value_range=DATA_RANGE)
        written.append(path)
    if "branches" in figures:
        grid, paths = figures["branches"]
        xs = np.linspace(-1.0, 1.0, 200)
        path = os.path.join(directory, "inference_branches.png")
        plots.save_energy_paths(path, grid, (-1.0, 1.0, -1.5, 1.5), paths,
                                targets=[(xs, np.sqrt(1 - xs ** 2)), (xs, -np.sqrt(1 - xs ** 2))],
                                title=f"EBT energy E(x, y), descent paths, seed {seed}")
        written.append(path)
    return written


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 600 steps a run")
    parser.add_argument("--seeds", nargs="*", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--hidden", type=int, nargs="*", help="hidden widths (default 256 256)")
    parser.add_argument("--tasks", nargs="*", default=["ebt_digits_denoise", "ebt_branches"],
                        choices=["ebt_digits_denoise", "ebt_branches"])
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--figure", action="store_true",
                        help="write the thinking curve, denoised digits and the branches' "
                             "energy surface of the first seed (PNGs beside the results)")
    parser.add_argument("--figure-dir", help="where --figure writes (default: beside the "
                                             "results)")
    args = parser.parse_args(argv)
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    steps = args.steps or (600 if args.quick else 4000)
    hidden = tuple(args.hidden or (256, 256))
    path = results_path()
    rows = []
    figures = {} if args.figure else None
    for seed in seeds:
        for task in args.tasks:
            run = run_denoise if task == "ebt_digits_denoise" else run_branches
            for row in run(seed, steps, hidden if task == "ebt_digits_denoise"
                           else tuple(max(h // 2, 1) for h in hidden),
                           figures=figures if seed == seeds[0] else None):
                row = {"benchmark": "inference", **{k: None for k in SUMMARY_KEYS}, **row}
                if not args.no_save:
                    append_row(row, path)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.figure:
        for out in write_figures(figures, args.figure_dir or os.path.dirname(path), seeds[0]):
            print(f"figure: {out}")
    return rows


if __name__ == "__main__":
    main()
