"""Flax NNX networks and adapters to pure ``fn(params, x)`` functions."""
from ebm_jax.nets.adapters import PureModel, as_energy_fn, pure
from ebm_jax.nets.batch_norm import (BatchNorm, BatchNormModel, pure_batch_norm,
                                     statistics_mask, statistics_matching,
                                     with_running_statistics)
from ebm_jax.nets.conditioned import ConditionedMLP, as_conditioned_energy_fn
from ebm_jax.nets.conv import ConvNet
from ebm_jax.nets.flows import (FlowFunctions, NeuralSplineFlow, RealNVP, as_noise,
                                flow_functions)
from ebm_jax.nets.layers import ACTIVATIONS, SNConv, SNLinear, spectral_normalize
from ebm_jax.nets.mlp import MLP
from ebm_jax.nets.resnet import ConditionedResNet, IGEBMResNet, WideResNet

__all__ = ["ACTIVATIONS", "BatchNorm", "BatchNormModel", "ConditionedMLP", "ConditionedResNet",
           "ConvNet", "FlowFunctions", "IGEBMResNet", "WideResNet", "MLP", "NeuralSplineFlow",
           "PureModel", "RealNVP", "SNConv", "SNLinear", "as_conditioned_energy_fn",
           "as_energy_fn", "as_noise", "flow_functions", "pure", "pure_batch_norm",
           "spectral_normalize", "statistics_mask", "statistics_matching",
           "with_running_statistics"]
