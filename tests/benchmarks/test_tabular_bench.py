"""benchmarks/tabular.py: a one-split run prints its summary (nothing is written to
benchmarks/results)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import tabular as tabular_bench  # noqa: E402


def test_a_one_split_run_summarises_gain_over_real_only(capsys):
    rows = tabular_bench.main(["--datasets", "iris", "--n-real", "20", "--seeds", "1",
                               "--methods", "real", "jitter", "--no-save"])
    assert len(rows) == 2 * 4
    summary = {line["method"]: line for line in tabular_bench.summarise(rows)}
    assert summary["real"]["gain_points"] == 0.0 and summary["real"]["mmd"] is None
    assert summary["jitter"]["max_exact_copy_rate"] == 0.0
    assert "gain_points" in capsys.readouterr().out
