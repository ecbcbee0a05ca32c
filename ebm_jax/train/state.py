"""The one training-state pytree and its constructor."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ebm_jax.losses.base import LossTransform
from ebm_jax.train.guard import init_guard_stats


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      step: scalar int32, number of optimizer updates taken.
      params: the model's parameter pytree.
      opt_state: the optax optimizer state.
      loss_state: the loss transform's state (replay buffer, persistent chains).
      rng_key: a raw ``uint32[2]`` PRNG key (raw so that checkpoints hold plain arrays).
      ema_params: an exponential moving average of ``params`` (equal to
        ``params`` when the train step keeps no average); evaluate with it.
      guard_stats: the divergence guard's statistics of this run
        (:class:`~ebm_jax.train.guard.GuardStats`), which its relative criteria compare
        against; None in a state built by hand (then a guard's relative criteria refuse
        to trace).
    """

    step: jax.Array
    params: Any
    opt_state: Any
    loss_state: Any
    rng_key: jax.Array
    ema_params: Any
    guard_stats: Any = None


def init_train_state(rng_key: jax.Array, params: Any, optimizer: optax.GradientTransformation,
                     loss: LossTransform, example_batch: dict) -> TrainState:
    """Build the initial :class:`TrainState`.

    Args:
      rng_key: a PRNG key (raw ``uint32[2]`` or typed); split for the loss state
        and the training key.
      params: initial parameters.
      optimizer: any ``optax.GradientTransformation``.
      loss: a :class:`~ebm_jax.losses.LossTransform`.
      example_batch: a batch with the training shapes (``{"x": [B, ...], "y": [B]}``).

    The state holds ``params`` as given: a train step jitted with
    ``donate_argnums=0`` frees those arrays after its first call, so keep a
    copy (``jax.tree.map(jnp.copy, params)``) if you need the initial values.

    Example::

      >>> import optax
      >>> from ebm_jax.losses import cross_entropy
      >>> loss, optimizer = cross_entropy(lambda w, x: x @ w), optax.adam(1e-2)  # linear, 3 classes
      >>> batch = {"x": jnp.ones((8, 2)), "y": jnp.zeros(8, jnp.int32)}
      >>> state = init_train_state(jax.random.key(0), jnp.zeros((2, 3)), optimizer, loss, batch)
      >>> int(state.step), state.params.shape, state.rng_key.dtype     # a raw key in the state
      (0, (2, 3), dtype('uint32'))
    """
    if jax.dtypes.issubdtype(jnp.asarray(rng_key).dtype, jax.dtypes.prng_key):
        rng_key = jax.random.key_data(rng_key)
    loss_key, train_key = jax.random.split(rng_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=jax.jit(optimizer.init)(params),  # one program, not one per leaf shape
        loss_state=loss.init(loss_key, params, example_batch),
        rng_key=train_key,
        ema_params=copy_arrays(params),  # a copy: donation must not free it twice
        guard_stats=init_guard_stats(),
    )


def copy_arrays(tree: Any) -> Any:
    """``tree`` with every device array copied into a new buffer (in one compiled program,
    not one per leaf shape); other leaves are copied with their ``copy`` method if they have
    one, else kept. A donating train step frees what it is given: keep a copy to reuse.

    Example::

      >>> tree = {"w": jnp.ones(3), "n": 2}
      >>> copied = copy_arrays(tree)
      >>> tree["w"].delete()
      >>> copied["w"].tolist(), copied["n"]
      ([1.0, 1.0, 1.0], 2)
    """
    leaves, treedef = jax.tree.flatten(tree)
    on_device = [i for i, v in enumerate(leaves) if isinstance(v, jax.Array)]
    copies = dict(zip(on_device, _copy_device_arrays([leaves[i] for i in on_device])))
    return jax.tree.unflatten(treedef, [
        copies[i] if i in copies else (v.copy() if hasattr(v, "copy") else v)
        for i, v in enumerate(leaves)])


@jax.jit
def _copy_device_arrays(arrays):
    return [jnp.copy(a) for a in arrays]  # new buffers: a jitted function's outputs never alias
