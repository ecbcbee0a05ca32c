"""Plots: sample grids, 2-D scatters and energy landscapes, training curves."""
from ebm_jax.plots.curves import read_metrics, save_curves
from ebm_jax.plots.grids import save_image_grids, save_scatter, tile_images
from ebm_jax.plots.landscape import density_on_grid, save_energy_landscape

__all__ = ["density_on_grid", "read_metrics", "save_curves", "save_energy_landscape",
           "save_image_grids", "save_scatter", "tile_images"]
