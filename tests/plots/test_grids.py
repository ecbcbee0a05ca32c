"""Sample grids: grayscale and colour tiling, and no pyplot side effects."""
import matplotlib
import numpy as np

from ebm_jax.plots import save_image_grids, tile_images


def test_tiles_keep_colour_and_grayscale():
    rgb = np.random.default_rng(0).uniform(-1, 1, (3, 4, 4, 3))
    grid = tile_images(rgb, (4, 4, 3), columns=2)
    assert grid.shape == (9, 9, 3)
    np.testing.assert_array_equal(grid[5:9, 0:4], rgb[2])  # the third tile, second row
    assert np.isnan(grid[5:9, 5:9]).all()  # a missing tile is blank
    gray = tile_images(rgb[..., :1].reshape(3, 16), (4, 4, 1), columns=3)
    assert gray.shape == (4, 14)


def test_saving_leaves_the_pyplot_backend_alone(tmp_path):
    """A notebook's inline backend must survive saving a PNG (pyplot is never switched)."""
    original = matplotlib.get_backend()
    matplotlib.use("svg")  # stands in for a notebook's inline backend
    try:
        save_image_grids(str(tmp_path / "g.png"), {"rgb": np.zeros((4, 48))}, (4, 4, 3))
        assert (tmp_path / "g.png").stat().st_size > 0
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(original)
