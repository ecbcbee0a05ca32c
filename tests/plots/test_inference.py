"""Tests of the inference plots (``ebm_jax.plots.inference``): the thinking curve and an
energy surface with descent paths. Each PNG is read back and must draw what it was given;
bad input raises one ValueError naming the argument before anything is drawn."""
import matplotlib.colors
import numpy as np
import pytest

from ebm_jax.plots.inference import save_energy_paths, save_thinking_curve
from tests.plots.test_diagnostics import assert_drawn, read_png


def _pixels_near(image, colour, tol=0.08):
    rgb = np.asarray(matplotlib.colors.to_rgb(colour))
    return int(np.sum(np.all(np.abs(image[..., :3] - rgb) < tol, axis=-1)))


def test_thinking_curve_draws_each_method_and_marks_trained_steps(tmp_path):
    steps = np.arange(9)
    path = tmp_path / "thinking.png"
    save_thinking_curve(path, {"System 1": (steps, 20 + 0.1 * steps),
                               "System 2": (steps, 19 + np.log1p(steps))},
                        trained_steps={"System 1": 4, "System 2": 4},
                        baselines={"feed-forward": 21.0}, title="denoising")
    image = read_png(path)
    assert_drawn(image, 640, 400)
    assert _pixels_near(image, "tab:blue") > 200 and _pixels_near(image, "tab:orange") > 200


def test_energy_paths_draws_the_paths_on_the_surface(tmp_path):
    xs, ys = np.linspace(-1, 1, 40), np.linspace(-1.5, 1.5, 50)
    grid = (ys[:, None] ** 2 - (1 - xs[None] ** 2)) ** 2
    starts = np.linspace(-0.8, 0.8, 6)
    paths = np.stack([np.repeat(starts[:, None], 8, 1),
                      np.linspace(0.05, 1.0, 8)[None] * np.sign(starts)[:, None]], -1)
    with_paths, without = tmp_path / "with.png", tmp_path / "without.png"
    save_energy_paths(with_paths, grid, (-1, 1, -1.5, 1.5), paths,
                      targets=[(xs, np.sqrt(1 - xs ** 2)), (xs, -np.sqrt(1 - xs ** 2))])
    save_energy_paths(without, grid, (-1, 1, -1.5, 1.5), paths[:, :1])  # one point a path
    image = read_png(with_paths)
    assert_drawn(image, 600, 460)
    assert _pixels_near(image, "tab:orange") > 3 * _pixels_near(read_png(without), "tab:orange")


@pytest.mark.parametrize("call, match", [
    (lambda p: save_thinking_curve(p, {}), "curves is dict"),
    (lambda p: save_thinking_curve(p, {"a": (np.arange(3), np.ones(4))}), r"curves\['a'\]"),
    (lambda p: save_thinking_curve(p, {"a": ([0, 1], [1.0, 2.0])}, trained_steps={"b": 1}),
     "trained_steps names 'b'"),
    (lambda p: save_thinking_curve(p, {"a": ([0, 1], [1.0, 2.0])}, trained_steps={"a": 3}),
     r"trained_steps\['a'\] = 3"),
    (lambda p: save_energy_paths(p, np.ones(5), (0, 1, 0, 1), np.zeros((1, 2, 2))), "energies"),
    (lambda p: save_energy_paths(p, np.ones((3, 3)), (1, 0, 0, 1), np.zeros((1, 2, 2))),
     "extent"),
    (lambda p: save_energy_paths(p, np.ones((3, 3)), (0, 1, 0, 1), np.zeros((2, 2))), "paths"),
])
def test_bad_input_is_refused_before_drawing(tmp_path, call, match):
    with pytest.raises(ValueError, match=match):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
