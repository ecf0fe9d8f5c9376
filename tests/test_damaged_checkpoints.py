"""Damaged checkpoints: training falls back to the newest complete one, readers too, and never restarts silently."""

import asyncio
import gc
import logging
import pathlib
import shutil
import sys
import traceback
import types

import pytest

from lkgan_jax import checkpoint
from lkgan_jax.cli.main import main
from lkgan_jax.pretrained import load_generator

TINY = "configs/tiny.py"


def _data_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
    return [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]


def _truncate(step_dir):
    for path in _data_files(step_dir):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 10])


def _garbage(step_dir):
    for path in _data_files(step_dir):
        path.write_bytes(b"\x07" * path.stat().st_size)


def _empty(step_dir):
    shutil.rmtree(step_dir)
    step_dir.mkdir()


DAMAGE = {
    "truncated array files": _truncate,
    "garbage array files": _garbage,
    # Every data file: OCDBT may leave superseded b-tree nodes behind, so one file (even the largest) may not be read.
    "deleted array files": lambda d: [path.unlink() for path in _data_files(d)],
    "deleted _METADATA": lambda d: (d / "state" / "_METADATA").unlink(),
    "garbage manifest": lambda d: (d / "state" / "manifest.ocdbt").write_bytes(b"garbage"),
    "empty step directory": _empty,
    "deleted iterator file": lambda d: next((d / "data").glob("process_*.json")).unlink(),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_training_falls_back_to_the_newest_complete_checkpoint(tiny_run, tmp_path, capsys, caplog, damage):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run[0], workdir)
    DAMAGE[damage](workdir / "checkpoints" / "4")
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=6",
                 "--config.train.checkpoint_every=2", "--config.train.sample_every=0"]) == 0
    checkpoints = workdir / "checkpoints"
    kept = [p.name for p in checkpoints.iterdir() if p.name.startswith("damaged-step-4-")]
    steps = sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())
    if damage == "empty step directory" and not kept:  # Orbax does not count an empty directory as a step
        assert steps[-1] == 6
    else:
        assert len(kept) == 1 and steps == [2, 4, 6], (kept, steps)
    gc.collect()  # abandoned reads print (if at all) when their coroutines are collected
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err, err[:2000]
    asyncio_records = [r for r in caplog.records if r.name == "asyncio"]
    assert not asyncio_records, [_describe(r) for r in asyncio_records]


def _describe(record: logging.LogRecord) -> str:
    """A log record's message, and its exception's type, message and frames."""
    if not record.exc_info:
        return record.getMessage()
    frames = "; ".join(f"{f.filename}:{f.lineno}" for f in traceback.extract_tb(record.exc_info[2]))
    return f"{record.getMessage()}: {record.exc_info[0].__name__}: {str(record.exc_info[1])[:300]} at {frames}"


def test_readers_fall_back_without_step_and_name_a_damaged_step(tiny_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run[0], workdir)
    _garbage(workdir / "checkpoints" / "4")
    assert load_generator(workdir).step == 2  # the newest that reads back
    code = main(["generate", "--workdir", str(workdir), "--step", "4", "--num", "1", "--seed", "0", "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "checkpoint step 4" in err[0] and "is damaged" in err[0], err


def test_all_checkpoints_damaged_is_an_error_not_a_restart(tiny_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run[0], workdir)
    for step in ("2", "4"):
        _garbage(workdir / "checkpoints" / step)
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=6"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "every checkpoint" in err[0] and "is damaged" in err[0], err
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]


def test_a_checkpoint_of_another_model_is_a_mismatch_not_damage(tiny_run, tmp_path, capsys):
    workdir = tmp_path / "run"
    shutil.copytree(tiny_run[0], workdir)
    (workdir / "config.json").unlink()  # so that only the arrays can tell
    code = main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=6", "--config.model.embed_dim=12"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and ("another model" in err[0] or "needs" in err[0]), err
    assert "damaged" not in err[0]


def _unraisable(error: BaseException):
    """The argument ``sys.unraisablehook`` receives for ``error`` (raised here, so that it has a traceback)."""
    def fail():
        raise error
    return _unraisable_from(fail)


def test_reads_abandoned_by_a_failed_restore_print_nothing(monkeypatch):
    """A read finishing after a failed restore closed its event loop is dropped; every other error is not."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    checkpoint.silence_abandoned_reads()
    checkpoint.silence_abandoned_reads()  # installs once
    loop = asyncio.new_event_loop()
    loop.close()
    closed = _unraisable_from(lambda: loop.call_soon_threadsafe(print))
    sys.unraisablehook(closed)
    assert seen == []
    failed_read = _unraisable(Exception("Encountered error while reading array index: (). See full TensorStore details"))
    sys.unraisablehook(types.SimpleNamespace(**{**vars(failed_read), "object": _coroutine_in("/site-packages/orbax/checkpoint/x.py")}))
    assert seen == []  # Orbax's read error in Orbax's own abandoned coroutine
    others = [_unraisable(RuntimeError("Event loop is closed")),  # not raised by asyncio itself
              _unraisable(RuntimeError("something else")), _unraisable(ValueError("Event loop is closed")),
              types.SimpleNamespace(**{**vars(failed_read), "object": _coroutine_in("/work/mine.py")}),  # not Orbax's
              types.SimpleNamespace(**{**vars(_unraisable(Exception("other"))), "object": _coroutine_in("/orbax/x.py")})]
    for other in others:
        sys.unraisablehook(other)
    assert seen == others

    asyncio_logger = logging.getLogger("asyncio")
    assert sum(isinstance(f, checkpoint._AbandonedReadLogFilter) for f in asyncio_logger.filters) == 1

    def record(message, error):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, (type(error), error, None))
    assert not asyncio_logger.filter(record("_GatheringFuture exception was never retrieved", failed_read.exc_value))
    assert asyncio_logger.filter(record("_GatheringFuture exception was never retrieved", ValueError("other")))
    assert asyncio_logger.filter(record("Task was destroyed but it is pending!", failed_read.exc_value))


@pytest.mark.parametrize("filename, message, dropped", [
    ("/site-packages/orbax/checkpoint/serialization.py", 'OUT_OF_RANGE: Error opening "zarr" driver', True),
    ("/site-packages/orbax/checkpoint/serialization.py", "Encountered error while reading array index: ()", True),
    ("/work/mine.py", 'OUT_OF_RANGE: Error opening "zarr" driver', False),  # not raised by Orbax
    ("/site-packages/orbax/checkpoint/serialization.py", "something else", False),  # not a read error
])
def test_a_task_abandoned_by_a_failed_restore_logs_nothing(caplog, filename, message, dropped):
    """asyncio's "Task exception was never retrieved" for a read that failed inside Orbax is dropped."""
    checkpoint.silence_abandoned_reads()
    loop = asyncio.new_event_loop()
    task = loop.create_task(_coroutine_function_in(filename, f"raise ValueError({message!r})")())
    loop.run_until_complete(asyncio.sleep(0))  # the task runs and fails; nobody retrieves its error
    loop.close()
    del task
    gc.collect()
    logged = [r for r in caplog.records if r.name == "asyncio" and "never retrieved" in r.getMessage()]
    assert len(logged) == (0 if dropped else 1), [_describe(r) for r in logged]


@pytest.mark.parametrize("message, dropped", [
    ('NOT_FOUND: Error reading "d_opt.0.mu/.zarray"', True),
    ("something else", False),  # not a read error
])
def test_a_wrapped_tensorstore_future_abandoned_by_a_failed_restore_logs_nothing(caplog, message, dropped):
    """A task that only wraps an awaitable (TensorStore's future: no Orbax frame) is dropped for a TensorStore error."""

    class Future:
        def __await__(self):
            raise ValueError(message)
            yield

    checkpoint.silence_abandoned_reads()
    loop = asyncio.new_event_loop()
    task = asyncio.ensure_future(Future(), loop=loop)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert "_wrap_awaitable" in repr(task)
    del task
    gc.collect()
    logged = [r for r in caplog.records if r.name == "asyncio" and "never retrieved" in r.getMessage()]
    assert len(logged) == (0 if dropped else 1), [_describe(r) for r in logged]


def _coroutine_function_in(filename: str, body: str):
    """``async def read(): BODY``, its code compiled as if it lived in ``filename``."""
    namespace = {}
    exec(compile(f"async def read():\n    {body}\n", filename, "exec"), namespace)
    return namespace["read"]


def _coroutine_in(filename: str):
    """A (never started) coroutine object whose code lives in ``filename``."""
    coroutine = _coroutine_function_in(filename, "pass")()
    coroutine.close()
    return coroutine


def _unraisable_from(function):
    """The argument ``sys.unraisablehook`` receives for the error that ``function()`` raises."""
    try:
        function()
    except BaseException as raised:
        return types.SimpleNamespace(exc_type=type(raised), exc_value=raised, exc_traceback=raised.__traceback__,
                                     err_msg=None, object=None)
    raise AssertionError("expected an error")
