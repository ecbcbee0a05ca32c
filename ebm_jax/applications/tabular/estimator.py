"""``TabEBM``: tabular data augmentation with one energy per class, as a scikit-learn style
estimator (``fit``, ``generate``, ``get_params`` / ``set_params``).

For each class separately (Margeloiu et al., NeurIPS 2024): standardise the rows with the
training table's statistics, add surrogate negatives at hypercube corners
(:func:`~ebm_jax.applications.tabular.surrogate_negatives`), fit a real-vs-surrogate classifier
(a backend, :mod:`~ebm_jax.applications.tabular.backends`), read its logits as the class
energy ``E_c(x) = -logsumexp f_c(x)`` and draw the class by SGLD from jittered rows
(:func:`~ebm_jax.applications.tabular.class_sampler`). Classes are fitted and sampled in one
jitted, class-vmapped program (rows padded to the largest class) for the kernel and network
backends; an in-context function of yours runs class by class on the real rows only.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator

from ebm_jax._checks import (check_choice, check_flag, check_int, check_positive_finite,
                             check_weight)
from ebm_jax.applications.tabular.backends import (ClassEnergyBackend, SharedKernelParams,
                                                   class_energy, in_context_backend,
                                                   kernel_backend, network_backend,
                                                   shared_kernel_energy, shared_step_scale)
from ebm_jax.applications.tabular.encoding import _is_missing, decode, encode, fit_encoding
from ebm_jax.applications.tabular.generation import class_sampler
from ebm_jax.applications.tabular.negatives import surrogate_negatives

BACKENDS = ("kernel", "network", "in_context")
CLASS_ENERGIES = ("distinct", "shared")


class TabEBM(BaseEstimator):
    """Class-specific energies for tabular augmentation.

    Args:
      backend: ``"kernel"`` (training-free kernel classifier), ``"network"`` (an MLP per
        class against a Gaussian fitted to it; sample it with ``noise_scale=None``),
        ``"in_context"`` (your ``logits_fn``), or a
        :class:`~ebm_jax.applications.tabular.ClassEnergyBackend`.
      bandwidth: the kernel backend's ``"scott"``, ``"loo"``, ``"scott_diagonal"`` (one per
        feature from the class's rows), ``"scott_pooled"`` (one per feature from every
        class's spread around its own mean, pooled) or a number.
      categorical: categorical columns (names for a DataFrame, positions for an array).
      negative_distance: the surrogate corners' distance in standardised units (5).
      num_negative_pairs: corner pairs with three or more encoded features (2, i.e. 4 corners).
      num_steps, step_size, noise_scale, start_noise: SGLD (200, 0.1, 0.01, 0.01); the kernel
        backend's step is ``step_size`` times each class's squared bandwidth (per feature
        for a diagonal one; :func:`~ebm_jax.applications.tabular.kernel_backend`).
        ``noise_scale=None`` takes the temperature form, ``sqrt(2 step)``: the chains then
        sample ``exp(-E_c)`` (for the kernel, its density) instead of descending to its modes.
      batch_mean_gradient: the reference code's batch-averaged gradient (each chain's step
        divided by the number of chains); default off: per-example gradients.
      hidden, network_steps, network_learning_rate: the network backend's MLP and training.
      logits_fn: ``logits_fn(context_x, context_y, x) -> [2]`` for ``backend="in_context"``.
      class_energies: ``"distinct"`` (the method) or ``"shared"``, the paper's ablation: one
        kernel classifier over all classes read as ``E(x, y) = -log p(y | x)``
        (:func:`~ebm_jax.applications.tabular.shared_kernel_energy`; kernel backend only).
      seed: the negatives' and the network backend's seed (``generate`` takes its own).

    Example::

      >>> from sklearn.datasets import load_iris
      >>> X, y = load_iris(return_X_y=True)
      >>> model = TabEBM(num_steps=50).fit(X[::5], y[::5])
      >>> X_new, y_new = model.generate(20, seed=0)
      >>> X_new.shape, X_new.dtype, np.bincount(y_new).tolist()
      ((60, 4), dtype('float64'), [20, 20, 20])
    """

    def __init__(self, backend: Union[str, ClassEnergyBackend] = "kernel",
                 bandwidth: Union[str, float] = "scott",
                 categorical: Optional[Sequence] = None, negative_distance: float = 5.0,
                 num_negative_pairs: int = 2, num_steps: int = 200, step_size: float = 0.1,
                 noise_scale: float = 0.01, start_noise: float = 0.01,
                 batch_mean_gradient: bool = False, hidden: Sequence[int] = (64, 64),
                 network_steps: int = 300, network_learning_rate: float = 1e-2,
                 logits_fn: Optional[Callable] = None, class_energies: str = "distinct",
                 seed: int = 0):
        self.backend = backend
        self.bandwidth = bandwidth
        self.categorical = categorical
        self.negative_distance = negative_distance
        self.num_negative_pairs = num_negative_pairs
        self.num_steps = num_steps
        self.step_size = step_size
        self.noise_scale = noise_scale
        self.start_noise = start_noise
        self.batch_mean_gradient = batch_mean_gradient
        self.hidden = hidden
        self.network_steps = network_steps
        self.network_learning_rate = network_learning_rate
        self.logits_fn = logits_fn
        self.class_energies = class_energies
        self.seed = seed

    # -- settings -----------------------------------------------------------------------
    def _check_settings(self) -> ClassEnergyBackend:
        check_positive_finite("negative_distance", self.negative_distance)
        check_int("num_negative_pairs", self.num_negative_pairs)
        check_int("num_steps", self.num_steps)
        check_positive_finite("step_size", self.step_size)
        if self.noise_scale is not None:
            check_weight("noise_scale", self.noise_scale, 0.0,
                         expected="a number >= 0, or None for the temperature form")
        check_weight("start_noise", self.start_noise, 0.0, expected="a number >= 0")
        check_flag("batch_mean_gradient", self.batch_mean_gradient)
        check_int("seed", self.seed, 0)
        check_choice("class_energies", self.class_energies, list(CLASS_ENERGIES))
        if self.class_energies == "shared" and self.backend != "kernel":
            raise ValueError(f"class_energies='shared' with backend={self.backend!r}: the "
                             "shared-model ablation is a kernel classifier (backend='kernel')")
        if isinstance(self.backend, ClassEnergyBackend):
            return self.backend
        check_choice("backend", self.backend, list(BACKENDS))
        if self.backend == "kernel":
            return kernel_backend(self.bandwidth)
        if self.backend == "network":
            return network_backend(tuple(self.hidden), self.network_steps,
                                   self.network_learning_rate)
        if self.logits_fn is None:
            raise ValueError("backend='in_context' needs logits_fn(context_x, context_y, x)")
        return in_context_backend(self.logits_fn)

    # -- fit ----------------------------------------------------------------------------
    def fit(self, X, y) -> "TabEBM":
        """Fit one energy per class of ``y`` on the rows of ``X`` (``[N, C]`` array or
        DataFrame; ``y`` ``[N]`` labels of any kind). Returns ``self``.

        Raises:
          ValueError: a bad setting, fewer than two classes, a class with one row, ``y`` of
            another length than ``X`` or with missing labels, and the table's own errors
            (:func:`~ebm_jax.applications.tabular.fit_encoding`: NaN cells, constant columns,
            undeclared string columns).
        """
        backend = self._check_settings()
        labels = _labels(y, len(X))
        encoding = fit_encoding(X, self.categorical)
        Z = encode(encoding, X)
        classes, counts = np.unique(labels, return_counts=True)
        if len(classes) < 2:
            raise ValueError(f"y has one class ({_plain(classes[0])!r}): expected at least two "
                             "classes to augment")
        if counts.min() < 2:
            lonely = _plain(classes[np.argmin(counts)])
            raise ValueError(f"class {lonely!r} has 1 row: expected at least 2 rows in every "
                             "class (a class energy needs a spread)")
        width = Z.shape[1]
        rows = np.zeros((len(classes), counts.max(), width), np.float32)
        mask = np.zeros((len(classes), counts.max()), bool)
        for c, label in enumerate(classes):
            rows[c, :counts[c]] = Z[labels == label]
            mask[c, :counts[c]] = True
        key = jax.random.key(self.seed)
        negative_keys, init_keys, fit_keys = (jax.random.split(k, len(classes))
                                              for k in jax.random.split(key, 3))
        negatives = jnp.stack([surrogate_negatives(k, width, self.negative_distance,
                                                   min(self.num_negative_pairs, width))
                               for k in negative_keys])
        if backend.init_from_table is not None:  # class fits that share a table statistic
            stacked = backend.init_from_table(jnp.asarray(rows), jnp.asarray(mask))
            initial = [jax.tree.map(lambda leaf: leaf[c], stacked) for c in range(len(classes))]
        else:
            initial = [backend.init(k, width) for k in init_keys]
        if backend.vmappable:
            initial = jax.tree.map(lambda *leaves: jnp.stack(leaves), *initial)
            params = _jitted_fit(backend)(fit_keys, initial, jnp.asarray(rows),
                                          jnp.asarray(mask), negatives)
            if self.class_energies == "shared":
                k = len(classes)
                params = SharedKernelParams(
                    jnp.broadcast_to(params.rows, (k,) + params.rows.shape),
                    jnp.broadcast_to(params.log_weights, (k,) + params.log_weights.shape),
                    jnp.broadcast_to(params.bandwidth, (k,) + params.bandwidth.shape),
                    jnp.arange(k))
        else:
            params = [backend.fit(fit_keys[c], initial[c], jnp.asarray(rows[c, :counts[c]]),
                                  jnp.ones(counts[c], bool), negatives[c])
                      for c in range(len(classes))]
        self.backend_ = backend
        shared = self.class_energies == "shared"
        self.energy_ = shared_kernel_energy if shared else class_energy(backend)
        step_scale = shared_step_scale if shared else backend.step_scale
        if step_scale is None:
            self.step_scales_ = np.ones(len(classes), np.float32)
        elif backend.vmappable:
            self.step_scales_ = np.asarray(jax.vmap(step_scale)(params))
        else:
            self.step_scales_ = np.array([step_scale(p) for p in params], np.float32)
        self.encoding_ = encoding
        self.classes_ = classes
        self.label_dtype_ = np.asarray(y).dtype
        self.label_name_ = getattr(y, "name", None) if hasattr(y, "iloc") else None
        self.rows_, self.row_mask_, self.negatives_ = rows, mask, negatives
        self.class_params_ = params
        self.n_features_in_ = len(encoding.columns)
        return self

    def _check_fitted(self):
        if not hasattr(self, "class_params_"):
            raise ValueError("this TabEBM is not fitted yet: call fit(X, y) first")

    # -- use ----------------------------------------------------------------------------
    def energies(self, X) -> np.ndarray:
        """``[N, K]``: each row's energy under each class's energy (rows in the training
        table's form). Low where a class is likely."""
        self._check_fitted()
        Z = jnp.asarray(encode(self.encoding_, X))
        if self.backend_.vmappable:
            return np.asarray(_jitted_energies(self.energy_)(self.class_params_, Z)).T
        energies = jax.jit(jax.vmap(self.energy_, (None, 0)))
        return np.stack([np.asarray(energies(p, Z)) for p in self.class_params_], 1)

    def sample_encoded(self, n_per_class: int, seed: int = 0) -> np.ndarray:
        """``[K, n_per_class, width]``: each class's samples in the standardised, one-hot
        space the energies live on."""
        self._check_fitted()
        n = check_int("n_per_class", n_per_class)
        check_int("seed", seed, 0)
        keys = jax.random.split(jax.random.key(seed), len(self.classes_))
        # Steps and noises are arguments of one compiled program per energy and shape
        # (settings such as the batch-mean flag or the temperature form compile nothing new).
        steps = (self.step_size / (n if self.batch_mean_gradient else 1)
                 * np.asarray(self.step_scales_, np.float32))
        noises = (np.sqrt(2.0 * steps) if self.noise_scale is None
                  else np.full_like(steps, self.noise_scale))
        sample = _jitted_sampler(self.energy_, n, self.num_steps, float(self.start_noise),
                                 self.backend_.vmappable)
        if self.backend_.vmappable:
            return np.asarray(sample(keys, self.class_params_, jnp.asarray(self.rows_),
                                     jnp.asarray(self.row_mask_), jnp.asarray(steps),
                                     jnp.asarray(noises)))
        return np.stack([np.asarray(sample(keys[c], self.class_params_[c],
                                           jnp.asarray(self.rows_[c][self.row_mask_[c]]),
                                           jnp.ones(int(self.row_mask_[c].sum()), bool),
                                           steps[c], noises[c]))
                         for c in range(len(self.classes_))])

    def generate(self, n_per_class: int, seed: int = 0):
        """``(X_synth, y_synth)``: ``n_per_class`` rows of every class, in the training table's
        form (columns, dtypes, categories; a DataFrame if it was one) and labels of ``y``'s
        dtype (a Series if ``y`` was one), classes in sorted order."""
        encoded = self.sample_encoded(n_per_class, seed)
        X_synth = decode(self.encoding_, encoded.reshape(-1, encoded.shape[-1]))
        y_synth = np.repeat(self.classes_, n_per_class).astype(self.label_dtype_)
        if self.label_name_ is not None or hasattr(X_synth, "iloc"):
            import pandas as pd  # a DataFrame or Series came in, so pandas is there

            y_synth = pd.Series(y_synth, name=self.label_name_)
        return X_synth, y_synth


# Jitted programs, one per backend and settings: fits of the same shapes (the seeds of a
# benchmark, refits) compile nothing new.
@functools.lru_cache(maxsize=64)
def _jitted_fit(backend: ClassEnergyBackend):
    return jax.jit(jax.vmap(backend.fit))


@functools.lru_cache(maxsize=64)
def _jitted_energies(energy):
    """``[K, N]`` energies of every row under every class's params."""
    return jax.jit(jax.vmap(jax.vmap(energy, (None, 0)), (0, None)))


@functools.lru_cache(maxsize=64)
def _jitted_sampler(energy, n, num_steps, start_noise, vmapped):
    """``sample(keys, params, rows, mask, steps, noises)``: the class sampler with its step and
    noise as arguments (a unit step scaled by ``steps``; ``noises`` replacing the noise)."""
    sample = class_sampler(energy, n, num_steps=num_steps, step_size=1.0, noise_scale=0.0,
                           start_noise=start_noise)
    return jax.jit(jax.vmap(sample) if vmapped else sample)


def _plain(value):
    """A NumPy scalar as the Python value it holds (``1`` rather than ``np.int64(1)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _labels(y, num_rows: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != num_rows:
        raise ValueError(f"y has shape {labels.shape}: expected [{num_rows}], a label per row "
                         "of X")
    missing = _is_missing(labels)
    if missing.any():
        raise ValueError(f"y has a missing label in row {int(np.argmax(missing))}: expected a "
                         "label for every row")
    return labels
