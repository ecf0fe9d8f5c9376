"""Orbax checkpoints of the whole training state plus the data-iterator position (docs/design.md §12).

Orbax writes each step into a temporary directory and renames it when complete, so an interrupted
save never becomes the latest checkpoint. Restores go into an abstract target carrying the wanted
shardings, so a run can resume on a different mesh, device count or process count (elastic restore).
"""

from __future__ import annotations

import inspect
import json
import logging as python_logging
import os
import pathlib
import re
import sys
import time
import traceback
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging

STATE_ITEM = "state"
DATA_ITEM = "data"


class CheckpointMismatchError(ValueError):
    """The checkpoint on disk does not fit the model of the current config."""


class CheckpointDamagedError(ValueError):
    """A checkpoint's files cannot be read back (truncated, garbage or missing), whatever the config."""


DAMAGED_PREFIX = "damaged-step-"  # a damaged checkpoint set aside: not a step directory for Orbax


def check_fits(step_directory: pathlib.Path, abstract_state: Any, partial: bool = False) -> None:
    """Compares the saved tree (paths and global shapes, from Orbax's metadata) with ``abstract_state``.

    ``CheckpointDamagedError`` when the metadata cannot be read; ``CheckpointMismatchError`` when it
    describes another model (a missing or, unless ``partial``, an extra array, or another shape).
    """
    try:
        metadata = ocp.StandardCheckpointHandler().metadata(pathlib.Path(step_directory).absolute() / STATE_ITEM)  # Orbax needs absolute paths
        saved = {_path(keys): tuple(leaf.shape) for keys, leaf in jax.tree_util.tree_flatten_with_path(metadata)[0]}
    except Exception as error:  # a missing or unreadable _METADATA, manifest or directory
        raise CheckpointDamagedError(
            f"checkpoint step {step_directory.name} in {step_directory.parent} is damaged ({type(error).__name__}: {error_summary(error)})"
        ) from None
    wanted = {_path(keys): leaf for keys, leaf in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
    missing, extra = sorted(set(wanted) - set(saved)), [] if partial else sorted(set(saved) - set(wanted))
    if missing or extra:
        example = "/".join((missing or extra)[0])
        raise CheckpointMismatchError(
            f"checkpoint {step_directory} holds another model than this config's ({'missing' if missing else 'unexpected'} array {example})")
    for keys, leaf in wanted.items():
        if not jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) and saved[keys] != tuple(leaf.shape):
            raise CheckpointMismatchError(
                f"checkpoint {step_directory}: {'/'.join(keys)} has shape {saved[keys]}, this config's model needs {tuple(leaf.shape)}")


def _path(keys: tuple) -> tuple[str, ...]:
    return tuple(_key_name(k) for k in keys)


def _key_name(key: Any) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def set_aside(directory: pathlib.Path, step: int) -> pathlib.Path:
    """Renames the damaged checkpoint ``directory/step`` to ``directory/damaged-step-STEP-TIME`` (never deletes)."""
    aside = directory / f"{DAMAGED_PREFIX}{step}-{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(directory / str(step), aside)
    return aside


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
    """Restores the state at ``step`` into ``target`` (and the iterator in place, when given).

    The arrays are read into ``target``'s shardings, whatever mesh saved them. Grain writes one
    iterator state per process (``data/process_I-of-N.json``); when this run has another process count,
    the iterator takes the state of the saving run's process 0, which is the position of all of them
    (the elastic pipeline's state counts global examples, ``data.pipeline``).
    """
    step_directory = pathlib.Path(manager.directory) / str(step)
    check_fits(step_directory, target)
    items = {STATE_ITEM: ocp.args.StandardRestore(target)}
    saved_by_other_count = None
    if data_iterator is not None:
        saved_by_other_count = data_state_of_other_process_count(step_directory)
        if saved_by_other_count is None:
            items[DATA_ITEM] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**items))
        if saved_by_other_count is not None:
            data_iterator.set_state(json.loads(saved_by_other_count.read_text()))
    except Exception as error:  # TensorStore, JSON, OS and Orbax errors: the files, not the config (checked above)
        raise CheckpointDamagedError(
            f"checkpoint step {step} in {manager.directory} is damaged ({type(error).__name__}: {error_summary(error)})"
        ) from error
    if saved_by_other_count is not None:
        logging.warning("checkpoint step %d: the data position was saved by another process count (%s); "
                        "this run has %d processes and continues from that position", step,
                        saved_by_other_count.name, jax.process_count())
    return restored[STATE_ITEM]


def data_state_of_other_process_count(step_directory: pathlib.Path) -> pathlib.Path | None:
    """The iterator state file of process 0 when this process's own file is missing; None otherwise."""
    data_directory = step_directory / DATA_ITEM
    own = data_directory / f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    if own.exists() or not data_directory.is_dir():
        return None
    saved = sorted(data_directory.glob("process_0-of-*.json"))
    return saved[0] if saved else None


def error_summary(error: BaseException) -> str:
    """The first non-empty line of an error message (at most 200 characters)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else "no message"


_ORBAX_READ_ERROR = "Encountered error while reading array index"  # Orbax's message for one array that failed
_TENSORSTORE_ERROR = re.compile(r"^[A-Z_]+: ")  # TensorStore's errors start with their status code ("OUT_OF_RANGE: ...")


def silence_abandoned_reads() -> None:
    """Drops the errors that the abandoned reads of a failed restore raise after it has failed.

    When one array of a checkpoint cannot be read, Orbax's restore fails and closes its asyncio event
    loop while TensorStore is still opening and reading the others. Each read that completes afterwards
    tries to post its result to the closed loop (``RuntimeError: Event loop is closed``), and each of
    Orbax's per-array read coroutines that failed too is garbage-collected with its error unretrieved
    (Orbax's ``Encountered error while reading array index``, or TensorStore's own error such as
    ``OUT_OF_RANGE: Error opening "zarr" driver``). Python prints these as unraisable exceptions, one
    traceback per array, around the real one-line message; the tasks and futures that ran or gathered
    those reads are collected with the same errors, which asyncio logs ("exception was never
    retrieved"). This installs (once) a ``sys.unraisablehook`` that ignores exactly these errors (the
    first raised inside asyncio, the others left in an Orbax coroutine) and passes every other error to
    the previous hook, and a filter on the ``asyncio`` logger that drops exactly those log records.
    """
    asyncio_logger = python_logging.getLogger("asyncio")
    if not any(isinstance(f, _AbandonedReadLogFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_AbandonedReadLogFilter())
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return

    def hook(unraisable: Any) -> None:
        if not _is_abandoned_read(unraisable):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook


class _AbandonedReadLogFilter(python_logging.Filter):
    """Drops asyncio's "... exception was never retrieved" record when the exception is a read error of Orbax's."""

    def filter(self, record: python_logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        # A TensorStore future that Orbax wrapped in a task carries no Orbax frame of its own.
        orbax_read = "coro=<_wrap_awaitable()" in message or (
            error is not None and any(_in_orbax(f.filename) for f in traceback.extract_tb(error.__traceback__)))
        return not (error is not None and "exception was never retrieved" in message and _is_read_error(error, orbax_read))


def _is_read_error(error: BaseException, raised_in_orbax: bool) -> bool:
    """Orbax's read error, or TensorStore's error when Orbax's code raised it."""
    message = str(error)
    return message.startswith(_ORBAX_READ_ERROR) or (raised_in_orbax and bool(_TENSORSTORE_ERROR.match(message)))


def _in_orbax(filename: str) -> bool:
    return "orbax" in pathlib.Path(filename).parts


def _is_abandoned_read(unraisable: Any) -> bool:
    """A RuntimeError('Event loop is closed') raised in asyncio's own code (a callback posted to a closed
    loop), or a read error (``_is_read_error``) left in one of Orbax's coroutines that nobody awaited any more."""
    frames = traceback.extract_tb(unraisable.exc_traceback)
    if unraisable.exc_type is RuntimeError and str(unraisable.exc_value) == "Event loop is closed":
        return bool(frames) and pathlib.Path(frames[-1].filename).parent.name == "asyncio"
    if inspect.iscoroutine(unraisable.object):
        return _in_orbax(unraisable.object.cr_code.co_filename) and _is_read_error(unraisable.exc_value, raised_in_orbax=True)
    return False


def restore_newest_complete(manager: ocp.CheckpointManager, target: Any, data_iterator: Any | None, log: Any) -> tuple[Any, int] | None:
    """The newest checkpoint that restores completely → (state, step); None when there is none.

    Damaged newer ones are set aside (``set_aside``) with one ``log`` line each, but only when an older
    one restores: when every checkpoint is damaged, a ``CheckpointDamagedError`` leaves them all in
    place, so that a run never silently restarts from step 0 while checkpoints exist.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    damaged: list[tuple[int, CheckpointDamagedError]] = []
    for step in steps:
        try:
            state = restore(manager, step, target, data_iterator)
        except CheckpointDamagedError as error:
            damaged.append((step, error))
            continue
        for bad_step, error in damaged:
            aside = set_aside(pathlib.Path(manager.directory), bad_step)
            log(f"{error}; set it aside as {aside.name} and resumed from step {step}")
        if damaged:
            manager.reload()
        return state, step
    if damaged:
        raise CheckpointDamagedError(
            f"every checkpoint in {manager.directory} is damaged (newest: {damaged[0][1]}); move them away to start from step 0")
    return None
