"""Whole JEM train steps: ebm_jax's jitted step against the step JEM's reference code writes.

    python benchmarks/vs_pytorch_train_step.py            # mlp_digits, conv_digits, jem32
                                                          # (and wrn28_10 on GPU/TPU)
    python benchmarks/vs_pytorch_train_step.py --quick    # mlp_digits and conv_digits, 3 repeats
    python benchmarks/vs_pytorch_train_step.py --arch wrn28_10 --repeats 3

One JEM train step (Grathwohl et al. 2020, their ``train_wrn_ebm.py``), on the same network,
batch, chains and initial weights on both sides:

1. draw ``batch`` chain starts from a replay buffer of 10,000, each replaced by uniform noise
   in [-1, 1] with probability 0.05;
2. run 20 SGLD steps ``x <- x - 1 * dE/dx + 0.01 * randn`` on E(x) = -logsumexp f(x)
   (clamped to [-1, 1] where the toolkit's preset clamps);
3. write the chains back to the buffer;
4. loss = cross-entropy of f(x_data) + mean E(x_data) - mean E(x_chains);
5. backward, one Adam update.

Architectures (``ARCHS``; the torch networks are benchmarks/vs_pytorch.py's):

* ``mlp_digits``: the main preset ``jem_digits`` as shipped (MLP 64-256-256-10, Swish,
  8x8 digits, batch 64, Adam 1e-3).
* ``conv_digits``: ``jem_digits`` with ebm_jax's ConvNet 32-64-128 (LeakyReLU 0.2) on the
  8x8x1 digits.
* ``jem32``: ``jem_cifar10`` with the four 3x3 convs 64-128-256-256 in float32 on synthetic
  32x32x3 data (benchmarks/scaling.py's ``synthetic_cifar``; no dataset needed).
* ``wrn28_10``: ``jem_cifar10`` itself (WRN-28-10, bfloat16 compute on accelerators; torch
  under ``torch.autocast``), synthetic data; in the default list on GPU/TPU only.

Rows:

* ``toolkit``: ``ebm_jax.experiments.experiment_train_step(build(config))``, the step
  ``ebm-jax train`` runs (divergence guard included), under ``jax.jit`` with the state donated
  and the XLA options ``ebm-jax train`` compiles it with (``compiler_options`` in its row).
* ``torch_eager``: the reference code's structure: the buffer draw and write-back with
  tensor indexing, a Python loop of ``torch.autograd.grad`` SGLD steps, one forward of the
  data batch whose logits give both terms, ``loss.backward()``, ``torch.optim.Adam``. Two
  choices favour torch: its replay buffer lives on the device (the reference code keeps it
  in host memory and copies the drawn starts over each step), and the data batch goes
  through the network once (the reference code runs it twice, for p(x) and for p(y|x)).

Timing as benchmarks/vs_pytorch.py: compile and a warm-up excluded (``compile_seconds``), a
repeat runs as many steps as last ``--min-seconds``, ``--repeats`` repeats interleaved across
the rows, the median reported, and the range of the paired per-repeat ratios beside each
ratio. ``mfu`` = steps/s x the toolkit step's model FLOPs (``jaxpr_flops``: dot and
convolution FLOPs, the SGLD scan times its trip count) / the device's peak in the compute
dtype (benchmarks/device_peaks.py), the same useful work for both rows.

One JSON object per row appended to benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from typing import NamedTuple, Optional

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_pytorch  # noqa: E402
from device_peaks import jaxpr_flops  # noqa: E402
from results_file import append_row, device_name, results_path  # noqa: E402
from scaling import synthetic_cifar  # noqa: E402

from ebm_jax.data import Batches  # noqa: E402
from ebm_jax.experiments import (build, experiment_train_step, initial_state,  # noqa: E402
                                 load_data, make_config)
from ebm_jax.experiments.run import train_step_compiler_options  # noqa: E402


class StepArch(NamedTuple):
    """One architecture: the toolkit's preset and overrides, the torch network's shape."""

    preset: str
    overrides: tuple
    net: vs_pytorch.Arch  # the torch network (``chains`` = the batch)
    synthetic: bool = False  # synthetic CIFAR-shaped data instead of the preset's dataset
    accelerator_only: bool = False


_JEM32_NET = vs_pytorch.ARCHS["jem32"]
ARCHS = {
    "mlp_digits": StepArch("jem_digits", (), vs_pytorch.Arch("mlp", (64,), 64, (256, 256), 10)),
    "conv_digits": StepArch(
        "jem_digits", ("model.kind=conv", "model.channels=32,64,128",
                       "model.activation=leaky_relu"),
        vs_pytorch.Arch("conv", (8, 8, 1), 64, (32, 64, 128), 10)),
    "jem32": StepArch(
        "jem_cifar10", ("model.kind=conv", "model.channels=64,128,256,256",
                        "model.activation=leaky_relu", "model.dtype=float32"),
        _JEM32_NET, synthetic=True),
    "wrn28_10": StepArch("jem_cifar10", (), vs_pytorch.ARCHS["wrn28_10"], synthetic=True,
                         accelerator_only=True),
}
QUICK_ARCHS = ("mlp_digits", "conv_digits")
ROWS = ("torch_eager", "toolkit")


def default_archs() -> list:
    """Every architecture, less the accelerator-scale ones when JAX runs on the CPU."""
    return [name for name, a in ARCHS.items()
            if vs_pytorch.on_accelerator() or not a.accelerator_only]


def step_config(name: str, dtype: str = "auto", extra: tuple = ()):
    """The toolkit's config of architecture ``name`` (``dtype`` as vs_pytorch's ``--dtype``,
    for the Wide-ResNet only; ``extra`` more ``KEY=VALUE`` overrides)."""
    arch = ARCHS[name]
    overrides = list(arch.overrides) + list(extra)
    if arch.net.kind == "wrn":
        overrides.append(f"model.dtype={vs_pytorch.compute_dtype(dtype)}")
    return make_config(arch.preset, overrides)


def step_data(name: str, config):
    return synthetic_cifar() if ARCHS[name].synthetic else load_data(config)


def net_arch(name: str, config) -> vs_pytorch.Arch:
    """The torch network's description, with the config's batch and compute dtype."""
    arch = ARCHS[name].net._replace(chains=config.data.batch_size)
    if arch.kind != "wrn":
        return arch
    model = config.model
    return arch._replace(dtype=model.dtype, depth=model.depth, widen_factor=model.widen_factor)


def toolkit_program(config, data, num_batches: int):
    """``(step_fn, state, batches, params)``: the unjitted step ``ebm-jax train`` builds, its
    initial state, ``num_batches`` batches and the network's initial params."""
    exp = build(config, data=data)
    step_fn = experiment_train_step(exp)
    batches = Batches(data.x_train, data.y_train, config.data.batch_size, seed=config.run.seed)
    return step_fn, initial_state(exp), [next(batches) for _ in range(num_batches)], exp.params


# --------------------------------------------------------------------------- PyTorch side


class TorchJEM:
    """JEM's train step in torch (the reference code's structure; see the module docstring).

    ``step(x, y)`` runs one step on a data batch (``x`` NCHW images or flat vectors,
    ``y`` int64 labels) and returns the loss tensor (not synchronised).
    """

    def __init__(self, arch: vs_pytorch.Arch, net, *, buffer_size: int, reinit_prob: float,
                 num_steps: int, step_size: float, noise: float, clamp: Optional[tuple],
                 learning_rate: float, device: str, seed: int = 0):
        import torch

        self.torch, self.arch, self.net = torch, arch, net
        self.reinit_prob, self.num_steps = reinit_prob, num_steps
        self.step_size, self.noise, self.clamp = step_size, noise, clamp
        self.device = device
        shape = (arch.shape[-1], *arch.shape[:-1]) if vs_pytorch.is_image(arch) else arch.shape
        generator = torch.Generator().manual_seed(seed)
        self.buffer = (torch.rand((buffer_size, *shape), generator=generator) * 2 - 1).to(device)
        self.optimizer = torch.optim.Adam(net.parameters(), lr=learning_rate)

    def energy(self, x):
        with vs_pytorch.torch_autocast(self.arch, x.device.type):
            logits = self.net(x)
        return -self.torch.logsumexp(logits.float(), dim=1), logits.float()

    def sample(self, batch: int):
        """The buffer draw with restarts, the SGLD chains and the write-back."""
        torch = self.torch
        index = torch.randint(0, len(self.buffer), (batch,), device=self.device)
        starts = self.buffer[index]
        noise_starts = torch.rand_like(starts) * 2 - 1
        restart = (torch.rand(batch, device=self.device) < self.reinit_prob).float()
        restart = restart.view(batch, *([1] * (starts.dim() - 1)))
        x = restart * noise_starts + (1 - restart) * starts
        for _ in range(self.num_steps):
            x = x.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.energy(x)[0].sum(), [x])[0]
            x = x - self.step_size * grad + self.noise * torch.randn_like(x)
            if self.clamp is not None:
                x = x.clamp(*self.clamp)
        x = x.detach()
        self.buffer[index] = x
        return x

    def loss(self, x, y, x_chains):
        """Cross-entropy + mean E(data) - mean E(chains) (the generative weight 1)."""
        energy_data, logits = self.energy(x)
        energy_chains = self.energy(x_chains)[0]
        cross_entropy = self.torch.nn.functional.cross_entropy(logits, y)
        return cross_entropy + energy_data.mean() - energy_chains.mean()

    def step(self, x, y):
        x_chains = self.sample(x.shape[0])
        loss = self.loss(x, y, x_chains)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss


def to_torch_batch(arch: vs_pytorch.Arch, batch: dict, device: str):
    """A toolkit batch ``{"x", "y"}`` as torch tensors (NCHW images) on ``device``."""
    import torch

    x = np.array(batch["x"], np.float32).reshape(-1, *arch.shape)  # a writable copy
    if vs_pytorch.is_image(arch):
        x = np.transpose(x, (0, 3, 1, 2))
    return (torch.from_numpy(np.ascontiguousarray(x)).to(device),
            torch.from_numpy(np.array(batch["y"], np.int64)).to(device))


def torch_jem(config, arch: vs_pytorch.Arch, params, device: str):
    """``TorchJEM`` on ``device`` with the toolkit's initial weights and the config's settings."""
    import torch

    torch.set_num_threads(vs_pytorch.num_cpus())
    torch.manual_seed(0)
    if device == "cuda":
        vs_pytorch.set_torch_tf32(True)
    net = vs_pytorch.torch_network(arch)
    vs_pytorch.load_jax_params(arch, net, params)
    net.to(device).train()
    objective = config.objective
    sampler = objective.sampler
    return TorchJEM(arch, net, buffer_size=objective.chain_start.capacity,
                    reinit_prob=objective.chain_start.reinit_prob,
                    num_steps=objective.num_steps, step_size=sampler.step_size,
                    noise=sampler.noise_scale, clamp=(-1.0, 1.0) if sampler.clamp else None,
                    learning_rate=config.optimizer.learning_rate, device=device)


# --------------------------------------------------------------------------- timing


class ToolkitTimed(vs_pytorch.Timed):
    def __init__(self, step_fn, state, batches, compiler_options=None):
        self.step_fn, self.state = step_fn, state
        self.batches = [jax.device_put(b) for b in batches]
        self.compiler_options = compiler_options or {}

    def prepare(self) -> None:
        started = time.perf_counter()
        self.compiled = jax.jit(self.step_fn, donate_argnums=0,
                                compiler_options=self.compiler_options or None).lower(
            self.state, self.batches[0]).compile()
        self.compile_seconds = time.perf_counter() - started
        self.state, metrics = self.compiled(self.state, self.batches[0])  # warm-up
        jax.block_until_ready((self.state, metrics))

    def run(self, first: int, count: int) -> float:
        """Seconds for ``count`` steps dispatched back to back from batch ``first`` on."""
        started = time.perf_counter()
        for i in range(count):
            self.state, metrics = self.compiled(
                self.state, self.batches[(first + i) % len(self.batches)])
        jax.block_until_ready((self.state, metrics))
        return time.perf_counter() - started

    def once(self, repeat: int) -> float:
        return self.run(repeat, 1)

    def timed(self, repeat: int) -> float:
        return self.run(repeat * self.calls, self.calls) / self.calls


class TorchStepTimed(vs_pytorch.Timed):
    def __init__(self, jem: TorchJEM, batches):
        self.jem, self.batches = jem, batches
        self.device = jem.device

    def _sync(self) -> None:
        if self.device == "cuda":
            self.jem.torch.cuda.synchronize()

    def prepare(self) -> None:
        self.compile_seconds = 0.0
        for i in range(2):  # warm-up (cuDNN/oneDNN algorithm caches, the allocator)
            self.jem.step(*self.batches[i % len(self.batches)])
        self._sync()

    def run(self, first: int, count: int) -> float:
        """Seconds for ``count`` steps from batch ``first`` on, synchronised at both ends."""
        self._sync()
        started = time.perf_counter()
        for i in range(count):
            self.jem.step(*self.batches[(first + i) % len(self.batches)])
        self._sync()
        return time.perf_counter() - started

    def once(self, repeat: int) -> float:
        return self.run(repeat, 1)

    def timed(self, repeat: int) -> float:
        return self.run(repeat * self.calls, self.calls) / self.calls


def measure_arch(name: str, repeats: int, *, torch_rows: bool, min_seconds: float = 0.5,
                 dtype: str = "auto", num_batches: int = 8, extra: tuple = ()) -> list:
    """One row per implementation of architecture ``name``'s JEM train step."""
    config = step_config(name, dtype, extra)
    data = step_data(name, config)
    arch = net_arch(name, config)
    step_fn, state, batches, params = toolkit_program(config, data, num_batches)
    model = jaxpr_flops(step_fn, state, batches[0])  # traces only
    timed: dict[str, vs_pytorch.Timed] = {}
    if torch_rows:
        device = vs_pytorch.torch_device()
        jem = torch_jem(config, arch, params, device)
        timed["torch_eager"] = TorchStepTimed(jem, [to_torch_batch(arch, b, device)
                                                    for b in batches])
    timed["toolkit"] = ToolkitTimed(step_fn, state, batches, train_step_compiler_options(config))
    for row, t in timed.items():
        print(f"  {name}: preparing {row}", file=sys.stderr, flush=True)
        t.prepare()
        t.calibrate(min_seconds)
    load_start = vs_pytorch.load1()
    times: dict[str, list] = {row: [] for row in timed}
    for r in range(repeats):
        for row in times:
            times[row].append(timed[row].timed(r))
    load_end = vs_pytorch.load1()
    rates = {row: 1.0 / statistics.median(ts) for row, ts in times.items()}
    dtype = config.model.dtype
    rows = []
    for row, t in timed.items():
        is_torch = isinstance(t, TorchStepTimed)
        device = (vs_pytorch.torch_device_kind(t.device) if is_torch else jax.devices()[0])
        peak_dtype = dtype if vs_pytorch.on_accelerator() else "float32"
        peak, peak_description = vs_pytorch.peak_for(device, peak_dtype)
        rate = rates[row]
        out = {
            "benchmark": "vs_pytorch_train_step", "arch": name, "row": row,
            "framework": "torch" if is_torch else "jax",
            "run_on": t.device if is_torch else jax.devices()[0].platform,
            "preset": ARCHS[name].preset, "overrides": list(ARCHS[name].overrides) + list(extra),
            "dtype": dtype, "batch": config.data.batch_size,
            "sgld_steps": config.objective.num_steps,
            "buffer": config.objective.chain_start.capacity,
            "steps_per_s": rate, "examples_per_s": rate * config.data.batch_size,
            "chain_steps_per_s": rate * config.data.batch_size * config.objective.num_steps,
            "run_seconds_all": times[row], "calls_per_repeat": t.calls,
            "compile_seconds": t.compile_seconds,
            "flops_per_step": model.flops,
            "peak_flops_per_s": peak, "peak_dtype": peak_dtype,
            "peak_description": peak_description,
            "mfu": rate * model.flops / peak if peak else None,
            "load1_start": load_start, "load1_end": load_end,
            "guard": config.guard.enabled,
        }
        if is_torch:
            out["torch_tf32"] = t.device == "cuda"
        else:
            out["compiler_options"] = t.compiler_options
            if "torch_eager" in rates:
                out["ratio_vs_torch_eager"] = rate / rates["torch_eager"]
                paired = sorted(b / a for a, b in zip(times[row], times["torch_eager"]))
                out["ratio_vs_torch_eager_range"] = [paired[0], paired[-1]]
        rows.append(out)
    return rows


def print_table(rows: list) -> None:
    print("\n| arch | row | dtype | batch | steps/s | compile s | vs torch eager [paired range] "
          "| MFU |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio, spread = r.get("ratio_vs_torch_eager"), r.get("ratio_vs_torch_eager_range")
        ratio_text = "" if ratio is None else f"{ratio:.2f} [{spread[0]:.2f}-{spread[1]:.2f}]"
        mfu = "" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        print(f"| {r['arch']} | {r['row']} | {r['dtype']} | {r['batch']} | "
              f"{r['steps_per_s']:,.{1 if r['steps_per_s'] >= 10 else 3}f} | "
              f"{r['compile_seconds']:.1f} | {ratio_text} | {mfu} |")
    if rows:
        print(f"peak ({rows[-1]['peak_dtype']}): {rows[-1]['peak_description']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=None, choices=list(ARCHS),
                        help="architectures (default: all but wrn28_10 when JAX runs on the CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per row (median)")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="a repeat runs steps until it lasts this long")
    parser.add_argument("--dtype", default="auto", choices=list(vs_pytorch.DTYPES),
                        help="compute dtype of wrn28_10 (auto: bfloat16 on accelerators)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a config override for every architecture")
    parser.add_argument("--no-torch", action="store_true", help="the toolkit's rows only")
    parser.add_argument("--quick", action="store_true",
                        help="mlp_digits and conv_digits, 3 repeats of 0.2 s")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)
    archs = args.arch or default_archs()
    repeats, min_seconds = args.repeats, args.min_seconds
    if args.quick:
        archs = [a for a in archs if a in QUICK_ARCHS] or archs
        repeats, min_seconds = min(repeats, 3), min(min_seconds, 0.2)
    torch_version = None if args.no_torch else vs_pytorch.torch_available()
    if torch_version is None and not args.no_torch:
        print("torch is not installed: the toolkit's rows only (pip install torch==2.13.0)",
              flush=True)
    date = datetime.date.today().isoformat()
    out, rows = results_path(date), []
    for name in archs:
        for row in measure_arch(name, repeats, torch_rows=torch_version is not None,
                                min_seconds=min_seconds, dtype=args.dtype,
                                extra=tuple(args.overrides)):
            row.update(device=device_name(), jax=jax.__version__, torch=torch_version,
                       date=date, quick=args.quick, threads=vs_pytorch.num_cpus())
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.no_save:
                append_row(row, out)
    print_table(rows)


if __name__ == "__main__":
    main()
