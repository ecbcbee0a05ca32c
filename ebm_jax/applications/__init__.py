"""Applications of EBMs: inpainting, denoising, class-conditional sampling, concept bottlenecks
read as energies (``ebm_jax.applications.concepts``), and tabular
augmentation with one energy per class (``from ebm_jax.applications.tabular import TabEBM``;
imported on demand, as it brings scikit-learn's estimator machinery and SciPy)."""
from ebm_jax.applications import concepts
from ebm_jax.applications.conditional import (AscentSweep, generate_by_ascent, sample_composed,
                                              sample_conditional)
from ebm_jax.applications.inpainting import (
    ReconstructionError,
    box_mask,
    denoise,
    half_image_mask,
    inpaint,
    masked_energy,
    progressive_inpaint,
    random_pixel_mask,
    reconstruction_error,
)

__all__ = ["AscentSweep", "concepts", "ReconstructionError", "box_mask", "denoise",
           "generate_by_ascent", "half_image_mask", "inpaint", "masked_energy",
           "progressive_inpaint", "random_pixel_mask", "reconstruction_error", "sample_composed",
           "sample_conditional"]
