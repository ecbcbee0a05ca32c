"""ECBM against the joint concept-bottleneck model on the seven-segment digits (issue 22).

    python benchmarks/concepts.py                 # seeds 0-4, 2,000 training steps
    python benchmarks/concepts.py --quick         # the same (seeds 0-4 are what the targets need)
    python benchmarks/concepts.py --seeds 1 --train-steps 200 --no-save

For each method (:data:`ebm_jax.applications.concepts.evaluation.METHODS`: ECBM as the
toolkit runs it, ECBM with the reference code's settings, the joint CBM) and seed: train on
the 1,437 training digits (5% concept-label noise), score on the 360 test digits. Rows (JSON
lines, ``benchmark: "concepts"``): ``method``, ``dataset``, ``seed``, ``class_accuracy``,
``concept_accuracy``, ``overall_concept_accuracy``, ``intervention_curve``,
``one_concept_gain`` (telling each concept in turn), ``conditional_mae`` and
``concept_marginals`` (ECBM's ``p(c_k = 1 | y)``), ``seconds``. Pictures (with the rows, or in
``--figures``): the intervention curves and ECBM's conditionals beside the training
frequencies. The summary: per method, the mean of
each score over seeds, the class accuracy at an intervention ratio of 0.5, and the
one-concept gain's 95% interval (t over seeds).
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

from ebm_jax.applications.concepts.evaluation import METHODS, evaluate_methods  # noqa: E402
from ebm_jax.data.concepts import load_seven_segment_digits  # noqa: E402

# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(values) -> tuple:
    """``(mean, half-width)`` of a 95% t interval (half-width None for one value)."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), None
    half = T95.get(len(values) - 1, 1.96) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def summarise(rows: list) -> list:
    """Per method: mean scores over seeds, class accuracy at intervention ratio 0.5, and the
    one-concept gain's 95% interval."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["method"]].append(row)
    summary = []
    for method, group in groups.items():
        line = {"method": method, "seeds": len(group)}
        for key in ("class_accuracy", "concept_accuracy", "overall_concept_accuracy"):
            line[key] = float(np.mean([r[key] for r in group]))
        line["class_accuracy_at_half"] = float(np.mean(
            [dict(map(tuple, r["intervention_curve"]))[0.5] for r in group]))
        line["one_concept_gain"], line["one_concept_gain_95"] = interval(
            [r["one_concept_gain"] for r in group])
        maes = [r["conditional_mae"] for r in group if r["conditional_mae"] is not None]
        line["conditional_mae"] = float(np.mean(maes)) if maes else None
        summary.append(line)
    return summary


def save_figures(rows: list, data, folder: str) -> list:
    """Write ``concepts_intervention_curves.png`` (class accuracy against the share of concepts
    told, mean over seeds with a band of one standard deviation, per method) and, for the first
    ECBM row with a table, ``concepts_conditionals.png`` (its ``p(c_k | y)`` beside the training
    frequencies). Returns the paths written."""
    from ebm_jax.data.concepts import concept_frequencies
    from ebm_jax.plots.concepts import save_conditional_table, save_intervention_curves

    os.makedirs(folder, exist_ok=True)
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row["method"]].append(np.asarray(row["intervention_curve"], float))
    curves = {m: np.mean(g, axis=0) for m, g in groups.items()}
    spreads = {m: np.std(g, axis=0)[:, 1] for m, g in groups.items()}
    paths = [os.path.join(folder, "concepts_intervention_curves.png")]
    save_intervention_curves(paths[0], curves, spreads=spreads)
    tables = [r for r in rows if r.get("concept_marginals") and r["method"] == METHODS[0]]
    if tables:
        paths.append(os.path.join(folder, "concepts_conditionals.png"))
        frequencies = concept_frequencies(data.y_train, data.c_train, data.num_classes)
        save_conditional_table(paths[1], tables[0]["concept_marginals"], frequencies,
                               concept_names=data.concept_names)
    return paths


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..S-1 (default 5)")
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="the default settings")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--figures", default=None,
                        help="folder for the pictures (default: benchmarks/results when "
                             "saving, none with --no-save)")
    args = parser.parse_args(argv)
    path = None if args.no_save else results_path()
    data = load_seven_segment_digits()
    start = time.perf_counter()
    rows = []
    for seed in range(args.seeds):
        for row in evaluate_methods(args.methods, data, seed=seed,
                                    train_steps=args.train_steps):
            rows.append(row)
            if path is not None:
                append_row({"benchmark": "concepts", **row}, path)
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                   if k not in ("intervention_curve", "concept_marginals")}, flush=True)
    figures = args.figures or (None if path is None else os.path.dirname(path))
    if figures:
        save_figures(rows, data, figures)
    for line in summarise(rows):
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in line.items()})
    where = "" if path is None else f"; rows in {path}"
    print(f"total {time.perf_counter() - start:.0f} s{where}")
    return rows


if __name__ == "__main__":
    main()
