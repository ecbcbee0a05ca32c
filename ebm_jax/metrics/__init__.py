"""Metrics: classification and calibration, OOD detection, adversarial robustness, sample
quality, divergences."""
from ebm_jax.metrics.ais import AISResult, ais_betas, ais_log_z
from ebm_jax.metrics.classification import (
    accuracy,
    calibration_bins,
    classification_report,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from ebm_jax.metrics.likelihood import grid_points, kl_by_quadrature
from ebm_jax.metrics.mmd import mmd
from ebm_jax.metrics.ood import auroc
from ebm_jax.metrics.ood_scores import (
    aupr,
    grad_norm_score,
    log_px_score,
    max_softmax_score,
    ood_report,
    roc_curve,
)
from ebm_jax.metrics.robustness import (
    attack_energy_shift,
    pgd_attack,
    robust_accuracy_curve,
    sgld_purification,
)
from ebm_jax.metrics.sample_quality import (
    KIDResult,
    extract_features,
    fid,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
    kernel_mmd,
    kid,
)
from ebm_jax.metrics.samples import classifier_sample_quality, fit_reference_classifier

__all__ = ["AISResult", "KIDResult", "accuracy", "ais_betas", "ais_log_z", "aupr", "auroc", "calibration_bins", "classification_report",
           "attack_energy_shift", "classifier_sample_quality", "expected_calibration_error",
           "fit_reference_classifier",
           "extract_features", "fid", "fit_temperature", "frechet_distance",
           "frechet_distance_from_statistics", "gaussian_statistics", "grad_norm_score",
           "kernel_mmd", "kid", "grid_points", "kl_by_quadrature", "log_px_score",
           "max_softmax_score", "mmd", "negative_log_likelihood", "ood_report", "pgd_attack",
           "robust_accuracy_curve", "roc_curve", "sgld_purification"]
