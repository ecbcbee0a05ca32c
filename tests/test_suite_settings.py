"""The suite's own shortcuts (tests/conftest.py) are in force: a jax upgrade that moved what
they patch would otherwise only show as a slower suite."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@pytest.mark.skipif(os.environ.get("EBM_JAX_TESTS_FRESH_MLIR_CONTEXT") == "1",
                    reason="EBM_JAX_TESTS_FRESH_MLIR_CONTEXT=1: jax's own contexts")
def test_every_lowering_shares_one_mlir_context():
    from jax._src.interpreters import mlir

    shared = mlir.make_ir_context()
    assert mlir.make_ir_context() is shared
    lowered = jax.jit(lambda x: jnp.sin(x) + 1.0).lower(jnp.zeros(3))
    assert lowered.compiler_ir().context is shared
    np.testing.assert_array_equal(lowered.compile()(jnp.zeros(3)), np.ones(3))  # it runs
