"""Noise-level-conditioned energy networks (Flax NNX) for diffusion recovery likelihood.

One network ``E(x, t)`` serves every noise level ``t = 0..num_levels-1``: the
level is embedded (a learned per-level vector, or fixed sinusoidal features
followed by a dense layer) and the embedding modulates every hidden layer,
either by adding a per-layer shift (``conditioning="add"``) or by a per-layer
scale and shift (``conditioning="film"``, FiLM)::

    h <- act(W h + b + β_l(t))                      # "add"
    h <- act((W h + b) * (1 + γ_l(t)) + β_l(t))     # "film"

:func:`as_conditioned_energy_fn` turns the module into the toolkit's pure
per-example energy ``energy_fn(params, x, t) -> scalar``.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ebm_jax._checks import check_int, is_int
from ebm_jax.nets.adapters import PureModel
from ebm_jax.nets.layers import SNLinear, get_activation

EMBEDDINGS = ("learned", "sinusoidal")
CONDITIONINGS = ("add", "film")


def sinusoidal_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Transformer/DDPM sinusoidal features of integer levels.

    Args:
      t: ``[B]`` levels (any numeric dtype).
      dim: an even number of features.
      max_period: the longest period, in levels.

    Returns:
      ``[B, dim]``: ``sin(t ω_k)`` then ``cos(t ω_k)``, with
      ``ω_k = max_period^(-k / (dim/2 - 1))``
      (``ω_0 = 1``).
    """
    if dim < 2 or dim % 2:
        raise ValueError(f"dim={dim!r}: expected an even number >= 2")
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half) / max(half - 1, 1)).astype(np.float32)
    angles = jnp.asarray(t, jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class ConditionedMLP(nnx.Module):
    """An MLP energy ``E(x, t)`` whose hidden layers are modulated by the noise level ``t``.

    Args:
      in_features: input width (inputs are flattened first: 2 for the 2-D toys,
        64 for flat 8x8 digits).
      hidden: widths of the hidden layers (at least one).
      num_levels: number of noise levels; ``t`` must lie in ``[0, num_levels)``
        (a learned embedding returns NaN energies for levels outside).
      out_features: output width (1 for an energy).
      embedding: ``"learned"`` (an ``nnx.Embed`` vector per level) or
        ``"sinusoidal"`` (fixed features of ``t`` followed by a dense layer and the
        activation).
      embed_dim: width of the level embedding (default: the first hidden width;
        even for ``"sinusoidal"``).
      conditioning: ``"add"`` (a per-layer shift) or ``"film"`` (scale and shift).
        The projections from the embedding start at zero, so at initialisation
        every level computes the same function (the plain MLP).
      activation: a name from :data:`ebm_jax.nets.layers.ACTIVATIONS`.
      spectral_norm: spectrally normalise the main kernels (not the projections).
      rngs: ``nnx.Rngs``.

    Call: ``net(x [B, ...], t [B] int) -> [B, out_features]``.

    Example::

      >>> net = ConditionedMLP(2, (128, 128, 128), num_levels=6, rngs=nnx.Rngs(0))
      >>> energies = net(jnp.zeros((1, 2)), jnp.array([3]))     # x [B, 2], t [B]
      >>> energies.shape
      (1, 1)
      >>> model = as_conditioned_energy_fn(net)
      >>> energy = model.apply(model.params, jnp.zeros(2), 3)   # energy_fn(params, x, t)
      >>> energy.shape, bool(energy == energies[0, 0])
      ((), True)
    """

    def __init__(self, in_features: int, hidden: Sequence[int], num_levels: int, *,
                 out_features: int = 1, embedding: str = "learned", embed_dim: int | None = None,
                 conditioning: str = "film", activation: str = "swish",
                 spectral_norm: bool = False, rngs: nnx.Rngs):
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError(f"hidden={hidden!r}: expected at least one hidden layer")
        check_int("num_levels", num_levels)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding={embedding!r}: expected one of {list(EMBEDDINGS)}")
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning={conditioning!r}: expected one of "
                             f"{list(CONDITIONINGS)}")
        embed_dim = hidden[0] if embed_dim is None else embed_dim
        if not is_int(embed_dim) or embed_dim < 1 or (embedding == "sinusoidal" and embed_dim % 2):
            raise ValueError(f"embed_dim={embed_dim!r}: expected a positive int"
                             + (", even for embedding='sinusoidal'" if embedding == "sinusoidal"
                                else ""))
        self.num_levels = int(num_levels)
        self.embedding_kind = embedding
        self.conditioning = conditioning
        self.embed_dim = int(embed_dim)
        self.activation = get_activation(activation)
        if embedding == "learned":
            self.embed = nnx.Embed(self.num_levels, self.embed_dim,
                                   embedding_init=nnx.initializers.normal(1.0), rngs=rngs)
        else:
            self.embed = nnx.Linear(self.embed_dim, self.embed_dim, rngs=rngs)
        widths = [in_features, *hidden]
        self.layers = nnx.List([SNLinear(a, b, spectral_norm=spectral_norm, rngs=rngs)
                                for a, b in zip(widths[:-1], widths[1:])])
        factor = 2 if conditioning == "film" else 1
        zeros = nnx.initializers.zeros_init()
        self.projections = nnx.List([nnx.Linear(self.embed_dim, factor * w, kernel_init=zeros,
                                                rngs=rngs) for w in hidden])
        self.head = SNLinear(hidden[-1], out_features, spectral_norm=spectral_norm, rngs=rngs)

    def level_embedding(self, t: jax.Array) -> jax.Array:
        """``[B]`` integer levels -> ``[B, embed_dim]`` embedding."""
        t = jnp.asarray(t)
        if self.embedding_kind == "learned":
            return self.embed(t.astype(jnp.int32))
        return self.activation(self.embed(sinusoidal_embedding(t, self.embed_dim)))

    def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        t = jnp.broadcast_to(jnp.asarray(t), (x.shape[0],))
        emb = self.level_embedding(t)
        for layer, projection in zip(self.layers, self.projections):
            h = layer(h)
            mod = projection(emb)
            if self.conditioning == "film":
                scale, shift = jnp.split(mod, 2, axis=-1)
                h = h * (1.0 + scale) + shift
            else:
                h = h + mod
            h = self.activation(h)
        return self.head(h)


def as_conditioned_energy_fn(module: nnx.Module) -> PureModel:
    """Split a level-conditioned network into ``energy_fn(params, x, t) -> scalar`` and its params.

    Like :func:`ebm_jax.nets.as_energy_fn`, with the integer level ``t`` (a
    scalar, possibly traced) as the conditioning argument. ``x`` is one example
    (no batch axis); batch with ``jax.vmap`` (or
    :func:`ebm_jax.energies.batch_energy`, which batches ``t`` too). A concrete
    ``t`` outside ``[0, module.num_levels)`` raises ``ValueError``; a traced one
    cannot be checked (a learned embedding then gives NaN).

    Example::

      >>> model = as_conditioned_energy_fn(ConditionedMLP(2, (32, 32), 6, rngs=nnx.Rngs(0)))
      >>> energy = jax.vmap(model.apply, in_axes=(None, 0, 0))(model.params, jnp.zeros((4, 2)),
      ...                                                     jnp.arange(4))
      >>> energy.shape
      (4,)
    """
    graphdef, params_state, rest = nnx.split(module, nnx.Param, ...)
    treedef = jax.tree.structure(params_state)
    params = nnx.to_pure_dict(params_state)
    expected = jax.tree.structure(params)
    num_levels = getattr(module, "num_levels", None)

    def energy_fn(params, x, t):
        got = jax.tree.structure(params)
        if got != expected:
            raise ValueError(f"params have structure {got}: expected {expected}, "
                             "the structure of PureModel.params")
        if num_levels is not None and not isinstance(t, jax.core.Tracer):
            t_np = np.asarray(t)
            if t_np.shape != () or not 0 <= int(t_np) < num_levels:
                raise ValueError(f"t={t!r}: expected a scalar level in [0, {num_levels})")
        state = jax.tree.unflatten(treedef, jax.tree.leaves(params))
        out = nnx.merge(graphdef, state, rest)(x[None], jnp.reshape(t, (1,)))[0]
        if out.shape != (1,):
            raise ValueError(f"energy network output has shape {out.shape}: expected (1,)")
        return out[0]

    return PureModel(energy_fn, params)
