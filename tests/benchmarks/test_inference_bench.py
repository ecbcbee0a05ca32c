"""benchmarks/inference.py: its metrics, the parameter matching of the feed-forward baseline,
and a tiny run of every task end to end (nothing written to results)."""
import math
import os
import sys

import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import inference as bench  # noqa: E402

pytestmark = pytest.mark.fast_compile


def test_psnr_spearman_and_matched_width():
    target = jnp.zeros((4, 8))
    assert bench.psnr(target + 0.1, target) == pytest.approx(10 * math.log10(4 / 0.01))
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    energy_fn, params = bench.concat_energy((32, 32), 64, 64, 0)
    size = bench.num_params(params)
    width = bench.matched_width(size, 2, 64, 64)
    ff = 64 * width + width + width * width + width + width * 64 + 64
    assert abs(ff - size) / size < 0.02
    assert np.isfinite(float(energy_fn(params, jnp.zeros(64), jnp.zeros(64))))


@pytest.mark.slow
def test_a_tiny_run_prints_every_summary_key_and_draws_the_pictures(capsys, tmp_path):
    rows = bench.main(["--quick", "--steps", "8", "--seeds", "0", "--hidden", "8", "8",
                       "--no-save", "--figure", "--figure-dir", str(tmp_path)])
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(printed) == len(rows)
    seen = {(r["task"], r["method"]) for r in rows}
    assert seen == {("ebt_digits_denoise", "ebt_system1"), ("ebt_digits_denoise", "ebt_system2"),
                    ("ebt_digits_denoise", "feedforward"), ("ranking", "ebt_system1"),
                    ("ranking", "ebt_system2"), ("ebt_branches", "ebt_system1"),
                    ("ebt_branches", "mse_regressor")}
    for row in rows:
        for key in bench.SUMMARY_KEYS:
            assert key in row, (row["task"], key)
    denoise = [r for r in rows
               if r["task"] == "ebt_digits_denoise" and r["method"] != "feedforward"]
    for row in denoise:
        for key in ("psnr", "thinking_gain_db", "thinking_gain_db_noise05",
                    "best_of_n_gain_db", "energy_error_spearman"):
            assert np.isfinite(row[key]), key
    ranking = [r for r in rows if r["task"] == "ranking"]
    assert all(0.0 <= r["rank1_accuracy"] <= 1.0 for r in ranking)
    ebt_branches = next(r for r in rows if r["task"] == "ebt_branches"
                        and r["method"] == "ebt_system1")
    assert 0.0 <= ebt_branches["branch_hit_rate"] <= 1.0
    assert sum(ebt_branches["branch_shares"]) == pytest.approx(1.0)
    for name in ("inference_thinking.png", "inference_denoised.png", "inference_branches.png"):
        assert (tmp_path / name).stat().st_size > 5_000, name
