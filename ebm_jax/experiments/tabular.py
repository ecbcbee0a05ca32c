"""``ebm-jax tabular``: TabEBM on a CSV file (the command's logic; the estimator and the
protocol live in :mod:`ebm_jax.applications.tabular`).

* :func:`augment_csv`: read the table, fit one energy per class of the target column, write
  ``per_class`` synthetic rows a class, columns and dtypes as read (categorical columns:
  those of strings or booleans, plus any declared).
* :func:`evaluate_csv`: the augmentation protocol on the table (numeric features): rows of
  balanced accuracy, fidelity and privacy per method, classifier, training size and seed.

Bad input is one :class:`TabularInputError` naming the file, column or value (the command
prints it and exits 2): an unreadable CSV, a missing target column, a missing label, a class
too small, and the estimator's own checks (NaN cells, constant columns).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

# How ``augment`` draws: the temperature form samples each class's energy; the paper's noise
# 0.01 descends to its modes.
SAMPLERS = ("temperature", "paper")


class TabularInputError(ValueError):
    """A CSV, a column or a setting that ``ebm-jax tabular`` cannot use (exit status 2)."""


def _pandas():
    try:
        import pandas
    except ImportError as error:
        raise TabularInputError("ebm-jax tabular reads CSV files with pandas: pip install "
                                "'ebm-jax[tabular]'") from error
    return pandas


def read_table(path: str, target: str):
    """The CSV at ``path`` as a DataFrame, checked to have the ``target`` column with a label in
    every row and at least one other column. Raises :class:`TabularInputError` for a missing
    or unreadable file, a missing target column or label, no feature column: one line each."""
    pd = _pandas()
    if not os.path.isfile(path):
        raise TabularInputError(f"{path}: no such file")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TabularInputError(f"{path}: not a readable CSV ({reason})") from error
    if target not in frame.columns:
        raise TabularInputError(f"--target {target!r}: {path} has no such column (its columns: "
                                f"{list(frame.columns)})")
    y = frame[target]
    if y.isna().any():
        raise TabularInputError(f"--target {target!r}: row {int(y.isna().to_numpy().argmax())} "
                                f"of {path} has no label: expected a label in every row")
    if frame.shape[1] == 1:
        raise TabularInputError(f"{path}: no feature column besides the target {target!r}")
    return frame


def categorical_columns(X, declared: Optional[Sequence[str]] = None) -> list:
    """The declared columns plus those holding strings or booleans, in table order."""
    declared = list(declared or [])
    missing = [name for name in declared if name not in X.columns]
    if missing:
        raise TabularInputError(f"--categorical {missing[0]!r}: no such column (the features: "
                                f"{list(X.columns)})")
    return [name for name in X.columns
            if name in declared or X[name].dtype.kind in "OSUb" or str(X[name].dtype)
            in ("category", "string", "str")]


def augment_csv(path: str, target: str, per_class: int, out: str,
                categorical: Optional[Sequence[str]] = None, backend: str = "kernel",
                seed: int = 0, bandwidth: Union[str, float] = "scott_pooled",
                sampler: str = "temperature") -> dict:
    """Write ``per_class`` synthetic rows of each class of ``target`` to the CSV ``out`` (the
    input's columns, the target included, in its order); returns ``{class: rows written}``.
    ``bandwidth`` is :class:`~ebm_jax.applications.tabular.TabEBM`'s; ``sampler`` is
    ``"temperature"`` (``noise_scale=None``: the chains sample each class's energy) or
    ``"paper"`` (the estimator's default noise 0.01). The defaults are the best setting
    measured by the paper's protocol (per-feature bandwidths of the pooled within-class
    spread, sampled in the temperature form)."""
    from ebm_jax.applications.tabular import TabEBM

    if sampler not in SAMPLERS:
        raise TabularInputError(f"--sampler {sampler!r}: expected one of {list(SAMPLERS)}")
    frame = read_table(path, target)
    X, y = frame.drop(columns=[target]), frame[target]
    columns = categorical_columns(X, categorical)
    form = {"noise_scale": None} if sampler == "temperature" else {}
    try:
        model = TabEBM(backend=backend, bandwidth=bandwidth, categorical=columns, seed=seed,
                       **form).fit(X, y)
        X_new, y_new = model.generate(per_class, seed=seed)
    except ValueError as error:
        raise TabularInputError(f"{path}: {error}") from error
    X_new[target] = y_new.to_numpy()
    X_new[list(frame.columns)].to_csv(out, index=False)  # the input's column order
    return {str(k): int(v) for k, v in y_new.value_counts(sort=False).items()}


def evaluate_csv(path: str, target: str, n_real: Sequence[int], seeds: int,
                 methods: Optional[Sequence[str]] = None, on_row=None) -> list:
    """The augmentation protocol (:func:`~ebm_jax.applications.tabular.evaluation
    .evaluate_split`) on the CSV's numeric features, for each training size and seeds
    ``0..seeds-1``: its rows, with ``dataset`` the file's name."""
    import numpy as np

    from ebm_jax.applications.tabular.evaluation import METHODS, evaluate_split

    unknown = [m for m in (methods or ()) if m not in METHODS]
    if unknown:
        raise TabularInputError(f"--methods {unknown[0]!r}: expected some of {list(METHODS)}")
    frame = read_table(path, target)
    X, y = frame.drop(columns=[target]), frame[target]
    columns = categorical_columns(X)
    if columns:
        raise TabularInputError(f"{path}: evaluate needs numeric features; {columns[0]!r} is "
                                "categorical (one-hot encode it, or drop it)")
    labels = np.unique(y.to_numpy())
    rows = []
    for size in n_real:
        if size > len(y) * 0.7:
            raise TabularInputError(f"--n-real {size}: {path} has {len(y)} rows; at least 30% "
                                    f"must stay for testing (at most {int(len(y) * 0.7)})")
        if size < 2 * len(labels):
            raise TabularInputError(f"--n-real {size}: expected at least 2 rows a class "
                                    f"({2 * len(labels)} for {len(labels)} classes)")
        for seed in range(seeds):
            try:
                rows += evaluate_split(os.path.basename(path), X.to_numpy(np.float64),
                                       y.to_numpy(), size, seed,
                                       methods=list(methods or METHODS), on_row=on_row)
            except ValueError as error:
                raise TabularInputError(f"{path}: {error}") from error
    return rows
