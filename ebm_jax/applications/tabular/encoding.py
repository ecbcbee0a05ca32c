"""A table as the standardised float matrix that TabEBM's energies live on, and back.

Numeric columns are standardised with the training rows' mean and standard deviation;
categorical columns become one-hot blocks (0/1, not rescaled); decoding undoes both, rounds
integer columns, reads each one-hot block by its largest entry, and restores the input's
kind (a NumPy array or a pandas DataFrame) and each column's dtype.

Checks, each one clear error before any compute: a NaN (or missing) cell, a constant column,
a column of strings not declared categorical, an empty or one-dimensional table.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

NUMERIC, INTEGER, CATEGORICAL = "numeric", "integer", "categorical"


class ColumnSpec(NamedTuple):
    """One input column: its name (the position for an array), kind, dtype and, for a
    categorical column, its categories in one-hot order."""

    name: Any
    kind: str
    dtype: Any
    categories: tuple = ()


class TableEncoding(NamedTuple):
    """What :func:`fit_encoding` learned from the training table.

    Attributes:
      columns: one :class:`ColumnSpec` per input column, in input order.
      mean, std: ``[num_numeric]`` float64 statistics of the numeric (and integer) columns.
      frame: whether the input was a pandas DataFrame (decoding returns one).
      array_dtype: the input array's dtype (arrays only).
    """

    columns: tuple
    mean: np.ndarray
    std: np.ndarray
    frame: bool
    array_dtype: Any = None

    @property
    def width(self) -> int:
        """The encoded width: one per numeric column plus one per category."""
        return sum(1 if c.kind != CATEGORICAL else len(c.categories) for c in self.columns)


def is_frame(x: Any) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return hasattr(x, "iloc") and hasattr(x, "dtypes") and hasattr(x, "columns")


def _columns(X) -> list:
    """``[(name, values as a 1-D NumPy array, dtype)]`` of a DataFrame or a 2-D array."""
    if is_frame(X):
        return [(name, X[name].to_numpy(), X[name].dtype) for name in X.columns]
    array = np.asarray(X)
    if array.ndim != 2:
        raise ValueError(f"X has shape {array.shape}: expected a table [rows, columns]")
    return [(j, array[:, j], array.dtype) for j in range(array.shape[1])]


def _is_missing(values: np.ndarray) -> np.ndarray:
    """``[N]`` bool: NaN in a float column, ``None`` or NaN in an object column (cells and
    labels alike)."""
    if values.dtype.kind in "fc":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values],
                        bool)
    return np.zeros(values.shape, bool)


def _column_kind(name, values: np.ndarray, dtype, declared: bool) -> str:
    if declared or str(dtype) == "category" or values.dtype.kind == "b":
        return CATEGORICAL
    if values.dtype.kind in "iu":
        return INTEGER
    if values.dtype.kind == "f":
        return NUMERIC
    raise ValueError(f"column {name!r} holds {values.dtype.kind!r}-kind values such as "
                     f"{values[0]!r}: expected numbers, or declare it categorical "
                     f"(categorical=[{name!r}])")


def fit_encoding(X, categorical: Optional[Sequence] = None) -> TableEncoding:
    """Learn the encoding of a training table.

    Args:
      X: a pandas DataFrame or a 2-D array ``[N, C]`` (numbers, or objects in declared
        categorical columns).
      categorical: the categorical columns, by name (DataFrame) or position (array). Boolean
        and pandas ``category`` columns are categorical whether declared or not.

    Raises:
      ValueError: an empty table, a missing cell, a constant column, strings in an undeclared
        column, or a declared column that does not exist; each names the column.

    Example::

      >>> enc = fit_encoding(np.array([[1.0, 0], [3.0, 1], [5.0, 1]]), categorical=[1])
      >>> [c.kind for c in enc.columns], enc.width
      (['numeric', 'categorical'], 3)
      >>> encode(enc, np.array([[3.0, 1]])).tolist()
      [[0.0, 0.0, 1.0]]
    """
    columns = _columns(X)
    if not columns or len(columns[0][1]) == 0:
        raise ValueError(f"X has shape {np.shape(X)}: expected at least one row and one column")
    declared = list(categorical or [])
    names = [name for name, _, _ in columns]
    for name in declared:
        if name not in names:
            raise ValueError(f"categorical names column {name!r}, which X does not have "
                             f"(its columns: {names})")
    specs, means, stds = [], [], []
    for name, values, dtype in columns:
        missing = _is_missing(values)
        if missing.any():
            raise ValueError(f"column {name!r} has a missing (NaN) cell in row "
                             f"{int(np.argmax(missing))}: expected every cell filled")
        kind = _column_kind(name, values, dtype, name in declared)
        if kind == CATEGORICAL:
            categories = tuple(sorted(set(values.tolist()), key=lambda v: (str(type(v)), v)))
            if len(categories) < 2:
                raise ValueError(f"column {name!r} is constant ({categories[0]!r}): expected "
                                 "at least two values (drop the column)")
            specs.append(ColumnSpec(name, kind, dtype, categories))
            continue
        numbers = values.astype(np.float64)
        std = float(numbers.std())
        if not np.isfinite(numbers).all():
            raise ValueError(f"column {name!r} has an infinite cell: expected finite numbers")
        if std == 0.0:
            raise ValueError(f"column {name!r} is constant ({numbers[0]!r}): expected at "
                             "least two values (drop the column)")
        specs.append(ColumnSpec(name, kind, dtype))
        means.append(float(numbers.mean()))
        stds.append(std)
    frame = is_frame(X)
    return TableEncoding(tuple(specs), np.array(means), np.array(stds), frame,
                         None if frame else np.asarray(X).dtype)


def encode(encoding: TableEncoding, X) -> np.ndarray:
    """``X`` (same columns as the training table) as ``[N, width]`` float32: standardised
    numbers, then one-hot blocks, in column order. Unknown categories raise ``ValueError``."""
    columns = _columns(X)
    if len(columns) != len(encoding.columns):
        raise ValueError(f"X has {len(columns)} columns: expected {len(encoding.columns)}, "
                         "the training table's")
    blocks, numeric = [], 0
    for spec, (_, values, _) in zip(encoding.columns, columns):
        if spec.kind == CATEGORICAL:
            index = {c: i for i, c in enumerate(spec.categories)}
            unknown = [v for v in values.tolist() if v not in index]
            if unknown:
                raise ValueError(f"column {spec.name!r} has category {unknown[0]!r}: expected "
                                 f"one of {list(spec.categories)}")
            blocks.append(np.eye(len(spec.categories))[[index[v] for v in values.tolist()]])
        else:
            mean, std = encoding.mean[numeric], encoding.std[numeric]
            blocks.append(((values.astype(np.float64) - mean) / std)[:, None])
            numeric += 1
    return np.concatenate(blocks, 1).astype(np.float32)


def decode(encoding: TableEncoding, Z) -> Any:
    """Encoded rows ``[N, width]`` back in the training table's form: a DataFrame with its
    columns and dtypes, or an array of its dtype (``object`` when it mixes categories)."""
    Z = np.asarray(Z, np.float64)
    if Z.ndim != 2 or Z.shape[1] != encoding.width:
        raise ValueError(f"Z has shape {Z.shape}: expected [N, {encoding.width}]")
    out, start, numeric = [], 0, 0
    for spec in encoding.columns:
        if spec.kind == CATEGORICAL:
            stop = start + len(spec.categories)
            picks = np.argmax(Z[:, start:stop], 1)
            out.append(np.array([spec.categories[i] for i in picks], dtype=object))
        else:
            stop = start + 1
            values = Z[:, start] * encoding.std[numeric] + encoding.mean[numeric]
            out.append(np.rint(values) if spec.kind == INTEGER else values)
            numeric += 1
        start = stop
    if encoding.frame:
        import pandas as pd  # the input was a DataFrame, so pandas is there

        return pd.DataFrame({spec.name: pd.Series(values).astype(spec.dtype)
                             for spec, values in zip(encoding.columns, out)})
    return np.stack(out, 1).astype(encoding.array_dtype)
