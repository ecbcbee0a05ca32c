"""Shared test configuration: CPU only, float32, fixed keys."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

# Eight CPU devices, so the data-parallel tests run a real mesh (tests/test_parallel.py);
# everything else runs on the first device as before.
jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
