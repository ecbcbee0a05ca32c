"""The user's .npz and .csv files: read, split, and every bad input refused with one error that
names the file, the array or column, the value and what was expected."""
import numpy as np
import pytest

from ebm_jax.data.files import DataFileError, data_statistics, is_data_file, load_file

RNG = np.random.default_rng(0)


def _npz(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def _csv(tmp_path, text, name="table.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_npz_with_both_splits_reads_float32_examples_and_int32_labels(tmp_path):
    x = RNG.normal(size=(30, 5, 4, 1)) * 100
    path = _npz(tmp_path, x_train=x[:20], y_train=np.arange(20) % 3, x_test=x[20:],
                y_test=np.arange(10) % 3)
    data = load_file(path)
    assert data.x_train.shape == (20, 5, 4, 1) and data.x_test.shape == (10, 5, 4, 1)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.num_classes == 3 and data.class_names is None
    np.testing.assert_allclose(data.x_train, x[:20].astype(np.float32))  # values untouched


def test_a_file_without_a_test_split_holds_out_a_seeded_stratified_share(tmp_path):
    y = np.repeat(np.arange(4), 25)
    x = RNG.normal(size=(100, 6)) + y[:, None]
    path = _npz(tmp_path, x_train=x, y_train=y)
    a = load_file(path, test_fraction=0.2, seed=3)
    assert len(a.x_train) == 80 and len(a.x_test) == 20
    assert np.bincount(a.y_test).tolist() == [5, 5, 5, 5]  # stratified: 5 of each class
    b, c = load_file(path, test_fraction=0.2, seed=3), load_file(path, test_fraction=0.2, seed=4)
    np.testing.assert_array_equal(a.x_test, b.x_test)  # seeded
    assert not np.array_equal(a.x_test, c.x_test)
    # every example lands in exactly one split
    both = np.concatenate([a.x_train, a.x_test])
    assert sorted(map(tuple, both.round(5))) == sorted(map(tuple, x.astype(np.float32).round(5)))


def test_unlabelled_npz(tmp_path):
    data = load_file(_npz(tmp_path, x_train=RNG.normal(size=(50, 3))))
    assert data.y_train is None and data.y_test is None and data.num_classes is None
    assert len(data.x_train) + len(data.x_test) == 50


def test_csv_with_string_labels_maps_them_in_sorted_order(tmp_path):
    rows = "\n".join(f"{i * 0.5},{-i},{['dog', 'cat', 'emu'][i % 3]}" for i in range(30))
    data = load_file(_csv(tmp_path, "height, weight ,kind\n" + rows + "\n\n"), target="kind",
                     test_fraction=0.2)
    assert data.class_names == ("cat", "dog", "emu") and data.num_classes == 3
    assert data.x_train.shape == (24, 2)
    # 'dog' rows have i % 3 == 0: height = 0.5 i, weight = -i, label 1 (sorted: cat, dog, emu)
    dogs = data.x_train[data.y_train == 1]
    assert np.all(dogs[:, 0] * 2 % 3 == 0) and np.allclose(dogs[:, 1], -2 * dogs[:, 0])


def test_csv_integer_labels_and_no_target(tmp_path):
    text = "a,b,y\n" + "\n".join(f"{i},{i % 2},{i % 2}" for i in range(20))
    labelled = load_file(_csv(tmp_path, text), target="y", test_fraction=0.25)
    assert labelled.class_names is None and labelled.num_classes == 2
    assert np.all(labelled.x_train[:, 1] == labelled.y_train)
    unlabelled = load_file(_csv(tmp_path, text), test_fraction=0.25)
    assert unlabelled.y_train is None and unlabelled.x_train.shape[1] == 3


def test_statistics_are_range_mean_and_standard_deviation():
    x = np.array([[0.0, 2.0], [4.0, 6.0]])
    assert data_statistics(x) == (0.0, 6.0, 3.0, pytest.approx(np.sqrt(5.0)))
    assert is_data_file("a/b.NPZ") and is_data_file("t.csv") and not is_data_file("digits")


GOOD = {"x_train": np.ones((10, 3)), "y_train": np.arange(10) % 2}


@pytest.mark.parametrize("arrays, message", [
    ({"x_train": np.full((8, 3), np.nan)},
     "x_train has 24 NaN or inf values (first at example 0): expected finite numbers"),
    ({**GOOD, "x_test": np.r_[np.ones((3, 3)), [[0, np.inf, 0]]], "y_test": np.zeros(4)},
     "x_test has 1 NaN or inf values (first at example 3)"),
    ({"X_train": np.ones((10, 3))}, "has arrays ['X_train']: expected only ['x_train', "),
    ({"y_train": np.zeros(10)}, "has no x_train (it has ['y_train'])"),
    ({"x_train": np.array([["a", "b"]] * 4)}, "x_train has dtype <U1: expected numbers"),
    ({"x_train": np.ones(10)}, "x_train has shape (10,): expected [N, ...]"),
    ({"x_train": np.ones((10, 3)), "y_train": np.arange(9) % 2},
     "y_train has shape (9,): expected [10], one label per example"),
    ({"x_train": np.ones((10, 3)), "y_train": np.arange(10) * 0.5},
     "y_train holds non-integer labels"),
    ({"x_train": np.ones((10, 3)), "y_train": np.arange(10) % 2 - 1},
     "y_train has label -1: expected labels in [0, K)"),
    ({"x_train": np.ones((10, 3)), "y_train": np.zeros(10)}, "y_train has a single class"),
    ({"x_train": np.ones((10, 3)), "y_train": np.arange(10) % 2 * 2},
     "y_train has no example of class [1] of 0..2"),
    ({**GOOD, "x_test": np.ones((4, 3)), "y_test": np.array([0, 1, 2, 0])},
     "y_test has label 2, a class y_train lacks: expected labels in [0, 2)"),
    ({**GOOD, "x_test": np.ones((4, 2)), "y_test": np.zeros(4)},
     "x_test has examples of shape (2,), x_train of shape (3,): expected the same"),
    ({**GOOD, "x_test": np.ones((4, 3))}, "has x_test but no y_test: expected both or neither"),
    ({"x_train": np.ones((10, 3)), "y_test": np.zeros(4), "x_test": np.ones((4, 3))},
     "has y_test but no y_train"),
    ({"x_train": np.ones((6, 3))}, "6 examples and no test split: expected at least 2 "),
    ({**GOOD, "x_test": np.ones((1, 3)), "y_test": np.zeros(1)},
     "the test split has 1 examples: expected at least 2"),
])
def test_bad_npz_gets_one_error_naming_the_array(tmp_path, arrays, message):
    path = _npz(tmp_path, **arrays)
    with pytest.raises(DataFileError) as error:
        load_file(path)
    assert str(error.value).startswith(str(tmp_path)) and message in str(error.value)


@pytest.mark.parametrize("text, target, message", [
    ("a,b\n1,2\n3,x\n", None, "line 3, column 'b' holds 'x': expected a number"),
    ("a,b\n1,2\n3\n", None, "line 3 has 1 fields: expected 2"),
    ("a,b\n1,2\n", "label", "data.target='label' is not a column of"),
    ("a,b\n", None, "has 0 data rows: expected a header row and examples"),
    ("y\n1\n0\n", "y", "has no feature column besides the target 'y'"),
])
def test_bad_csv_gets_one_error_naming_the_line_or_column(tmp_path, text, target, message):
    with pytest.raises(DataFileError, match=None) as error:
        load_file(_csv(tmp_path, text), target=target)
    assert message in str(error.value)


def test_missing_unreadable_or_misnamed_files(tmp_path):
    with pytest.raises(DataFileError, match="no such file"):
        load_file(str(tmp_path / "absent.npz"))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFileError, match="cannot be read as .npz"):
        load_file(str(tmp_path / "broken.npz"))
    with pytest.raises(DataFileError, match=r"expected a shipped dataset name or a file ending"):
        load_file(str(tmp_path / "data.txt"))
    with pytest.raises(DataFileError, match=r"data.test_fraction=1.5: expected a fraction"):
        load_file(_npz(tmp_path, x_train=np.ones((10, 2))), test_fraction=1.5)
