"""Tests of the mass matrices (``ebm_jax.samplers.mass_matrix``): the four operations are
exact linear algebra, checked against NumPy on a random symmetric positive definite matrix;
the samplers' laws with them are checked in ``test_hmc.py`` and ``test_mala.py``."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ebm_jax.samplers.mass_matrix import check_inverse_mass, check_mass_size, mass_matrix

pytestmark = pytest.mark.fast_compile

RNG = np.random.default_rng(0)
_A = RNG.normal(size=(6, 6))
SIGMA = (_A @ _A.T / 6 + 0.5 * np.eye(6)).astype(np.float32)  # SPD, condition ~ 20
VECTORS = RNG.normal(size=(5, 6)).astype(np.float32)


def _apply(fn, vectors, shape):
    """``fn`` on each row of ``vectors [n, D]`` reshaped to the position's ``shape``."""
    return np.stack([np.asarray(fn(jnp.asarray(v).reshape(shape))).reshape(-1) for v in vectors])


@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_dense_operations_are_the_linear_algebra(shape):
    """velocity = Sigma v; scale_noise = L z with L L^T = Sigma (noise of covariance Sigma);
    momentum = B z with B B^T = Sigma^-1 (the mass M); kinetic = 1/2 p^T Sigma p. A position
    of shape [2, 3] is flattened in row-major order."""
    mass = mass_matrix(SIGMA, jnp.zeros(shape))
    eye = np.eye(6, dtype=np.float32)
    np.testing.assert_allclose(_apply(mass.velocity, VECTORS, shape), VECTORS @ SIGMA.T,
                               rtol=1e-4, atol=1e-5)
    scale = _apply(mass.scale_noise, eye, shape).T  # column j = L e_j
    np.testing.assert_allclose(scale @ scale.T, SIGMA, rtol=1e-4, atol=1e-5)
    momentum = _apply(mass.momentum, eye, shape).T
    np.testing.assert_allclose(momentum @ momentum.T, np.linalg.inv(SIGMA), rtol=1e-3,
                               atol=1e-4)
    kinetic = [float(mass.kinetic_energy(jnp.asarray(p).reshape(shape))) for p in VECTORS]
    np.testing.assert_allclose(kinetic, 0.5 * np.einsum("ni,ij,nj->n", VECTORS, SIGMA, VECTORS),
                               rtol=1e-4)


def test_a_diagonal_is_the_dense_matrix_of_that_diagonal():
    diag = np.diag(SIGMA)
    position = jnp.zeros(6)
    as_vector, as_matrix = mass_matrix(diag, position), mass_matrix(np.diag(diag), position)
    for name in ("velocity", "scale_noise", "momentum"):
        np.testing.assert_allclose(_apply(getattr(as_vector, name), VECTORS, (6,)),
                                   _apply(getattr(as_matrix, name), VECTORS, (6,)),
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(as_vector.kinetic_energy(jnp.asarray(VECTORS[0])),
                               as_matrix.kinetic_energy(jnp.asarray(VECTORS[0])), rtol=1e-5)


def test_none_is_the_identity():
    mass = mass_matrix(None, jnp.zeros(6))
    for name in ("velocity", "scale_noise", "momentum"):
        np.testing.assert_array_equal(_apply(getattr(mass, name), VECTORS, (6,)), VECTORS)
    assert float(mass.kinetic_energy(jnp.asarray(VECTORS[0]))) == pytest.approx(
        0.5 * float(VECTORS[0] @ VECTORS[0]), rel=1e-6)


def test_a_traced_dense_matrix_is_taken_as_is():
    """Inside jit (window adaptation passes the estimate as an argument) only the rank and
    the size are checked."""
    @jax.jit
    def velocity(sigma, v):
        return mass_matrix(check_inverse_mass(sigma), v).velocity(v)

    np.testing.assert_allclose(velocity(jnp.asarray(SIGMA), jnp.asarray(VECTORS[0])),
                               SIGMA @ VECTORS[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("inverse_mass, message", [
    (np.ones((6, 5)), r"inverse_mass has shape \(6, 5\): expected a 1-D array \[D\]"),
    (np.ones(()), r"inverse_mass has shape \(\): expected"),
    (np.array([[1.0, 0.2], [0.0, 1.0]]), r"inverse_mass=\[\[1.0, 0.2\], \[0.0, 1.0\]\]: expected "
                                         r"a symmetric matrix"),
    (np.array([[1.0, 0.0], [0.0, 0.0]]), r"expected a symmetric positive definite matrix \(its "
                                         r"smallest eigenvalue is 0\)"),
    (np.array([[1.0, 2.0], [2.0, 1.0]]), r"smallest eigenvalue is -1\)"),
    (np.array([[1.0, np.inf], [np.inf, 1.0]]), r"expected finite entries"),
    (np.array(["a", "b"]), r"expected finite entries"),
    (np.array([1.0, 0.0]), r"expected finite positive entries"),
])
def test_bad_inverse_masses_raise_naming_the_value(inverse_mass, message):
    with pytest.raises(ValueError, match=message):
        check_inverse_mass(inverse_mass)


def test_the_size_must_match_the_flattened_position():
    check_mass_size(SIGMA, (2, 3))
    with pytest.raises(ValueError, match=r"inverse_mass has shape \(6, 6\): expected \(4, 4\), "
                                         r"from the flattened size of the position "
                                         r"\(shape \(2, 2\)\)"):
        check_mass_size(SIGMA, (2, 2))
    with pytest.raises(ValueError, match=r"inverse_mass has shape \(6,\): expected \(4,\)"):
        mass_matrix(np.ones(6), jnp.zeros((2, 2)))
