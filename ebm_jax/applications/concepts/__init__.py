"""Concept bottlenecks read as energies (ECBM, Xu et al. 2024) and their baseline.

``concept_energy_model`` builds ECBM's class, concept and global energies on any backbone;
``ebm_jax.losses.ecbm_loss`` trains them; ``infer`` (the paper's gradient inference),
``infer_exact`` (enumeration over every class and concept vector) and ``intervene`` predict;
``concept_marginals`` and ``class_posterior`` read the conditionals; ``bottleneck_model`` is
the joint concept-bottleneck baseline; ``evaluation`` holds the benchmark's protocol.
"""
from ebm_jax.applications.concepts.bottleneck import (BottleneckModel, bottleneck_model,
                                                      bottleneck_predict)
from ebm_jax.applications.concepts.conditionals import (all_concept_vectors, class_posterior,
                                                        concept_marginals)
from ebm_jax.applications.concepts.inference import (INFERENCE_WEIGHTS, PIN_LOGIT,
                                                     REFERENCE_INTERVENTION_WEIGHTS,
                                                     ConceptPrediction, concept_predictor,
                                                     infer, infer_exact, intervene,
                                                     pinned_logits, random_known_mask)
from ebm_jax.applications.concepts.model import (ConceptEnergyModel, concept_energy_model,
                                                 init_head, joint_energy)

__all__ = ["INFERENCE_WEIGHTS", "PIN_LOGIT", "REFERENCE_INTERVENTION_WEIGHTS", "BottleneckModel",
           "ConceptEnergyModel", "ConceptPrediction", "all_concept_vectors", "bottleneck_model",
           "bottleneck_predict", "class_posterior", "concept_energy_model", "concept_marginals",
           "concept_predictor", "infer", "infer_exact", "init_head", "intervene", "joint_energy",
           "pinned_logits", "random_known_mask"]
