"""The user's own data, from an ``.npz`` or a ``.csv`` file, checked before any compute.

An ``.npz`` holds ``x_train`` and, optionally, ``y_train`` (integer labels; without them
the data is unlabelled), ``x_test`` and ``y_test``. Examples may have any shape:
``x_train`` is ``[N, ...]`` (``[N, D]`` features, ``[N, L]`` or ``[N, L, C]`` signals,
``[N, H, W, C]`` images). A ``.csv`` has a header row; ``target`` names the label column
(string or integer labels; none: unlabelled) and every other column is a numeric feature.
Without a test split in the file, ``test_fraction`` of the examples are held out
(stratified by label when there are labels, seeded).

Every problem is one :class:`DataFileError` naming the file, the array or column, the
value and what was expected: a missing or misspelt key, a non-numeric or empty array,
NaN or inf values, labels that are not integers in ``[0, K)``, test labels of a class
the training split lacks, mismatched lengths or example shapes, a split too small.

Example::

    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "signals.npz")
    >>> rng = np.random.default_rng(0)
    >>> np.savez(path, x_train=rng.normal(size=(40, 16)), y_train=np.arange(40) % 4)
    >>> data = load_file(path, test_fraction=0.25)
    >>> data.x_train.shape, data.x_test.shape, data.num_classes, data.x_train.dtype
    ((30, 16), (10, 16), 4, dtype('float32'))
    >>> np.savez(path, x_train=np.full((8, 3), np.nan))
    >>> load_file(path)
    Traceback (most recent call last):
    ...
    ebm_jax.data.files.DataFileError: ...signals.npz: x_train has 24 NaN or inf values (first at example 0): expected finite numbers
"""
from __future__ import annotations

import csv
import os
from typing import NamedTuple, Optional, Sequence

import numpy as np

FILE_SUFFIXES = (".npz", ".csv")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MIN_SPLIT = 2  # examples in each split at least


class DataFileError(ValueError):
    """A data file that cannot be used: the message names the file, the field and the fix."""


class FileData(NamedTuple):
    """Checked arrays from a user's file.

    Attributes:
      x_train: ``float32 [N, ...]``.
      y_train: ``int32 [N]`` labels in ``[0, num_classes)``, or None (unlabelled).
      x_test: ``float32 [M, ...]`` with the example shape of ``x_train``.
      y_test: ``int32 [M]`` or None.
      num_classes: ``K``, or None without labels.
      class_names: the CSV's label strings in label order (None for integer labels).
      path: the file read.
    """

    x_train: np.ndarray
    y_train: Optional[np.ndarray]
    x_test: np.ndarray
    y_test: Optional[np.ndarray]
    num_classes: Optional[int]
    class_names: Optional[tuple]
    path: str


class DataStatistics(NamedTuple):
    """The range and scale of a training set, over every value of every example.

    Attributes:
      low, high: the smallest and largest value.
      mean, std: their mean and standard deviation.
    """

    low: float
    high: float
    mean: float
    std: float


def is_data_file(name: str) -> bool:
    """Whether ``name`` (a ``data.dataset`` value) names a file rather than a shipped dataset."""
    return isinstance(name, str) and name.lower().endswith(FILE_SUFFIXES)


def data_statistics(x: np.ndarray) -> DataStatistics:
    """The :class:`DataStatistics` of ``x [N, ...]`` (float64 sums)."""
    x = np.asarray(x, np.float64)
    return DataStatistics(float(x.min()), float(x.max()), float(x.mean()), float(x.std()))


NORMALIZATIONS = ("auto", "standard", "robust", "range", "none")
HEAVY_TAIL_RATIO = 3.0  # std / (IQR / 1.349) above this: heavy tails ("auto" -> "robust")
ROBUST_BOX = (0.5, 99.5)  # "robust": the sampler's box spans these percentiles


class Normalization(NamedTuple):
    """The map ``(x - center) / scale`` that brings a user's values to the scale the presets
    are tuned for, and the box ``[low, high]`` (normalised units) that the sampler's clamp and
    chain restarts cover.

    Attributes:
      method: ``"standard"``, ``"robust"``, ``"range"`` or ``"none"`` (``"auto"`` resolved).
      center, scale: the map.
      low, high: the box.
      clip: values outside the box are clipped to it (``"robust"``: winsorised outliers).
    """

    method: str
    center: float
    scale: float
    low: float
    high: float
    clip: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``(x - center) / scale`` as float32, clipped to the box when ``clip`` (robust)."""
        mapped = ((np.asarray(x, np.float32) - np.float32(self.center))
                  / np.float32(self.scale))
        return np.clip(mapped, self.low, self.high) if self.clip else mapped


def normalization(x: np.ndarray, method: str = "auto",
                  value_range: Optional[tuple] = None) -> Normalization:
    """The :class:`Normalization` of training values ``x [N, ...]`` (over every value).

    - ``"standard"``: zero mean, unit standard deviation; the box is the data's range (or
      ``value_range``), mapped.
    - ``"robust"``: the median and the interquartile range / 1.349 (the standard deviation of
      a Gaussian with that IQR): heavy tails leave the bulk at unit scale; the box spans the
      0.5th to 99.5th percentiles, and values beyond it are clipped to it (winsorised), so
      neither the network nor the chains meet values thousands of units out.
    - ``"auto"``: ``"robust"`` when the tails are heavy (std over IQR/1.349 above
      :data:`HEAVY_TAIL_RATIO`), else ``"standard"``.
    - ``"range"``: the range (or ``value_range``) onto [-1, 1].
    - ``"none"``: the identity; the box is the range.

    Example::

      >>> n = normalization(np.array([[0.0, 255.0], [51.0, 102.0]]), "range")
      >>> n.center, n.scale, n.low, n.high
      (127.5, 127.5, -1.0, 1.0)
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"data.normalize={method!r}: expected one of {list(NORMALIZATIONS)}")
    values = np.asarray(x, np.float64).ravel()
    low, high = value_range if value_range is not None else (values.min(), values.max())
    low, high = float(low), float(high)
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    robust_std = max((q75 - q25) / 1.349, 1e-12)
    std = max(float(values.std()), 1e-12)
    if method == "auto":
        method = "robust" if std > HEAVY_TAIL_RATIO * robust_std else "standard"
    if method == "none":
        return Normalization("none", 0.0, 1.0, low, high)
    if method == "range":
        return Normalization("range", (low + high) / 2, max((high - low) / 2, 1e-12), -1.0, 1.0)
    if method == "standard":
        center, scale = float(values.mean()), std
        return Normalization("standard", center, scale, (low - center) / scale,
                             (high - center) / scale)
    box_low, box_high = np.percentile(values, ROBUST_BOX)
    center, scale = float(median), float(robust_std)
    return Normalization("robust", center, scale, float((box_low - center) / scale),
                         float((box_high - center) / scale), clip=True)


def load_file(path: str, *, target: Optional[str] = None, test_fraction: float = 0.2,
              seed: int = 0) -> FileData:
    """Read and check an ``.npz`` or ``.csv`` (see the module docstring).

    Args:
      path: the file.
      target: the CSV's label column (ignored for ``.npz``, which names its arrays).
      test_fraction: the share held out when the file has no test split.
      seed: the seed of that split.

    Raises:
      DataFileError: the file is missing, unreadable or fails a check.
    """
    where = os.path.abspath(path)
    if not is_data_file(path):
        raise DataFileError(f"data.dataset={path!r}: expected a shipped dataset name or a "
                            f"file ending in {' or '.join(FILE_SUFFIXES)}")
    if not os.path.isfile(path):
        raise DataFileError(f"data.dataset={path!r}: no such file ({where}): expected an "
                            "existing .npz or .csv")
    if not 0.0 < test_fraction < 1.0:
        raise DataFileError(f"data.test_fraction={test_fraction!r}: expected a fraction in "
                            "(0, 1)")
    if path.lower().endswith(".npz"):
        arrays = _read_npz(path, where)
        class_names = None
    else:
        arrays, class_names = _read_csv(path, where, target)
    return check_arrays(*arrays, where=where, test_fraction=test_fraction, seed=seed,
                        class_names=class_names)


def check_arrays(x_train, y_train=None, x_test=None, y_test=None, *, where: str = "arrays",
                 test_fraction: float = 0.2, seed: int = 0,
                 class_names: Optional[Sequence[str]] = None) -> FileData:
    """Check a training set (and an optional test set) and split off a test set if needed.

    Returns float32 examples and int32 labels; raises :class:`DataFileError` naming
    ``where`` and the array on the first problem found.
    """
    x_train = _examples(x_train, "x_train", where)
    if (x_test is None) != (y_test is None) and y_train is not None:
        missing = "x_test" if x_test is None else "y_test"
        raise DataFileError(f"{where}: has {'y_test' if x_test is None else 'x_test'} but no "
                            f"{missing}: expected both or neither")
    if y_train is None and y_test is not None:
        raise DataFileError(f"{where}: has y_test but no y_train: expected labels for both "
                            "splits, or for neither (unlabelled data)")
    y_train = None if y_train is None else _labels(y_train, "y_train", where, len(x_train))
    if x_test is None:
        x_train, y_train, x_test, y_test = _split(x_train, y_train, test_fraction, seed, where)
    else:
        x_test = _examples(x_test, "x_test", where)
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataFileError(f"{where}: x_test has examples of shape {x_test.shape[1:]}, "
                                f"x_train of shape {x_train.shape[1:]}: expected the same")
        y_test = None if y_test is None else _labels(y_test, "y_test", where, len(x_test))
    num_classes = None
    if y_train is not None:
        num_classes = int(y_train.max()) + 1
        _check_classes(y_train, y_test, num_classes, where)
    for name, x in (("training", x_train), ("test", x_test)):
        if len(x) < MIN_SPLIT:
            raise DataFileError(f"{where}: the {name} split has {len(x)} examples: expected at "
                                f"least {MIN_SPLIT}")
    names = None if class_names is None else tuple(class_names)
    return FileData(x_train, y_train, x_test, y_test, num_classes, names, where)


def _read_npz(path: str, where: str) -> tuple:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as error:  # zipfile/pickle/format errors: many kinds
        raise DataFileError(f"{where}: cannot be read as .npz ({type(error).__name__}: "
                            f"{error}): expected a file written by numpy.savez") from None
    unknown = sorted(set(arrays) - set(NPZ_KEYS))
    if unknown:
        raise DataFileError(f"{where}: has arrays {unknown}: expected only {list(NPZ_KEYS)} "
                            "(x_train required)")
    if "x_train" not in arrays:
        raise DataFileError(f"{where}: has no x_train (it has {sorted(arrays)}): expected "
                            f"arrays named {list(NPZ_KEYS)}, x_train required")
    return tuple(arrays.get(k) for k in NPZ_KEYS)


def _read_csv(path: str, where: str, target: Optional[str]) -> tuple:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) < 2:
        raise DataFileError(f"{where}: has {max(len(rows) - 1, 0)} data rows: expected a "
                            "header row and examples below it")
    header = [h.strip() for h in rows[0]]
    if target is not None and target not in header:
        raise DataFileError(f"data.target={target!r} is not a column of {where}: expected one "
                            f"of {header}")
    features = [i for i, h in enumerate(header) if h != target]
    if not features:
        raise DataFileError(f"{where}: has no feature column besides the target {target!r}")
    x = np.empty((len(rows) - 1, len(features)), np.float64)
    labels = []
    for r, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataFileError(f"{where}: line {r} has {len(row)} fields: expected "
                                f"{len(header)}, one per column of the header")
        for j, i in enumerate(features):
            try:
                x[r - 2, j] = float(row[i])
            except ValueError:
                raise DataFileError(f"{where}: line {r}, column {header[i]!r} holds "
                                    f"{row[i]!r}: expected a number (set data.target to "
                                    "the label column)") from None
        if target is not None:
            labels.append(row[header.index(target)].strip())
    if target is None:
        return (x, None, None, None), None
    y, names = _encode_labels(labels)
    return (x, y, None, None), names


def _encode_labels(labels: list) -> tuple:
    """Integer labels stay as they are; any other labels become 0..K-1 in sorted order."""
    try:
        values = np.array([float(v) for v in labels])
        if np.all(values == np.round(values)):
            return values, None
    except ValueError:
        pass
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[v] for v in labels]), names


def _examples(x, name: str, where: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise DataFileError(f"{where}: {name} has dtype {x.dtype}: expected numbers (float, "
                            "int or bool)")
    if x.ndim < 2 or x.shape[0] == 0 or 0 in x.shape:
        raise DataFileError(f"{where}: {name} has shape {x.shape}: expected [N, ...] with N "
                            ">= 1 examples of at least one value each")
    bad = ~np.isfinite(x.astype(np.float64))
    if bad.any():
        first = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise DataFileError(f"{where}: {name} has {int(bad.sum())} NaN or inf values (first "
                            f"at example {first}): expected finite numbers")
    return x.astype(np.float32)


def _labels(y, name: str, where: str, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataFileError(f"{where}: {name} has shape {y.shape}: expected [{n}], one label "
                            "per example")
    if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y.astype(np.float64))) \
            or not np.all(y == np.round(y)):
        raise DataFileError(f"{where}: {name} holds non-integer labels (dtype {y.dtype}): "
                            "expected integer class labels 0..K-1")
    if y.min() < 0:
        raise DataFileError(f"{where}: {name} has label {int(y.min())}: expected labels in "
                            "[0, K)")
    return y.astype(np.int32)


def _check_classes(y_train, y_test, num_classes: int, where: str) -> None:
    if num_classes < 2:
        raise DataFileError(f"{where}: y_train has a single class: expected at least 2 "
                            "(or no labels for unlabelled data)")
    absent = sorted(set(range(num_classes)) - set(np.unique(y_train).tolist()))
    if absent:
        raise DataFileError(f"{where}: y_train has no example of class {absent[:5]} of "
                            f"0..{num_classes - 1}: expected labels 0..K-1 with every class "
                            "present")
    if y_test is not None and y_test.max() >= num_classes:
        raise DataFileError(f"{where}: y_test has label {int(y_test.max())}, a class y_train "
                            f"lacks: expected labels in [0, {num_classes})")


def _split(x, y, test_fraction: float, seed: int, where: str) -> tuple:
    """Hold out ``test_fraction`` (stratified when there are labels)."""
    from sklearn.model_selection import train_test_split

    n_test = int(round(test_fraction * len(x)))
    if n_test < MIN_SPLIT or len(x) - n_test < MIN_SPLIT:
        raise DataFileError(f"{where}: {len(x)} examples and no test split: expected at least "
                            f"{MIN_SPLIT} examples on each side of a {test_fraction} test split "
                            "(add x_test, or more examples)")
    stratify = None
    if y is not None and np.bincount(y).min() >= 2 and n_test >= len(np.unique(y)):
        stratify = y
    parts = train_test_split(x, *([] if y is None else [y]), test_size=n_test,
                             random_state=seed, stratify=stratify)
    if y is None:
        return parts[0], None, parts[1], None
    x_train, x_test, y_train, y_test = parts
    return x_train, y_train, x_test, y_test


__all__ = ["DataFileError", "DataStatistics", "FILE_SUFFIXES", "FileData", "HEAVY_TAIL_RATIO",
           "NORMALIZATIONS", "Normalization", "ROBUST_BOX", "check_arrays", "data_statistics", "is_data_file", "load_file", "normalization"]
