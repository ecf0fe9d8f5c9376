"""Export procedural faces as an image folder, and read the landmarks and attributes CSVs of any image folder.

The on-disk format is the one users give for their own data (docs/design.md §5, §6)::

    out_dir/images/000000.png ...
    out_dir/landmarks.csv    filename,x0,y0,x1,y1,...   (pixel coordinates: column, row; pixel
                                                         centres at integers)
    out_dir/attributes.csv   filename,<ATTRIBUTE_NAMES...>

Filenames in the CSVs are relative to the folder holding the CSV. CSVs are written atomically.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from lkgan_jax.conventions import normalized_to_pixel
from lkgan_jax.data.procedural import ATTRIBUTE_NAMES, MIN_RESOLUTION, ProceduralFaces

IMAGES_DIR = "images"
LANDMARKS_CSV = "landmarks.csv"
ATTRIBUTES_CSV = "attributes.csv"
FILENAME_COLUMN = "filename"  # written; reading also accepts FILENAME_COLUMNS
FILENAME_COLUMNS = ("filename", "file", "image", "path")
MIN_FILENAME_DIGITS = 6
CSV_FLOAT_FORMAT = "{:.6f}"


def export_procedural(out_dir: str | os.PathLike, num: int, resolution: int, seed: int = 0,
                      split: str = "train") -> Path:
    """Write faces ``0 .. num - 1`` of ``ProceduralFaces(seed, split, resolution)`` to ``out_dir``.

    Produces ``images/NNNNNN.png``, ``landmarks.csv`` (pixel coordinates) and ``attributes.csv``;
    returns ``out_dir`` as a Path.
    """
    source = procedural_export_source(num, resolution, seed, split)
    out_dir = Path(out_dir)
    (out_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    digits = max(MIN_FILENAME_DIGITS, len(str(num - 1)))
    landmark_rows, attribute_rows = [], []
    for i in range(num):
        sample = source[i]
        filename = f"{IMAGES_DIR}/{i:0{digits}d}.png"
        Image.fromarray(sample["image"]).save(out_dir / filename)
        pixels = normalized_to_pixel(sample["landmarks"], resolution)
        landmark_rows.append([filename, *_format_floats(pixels.reshape(-1))])
        attribute_rows.append([filename, *_format_floats(sample["attributes"])])
    num_landmarks = len(landmark_rows[0]) // 2
    _write_csv_atomically(out_dir / LANDMARKS_CSV, landmark_header(num_landmarks), landmark_rows)
    _write_csv_atomically(out_dir / ATTRIBUTES_CSV, [FILENAME_COLUMN, *ATTRIBUTE_NAMES], attribute_rows)
    return out_dir


def procedural_export_source(num: int, resolution: int, seed: int, split: str) -> ProceduralFaces:
    """Faces ``0 .. num - 1`` of ``ProceduralFaces(seed, split, resolution)``; one-line errors for bad sizes."""
    if num <= 0:
        raise ValueError(f"num must be positive, got {num}")
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    return ProceduralFaces(seed=seed, split=split, resolution=resolution, size=num)


def read_attributes_csv(path: str | os.PathLike) -> tuple[list[str], list[str], np.ndarray]:
    """Read an attributes CSV (``filename,<names...>``): filenames, attribute names and float32 (N, A) values.

    Raises ValueError on a malformed file.
    """
    path = Path(path)
    with path.open(newline="") as file:
        rows = [(line, row) for line, row in enumerate(csv.reader(file), start=1) if row]
    if not rows or len(rows[0][1]) < 2 or rows[0][1][0].strip().lower() not in FILENAME_COLUMNS:
        raise ValueError(f"{path}: expected a header {FILENAME_COLUMN},<attribute names...>")
    header = [name.strip() for name in rows[0][1]]
    values = np.empty((len(rows) - 1, len(header) - 1), np.float32)
    filenames = []
    for n, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        filenames.append(row[0])
        values[n] = [_parse_coordinate(path, line, name, text) for name, text in zip(header[1:], row[1:])]
    return filenames, header[1:], values


def landmark_header(num_landmarks: int) -> list[str]:
    """``["filename", "x0", "y0", ..., "x{L-1}", "y{L-1}"]``."""
    return [FILENAME_COLUMN, *(f"{axis}{k}" for k in range(num_landmarks) for axis in "xy")]


def read_landmarks_csv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a landmarks CSV: filenames (as written, relative to the CSV's folder) and float32
    ``(N, L, 2)`` pixel coordinates (column, row). Raises ValueError on a malformed file."""
    path = Path(path)
    with path.open(newline="") as file:
        rows = [(line, row) for line, row in enumerate(csv.reader(file), start=1) if row]
    if not rows:
        raise ValueError(f"{path}: empty landmarks CSV (expected a header {FILENAME_COLUMN},x0,y0,...)")
    _, header = rows[0]
    _check_landmark_header(path, header)
    filenames = []
    coordinates = np.empty((len(rows) - 1, len(header) - 1), np.float32)
    for n, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise ValueError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        filenames.append(row[0])
        coordinates[n] = [_parse_coordinate(path, line, name, text) for name, text in zip(header[1:], row[1:])]
    return filenames, coordinates.reshape(len(filenames), -1, 2)


def _check_landmark_header(path: Path, header: Sequence[str]) -> None:
    """``filename`` (or ``file``, ``image``, ``path``), then x0, y0, x1, y1, ..."""
    num_landmarks = (len(header) - 1) // 2
    expected = landmark_header(num_landmarks)[1:]
    first_ok = bool(header) and header[0].strip().lower() in FILENAME_COLUMNS
    if len(header) < 3 or not first_ok or [name.strip() for name in header[1:]] != expected:
        raise ValueError(
            f"{path}: bad header {','.join(header)!r}; expected {FILENAME_COLUMN},x0,y0,x1,y1,... "
            f"(the first column may also be called {', '.join(FILENAME_COLUMNS[1:])})")


def _parse_coordinate(path: Path, line: int, column: str, text: str) -> float:
    """A finite float of one CSV cell (a coordinate or an attribute), else a one-line ValueError."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{path}:{line}: non-numeric value {text!r} in column {column}") from None
    if not math.isfinite(value):
        raise ValueError(f"{path}:{line}: non-finite value {text!r} in column {column}")
    return value


def _format_floats(values: Iterable[float]) -> list[str]:
    return [CSV_FLOAT_FORMAT.format(float(value)) for value in values]


def _write_csv_atomically(path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """Write to a temporary file next to ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
