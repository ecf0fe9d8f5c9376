"""Orbax checkpoints of the whole training state plus the data-iterator position (docs/design.md §12).

Orbax writes each step into a temporary directory and renames it when complete, so an interrupted
save never becomes the latest checkpoint. Restores go into an abstract target carrying the wanted
shardings, so a run can resume on a different mesh.
"""

from __future__ import annotations

import pathlib
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

STATE_ITEM = "state"
DATA_ITEM = "data"


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk does not fit the model of the current config."""


def read_only_options() -> ocp.CheckpointManagerOptions:
    """Options for reading a run's checkpoints (no saving settings, which Orbax would warn about dropping)."""
    return ocp.CheckpointManagerOptions(
        read_only=True, create=False, enable_async_checkpointing=False, save_interval_steps=0, max_to_keep=None
    )


def make_manager(directory: str | pathlib.Path, max_to_keep: int, *, read_only: bool = False) -> ocp.CheckpointManager:
    """A manager for ``directory`` with asynchronous saves (or ``read_only``); every process of a run must create one."""
    if read_only:
        options = read_only_options()
    else:
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=True, create=True)
    return ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any | None) -> None:
    """Starts saving ``state`` (and the iterator position) at ``step``; returns before the write ends."""
    items = {STATE_ITEM: ocp.args.StandardSave(state)}
    if data_iterator is not None:
        items[DATA_ITEM] = grain.checkpoint.CheckpointSave(data_iterator)
    manager.save(step, args=ocp.args.Composite(**items), force=True)


def abstract_target(abstract_state: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` leaves carrying the shardings to restore onto."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, shardings)


def restore(
    manager: ocp.CheckpointManager, step: int, target: Any, data_iterator: Any | None = None
) -> Any:
    """Restores the state at ``step`` into ``target`` (and the iterator in place, when given)."""
    items = {STATE_ITEM: ocp.args.StandardRestore(target)}
    if data_iterator is not None:
        items[DATA_ITEM] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointMismatchError(
            f"checkpoint step {step} in {manager.directory} does not match this config's model "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from error
    return restored[STATE_ITEM]
