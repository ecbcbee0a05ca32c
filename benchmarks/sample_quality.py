"""The yardstick of generated digits: the data's own scores (the floor) and the digit presets'.

    python benchmarks/sample_quality.py                  # the floor and 4 presets, their own steps
    python benchmarks/sample_quality.py --quick          # 300 training steps a preset (smoke test)
    python benchmarks/sample_quality.py --runs runs      # runs/<preset>, trained there if absent
    python benchmarks/sample_quality.py --presets cd_digits --no-save

Every set of samples is scored by :func:`ebm_jax.metrics.score_digits` against the 360 test
digits, on the features of the shipped digit classifier (:mod:`ebm_jax.metrics.digit_classifier`):
``frechet_distance``, ``kid`` (and ``kid_std``, one subset's spread), ``precision``, ``recall``
(k = 3), ``density``, ``coverage`` (k = 5). Labelled sets (the floor, class-conditional samples)
also get ``diversity``: the mean pairwise pixel distance within a class relative to the test
digits of that class, averaged over classes (:func:`ebm_jax.metrics.digit_diversity`).

Rows (one JSON object each, appended to benchmarks/results/<device>-<date>.json;
``--no-save`` only prints):

* the floor: ``train digits`` (all 1,437 training digits) and ``train digits, N resampled``
  (``N`` of them drawn without replacement: the same size as every model row, since the
  Fréchet distance is biased by the sample size);
* ``jem_digits``: ``replay buffer`` (``N`` of the buffer's chains), ``fresh`` (``N`` chains of
  the run's generator: SGLD from uniform noise, ``run.fresh_sample_steps`` steps) and
  ``class-conditional`` (``N / 10`` chains per class on ``-f(x)[y]``, the same sampler);
* ``cd_digits``: ``replay buffer`` and ``fresh``;
* ``rl_digits``: ``fresh`` (progressive sampling from noise through the six levels);
* ``cdrl_digits``: ``fresh`` (progressive sampling from the initializer's proposals, each
  refined by the EBM's Langevin steps).

Each row has ``preset`` (``floor`` for the data), ``samples``, ``num_samples``, the yardstick's
keys, ``diversity`` (None where there are no labels), ``steps``, ``train_seconds`` and ``seed``
(samples with NaN or inf: the scores None and ``non_finite_values`` their count).
The pictures of the first 100 samples of every row go beside the results
(``sample_quality_<preset>.png``; ``--no-figures`` skips them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import RESULTS_DIR, append_row, results_path  # noqa: E402

PRESETS = ("jem_digits", "cd_digits", "rl_digits", "cdrl_digits")
NUM_SAMPLES = 1000
QUICK_STEPS = 300
ROW_KEYS = ("preset", "samples", "num_samples", "frechet_distance", "kid", "kid_std",
            "precision", "recall", "density", "coverage", "diversity", "steps",
            "train_seconds", "seed")
FLOOR = "floor"


def score_row(preset: str, samples_name: str, samples: np.ndarray,
              labels: Optional[np.ndarray] = None, **extra) -> dict:
    """One row: the yardstick of ``samples [N, 64]`` (and their diversity when ``labels``
    says which class each was drawn or generated for).

    Example::

      >>> from ebm_jax.data import load_digits
      >>> data = load_digits()
      >>> row = score_row("floor", "train digits", data.x_train, data.y_train, seed=0)
      >>> row["num_samples"], row["precision"] > 0.9, round(row["diversity"], 1)
      (1437, True, 1.0)
    """
    from ebm_jax.metrics import digit_diversity, score_digits

    samples = np.asarray(samples)
    row = {"benchmark": "sample_quality", **{key: None for key in ROW_KEYS},
           "preset": preset, "samples": samples_name, "num_samples": len(samples)}
    bad = int(np.sum(~np.isfinite(samples)))
    if bad:  # a run that blew up: no scores, and the row says why
        row["non_finite_values"] = bad
    else:
        row.update(score_digits(samples))
        if labels is not None:
            row["diversity"] = digit_diversity(samples, labels).ratio
    row.update(extra)
    return row


def floor_sets(num_samples: int, seed: int) -> dict:
    """The data against itself: ``{name: (samples, labels)}`` for all training digits and
    ``num_samples`` of them drawn without replacement (seeded)."""
    from ebm_jax.data import load_digits

    data = load_digits()
    pick = np.random.default_rng(seed).choice(len(data.x_train), num_samples, replace=False)
    return {"train digits": (data.x_train, data.y_train),
            f"train digits, {num_samples} resampled": (data.x_train[pick], data.y_train[pick])}


def model_sets(exp, state, num_samples: int, seed: int) -> dict:
    """A trained run's samples: ``{name: (samples, labels or None)}`` with the replay buffer
    (where the run keeps one), fresh samples of its generator and, for a classifier,
    class-conditional samples, each ``num_samples`` (a multiple of 10 for the last)."""
    import jax

    from ebm_jax.experiments.build import find_buffer
    from ebm_jax.experiments.evaluation import conditional_samples, fresh_samples

    params = state.ema_params
    k_pick, k_fresh, k_cond = jax.random.split(jax.random.key(seed + 31_337), 3)
    sets = {}
    buffer = find_buffer(state.loss_state)
    if buffer is not None:
        pick = jax.random.choice(k_pick, buffer.samples.shape[0], (num_samples,), replace=False)
        sets["replay buffer"] = (np.asarray(buffer.samples[pick]), None)
    sets[f"fresh: {exp.generator_name}"] = (fresh_samples(exp, params, k_fresh, num_samples),
                                            None)
    if exp.logits_fn is not None:
        per_class = num_samples // exp.data.num_classes
        sets["class-conditional"] = conditional_samples(exp, params, k_cond, per_class)
    return sets


def trained_run(preset: str, seed: int, overrides: list, workdir: str):
    """The run of ``preset`` in ``workdir``: read when it holds one, else trained there.
    Returns ``(experiment, state, train_seconds or None)``."""
    from ebm_jax.experiments import load_run, make_config, train

    seconds = None
    if not os.path.isfile(os.path.join(workdir, "summary.json")):
        config = make_config(preset, [f"run.seed={seed}"] + list(overrides))
        seconds = train(config, workdir, progress=False)["train_seconds"]
    exp, state = load_run(workdir)
    if seconds is None:
        with open(os.path.join(workdir, "summary.json")) as f:
            seconds = json.load(f).get("train_seconds")
    return exp, state, seconds


def save_pictures(path: str, sets: dict) -> None:
    """The first 100 samples of each set, one titled grid each (class-conditional sets: 10
    of each class, one class a row)."""
    from ebm_jax import plots

    grids = {}
    for name, (samples, labels) in sets.items():
        if labels is not None and name == "class-conditional":
            per_class = [samples[labels == c][:10] for c in range(10)]
            samples = np.concatenate(per_class)
        grids[name] = np.asarray(samples[:100])
    plots.save_image_grids(path, grids, (8, 8, 1), value_range=(-1.0, 1.0))


def main(argv=None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_STEPS} training steps a preset")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--runs", metavar="DIR",
                        help="read the runs DIR/<preset> (trained there when absent) instead "
                             "of training in a temporary directory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-samples", type=int, default=NUM_SAMPLES,
                        help="samples per model row and in the resampled floor (a multiple "
                             "of 10)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a dotted override of the presets' configs, as ebm-jax train's")
    parser.add_argument("--no-save", action="store_true", help="print only")
    parser.add_argument("--no-figures", action="store_true", help="no pictures")
    args = parser.parse_args(argv)
    if args.num_samples < 10 or args.num_samples % 10:
        parser.error(f"--num-samples {args.num_samples}: expected a positive multiple of 10")
    overrides = list(args.set)
    if args.quick:
        overrides += [f"run.num_steps={QUICK_STEPS}", f"run.eval_every={QUICK_STEPS}",
                      f"run.checkpoint_every={QUICK_STEPS}"]
    path = results_path()
    figures = None if args.no_figures else RESULTS_DIR
    rows = []

    def emit(row):
        if not args.no_save:
            append_row(row, path)
        rows.append(row)
        print(json.dumps(row), flush=True)

    sets = floor_sets(args.num_samples, args.seed)
    for name, (samples, labels) in sets.items():
        emit(score_row(FLOOR, name, samples, labels, seed=args.seed))
    if figures:
        save_pictures(os.path.join(figures, f"sample_quality_{FLOOR}.png"), sets)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = os.path.join(args.runs or scratch, preset)
            exp, state, seconds = trained_run(preset, args.seed, overrides, workdir)
            sets = model_sets(exp, state, args.num_samples, args.seed)
        for name, (samples, labels) in sets.items():
            emit(score_row(preset, name, samples, labels, steps=int(state.step),
                           train_seconds=seconds, seed=args.seed))
        if figures:
            save_pictures(os.path.join(figures, f"sample_quality_{preset}.png"), sets)
    return rows


if __name__ == "__main__":
    main()
