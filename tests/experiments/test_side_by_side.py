"""The side-by-side EBT + regressor loss and the shared evaluation pieces
(:mod:`ebm_jax.experiments.objectives._side_by_side`), on analytic energies."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.experiments.objectives._side_by_side import (REGRESSOR_MSE, failure_auroc,
                                                          matched_hidden, mlp_param_count,
                                                          side_by_side_loss, side_by_side_params)
from ebm_jax.losses import ebt, ebt_params


def _energy(w, x, y):
    return 0.5 * jnp.sum((y - w * x) ** 2)


def _regressor(v, x):
    return v * x


BATCH = {"x": jnp.linspace(-1.0, 1.0, 12).reshape(4, 3),
         "y": jnp.linspace(0.5, 2.0, 12).reshape(4, 3)}


def _losses():
    ebt_loss = ebt(_energy, num_steps=2, y0="noise")
    return ebt_loss, side_by_side_loss(ebt_loss, _regressor)


def test_each_half_gets_its_own_loss_and_gradient():
    ebt_loss, loss = _losses()
    params = side_by_side_params(ebt_params(jnp.float32(0.7), 0.3), jnp.float32(0.4))
    key = jax.random.key(3)
    state = loss.init(key, params, BATCH)
    (value, (_, info)), grads = jax.jit(jax.value_and_grad(loss.loss, has_aux=True))(
        params, state, BATCH, key)
    (ebt_alone, (_, ebt_info)), ebt_grads = jax.jit(jax.value_and_grad(
        ebt_loss.loss, has_aux=True))(params["ebt"], state, BATCH, key)
    mse_alone = jnp.mean((0.4 * BATCH["x"] - BATCH["y"]) ** 2)
    np.testing.assert_allclose(info[REGRESSOR_MSE], mse_alone, rtol=1e-6)
    np.testing.assert_allclose(value, ebt_alone + mse_alone, rtol=1e-6)
    np.testing.assert_allclose(info["reconstruction"], ebt_info["reconstruction"], rtol=1e-6)
    mse_grad = jax.grad(lambda v: jnp.mean((v * BATCH["x"] - BATCH["y"]) ** 2))(0.4)
    for name in ("energy", "log_step_size"):
        assert float(jnp.abs(grads["ebt"][name])) > 0
        np.testing.assert_allclose(grads["ebt"][name], ebt_grads[name], rtol=1e-5)
    np.testing.assert_allclose(grads["regressor"], mse_grad, rtol=1e-5)


def test_params_without_both_halves_are_refused():
    _, loss = _losses()
    with pytest.raises(ValueError, match="expected a dict with keys"):
        loss.init(jax.random.key(0), ebt_params(jnp.float32(1.0)), BATCH)


@pytest.mark.parametrize("in_dim,out_dim,depth,target", [(576, 144, 2, 108_929),
                                                         (8, 2, 2, 17_153), (12, 2, 1, 900)])
def test_matched_hidden_is_within_five_percent(in_dim, out_dim, depth, target):
    hidden = matched_hidden(target, in_dim, out_dim, depth)
    assert len(hidden) == depth
    assert abs(mlp_param_count(in_dim, hidden, out_dim) / target - 1) <= 0.05


def test_matched_hidden_refuses_an_unreachable_size():
    with pytest.raises(ValueError, match="within 5%"):
        matched_hidden(100, 576, 144, 2)


def test_failure_auroc_reads_high_energy_as_failure():
    energies = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    failed = np.array([False, True, False, True, False])
    assert failure_auroc(energies, failed) == pytest.approx(5 / 6)   # 0.5 < 0.7: one miss
    assert failure_auroc(-energies, failed) == pytest.approx(1 / 6)
    assert np.isnan(failure_auroc(energies, np.zeros(5, bool)))
