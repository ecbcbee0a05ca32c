"""The suite's compile modes, as context managers. Tests compile with fewer XLA optimisations
by default (``JAX_DISABLE_MOST_OPTIMIZATIONS=1``, set by tests/conftest.py); the ``optimised``
marker compiles a module or test fully optimised, the ``fast_compile`` marker pins the fewer
optimisations whatever the default (tests/conftest.py), and session-scoped runs that must be
compiled in a fixed mode use these directly."""
import contextlib

import jax


@contextlib.contextmanager
def compile_mode(fewer_optimisations: bool):
    """Compile with ``jax_disable_most_optimizations = fewer_optimisations`` inside the block
    (values equal to float rounding; fewer optimisations compile several times cheaper and run
    slower). When the mode changes, in-memory caches are cleared on the way in and out: a
    program compiled in the other mode by an earlier test is not reused inside (tests that
    compare fingerprints with a subprocess of this mode rely on it), and no later test runs a
    program compiled in this one."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    if previous == fewer_optimisations:  # already in this mode: nothing to undo afterwards
        yield
        return
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", fewer_optimisations)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()


def fewer_xla_optimisations():
    """Compile with ``jax_disable_most_optimizations`` inside the block."""
    return compile_mode(True)


def full_xla_optimisations():
    """Compile with every XLA optimisation inside the block (runtime-heavy tests)."""
    return compile_mode(False)
