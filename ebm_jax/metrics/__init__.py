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
from ebm_jax.metrics.clustering import (cluster_accuracy, kmeans_clusters,
                                        largest_cluster_share, nmi)
from ebm_jax.metrics.digit_classifier import digit_features, digit_logits
from ebm_jax.metrics.digit_yardstick import digit_diversity, score_digits
from ebm_jax.metrics.likelihood import grid_points, kl_by_quadrature, log_z_by_quadrature
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
    ClassDiversity,
    DensityCoverage,
    KIDResult,
    PrecisionRecall,
    class_diversity,
    density_coverage,
    extract_features,
    fid,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
    kernel_mmd,
    kid,
    kth_neighbour_distances,
    mean_pairwise_distance,
    precision_recall,
)
from ebm_jax.metrics.samples import classifier_sample_quality, fit_reference_classifier

__all__ = ["accuracy", "ais_betas", "ais_log_z", "AISResult", "attack_energy_shift", "aupr",
           "auroc", "calibration_bins", "class_diversity", "ClassDiversity",
           "classification_report", "classifier_sample_quality", "cluster_accuracy",
           "density_coverage", "DensityCoverage", "digit_diversity", "digit_features",
           "digit_logits", "expected_calibration_error", "extract_features", "fid",
           "fit_reference_classifier", "fit_temperature", "frechet_distance",
           "frechet_distance_from_statistics", "gaussian_statistics", "grad_norm_score",
           "grid_points", "kernel_mmd", "kid", "KIDResult", "kl_by_quadrature", "kmeans_clusters",
           "kth_neighbour_distances", "largest_cluster_share", "log_px_score",
           "log_z_by_quadrature", "max_softmax_score", "mean_pairwise_distance", "mmd",
           "negative_log_likelihood", "nmi", "ood_report", "pgd_attack", "precision_recall",
           "PrecisionRecall", "robust_accuracy_curve", "roc_curve", "score_digits",
           "sgld_purification"]
