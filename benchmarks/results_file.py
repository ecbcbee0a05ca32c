"""Where the benchmarks write: one JSON object per line in benchmarks/results/<device>-<date>.json.

    >>> path = results_path()            # benchmarks/results/cpu-2cores-2026-11-23.json
    >>> append_row({"benchmark": "samplers", "chain_steps_per_s": 1e5}, path)
"""
from __future__ import annotations

import datetime
import json
import os
from typing import Optional

import jax

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def device_name() -> str:
    """``cpu-<N>cores`` on CPU, else the accelerator's kind, e.g. ``nvidia-h100-80gb-hbm3``."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu-{os.cpu_count()}cores"
    return device.device_kind.lower().replace(" ", "-")


def results_path(date: Optional[str] = None) -> str:
    """The results file of this device and ``date`` (default: today)."""
    date = date or datetime.date.today().isoformat()
    return os.path.join(RESULTS_DIR, f"{device_name()}-{date}.json")


def append_row(row: dict, path: str) -> None:
    """Append ``row`` as one JSON line to ``path`` (its folder is created if needed)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
