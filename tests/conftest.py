"""Shared test configuration: CPU only, float32, fixed keys.

The tests mirror the package (``tests/samplers/test_mala.py`` tests ``ebm_jax/samplers/mala.py``);
every folder is a package, so two folders may hold test files of the same name. The shared
helpers at this level (``sampler_stats``, ``tfds_mock``) import by their bare names: this
folder is appended to ``sys.path`` (appended, so that ``tests/samplers`` never shadows a
top-level ``samplers`` such as ``benchmarks/samplers.py``).
"""
import contextlib
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.append(TESTS)

import jax  # noqa: E402
import pytest  # noqa: E402

# Eight CPU devices, so the data-parallel tests run a real mesh (tests/test_parallel.py);
# everything else runs on the first device as before.
jax.config.update("jax_num_cpu_devices", 8)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)


@contextlib.contextmanager
def _fewer_xla_optimisations():
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()  # no later test reuses a program compiled this way


@pytest.fixture(scope="module")
def fast_compile():
    """Compile with fewer XLA optimisations for a module whose time is mostly compilation
    (tiny networks, a few steps). Values stay the same to float rounding."""
    with _fewer_xla_optimisations():
        yield


@pytest.fixture
def fast_compile_test():
    """:func:`fast_compile` for one test (a module-scoped fixture would stay on for the
    tests after it)."""
    with _fewer_xla_optimisations():
        yield
