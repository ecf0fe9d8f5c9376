"""Atomic file writes (a crash mid-write never leaves a truncated output behind, docs/design.md §12), file hashes."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
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


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(root: str | os.PathLike, relative_paths: list[str]) -> str:
    """Hex SHA-256 over the given files below ``root``, in order: each name, size and bytes."""
    digest = hashlib.sha256()
    for relative in relative_paths:
        name = relative.encode("utf-8")
        full = os.path.join(root, relative)
        digest.update(len(name).to_bytes(8, "little") + name + os.path.getsize(full).to_bytes(8, "little"))
        with open(full, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def check_output_directory(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """Checks, without creating anything, that ``path`` is or can become a writable directory → the Path.

    A one-line ``ValueError`` naming ``flag`` (e.g. ``--out``) when ``path`` is a file, sits below a file,
    or lies in a directory that cannot be written.
    """
    directory = pathlib.Path(path)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{flag} {directory} is a file, not a directory")
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} {directory}: cannot create the directory ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {directory}: {existing} is not writable")
    return directory


def check_output_file(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """Checks, without creating anything, that a file can be written at ``path`` → the Path.

    A one-line ``ValueError`` naming ``flag`` when ``path`` is a directory or its folder cannot be created
    or written (``check_output_directory``).
    """
    file = pathlib.Path(path)
    if file.is_dir():
        raise ValueError(f"{flag} {file} is a directory, not a file")
    check_output_directory(file.absolute().parent, flag)
    return file


def output_directory(path: str | os.PathLike, flag: str) -> pathlib.Path:
    """``check_output_directory``, then creates ``path`` (and its parents) → the Path."""
    directory = check_output_directory(path, flag)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"{flag} {directory}: cannot create the directory ({error.strerror or type(error).__name__})") from None
    return directory


def read_format_json(path: str | os.PathLike, expected_format: str, expected_version: int, described: str, remedy: str) -> dict:
    """A JSON object that names its ``format`` and ``format_version`` (metadata, manifests) → the dict.

    One-line ``ValueError`` naming ``path`` when it is unreadable, not of ``expected_format`` (``described``
    says what it should be, ``remedy`` how to write one) or of another version.
    """
    try:
        with open(path) as file:
            content = json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(content, dict) or content.get("format") != expected_format:
        raise ValueError(f"{path}: not {described} (format {expected_format!r} expected); {remedy}")
    if content.get("format_version") != expected_version:
        raise ValueError(f"{path}: format version {content.get('format_version')!r}; this lkgan_jax reads version "
                         f"{expected_version} ({remedy})")
    return content
