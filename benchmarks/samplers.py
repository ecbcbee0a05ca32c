"""Sampler throughput: chain-steps/s of SGLD, MALA and HMC over architectures and chain counts.

    python benchmarks/samplers.py              # every CPU-scale architecture, ~12 min on 2 cores
    python benchmarks/samplers.py --quick      # about a minute on 2 CPU cores
    python benchmarks/samplers.py --arch mlp2d --samplers sgld --chains 256 4096
    python benchmarks/samplers.py --arch wrn28_10          # accelerator scale (minutes a step on CPU)

Architectures (``--arch``; the conv ones are benchmarks/vs_pytorch.py's ``ARCHS``):

==============  ======================================================  ==============  ======
name            energy                                                  chains (CPU)    steps
==============  ======================================================  ==============  ======
``mlp2d``       the 2-D toys' MLP 2-128-128-128-1 (Swish)               256 1024 4096   200
``conv_digits`` ConvNet on 8x8x1 (channels 32-64-128, LeakyReLU)        32 128 512      100
``jem28``       ConvNet 28x28x1, channels 64-128-256-256, LeakyReLU,    16 64 256       10
                10 logits, energy = -logsumexp (JEM)
``jem32``       the same on 32x32x3                                     16 64 256       10
``wrn28_10``    WideResNet-28-10 on 32x32x3, bfloat16 compute, JEM      64 256          20
                energy (-logsumexp of 10 logits)
==============  ======================================================  ==============  ======

``wrn28_10`` is in the default list only when JAX's backend is not the CPU (one SGLD step
of 64 chains takes minutes on 2 cores); ask for it with ``--arch wrn28_10`` anywhere. On
accelerators the default chain counts are larger (see ``ARCHS``: ``accel_chains``).
``--chains`` replaces every architecture's list, ``--steps`` every step count.

Samplers (``--samplers``): ``sgld`` (``ebm_jax.langevin``), ``mala``, ``hmc`` (one step is
one trajectory of ``--leapfrog`` gradient evaluations) and ``plain_scan``: the same SGLD
update written directly with ``jax.grad`` and ``lax.scan`` over the whole batch (no sampler
protocol, no Info), the baseline the toolkit must match: SGLD rows report
``ratio_vs_plain_scan`` (plain seconds / toolkit seconds; same arch, chains, unroll, run).
The default is all four for ``mlp2d`` and ``conv_digits``; for the big conv nets only
``sgld`` and ``plain_scan`` (a MALA/HMC row there costs minutes and measures the same
network cost times the gradient evaluations per step). Scan unrolls (``--unroll``): 1 and
4 for ``mlp2d``, 1 for the conv nets (where a step's convolutions dwarf the loop's
overhead, and every unroll is another compile per sampler and chain count).
``--samplers`` and ``--unroll`` apply to every architecture when given. The defaults keep
the whole default CPU run near 12 minutes on 2 cores (estimated from measured rates:
mlp2d ~4, conv_digits ~4, jem28 and jem32 ~2.5 each; HMC on conv_digits and the 256-chain
jem rows dominate).

Timing: every row runs ``run_chains`` (one ``lax.scan`` per chain, vmapped; plain_scan:
one scan over the batch) under one ``jax.jit``; ``compile_seconds`` is lowering +
compilation, timed apart; one warm-up run, then the best of ``--repeats`` runs.
``chain_steps_per_s`` = chains x steps / seconds; rows record ``grad_evals_per_s`` too.

Utilisation (benchmarks/device_peaks.py), per row, from a *one-step program* (one
``sampler.step`` vmapped over the chains, or one plain SGLD step), on the network with
``lax.conv`` convolutions (the ConvNet's ``conv_impl="auto"`` computes convolutions as
patches + matmul on CPU, whose zeros would count as work; the parameters are the same):

* ``flops_per_chain_step``: ``jaxpr_flops`` (the dot and convolution FLOPs of the
  forward pass and the gradient the sampler takes, counted from the jaxpr) / chains;
* ``xla_flops_per_chain_step``: XLA's cost analysis (``compiled_flops``) of the same
  compiled one-step program / chains (it adds the elementwise work). XLA counts a while
  loop's body once, whatever its trip count, so it is taken from the one-step program and
  never from the timed multi-step one (``flops_note`` says so in the row); for ``hmc``
  the leapfrog loop inside one step is itself such a loop, so XLA's figure is about one
  gradient evaluation, not ``--leapfrog`` of them (the jaxpr count has them all);
* ``fraction_of_peak`` = ``chain_steps_per_s * flops_per_chain_step / peak``, with the
  peak of ``device_peak_flops``: the FP32 peak on a CPU (the whole machine's); on an
  accelerator the peak of the architecture's compute dtype (bfloat16 for ``wrn28_10``,
  float32 for the rest, which TF32/bf16-pass matmuls can exceed).

One JSON object per row, appended to benchmarks/results/<device>-<date>.json
(``--no-save``: not written), then a markdown table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from device_peaks import compiled_flops, device_peak_flops, jaxpr_flops  # noqa: E402
from results_file import append_row, device_name, results_path  # noqa: E402

from ebm_jax.energies import energy_from_logits  # noqa: E402
from ebm_jax.nets import MLP, ConvNet, WideResNet, as_energy_fn, pure  # noqa: E402
from ebm_jax.samplers import init_chains, langevin, run_chains  # noqa: E402
from ebm_jax.samplers.hmc import hmc  # noqa: E402
from ebm_jax.samplers.mala import mala  # noqa: E402

SAMPLERS = ("sgld", "mala", "hmc", "plain_scan")
SMALL_SAMPLERS = SAMPLERS
BIG_SAMPLERS = ("sgld", "plain_scan")
STEP_SIZE = 1e-3
FLOPS_NOTE = ("flops_per_chain_step: jaxpr_flops (dot + conv FLOPs, scans times their trip "
              "count) of one sampler step on the lax.conv network, used for fraction_of_peak; "
              "xla_flops_per_chain_step: XLA cost analysis of the same one-step program, which "
              "counts a while loop body once (so never the timed multi-step program; HMC's "
              "leapfrog loop counts as one gradient there)")


class Arch(NamedTuple):
    """One architecture: ``build(conv_impl) -> (energy_fn(params, x), params)``."""

    build: Callable[[str], tuple[Callable, Any]]
    shape: tuple  # one chain's position
    chains: tuple  # default chain counts on CPU
    accel_chains: tuple  # default chain counts on accelerators
    steps: int  # default timed steps
    quick_steps: int
    samplers: tuple  # default samplers
    unrolls: tuple  # default scan unrolls
    dtype: str = "float32"  # compute dtype (the peak on accelerators)
    accelerator_only: bool = False  # not in the default list on CPU


def _mlp2d(conv_impl: str = "auto"):
    model = as_energy_fn(MLP(2, (128, 128, 128), 1, activation="swish", rngs=nnx.Rngs(0)))
    return model.apply, model.params


def _conv_digits(conv_impl: str = "auto"):
    model = as_energy_fn(ConvNet((8, 8, 1), (32, 64, 128), 1, conv_impl=conv_impl,
                                 rngs=nnx.Rngs(0)))
    return model.apply, model.params


def _jem_conv(shape):
    def build(conv_impl: str = "auto"):
        net = ConvNet(shape, (64, 128, 256, 256), 10, activation="leaky_relu",
                      conv_impl=conv_impl, rngs=nnx.Rngs(0))
        model = pure(net)
        return energy_from_logits(model.apply), model.params

    return build


def _wrn28_10(conv_impl: str = "auto"):  # WideResNet always uses lax.conv
    model = pure(WideResNet((32, 32, 3), 10, depth=28, widen_factor=10, dtype=jnp.bfloat16,
                            rngs=nnx.Rngs(0)))
    return energy_from_logits(model.apply), model.params


ARCHS = {
    "mlp2d": Arch(_mlp2d, (2,), (256, 1024, 4096), (1024, 4096, 16384), 200, 50,
                  SMALL_SAMPLERS, ("1", "4")),
    "conv_digits": Arch(_conv_digits, (64,), (32, 128, 512), (128, 512, 2048), 100, 50,
                        SMALL_SAMPLERS, ("1",)),
    "jem28": Arch(_jem_conv((28, 28, 1)), (28, 28, 1), (16, 64, 256), (64, 256, 1024), 10, 3,
                  BIG_SAMPLERS, ("1",)),
    "jem32": Arch(_jem_conv((32, 32, 3)), (32, 32, 3), (16, 64, 256), (64, 256, 1024), 10, 3,
                  BIG_SAMPLERS, ("1",)),
    "wrn28_10": Arch(_wrn28_10, (32, 32, 3), (64, 256), (64, 256), 20, 3, BIG_SAMPLERS, ("1",),
                     dtype="bfloat16", accelerator_only=True),
}
QUICK_ARCHS = ("mlp2d", "conv_digits")


def on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def default_archs(quick: bool = False) -> list[str]:
    if quick:
        return list(QUICK_ARCHS)
    return [name for name, a in ARCHS.items() if not (a.accelerator_only and on_cpu())]


def default_chains(arch: Arch, quick: bool = False) -> list[int]:
    counts = arch.chains if on_cpu() else arch.accel_chains
    return [counts[len(counts) // 2]] if quick else list(counts)


def _finite_or_none(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def plain_scan_sgld(energy_fn, step_size, num_steps, unroll):
    """SGLD written the direct way: grad of the summed energy, one scan over the batch."""
    grad_fn = jax.grad(lambda p, x: jnp.sum(jax.vmap(energy_fn, (None, 0))(p, x)), argnums=1)
    noise_scale = (2.0 * step_size) ** 0.5

    def run(key, x, params):
        def body(x, k):
            x = x - step_size * grad_fn(params, x) + noise_scale * jax.random.normal(k, x.shape)
            return x, None

        return jax.lax.scan(body, x, jax.random.split(key, num_steps), unroll=unroll)[0]

    return run


def toolkit_run(sampler, num_steps, unroll):
    def run(key, x, params):
        states = init_chains(sampler, x, params)
        states, _ = run_chains(key, sampler, states, params, num_steps, unroll=unroll)
        return states.position

    return run


def make_sampler(name: str, energy_fn, leapfrog: int):
    if name == "sgld":
        return langevin(energy_fn, STEP_SIZE)
    if name == "mala":
        return mala(energy_fn, STEP_SIZE)
    if name == "hmc":
        return hmc(energy_fn, STEP_SIZE, leapfrog)
    raise ValueError(f"sampler {name!r}: expected one of {SAMPLERS}")


def make_run(name: str, energy_fn, num_steps: int, unroll: int, leapfrog: int):
    """``run(key, x, params)``: ``num_steps`` steps of sampler ``name`` on every chain."""
    if name == "plain_scan":
        return plain_scan_sgld(energy_fn, STEP_SIZE, num_steps, unroll)
    return toolkit_run(make_sampler(name, energy_fn, leapfrog), num_steps, unroll)


def step_flops(name: str, energy_fn, params, x, leapfrog: int = 5) -> dict:
    """FLOPs of one step of sampler ``name`` on the chains ``x`` (``[C, ...]``), per chain.

    The program is one step with no loop around it (``plain_scan``: one plain SGLD
    step; the others: ``sampler.step`` vmapped over the chains, states from
    ``init_chains`` passed in), so XLA's cost analysis is not fooled by a while loop.
    Returns ``flops`` (jaxpr dot + conv FLOPs), ``xla_flops`` (NaN when XLA gives
    none), ``while_loops`` (loops of unknown trip count the jaxpr count took once),
    all per chain.
    """
    chains = x.shape[0]
    key = jax.random.PRNGKey(0)
    if name == "plain_scan":
        one = plain_scan_sgld(energy_fn, STEP_SIZE, 1, 1)
        args = (key, x, params)
    else:
        sampler = make_sampler(name, energy_fn, leapfrog)

        def one(key, states, params):
            keys = jax.random.split(key, states.position.shape[0])
            return jax.vmap(sampler.step, (0, 0, None))(keys, states, params)

        args = (key, jax.jit(lambda x, p: init_chains(sampler, x, p))(x, params), params)
    model = jaxpr_flops(one, *args)
    xla = compiled_flops(jax.jit(one).lower(*args).compile())
    return {"flops": model.flops / chains, "xla_flops": xla / chains,
            "while_loops": model.while_loops}


def time_run(run, x, params, repeats: int) -> tuple[float, float]:
    """(compile seconds, best-of-``repeats`` run seconds) of ``jax.jit(run)``."""
    key = jax.random.PRNGKey(0)
    started = time.perf_counter()
    compiled = jax.jit(run).lower(key, x, params).compile()
    compile_seconds = time.perf_counter() - started
    jax.block_until_ready(compiled(key, x, params))  # warm-up
    times = []
    for r in range(repeats):
        started = time.perf_counter()
        jax.block_until_ready(compiled(jax.random.PRNGKey(r + 1), x, params))
        times.append(time.perf_counter() - started)
    return compile_seconds, min(times)


def peak_for(arch: Arch) -> tuple[Optional[float], str, str]:
    """(peak FLOP/s, its dtype, description): FP32 on CPU, the arch's dtype elsewhere."""
    device = jax.devices()[0]
    dtype = "float32" if device.platform == "cpu" else arch.dtype
    peak, description = device_peak_flops(device, dtype)
    return peak, dtype, description


def measure(arch, num_steps: Optional[int] = None, unrolls=None, samplers=None,
            leapfrog: int = 5, repeats: int = 3, chains=None, quick: bool = False) -> list:
    """Rows for one architecture (a name in ``ARCHS`` or an :class:`Arch`).

    ``None`` for ``num_steps``, ``unrolls``, ``samplers`` or ``chains`` takes the
    architecture's defaults (``quick``: its quick steps and middle chain count).
    """
    name = arch if isinstance(arch, str) else "custom"
    arch = ARCHS[arch] if isinstance(arch, str) else arch
    num_steps = num_steps or (arch.quick_steps if quick else arch.steps)
    unrolls = list(unrolls or arch.unrolls)
    samplers = list(samplers or arch.samplers)
    chain_counts = [int(c) for c in (chains or default_chains(arch, quick))]
    energy_fn, params = arch.build("auto")
    ref_energy_fn, ref_params = arch.build("lax")  # the same parameters, lax.conv
    peak, peak_dtype, peak_description = peak_for(arch)
    rows = []
    for num_chains in chain_counts:
        x = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (num_chains, *arch.shape))
        counted = {s: step_flops(s, ref_energy_fn, ref_params, x, leapfrog) for s in samplers}
        for unroll in unrolls:
            u = num_steps if unroll == "full" else int(unroll)
            timed = {}
            for sampler in samplers:
                run = make_run(sampler, energy_fn, num_steps, u, leapfrog)
                compile_s, run_s = time_run(run, x, params, repeats)
                timed[sampler] = run_s
                grads_per_step = leapfrog if sampler == "hmc" else 1
                rate = num_chains * num_steps / run_s
                flops = counted[sampler]
                achieved = rate * flops["flops"]
                rows.append({
                    "benchmark": "samplers", "sampler": sampler, "arch": name,
                    "chains": num_chains, "steps": num_steps, "unroll": unroll,
                    "leapfrog": leapfrog if sampler == "hmc" else None,
                    "chain_steps_per_s": rate,
                    "grad_evals_per_s": rate * grads_per_step,
                    "run_seconds": run_s, "compile_seconds": compile_s,
                    "repeats": repeats, "dtype": arch.dtype,
                    "flops_per_chain_step": flops["flops"],
                    "xla_flops_per_chain_step": _finite_or_none(flops["xla_flops"]),
                    "flops_while_loops": flops["while_loops"],
                    "flops_note": FLOPS_NOTE,
                    "achieved_flops_per_s": achieved,
                    "peak_flops_per_s": peak, "peak_dtype": peak_dtype,
                    "peak_description": peak_description,
                    "fraction_of_peak": achieved / peak if peak else None,
                })
            if "sgld" in timed and "plain_scan" in timed:
                ratio = timed["plain_scan"] / timed["sgld"]
                for row in rows:
                    if (row["sampler"] == "sgld" and row["unroll"] == unroll
                            and row["chains"] == num_chains):
                        row["ratio_vs_plain_scan"] = ratio
    return rows


def print_table(rows: list) -> None:
    print("\n| arch | sampler | chains | unroll | chain-steps/s | compile s | MFLOP/chain-step "
          "| % peak | vs plain scan |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r.get("ratio_vs_plain_scan")
        frac = r.get("fraction_of_peak")
        print(f"| {r['arch']} | {r['sampler']} | {r['chains']} | {r['unroll']} "
              f"| {r['chain_steps_per_s']:,.0f} | {r['compile_seconds']:.2f} "
              f"| {r['flops_per_chain_step'] / 1e6:,.3f} "
              f"| {'n/a' if frac is None else f'{100 * frac:.2f}'} "
              f"| {'' if ratio is None else f'{ratio:.2f}'} |")
    ratios = [r["ratio_vs_plain_scan"] for r in rows if "ratio_vs_plain_scan" in r]
    if ratios:
        print(f"\nSGLD / plain scan: median {statistics.median(ratios):.2f}, "
              f"min {min(ratios):.2f}")
    if rows:
        print(f"peak ({rows[0]['peak_dtype']}): {rows[0]['peak_description']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--arch", nargs="+", default=None, choices=list(ARCHS),
                        help="architectures (default: all but wrn28_10 on CPU, all elsewhere; "
                             "--quick: mlp2d conv_digits)")
    parser.add_argument("--samplers", nargs="+", default=None, choices=SAMPLERS,
                        help="default: all four for mlp2d/conv_digits, sgld plain_scan for "
                             "the big conv nets")
    parser.add_argument("--chains", nargs="+", type=int, default=None,
                        help="chain counts to sweep (default: per architecture)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per run (default: mlp2d 200, conv_digits 100, "
                             "jem28/jem32 10, wrn28_10 20)")
    # "full" unrolls every step into the program: minutes of compile and GBs at 200 steps.
    parser.add_argument("--unroll", nargs="+", default=None,
                        help="scan unrolls (ints or 'full'; default: 1 4 for mlp2d, 1 else)")
    parser.add_argument("--leapfrog", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=None, help="default 3 (--quick: 2)")
    parser.add_argument("--quick", action="store_true",
                        help="mlp2d and conv_digits, middle chain count, 50 steps, unroll 1, "
                             "2 repeats (about a minute on 2 CPU cores)")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 3)
    unrolls = args.unroll or (["1"] if args.quick else None)
    device, date = device_name(), datetime.date.today().isoformat()
    out = results_path(date)
    rows = []
    for arch in args.arch or default_archs(args.quick):
        for row in measure(arch, args.steps, unrolls, args.samplers, args.leapfrog, repeats,
                           args.chains, quick=args.quick):
            row.update(device=device, jax=jax.__version__, date=date, quick=args.quick)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.no_save:
                append_row(row, out)
    print_table(rows)
    if not args.no_save and rows:
        print(f"appended to {out}")


if __name__ == "__main__":
    main()
