"""TabEBM's augmentation protocol (issue 21) on scikit-learn's bundled tables.

    python benchmarks/tabular.py                 # iris, wine, breast_cancer; seeds 0-9
    python benchmarks/tabular.py --quick         # seeds 0-2
    python benchmarks/tabular.py --datasets iris --n-real 20 --seeds 1 --no-save
    python benchmarks/tabular.py --workers 1     # in this process (default: a process a core)

For each dataset, ``n_real`` (iris 20, 50; wine and breast_cancer 20, 50, 100) and seed: one
stratified split (:func:`ebm_jax.applications.tabular.evaluation.evaluate_split`), every
method (real only, jitter, SMOTE, TabEBM with the kernel and the network backends, the kernel
with the reference code's batch-averaged gradient, the shared-model ablation, and the kernel,
the ablation and the network sampled in the temperature form) and every
downstream classifier (logistic regression, k-NN, random forest, MLP). Rows (JSON lines, to
benchmarks/results/<device>-<date>.json with ``benchmark: "tabular"``): ``dataset``,
``n_real``, ``method``, ``classifier``, ``seed``, ``balanced_accuracy``, ``ks_mean``, ``mmd``,
``dcr_median``, ``exact_copy_rate``, ``augment_seconds``. The summary printed at the end: per
method and ``n_real``, the mean balanced accuracy over datasets, classifiers and seeds and its
difference from real-only (points), and the mean fidelity and privacy figures. Two procedural
sets of heavily overlapping classes (``overlapping_blobs``, ``noisy_circles``; 50 training rows)
run real-only, TabEBM's kernel and the shared-model ablation (both sampler settings, and both
with pooled bandwidths in the temperature form), for their
class-conditional MMD.
"""
from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

from ebm_jax.applications.tabular.evaluation import METHODS, evaluate_split  # noqa: E402

DATASETS = {"iris": (20, 50), "wine": (20, 50, 100), "breast_cancer": (20, 50, 100)}
# Heavily overlapping classes (issue 21: distinct class energies against the shared model on
# class-conditional MMD): 600 rows each, 50 for training.
PROCEDURAL = {"overlapping_blobs": (50,), "noisy_circles": (50,)}
PROCEDURAL_METHODS = ("real", "tabebm_kernel", "shared_kernel", "tabebm_kernel_langevin",
                      "shared_kernel_langevin", "tabebm_kernel_pooled_langevin",
                      "shared_kernel_pooled_langevin")
# Methods for the procedural sets' question only: the tables run them when --methods names them.
PROCEDURAL_ONLY = ("shared_kernel_pooled_langevin",)


def load(name: str):
    """A bundled scikit-learn table, or a procedural one (two unit-variance blobs one standard
    deviation apart; two circles of radii 1 and 0.5 with Gaussian noise 0.2)."""
    from sklearn import datasets

    if name == "overlapping_blobs":
        return datasets.make_blobs(600, centers=[[0.0, 0.0], [1.0, 0.0]], cluster_std=1.0,
                                   random_state=0)
    if name == "noisy_circles":
        return datasets.make_circles(600, noise=0.2, factor=0.5, random_state=0)
    return getattr(datasets, f"load_{name}")(return_X_y=True)


def summarise(rows: list) -> list:
    """Per ``(method, n_real)``: the mean balanced accuracy (over datasets, classifiers and
    seeds), its gain over real-only in points, and the mean ``mmd``, ``ks_mean``,
    ``dcr_median``, ``exact_copy_rate`` (the largest for the last)."""
    groups = collections.defaultdict(list)
    for row in rows:
        if row["dataset"] not in PROCEDURAL:
            groups[(row["method"], row["n_real"])].append(row)
    real = {n: np.mean([r["balanced_accuracy"] for r in g])
            for (m, n), g in groups.items() if m == "real"}
    summary = []
    for (method, n_real), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        accuracy = float(np.mean([r["balanced_accuracy"] for r in group]))
        line = {"method": method, "n_real": n_real, "balanced_accuracy": accuracy,
                "gain_points": 100 * (accuracy - real[n_real]) if n_real in real else None}
        for key in ("mmd", "ks_mean", "dcr_median"):
            values = [r[key] for r in group if r[key] is not None]
            line[key] = float(np.mean(values)) if values else None
        copies = [r["exact_copy_rate"] for r in group if r["exact_copy_rate"] is not None]
        line["max_exact_copy_rate"] = max(copies) if copies else None
        summary.append(line)
    return summary


def summarise_procedural(rows: list) -> list:
    """Per procedural dataset and method: the mean class-conditional ``mmd`` and balanced
    accuracy over seeds and classifiers."""
    groups = collections.defaultdict(list)
    for row in rows:
        if row["dataset"] in PROCEDURAL:
            groups[(row["dataset"], row["method"])].append(row)
    return [{"dataset": dataset, "method": method,
             "mmd": (float(np.mean([r["mmd"] for r in group])) if group[0]["mmd"] is not None
                     else None),
             "balanced_accuracy": float(np.mean([r["balanced_accuracy"] for r in group]))}
            for (dataset, method), group in sorted(groups.items())]


_BLAS_LIMITS = None  # a worker's thread limit, kept alive for the worker's life


def one_blas_thread():
    """A worker's BLAS on one thread: the workers already fill the cores (measured, the quick
    run on 2 cores: 255 s against 281 s, the same rows)."""
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    global _BLAS_LIMITS
    _BLAS_LIMITS = threadpool_limits(limits=1, user_api="blas")


def run_group(dataset: str, n_real: int, seeds: int, methods) -> list:
    """Every seed of one ``(dataset, n_real)`` group: rows of every method and classifier (the
    procedural sets run :data:`PROCEDURAL_METHODS` only)."""
    X, y = load(dataset)
    if dataset in PROCEDURAL:
        methods = [m for m in methods if m in PROCEDURAL_METHODS]
    return [row for seed in range(seeds)
            for row in evaluate_split(dataset, X, y, n_real, seed, methods=methods)]


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    every = list(DATASETS) + list(PROCEDURAL)
    parser.add_argument("--datasets", nargs="+", default=every, choices=every)
    parser.add_argument("--n-real", nargs="+", type=int, default=None,
                        help="training rows (default: each dataset's sizes)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..S-1 (default 10)")
    parser.add_argument("--methods", nargs="+", default=None, choices=list(METHODS),
                        help="default: every method (on the tables, all but "
                             f"{', '.join(PROCEDURAL_ONLY)})")
    parser.add_argument("--quick", action="store_true", help="seeds 0-2")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes, each running whole (dataset, n_real) groups "
                             "(default: one a CPU core; 1 runs in this process)")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected a positive int")
    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 10)
    path = None if args.no_save else results_path()
    start = time.perf_counter()
    rows = []
    # The largest groups first, so that the workers end together.
    groups = sorted(((dataset, n_real) for dataset in args.datasets
                     for n_real in args.n_real or {**DATASETS, **PROCEDURAL}[dataset]),
                    key=lambda group: -group[1])

    def keep(group, group_rows):
        rows.extend(group_rows)
        if path is not None:
            for row in group_rows:
                append_row({"benchmark": "tabular", **row}, path)
        print(f"{group[0]} n_real={group[1]}: {seeds} seeds, "
              f"{time.perf_counter() - start:.0f} s so far", flush=True)

    methods = args.methods or [m for m in METHODS if m not in PROCEDURAL_ONLY]
    procedural = args.methods or list(METHODS)
    jobs = [(dataset, n_real, seeds, procedural if dataset in PROCEDURAL else methods)
            for dataset, n_real in groups]
    if min(args.workers, len(jobs)) == 1:
        for job in jobs:
            keep(job[:2], run_group(*job))
    else:
        # Spawned (not forked) processes: JAX does not survive a fork. Each worker compiles
        # the programs of its own groups; no two groups share a shape.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(min(args.workers, len(jobs)), mp_context=context,
                                 initializer=one_blas_thread) as pool:
            futures = {pool.submit(run_group, *job): job[:2] for job in jobs}
            for future in as_completed(futures):
                keep(futures[future], future.result())
    for line in summarise(rows) + summarise_procedural(rows):
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in line.items()})
    where = "" if path is None else f"; rows in {path}"
    print(f"total {time.perf_counter() - start:.0f} s{where}")
    return rows


if __name__ == "__main__":
    main()
