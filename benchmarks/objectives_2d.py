"""Every learning objective on every closed-form 2-D toy: KL(true || model), MMD, wall time.

    python benchmarks/objectives_2d.py                      # every objective x 4 toys x 3 seeds
    python benchmarks/objectives_2d.py --quick              # 1 seed, 1/4 of the steps
    python benchmarks/objectives_2d.py --objectives nce cd --toys rings --seeds 0

Each run is `ebm-jax train --config <objective>_2d_<toy> --set run.seed=S` (EMA weights are
evaluated; `--quick` also sets `run.num_steps` to a quarter of the preset's). KL is by
quadrature on a 400x400 grid over [-4.5, 4.5]^2; MMD is the unbiased Gaussian-kernel MMD²
between 2,000 model samples and 2,000 true samples. Prints a table of the median over seeds
and writes one JSON object per run to benchmarks/results/<device>-<date>.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile

from ebm_jax.experiments import make_config, train
from ebm_jax.plots import read_metrics
from ebm_jax.experiments.objectives import get_objective, objective_kinds

TOYS = ("8gaussians", "rings", "checkerboard", "two_spirals")


def toy_objectives() -> tuple[str, ...]:
    """Every registered objective with a ``<kind>_2d_<toy>`` preset for each toy: a new
    method's presets put it in this benchmark with no edit here."""
    return tuple(kind for kind in objective_kinds()
                 if all(f"{kind}_2d_{toy}" in get_objective(kind).presets for toy in TOYS))


OBJECTIVES = toy_objectives()


def run(objective: str, toy: str, seed: int, quick: bool) -> dict:
    preset = f"{objective}_2d_{toy}"
    overrides = [f"run.seed={seed}"]
    config = make_config(preset, overrides)
    if quick:
        overrides.append(f"run.num_steps={max(config.run.num_steps // 4, 1)}")
        config = make_config(preset, overrides)
    with tempfile.TemporaryDirectory() as workdir:
        summary = train(config, workdir, progress=False)
        logged = [r["log_z"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
                  if "log_z" in r]
    return {"benchmark": "objectives_2d", "objective": config.objective.kind,
            "toy": config.data.dataset, "seed": config.run.seed,
            "kl_nats": summary.get("kl_nats"), "mmd": summary.get("mmd"),
            # the normaliser the method learns or tracks (its last logged "log_z", for NCE,
            # MECO, FCE) against the quadrature of the evaluated energy
            "log_z": logged[-1] if logged else None,
            "log_z_quadrature": summary.get("log_z_quadrature"),
            "steps": summary["steps"], "wall_seconds": summary["wall_seconds"],
            "train_seconds": summary["train_seconds"], "quick": quick,
            "date": datetime.date.today().isoformat()}


def print_table(rows: list, objectives, toys) -> None:
    """Markdown table of medians over seeds (the latest row of each objective/toy/seed)."""
    latest = {}
    for r in rows:
        latest[(r["objective"], r["toy"], r["seed"])] = r
    print("\n| objective | toy | seeds | KL nats (median) | KL (min-max) | MMD (median) "
          "| wall s (median, max) | steps |")
    print("|---|---|---|---|---|---|---|---|")
    for objective in objectives:
        for toy in toys:
            group = [r for (o, t, _), r in sorted(latest.items()) if o == objective and t == toy]
            if not group:
                continue
            kls = [r["kl_nats"] for r in group if r["kl_nats"] is not None]
            mmds = [r["mmd"] for r in group if r["mmd"] is not None]
            walls = [r["wall_seconds"] for r in group]
            kl = f"{statistics.median(kls):.4f}" if kls else "n/a"
            spread = f"{min(kls):.4f}-{max(kls):.4f}" if kls else "n/a"
            mmd = f"{statistics.median(mmds):.4f}" if mmds else "n/a"
            print(f"| {objective} | {toy} | {len(group)} | {kl} | {spread} | {mmd} | "
                  f"{statistics.median(walls):.0f}, {max(walls):.0f} | {group[0]['steps']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--toys", nargs="+", default=list(TOYS), choices=TOYS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed, a quarter of the steps")
    parser.add_argument("--out", default=None, help="JSON-lines file (default benchmarks/results/)")
    parser.add_argument("--summarize", metavar="FILE", default=None,
                        help="print the table of an earlier results file and exit")
    args = parser.parse_args()
    if args.summarize:
        with open(args.summarize) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rows = [r for r in rows if r.get("benchmark") == "objectives_2d" and not r.get("quick")]
        print_table(rows, args.objectives, args.toys)
        return
    seeds = args.seeds[:1] if args.quick else args.seeds
    import jax

    device = jax.devices()[0]
    name = f"cpu-{os.cpu_count()}cores" if device.platform == "cpu" else device.device_kind.lower()
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"{name.replace(' ', '-')}-{datetime.date.today().isoformat()}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    rows = []
    for objective in args.objectives:
        for toy in args.toys:
            for seed in seeds:
                row = {**run(objective, toy, seed, args.quick), "device": name}
                rows.append(row)
                print(json.dumps(row), flush=True)
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    print_table(rows, args.objectives, args.toys)


if __name__ == "__main__":
    main()
