"""Tabular data augmentation with one energy per class (TabEBM, Margeloiu et al. 2024).

``TabEBM(...).fit(X, y).generate(n_per_class, seed)`` is the estimator; its parts are here
to compose: surrogate negatives, class-energy backends (a training-free kernel classifier, a
small network per class, your own in-context classifier), the table's encoding, and the
class sampler.
"""
from ebm_jax.applications.tabular.backends import (
    BANDWIDTH_RULES,
    LOO_GRID,
    MIN_DIAGONAL_SHARE,
    ClassEnergyBackend,
    InContextParams,
    KernelParams,
    SharedKernelParams,
    class_energy,
    in_context_backend,
    kernel_backend,
    loo_bandwidth,
    network_backend,
    pooled_within_class_std,
    scott_bandwidth,
    scott_diagonal_bandwidth,
    scott_pooled_bandwidth,
    shared_kernel_energy,
    shared_step_scale,
)
from ebm_jax.applications.tabular.encoding import (ColumnSpec, TableEncoding, decode, encode,
                                                   fit_encoding)
from ebm_jax.applications.tabular.estimator import BACKENDS, CLASS_ENERGIES, TabEBM
from ebm_jax.applications.tabular.generation import class_sampler, jittered_starts
from ebm_jax.applications.tabular.negatives import surrogate_negatives

__all__ = ["BACKENDS", "BANDWIDTH_RULES", "CLASS_ENERGIES", "LOO_GRID", "MIN_DIAGONAL_SHARE",
           "ClassEnergyBackend",
           "ColumnSpec", "InContextParams", "KernelParams", "SharedKernelParams", "TabEBM",
           "TableEncoding", "class_energy", "class_sampler", "decode", "encode", "fit_encoding",
           "in_context_backend", "jittered_starts", "kernel_backend", "loo_bandwidth",
           "network_backend", "pooled_within_class_std", "scott_bandwidth",
           "scott_diagonal_bandwidth", "scott_pooled_bandwidth",
           "shared_kernel_energy", "shared_step_scale",
           "surrogate_negatives"]
