"""A run on the user's own file: `data.dataset=PATH`, checked before any compute, its measured
range and scale written into the run's config."""
import dataclasses
import json

import numpy as np
import pytest

from ebm_jax import cli
from ebm_jax.experiments import make_config
from ebm_jax.experiments.config import ConfigError
from ebm_jax.data import VECTOR_OOD_SET_NAMES
from ebm_jax.experiments.data import (derived_settings, describe_derived, load_data,
                                      with_measured_data)
from ebm_jax.experiments.evaluation import evaluate_run
from tests.experiments.tiny import tiny_overrides


def _signals(path, n=460, length=64, classes=10, seed=0, scale_to=None):
    """Noisy sinusoids, one frequency per class, at unit variance (values about -3..3) or
    rescaled to ``scale_to=(low, high)`` exactly; the first 100 train, the rest test."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    t = np.linspace(0, 1, length)
    x = np.sin(2 * np.pi * (y[:, None] + 1) * t) + 0.5 * rng.normal(size=(n, length))
    x = (x - x.mean()) / x.std()
    if scale_to is not None:
        low, high = scale_to
        x = low + (x - x[:100].min()) / np.ptp(x[:100]) * (high - low)
        x[100:] = np.clip(x[100:], low, high)
    np.savez(path, x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    return str(path)


def test_config_takes_a_file_path_and_refuses_other_strings(tmp_path):
    path = str(tmp_path / "signals.npz")
    assert make_config("jem_digits", [f"data.dataset={path}"]).data.dataset == path
    with pytest.raises(ConfigError, match=r"data.dataset='signals.txt': expected one of "
                                          r"\['digits'.*or the path of an .npz or .csv file"):
        make_config("jem_digits", ["data.dataset=signals.txt"])
    with pytest.raises(ConfigError, match=r"data.target='y' with data.dataset=.*expected none"):
        make_config("jem_digits", [f"data.dataset={path}", "data.target=y"])
    with pytest.raises(ConfigError, match=r"data.value_range=\(2.0, 1.0\): expected none, or "
                                          r"low,high with low < high"):
        make_config("jem_digits", ["data.value_range=2,1"])


def test_measured_range_and_scale_are_recorded_and_drive_the_data_range(tmp_path):
    config = make_config("jem_digits", [f"data.dataset={_signals(tmp_path / 's.npz')}"])
    measured = with_measured_data(config)
    low, high = measured.data.value_range
    data = load_data(measured)
    x = np.load(config.data.dataset)["x_train"]
    assert low == pytest.approx(x.min(), abs=1e-5) and high == pytest.approx(x.max(), abs=1e-5)
    assert measured.data.scale == pytest.approx(x.std(), rel=1e-4)
    # data.normalize=auto (the default): light tails, so unit variance; the sampler's box is
    # the measured range, mapped
    norm = data.normalization
    assert norm.method == "standard"
    assert data.x_train.mean() == pytest.approx(0.0, abs=1e-5)
    assert data.x_train.std() == pytest.approx(1.0, rel=1e-4)
    assert data.data_range == pytest.approx(((low - x.mean()) / x.std(),
                                             (high - x.mean()) / x.std()), rel=1e-4)
    assert data.image_shape is None and data.num_classes == 10
    assert data.x_train.shape == (100, 64)
    derived = derived_settings(measured, data)  # step 1 and noise 0.01 act on unit variance
    assert derived["sampler_step_in_data_units"] == pytest.approx(x.std() ** 2, rel=1e-4)
    assert derived["sampler_noise_in_data_units"] == pytest.approx(0.01 * x.std(), rel=1e-4)
    assert "are mapped by" in describe_derived(measured, data)
    # a shipped dataset's config is left alone; a value set by the user is kept
    assert with_measured_data(make_config("jem_digits")) == make_config("jem_digits")
    assert derived_settings(make_config("jem_digits"), load_data(make_config("jem_digits"))) == {}
    kept = with_measured_data(make_config("jem_digits", [
        f"data.dataset={config.data.dataset}", "data.value_range=-5,5"]))
    assert kept.data.value_range == (-5.0, 5.0)
    assert load_data(kept).data_range[1] == pytest.approx((5 - x.mean()) / x.std(), rel=1e-4)

    def loaded(method):
        return load_data(dataclasses.replace(kept, data=dataclasses.replace(
            kept.data, normalize=method)))

    # range: the value range onto [-1, 1]; none: the file's units, the box its range
    assert loaded("range").data_range == (-1.0, 1.0)
    np.testing.assert_allclose(loaded("range").x_train, x / 5.0, rtol=1e-5, atol=1e-6)
    raw = loaded("none")
    assert raw.data_range == (-5.0, 5.0)
    np.testing.assert_allclose(raw.x_train, x, atol=1e-6)


def test_energy_l2_is_derived_on_a_user_file_unless_set(tmp_path):
    path = _signals(tmp_path / "s.npz")
    unset = make_config("jem_digits", [f"data.dataset={path}"])
    assert unset.objective.energy_l2 is None  # resolved when the run starts, and logged
    derived = with_measured_data(unset)
    assert derived.objective.energy_l2 == 0.1
    data = load_data(derived)
    assert derived_settings(derived, data, energy_l2_derived=True)["derived_energy_l2"] == 0.1
    assert "objective.energy_l2=0.1 (none was set" in describe_derived(
        derived, data, energy_l2_derived=True)
    explicit = make_config("jem_digits", [f"data.dataset={path}", "objective.energy_l2=0"])
    assert with_measured_data(explicit).objective.energy_l2 == 0.0  # the user's value
    # shipped data keep their presets' values
    assert make_config("jem_digits").objective.energy_l2 == 0.0
    assert make_config("cd_digits").objective.energy_l2 == 0.1


def test_heavy_tails_are_scaled_by_their_bulk_and_the_box_leaves_the_outliers_out():
    from ebm_jax.data import procedural
    from ebm_jax.data.files import normalization

    x = procedural.heavy_tailed_table(0).x_train  # Student-t, dof 2.5: std 61, bulk ~1
    auto = normalization(x)
    q25, q50, q75 = np.percentile(x, [25, 50, 75])
    assert auto.method == "robust"
    assert auto.center == pytest.approx(q50) and auto.scale == pytest.approx((q75 - q25) / 1.349)
    unclipped = (x - auto.center) / auto.scale
    inside = np.mean((unclipped >= auto.low) & (unclipped <= auto.high))
    assert inside == pytest.approx(0.99, abs=0.002)  # the box: the central 99%
    mapped = auto.apply(x)  # the 1% outside is clipped to the box (winsorised)
    assert mapped.min() == pytest.approx(auto.low) and mapped.max() == pytest.approx(auto.high)
    np.testing.assert_allclose(mapped, np.clip(unclipped, auto.low, auto.high), rtol=1e-5)
    assert np.percentile(np.abs(mapped), 50) < 1.0  # the bulk at unit scale
    # "standard" on the same data would leave the bulk far below unit scale
    assert np.percentile(np.abs(normalization(x, "standard").apply(x)), 50) < 0.05
    # light tails: auto is standard
    rng = np.random.default_rng(0)
    assert normalization(rng.normal(3.0, 2.0, (500, 4))).method == "standard"


def test_cli_refuses_a_bad_file_with_one_line_before_any_compute(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.ones((10, 3)), y_train=np.arange(10) * 0.5)
    code = cli.main(["train", "--set", f"data.dataset={bad}", "--workdir",
                     str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "y_train holds non-integer labels" in err[0]
    assert not (tmp_path / "run").exists()  # nothing written


@pytest.mark.slow
def test_a_tiny_jem_trains_on_a_signal_file_and_resumes_with_the_same_arguments(tmp_path):
    # The tiny JEM's shapes (64 values, 10 classes, 360 test examples) and data range (-1, 1):
    # the programs of the session's tiny digits run, so that they come from the compile cache.
    data = _signals(tmp_path / "signals.npz", scale_to=(-1.0, 1.0))
    workdir = str(tmp_path / "run")
    args = ["train", "--workdir", workdir, "--no-progress", "--devices", "1",
            "--set", f"data.dataset={data}"]
    args += [x for o in tiny_overrides("jem_digits") for x in ("--set", o)]
    assert cli.main(args + ["--set", "run.num_steps=4"]) == 0
    with open(f"{workdir}/config.json") as f:
        saved = json.load(f)["data"]
    assert saved["dataset"] == data and saved["value_range"] == [-1.0, 1.0] and saved["scale"] > 0
    with open(f"{workdir}/summary.json") as f:
        summary = json.load(f)
    assert 0.0 <= summary["test_accuracy"] <= 1.0 and summary["steps"] == 4
    assert summary["data_normalize"] == "standard" and summary["data_scale"] > 0
    assert (tmp_path / "run" / "samples.png").stat().st_size > 1000  # signals drawn as lines
    # the same arguments continue the run: the recorded measurements match a new measurement
    assert cli.main(args + ["--set", "run.num_steps=6", "--resume"]) == 0
    # signals get the vector OOD sets (reversal instead of flips) and robustness; no generation
    report = evaluate_run(workdir, linf_budgets=(0.1,), l2_budgets=(1.0,), pgd_steps=2,
                          figures=False)
    assert set(report["ood"]) == set(VECTOR_OOD_SET_NAMES)
    assert set(report["robust_accuracy"]) == {"linf:0", "linf:0.1", "l2:0", "l2:1"}
    assert report["metrics"] == ["classification", "ood", "robustness"]
    with pytest.raises(ConfigError, match=r"metric 'generation' needs an image dataset: "
                                          r"data.dataset=.* holds examples of shape \(64,\)"):
        evaluate_run(workdir, metrics_requested=("generation",))


def test_a_conv_model_convolves_signals_in_1d_with_the_configured_kernels(tmp_path):
    from flax import nnx

    from ebm_jax.experiments.networks import make_network, network_shape

    path = _signals(tmp_path / "signals.npz")
    config = make_config("jem_digits", [f"data.dataset={path}", "model.kind=conv",
                                        "model.kernel_sizes=7,5", "model.strides=1,2"])
    data = load_data(config)
    assert data.image_shape is None and network_shape(data) == (64, 1)
    net = nnx.eval_shape(lambda: make_network(config.model, 64, network_shape(data), 10,
                                              nnx.Rngs(0)))
    assert [c.conv.kernel.shape for c in net.convs] == [(7, 1, 1, 32), (5, 1, 32, 64)]
    assert [c.strides for c in net.convs] == [(1, 1), (2, 1)]
    with pytest.raises(ConfigError, match=r"model.kernel_sizes=\[7, 5, 3\]: expected one value "
                                          r"for every layer or one per layer"):
        make_config("jem_digits", ["model.kind=conv", "model.kernel_sizes=7,5,3"])
    wrn = make_config("jem_digits", [f"data.dataset={path}", "model.kind=wrn"])
    with pytest.raises(ConfigError, match=r"model.kind='wrn' on signals of shape \(64, 1\)"):
        make_network(wrn.model, 64, network_shape(data), 10, nnx.Rngs(0))
