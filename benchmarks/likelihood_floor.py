"""What a preset's network reaches on a 2-D toy by the exact likelihood: the floor of its KL.

    python benchmarks/likelihood_floor.py --preset nce_2d_checkerboard --seeds 0

Trains the preset's energy network (same MLP, batch, number of steps, Adam learning rate with
cosine decay and EMA 0.999 as the preset) on the exact negative log-likelihood, the
normaliser computed at every step by quadrature on a ``--grid`` x ``--grid`` grid over
[-4.5, 4.5]^2, then reports KL(true || model) of the EMA weights by quadrature on 400x400
(as `objectives_2d.py` does). No estimator of a 2-D toy trained with that network and budget
should be expected to beat it by much: it is the network's and the budget's floor, the
yardstick for targets such as FCE's "half NCE's KL on the checkerboard".
Writes one JSON object per seed to benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax import metrics  # noqa: E402
from ebm_jax.experiments import make_config  # noqa: E402
from ebm_jax.experiments.data import load_data  # noqa: E402
from ebm_jax.experiments.objectives._common import build_energy  # noqa: E402
from ebm_jax.metrics.likelihood import grid_points  # noqa: E402


def fit(preset: str, seed: int, grid: int) -> dict:
    config = make_config(preset, [f"run.seed={seed}"])
    data = load_data(config)
    params, energy = build_energy(config, data, nnx.Rngs(seed))
    steps, batch = config.run.num_steps, config.data.batch_size
    points, area = grid_points(4.5, grid)
    optimizer = optax.adam(optax.cosine_decay_schedule(config.optimizer.learning_rate, steps))
    decay = config.optimizer.ema_decay
    x_train = jnp.asarray(data.x_train)
    batched = jax.vmap(energy, in_axes=(None, 0))

    def nll(p, x):
        return jnp.mean(batched(p, x)) + jax.nn.logsumexp(-batched(p, points)) + jnp.log(area)

    @jax.jit
    def step(carry, key):
        p, opt_state, ema = carry
        rows = jax.random.randint(key, (batch,), 0, x_train.shape[0])
        value, grads = jax.value_and_grad(nll)(p, x_train[rows])
        updates, opt_state = optimizer.update(grads, opt_state, p)
        p = optax.apply_updates(p, updates)
        ema = jax.tree.map(lambda a, b: decay * a + (1 - decay) * b, ema, p)
        return (p, opt_state, ema), value

    carry = (params, optimizer.init(params), params)
    key = jax.random.key(seed)
    start = time.time()
    for i in range(steps):
        carry, _ = step(carry, jax.random.fold_in(key, i))
    ema = carry[2]
    kl = float(metrics.kl_by_quadrature(data.log_prob, lambda x: energy(ema, x)))
    return {"benchmark": "likelihood_floor", "preset": preset, "toy": config.data.dataset,
            "seed": seed, "kl_nats": kl, "steps": steps, "grid": grid,
            "wall_seconds": time.time() - start, "date": datetime.date.today().isoformat()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nce_2d_checkerboard")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--grid", type=int, default=100,
                        help="quadrature grid of the training normaliser (per side)")
    args = parser.parse_args()
    path = results_path()
    for seed in args.seeds:
        row = {**fit(args.preset, seed, args.grid), "device": device_name()}
        append_row(row, path)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
