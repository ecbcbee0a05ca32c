"""Datasets that work offline (the digits also with seven-segment concepts), tfds datasets,
OOD sets, and deterministic, resumable batching."""
from ebm_jax.data.batching import Batches, batch_indices, epoch_permutation
from ebm_jax.data.cluster_toys import CLUSTER_TOYS, load_cluster_toy
from ebm_jax.data.concepts import (SEGMENT_NAMES, SEVEN_SEGMENT_CODES, ConceptDataset,
                                   concept_dataset, concept_frequencies, flip_concepts,
                                   load_seven_segment_digits)
from ebm_jax.data.digits import ArrayDataset, load_digits
from ebm_jax.data.files import (
    DataFileError,
    DataStatistics,
    FileData,
    check_arrays,
    data_statistics,
    is_data_file,
    load_file,
)
from ebm_jax.data.ood import (
    OOD_SET_NAMES,
    VECTOR_OOD_SET_NAMES,
    HeldOutSplit,
    flipped,
    gaussian_noise,
    held_out_class,
    interpolations,
    inverted,
    offline_ood_sets,
    reversed_along,
    uniform_noise,
)
from ebm_jax.data.ood_pool import (POOL_KINDS, blurred_noise, check_pool, mixtures, ood_pool,
                                   shifted)
from ebm_jax.data import augment, procedural
from ebm_jax.data.regression import (REGRESSION_DATASETS, RegressionData, branch_modes, branches,
                                     reach_pairs)
from ebm_jax.data.tfds_source import (
    TFDS_DATASETS,
    DatasetNotPreparedError,
    TFDSBatches,
    TFDSSpec,
    load_arrays,
    load_source,
    tfds_ood_sets,
)
from ebm_jax.data.toy2d import TOY_DENSITIES, Toy2D, get_toy

__all__ = ["ArrayDataset", "Batches", "batch_indices", "epoch_permutation", "load_digits"]
__all__ += ["DataFileError", "DataStatistics", "FileData", "check_arrays", "data_statistics",
            "is_data_file", "load_file"]
__all__ += ["SEGMENT_NAMES", "SEVEN_SEGMENT_CODES", "ConceptDataset", "concept_dataset",
            "concept_frequencies", "flip_concepts", "load_seven_segment_digits"]
__all__ += ["augment", "procedural"]
__all__ += ["CLUSTER_TOYS", "load_cluster_toy"]
__all__ += ["REGRESSION_DATASETS", "RegressionData", "branch_modes", "branches", "reach_pairs"]
__all__ += ["TOY_DENSITIES", "Toy2D", "get_toy"]
__all__ += ["OOD_SET_NAMES", "VECTOR_OOD_SET_NAMES", "HeldOutSplit", "flipped", "gaussian_noise",
            "held_out_class", "interpolations", "inverted", "offline_ood_sets", "reversed_along",
            "uniform_noise"]
__all__ += ["POOL_KINDS", "blurred_noise", "check_pool", "mixtures", "ood_pool", "shifted"]
__all__ += ["TFDS_DATASETS", "DatasetNotPreparedError", "TFDSBatches", "TFDSSpec", "load_arrays",
            "load_source", "tfds_ood_sets"]
