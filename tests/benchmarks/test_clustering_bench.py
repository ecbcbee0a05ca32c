"""benchmarks/clustering.py: a tiny run of every method prints its summary (nothing is written
to benchmarks/results)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import clustering as clustering_bench  # noqa: E402

KEYS = {"method", "dataset", "seed", "nmi", "cluster_accuracy", "largest_cluster_share",
        "ood_auroc"}


@pytest.mark.slow
@pytest.mark.fast_compile
def test_a_tiny_run_writes_rows_of_every_method_a_summary_and_the_figure(capsys, tmp_path):
    rows = clustering_bench.main(["--datasets", "moons", "--seeds", "1", "--steps", "20",
                                  "--no-save", "--figures", str(tmp_path)])
    assert [r["method"] for r in rows] == list(clustering_bench.METHODS)
    for row in rows:
        assert KEYS <= set(row)
        assert 0.0 <= row["nmi"] <= 1.0 and 0.5 <= row["largest_cluster_share"] <= 1.0
        assert (row["ood_auroc"] is None) == (row["method"] == "kmeans")
    summary = clustering_bench.summarise(rows)
    assert {line["method"] for line in summary} == set(clustering_bench.METHODS)
    out = capsys.readouterr().out
    assert "summary" in out and "total" in out
    assert [p.name for p in tmp_path.iterdir()] == ["clustering_2d.png"]


def test_bad_steps_are_refused():
    with pytest.raises(SystemExit):
        clustering_bench.main(["--steps", "0", "--no-save"])


def _params(weights, warmup):
    import dataclasses

    import jax
    import numpy as np

    setting = dataclasses.replace(clustering_bench.SETTINGS["moons"], hidden=(8,), sgld_steps=2,
                                  buffer=64, batch_size=16, warmup=warmup)
    x = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
    _, params = clustering_bench.train_gedi(x, setting, weights, 0, 3)
    return jax.tree_util.tree_leaves(params)


@pytest.mark.slow
def test_the_warmup_trains_the_generative_term_alone():
    import numpy as np

    full, no_prior = clustering_bench.WEIGHTS["gedi"], clustering_bench.WEIGHTS["gedi_no_prior"]
    # every step is warm-up: the prior (the only difference of the two methods) never acts
    same = [np.allclose(a, b) for a, b in zip(_params(full, 1.0), _params(no_prior, 1.0))]
    assert all(same)
