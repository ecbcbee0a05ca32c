"""tfds datasets (``ebm_jax.data.tfds_source``): offline, without TensorFlow.

Most tests read ``tfds.testing.mock_data`` sources (deterministic random
examples, different at every index, through the real ``tfds.data_source``
call). One prepares a tiny dataset as real ArrayRecord files in a temporary
data_dir (``Tensor`` features need no TensorFlow to encode) and reads it
back without mocks, the path a copied, prepared data_dir takes.

The mock itself is ``tests/tfds_mock.py``'s :func:`mocked`.
"""
import json
import shutil
import socket
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from etils import epath

from ebm_jax.data.batching import batch_indices
from tfds_mock import mocked
from ebm_jax.data.tfds_source import (
    TFDS_DATASETS,
    DatasetNotPreparedError,
    TFDSBatches,
    TFDSSpec,
    center_crop_resize,
    dequantize,
    get_spec,
    load_arrays,
    load_source,
    preprocess_images,
    random_flip,
    tfds_ood_sets,
    to_unit_range,
)

BIN = 2.0 / 256.0


@pytest.fixture(scope="module")
def cifar():
    with mocked(40):
        return load_source("cifar10", "train")


@pytest.fixture(scope="module")
def mnist():
    with mocked(24):
        return load_source("mnist", "train")


def _raw(source, idx, key="image"):
    return np.stack([np.asarray(source[int(i)][key]) for i in idx])


def test_registry():
    assert set(TFDS_DATASETS) == {"mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped",
                                  "celeb_a"}
    for name in ("mnist", "fashion_mnist"):
        assert TFDS_DATASETS[name].image_shape == (28, 28, 1)
    for name in ("cifar10", "cifar100", "svhn_cropped", "celeb_a"):
        assert TFDS_DATASETS[name].image_shape == (32, 32, 3)
    assert TFDS_DATASETS["cifar100"].num_classes == 100
    celeb = TFDS_DATASETS["celeb_a"]
    assert celeb.label_key is None and celeb.num_classes is None and celeb.center_crop == 140
    assert get_spec("cifar10") is TFDS_DATASETS["cifar10"] and get_spec(celeb) is celeb


@pytest.mark.parametrize("name,shape", [("cifar10", (32, 32, 3)), ("mnist", (28, 28, 1))])
def test_batches_hold_the_indexed_examples_with_shapes_dtypes_and_ranges(name, shape, request):
    source = request.getfixturevalue("cifar" if name == "cifar10" else "mnist")
    batches = TFDSBatches(source, name, 8, seed=3, start_step=2, dequantize=False)
    batch = next(batches)
    assert batch["x"].shape == (8, *shape) and batch["x"].dtype == np.float32
    assert batch["y"].shape == (8,) and batch["y"].dtype == np.int32
    assert batch["x"].min() >= -1.0 and batch["x"].max() <= 1.0
    assert set(np.unique(batch["y"])) <= set(range(10)) and len(np.unique(batch["y"])) > 1
    # Exactly the examples batch_indices names, in that order, images and labels aligned.
    idx = batch_indices(len(source), 8, 2, seed=3)
    np.testing.assert_array_equal(batch["x"], to_unit_range(_raw(source, idx)))
    np.testing.assert_array_equal(batch["y"], _raw(source, idx, "label"))
    assert batches.step == 3


def test_resumed_batches_equal_those_of_an_uninterrupted_run_noise_and_flips_included(cifar):
    # 40 examples, 16 a batch: 2 steps an epoch, so steps 0..6 cross three epochs.
    kwargs = {"seed": 7, "dequantize": True, "flip": True}
    full = TFDSBatches(cifar, "cifar10", 16, **kwargs)
    run = [next(full) for _ in range(7)]
    for start in (1, 4, 5):
        resumed = TFDSBatches(cifar, "cifar10", 16, start_step=start, **kwargs)
        for s in range(start, 7):
            got = next(resumed)
            np.testing.assert_array_equal(got["x"], run[s]["x"])
            np.testing.assert_array_equal(got["y"], run[s]["y"])
    # Random access and prefetching give the same batches.
    np.testing.assert_array_equal(full.batch(5)["x"], run[5]["x"])
    with TFDSBatches(cifar, "cifar10", 16, start_step=3, prefetch=2, **kwargs) as ahead:
        for s in range(3, 7):
            np.testing.assert_array_equal(next(ahead)["x"], run[s]["x"])
    # Different steps are different batches (a loader ignoring the step would fail above) and
    # the same examples come back with fresh noise in the next epoch.
    assert not np.array_equal(run[0]["y"], run[1]["y"])
    assert not np.array_equal(run[0]["x"], run[2]["x"])
    other = TFDSBatches(cifar, "cifar10", 16, seed=8, dequantize=True, flip=True)
    assert not np.array_equal(next(other)["x"], run[0]["x"])


def test_process_slices_concatenate_to_the_global_batch(cifar):
    kwargs = {"seed": 1, "start_step": 3, "dequantize": True, "flip": True}
    whole = next(TFDSBatches(cifar, "cifar10", 16, **kwargs))
    parts = [next(TFDSBatches(cifar, "cifar10", 16, process_index=p, process_count=2, **kwargs))
             for p in range(2)]
    assert parts[0]["x"].shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(np.concatenate([p["x"] for p in parts]), whole["x"])
    np.testing.assert_array_equal(np.concatenate([p["y"] for p in parts]), whole["y"])
    with pytest.raises(ValueError, match="batch_size=15: expected a multiple of process_count=2"):
        TFDSBatches(cifar, "cifar10", 15, seed=0, process_count=2)
    with pytest.raises(ValueError, match="process_index=2"):
        TFDSBatches(cifar, "cifar10", 16, seed=0, process_index=2, process_count=2)


def test_batches_read_sources_without_getitems_alike(cifar):
    plain = [cifar[i] for i in range(len(cifar))]  # a list: no __getitems__
    a = TFDSBatches(cifar, "cifar10", 8, seed=2, flip=True).batch(3)
    b = TFDSBatches(plain, "cifar10", 8, seed=2, flip=True).batch(3)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])


def test_batch_arguments_are_checked_before_reading(cifar):
    with pytest.raises(ValueError, match="larger than the 40 examples"):
        TFDSBatches(cifar, "cifar10", 64, seed=0)
    with pytest.raises(ValueError, match="seed=-1: expected an int >= 0"):
        TFDSBatches(cifar, "cifar10", 8, seed=-1)
    with pytest.raises(ValueError, match=r"keys \['img', 'label'\]: expected \['image', 'label'\]"):
        TFDSBatches([{"img": np.zeros((32, 32, 3), np.uint8), "label": 0}] * 8, "cifar10", 4,
                    seed=0)
    with pytest.raises(ValueError, match="dataset 'emnist': expected one of the supported"):
        TFDSBatches(cifar, "emnist", 8, seed=0)


def test_to_unit_range():
    k = np.arange(256, dtype=np.uint8)
    x = to_unit_range(k)
    assert x.dtype == np.float32 and x[0] == -1.0 and x[-1] == 1.0
    np.testing.assert_allclose(np.diff(x), 2 / 255, rtol=1e-4)
    assert isinstance(to_unit_range(jnp.asarray(k)), jax.Array)
    with pytest.raises(ValueError, match="x has dtype float32: expected uint8"):
        to_unit_range(x)


@pytest.mark.parametrize("use_jax", [False, True])
def test_dequantisation_noise_fills_one_bin(use_jax):
    k = np.tile(np.arange(256, dtype=np.uint8), 200)
    x = to_unit_range(k)
    rng = jax.random.PRNGKey(0) if use_jax else np.random.default_rng(0)
    d = np.asarray(dequantize(rng, jnp.asarray(x) if use_jax else x))
    assert d.dtype == np.float32 and d.min() >= -1.0 and d.max() < 1.0
    # Uniform over pixel k's own bin [2k/256 - 1, 2(k+1)/256 - 1): position in the bin.
    within = (d + 1.0) * 128.0 - k
    assert within.min() > -1e-4 and within.max() < 1.0 + 1e-4
    assert within.mean() == pytest.approx(0.5, abs=0.01)
    assert within.std() == pytest.approx(12 ** -0.5, abs=0.01)
    again = np.asarray(dequantize(rng, jnp.asarray(x) if use_jax else x))
    assert np.array_equal(d, again) == use_jax  # a key is reused, a Generator advances
    with pytest.raises(ValueError, match="x has dtype uint8: expected float images"):
        dequantize(rng, k)


def test_loader_dequantisation_is_one_bin_of_nonzero_noise(cifar):
    clean = TFDSBatches(cifar, "cifar10", 16, seed=0, dequantize=False).batch(1)["x"]
    noisy = TFDSBatches(cifar, "cifar10", 16, seed=0, dequantize=True).batch(1)["x"]
    noise = (noisy + 1.0) * 128.0 - np.round((clean + 1.0) * 127.5)
    assert noise.min() > -1e-4 and noise.max() < 1.0 + 1e-4
    assert noise.std() > 0.25 and len(np.unique(noise)) > 1000
    # Each example draws its own noise (no noise pattern shared across the batch).
    assert not np.allclose(noise[0], noise[1])


@pytest.mark.parametrize("use_jax", [False, True])
def test_random_flip_flips_each_image_or_leaves_it(use_jax):
    x = np.arange(64 * 2 * 5 * 3, dtype=np.float32).reshape(64, 2, 5, 3)  # all asymmetric
    rng = jax.random.PRNGKey(1) if use_jax else np.random.default_rng(1)
    out = np.asarray(random_flip(rng, jnp.asarray(x) if use_jax else x))
    flipped = np.array([np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)])
    kept = np.array([np.array_equal(o, i) for o, i in zip(out, x)])
    assert (flipped ^ kept).all()
    assert 16 < flipped.sum() < 48
    with pytest.raises(ValueError, match=r"x has shape \(2, 5, 3\): expected images"):
        random_flip(rng, x[0])


def test_loader_flips_flip(cifar):
    clean = TFDSBatches(cifar, "cifar10", 16, seed=0, dequantize=False).batch(0)["x"]
    flips = TFDSBatches(cifar, "cifar10", 16, seed=0, dequantize=False, flip=True)
    out = flips.batch(0)["x"]
    flipped = np.array([np.array_equal(o, c[:, ::-1]) for o, c in zip(out, clean)])
    kept = np.array([np.array_equal(o, c) for o, c in zip(out, clean)])
    assert (flipped ^ kept).all() and 0 < flipped.sum() < 16
    # Flips are drawn per example and per step: the next epoch flips the same image otherwise.
    patterns = set()
    for step in (0, 2, 4, 6):
        b = flips.batch(step)
        idx = batch_indices(40, 16, step, seed=0)
        base = to_unit_range(_raw(cifar, idx))
        patterns.add(tuple(not np.array_equal(o, c) for o, c in zip(b["x"], base)))
    assert len(patterns) > 1


def test_unknown_dataset_names():
    with pytest.raises(ValueError, match="'no_such_dataset_xyz': tfds does not know it") as err:
        load_source("no_such_dataset_xyz", "train")
    for name in TFDS_DATASETS:
        assert name in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="dataset 'emnist': expected one of the supported"):
        load_arrays("emnist", "test")
    with pytest.raises(ValueError, match="split=None: expected one split name"):
        load_source("cifar10", None)


def test_not_prepared_error_names_the_dataset_and_the_command_quickly(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    start = time.perf_counter()
    with pytest.raises(DatasetNotPreparedError) as err:
        load_source("cifar10", "train", data_dir=tmp_path)
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert isinstance(err.value, RuntimeError) and "\n" not in message
    assert "'cifar10' is not prepared" in message and str(tmp_path) in message
    assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in message
    assert "copy a prepared data_dir" in message
    # Every missing OOD set in one error, with one command preparing them all.
    with pytest.raises(DatasetNotPreparedError, match="datasets 'svhn_cropped', 'cifar100', "
                       f"'celeb_a' are not prepared .* `tfds build svhn_cropped cifar100 celeb_a "
                       f"--data_dir={tmp_path} --file_format=array_record`"):
        tfds_ood_sets(data_dir=tmp_path, limit=2)


def test_ood_sets_have_the_in_distribution_image_shape():
    with mocked(6):
        sets = tfds_ood_sets(limit=5)
    assert list(sets) == ["svhn_cropped", "cifar100", "celeb_a"]
    for name, x in sets.items():
        assert x.shape == (5, 32, 32, 3) and x.dtype == np.float32, name
        assert x.min() >= -1.0 and x.max() <= 1.0 and x.std() > 0.05, name
    with pytest.raises(ValueError,
                       match=r"'mnist' has images \(28, 28, 1\): expected .*\(32, 32, 3\)"):
        tfds_ood_sets(out_names=("svhn_cropped", "mnist"))
    with pytest.raises(ValueError, match="other than the in-distribution 'cifar10'"):
        tfds_ood_sets(out_names=("cifar10",))


def test_celeb_a_is_center_cropped_and_resized_to_32():
    with mocked(5):
        source = load_source("celeb_a", "test")
        x, y = load_arrays("celeb_a", "test", limit=3)
    raw = _raw(source, range(3))
    assert raw.shape == (3, 218, 178, 3) and y is None
    assert x.shape == (3, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x, to_unit_range(center_crop_resize(raw, 140, (32, 32))))
    batch = TFDSBatches(source, "celeb_a", 4, seed=0).batch(0)
    assert batch["x"].shape == (4, 32, 32, 3) and set(batch) == {"x"}


def test_center_crop_resize_keeps_the_centre_only():
    faces = np.zeros((2, 218, 178, 3), np.uint8)
    faces[:, 39:179, 19:159] = 200  # exactly the centred 140x140 square
    out = center_crop_resize(faces, 140, (32, 32))
    assert out.dtype == np.uint8 and (out == 200).all()
    # The square moved two pixels right: the crop now takes in a zero border.
    moved = np.zeros_like(faces)
    moved[:, 39:179, 21:161] = 200
    assert (center_crop_resize(moved, 140, (32, 32))[:, :, 0] < 200).all()
    ramp = np.broadcast_to(np.linspace(0, 255, 178), (2, 218, 178)).astype(np.uint8)[..., None]
    as_float = center_crop_resize(ramp.astype(np.float32), None, (32, 32))
    as_uint8 = center_crop_resize(ramp, None, (32, 32))
    assert as_float.dtype == np.float32 and as_float.shape == (2, 32, 32, 1)
    assert np.abs(as_float - as_uint8).max() <= 0.5 + 1e-3
    assert preprocess_images(faces, "celeb_a").shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match=r"crop=200: expected an int in \[1, 178\]"):
        center_crop_resize(faces, 200, (32, 32))
    with pytest.raises(ValueError, match="expected 1 channels for mnist"):
        preprocess_images(faces, "mnist")


class TinyImages(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """20 train and 8 test 8x8 RGB images; image ``i`` is filled with ``i``, labelled ``i % 10``."""

    VERSION = tfds.core.Version("1.0.0")

    # tfds finds a builder's source through its package when the module name is dotted
    # (tests.data.test_tfds_source), a path that needs the importlib_resources backport;
    # this file is the answer either way.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        return epath.Path(__file__)

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(20), "test": self._generate_examples(8)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": i % 10}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    TinyImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def test_a_prepared_array_record_data_dir_is_read_without_mocks(prepared, tmp_path):
    source = load_source("tiny_images", "train", data_dir=prepared)  # found from files alone
    assert len(source) == 20 and hasattr(source, "__getitems__")
    spec = TFDSSpec("tiny_images", "image", "label", (8, 8, 3), 10, "train", "test")
    batches = TFDSBatches(source, spec, 5, seed=0, dequantize=False)
    seen = []
    for _ in range(4):  # one epoch: every example once, images and labels aligned
        b = next(batches)
        ids = np.round((b["x"][:, 0, 0, 0] + 1.0) * 127.5).astype(int)
        assert (b["x"] == b["x"][:, :1, :1, :1]).all()
        np.testing.assert_array_equal(ids % 10, b["y"])
        seen.extend(ids)
    assert sorted(seen) == list(range(20))
    # Prefetching threads reading the real files give the batches of random access.
    with TFDSBatches(source, spec, 5, seed=0, flip=True, prefetch=3) as ahead:
        for step in range(6):
            np.testing.assert_array_equal(next(ahead)["x"], ahead.batch(step)["x"])
    assert len(load_source("tiny_images", "test[:3]", data_dir=prepared)) == 3
    with pytest.raises(ValueError, match=r"split='validation' of dataset 'tiny_images': "
                                         r"expected one of \['train', 'test'\]"):
        load_source("tiny_images", "validation", data_dir=prepared)
    # Prepared in a format without random access: the error says to rebuild it.
    copy = tmp_path / "tiny_images"
    shutil.copytree(prepared / "tiny_images", copy)
    info_path = copy / "1.0.0" / "dataset_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "fileFormat": "tfrecord"}))
    with pytest.raises(DatasetNotPreparedError,
                       match="prepared as tfrecord, not array_record") as e:
        load_source("tiny_images", "train", data_dir=tmp_path)
    assert "--file_format=array_record --overwrite" in str(e.value)
