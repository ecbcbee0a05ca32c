"""Applications of trained EBMs: inpainting, denoising and class-conditional sampling."""
from ebm_jax.applications.conditional import sample_composed, sample_conditional
from ebm_jax.applications.inpainting import (
    ReconstructionError,
    box_mask,
    denoise,
    half_image_mask,
    inpaint,
    masked_energy,
    random_pixel_mask,
    reconstruction_error,
)

__all__ = ["ReconstructionError", "box_mask", "denoise", "half_image_mask", "inpaint",
           "masked_energy", "random_pixel_mask", "reconstruction_error", "sample_composed",
           "sample_conditional"]
