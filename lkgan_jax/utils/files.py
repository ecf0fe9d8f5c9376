"""Atomic file writes: a crash mid-write never leaves a truncated output behind (docs/design.md §12)."""

from __future__ import annotations

import json
import os
import tempfile
from typing import IO, Any, Callable

import numpy as np


def write_atomically(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write(file)`` on a temporary file next to ``path``, then renames it onto ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    file_descriptor, temporary_path = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(file_descriptor, "wb") as temporary_file:
            write(temporary_file)
        os.replace(temporary_path, path)
    except BaseException:
        os.remove(temporary_path)
        raise


def write_json(path: str | os.PathLike, value: Any) -> None:
    """``value`` as indented JSON (one trailing newline) to ``path``, atomically."""
    write_atomically(path, lambda file: file.write((json.dumps(value, indent=2) + "\n").encode()))


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """``np.savez`` of ``arrays`` to ``path``, atomically."""
    write_atomically(path, lambda file: np.savez(file, **arrays))
