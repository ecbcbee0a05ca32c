"""SGLD throughput of ebm_jax against the PyTorch way (JEM/IGEBM code), with the levers measured.

    python benchmarks/vs_pytorch.py                   # every architecture, every lever
    python benchmarks/vs_pytorch.py --arch wrn28_10   # accelerator scale (minutes a step on CPU)
    python benchmarks/vs_pytorch.py --quick           # under a minute: mlp2d and jem32, few rows
    python benchmarks/vs_pytorch.py --arch jem32 --variants toolkit toolkit_lax plain_scan

torch is an optional extra (``pip install torch==2.13.0``); without it only the JAX rows run
and the output says so.

Architectures (the same shapes in both frameworks, same SGLD update, same chains and steps):

* ``mlp2d``: the 2-D toys' MLP 2-128-128-128-1 (Swish), 1,024 chains, energy = the output.
* ``conv_digits``: benchmarks/samplers.py's ConvNet on 8x8x1 (channels 32-64-128,
  LeakyReLU 0.2, global mean pool, dense to 1), 128 chains, energy = the output.
* ``jem28`` / ``jem32``: "JEM-style" four 3x3 convs (64, 128, 256, 256 channels, stride 2
  after the first, as ebm_jax's ConvNet), LeakyReLU 0.2, global mean pool, dense to 10
  logits, energy = -logsumexp(logits); 28x28x1 and 32x32x3, 64 chains.
* ``wrn28_10``: JEM's Wide-ResNet-28-10 (``ebm_jax.nets.WideResNet``: a 3x3 stem to 16
  channels, three groups of four pre-activation basic blocks without batch norm, widths
  160-320-640 with stride 1, 2, 2 on each group's first block (on its second conv and its
  1x1 shortcut conv), LeakyReLU 0.2, global mean pool, dense to 10 logits; 36.5M
  parameters), energy = -logsumexp(logits), 32x32x3, 64 chains. It is in the default list
  only when JAX's backend is not the CPU (one SGLD step of 64 chains takes minutes on 2
  cores); ``--arch wrn28_10`` asks for it anywhere. Its compute dtype is ``--dtype``
  (``auto``: bfloat16 on accelerators, float32 on CPU), on both sides: ebm_jax's
  ``WideResNet(dtype=...)`` (float32 params, convolutions and matmuls in the dtype, pooling,
  head output and the chains in float32), and for torch ``torch.autocast(device,
  dtype=torch.bfloat16)`` around the energy, as a JEM user would write it (the backward
  pass outside it, the logits cast to float32 before the logsumexp; ``--dtype bfloat16``
  on a CPU uses torch's CPU autocast). The other architectures are always float32.

Every row runs ``--steps`` (20) SGLD steps ``x <- x - step * dE/dx + noise * randn`` with
JEM's step 1 and noise 0.01 on all chains, from the same start.

PyTorch rows (NCHW, ``torch.set_num_threads`` = every core this process may use; on the
GPU when ``torch.cuda.is_available()``, net and chains moved there, the clock read after
``torch.cuda.synchronize()``; else on the CPU):

* ``torch_eager``: the JEM/IGEBM code structure: a Python loop over steps,
  ``g = torch.autograd.grad(energy(x).sum(), [x])[0]``, ``x = x - step*g + noise*randn_like(x)``.
  Convolutions use ``padding=1`` as in that code (JAX's "SAME" pads stride-2 layers on the
  other side: the same shapes and FLOPs). ebm_jax's WideResNet pads PyTorch-style
  (``kernel_size // 2`` on each side), so ``TorchWideResNet`` is exactly it.
* ``torch_compile``: the same step function under ``torch.compile`` (inductor), called in the
  same loop; its compile time is reported apart; a failure is caught and reported.

JAX rows (every one a single ``jax.jit`` program; compile and one warm-up run excluded
from the timing and reported as ``compile_seconds``):

* ``toolkit``: ebm_jax as shipped: ``ebm_jax.langevin`` + ``init_chains`` + ``run_chains``
  (a vmap of per-chain ``lax.scan``s) on ebm_jax's ``MLP``/``ConvNet`` with its default
  ``conv_impl="auto"`` (on CPU each convolution is patches + one matmul,
  ``ebm_jax.nets.patch_conv``); ``toolkit_lax`` the same with ``lax.conv``.
* ``plain_scan``: the SGLD update written directly, grad of the summed energy and one
  ``lax.scan`` over the whole batch, ``lax.conv`` (benchmarks/samplers.py's baseline).
* levers, one per row (the name says which): ``_u4`` / ``_full`` scan unroll 4 or every
  step; ``_nchw`` the convolutions in NCHW; ``_patches`` each convolution as patches +
  one matmul; ``_patchgrad`` ``lax.conv`` forward with the patches derivative;
  ``_fused`` the update fused into the gradient
  computation (the gradient is the VJP of the summed energy with cotangent ``-step``, and
  the noise of all steps is drawn before the loop, so the loop body has no RNG and the
  update is one elementwise pass XLA can fuse with the last gradient op); ``_donate`` the
  chains' buffer donated to the program; ``batched_scan`` one ``lax.scan`` over the
  toolkit's ``sampler.step`` vmapped over chains (instead of ``run_chains``' vmap of
  per-chain scans); ``vmap_plain`` a vmap of per-chain plain scans (no Info, no
  non-finite guard).
* ``wrn28_10`` runs the rows whose lever means something for WideResNet (which always
  uses ``lax.conv``): not the patches and NCHW levers (they exist for ebm_jax's ``ConvNet``
  only) nor ``toolkit_lax*`` (the same program as ``toolkit`` there); see ``applies``.

Timing: each row is run ``--repeats`` times, interleaved with the other rows of its
architecture (so drifting load hits all rows alike), and the median is reported. Ratios
(``ratio_vs_torch_eager``, ``ratio_vs_torch_compile``, ``ratio_vs_plain_scan``) are
between rows of the same run. This 2-core machine is shared: before timing an
architecture the script waits (up to ``--max-wait`` seconds, not with --quick) for the
1-minute load average to fall below ``--max-load``; each row records ``load1`` at its
architecture's start and end and ``other_cpu`` (the CPU time other processes used during
the timing, as a fraction of all cores).

FLOPs (see benchmarks/device_peaks.py): ``model_flops_per_chain_step`` is
``jaxpr_flops`` of one reference SGLD step (the lax.conv NHWC network: the dot and
convolution FLOPs of the forward pass and the input gradient, border taps excluded),
divided by the chains; ``xla_flops_per_chain_step`` is XLA's cost analysis
(``compiled_flops``) of the same one-step program (it adds the elementwise work). The
fraction of peak of every row, torch's included, is ``chain_steps_per_s *
model_flops_per_chain_step / peak``: the same useful work for every implementation
(patches multiply the border zeros, and each framework does different elementwise work,
so a per-implementation count would reward wasted work). The peak is
``device_peak_flops`` of the device the row ran on (JAX's default device; torch's GPU by
name, or this CPU) for the row's compute dtype: the bfloat16 peak for a bfloat16 row, the
FP32 peak otherwise (each row records ``dtype``, ``peak_dtype`` and ``peak_flops_per_s``).

TF32 (NVIDIA GPUs from Ampere on, float32 rows only; bfloat16 rows do not use it): JAX's
default precision computes float32 convolutions and matmuls on GPU with TF32 tensor cores,
and torch's default does the same for cuDNN convolutions (``cudnn.allow_tf32`` is True)
but not for cuBLAS matmuls. So that both frameworks compute at the same precision, the
torch rows on CUDA set ``torch.backends.cuda.matmul.allow_tf32 = True`` and
``torch.backends.cudnn.allow_tf32 = True`` (JAX's behaviour; only the dense layers change,
the convolutions already used TF32) and record it as ``torch_tf32``. Such a float32 row is
measured against the FP32 (non-tensor-core) peak, which TF32 can exceed. For a strict
IEEE float32 comparison run with ``JAX_DEFAULT_MATMUL_PRECISION=highest`` and set both
torch flags to False. The agreement tests (tests/benchmarks/test_vs_pytorch.py) run on the
CPU, where neither applies.

One JSON object per row, appended to benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import sys
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device_peaks import compiled_flops, device_peak_flops, jaxpr_flops  # noqa: E402
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax.energies import energy_from_logits  # noqa: E402
from ebm_jax.nets import MLP, ConvNet, WideResNet, as_energy_fn, pure  # noqa: E402
from ebm_jax.samplers import init_chains, langevin, run_chains  # noqa: E402

STEP_SIZE = 1.0  # JEM's SGLD step and noise
NOISE = 0.01
LEAKY_SLOPE = 0.2


class Arch(NamedTuple):
    kind: str  # "mlp", "conv" (ebm_jax's ConvNet) or "wrn" (ebm_jax's WideResNet)
    shape: tuple  # one chain's position: (features,) or (H, W, C)
    chains: int
    channels: tuple = ()  # conv channels; for "mlp" the hidden widths; unused by "wrn"
    out: int = 1  # 1: energy = output; K: energy = -logsumexp of K logits
    depth: int = 28  # "wrn" only: 6n + 4
    widen_factor: int = 10  # "wrn" only
    dtype: str = "float32"  # compute dtype: float32, bfloat16, or auto (see compute_dtype)
    accelerator_only: bool = False  # left out of the default list on CPU


ARCHS = {
    "mlp2d": Arch("mlp", (2,), 1024, (128, 128, 128), 1),
    "conv_digits": Arch("conv", (8, 8, 1), 128, (32, 64, 128), 1),
    "jem28": Arch("conv", (28, 28, 1), 64, (64, 128, 256, 256), 10),
    "jem32": Arch("conv", (32, 32, 3), 64, (64, 128, 256, 256), 10),
    "wrn28_10": Arch("wrn", (32, 32, 3), 64, (), 10, depth=28, widen_factor=10, dtype="auto",
                     accelerator_only=True),
}
DTYPES = ("auto", "float32", "bfloat16")


def on_accelerator() -> bool:
    return jax.default_backend() != "cpu"


def compute_dtype(dtype: str) -> str:
    """``auto`` -> bfloat16 on accelerators, float32 on CPU; else ``dtype`` itself."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {DTYPES}")
    if dtype == "auto":
        return "bfloat16" if on_accelerator() else "float32"
    return dtype


def arch_dtype(arch: Arch) -> str:
    """The architecture's concrete compute dtype ("float32" or "bfloat16")."""
    return compute_dtype(arch.dtype)


def with_dtype(arch: Arch, dtype: str) -> Arch:
    """``--dtype`` applies to the Wide-ResNet only; the other architectures stay float32."""
    return arch._replace(dtype=compute_dtype(dtype)) if arch.kind == "wrn" else arch


def default_archs() -> list:
    """Every architecture, less the accelerator-scale ones when JAX runs on the CPU."""
    return [name for name, a in ARCHS.items() if on_accelerator() or not a.accelerator_only]

class Variant(NamedTuple):
    impl: str  # toolkit | plain_scan | batched_scan | vmap_plain
    unroll: str = "1"  # "1", "4" or "full"
    conv: str = "lax"  # ConvNet's conv_impl: auto | lax | patches | patch_grad
    layout: str = "NHWC"
    fused: bool = False
    donate: bool = False


VARIANTS = {
    # The toolkit as shipped: ConvNet's conv_impl="auto" (patches + matmul on CPU).
    "toolkit": Variant("toolkit", conv="auto"),
    "toolkit_u4": Variant("toolkit", "4", conv="auto"),
    "toolkit_full": Variant("toolkit", "full", conv="auto"),
    "toolkit_lax": Variant("toolkit"),
    "toolkit_lax_u4": Variant("toolkit", "4"),
    "toolkit_patchgrad": Variant("toolkit", conv="patch_grad"),
    "batched_scan": Variant("batched_scan", conv="auto"),
    "vmap_plain": Variant("vmap_plain", conv="auto"),
    # Plain JAX: the update written by hand, one lax.scan, lax.conv (the issue's baseline).
    "plain_scan": Variant("plain_scan"),
    "plain_scan_u4": Variant("plain_scan", "4"),
    "plain_scan_full": Variant("plain_scan", "full"),
    "plain_scan_nchw": Variant("plain_scan", layout="NCHW"),
    "plain_scan_fused": Variant("plain_scan", fused=True),
    "plain_scan_donate": Variant("plain_scan", donate=True),
    "plain_scan_patches": Variant("plain_scan", conv="patches"),
    "plain_scan_patches_u4": Variant("plain_scan", "4", conv="patches"),
    "plain_scan_patches_full": Variant("plain_scan", "full", conv="patches"),
    "plain_scan_patches_fused": Variant("plain_scan", conv="patches", fused=True),
    "plain_scan_patchgrad": Variant("plain_scan", conv="patch_grad"),
}
CONV_ONLY = ("patch", "nchw", "lax")
# WideResNet always uses lax.conv in NHWC: no patches or NCHW lever, and toolkit_lax* would
# repeat toolkit's program.
NOT_FOR_WRN = ("patch", "nchw", "_lax")
# Every lever, less the rows that only repeat one (and NCHW: XLA's CPU NCHW convolution ran
# at 0.15x of NHWC on the digits conv, minutes for the big convs; ask for it with --variants).
DEFAULT_VARIANTS = ["toolkit", "toolkit_u4", "toolkit_full", "toolkit_lax", "toolkit_lax_u4",
                    "toolkit_patchgrad", "batched_scan", "vmap_plain", "plain_scan",
                    "plain_scan_u4", "plain_scan_full", "plain_scan_fused", "plain_scan_donate",
                    "plain_scan_patches", "plain_scan_patches_fused", "plain_scan_patches_full"]
QUICK_VARIANTS = ["toolkit", "toolkit_lax", "plain_scan", "plain_scan_patches_fused"]
TORCH_ROWS = ("torch_eager", "torch_compile")


def num_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def applies(name: str, arch: Arch) -> bool:
    """Conv-only levers (patches, NCHW) have no meaning for the MLP; they exist for ebm_jax's
    ``ConvNet`` only, so the Wide-ResNet skips them (and ``toolkit_lax*``, the same as
    ``toolkit`` there)."""
    if arch.kind == "conv":
        return True
    words = NOT_FOR_WRN if arch.kind == "wrn" else CONV_ONLY
    return not any(word in name for word in words)


def is_image(arch: Arch) -> bool:
    return arch.kind in ("conv", "wrn")


# --------------------------------------------------------------------------- JAX side


def jax_network(arch: Arch, conv: str = "lax"):
    """``(per-example energy_fn(params, x), params)``: ebm_jax's nets, seed 0.

    ``conv`` is ConvNet's ``conv_impl`` ("lax", "patches", "patch_grad", "auto"); the
    params are the same whichever it is. WideResNet ignores it (always ``lax.conv``) and
    computes in ``arch_dtype(arch)`` (its params are float32 either way).
    """
    if arch.kind == "mlp":
        model = as_energy_fn(MLP(arch.shape[0], arch.channels, 1, activation="swish",
                                 rngs=nnx.Rngs(0)))
        return model.apply, model.params
    if arch.kind == "wrn":
        dtype = jnp.bfloat16 if arch_dtype(arch) == "bfloat16" else jnp.float32
        net = WideResNet(arch.shape, arch.out, depth=arch.depth,
                         widen_factor=arch.widen_factor, activation="leaky_relu", dtype=dtype,
                         rngs=nnx.Rngs(0))
    else:
        net = ConvNet(arch.shape, arch.channels, arch.out, activation="leaky_relu",
                      conv_impl=conv, rngs=nnx.Rngs(0))
    if arch.out == 1:
        model = as_energy_fn(net)
        return model.apply, model.params
    model = pure(net)
    return energy_from_logits(model.apply), model.params


def nchw_energy(arch: Arch) -> Callable:
    """The conv energy on one NCHW example ``[C, H, W]``, reading ConvNet's params."""

    def energy_fn(params, x):
        h = x[None]
        for i in range(len(arch.channels)):
            layer = params["convs"][i]["conv"]
            stride = 1 if i == 0 else 2
            h = jax.lax.conv_general_dilated(h, layer["kernel"], (stride, stride), "SAME",
                                             dimension_numbers=("NCHW", "HWIO", "NCHW"))
            h = jax.nn.leaky_relu(h + layer["bias"][:, None, None], LEAKY_SLOPE)
        head = params["head"]["linear"]
        out = jnp.mean(h, axis=(2, 3)) @ head["kernel"] + head["bias"]
        return out[0, 0] if arch.out == 1 else -jax.nn.logsumexp(out[0])

    return energy_fn


def start_positions(arch: Arch, layout: str = "NHWC") -> jax.Array:
    """The chains' start ``[C, *shape]`` (NCHW images transposed from the NHWC draw)."""
    x = jax.random.uniform(jax.random.PRNGKey(1), (arch.chains, *arch.shape), minval=-1.0,
                           maxval=1.0)
    if layout == "NCHW" and is_image(arch):
        x = jnp.transpose(x, (0, 3, 1, 2))
    return x


def summed_grad(energy_fn):
    """d/dx of the summed per-example energies of a batch."""
    return jax.grad(lambda p, x: jnp.sum(jax.vmap(energy_fn, (None, 0))(p, x)), argnums=1)


def plain_scan_sgld(energy_fn, num_steps: int, unroll: int, fused: bool = False):
    """SGLD written directly: one ``lax.scan`` over the batch (``fused``: see the docstring)."""
    if not fused:
        grad_fn = summed_grad(energy_fn)

        def run(key, x, params):
            def body(x, k):
                noise = jax.random.normal(k, x.shape, x.dtype)
                return x - STEP_SIZE * grad_fn(params, x) + NOISE * noise, None

            return jax.lax.scan(body, x, jax.random.split(key, num_steps), unroll=unroll)[0]

        return run

    def total(params, x):
        return jnp.sum(jax.vmap(energy_fn, (None, 0))(params, x))

    def run(key, x, params):
        noise = NOISE * jax.random.normal(key, (num_steps, *x.shape), x.dtype)

        def body(x, eps):
            _, vjp = jax.vjp(lambda y: total(params, y), x)
            (step,) = vjp(jnp.asarray(-STEP_SIZE, x.dtype))  # = -step * dE/dx
            return x + step + eps, None

        return jax.lax.scan(body, x, noise, unroll=unroll)[0]

    return run


def toolkit_sgld(energy_fn, num_steps: int, unroll: int):
    """ebm_jax's SGLD: ``langevin`` + ``init_chains`` + ``run_chains``."""
    sampler = langevin(energy_fn, STEP_SIZE, NOISE)

    def run(key, x, params):
        states = init_chains(sampler, x, params)
        states, _ = run_chains(key, sampler, states, params, num_steps, unroll=unroll)
        return states.position

    return run


def batched_scan_sgld(energy_fn, num_steps: int, unroll: int):
    """The toolkit's ``sampler.step`` vmapped over chains, inside one ``lax.scan``."""
    sampler = langevin(energy_fn, STEP_SIZE, NOISE)
    step = jax.vmap(sampler.step, in_axes=(0, 0, None))

    def run(key, x, params):
        states = init_chains(sampler, x, params)
        chains = x.shape[0]

        def body(states, k):
            return step(jax.random.split(k, chains), states, params)[0], None

        keys = jax.random.split(key, num_steps)
        return jax.lax.scan(body, states, keys, unroll=unroll)[0].position

    return run


def vmap_plain_sgld(energy_fn, num_steps: int, unroll: int):
    """A vmap over chains of per-chain plain scans (run_chains' structure, no Info/guard)."""
    grad_fn = jax.grad(energy_fn, argnums=1)

    def one(key, x, params):
        def body(x, k):
            noise = jax.random.normal(k, x.shape, x.dtype)
            return x - STEP_SIZE * grad_fn(params, x) + NOISE * noise, None

        return jax.lax.scan(body, x, jax.random.split(key, num_steps), unroll=unroll)[0]

    def run(key, x, params):
        return jax.vmap(one, (0, 0, None))(jax.random.split(key, x.shape[0]), x, params)

    return run


def jax_program(arch: Arch, variant: Variant, num_steps: int):
    """``(run(key, x, params), x0, params)`` of one JAX row."""
    if variant.layout == "NCHW":
        if arch.kind != "conv":
            raise ValueError("the NCHW rows are for ebm_jax's ConvNet only")
        _, params = jax_network(arch)
        energy_fn = nchw_energy(arch)
    else:
        energy_fn, params = jax_network(arch, variant.conv)
    unroll = num_steps if variant.unroll == "full" else int(variant.unroll)
    if variant.impl == "toolkit":
        run = toolkit_sgld(energy_fn, num_steps, unroll)
    elif variant.impl == "batched_scan":
        run = batched_scan_sgld(energy_fn, num_steps, unroll)
    elif variant.impl == "vmap_plain":
        run = vmap_plain_sgld(energy_fn, num_steps, unroll)
    else:
        run = plain_scan_sgld(energy_fn, num_steps, unroll, variant.fused)
    return run, start_positions(arch, variant.layout), params


def step_flops(arch: Arch) -> tuple[float, float]:
    """(model FLOPs, XLA FLOPs) of one SGLD step of the whole batch (lax.conv, NHWC)."""
    energy_fn, params = jax_network(arch)
    x = start_positions(arch)
    one_step = plain_scan_sgld(energy_fn, 1, 1)
    key = jax.random.PRNGKey(0)
    model = jaxpr_flops(one_step, key, x, params).flops
    xla = compiled_flops(jax.jit(one_step).lower(key, x, params).compile())
    return model, xla


class Timed:
    """A row being measured: ``prepare()`` once (compile + warm-up), then ``timed()`` per repeat.

    A repeat runs the whole sampler ``calls`` times back to back (set by ``calibrate`` so
    that one repeat lasts ``min_seconds`` at least: a 20-step MLP run takes ~20 ms, too
    short to time alone on a shared machine) and returns the seconds per call.
    """

    error: Optional[str] = None
    compile_seconds: Optional[float] = None
    calls: int = 1

    def prepare(self) -> None:
        raise NotImplementedError

    def once(self, repeat: int) -> float:
        raise NotImplementedError

    def calibrate(self, min_seconds: float) -> None:
        seconds = self.once(0)
        self.calls = max(1, int(round(min_seconds / max(seconds, 1e-6))))

    def timed(self, repeat: int) -> float:
        return sum(self.once(repeat * self.calls + i + 1) for i in range(self.calls)) / self.calls


class JaxTimed(Timed):
    def __init__(self, arch: Arch, variant: Variant, num_steps: int):
        self.run, self.x, self.params = jax_program(arch, variant, num_steps)
        self.donate = variant.donate

    def prepare(self) -> None:
        key = jax.random.PRNGKey(0)
        started = time.perf_counter()
        jitted = jax.jit(self.run, donate_argnums=(1,) if self.donate else ())
        self.compiled = jitted.lower(key, self.x, self.params).compile()
        self.compile_seconds = time.perf_counter() - started
        jax.block_until_ready(self.compiled(key, self._fresh(), self.params))  # warm-up

    def _fresh(self) -> jax.Array:
        # A donated buffer is consumed by the call: give it a copy (made outside the timing).
        return jnp.copy(self.x).block_until_ready() if self.donate else self.x

    def once(self, repeat: int) -> float:
        x = self._fresh()
        key = jax.random.PRNGKey(repeat + 1)
        started = time.perf_counter()
        jax.block_until_ready(self.compiled(key, x, self.params))
        return time.perf_counter() - started


# --------------------------------------------------------------------------- PyTorch side


def torch_available() -> Optional[str]:
    """torch's version, or None when it is not installed (it is an optional extra)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _jax_same_pads(size: int, stride: int, kernel: int = 3) -> tuple[int, int]:
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def torch_network(arch: Arch, jax_same_padding: bool = False):
    """The architecture in torch (NCHW). ``jax_same_padding`` pads like JAX's "SAME" (for
    exact comparisons with the JAX nets); by default convs use ``padding=1`` as JEM does.

    The Wide-ResNet (:class:`TorchWideResNet` below) ignores ``jax_same_padding``: ebm_jax's
    WideResNet pads PyTorch-style (``kernel_size // 2`` on each side, stride-2 layers
    included), so ``padding=1`` (3x3) and 0 (1x1) are already exact.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    if arch.kind == "wrn":
        return _torch_wide_resnet(arch)
    if arch.kind == "mlp":
        widths = [arch.shape[0], *arch.channels, arch.out]
        layers = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(widths) - 2:
                layers.append(nn.SiLU())
        return nn.Sequential(*layers)

    class TorchConvNet(nn.Module):
        def __init__(self):
            super().__init__()
            ins = [arch.shape[-1], *arch.channels[:-1]]
            self.strides = [1 if i == 0 else 2 for i in range(len(arch.channels))]
            self.convs = nn.ModuleList([
                nn.Conv2d(a, b, 3, stride=s, padding=0 if jax_same_padding else 1)
                for a, b, s in zip(ins, arch.channels, self.strides)])
            self.head = nn.Linear(arch.channels[-1], arch.out)

        def forward(self, x):
            for conv, stride in zip(self.convs, self.strides):
                if jax_same_padding:
                    (hlo, hhi), (wlo, whi) = (_jax_same_pads(x.shape[2], stride),
                                              _jax_same_pads(x.shape[3], stride))
                    x = F.pad(x, (wlo, whi, hlo, hhi))
                x = F.leaky_relu(conv(x), LEAKY_SLOPE)
            return self.head(x.mean(dim=(2, 3)))

    del torch
    return TorchConvNet()


def _torch_wide_resnet(arch: Arch):
    """``TorchWideResNet``: ebm_jax's WideResNet in torch, layer for layer (JEM's
    ``wide_basic`` blocks without batch norm or dropout)::

        h = stem(x)                                    # 3x3 conv to 16, padding 1
        for block in blocks:                           # (depth - 4) / 6 per group
            h = conv2(act(conv1(act(h)))) + shortcut(h)  # conv2 and shortcut carry the stride
        logits = head(mean_hw(act(h)))                 # act = leaky_relu(0.2)

    The shortcut is a 1x1 conv (padding 0) when the stride or width changes, else the
    identity. Pooling is in float32 as in ebm_jax (under autocast the head still runs in
    bfloat16).
    """
    import torch.nn.functional as F
    from torch import nn

    def act(h):
        return F.leaky_relu(h, LEAKY_SLOPE)

    class TorchWideBlock(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride=stride, padding=1)
            self.shortcut = (nn.Conv2d(cin, cout, 1, stride=stride)
                             if stride != 1 or cin != cout else None)

        def forward(self, x):
            h = self.conv2(act(self.conv1(act(x))))
            return h + (x if self.shortcut is None else self.shortcut(x))

    class TorchWideResNet(nn.Module):
        def __init__(self):
            super().__init__()
            n, k = (arch.depth - 4) // 6, arch.widen_factor
            self.stem = nn.Conv2d(arch.shape[-1], 16, 3, padding=1)
            blocks, cin = [], 16
            for width, stride in ((16 * k, 1), (32 * k, 2), (64 * k, 2)):
                for i in range(n):
                    blocks.append(TorchWideBlock(cin, width, stride if i == 0 else 1))
                    cin = width
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Linear(cin, arch.out)

        def forward(self, x):
            h = self.stem(x)
            for block in self.blocks:
                h = block(h)
            return self.head(act(h).float().mean(dim=(2, 3)))

    if arch.depth < 10 or (arch.depth - 4) % 6:
        raise ValueError(f"depth={arch.depth}: expected 6n + 4 with n >= 1")
    return TorchWideResNet()


def torch_autocast(arch: Arch, device_type: str):
    """``torch.autocast(device_type, dtype=torch.bfloat16)`` for a bfloat16 arch, else a no-op."""
    import torch

    if arch_dtype(arch) == "bfloat16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torch_energy(arch: Arch, net, x):
    """Per-example energies ``[B]`` of a batch (float32, the logits cast before logsumexp)."""
    import torch

    out = net(x).float()
    return out[:, 0] if arch.out == 1 else -torch.logsumexp(out, dim=1)


def load_jax_params(arch: Arch, net, params) -> None:
    """Copy ebm_jax params (HWIO kernels, [in, out] dense) into the torch net (OIHW, [out, in])."""
    import numpy as np
    import torch

    def put(param, value):
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))

    def conv(module, layer):  # HWIO -> OIHW
        put(module.weight, np.transpose(np.asarray(layer["kernel"]), (3, 2, 0, 1)))
        put(module.bias, layer["bias"])

    if arch.kind == "mlp":
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for i, lin in enumerate(linears):
            layer = params["layers"][i]["linear"]
            put(lin.weight, np.asarray(layer["kernel"]).T)
            put(lin.bias, layer["bias"])
        return
    if arch.kind == "wrn":
        conv(net.stem, params["stem"])
        if len(net.blocks) != len(params["blocks"]):
            raise ValueError(f"{len(net.blocks)} torch blocks, {len(params['blocks'])} in params")
        for i, block in enumerate(net.blocks):
            layer = params["blocks"][i]
            conv(block.conv1, layer["conv1"])
            conv(block.conv2, layer["conv2"])
            if (block.shortcut is None) != ("shortcut" not in layer):
                raise ValueError(f"block {i}: the shortcut convs do not match")
            if block.shortcut is not None:
                conv(block.shortcut, layer["shortcut"])
        put(net.head.weight, np.asarray(params["head"]["kernel"]).T)  # [in, out] -> [out, in]
        put(net.head.bias, params["head"]["bias"])
        return
    for i, module in enumerate(net.convs):
        conv(module, params["convs"][i]["conv"])
    put(net.head.weight, np.asarray(params["head"]["linear"]["kernel"]).T)
    put(net.head.bias, params["head"]["linear"]["bias"])


def torch_sgld_update(arch: Arch, net, x, noise):
    """One SGLD step the JEM way, with the noise given: ``x - step * dE/dx + noise_scale * noise``.

    A bfloat16 arch runs the energy under ``torch.autocast`` (the backward outside it, as
    torch recommends); the chains and their gradient stay float32.
    """
    import torch

    x = x.detach().requires_grad_(True)
    with torch_autocast(arch, x.device.type):
        energy = torch_energy(arch, net, x).sum()
    grad = torch.autograd.grad(energy, [x])[0]
    return (x - STEP_SIZE * grad + NOISE * noise).detach()


def torch_sgld_step(arch: Arch, net):
    """The step the benchmark loops over (fresh ``randn_like`` noise, as JEM)."""
    import torch

    def step(x):
        return torch_sgld_update(arch, net, x, torch.randn_like(x))

    return step


def torch_start_positions(arch: Arch, device: str = "cpu"):
    """The same start as the JAX rows, NCHW for images, on ``device``."""
    import numpy as np
    import torch

    return torch.from_numpy(np.array(start_positions(arch, "NCHW"))).to(device)


def torch_device() -> str:
    """"cuda" when torch sees a GPU, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device_kind(device: str) -> str:
    """The name ``device_peak_flops`` reads: the GPU's name, or "cpu"."""
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else "cpu"


def set_torch_tf32(enabled: bool = True) -> None:
    """TF32 for torch's float32 matmuls and cuDNN convolutions (JAX's default precision on
    NVIDIA GPUs; see the module docstring). Process-wide; no effect on the CPU."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


class TorchTimed(Timed):
    def __init__(self, arch: Arch, num_steps: int, compiled: bool):
        import torch

        torch.set_num_threads(num_cpus())
        torch.manual_seed(0)
        self.torch = torch
        self.device = torch_device()
        self.tf32 = None
        if self.device == "cuda":
            set_torch_tf32(True)
            self.tf32 = True
        self.net = torch_network(arch)
        _, params = jax_network(arch)
        load_jax_params(arch, self.net, params)  # same weights as the JAX rows
        self.net.to(self.device)
        self.net.eval()  # JEM samples with the model's parameters requiring grad, as here
        self.x = torch_start_positions(arch, self.device)
        self.num_steps = num_steps
        self.step = torch_sgld_step(arch, self.net)
        self.compiled = compiled

    def _sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def _loop(self, step, num_steps):
        x = self.x
        for _ in range(num_steps):
            x = step(x)
        return x

    def prepare(self) -> None:
        if self.compiled:
            try:
                started = time.perf_counter()
                step = self.torch.compile(self.step)
                step(self.x)  # compiles
                self._sync()
                self.compile_seconds = time.perf_counter() - started
                self.step = step
            except Exception as exc:  # torch.compile is best effort: report, go on
                self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
                return
        else:
            self.compile_seconds = 0.0
        self._loop(self.step, 2)  # warm-up (oneDNN/cuDNN algorithm caches, allocator)
        self._sync()

    def once(self, repeat: int) -> float:
        self.torch.manual_seed(repeat + 1)
        self._sync()
        started = time.perf_counter()
        self._loop(self.step, self.num_steps)
        self._sync()
        return time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, max_wait: float) -> float:
    """Sleep until the 1-minute load average is below ``max_load`` (at most ``max_wait`` s)."""
    started = time.perf_counter()
    while load1() >= max_load and time.perf_counter() - started < max_wait:
        time.sleep(10)
    return time.perf_counter() - started


def _busy_jiffies() -> Optional[int]:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait


def _own_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_PEAKS: dict = {}


def peak_for(device, dtype: str) -> tuple[Optional[float], str]:
    """``device_peak_flops(device, dtype)`` (a JAX device, a GPU name or "cpu"), cached."""
    key = (device if isinstance(device, str) else getattr(device, "device_kind", str(device)),
           getattr(device, "platform", None), dtype)
    if key not in _PEAKS:
        _PEAKS[key] = device_peak_flops(device, dtype)
    return _PEAKS[key]


def measure_arch(name: str, num_steps: int, variants: list, repeats: int, *, torch_rows: list,
                 max_load: float, max_wait: float, dtype: str = "auto",
                 min_seconds: float = 0.5) -> list:
    arch = with_dtype(ARCHS[name], dtype)
    dtype = arch_dtype(arch)
    model_flops, xla_flops = step_flops(arch)
    timed: dict[str, Timed] = {}
    for row in torch_rows:
        timed[row] = TorchTimed(arch, num_steps, compiled=row == "torch_compile")
    for v in variants:
        if applies(v, arch):
            timed[v] = JaxTimed(arch, VARIANTS[v], num_steps)
    for row, t in timed.items():
        print(f"  {name}: preparing {row}", file=sys.stderr, flush=True)
        t.prepare()
        if t.error is None:
            t.calibrate(min_seconds)
    waited = wait_for_quiet(max_load, max_wait) if max_wait > 0 else 0.0
    load_start = load1()
    jiffies, own, wall = _busy_jiffies(), _own_seconds(), time.perf_counter()
    times: dict[str, list] = {row: [] for row, t in timed.items() if t.error is None}
    for r in range(repeats):
        for row in times:
            times[row].append(timed[row].timed(r))
    wall = time.perf_counter() - wall
    other_cpu = None
    if jiffies is not None:
        busy = (_busy_jiffies() - jiffies) / os.sysconf("SC_CLK_TCK")
        other_cpu = max(0.0, busy - (_own_seconds() - own)) / (wall * (os.cpu_count() or 1))
    load_end = load1()
    rates = {row: arch.chains * num_steps / statistics.median(ts) for row, ts in times.items()}
    rows = []
    for row, t in timed.items():
        v = VARIANTS.get(row)
        rate = rates.get(row)
        if isinstance(t, TorchTimed):
            run_on = t.device
            peak, peak_description = peak_for(torch_device_kind(t.device), dtype)
        else:
            run_on = jax.devices()[0].platform
            peak, peak_description = peak_for(jax.devices()[0], dtype)
        conv = None
        if arch.kind == "conv":
            conv = "torch" if v is None else v.conv
        elif arch.kind == "wrn":  # WideResNet: lax.conv whatever the variant says
            conv = "torch" if v is None else "lax"
        out = {
            "benchmark": "vs_pytorch", "arch": name, "row": row,
            "framework": "torch" if row in TORCH_ROWS else "jax",
            "run_on": run_on, "dtype": dtype,
            "impl": row if v is None else v.impl,
            "unroll": None if v is None else v.unroll,
            "conv": conv,
            "layout": ("NCHW" if v is None else v.layout) if is_image(arch) else None,
            "fused": None if v is None else v.fused,
            "donate": None if v is None else v.donate,
            "chains": arch.chains, "steps": num_steps, "shape": list(arch.shape),
            "chain_steps_per_s": rate,
            "run_seconds": statistics.median(times[row]) if row in times else None,
            "run_seconds_all": times.get(row), "calls_per_repeat": t.calls,
            "compile_seconds": t.compile_seconds,
            "error": t.error,
            "model_flops_per_chain_step": model_flops / arch.chains,
            "xla_flops_per_chain_step": xla_flops / arch.chains,
            "peak_flops_per_s": peak, "peak_dtype": dtype,
            "peak_description": peak_description,
            "fraction_of_peak": (rate * model_flops / arch.chains / peak
                                 if rate and peak else None),
            "load1_start": load_start, "load1_end": load_end, "waited_seconds": waited,
            "other_cpu": other_cpu,
        }
        if isinstance(t, TorchTimed):
            out["torch_tf32"] = t.tf32
            out["cudnn_benchmark"] = (bool(t.torch.backends.cudnn.benchmark)
                                      if t.device == "cuda" else None)
        for base, key in (("torch_eager", "ratio_vs_torch_eager"),
                          ("torch_compile", "ratio_vs_torch_compile"),
                          ("plain_scan", "ratio_vs_plain_scan")):
            if rate and rates.get(base) and row != base:
                out[key] = rate / rates[base]
                # Repeats are interleaved, so repeat r of two rows ran side by side: the
                # spread of these paired ratios shows how much the machine's noise moves it.
                paired = sorted(b / a for a, b in zip(times[row], times[base]))
                out[key + "_range"] = [paired[0], paired[-1]]
        rows.append(out)
    return rows


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def pct(value) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def print_tables(rows: list) -> None:
    print("\n| arch | row | dtype | chain-steps/s | compile s | vs torch eager | "
          "vs torch.compile | vs plain scan | % peak |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["error"]:
            print(f"| {r['arch']} | {r['row']} | {r['dtype']} | failed: {r['error'][:80]} "
                  "| | | | | |")
            continue
        print(f"| {r['arch']} | {r['row']} | {r['dtype']} | "
              f"{fmt(r['chain_steps_per_s'], ',.0f')} | "
              f"{fmt(r['compile_seconds'], '.1f')} | {fmt(r.get('ratio_vs_torch_eager'), '.2f')} | "
              f"{fmt(r.get('ratio_vs_torch_compile'), '.2f')} | "
              f"{fmt(r.get('ratio_vs_plain_scan'), '.2f')} | "
              f"{pct(r['fraction_of_peak'])} |")
    print("\nSummary (chain-steps/s; ratio = / torch eager):")
    print("| arch | torch eager | torch.compile | toolkit | plain scan | best JAX row | "
          "best / eager | best / compile | best % peak | load1 start-end | other CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for arch in dict.fromkeys(r["arch"] for r in rows):
        mine = {r["row"]: r for r in rows if r["arch"] == arch}
        rate = {k: r["chain_steps_per_s"] for k, r in mine.items()}
        jax_rows = [r for r in mine.values() if r["framework"] == "jax" and r["chain_steps_per_s"]]
        best = max(jax_rows, key=lambda r: r["chain_steps_per_s"], default=None)
        any_row = next(iter(mine.values()))
        other = any_row["other_cpu"]
        print(f"| {arch} | {fmt(rate.get('torch_eager'), ',.0f')} | "
              f"{fmt(rate.get('torch_compile'), ',.0f')} | {fmt(rate.get('toolkit'), ',.0f')} | "
              f"{fmt(rate.get('plain_scan'), ',.0f')} | "
              f"{'' if best is None else best['row']} {fmt(best and best['chain_steps_per_s'], ',.0f')} | "
              f"{fmt(best and best.get('ratio_vs_torch_eager'), '.2f')} | "
              f"{fmt(best and best.get('ratio_vs_torch_compile'), '.2f')} | "
              f"{pct(best and best['fraction_of_peak'])} | "
              f"{any_row['load1_start']:.2f}-{any_row['load1_end']:.2f} | "
              f"{pct(other)} |")
    peaks = {}
    for r in rows:
        peaks.setdefault((r["run_on"], r["peak_dtype"]), (r["peak_flops_per_s"],
                                                          r["peak_description"]))
    print("\n% peak = chain-steps/s x model FLOPs per chain-step (jaxpr_flops, lax.conv) / the "
          "peak of the row's device and dtype (benchmarks/device_peaks.py device_peak_flops):")
    for (run_on, dtype), (peak, description) in peaks.items():
        value = "unknown" if not peak else f"{peak / 1e9:,.0f} GFLOP/s"
        print(f"  {run_on} {dtype}: {value} ({description})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="torch is optional: pip install torch==2.13.0 (without it: JAX rows only).")
    parser.add_argument("--arch", nargs="+", default=default_archs(), choices=list(ARCHS),
                        help="architectures (default: all but wrn28_10 when JAX runs on the "
                        "CPU, all elsewhere)")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                        metavar="ROW", help="JAX rows (default: all; conv-only levers skip "
                        "the MLP and wrn28_10): " + ", ".join(VARIANTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median)")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="a repeat calls a row's sampler until it lasts this long")
    parser.add_argument("--dtype", default="auto", choices=list(DTYPES),
                        help="compute dtype of wrn28_10 on both sides (auto: bfloat16 on "
                        "accelerators, float32 on CPU; torch: autocast); the other "
                        "architectures are float32")
    parser.add_argument("--no-torch", action="store_true", help="JAX rows only")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait for the 1-minute load average to fall below this")
    parser.add_argument("--max-wait", type=float, default=1200.0,
                        help="seconds to wait for it per architecture (0: do not wait)")
    parser.add_argument("--quick", action="store_true",
                        help="mlp2d and jem32, 4 JAX rows, torch eager only, 3 repeats, no wait")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)
    archs, variants, repeats, max_wait = args.arch, args.variants, args.repeats, args.max_wait
    min_seconds = args.min_seconds
    compile_row = not args.no_compile
    if args.quick:
        archs = [a for a in archs if a in ("mlp2d", "jem32")] or archs
        variants = variants or QUICK_VARIANTS
        repeats, max_wait, compile_row = min(repeats, 3), 0.0, False
        min_seconds = min(min_seconds, 0.2)
    variants = variants or DEFAULT_VARIANTS
    torch_version = None if args.no_torch else torch_available()
    torch_rows = []
    if args.no_torch:
        print("torch rows off (--no-torch): JAX rows only", flush=True)
    elif torch_version is None:
        print("torch is not installed: JAX rows only (the optional extra: "
              "pip install torch==2.13.0)", flush=True)
    else:
        torch_rows = ["torch_eager"] + (["torch_compile"] if compile_row else [])
    device, date = device_name(), datetime.date.today().isoformat()
    out = results_path(date)
    rows = []
    for arch in archs:
        for row in measure_arch(arch, args.steps, variants, repeats, torch_rows=torch_rows,
                                max_load=args.max_load, max_wait=max_wait, dtype=args.dtype,
                                min_seconds=min_seconds):
            row.update(device=device, jax=jax.__version__, torch=torch_version, date=date,
                       quick=args.quick, threads=num_cpus(),
                       step_size=STEP_SIZE, noise=NOISE)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.no_save:
                append_row(row, out)
    print_tables(rows)


if __name__ == "__main__":
    main()
