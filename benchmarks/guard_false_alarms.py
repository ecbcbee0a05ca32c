"""The divergence guard's false-alarm check: every shipped preset's full run, guard on
(its defaults: absolute limits and the relative criteria), counting the steps it refused and
the rollbacks it made. On presets that train, a fired criterion is a false alarm.

    python benchmarks/guard_false_alarms.py                     # every preset this CPU can run
    python benchmarks/guard_false_alarms.py jem_digits cd_2d_rings

Presets on tfds data (CIFAR-10/100, SVHN with WRN/ResNet) are left out unless named: their
full runs take GPU-days. Writes one JSON object per run to
benchmarks/results/<device>-<date>.json: ``diverged_steps`` (windows' fraction x steps),
``rollbacks``, ``causes`` and the run's main figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from results_file import append_row, results_path  # noqa: E402

from ebm_jax.experiments import make_config, train  # noqa: E402
from ebm_jax.experiments.config import TFDS_NAMES  # noqa: E402
from ebm_jax.experiments.presets import PRESETS  # noqa: E402

MAIN_FIGURES = ("test_accuracy", "kl_nats", "auroc_uniform_noise")


def check(preset: str) -> dict:
    config = make_config(preset)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as workdir:
        summary = train(config, workdir, progress=False)
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
    windows = [r for r in records if "diverged" in r]
    events = [r for r in records if "event" in r]
    diverged_steps = round(sum(r["diverged"] * config.run.log_every for r in windows))
    causes = sorted({k.split("/", 1)[1] for r in windows for k, v in r.items()
                     if k.startswith("diverged/") and v > 0}
                    | {c for e in events for c in e.get("causes", [])})
    return {"benchmark": "guard_false_alarms", "preset": preset,
            "steps": summary["steps"], "diverged_steps": diverged_steps,
            "rollbacks": sum(e["event"] == "rollback" for e in events), "causes": causes,
            **{k: summary[k] for k in MAIN_FIGURES if summary.get(k) is not None},
            "wall_seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="default: every preset not on tfds data")
    args = parser.parse_args()
    names = args.presets or [n for n in sorted(PRESETS)
                             if PRESETS[n].data.dataset not in TFDS_NAMES]
    path = results_path()
    for name in names:
        row = check(name)
        append_row(row, path)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
