"""Checkpoints through Orbax's ``CheckpointManager``: the whole train state, atomically.

Orbax writes each checkpoint into a temporary directory and renames it into
place when complete, so a crash or Ctrl-C mid-write leaves the previous
checkpoints untouched. The train state holds the step, from which the data
position is derived (see :mod:`ebm_jax.data.batching`), so a restored state
resumes exactly.
"""
from __future__ import annotations

import collections

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


class CheckpointMismatchError(ValueError):
    """A checkpoint whose arrays do not fit the state it is restored into (another network)."""


class CheckpointCorruptError(RuntimeError):
    """Checkpoints exist but none can be read."""


class CheckpointSaveError(OSError):
    """A save failed (a full disk, say); the older checkpoints are untouched."""


def _path_name(path) -> str:
    parts = []
    for key in path:
        for attr in ("name", "key", "idx"):
            if hasattr(key, attr):
                parts.append(str(getattr(key, attr)))
                break
    return "/".join(parts)


def _shapes_by_path(tree: Any) -> dict:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {_path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype)) for path, leaf in leaves}


class Checkpointer:
    """Save and restore a train-state pytree under ``directory``.

    Args:
      directory: where checkpoints go (one sub-directory per step).
      max_to_keep: keep only the newest K checkpoints.
      save_every: ``maybe_save`` saves when ``step % save_every == 0``.

    Example::

      >>> import tempfile
      >>> from typing import NamedTuple
      >>> class State(NamedTuple):                    # any pytree with a ``step``
      ...     step: jax.Array
      ...     params: jax.Array
      >>> ckpt = Checkpointer(tempfile.mkdtemp(), max_to_keep=3, save_every=1000)
      >>> ckpt.save(State(jnp.int32(5), jnp.ones(3)))  # at its own step
      True
      >>> restored = ckpt.restore_latest(State(jnp.int32(0), jnp.zeros(3)))
      >>> int(restored.step), restored.params.tolist()
      (5, [1.0, 1.0, 1.0])
      >>> ckpt.close()
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, save_every: int = 1000):
        self.directory = os.path.abspath(directory)
        self.save_every = save_every
        # Orbax writes into a temporary directory and renames it into place when complete, so
        # a process killed mid-write leaves no partial checkpoint; leftovers are removed here.
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                               enable_async_checkpointing=False,
                                               cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_handlers=ocp.StandardCheckpointHandler())
        self._damaged: set[int] = set()  # steps restore_latest found unreadable

    def latest_step(self) -> Optional[int]:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: Any, *, force: bool = True) -> bool:
        """Save ``state`` at its own step; returns whether a checkpoint was written."""
        step = int(state.step)
        if step in self._damaged:  # skipped by restore_latest: replace it with this state
            self._manager.delete(step)
            self._damaged.discard(step)
        if step in self._manager.all_steps():
            return False
        try:
            saved = self._manager.save(step, args=ocp.args.StandardSave(state), force=force)
            self._manager.wait_until_finished()
        except Exception as error:  # the write happens in a temporary directory: nothing older is lost
            kept = self.all_steps()
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
            raise CheckpointSaveError(
                f"saving the checkpoint of step {step} in {self.directory} failed ({reason}); "
                f"the older checkpoints {kept} are intact: free disk space and --resume") from error
        return bool(saved)

    def maybe_save(self, state: Any) -> bool:
        """Save when the state's step is a multiple of ``save_every``."""
        if int(state.step) % self.save_every:
            return False
        return self.save(state)

    def check_compatible(self, step: int, template: Any) -> None:
        """Raise :class:`CheckpointMismatchError` unless the checkpoint at ``step`` has
        exactly the leaves, shapes and dtypes of ``template`` (checked from metadata, before
        any array is read)."""
        saved = _shapes_by_path(self._manager.item_metadata(step))
        expected = _shapes_by_path(template)
        where = f"the checkpoint at step {step} in {self.directory}"
        missing = sorted(set(expected) - set(saved))
        extra = sorted(set(saved) - set(expected))
        if missing or extra:
            parts = ([f"it lacks {missing[:3]}"] if missing else []) + \
                ([f"it has {extra[:3]} that the model does not"] if extra else [])
            raise CheckpointMismatchError(
                f"{where} does not match the model: {' and '.join(parts)}: expected a "
                "checkpoint of the same network and config")
        for name, (shape, dtype) in expected.items():
            if saved[name] != (shape, dtype):
                raise CheckpointMismatchError(
                    f"{where} does not match the model: {name} is saved as {saved[name][1]}"
                    f"{list(saved[name][0])}, expected {dtype}{list(shape)}: expected a "
                    "checkpoint of the same network and config")

    def _lacks_guard_stats(self, step: int, template: Any) -> bool:
        if getattr(template, "guard_stats", None) is None:
            return False
        saved = _shapes_by_path(self._manager.item_metadata(step))
        return not any(name.startswith("guard_stats") for name in saved)

    def restore(self, step: int, template: Any) -> Any:
        """Restore the checkpoint at ``step`` into the structure, shapes and dtypes of ``template``.

        The restored arrays take the template's shardings, so a checkpoint written on
        8 devices restores on 1 or 4 (and the reverse).

        A checkpoint written before train states kept the guard's statistics (release
        0.1) restores with the template's ``guard_stats`` (fresh: the relative criteria
        warm up again).

        Raises:
          CheckpointMismatchError: the checkpoint holds other arrays (another network).
        """
        if self._lacks_guard_stats(step, template):
            fields = [f for f in template._fields if f != "guard_stats"]
            legacy = collections.namedtuple(type(template).__name__, fields)
            restored = self.restore(step, legacy(*(getattr(template, f) for f in fields)))
            return template._replace(**restored._asdict())
        self.check_compatible(step, template)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        # Orbax may return containers of another type (dicts for NamedTuples); re-impose the template's.
        return jax.tree.unflatten(jax.tree.structure(template), jax.tree.leaves(restored))

    def restore_latest(self, template: Any, *, log=print) -> Optional[Any]:
        """Restore the newest readable checkpoint, or return None when there is none.

        A checkpoint that cannot be read (truncated or corrupted files, say after
        a disk failure) is skipped for the one before it, and ``log`` says so; the run
        that goes on from there replaces it when it saves that step again.
        One of another network (:class:`CheckpointMismatchError`) is not
        skipped: that is a wrong directory, not damage.

        Raises:
          CheckpointCorruptError: checkpoints exist but none of them can be read.
        """
        steps = sorted(self.all_steps(), reverse=True)
        failures = []
        for step in steps:
            try:
                restored = self.restore(step, template)
            except CheckpointMismatchError:
                raise
            except Exception as error:  # Orbax/TensorStore raise many kinds on damaged files
                reason = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
                failures.append(f"step {step} ({reason})")
                self._damaged.add(step)
                log(f"checkpoint at step {step} in {self.directory} cannot be read ({reason}); "
                    "falling back to the one before it")
                continue
            if failures:
                log(f"restored step {step}; skipped damaged: {', '.join(failures)}")
            return restored
        if failures:
            raise CheckpointCorruptError(f"no checkpoint in {self.directory} can be read: "
                                         f"{'; '.join(failures)}")
        return None

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def params_fingerprint(params: Any) -> str:
    """A SHA-256 of every parameter's bytes (in tree order): equal iff the params are identical."""
    import hashlib

    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        array = np.asarray(leaf)
        digest.update(str(array.dtype).encode() + str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
