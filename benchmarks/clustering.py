"""GEDI (issue 22) against its ablations and k-means on moons, circles and digits.

    python benchmarks/clustering.py                  # 5 seeds, the full number of steps
    python benchmarks/clustering.py --quick          # 3 seeds, fewer steps
    python benchmarks/clustering.py --datasets moons --methods gedi kmeans --seeds 1 --no-save

Methods: ``gedi`` (:func:`ebm_jax.losses.gedi.gedi`: contrastive divergence on
``E(x) = -logsumexp f(x)`` with a replay buffer, the symmetrised invariance term over two
augmentations, the uniform prior on the batch marginal), ``gedi_no_generative`` and
``gedi_no_prior`` (the same program with that term's weight 0), and ``kmeans``
(scikit-learn's, 10 restarts). Datasets: ``moons`` and ``circles`` (scikit-learn's
generators, 2 clusters, standardised with the training set's statistics) and ``digits``
(scikit-learn's bundled 8x8 digits, :func:`ebm_jax.data.digits.load_digits`, 10 clusters).
Every network is an MLP trained with Adam (1e-3, the paper's setting); on moons and circles
the first half of the steps trains the generative term alone (``Setting.warmup``), then all
three terms. Clusters are the argmax of its logits on the held-out test set.

Rows (JSON lines, to benchmarks/results/<device>-<date>.json with ``benchmark:
"clustering"``): ``method``, ``dataset``, ``seed``, ``nmi``, ``cluster_accuracy``,
``largest_cluster_share``, ``ood_auroc`` (the AUROC of ``-E(x)`` telling test points from
as many uniform points in the training data's bounding box; ``None`` for k-means, which has
no energy), ``train_steps``, ``seconds``. The summary printed at the end: per dataset and
method, the mean and standard deviation over seeds. Picture (with the rows, or in
``--figures``): ``clustering_2d.png``, GEDI's density and clusters on each 2-D set.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

METHODS = ("gedi", "gedi_no_generative", "gedi_no_prior", "kmeans")
DATASETS = ("moons", "circles", "digits")
WEIGHTS = {"gedi": (1.0, 1.0, 1.0), "gedi_no_generative": (0.0, 1.0, 1.0),
           "gedi_no_prior": (1.0, 1.0, 0.0)}        # generative, invariance, prior


@dataclasses.dataclass(frozen=True)
class Setting:
    """One dataset's model and training settings."""

    num_clusters: int
    hidden: tuple = (128, 128)
    steps: int = 3000               # full run; --quick uses quick_steps
    quick_steps: int = 1500
    batch_size: int = 128
    learning_rate: float = 1e-3
    noise: float = 0.1              # Gaussian noise augmentation (standard deviations)
    max_shift: int = 0              # pixel shifts (digits)
    step_size: float = 0.01         # SGLD step size
    noise_scale: float | None = None  # SGLD noise (None: the temperature form, sqrt(2 step))
    sgld_steps: int = 20
    energy_l2: float = 0.1          # IGEBM's energy regulariser
    buffer: int = 2000
    margin: float = 0.5             # the sampler's box: the data's box widened by this
    temperature: float = 1.0        # tau of the cluster assignments softmax(f(x) / tau)
    weight_decay: float = 0.0       # decoupled weight decay (AdamW) when > 0
    divergence: str = "kl"          # the prior's KL(qbar || U) ("kl") or KL(U || qbar)
    prior_weight: float = 1.0       # scales the prior term's weight (when the method has one)
    generative_weight: float = 1.0  # scales the generative term's weight (when it has one)
    warmup: float = 0.0             # share of the steps on the generative term alone, first


SETTINGS = {
    # 2-D: half of the steps on the generative term alone, so that the network's features follow
    # the density before the invariance and prior terms split it; without it circles are cut in
    # half by a line (NMI ~0), with it they split by ring (issue 22's measurements)
    "moons": Setting(2, steps=6000, quick_steps=3000, energy_l2=0.01, warmup=0.5),
    "circles": Setting(2, steps=6000, quick_steps=3000, energy_l2=0.01, warmup=0.5),
    # digits: a warm-up collapses or degrades the clusters; a weak generative term helps (a
    # sweep over seeds 0-2 at 3,000 steps: weight 0.1 NMI 0.659, 0.03 0.689, 0.01 0.686);
    # 6,000 steps at 0.03: 0.705 (90-110 s a run on 2 cores)
    "digits": Setting(10, hidden=(256, 256), steps=6000, quick_steps=6000, noise=0.05,
                      max_shift=1, generative_weight=0.03),
}


def load(dataset: str, seed: int):
    """``(x_train, y_train, x_test, y_test, image_shape)`` as float32 / int arrays."""
    if dataset == "digits":
        from ebm_jax.data.digits import load_digits

        data = load_digits()
        return data.x_train, data.y_train, data.x_test, data.y_test, (8, 8)
    from ebm_jax.data.cluster_toys import load_cluster_toy

    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r}: expected one of {list(DATASETS)}")
    data = load_cluster_toy(dataset, seed=seed)
    return data.x_train, data.y_train.astype(np.int64), data.x_test, \
        data.y_test.astype(np.int64), None


def train_gedi(x_train, setting: Setting, weights, seed: int, steps: int, image_shape=None):
    """Train GEDI's network; returns ``(logits_fn, params)``."""
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    from ebm_jax.data.augment import shift_then_noise
    from ebm_jax.energies import energy_from_logits
    from ebm_jax.losses.gedi import gedi
    from ebm_jax.nets import MLP
    from ebm_jax.nets.adapters import pure
    from ebm_jax.samplers import langevin, replay_buffer_start
    from ebm_jax.train import init_train_state, make_train_step

    model = pure(MLP(x_train.shape[1], setting.hidden, setting.num_clusters,
                     rngs=nnx.Rngs(seed)))
    low = float(x_train.min()) - setting.margin
    high = float(x_train.max()) + setting.margin
    sampler = langevin(energy_from_logits(model.apply), step_size=setting.step_size,
                       noise_scale=setting.noise_scale, clip_range=(low, high))
    generative, invariance, prior = weights
    generative, prior = generative * setting.generative_weight, prior * setting.prior_weight

    augment = shift_then_noise(setting.noise, max_shift=setting.max_shift,
                               image_shape=image_shape, fill=-1.0)

    def make_loss(generative, invariance, prior):
        return gedi(model.apply, sampler, augment,
                    generative_weight=generative, invariance_weight=invariance,
                    prior_weight=prior, temperature=setting.temperature,
                    divergence=setting.divergence,
                    num_steps=setting.sgld_steps, energy_l2=setting.energy_l2,
                    chain_start=replay_buffer_start(capacity=setting.buffer, reinit_prob=0.05))

    loss = make_loss(generative, invariance, prior)
    optimizer = (optax.adamw(setting.learning_rate, weight_decay=setting.weight_decay)
                 if setting.weight_decay > 0 else optax.adam(setting.learning_rate))
    rng = np.random.default_rng(seed)
    x_train = jnp.asarray(x_train)
    batch = {"x": x_train[:setting.batch_size]}
    state = init_train_state(jax.random.key(seed), model.params, optimizer, loss, batch)
    chunk = 100

    def make_run(loss):
        train_step = make_train_step(loss, optimizer, guard=None)

        @jax.jit
        def run(state, index):
            def body(state, idx):
                state, metrics = train_step(state, {"x": x_train[idx]})
                return state, metrics["prior/largest_cluster_share"]
            return jax.lax.scan(body, state, index)
        return run

    warmup = int(round(setting.warmup * steps)) if generative > 0 else 0
    phases = [(warmup, make_run(make_loss(generative, 0.0, 0.0))),
              (steps - warmup, make_run(loss))]
    for phase_steps, run in phases:
        done = 0
        while done < phase_steps:     # scans of `chunk` steps (a shorter last one compiles again)
            n = min(chunk, phase_steps - done)
            index = rng.integers(0, x_train.shape[0], (n, setting.batch_size))
            state, shares = run(state, jnp.asarray(index))
            done += n
            if os.environ.get("GEDI_TRACE"):
                print("  share", float(shares.mean()), flush=True)
    return model.apply, state.params


def evaluate(logits_fn, params, x_train, x_test, y_test, seed: int) -> dict:
    """NMI, cluster accuracy, largest cluster share on the test set, and the energy's AUROC
    against uniform noise in the training data's box."""
    import jax
    import jax.numpy as jnp

    from ebm_jax.metrics import auroc
    from ebm_jax.metrics.clustering import cluster_accuracy, largest_cluster_share, nmi

    logits = jax.jit(jax.vmap(logits_fn, in_axes=(None, 0)))
    test_logits = np.asarray(logits(params, jnp.asarray(x_test)))
    pred = test_logits.argmax(-1)
    rng = np.random.default_rng(10_000 + seed)
    noise = rng.uniform(x_train.min(0), x_train.max(0), x_test.shape).astype(np.float32)
    noise_logits = np.asarray(logits(params, jnp.asarray(noise)))
    score_in = jax.nn.logsumexp(test_logits, -1)                 # -E(x)
    score_out = jax.nn.logsumexp(noise_logits, -1)
    return {"nmi": nmi(y_test, pred), "cluster_accuracy": cluster_accuracy(y_test, pred),
            "largest_cluster_share": largest_cluster_share(pred),
            "ood_auroc": float(auroc(score_in, score_out))}


def run_one(method: str, dataset: str, seed: int, *, quick: bool = False,
            steps: int | None = None, keep=None) -> dict:
    """One row: train (or fit k-means) on ``dataset``'s training set, evaluate on its test set.
    ``keep(dataset, x_test, logits_fn, params)``, if given, receives each trained network."""
    from ebm_jax.metrics.clustering import cluster_accuracy, kmeans_clusters
    from ebm_jax.metrics.clustering import largest_cluster_share, nmi

    start = time.perf_counter()
    setting = SETTINGS[dataset]
    x_train, _, x_test, y_test, image_shape = load(dataset, seed)
    if method == "kmeans":
        pred = kmeans_clusters(x_train, setting.num_clusters, seed=seed, x_predict=x_test)
        metrics = {"nmi": nmi(y_test, pred), "cluster_accuracy": cluster_accuracy(y_test, pred),
                   "largest_cluster_share": largest_cluster_share(pred), "ood_auroc": None}
        train_steps = 0
    else:
        train_steps = steps or (setting.quick_steps if quick else setting.steps)
        logits_fn, params = train_gedi(x_train, setting, WEIGHTS[method], seed, train_steps,
                                       image_shape)
        metrics = evaluate(logits_fn, params, x_train, x_test, y_test, seed)
        if keep is not None:
            keep(dataset, x_test, logits_fn, params)
    return {"method": method, "dataset": dataset, "seed": seed, **metrics,
            "train_steps": train_steps, "seconds": round(time.perf_counter() - start, 1)}


def save_figure(panels: dict, folder: str) -> str:
    """``clustering_2d.png``: per 2-D dataset, GEDI's density exp(-E) and its clusters of the
    test points (the first seed's network)."""
    import jax

    from ebm_jax.plots.clustering import save_cluster_panels

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "clustering_2d.png")
    shown = {}
    for dataset, (x_test, logits_fn, params) in panels.items():
        clusters = np.asarray(jax.vmap(logits_fn, in_axes=(None, 0))(params, x_test)).argmax(-1)

        def energy(x, logits_fn=logits_fn, params=params):
            return -jax.nn.logsumexp(logits_fn(params, x))

        shown[f"GEDI on {dataset}"] = (x_test, clusters, energy)
    save_cluster_panels(path, shown)
    return path


def summarise(rows: list) -> list:
    """Per ``(dataset, method)``: mean and standard deviation over seeds of each metric."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["method"])].append(row)
    out = []
    for (dataset, method), group in groups.items():
        line = {"dataset": dataset, "method": method, "seeds": len(group)}
        for key in ("nmi", "cluster_accuracy", "largest_cluster_share", "ood_auroc"):
            values = [r[key] for r in group if r[key] is not None]
            line[key] = float(np.mean(values)) if values else None
            line[f"{key}_std"] = float(np.std(values)) if values else None
        out.append(line)
    return out


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default 5)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default: each dataset's)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, fewer steps")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--figures", default=None,
                        help="folder for clustering_2d.png (default: benchmarks/results when "
                             "saving, none with --no-save)")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps={args.steps}: expected a positive number of training steps")
    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 5)
    path = None if args.no_save else results_path()
    figures = args.figures or (None if path is None else os.path.dirname(path))
    panels = {}

    def keep(dataset, x_test, logits_fn, params):
        if figures and x_test.shape[1] == 2 and dataset not in panels:   # GEDI, first seed
            panels[dataset] = (x_test, logits_fn, params)

    start = time.perf_counter()
    rows = []
    for dataset in args.datasets:
        for method in args.methods:
            for seed in range(seeds):
                row = run_one(method, dataset, seed, quick=args.quick, steps=args.steps,
                              keep=keep if method == METHODS[0] else None)
                rows.append(row)
                if path is not None:
                    append_row({"benchmark": "clustering", **row}, path)
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()},
                      flush=True)
    if panels:
        print("figure:", save_figure(panels, figures))
    print("summary (mean over seeds):")
    for line in summarise(rows):
        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in line.items()
               if not k.endswith("_std")})
    where = "" if path is None else f"; rows in {path}"
    print(f"total {time.perf_counter() - start:.0f} s{where}")
    return rows


if __name__ == "__main__":
    main()
