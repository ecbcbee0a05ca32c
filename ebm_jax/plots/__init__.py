"""Plots: sample grids, 2-D scatters and energy landscapes, signals as lines, training curves,
chain diagnostics, inference by energy minimisation, a policy's paths, real and synthetic table
rows, concept interventions and conditionals."""
from ebm_jax.plots.clustering import save_cluster_panels
from ebm_jax.plots.concepts import save_conditional_table, save_intervention_curves
from ebm_jax.plots.curves import read_metrics, save_curves
from ebm_jax.plots.diagnostics import save_energy_histogram, save_energy_trace
from ebm_jax.plots.evaluation import (
    save_ood_histograms,
    save_reliability_diagram,
    save_robustness_curve,
    save_roc_curves,
)
from ebm_jax.plots.grids import (save_image_grids, save_level_grid, save_scatter,
                                 tile_images)
from ebm_jax.plots.inference import save_energy_paths, save_thinking_curve
from ebm_jax.plots.landscape import (density_on_grid, save_density_panels,
                                     save_energy_landscape)
from ebm_jax.plots.sequences import save_sequence_panels
from ebm_jax.plots.tabular import save_pair_plot
from ebm_jax.plots.trajectories import save_trajectories

__all__ = ["density_on_grid", "read_metrics", "save_cluster_panels", "save_conditional_table",
           "save_curves", "save_density_panels", "save_energy_histogram", "save_energy_landscape",
           "save_energy_paths", "save_energy_trace", "save_image_grids",
           "save_intervention_curves", "save_level_grid", "save_ood_histograms", "save_pair_plot",
           "save_reliability_diagram", "save_robustness_curve", "save_roc_curves", "save_scatter",
           "save_sequence_panels", "save_thinking_curve", "save_trajectories", "tile_images"]
