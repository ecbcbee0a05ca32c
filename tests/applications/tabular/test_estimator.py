"""TabEBM as users of scikit-learn meet it: fit, generate, parameters, tables with categories
and integers, and one clear error for each kind of bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris

from ebm_jax.applications.tabular import (TabEBM, class_energy, in_context_backend,
                                          kernel_backend)

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def iris_small():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    index = np.concatenate([rng.choice(np.flatnonzero(y == c), 8, replace=False)
                            for c in range(3)])
    return X[index], y[index], X, y


def _nearest_centroid(X_train, y_train, X):
    centroids = np.stack([X_train[y_train == c].mean(0) for c in range(3)])
    return np.argmin(((X[:, None] - centroids[None]) ** 2).sum(-1), 1)


@pytest.mark.slow
def test_samples_of_each_class_look_like_that_class_and_copy_no_row(iris_small):
    X, y, X_all, y_all = iris_small
    model = TabEBM(num_steps=100).fit(X, y)
    X_new, y_new = model.generate(40, seed=0)
    assert X_new.shape == (120, 4) and X_new.dtype == X.dtype
    assert y_new.dtype == y.dtype and np.bincount(y_new).tolist() == [40, 40, 40]
    # Judged by the full data set's class centroids: samples sit with their own class.
    assert np.mean(_nearest_centroid(X_all, y_all, X_new) == y_new) >= 0.9
    distances = np.sqrt(((X_new[:, None] - X[None]) ** 2).sum(-1)).min(1)
    assert distances.min() > 0 and not np.any((X_new[:, None] == X[None]).all(-1))
    again, _ = model.generate(40, seed=0)
    np.testing.assert_array_equal(again, X_new)
    assert not np.array_equal(model.generate(40, seed=1)[0], X_new)


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_per_example_chains_descend_and_batch_mean_chains_random_walk(iris_small):
    """The paper's settings (step 0.1, noise 0.01, 200 steps), 400 chains a class. Per-example
    chains descend the class energy below its rows' own (they settle at the kernel density's
    modes); with the reference code's batch-averaged gradient (step / 400) the drift cannot
    hold the noise, the chains random-walk off their rows (about 0.01 sqrt(200) = 0.14 per
    coordinate) and end above the rows' energy."""
    X, y, _, _ = iris_small
    ends = {}
    for flag in (False, True):
        model = TabEBM(num_steps=200, batch_mean_gradient=flag).fit(X, y)
        Z = model.sample_encoded(400, seed=0)
        energy = jax.vmap(jax.vmap(class_energy(model.backend_), (None, 0)))
        sample_energy = float(jnp.mean(energy(model.class_params_, jnp.asarray(Z))))
        row_energy = float(jnp.mean(energy(model.class_params_, jnp.asarray(model.rows_))))
        nearest = ((Z[:, :, None] - model.rows_[:, None]) ** 2).sum(-1).argmin(-1)
        residual = Z - model.rows_[np.arange(3)[:, None], nearest]
        ends[flag] = (sample_energy - row_energy, float(residual.std()))
    assert ends[False][0] < -0.1 and ends[True][0] > 0.1, ends
    assert 0.09 < ends[True][1] < 0.16 and ends[False][1] < 0.09, ends


@pytest.mark.slow
def test_the_in_context_path_agrees_with_the_vmapped_kernel(iris_small):
    """The kernel's logits written as a user's in-context function, fitted class by class on
    unpadded rows, give the vmapped kernel backend's samples (its step unscaled, as a user
    function's is)."""
    X, y, _, _ = iris_small
    h = 0.4

    def kernel_logits(cx, cy, x):
        log_k = -jnp.sum((x - cx) ** 2, -1) / (2 * h * h)
        return jnp.stack([jax.nn.logsumexp(jnp.where(cy == c, log_k, -jnp.inf)) for c in (0, 1)])

    mine = TabEBM(backend="in_context", logits_fn=kernel_logits, num_steps=30).fit(X, y)
    ours = TabEBM(backend=kernel_backend(h)._replace(step_scale=None), num_steps=30).fit(X, y)
    np.testing.assert_allclose(mine.generate(10, seed=2)[0], ours.generate(10, seed=2)[0],
                               atol=1e-4)
    np.testing.assert_allclose(mine.energies(X), ours.energies(X), rtol=1e-5)


@pytest.mark.slow
def test_a_table_with_categories_and_integers_comes_back_in_its_own_types():
    rng = np.random.default_rng(0)
    n = 40
    frame = pd.DataFrame({
        "age": rng.integers(20, 70, n),
        "income": rng.normal(50.0, 10.0, n),
        "colour": rng.choice(["red", "green", "blue"], n),
        "member": rng.random(n) < 0.5,
    })
    labels = pd.Series(np.where(frame["income"] > 50, "high", "low"), name="band")
    model = TabEBM(categorical=["colour"], num_steps=50).fit(frame, labels)
    X_new, y_new = model.generate(15, seed=0)
    assert list(X_new.columns) == list(frame.columns)
    assert X_new.dtypes.tolist() == frame.dtypes.tolist()
    assert set(X_new["colour"]) <= {"red", "green", "blue"}
    assert isinstance(y_new, pd.Series) and y_new.name == "band"
    assert sorted(y_new.unique()) == ["high", "low"] and len(y_new) == 30
    # each class's energy is lowest on its own class's rows, on average
    energies = model.energies(frame)
    own = energies[np.arange(n), (labels == "low").to_numpy().astype(int)]
    other = energies[np.arange(n), (labels == "high").to_numpy().astype(int)]
    assert own.mean() < other.mean()


def test_parameters_are_scikit_learns():
    model = TabEBM(num_steps=7, bandwidth="loo")
    assert model.get_params()["num_steps"] == 7
    model.set_params(num_steps=9, backend="network")
    copy = clone(model)
    assert copy.get_params()["num_steps"] == 9 and copy.get_params()["backend"] == "network"
    assert not hasattr(copy, "class_params_")


@pytest.mark.parametrize("X,y,settings,message", [
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]], [0, 0, 0], {}, r"y has one class \(0\)"),
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0]], [0, 0, 1], {},
     "class 1 has 1 row: expected at least 2"),
    ([[1.0, np.nan], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], {},
     r"column 1 has a missing \(NaN\) cell in row 0"),
    ([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0], [1.5, 5.0]], [0, 0, 1, 1], {}, "column 1 is constant"),
    ([[1.0, 2.0], [2.0, 1.0]], [0, 1, 1], {}, r"y has shape \(3,\): expected \[2\]"),
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], {"backend": "tabpfn"},
     "backend='tabpfn': expected one of"),
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], {"backend": "in_context"},
     "backend='in_context' needs logits_fn"),
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], {"num_steps": 0},
     "num_steps=0: expected a positive int"),
    ([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.0, 1.0]], [0, 0, 1, 1], {"categorical": [5]},
     "categorical names column 5"),
])
def test_bad_input_is_one_clear_error(X, y, settings, message):
    with pytest.raises(ValueError, match=message):
        TabEBM(**settings).fit(np.asarray(X), np.asarray(y))


def test_strings_must_be_declared_categorical_and_generate_needs_a_fit():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "city": ["a", "b", "a", "b"]})
    with pytest.raises(ValueError, match="column 'city' holds 'O'-kind values such as 'a': "
                                         r"expected numbers, or declare it categorical"):
        TabEBM().fit(frame, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="not fitted yet"):
        TabEBM().generate(5)
    model = TabEBM(num_steps=5, categorical=["city"]).fit(frame, [0, 0, 1, 1])
    with pytest.raises(ValueError, match="n_per_class=0: expected a positive int"):
        model.generate(0)


def test_a_user_backend_object_is_taken_as_is():
    backend = in_context_backend(lambda cx, cy, x: jnp.stack([-jnp.sum(x ** 2), 0.0]))
    X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    model = TabEBM(backend=backend, num_steps=5).fit(X, [0, 0, 1, 1])
    assert model.backend_ is backend


def test_a_tight_class_keeps_its_chains_at_the_paper_step():
    """Iris at 20 stratified rows: setosa's Scott bandwidth is 0.19, where a step of 0.1 on the
    kernel energy (curvature 1/h^2 = 27) overshoots every mode and the chains reach 1e4; in
    units of h^2 they stay within the rows' range."""
    from ebm_jax.applications.tabular.evaluation import stratified_split

    X, y = load_iris(return_X_y=True)
    X_train, y_train, _, _ = stratified_split(X, y, 20, seed=0)
    model = TabEBM(num_steps=100).fit(X_train, y_train)
    assert float(model.class_params_.bandwidth.min()) < 0.2
    Z = model.sample_encoded(30, seed=0)
    assert np.abs(Z).max() < np.abs(model.rows_).max() + 0.5


def test_pooled_bandwidths_come_from_every_class_of_the_table(iris_small):
    """``bandwidth="scott_pooled"``: the estimator hands each class's fit the spread of the
    whole table's rows around their own class means (computed here in NumPy from the
    standardised rows it keeps), not the unit spreads a class fitted alone gets."""
    X_train, y_train, _, _ = iris_small
    model = TabEBM(bandwidth="scott_pooled", noise_scale=None, num_steps=20)
    model.fit(X_train, y_train)
    classes = [model.rows_[c][model.row_mask_[c]] for c in range(3)]
    deviations = np.concatenate([rows - rows.mean(0) for rows in classes])
    spread = np.sqrt((deviations ** 2).sum(0) / (len(deviations) - 3))
    expected = np.maximum(spread, 0.1 * spread.mean()) * 8 ** (-1 / (4 + 4))
    np.testing.assert_allclose(model.class_params_.bandwidth, np.tile(expected, (3, 1)),
                               rtol=1e-5)
    assert model.generate(5, seed=0)[0].shape == (15, 4)


@pytest.mark.slow  # a long statistical check (over 1.5 s)
def test_the_temperature_form_samples_the_kernel_density():
    """With noise sqrt(2 step) the kernel backend's chains sample exp(-E_c): near the rows, the
    class's kernel density, a mixture of N(x_i, h^2). At the step 0.1 h^2 the discretised
    chain's components have variance h^2 / (1 - 0.05), so a class's samples have the rows' mean
    and variance var(rows) + h^2 / 0.95 (2,000 chains a class: within 5 standard errors). The
    paper's noise 0.01 collapses them to the density's modes instead."""
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (12, 1)), rng.normal(3, 0.5, (12, 1))])
    y = np.repeat([0, 1], 12)
    model = TabEBM(noise_scale=None, num_steps=300).fit(X, y)
    Z = model.sample_encoded(2000, seed=0)[..., 0]
    for c in range(2):
        rows = model.rows_[c][model.row_mask_[c], 0]
        h = float(model.class_params_.bandwidth[c])
        variance = rows.var() + h ** 2 / 0.95
        assert abs(Z[c].mean() - rows.mean()) < 5 * np.sqrt(variance / 2000)
        assert abs(Z[c].var() / variance - 1) < 5 * np.sqrt(2 / 2000), (Z[c].var(), variance)
    collapsed = TabEBM(num_steps=300).fit(X, y).sample_encoded(2000, seed=0)[..., 0]
    assert collapsed[0].var() < 0.9 * Z[0].var()
