"""Real image datasets through tensorflow-datasets, read without TensorFlow.

``tfds.data_source`` gives random access to datasets prepared as ArrayRecord
files (``tfds build NAME --file_format=array_record``); reading them needs
neither TensorFlow nor network. Nothing here downloads: a dataset that is not
prepared raises :class:`DatasetNotPreparedError` with the command that
prepares it.

- :data:`TFDS_DATASETS`: the supported datasets and how each is read
  (:class:`TFDSSpec`);
- :func:`load_source`: the random-access source of one split;
- preprocessing, pure functions of arrays: :func:`to_unit_range`,
  :func:`dequantize`, :func:`random_flip`, :func:`center_crop_resize`,
  :func:`preprocess_images`;
- :class:`TFDSBatches`: deterministic, resumable, multi-host batches: the
  batch at step ``s`` (augmentation included) is a pure function of
  ``(seed, s)``, as for the in-memory :class:`ebm_jax.data.Batches`;
- :func:`load_arrays` and :func:`tfds_ood_sets`: small evaluation sets as
  arrays, e.g. SVHN, CIFAR-100 and CelebA against CIFAR-10 for OOD detection.
"""
from __future__ import annotations

import collections
import concurrent.futures
import contextlib
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ebm_jax._checks import check_int
from ebm_jax.data.batching import batch_indices


class TFDSSpec(NamedTuple):
    """How one tfds dataset is read into images in [-1, 1].

    Attributes:
      tfds_name: the name given to ``tfds`` (may pin a version, ``"cifar10:3.0.2"``).
      image_key: the feature holding the uint8 ``[H, W, C]`` image.
      label_key: the feature holding the int class label, or None (no labels used).
      image_shape: ``(H, W, C)`` of one image after preprocessing.
      num_classes: number of classes, or None without labels.
      train_split, test_split: the split names to train and evaluate on.
      center_crop: side of the centred square cropped before resizing to
        ``image_shape``; None resizes the whole image (or nothing, when the
        stored images already have ``image_shape``).
    """

    tfds_name: str
    image_key: str
    label_key: str | None
    image_shape: tuple
    num_classes: int | None
    train_split: str
    test_split: str
    center_crop: int | None = None


TFDS_DATASETS: dict[str, TFDSSpec] = {
    "mnist": TFDSSpec("mnist", "image", "label", (28, 28, 1), 10, "train", "test"),
    "fashion_mnist": TFDSSpec("fashion_mnist", "image", "label", (28, 28, 1), 10, "train", "test"),
    "cifar10": TFDSSpec("cifar10", "image", "label", (32, 32, 3), 10, "train", "test"),
    "cifar100": TFDSSpec("cifar100", "image", "label", (32, 32, 3), 100, "train", "test"),
    "svhn_cropped": TFDSSpec("svhn_cropped", "image", "label", (32, 32, 3), 10, "train", "test"),
    # 218x178 faces: the centred 140x140 square resized to 32x32, the usual
    # CelebA-vs-CIFAR-10 OOD setting. The 40 attributes are not used as labels.
    "celeb_a": TFDSSpec("celeb_a", "image", None, (32, 32, 3), None, "train", "test",
                        center_crop=140),
}


class DatasetNotPreparedError(RuntimeError):
    """A tfds dataset is not prepared as ArrayRecord files in the data_dir (nothing downloads)."""


def _supported() -> str:
    return ", ".join(sorted(TFDS_DATASETS))


def get_spec(name: str | TFDSSpec) -> TFDSSpec:
    """The :class:`TFDSSpec` of a supported dataset (a spec is returned as is).

    Example::

      >>> get_spec("cifar10").image_shape
      (32, 32, 3)
    """
    if isinstance(name, TFDSSpec):
        return name
    if name not in TFDS_DATASETS:
        raise ValueError(f"dataset {name!r}: expected one of the supported datasets {_supported()} "
                         "(or a TFDSSpec)")
    return TFDS_DATASETS[name]


def _default_data_dir() -> str:
    import tensorflow_datasets as tfds

    return tfds.core.constants.get_default_data_dir()


def _build_command(tfds_names: Sequence[str], data_dir, *, overwrite: bool = False) -> str:
    """The ``tfds build`` command preparing datasets as ArrayRecord in ``data_dir``."""
    root = str(data_dir) if data_dir is not None else _default_data_dir()
    names = " ".join(n.split(":")[0] for n in tfds_names)
    return (f"tfds build {names} --data_dir={root} --file_format=array_record"
            + (" --overwrite" if overwrite else ""))


def _not_prepared(name: str, tfds_name: str, data_dir, builder, detail: str, *,
                  overwrite: bool = False) -> DatasetNotPreparedError:
    root = str(data_dir) if data_dir is not None else _default_data_dir()
    base = tfds_name.split(":")[0]
    command = _build_command([tfds_name], data_dir, overwrite=overwrite)
    error = DatasetNotPreparedError(
        f"dataset {name!r} is {detail} in data_dir {root!r} (looked in {builder.data_dir}), "
        "and nothing is downloaded here: prepare it as ArrayRecord on a machine with network "
        f"and tensorflow installed, `{command}`, "
        f"or copy a prepared data_dir (its {base}/ folder) from another machine and pass "
        "data_dir=...")
    error.tfds_name, error.overwrite = tfds_name, overwrite
    return error


def load_source(name: str, split: str, *, data_dir=None):
    """The random-access source of one split of a prepared tfds dataset.

    A thin, offline wrapper of ``tfds.data_source(..., download=False)``: each
    element is a dict of NumPy features (``source[i]["image"]`` is uint8
    ``[H, W, C]``), ``len(source)`` is the split size, and
    ``source.__getitems__(indices)`` reads many at once.

    Args:
      name: a key of :data:`TFDS_DATASETS`, or any other tfds dataset name.
      split: a split name or slice, like ``"train"`` or ``"test[:1000]"``.
      data_dir: the tfds data directory (default ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).

    Raises:
      ValueError: tfds does not know ``name``, or the prepared dataset has no ``split``.
      DatasetNotPreparedError: the dataset is not prepared as ArrayRecord in
        ``data_dir``; the message gives the ``tfds build`` command.

    Example::

      >>> source = load_source("cifar10", "train", data_dir="/data/tfds")  # doctest: +SKIP
      >>> len(source), source[0]["image"].shape                           # doctest: +SKIP
      (50000, (32, 32, 3))
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import file_adapters

    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r}: expected a dataset name, one of {_supported()}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split={split!r}: expected one split name or slice, like 'train' or "
                         "'test[:1000]'")
    tfds_name = TFDS_DATASETS[name].tfds_name if name in TFDS_DATASETS else name
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise ValueError(f"dataset {name!r}: tfds does not know it; expected one of the supported "
                         f"datasets {_supported()} (or another tfds name)") from None
    if builder.is_prepared():
        formats = builder.info.available_file_formats() or {builder.info.file_format}
        if not formats & set(file_adapters.FileFormat.with_random_access()):
            found = ", ".join(sorted(str(getattr(f, "value", f)) for f in formats))
            raise _not_prepared(name, tfds_name, data_dir, builder,
                                f"prepared as {found}, not array_record (no random access),",
                                overwrite=True)
        try:
            builder.info.splits[split]
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"split={split!r} of dataset {name!r}: expected one of "
                             f"{list(builder.info.splits)} or a slice like 'train[:10%]' "
                             f"({err})".replace("\n", " ")) from None
    try:
        return tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except Exception:
        if builder.is_prepared():
            raise
        # With no prepared files tfds fails on the default (tfrecord) file format.
        raise _not_prepared(name, tfds_name, data_dir, builder, "not prepared") from None


# --------------------------------------------------------------------------- preprocessing


def _is_numpy_rng(rng) -> bool:
    if isinstance(rng, np.random.Generator):
        return True
    if isinstance(rng, jax.Array):
        return False
    raise ValueError(f"rng has type {type(rng).__name__}: expected a numpy.random.Generator "
                     "(host pipeline) or a JAX PRNG key (on device)")


def _check_batch(x, what: str = "x"):
    if not hasattr(x, "ndim") or x.ndim != 4:
        shape = getattr(x, "shape", None)
        raise ValueError(f"{what} has shape {shape}: expected images [N, H, W, C]")
    return x


def to_unit_range(x):
    """uint8 pixels ``[0, 255]`` to float32 ``[-1, 1]``: ``x / 127.5 - 1`` (any shape).

    NumPy in, NumPy out; a JAX array gives a JAX array.

    Example::

      >>> to_unit_range(np.array([0, 255], np.uint8))
      array([-1.,  1.], dtype=float32)
    """
    if getattr(x, "dtype", None) != np.uint8:
        raise ValueError(f"x has dtype {getattr(x, 'dtype', type(x).__name__)}: expected uint8 "
                         "pixels in [0, 255]")
    xp = jnp if isinstance(x, jax.Array) else np
    return x.astype(xp.float32) / xp.float32(127.5) - xp.float32(1.0)


def dequantize(rng, x):
    """Uniform dequantisation: each 8-bit value becomes uniform over its own bin of width 2/256.

    ``x`` from :func:`to_unit_range` holds ``k / 127.5 - 1`` for pixels ``k``
    in 0..255. The result is ``(x + 1) * 255/256 - 1 + u``, ``u ~ U[0, 2/256)``,
    i.e. uniform on ``[2k/256 - 1, 2(k+1)/256 - 1)``: the bins tile ``[-1, 1)``
    without overlap. In ``[0, 1]`` units this is ``x * 255/256 + U[0, 1/256)``,
    as in IGEBM (Du & Mordatch, 2019) and the flow literature.

    Args:
      rng: a ``numpy.random.Generator`` (NumPy result) or a JAX PRNG key
        (JAX result, usable under ``jit``).
      x: float images in ``[-1, 1]``, any shape.

    Example::

      >>> x = to_unit_range(np.array([0, 255], np.uint8))
      >>> d = dequantize(np.random.default_rng(0), x)
      >>> bool(((d >= -1) & (d < 1)).all())
      True
    """
    if not jnp.issubdtype(getattr(x, "dtype", np.uint8), jnp.floating):
        raise ValueError(f"x has dtype {getattr(x, 'dtype', type(x).__name__)}: expected float "
                         "images in [-1, 1] (apply to_unit_range first)")
    if _is_numpy_rng(rng):
        return _add_bin_noise(x, rng.random(np.shape(x), dtype=np.float32)).astype(x.dtype)
    return _add_bin_noise(x, jax.random.uniform(rng, jnp.shape(x), x.dtype))


def _add_bin_noise(x, u):
    """``x`` on the 8-bit grid, ``u`` uniform on [0, 1): the point at ``u`` within ``x``'s bin."""
    return (x + 1) * (255.0 / 256.0) - 1 + u * (2.0 / 256.0)


def _flip_rows(flip, x):
    """Rows of ``x`` [N, H, W, C] mirrored left to right where ``flip`` [N] is true."""
    if isinstance(x, jax.Array) or isinstance(flip, jax.Array):
        return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
    out = np.array(x, copy=True)
    out[flip] = out[flip][:, :, ::-1]
    return out


def random_flip(rng, x):
    """Flip each image left to right with probability 1/2, ``[N, H, W, C] -> [N, H, W, C]``.

    Args:
      rng: a ``numpy.random.Generator`` or a JAX PRNG key (as in :func:`dequantize`).
      x: ``[N, H, W, C]`` images of any dtype.

    Example::

      >>> random_flip(np.random.default_rng(0), np.zeros((8, 32, 32, 3))).shape
      (8, 32, 32, 3)
    """
    x = _check_batch(x)
    if _is_numpy_rng(rng):
        return _flip_rows(rng.random(x.shape[0]) < 0.5, x)
    return _flip_rows(jax.random.bernoulli(rng, 0.5, (x.shape[0],)), x)


def center_crop_resize(x: np.ndarray, crop: int | None, size: Sequence[int]) -> np.ndarray:
    """Crop the centred ``crop x crop`` square, then resize to ``size`` (antialiased bilinear).

    The resize is PIL's bilinear filter (antialiased when shrinking, like
    torchvision's ``Resize``); uint8 images stay uint8, float images float32.

    Args:
      x: ``[N, H, W, C]`` NumPy images.
      crop: side of the centred square, or None for no crop.
      size: ``(height, width)`` of the result.

    Returns:
      ``[N, size[0], size[1], C]`` images.

    Example::

      >>> faces = np.zeros((4, 218, 178, 3), np.uint8)
      >>> center_crop_resize(faces, 140, (32, 32)).shape
      (4, 32, 32, 3)
    """
    from PIL import Image

    x = _check_batch(np.asarray(x))
    n, h, w, c = x.shape
    try:
        out_h, out_w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size={size!r}: expected (height, width) positive ints") from None
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size={size!r}: expected (height, width) positive ints")
    if crop is not None:
        check_int("crop", crop, 1, min(h, w),
                  expected=f"an int in [1, {min(h, w)}] for images {h}x{w}")
        top, left = (h - crop) // 2, (w - crop) // 2
        x = x[:, top:top + crop, left:left + crop]
        h = w = int(crop)
    if (h, w) == (out_h, out_w):
        return x
    bilinear = Image.Resampling.BILINEAR
    if x.dtype == np.uint8 and c in (1, 3, 4):
        images = [Image.fromarray(im[..., 0] if c == 1 else im) for im in x]
        out = np.stack([np.asarray(im.resize((out_w, out_h), bilinear)) for im in images])
        return out.reshape(n, out_h, out_w, c)
    planes = np.asarray(x, np.float32).transpose(0, 3, 1, 2).reshape(n * c, h, w)
    out = np.stack([np.asarray(Image.fromarray(p).resize((out_w, out_h), bilinear))
                    for p in planes])
    return out.reshape(n, c, out_h, out_w).transpose(0, 2, 3, 1)


def preprocess_images(images: np.ndarray, spec: str | TFDSSpec) -> np.ndarray:
    """Stored uint8 images to the spec's float32 ``[N, *spec.image_shape]`` in ``[-1, 1]``.

    Crops and resizes as the spec says (CelebA: centred 140x140 to 32x32),
    then :func:`to_unit_range`. No randomness.

    Example::

      >>> preprocess_images(np.zeros((2, 218, 178, 3), np.uint8), "celeb_a").shape
      (2, 32, 32, 3)
    """
    spec = get_spec(spec)
    images = _check_batch(np.asarray(images), "images")
    h, w, c = spec.image_shape
    if images.shape[-1] != c:
        raise ValueError(f"images have shape {images.shape}: expected {c} channels for "
                         f"{spec.tfds_name} (image_shape {spec.image_shape})")
    return to_unit_range(center_crop_resize(images, spec.center_crop, (h, w)))


# --------------------------------------------------------------------------- reading


def _read(source, indices) -> list:
    keys = [int(i) for i in indices]
    getitems = getattr(source, "__getitems__", None)
    if getitems is not None:
        return list(getitems(keys))
    return [source[k] for k in keys]


def _stack(examples: list, spec: TFDSSpec):
    """Examples (dicts) to ``(x float32 [n, *image_shape] in [-1, 1], y int32 [n] or None)``."""
    images = np.stack([np.asarray(ex[spec.image_key]) for ex in examples])
    if images.ndim == 3:  # grayscale stored as [H, W]
        images = images[..., None]
    x = preprocess_images(images, spec)
    y = None
    if spec.label_key is not None:
        y = np.asarray([ex[spec.label_key] for ex in examples], np.int32)
    return x, y


def _check_example(example, spec: TFDSSpec) -> None:
    keys = sorted(example) if hasattr(example, "keys") else type(example).__name__
    needed = [spec.image_key] + ([spec.label_key] if spec.label_key is not None else [])
    if not hasattr(example, "keys") or any(k not in example for k in needed):
        raise ValueError(f"the source's examples have keys {keys}: expected {needed} "
                         f"for {spec.tfds_name}")


def _check_int(value, field: str, low: int) -> int:
    return check_int(field, value, low, expected=f"an int >= {low}")


_AUGMENT_STREAM = 0x6562  # separates augmentation seeds from the shuffling seeds


def example_rng(seed: int, step: int, position: int) -> np.random.Generator:
    """The augmentation generator of the example at ``position`` of the global batch at ``step``.

    A pure function of its arguments (``SeedSequence(seed, spawn_key=...)``),
    so a resumed run and every process slice draw the same noise and flips.
    :class:`TFDSBatches` draws from it one uniform for the flip (flip < 1/2),
    then the ``[H, W, C]`` uniforms of :func:`dequantize`, each as enabled.
    """
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(_AUGMENT_STREAM, int(step), int(position))))


class TFDSBatches:
    """Deterministic, resumable ``{"x", "y"}`` batches read from a tfds source.

    The global batch at step ``s`` holds the examples
    ``batch_indices(len(source), batch_size, s, seed)`` (the same epoch
    permutations as :class:`ebm_jax.data.Batches`), preprocessed by the spec
    and augmented with generators seeded by ``(seed, s, position in the global
    batch)`` (:func:`example_rng`). So the batch at step ``s`` depends on
    ``(seed, s)`` alone: resuming needs only the step stored in the
    checkpoint, and the slices of all processes concatenate to the global batch.

    Args:
      source: a random-access source (:func:`load_source`, or any sequence of
        example dicts).
      spec: a :class:`TFDSSpec` or a key of :data:`TFDS_DATASETS`.
      batch_size: the global batch size (all processes together).
      seed: non-negative int seeding the order and the augmentation.
      start_step: the step of the first batch (resume from the checkpoint's step).
      dequantize: add uniform noise of one quantisation bin (:func:`dequantize`).
      flip: random horizontal flips (:func:`random_flip`).
      process_index, process_count: this process's slice of the global batch:
        rows ``process_index * B_local : (process_index + 1) * B_local`` with
        ``B_local = batch_size // process_count`` (``jax.process_index()`` and
        ``jax.process_count()`` on multi-host runs).
      prefetch: batches prepared ahead on as many background threads (0: none).
        It changes when batches are made, never what they hold.

    Yields:
      ``{"x": float32 [B_local, H, W, C], "y": int32 [B_local]}``; without a
      label key in the spec (CelebA) only ``"x"``.

    Example::

      >>> # source = load_source("cifar10", "train"); here a stand-in of the same form:
      >>> source = [{"image": np.zeros((32, 32, 3), np.uint8), "label": i % 10}
      ...           for i in range(256)]
      >>> batches = TFDSBatches(source, "cifar10", 128, seed=0, start_step=100, flip=True)
      >>> batch = next(batches)        # the batch step 100 of an uninterrupted run sees
      >>> batches.batch(1234)["x"].shape   # any step, without iterating
      (128, 32, 32, 3)
      >>> batches.close()
    """

    def __init__(self, source, spec: str | TFDSSpec, batch_size: int, *, seed: int,
                 start_step: int = 0, dequantize: bool = True, flip: bool = False,
                 process_index: int = 0, process_count: int = 1, prefetch: int = 0):
        self.spec = get_spec(spec)
        self.seed = _check_int(seed, "seed", 0)
        self.step = _check_int(start_step, "start_step", 0)
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.process_count = _check_int(process_count, "process_count", 1)
        self.process_index = _check_int(process_index, "process_index", 0)
        self._prefetch = _check_int(prefetch, "prefetch", 0)
        if self.process_index >= self.process_count:
            raise ValueError(f"process_index={process_index!r}: expected an int in "
                             f"[0, {self.process_count}) for process_count={self.process_count}")
        if self.batch_size % self.process_count:
            raise ValueError(f"batch_size={batch_size!r}: expected a multiple of "
                             f"process_count={self.process_count} (each process takes an "
                             "equal slice of the global batch)")
        self.num_examples = len(source)
        batch_indices(self.num_examples, self.batch_size, 0, self.seed)  # validates the size
        _check_example(source[0], self.spec)
        self.source = source
        self.local_batch_size = self.batch_size // self.process_count
        self.steps_per_epoch = self.num_examples // self.batch_size
        self._dequantize, self._flip = bool(dequantize), bool(flip)
        self._pool = None
        self._pending: collections.deque = collections.deque()

    def batch(self, step: int) -> dict:
        """This process's slice of the global batch at ``step``, a pure function of the step."""
        step = _check_int(step, "step", 0)
        first = self.process_index * self.local_batch_size
        idx = batch_indices(self.num_examples, self.batch_size, step, self.seed)
        x, y = _stack(_read(self.source, idx[first:first + self.local_batch_size]), self.spec)
        if self._dequantize or self._flip:
            flip = np.zeros(x.shape[0], bool)
            noise = np.empty_like(x) if self._dequantize else None
            for row in range(x.shape[0]):  # each example's draws: the flip, then its noise
                rng = example_rng(self.seed, step, first + row)
                if self._flip:
                    flip[row] = rng.random() < 0.5
                if self._dequantize:
                    noise[row] = rng.random(x.shape[1:], dtype=np.float32)
            if self._flip:
                x = _flip_rows(flip, x)
            if self._dequantize:
                x = _add_bin_noise(x, noise)
        out = {"x": x}
        if y is not None:
            out["y"] = y
        return out

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        if self._prefetch == 0:
            out = self.batch(self.step)
        else:
            if self._pending and self._pending[0][0] != self.step:  # step was moved by hand
                self._cancel()
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._prefetch, thread_name_prefix="TFDSBatches")
            while len(self._pending) < self._prefetch + 1:
                s = self.step + len(self._pending)
                self._pending.append((s, self._pool.submit(self.batch, s)))
            out = self._pending.popleft()[1].result()
        self.step += 1
        return out

    def _cancel(self) -> None:
        while self._pending:
            self._pending.popleft()[1].cancel()

    def close(self) -> None:
        """Stop the prefetch threads (a no-op without prefetch)."""
        self._cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # a half-built object, or interpreter shutdown
            self.close()


# --------------------------------------------------------------------------- arrays


def _arrays(source, spec: TFDSSpec, limit: int | None, chunk: int = 1024):
    n = len(source) if limit is None else min(limit, len(source))
    if n == 0:
        raise ValueError(f"the split of {spec.tfds_name!r} is empty: expected examples")
    _check_example(source[0], spec)
    xs, ys = [], []
    for start in range(0, n, chunk):
        x, y = _stack(_read(source, range(start, min(start + chunk, n))), spec)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), (None if spec.label_key is None else np.concatenate(ys))


def load_arrays(name: str | TFDSSpec, split: str, *, data_dir=None,
                limit: int | None = None):
    """A whole split (or its first ``limit`` examples) as arrays, for evaluation.

    Args:
      name: a key of :data:`TFDS_DATASETS` or a :class:`TFDSSpec`.
      split: a split name or slice, like ``"test"``.
      data_dir: the tfds data directory (as in :func:`load_source`).
      limit: read only the first ``limit`` examples.

    Returns:
      ``(x, y)``: ``x`` float32 ``[N, *image_shape]`` in ``[-1, 1]`` (no
      noise, no flips), ``y`` int32 ``[N]``, or None for datasets without labels.

    Example::

      >>> x, y = load_arrays("cifar10", "test", limit=1000)  # doctest: +SKIP
      >>> x.shape, y.shape  # doctest: +SKIP
      ((1000, 32, 32, 3), (1000,))
    """
    spec = get_spec(name)
    if limit is not None:
        limit = _check_int(limit, "limit", 1)
    source = load_source(name if isinstance(name, str) else spec.tfds_name, split,
                         data_dir=data_dir)
    return _arrays(source, spec, limit)


def tfds_ood_sets(in_name: str = "cifar10",
                  out_names: Sequence[str] = ("svhn_cropped", "cifar100", "celeb_a"), *,
                  split: str = "test", limit: int | None = None,
                  data_dir=None) -> dict[str, np.ndarray]:
    """Real out-of-distribution sets for a model trained on ``in_name``.

    The papers' setting (JEM, IGEBM): a CIFAR-10 model scored on SVHN,
    CIFAR-100 and CelebA (centred crop resized to 32x32). Every name and
    shape is checked, and every source opened, before any image is read;
    one :class:`DatasetNotPreparedError` names all the missing datasets and
    the one command that prepares them.

    Args:
      in_name: the in-distribution dataset (only its image shape is used).
      out_names: the OOD datasets, keys of :data:`TFDS_DATASETS`.
      split: the split read from each.
      limit: read only the first ``limit`` examples of each.
      data_dir: the tfds data directory (as in :func:`load_source`).

    Returns:
      ``{out_name: float32 [N, *image_shape] in [-1, 1]}``, ``N`` the split's
      size or ``limit``; the in-distribution set itself comes from
      :func:`load_arrays`.

    Example::

      >>> sets = tfds_ood_sets(limit=1000)  # doctest: +SKIP
      >>> {k: v.shape for k, v in sets.items()}  # doctest: +SKIP
      {'svhn_cropped': (1000, 32, 32, 3), 'cifar100': (1000, 32, 32, 3),
       'celeb_a': (1000, 32, 32, 3)}
    """
    in_spec = get_spec(in_name)
    if isinstance(out_names, str) or not out_names:
        raise ValueError(f"out_names={out_names!r}: expected a non-empty sequence of names "
                         f"from {_supported()}")
    if limit is not None:
        limit = _check_int(limit, "limit", 1)
    for out in out_names:
        spec = get_spec(out)
        if out == in_name:
            raise ValueError(f"out_names={tuple(out_names)!r}: expected datasets other than the "
                             f"in-distribution {in_name!r}")
        if tuple(spec.image_shape) != tuple(in_spec.image_shape):
            raise ValueError(f"dataset {out!r} has images {spec.image_shape}: expected the "
                             f"in-distribution shape {in_spec.image_shape} of {in_name!r}")
    sources, missing = {}, []
    for out in out_names:
        try:
            sources[out] = load_source(out, split, data_dir=data_dir)
        except DatasetNotPreparedError as err:
            missing.append(err)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        names = [err.tfds_name for err in missing]
        command = _build_command(names, data_dir, overwrite=any(e.overwrite for e in missing))
        root = str(data_dir) if data_dir is not None else _default_data_dir()
        raise DatasetNotPreparedError(
            f"datasets {', '.join(map(repr, names))} are not prepared as ArrayRecord in data_dir "
            f"{root!r}, and nothing is downloaded here: prepare them on a machine with network "
            f"and tensorflow installed, `{command}`, or copy a prepared "
            "data_dir from another machine and pass data_dir=...")
    return {out: _arrays(sources[out], get_spec(out), limit)[0] for out in out_names}


__all__ = ["TFDS_DATASETS", "DatasetNotPreparedError", "TFDSBatches", "TFDSSpec",
           "center_crop_resize", "dequantize", "example_rng", "get_spec", "load_arrays",
           "load_source", "preprocess_images", "random_flip", "tfds_ood_sets", "to_unit_range"]
