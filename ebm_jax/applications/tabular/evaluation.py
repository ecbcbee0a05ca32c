"""The augmentation protocol of TabEBM's paper: does a classifier trained on the real rows plus
synthetic rows generalise better than on the real rows alone, are the synthetic rows like
held-out real ones, and do they copy the training rows?

One split (:func:`evaluate_split`): ``n_real`` stratified training rows, the rest for testing;
each method makes ``max(50, n_real)`` rows a class; four scikit-learn classifiers (logistic
regression, k-NN, random forest, MLP; inputs standardised) are scored by balanced accuracy on
the test rows; fidelity is the mean per-feature Kolmogorov-Smirnov statistic and the mean
class-conditional MMD against the test rows; privacy is the median distance from a synthetic
row to its closest training row and the share of exact copies (both in standardised units).

Methods (:data:`METHODS`): ``real`` (no synthetic rows), ``jitter`` (real rows plus Gaussian
noise of 0.1 standardised units), ``smote`` (imbalanced-learn's SMOTE, the implementation users
know), ``tabebm_kernel`` / ``tabebm_network`` (:class:`TabEBM` with each backend),
``tabebm_kernel_batch_mean`` (the reference code's batch-averaged gradient),
``shared_kernel`` (the paper's ablation: one classifier over all classes), and
``tabebm_kernel_langevin`` / ``shared_kernel_langevin`` / ``tabebm_network_langevin``: the kernel,
the ablation's and the network's energies sampled in the temperature form (noise
``sqrt(2 step)``, so that the chains sample ``exp(-E)`` rather than descend to its modes under
the paper's noise 0.01); ``tabebm_kernel_diagonal`` / ``tabebm_kernel_diagonal_langevin``: the
kernel with one Scott bandwidth per feature, under each sampler; ``tabebm_kernel_pooled`` /
``tabebm_kernel_pooled_langevin``: the same with the spreads pooled within classes, and
``shared_kernel_pooled_langevin`` the ablation's counterpart of the last.
"""
from __future__ import annotations

import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from ebm_jax._checks import check_choice, check_int
from ebm_jax.applications.tabular.estimator import TabEBM

# Each TabEBM method is its estimator settings; the methods run in this order.
TABEBM_SETTINGS = {
    "tabebm_kernel": {},
    "tabebm_network": {"backend": "network"},
    "tabebm_kernel_batch_mean": {"batch_mean_gradient": True},
    "shared_kernel": {"class_energies": "shared"},
    "tabebm_kernel_langevin": {"noise_scale": None},
    "shared_kernel_langevin": {"class_energies": "shared", "noise_scale": None},
    "tabebm_network_langevin": {"backend": "network", "noise_scale": None},
    "tabebm_kernel_diagonal": {"bandwidth": "scott_diagonal"},
    "tabebm_kernel_diagonal_langevin": {"bandwidth": "scott_diagonal", "noise_scale": None},
    "tabebm_kernel_pooled": {"bandwidth": "scott_pooled"},
    "tabebm_kernel_pooled_langevin": {"bandwidth": "scott_pooled", "noise_scale": None},
    "shared_kernel_pooled_langevin": {"class_energies": "shared", "bandwidth": "scott_pooled",
                                      "noise_scale": None},
}
METHODS = ("real", "jitter", "smote") + tuple(TABEBM_SETTINGS)
CLASSIFIERS = ("logistic_regression", "knn", "random_forest", "mlp")
JITTER_SIGMA = 0.1


def stratified_split(X: np.ndarray, y: np.ndarray, n_real: int, seed: int):
    """``(X_train, y_train, X_test, y_test)``: ``n_real`` rows drawn stratified by class, the
    remaining rows (at least 30% of the data; all of them here) for testing.

    Example::

      >>> X, y = np.arange(40.0).reshape(20, 2), np.repeat([0, 1], 10)
      >>> X_train, y_train, X_test, y_test = stratified_split(X, y, 6, seed=0)
      >>> np.bincount(y_train).tolist(), len(X_test)
      ([3, 3], 14)
    """
    from sklearn.model_selection import train_test_split

    X_train, X_test, y_train, y_test = train_test_split(X, y, train_size=n_real, stratify=y,
                                                        random_state=seed)
    return X_train, y_train, X_test, y_test


def _standardise(X_train):
    mean, std = X_train.mean(0), X_train.std(0)
    return mean, np.where(std > 0, std, 1.0)


def jitter_rows(X: np.ndarray, y: np.ndarray, n_per_class: int, seed: int,
                sigma: float = JITTER_SIGMA):
    """Real rows of each class drawn with replacement plus ``N(0, sigma^2)`` in standardised
    units: the baseline that adds no model."""
    rng = np.random.default_rng(seed)
    mean, std = _standardise(X)
    rows, labels = [], []
    for label in np.unique(y):
        own = X[y == label]
        pick = own[rng.integers(0, len(own), n_per_class)]
        rows.append(pick + sigma * std * rng.normal(size=pick.shape))
        labels.append(np.full(n_per_class, label))
    return np.concatenate(rows), np.concatenate(labels)


def smote_rows(X: np.ndarray, y: np.ndarray, n_per_class: int, seed: int):
    """``n_per_class`` new rows a class from imbalanced-learn's SMOTE (interpolations between a
    row and one of its ``min(5, smallest class - 1)`` nearest neighbours in the class)."""
    try:
        from imblearn.over_sampling import SMOTE
    except ImportError as error:  # an optional dependency of the protocol only
        raise ImportError("the 'smote' method needs imbalanced-learn: pip install "
                          "'ebm-jax[tabular]'") from error
    labels, counts = np.unique(y, return_counts=True)
    target = {label: int(count) + n_per_class for label, count in zip(labels, counts)}
    smote = SMOTE(sampling_strategy=target, k_neighbors=int(min(5, counts.min() - 1)),
                  random_state=seed)
    X_all, y_all = smote.fit_resample(X, y)
    return X_all[len(X):], y_all[len(X):]  # SMOTE appends its rows after the real ones


def augment(method: str, X: np.ndarray, y: np.ndarray, n_per_class: int, seed: int):
    """``(X_synth, y_synth)`` of ``method`` (:data:`METHODS`), or ``(None, None)`` for
    ``real``."""
    check_choice("method", method, list(METHODS))
    if method == "real":
        return None, None
    if method == "jitter":
        return jitter_rows(X, y, n_per_class, seed)
    if method == "smote":
        return smote_rows(X, y, n_per_class, seed)
    model = TabEBM(seed=seed, **TABEBM_SETTINGS[method]).fit(X, y)
    return model.generate(n_per_class, seed=seed)


def make_classifier(name: str, seed: int):
    """A scikit-learn pipeline: standardisation, then the classifier ``name``
    (:data:`CLASSIFIERS`)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    check_choice("classifier", name, list(CLASSIFIERS))
    model = {"logistic_regression": lambda: LogisticRegression(max_iter=2000),
             "knn": lambda: KNeighborsClassifier(n_neighbors=5),
             "random_forest": lambda: RandomForestClassifier(n_estimators=100,
                                                             random_state=seed, n_jobs=1),
             "mlp": lambda: MLPClassifier(hidden_layer_sizes=(100,), max_iter=500,
                                          random_state=seed)}[name]()
    return make_pipeline(StandardScaler(), model)


def balanced_accuracies(X_train, y_train, X_test, y_test, seed: int,
                        classifiers: Sequence[str] = CLASSIFIERS) -> dict:
    """``{classifier: balanced accuracy on the test rows}`` after training on the given rows."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import balanced_accuracy_score

    scores = {}
    for name in classifiers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = make_classifier(name, seed).fit(X_train, y_train)
        scores[name] = float(balanced_accuracy_score(y_test, model.predict(X_test)))
    return scores


def fidelity(X_synth, y_synth, X_test, y_test, X_train) -> dict:
    """``ks_mean``: the mean over features of the two-sample Kolmogorov-Smirnov statistic of
    the synthetic rows against the test rows; ``mmd``: the mean over classes of the squared MMD
    (:func:`ebm_jax.metrics.mmd`) between a class's synthetic and test rows, in units
    standardised by the training rows."""
    from scipy.stats import ks_2samp

    from ebm_jax.metrics import mmd

    ks = [ks_2samp(X_synth[:, j], X_test[:, j]).statistic for j in range(X_test.shape[1])]
    mean, std = _standardise(X_train)
    per_class = [float(mmd(((X_synth[y_synth == c] - mean) / std).astype(np.float32),
                           ((X_test[y_test == c] - mean) / std).astype(np.float32)))
                 for c in np.unique(y_test) if (y_synth == c).sum() >= 2
                 and (y_test == c).sum() >= 2]
    return {"ks_mean": float(np.mean(ks)), "mmd": float(np.mean(per_class))}


def privacy(X_synth, X_train) -> dict:
    """``dcr_median``: the median distance from a synthetic row to its closest training row,
    in standardised units; ``exact_copy_rate``: the share of synthetic rows equal to a training
    row in every feature."""
    mean, std = _standardise(X_train)
    a, b = (X_synth - mean) / std, (X_train - mean) / std
    distances = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).min(1)
    copies = (X_synth[:, None] == X_train[None]).all(-1).any(1)
    return {"dcr_median": float(np.median(distances)), "exact_copy_rate": float(copies.mean())}


def evaluate_split(dataset: str, X: np.ndarray, y: np.ndarray, n_real: int, seed: int,
                   methods: Sequence[str] = METHODS, classifiers: Sequence[str] = CLASSIFIERS,
                   on_row: Optional[Callable[[dict], None]] = None) -> list:
    """Every method and classifier on one split: one row each with ``dataset``, ``n_real``,
    ``method``, ``classifier``, ``seed``, ``balanced_accuracy``, ``ks_mean``, ``mmd``,
    ``dcr_median``, ``exact_copy_rate`` (the last four None for ``real``) and
    ``augment_seconds``; ``on_row`` sees each row as it is made."""
    import time

    n_real = check_int("n_real", n_real, 2)
    X_train, y_train, X_test, y_test = stratified_split(X, y, n_real, seed)
    n_per_class = max(50, n_real)
    rows = []
    for method in methods:
        start = time.perf_counter()
        X_synth, y_synth = augment(method, X_train, y_train, n_per_class, seed)
        seconds = time.perf_counter() - start
        measures = {"ks_mean": None, "mmd": None, "dcr_median": None, "exact_copy_rate": None}
        if X_synth is None:
            X_fit, y_fit = X_train, y_train
        else:
            X_synth, y_synth = np.asarray(X_synth, np.float64), np.asarray(y_synth)
            measures.update(fidelity(X_synth, y_synth, X_test, y_test, X_train))
            measures.update(privacy(X_synth, X_train))
            X_fit = np.concatenate([X_train, X_synth])
            y_fit = np.concatenate([y_train, y_synth])
        scores = balanced_accuracies(X_fit, y_fit, X_test, y_test, seed, classifiers)
        for name, score in scores.items():
            row = {"dataset": dataset, "n_real": n_real, "method": method, "classifier": name,
                   "seed": seed, "balanced_accuracy": score, **measures,
                   "augment_seconds": seconds}
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return rows
