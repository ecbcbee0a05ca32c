"""Plots: sample grids, 2-D scatters, training curves."""
from ebm_jax.plots.curves import read_metrics, save_curves
from ebm_jax.plots.grids import save_image_grids, save_scatter, tile_images

__all__ = ["read_metrics", "save_curves", "save_image_grids", "save_scatter", "tile_images"]
