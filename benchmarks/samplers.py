"""Sampler throughput: chain-steps/s of SGLD, MALA and HMC on an MLP and a conv energy.

    python benchmarks/samplers.py              # 200 timed steps per row, unroll 1 and 4
    python benchmarks/samplers.py --quick      # under a minute on 2 CPU cores
    python benchmarks/samplers.py --arch mlp2d --samplers sgld

Energies: ``mlp2d`` is the 2-D toys' MLP 2-128-128-128-1 (Swish) with 1,024 chains;
``conv_digits`` is a ConvNet on 8x8x1 images (channels 32-64-128, LeakyReLU) with 128
chains. Every row runs ``run_chains`` (one ``lax.scan`` per chain, vmapped) under one
``jax.jit``; ``compile_seconds`` is lowering + compilation, timed apart from the run.
``plain_scan`` is the same SGLD update written directly with ``jax.grad`` and ``lax.scan``
over the whole batch (no sampler protocol, no Info), the baseline the toolkit must match:
SGLD rows report ``ratio_vs_plain_scan`` (toolkit / plain, same unroll, same run).
A step of HMC is one trajectory of ``--leapfrog`` gradient evaluations; rows report
``grad_evals_per_s`` too. One JSON object per line, appended to
benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from ebm_jax.nets import MLP, ConvNet, as_energy_fn
from ebm_jax.samplers import init_chains, langevin, run_chains
from ebm_jax.samplers.hmc import hmc
from ebm_jax.samplers.mala import mala

ARCHS = {
    # name: (build the network, example shape, chains)
    "mlp2d": (lambda: MLP(2, (128, 128, 128), 1, activation="swish", rngs=nnx.Rngs(0)), (2,), 1024),
    "conv_digits": (lambda: ConvNet((8, 8, 1), (32, 64, 128), 1, rngs=nnx.Rngs(0)), (64,), 128),
}
SAMPLERS = ("sgld", "mala", "hmc", "plain_scan")
STEP_SIZE = 1e-3


def device_name() -> str:
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu-{os.cpu_count()}cores"
    return device.device_kind.lower().replace(" ", "-")


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


def measure(arch: str, num_steps: int, unrolls, samplers, leapfrog: int, repeats: int) -> list:
    build, shape, chains = ARCHS[arch]
    model = as_energy_fn(build())
    energy_fn, params = model.apply, model.params
    x = 0.5 * jax.random.normal(jax.random.PRNGKey(1), (chains, *shape))
    makers = {
        "sgld": lambda u: toolkit_run(langevin(energy_fn, STEP_SIZE), num_steps, u),
        "mala": lambda u: toolkit_run(mala(energy_fn, STEP_SIZE), num_steps, u),
        "hmc": lambda u: toolkit_run(hmc(energy_fn, STEP_SIZE, leapfrog), num_steps, u),
        "plain_scan": lambda u: plain_scan_sgld(energy_fn, STEP_SIZE, num_steps, u),
    }
    rows = []
    for unroll in unrolls:
        u = num_steps if unroll == "full" else int(unroll)
        timed = {}
        for name in samplers:
            compile_s, run_s = time_run(makers[name](u), x, params, repeats)
            timed[name] = run_s
            grads_per_step = leapfrog if name == "hmc" else 1
            rows.append({
                "benchmark": "samplers", "sampler": name, "arch": arch, "chains": chains,
                "steps": num_steps, "unroll": unroll, "leapfrog": leapfrog if name == "hmc" else None,
                "chain_steps_per_s": chains * num_steps / run_s,
                "grad_evals_per_s": chains * num_steps * grads_per_step / run_s,
                "run_seconds": run_s, "compile_seconds": compile_s,
            })
        if "sgld" in timed and "plain_scan" in timed:
            ratio = timed["plain_scan"] / timed["sgld"]
            for row in rows:
                if row["sampler"] == "sgld" and row["unroll"] == unroll:
                    row["ratio_vs_plain_scan"] = ratio
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--steps", type=int, default=200)
    # "full" unrolls every step into the program: minutes of compile and GBs at 200 steps.
    parser.add_argument("--unroll", nargs="+", default=["1", "4"])
    parser.add_argument("--leapfrog", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="50 steps, 2 repeats")
    parser.add_argument("--no-save", action="store_true", help="do not write benchmarks/results")
    args = parser.parse_args()
    steps, unrolls, repeats = args.steps, args.unroll, args.repeats
    if args.quick:
        steps, repeats = 50, 2
    device, date = device_name(), datetime.date.today().isoformat()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{device}-{date}.json")
    rows = []
    for arch in args.arch:
        for row in measure(arch, steps, unrolls, args.samplers, args.leapfrog, repeats):
            row.update(device=device, jax=jax.__version__, date=date, quick=args.quick)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if not args.no_save:
                os.makedirs(os.path.dirname(out), exist_ok=True)
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print("\n| arch | sampler | unroll | chain-steps/s | compile s | vs plain scan |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = r.get("ratio_vs_plain_scan")
        print(f"| {r['arch']} | {r['sampler']} | {r['unroll']} | {r['chain_steps_per_s']:,.0f} | "
              f"{r['compile_seconds']:.2f} | {'' if ratio is None else f'{ratio:.2f}'} |")
    ratios = [r["ratio_vs_plain_scan"] for r in rows if "ratio_vs_plain_scan" in r]
    if ratios:
        print(f"\nSGLD / plain scan: median {statistics.median(ratios):.2f}, min {min(ratios):.2f}")


if __name__ == "__main__":
    main()
