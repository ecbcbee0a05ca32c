"""Adapters from a Flax NNX module to pure functions of an explicit params pytree.

The toolkit's convention is ``fn(params, x)`` with ``x`` one example and
``params`` a plain nested dict of arrays (what optax, Orbax and
``jax.tree`` see). :func:`pure` splits a module once (``nnx.split``) and
returns the function and the params; inside the function the module is
rebuilt with ``nnx.merge`` at trace time, so jitted code pays nothing for it.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
from flax import nnx


class PureModel(NamedTuple):
    """A network as a pure function and its initial parameters.

    Attributes:
      apply: ``apply(params, x) -> out`` for one example ``x`` (no batch axis).
      params: a nested dict of arrays: the trainable parameters.
    """

    apply: Callable[[Any, jax.Array], jax.Array]
    params: Any


def pure(module: nnx.Module) -> PureModel:
    """Split ``module`` into a pure per-example ``apply(params, x)`` and its params.

    Non-trainable variables (for example the power-iteration vectors of
    spectral normalisation) stay inside ``apply`` as constants.

    Example::

      >>> from ebm_jax.nets import MLP
      >>> model = pure(MLP(2, (32,), 1, rngs=nnx.Rngs(0)))
      >>> model.apply(model.params, jnp.zeros(2)).shape
      (1,)
    """
    rebuild, params = split_params(module, "PureModel.params")

    def apply(params, x):
        return rebuild(params)(x[None])[0]

    return PureModel(apply, params)


def split_params(module: nnx.Module, name: str) -> tuple[Callable[[Any], nnx.Module], Any]:
    """``(rebuild, params)``: ``module``'s trainable parameters as a nested dict of arrays, and
    ``rebuild(params)``, the module with those parameters (its other variables fresh copies
    of the module's, so that a traced call may set them), at trace time.

    Raises (from ``rebuild``):
      ValueError: params of another structure than ``params`` (named ``name`` in the message).
    """
    graphdef, params_state, rest = nnx.split(module, nnx.Param, ...)
    treedef = jax.tree.structure(params_state)
    params = nnx.to_pure_dict(params_state)
    expected = jax.tree.structure(params)

    def rebuild(params):
        # Leaves are matched by position, so the structure (keys included) must be the one we made.
        got = jax.tree.structure(params)
        if got != expected:
            raise ValueError(f"params have structure {got}: expected {expected}, "
                             f"the structure of {name}")
        state = jax.tree.unflatten(treedef, jax.tree.leaves(params))
        return nnx.merge(graphdef, state, rest, copy=True)

    return rebuild, params


def as_energy_fn(module: nnx.Module) -> PureModel:
    """Like :func:`pure` for a network with one output: ``apply`` returns a scalar energy."""
    model = pure(module)

    def energy_fn(params, x):
        out = model.apply(params, x)
        if out.shape != (1,):
            raise ValueError(f"energy network output has shape {out.shape}: expected (1,)")
        return out[0]

    return PureModel(energy_fn, model.params)
