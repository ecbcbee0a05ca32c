"""Datasets that work offline and deterministic, resumable batching."""
from ebm_jax.data.batching import Batches, batch_indices, epoch_permutation
from ebm_jax.data.digits import ArrayDataset, load_digits
from ebm_jax.data.toy2d import TOY_DENSITIES, Toy2D, get_toy

__all__ = ["ArrayDataset", "Batches", "batch_indices", "epoch_permutation", "load_digits"]
__all__ += ["TOY_DENSITIES", "Toy2D", "get_toy"]
