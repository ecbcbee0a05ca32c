"""Metrics: classification and calibration, OOD detection, sample quality, divergences."""
from ebm_jax.metrics.classification import (
    accuracy,
    calibration_bins,
    classification_report,
    expected_calibration_error,
    negative_log_likelihood,
)
from ebm_jax.metrics.likelihood import grid_points, kl_by_quadrature
from ebm_jax.metrics.mmd import mmd
from ebm_jax.metrics.ood import auroc
from ebm_jax.metrics.samples import classifier_sample_quality, fit_reference_classifier

__all__ = ["accuracy", "auroc", "calibration_bins", "classification_report",
           "classifier_sample_quality", "expected_calibration_error", "fit_reference_classifier",
           "grid_points", "kl_by_quadrature", "mmd", "negative_log_likelihood"]
