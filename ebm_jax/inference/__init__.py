"""Inference with a trained energy: find what makes it low. ``predict``: a classifier's labels,
probabilities and energies over any number of examples."""
from ebm_jax.inference.prediction import Prediction, predict

__all__ = ["Prediction", "predict"]
