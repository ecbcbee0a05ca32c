"""Tests of the sampler-diagnostics plots (``ebm_jax.plots.diagnostics``).

Each plot is written to ``tmp_path`` and read back: the PNG must exist, have the
figure's size and draw something (many distinct colours, not a blank canvas). Bad
shapes must raise one ValueError naming the argument before anything is drawn.
"""
import numpy as np
import pytest

from ebm_jax.plots.diagnostics import save_energy_histogram, save_energy_trace


def read_png(path):
    import matplotlib.image

    assert path.exists() and path.stat().st_size > 5_000
    return matplotlib.image.imread(str(path))


def assert_drawn(image, width, height):
    assert image.shape[:2] == (height, width)
    colours = np.unique(image.reshape(-1, image.shape[-1]).round(3), axis=0)
    assert len(colours) > 20  # lines, text and antialiasing, not a blank canvas


def decaying_energies(num_chains, num_steps, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(num_steps)
    return 50.0 * np.exp(-steps / 30.0) + rng.normal(0.0, 1.0, (num_chains, num_steps))


def test_energy_trace_of_many_chains(tmp_path):
    path = tmp_path / "trace.png"
    save_energy_trace(path, decaying_energies(32, 200), title="SGLD energies")
    assert_drawn(read_png(path), 600, 380)  # figsize (6.0, 3.8) at dpi 100


def test_energy_trace_of_one_chain_with_steps_and_gaps(tmp_path):
    energies = decaying_energies(1, 50)[0]
    energies[10] = np.nan  # a non-finite step shows as a gap, without warnings
    energies[11] = np.inf
    path = tmp_path / "trace1.png"
    save_energy_trace(path, energies, steps=np.arange(50) * 10, log_scale=True)
    assert_drawn(read_png(path), 600, 380)


def test_energy_trace_mean_only(tmp_path):
    path = tmp_path / "mean.png"
    save_energy_trace(path, decaying_energies(5, 15), max_chains=0)
    assert_drawn(read_png(path), 600, 380)


def test_energy_histogram(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(-3.0, 1.0, 2000)
    samples = np.concatenate([rng.normal(-1.0, 1.5, 500), [np.nan, np.inf]])
    path = tmp_path / "hist.png"
    save_energy_histogram(path, data, samples, bins=40, title="energies")
    assert_drawn(read_png(path), 600, 380)


@pytest.mark.parametrize("energies, kwargs, message", [
    (np.zeros((2, 3, 4)), {}, r"energies has shape \(2, 3, 4\): expected \[chains, steps\]"),
    (np.zeros((3, 0)), {}, r"energies has shape \(3, 0\)"),
    (np.zeros((0,)), {}, r"energies has shape \(0,\)"),
    (np.full((2, 5), np.nan), {}, "energies: all 10 values are NaN/inf"),
    (np.zeros((2, 5)), {"steps": np.arange(4)}, r"steps has shape \(4,\): expected \(5,\)"),
    (np.zeros((2, 5)), {"max_chains": -1}, "max_chains=-1"),
])
def test_energy_trace_rejects_bad_input(tmp_path, energies, kwargs, message):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=message):
        save_energy_trace(path, energies, **kwargs)
    assert not path.exists()


@pytest.mark.parametrize("data, samples, kwargs, message", [
    (np.zeros((10, 2)), np.zeros(10), {},
     r"data_energies has shape \(10, 2\): expected a non-empty 1-D"),
    (np.zeros(10), np.zeros((3, 3)), {}, r"sample_energies has shape \(3, 3\)"),
    (np.zeros(10), np.zeros(0), {}, r"sample_energies has shape \(0,\)"),
    (np.zeros(10), np.array([np.nan, np.inf]), {}, "sample_energies: all 2 values are NaN/inf"),
    (np.zeros(10), np.zeros(10), {"bins": 0}, "bins=0"),
])
def test_energy_histogram_rejects_bad_input(tmp_path, data, samples, kwargs, message):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=message):
        save_energy_histogram(path, data, samples, **kwargs)
    assert not path.exists()
