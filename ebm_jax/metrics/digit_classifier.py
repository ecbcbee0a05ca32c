"""A fixed feature extractor for 8x8 digits: the penultimate layer of a small classifier.

The yardstick of generated digits (:mod:`ebm_jax.metrics.digit_yardstick`) compares sets of
*features*, as FID compares InceptionV3 features of natural images. Here the features are
the 32 units of the last hidden layer of an MLP 64-128-32-10 with Swish
(:class:`ebm_jax.nets.MLP`, 12,810 parameters) that classifies scikit-learn's digits
(:func:`ebm_jax.data.load_digits`, pixels in [-1, 1]), centred and scaled once: minus their
mean over the training digits, divided by one number, the root mean variance of a feature
over the training digits (so real digits have features of about unit scale; distances are
the layer's own up to that one factor). Its weights and the two constants ship with the
package (``digit_classifier.npz``, 53 KB), so every run, test and benchmark measures with the
same network, offline.

How the weights were made (:func:`train_digit_classifier`, deterministic): the network
initialised by ``nnx.Rngs(0)``; the 1,437 training digits as one full batch (no shuffling,
no batch order); AdamW (learning rate 3e-3, weight decay 1e-4) for 500 steps, every step's
inputs with Gaussian noise of std 0.3 drawn from a fixed key (features that stay sensible on
samples that are not quite digits); float32, one jitted ``lax.scan``, about 2 seconds on a
CPU. Test accuracy on the 360 test digits: :data:`TEST_ACCURACY` (0.9861, 355 of 360).
Rebuild the file with::

    python -m ebm_jax.metrics.digit_classifier            # writes digit_classifier.npz

On the machine and XLA flags that wrote it this reproduces it bit for bit; elsewhere float
rounding (another CPU's vector width, other fusions) moves the weights by a few parts in a
million over the 500 steps, and the features as little (the test checks a bound).

Example::

    >>> from ebm_jax.data import load_digits
    >>> digits = load_digits()
    >>> digit_features(digits.x_test).shape                    # [N, 64] -> [N, 32]
    (360, 32)
    >>> accuracy = np.mean(digit_logits(digits.x_test).argmax(1) == digits.y_test)
    >>> bool(accuracy == TEST_ACCURACY)
    True
"""
from __future__ import annotations

import argparse
import functools
import os
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ebm_jax._checks import check_int
from ebm_jax.nets import MLP

__all__ = ["FEATURE_DIM", "NORMALISATION", "NUM_PIXELS", "TEST_ACCURACY", "WEIGHTS_FILE",
           "digit_features",
           "digit_logits", "load_digit_classifier", "save_digit_classifier",
           "train_digit_classifier"]

NUM_PIXELS = 64               # 8 x 8, flattened
HIDDEN = (128, 32)            # the last hidden layer is the feature layer
FEATURE_DIM = HIDDEN[-1]
NUM_CLASSES = 10
ACTIVATION = "swish"
SEED = 0                      # network initialisation and the input noise's key
NUM_STEPS = 500
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
INPUT_NOISE = 0.3             # std of the Gaussian noise on every step's inputs
BATCH_SIZE = 512              # features are computed in fixed batches (one compile)
TEST_ACCURACY = 355 / 360     # the shipped weights on load_digits().x_test
WEIGHTS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digit_classifier.npz")

# {"layers/0/linear/kernel": [64, 128], ..., "feature_mean": [32], "feature_scale": []}: flat
# names -> float32 arrays, the network's and the features' normalisation
Params = dict
NORMALISATION = ("feature_mean", "feature_scale")


def _network(seed: int) -> MLP:
    return MLP(NUM_PIXELS, HIDDEN, NUM_CLASSES, activation=ACTIVATION, rngs=nnx.Rngs(seed))


def _name(path) -> str:
    return "/".join(str(getattr(entry, "key", entry)) for entry in path)


@functools.lru_cache(maxsize=1)
def _template():
    """The network's graph, the structure of its params and their flat names, in leaf order
    (traced abstractly: no initialisation is computed)."""
    graphdef, state, rest = nnx.split(nnx.eval_shape(lambda: _network(SEED)), nnx.Param, ...)
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]
    shapes = {_name(path): tuple(leaf.shape) for path, leaf in leaves}
    return graphdef, jax.tree.structure(state), rest, shapes


def _initial_params(seed: int) -> Params:
    _, state, _ = nnx.split(_network(seed), nnx.Param, ...)
    leaves = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]
    return {_name(path): jnp.asarray(leaf, jnp.float32) for path, leaf in leaves}


def _apply(params: Params, x: jax.Array, features_only: bool) -> jax.Array:
    """``x [B, 64]`` -> the feature layer ``[B, 32]`` or the logits ``[B, 10]``."""
    graphdef, treedef, rest, shapes = _template()
    state = jax.tree.unflatten(treedef, [params[name] for name in shapes])
    net = nnx.merge(graphdef, state, rest)
    h = x.reshape(x.shape[0], -1)
    for layer in net.layers[:-1]:
        h = net.activation(layer(h))
    return h if features_only else net.layers[-1](h)


_apply_jit = jax.jit(_apply, static_argnums=2)


def train_digit_classifier(*, num_steps: int = NUM_STEPS, seed: int = SEED) -> Params:
    """Train the feature extractor's classifier as the shipped weights were trained.

    Full batch over the 1,437 training digits of :func:`ebm_jax.data.load_digits`, AdamW
    (3e-3, weight decay 1e-4), inputs with Gaussian noise of std 0.3 drawn from
    ``jax.random.key(seed)`` folded with the step; the network initialised by
    ``nnx.Rngs(seed)``. One jitted ``lax.scan``: deterministic on one machine.

    Returns:
      The params as a flat dict of float32 NumPy arrays (``"layers/0/linear/kernel"``
      ``[64, 128]``, ...), with the features' normalisation measured on the training digits
      (``"feature_mean"`` ``[32]``, ``"feature_scale"`` ``[]``), as
      :func:`load_digit_classifier` returns them.
    """
    from ebm_jax.data import load_digits

    num_steps = check_int("num_steps", num_steps, 1)
    seed = check_int("seed", seed, 0)
    data = load_digits()
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    optimizer = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    noise_key = jax.random.key(seed)

    def loss(params, step):
        noisy = x + INPUT_NOISE * jax.random.normal(jax.random.fold_in(noise_key, step), x.shape)
        logits = _apply(params, noisy, False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def train(params):
        def step(carry, index):
            params, opt_state = carry
            grads = jax.grad(loss)(params, index)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        params0 = (params, optimizer.init(params))
        (params, _), _ = jax.lax.scan(step, params0, jnp.arange(num_steps))
        return params

    trained = train(_initial_params(seed))
    raw = np.asarray(_apply_jit(trained, x, True), np.float64)
    params = {name: np.asarray(value, np.float32) for name, value in trained.items()}
    params["feature_mean"] = raw.mean(0).astype(np.float32)
    params["feature_scale"] = np.float32(np.sqrt(raw.var(0).mean()))
    return params


def _check_params(params, source: str) -> Params:
    shapes = {**_template()[3], "feature_mean": (FEATURE_DIM,), "feature_scale": ()}
    missing = sorted(set(shapes) - set(params))
    if missing:
        raise ValueError(f"{source} lacks {missing}: expected the arrays "
                         f"{sorted(shapes)} of the digit classifier (MLP 64-128-32-10)")
    out = {}
    for name, shape in shapes.items():
        value = np.asarray(params[name], np.float32)
        if value.shape != shape:
            raise ValueError(f"{source}: {name} has shape {value.shape}: expected {shape}")
        out[name] = value
    return out


def save_digit_classifier(params: Params, path: str = WEIGHTS_FILE) -> None:
    """Write ``params`` (from :func:`train_digit_classifier`) to an ``.npz`` file."""
    params = _check_params(params, "params")
    with open(path, "wb") as f:
        np.savez(f, **params)


def load_digit_classifier(path: Optional[str] = None) -> Params:
    """The classifier's params from ``path`` (default: the weights shipped with the package,
    read once per process). The arrays are read-only.

    Raises:
      ValueError: a file that is not the digit classifier's weights (naming what is missing).
    """
    return _load(os.path.abspath(path or WEIGHTS_FILE))


@functools.lru_cache(maxsize=4)
def _load(path: str) -> Params:
    if not os.path.isfile(path):
        raise ValueError(f"no digit classifier weights at {path!r}: expected the .npz written "
                         "by `python -m ebm_jax.metrics.digit_classifier`")
    with np.load(path) as stored:
        params = _check_params(dict(stored), path)
    for value in params.values():
        value.setflags(write=False)
    return params


def _as_digits(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim < 1 or x.shape[0] < 1 or int(np.prod(x.shape[1:])) != NUM_PIXELS:
        raise ValueError(f"x has shape {x.shape}: expected [N, 64] digits (or [N, 8, 8], "
                         "[N, 8, 8, 1]) with N >= 1, pixels in [-1, 1]")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"x has {int(np.sum(~np.isfinite(x)))} non-finite values: expected "
                         "finite pixels")
    return x.reshape(len(x), NUM_PIXELS)


def _batched(x, params: Optional[Params], features_only: bool) -> np.ndarray:
    from ebm_jax.metrics.sample_quality import extract_features

    params = load_digit_classifier() if params is None else _check_params(params, "params")
    out = extract_features(_as_digits(x), lambda batch: _apply_jit(params, batch, features_only),
                           BATCH_SIZE)
    if features_only:
        out = (out - params["feature_mean"]) / params["feature_scale"]
    return out.astype(np.float32)


def digit_features(x, params: Optional[Params] = None) -> np.ndarray:
    """The feature layer of the digit classifier, normalised: ``x [N, 64]`` in [-1, 1] ->
    ``[N, 32]``.

    Args:
      x: ``[N, 64]`` digits (``[N, 8, 8]`` and ``[N, 8, 8, 1]`` are flattened), scaled as
        :func:`ebm_jax.data.load_digits` scales them.
      params: the classifier's params; default the shipped weights.

    Returns:
      ``[N, 32]`` float32 NumPy features: the Swish activations minus their mean over the
      training digits, divided by one scale (training digits: mean 0, mean variance 1).
    """
    return _batched(x, params, True)


def digit_logits(x, params: Optional[Params] = None) -> np.ndarray:
    """The digit classifier's logits: ``x [N, 64]`` in [-1, 1] -> ``[N, 10]`` (float32)."""
    return _batched(x, params, False)


def main(argv=None) -> float:
    """Train the classifier, write its weights (``--out``, default the package's file) and
    print its test accuracy; returns the accuracy."""
    from ebm_jax.data import load_digits

    parser = argparse.ArgumentParser(description="Train the digit feature extractor's "
                                                 "classifier and write its weights.")
    parser.add_argument("--out", default=WEIGHTS_FILE, help="the .npz to write")
    args = parser.parse_args(argv)
    params = train_digit_classifier()
    save_digit_classifier(params, args.out)
    data = load_digits()
    accuracy = float(np.mean(digit_logits(data.x_test, params).argmax(1) == data.y_test))
    print(f"wrote {args.out}: test accuracy {accuracy:.4f} "
          f"({int(round(accuracy * len(data.y_test)))} of {len(data.y_test)})")
    return accuracy


if __name__ == "__main__":
    main()
