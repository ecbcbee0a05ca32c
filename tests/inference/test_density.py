"""conditional_density against analytic Gaussians on 1-D and 2-D grids, and exact
normalisation over a finite candidate set."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.inference import conditional_density, make_grid

pytestmark = pytest.mark.fast_compile  # small programs: mostly compilation


def gaussian(s, x, y):
    """E(x, y) = sum (y - x)^2 / (2 s^2): p(y | x) = N(x, diag(s^2))."""
    return jnp.sum((y - x) ** 2 / (2 * s ** 2))


def normal_pdf(y, mean, s):
    return np.prod(np.exp(-0.5 * ((y - mean) / s) ** 2) / (np.sqrt(2 * np.pi) * s), axis=-1)


def test_a_1d_grid_integrates_to_one_and_matches_the_gaussian():
    s, xs = 0.5, jnp.array([-1.0, 0.3, 2.0])
    grid = make_grid(-5.0, 5.0, 2000)
    out = jax.jit(jax.vmap(lambda x: conditional_density(gaussian, s, x, grid)))(xs)
    assert grid.points.shape == (2000,) and out.density.shape == (3, 2000)
    points = np.asarray(grid.points, np.float64)[:, None]
    for i, x in enumerate(np.asarray(xs)):
        density = np.asarray(out.density[i], np.float64)
        assert abs(density.sum() * grid.cell_volume - 1.0) < 1e-4
        total_variation = 0.5 * np.sum(np.abs(density - normal_pdf(points, x, s))) \
            * grid.cell_volume
        assert total_variation < 1e-3
    np.testing.assert_allclose(out.log_normalizer, np.log(np.sqrt(2 * np.pi) * s), atol=1e-4)
    np.testing.assert_allclose(out.probs, out.density * grid.cell_volume, rtol=1e-6)


def test_a_2d_grid_integrates_to_one_and_matches_the_gaussian_cell_by_cell():
    s, x = jnp.array([0.5, 0.8]), jnp.array([0.4, -0.7])
    grid = make_grid((-3.0, -5.0), (4.0, 4.0), (140, 180))
    out = jax.jit(lambda x: conditional_density(gaussian, s, x, grid))(x)
    assert grid.points.shape == (140 * 180, 2) and out.density.shape == (140 * 180,)
    density = np.asarray(out.density, np.float64)
    assert abs(density.sum() * grid.cell_volume - 1.0) < 1e-4
    expected = normal_pdf(np.asarray(grid.points, np.float64), np.asarray(x), np.asarray(s))
    assert 0.5 * np.sum(np.abs(density - expected)) * grid.cell_volume < 1e-3
    # row-major: cell (i, j) of the reshaped result sits at (axis_0[i], axis_1[j])
    on_grid = np.asarray(out.density).reshape(grid.shape)
    i, j = np.unravel_index(np.argmax(on_grid), grid.shape)
    np.testing.assert_allclose(np.asarray(grid.points).reshape(*grid.shape, 2)[i, j], x,
                               atol=0.05)


def test_a_finite_candidate_set_is_normalised_exactly():
    candidates = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    x = jnp.array([0.5, -0.5])
    out, as_cells = jax.jit(lambda x, c: (conditional_density(gaussian, 1.0, x, c),
                                          conditional_density(gaussian, 1.0, x, c,
                                                              cell_volume=0.5)))(x, candidates)
    energies = 0.5 * np.sum((np.asarray(candidates, np.float64) - np.asarray(x)) ** 2, -1)
    expected = np.exp(-energies) / np.exp(-energies).sum()
    np.testing.assert_allclose(out.probs, expected, rtol=1e-5)
    assert abs(float(out.probs.sum()) - 1.0) < 1e-6
    np.testing.assert_array_equal(out.density, out.probs)
    np.testing.assert_allclose(out.log_normalizer, np.log(np.exp(-energies).sum()), rtol=1e-5)
    np.testing.assert_allclose(as_cells.density, 2.0 * out.probs, rtol=1e-6)


@pytest.mark.parametrize("outputs, kwargs, match", [
    (make_grid(0.0, 1.0, 4), {"cell_volume": 0.25}, r"cell_volume=0.25 with a Grid"),
    (jnp.zeros((3, 2)), {"cell_volume": 0.0}, r"cell_volume=0.0: expected a positive"),
    (jnp.zeros((3, 2)), {"cell_volume": -1.0}, r"cell_volume=-1.0: expected a positive"),
    (jnp.zeros((3, 3)), {}, r"grid_or_candidates has shape \(3, 3\) with x of shape \(2,\): "
                            r"energy_fn failed on one candidate of shape \(3,\)"),
    (make_grid((0.0,) * 3, (1.0,) * 3, 2), {}, r"grid.points has shape \(8, 3\)"),
    (jnp.zeros((0, 2)), {}, r"grid_or_candidates has shape \(0, 2\): expected a non-empty"),
])
def test_bad_outputs_are_refused(outputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conditional_density(gaussian, 1.0, jnp.zeros(2), outputs, **kwargs)


@pytest.mark.parametrize("low, high, num, match", [
    (1.0, 0.0, 4, r"\(low, high\)\[0\]=\(1.0, 0.0\): expected \(low, high\) with finite"),
    ((0.0, 0.0), (1.0,), 4, r"low=\(0.0, 0.0\), high=\(1.0,\): expected two numbers"),
    (0.0, 1.0, 0, r"num=0: expected a positive int"),
    ((0.0, 0.0), (1.0, 1.0), (4, 4, 4), r"num=\(4, 4, 4\): expected one positive int or 2"),
])
def test_bad_grids_are_refused(low, high, num, match):
    with pytest.raises(ValueError, match=match):
        make_grid(low, high, num)
