"""``ebm-jax tabular augment|evaluate`` on CSV files: what a user gets back, and one clear
line with exit status 2 for each kind of bad input."""
import json
import re

import numpy as np
import pytest

from ebm_jax import cli

pd = pytest.importorskip("pandas")


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    n = 36
    frame = pd.DataFrame({
        "height": np.round(rng.normal(170, 10, n), 1),
        "species": np.repeat(["ash", "oak", "elm"], n // 3),
        "rings": rng.integers(5, 90, n),
        "soil": rng.choice(["clay", "sand"], n),
    })
    path = tmp_path / "trees.csv"
    frame.to_csv(path, index=False)
    return path, frame


def _run(argv, capsys):
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_augment_writes_rows_of_every_class_in_the_tables_own_form(table, tmp_path, capsys):
    path, frame = table
    out = tmp_path / "synthetic.csv"
    code, printed, _ = _run(["tabular", "augment", str(path), "--target", "species",
                             "--per-class", "7", "--out", str(out)], capsys)
    assert code == 0 and "wrote 21 rows" in printed
    synthetic = pd.read_csv(out)
    assert list(synthetic.columns) == list(frame.columns)
    assert synthetic["species"].value_counts().to_dict() == {"ash": 7, "elm": 7, "oak": 7}
    assert synthetic.dtypes.tolist() == frame.dtypes.tolist()
    assert set(synthetic["soil"]) <= {"clay", "sand"}


@pytest.mark.slow
def test_augment_samples_the_best_measured_setting_unless_told_otherwise(table, tmp_path,
                                                                         capsys, monkeypatch):
    """By default the command fits per-feature bandwidths of the pooled within-class spread
    and samples in the temperature form (noise None); ``--bandwidth`` and ``--sampler paper``
    reach the estimator (the paper's noise is its default); a bad bandwidth is one line."""
    from ebm_jax.applications import tabular

    seen = []

    class Recording(tabular.TabEBM):
        def fit(self, X, y):
            seen.append(self.get_params())
            return super().fit(X, y)

    monkeypatch.setattr(tabular, "TabEBM", Recording)
    path, _ = table
    argv = ["tabular", "augment", str(path), "--target", "species", "--per-class", "3",
            "--out", str(tmp_path / "o.csv")]
    assert _run(argv, capsys)[0] == 0
    assert _run(argv + ["--bandwidth", "0.5", "--sampler", "paper"], capsys)[0] == 0
    assert (seen[0]["bandwidth"], seen[0]["noise_scale"]) == ("scott_pooled", None)
    assert (seen[1]["bandwidth"], seen[1]["noise_scale"]) == (0.5, 0.01)
    code, _, err = _run(argv + ["--bandwidth", "wide"], capsys)
    assert code == 2 and "bandwidth='wide': expected one of" in err


@pytest.mark.slow
def test_evaluate_prints_a_json_row_per_method_and_classifier(table, capsys):
    path, _ = table
    numeric = pd.read_csv(path).drop(columns=["soil"])
    numeric.to_csv(path, index=False)
    code, printed, _ = _run(["tabular", "evaluate", str(path), "--target", "species",
                             "--n-real", "12", "--seeds", "1", "--methods", "real", "jitter"],
                            capsys)
    rows = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert code == 0 and len(rows) == 8
    assert {r["method"] for r in rows} == {"real", "jitter"}
    assert rows[0]["dataset"] == "trees.csv" and rows[0]["n_real"] == 12


@pytest.mark.parametrize("make,argv,message", [
    (None, ["--target", "species"], "no such file"),
    (lambda p: p.write_bytes(b'a,b\n1,"2\n'), ["--target", "a"], "not a readable CSV"),
    (lambda p: p.write_text(""), ["--target", "a"], "not a readable CSV"),
    ("table", ["--target", "kind"], "--target 'kind': .* has no such column"),
    (lambda p: p.write_text("x,y\n1,a\n2,a\n3,b\n"), ["--target", "y"],
     "class 'b' has 1 row"),
    (lambda p: p.write_text("x,z,y\n1,,a\n2,1,a\n3,2,b\n4,3,b\n"), ["--target", "y"],
     r"column 'z' has a missing \(NaN\) cell in row 0"),
    (lambda p: p.write_text("x,y\n1,a\n2,\n3,b\n"), ["--target", "y"], "row 1 .* has no label"),
    ("table", ["--target", "species", "--categorical", "colour"], "--categorical 'colour'"),
])
def test_bad_input_is_one_line_and_exit_2(make, argv, message, table, tmp_path, capsys):
    path = table[0] if make == "table" else tmp_path / "input.csv"
    if callable(make):
        make(path)
    code, _, err = _run(["tabular", "augment", str(path), "--per-class", "5", "--out",
                         str(tmp_path / "o.csv")] + argv, capsys)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ebm-jax: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_bad_numbers_and_methods_are_refused_before_any_compute(table, tmp_path, capsys):
    path, _ = table
    code, _, err = _run(["tabular", "augment", str(path), "--target", "species",
                         "--per-class", "0", "--out", str(tmp_path / "o.csv")], capsys)
    assert code == 2 and "--per-class 0: expected a positive int" in err
    code, _, err = _run(["tabular", "evaluate", str(path), "--target", "species",
                         "--methods", "gan"], capsys)
    assert code == 2 and "--methods 'gan'" in err
    code, _, err = _run(["tabular", "evaluate", str(path), "--target", "species"], capsys)
    assert code == 2 and "evaluate needs numeric features; 'soil' is categorical" in err
    pd.read_csv(path).drop(columns=["soil"]).to_csv(path, index=False)
    code, _, err = _run(["tabular", "evaluate", str(path), "--target", "species",
                         "--n-real", "30"], capsys)
    assert code == 2 and "--n-real 30: " in err and "at most 25" in err
