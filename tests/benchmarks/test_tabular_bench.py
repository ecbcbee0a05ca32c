"""benchmarks/tabular.py: a one-split run prints its summary (nothing is written to
benchmarks/results)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import tabular as tabular_bench  # noqa: E402


@pytest.mark.slow
def test_a_one_split_run_summarises_gain_over_real_only(capsys):
    rows = tabular_bench.main(["--datasets", "iris", "--n-real", "20", "--seeds", "1",
                               "--methods", "real", "jitter", "--no-save"])
    assert len(rows) == 2 * 4
    summary = {line["method"]: line for line in tabular_bench.summarise(rows)}
    assert summary["real"]["gain_points"] == 0.0 and summary["real"]["mmd"] is None
    assert summary["jitter"]["max_exact_copy_rate"] == 0.0
    assert "gain_points" in capsys.readouterr().out


@pytest.mark.slow  # two spawned interpreters
def test_groups_run_in_worker_processes_give_the_rows_of_one_process():
    argv = ["--datasets", "iris", "--n-real", "20", "30", "--seeds", "1", "--methods", "real",
            "jitter", "--no-save"]
    key = lambda row: (row["n_real"], row["method"], row["classifier"])  # noqa: E731
    parallel = sorted(tabular_bench.main(argv + ["--workers", "2"]), key=key)
    serial = sorted(tabular_bench.main(argv + ["--workers", "1"]), key=key)
    assert len(parallel) == 2 * 2 * 4
    for a, b in zip(parallel, serial):
        a.pop("augment_seconds"), b.pop("augment_seconds")
        assert a == b
