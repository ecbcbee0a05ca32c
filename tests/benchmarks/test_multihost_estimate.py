"""benchmarks/multihost_estimate.py: the on-paper scaling estimate counts the toolkit's own
WRN-28-10 (parameters and FLOPs of a forward pass) and its table's criterion holds."""
import os
import sys

import jax
import jax.numpy as jnp
from flax import nnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import multihost_estimate as estimate  # noqa: E402
from device_peaks import jaxpr_flops  # noqa: E402

from ebm_jax.nets import WideResNet  # noqa: E402


def test_the_estimate_counts_the_toolkits_wrn_28_10():
    net = nnx.eval_shape(lambda: WideResNet((32, 32, 3), 10, depth=28, widen_factor=10,
                                            rngs=nnx.Rngs(0)))
    graph, params = nnx.split(net, nnx.Param)
    assert sum(leaf.size for leaf in jax.tree.leaves(params)) == estimate.P

    def forward(p, x):
        return nnx.merge(graph, p)(x)

    assert jaxpr_flops(forward, params, jnp.zeros((1, 32, 32, 3))).flops == estimate.F


def test_the_smallest_batch_keeps_the_all_reduce_under_a_tenth():
    for n in (8, 64, 256):
        for allreduce, device in ((estimate.t_v5e, estimate.V5E),
                                  (estimate.t_gpu_hier, estimate.H100)):
            t_comm = allreduce(n, estimate.GRAD_BYTES["f32"])
            per_example = estimate.t_ex(device)
            b = estimate.b_min(t_comm, per_example)
            assert estimate.share(t_comm, b * per_example) <= 0.1
            assert estimate.share(t_comm, (b - 1) * per_example) > 0.1 or b == 1
