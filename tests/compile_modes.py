"""The one compile shortcut of the suite, as a context manager: the ``fast_compile`` marker
(tests/conftest.py) and the session-scoped runs that must be compiled in a fixed mode use it."""
import contextlib

import jax


@contextlib.contextmanager
def fewer_xla_optimisations():
    """Compile with ``jax_disable_most_optimizations`` inside the block (values equal to float
    rounding, compiles several times cheaper). In-memory caches are cleared on the way in and
    out: a program compiled in the other mode by an earlier test is not reused inside (tests
    that compare fingerprints with a subprocess of this mode rely on it), and no later test
    runs a program compiled this way."""
    previous = jax.config.values["jax_disable_most_optimizations"]
    if previous:  # already on (a module-wide marker): nothing to undo afterwards
        yield
        return
    jax.clear_caches()
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
        jax.clear_caches()
