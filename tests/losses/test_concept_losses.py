"""ECBM's joint loss and the concept-bottleneck loss (ebm_jax/losses/ecbm.py,
concept_bottleneck.py)."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebm_jax.applications.concepts.model import _tiny_model
from ebm_jax.losses.concept_bottleneck import concept_bottleneck_loss
from ebm_jax.losses.ecbm import (concept_pseudo_likelihood, ecbm_loss, energy_cross_entropy,
                                 perturb_concept_vectors)


@pytest.fixture(scope="module")
def tiny():
    model = _tiny_model()
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
             "y": jnp.asarray(rng.integers(0, 3, 6), jnp.int32),
             "c": jnp.asarray(rng.integers(0, 2, (6, 3)), jnp.int32)}
    return model, batch


def test_energy_cross_entropy_is_softmax_cross_entropy_of_negative_energies():
    e = jax.random.normal(jax.random.key(0), (5, 4))
    y = jnp.array([0, 3, 1, 2, 2])
    np.testing.assert_allclose(energy_cross_entropy(e, y),
                               optax.softmax_cross_entropy_with_integer_labels(-e, y), rtol=1e-6)


def test_ecbm_loss_is_the_weighted_sum_of_its_three_terms(tiny):
    model, batch = tiny
    weights = dict(class_weight=3.0, concept_weight=0.5, global_weight=2.0)
    loss = ecbm_loss(model.class_energies, model.concept_energies, model.global_energies,
                     perturb_examples=0.0, **weights)
    value, (_, info) = jax.jit(loss.loss)(model.params, (), batch, jax.random.key(0))
    p = model.params

    @jax.jit
    def by_hand(x, y, c):
        ey, ec = model.class_energies(p, x), model.concept_energies(p, x)
        eg = model.global_energies(p, c.astype(jnp.float32))
        concept = -jnp.take_along_axis(jax.nn.log_softmax(-ec), c[:, None], 1).sum()
        return (3.0 * -jax.nn.log_softmax(-ey)[y] + 0.5 * concept
                + 2.0 * -jax.nn.log_softmax(-eg)[y])

    expected = jnp.sum(jax.vmap(by_hand)(batch["x"], batch["y"], batch["c"]))
    np.testing.assert_allclose(value, expected / 6, rtol=1e-5)
    assert set(info) >= {"class_loss", "concept_loss", "global_loss", "pseudo_likelihood"}


def test_ecbm_loss_gradient_reaches_backbone_and_every_head_part(tiny):
    model, batch = tiny
    loss = ecbm_loss(model.class_energies, model.concept_energies, model.global_energies,
                     pseudo_likelihood_weight=1.0)
    grads = jax.jit(jax.grad(lambda p: loss.loss(p, (), batch, jax.random.key(0))[0]))(
        model.params)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        if "b" == getattr(path[-1], "key", None) and "out" in str(path):
            continue   # an output bias shifts every alternative alike: zero gradient
        assert float(jnp.abs(g).max()) > 0, path


def test_perturbation_flips_the_share_of_examples_and_concepts():
    c = jnp.zeros((4000, 7), jnp.int32)
    out = perturb_concept_vectors(jax.random.key(3), c, perturb_examples=0.2,
                                  perturb_concepts=0.2)
    flips = out.sum(1)
    assert set(np.unique(flips).tolist()) == {0, 2}          # ceil(0.2 * 7) = 2 concepts
    # 4,000 Bernoulli(0.2): standard deviation 0.0063; 0.025 is four of them.
    assert abs(float((flips > 0).mean()) - 0.2) < 0.025
    assert int(perturb_concept_vectors(jax.random.key(3), c, perturb_examples=0.0).sum()) == 0


@pytest.mark.slow
def test_pseudo_likelihood_is_the_exact_conditional_of_the_global_energy(tiny):
    model, _ = tiny
    c, y = jnp.array([1, 0, 1]), 2
    got = concept_pseudo_likelihood(model.global_energies, model.params, c, jnp.array(y))
    for k in range(3):
        energies = []
        for v in (0, 1):
            other = c.at[k].set(v).astype(jnp.float32)
            energies.append(model.global_energies(model.params, other)[y])
        expected = -jax.nn.log_softmax(-jnp.stack(energies))[c[k]]
        np.testing.assert_allclose(got[k], expected, rtol=1e-5)


@pytest.mark.slow
def test_pseudo_likelihood_term_enters_the_loss(tiny):
    model, batch = tiny
    values = [ecbm_loss(model.class_energies, model.concept_energies, model.global_energies,
                        perturb_examples=0.0, pseudo_likelihood_weight=w).loss(
        model.params, (), batch, jax.random.key(0)) for w in (0.0, 2.0)]
    pl = values[1][1][1]["pseudo_likelihood"]
    assert float(pl) > 0
    np.testing.assert_allclose(values[1][0] - values[0][0], 2.0 * pl, rtol=1e-5)


def test_ecbm_loss_refuses_bad_batches_and_weights(tiny):
    model, batch = tiny
    loss = ecbm_loss(model.class_energies, model.concept_energies, model.global_energies)
    with pytest.raises(KeyError, match=r"batch\['c'\]"):
        loss.init(jax.random.key(0), model.params, {"x": batch["x"], "y": batch["y"]})
    with pytest.raises(ValueError, match=r"batch\['c'\] has shape \(6,\)"):
        loss.init(jax.random.key(0), model.params, {**batch, "c": batch["c"][:, 0]})
    with pytest.raises(ValueError, match="global_weight"):
        ecbm_loss(model.class_energies, model.concept_energies, model.global_energies,
                  global_weight=-1.0)


def test_concept_bottleneck_loss_matches_its_definition():
    g = lambda p, x: x @ p["g"]                          # noqa: E731
    f = lambda p, c: jnp.tanh(c) @ p["f"]                # noqa: E731
    rng = np.random.default_rng(1)
    params = {"g": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
              "f": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)}
    batch = {"x": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
             "y": jnp.array([0, 1, 1, 0, 1]), "c": jnp.asarray(rng.integers(0, 2, (5, 3)))}
    value, (_, info) = concept_bottleneck_loss(g, f, concept_weight=0.5).loss(
        params, (), batch, jax.random.key(0))
    logits_c = batch["x"] @ params["g"]
    probs = jax.nn.sigmoid(logits_c)
    class_term = -jax.nn.log_softmax(jnp.tanh(probs) @ params["f"])[jnp.arange(5), batch["y"]]
    bce = -(batch["c"] * jax.nn.log_sigmoid(logits_c)
            + (1 - batch["c"]) * jax.nn.log_sigmoid(-logits_c))
    np.testing.assert_allclose(value, class_term.mean() + 0.5 * bce.mean(0).sum(), rtol=1e-5)
    assert list(itertools.islice(sorted(info), 2)) == ["class_accuracy", "class_loss"]
