"""What every benchmark preparer shares: finding files, reading numbered text tables, geometry, writing.

Finding: ``SourceTree(root)`` walks ``--root`` once; ``find_file(name)`` and ``find_dir(name)`` return
the shallowest match (ties: the first path in sorted order), so both a data set's official folders and
the re-packed archives that papers share are accepted. A missing one is a one-line ``ValueError``
naming the file and what it holds.

Tables: ``read_table`` splits a whitespace-separated text file into rows of a fixed column count,
optionally after CelebA's two header lines (the row count, then the column names). Every problem is a
one-line ``ValueError`` of the form ``PATH:LINE: ...`` (1-based line numbers, header lines counted).

Geometry: landmarks are (L, 2) pixel coordinates (column, row) with pixel centres at integers, as
``lkgan_jax.conventions`` defines them. Resizing follows Pillow's area alignment (output pixel ``j``
covers input ``[j, j + 1) * in / out``), so a pixel centre ``x`` moves to ``(x + 0.5) * out / in - 0.5``;
cropping at ``(left, top)`` subtracts the offset. Images are resampled bilinearly, as in the authors'
preprocessing scripts.

Writing: ``write_benchmark`` writes each split with ``array_records.write_array_records`` into
``OUT/<split>/`` and then ``OUT/manifest.json`` (atomically, last).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from lkgan_jax.conventions import pixel_to_normalized
from lkgan_jax.data.image_folder import IMAGE_EXTENSIONS, decode_rgb
from lkgan_jax.utils.files import write_json

MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = "lkgan_jax.benchmark"
MANIFEST_VERSION = 1
RESAMPLING = Image.Resampling.BILINEAR  # the authors' preprocessing resizes with Pillow's bilinear filter


# ----------------------------------------------------------------------------------------------- finding

class SourceTree:
    """One walk of ``root``: non-image files and directories by name (images are looked up per folder)."""

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)
        if not self.root.is_dir():
            raise ValueError(f"--root {self.root} is not an existing directory")
        self._files: dict[str, list[pathlib.Path]] = {}
        self._dirs: dict[str, list[pathlib.Path]] = {}
        for directory, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            here = pathlib.Path(directory)
            for name in dirnames:
                self._dirs.setdefault(name, []).append(here / name)
            for name in filenames:
                if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                    self._files.setdefault(name, []).append(here / name)

    def _shallowest(self, paths: list[pathlib.Path]) -> pathlib.Path:
        return min(paths, key=lambda p: (len(p.relative_to(self.root).parts), str(p)))

    def has_file(self, name: str) -> bool:
        return name in self._files

    def files_named(self, name: str) -> list[pathlib.Path]:
        """Every non-image file called ``name`` below the root (walk order)."""
        return list(self._files.get(name, []))

    def find_file(self, name: str, what: str, parent: str | None = None) -> pathlib.Path:
        """The shallowest file called ``name`` below the root; a one-line error naming it when there is none.

        ``parent``: prefer a file inside a directory of that name (``MAFL/training.txt``) when there is one.
        """
        if name not in self._files:
            raise ValueError(f"--root {self.root}: {name} ({what}) not found anywhere below it")
        paths = self._files[name]
        preferred = [p for p in paths if p.parent.name == parent]
        return self._shallowest(preferred or paths)

    def find_dir(self, names: str | Sequence[str], what: str,
                 accept: Callable[[pathlib.Path], bool] = lambda path: True) -> pathlib.Path:
        """The shallowest directory called one of ``names`` (in order of preference) that ``accept`` takes."""
        names = (names,) if isinstance(names, str) else tuple(names)
        for name in names:
            paths = [p for p in self._dirs.get(name, []) if accept(p)]
            if paths:
                return self._shallowest(paths)
        raise ValueError(f"--root {self.root}: no directory {' or '.join(names)} ({what}) below it")

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the root, with POSIX separators (for manifests)."""
        return pathlib.Path(path).relative_to(self.root).as_posix()


def images_in(directory: pathlib.Path) -> set[str]:
    """Names of the PNG/JPEG files directly inside ``directory``."""
    return {e.name for e in os.scandir(directory) if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS}


def frame_sort_key(name: str) -> tuple[int, int | str]:
    """Frames sort by their numeric stem when they have one (``9.jpg`` before ``10.jpg``), else by name."""
    stem = os.path.splitext(name)[0]
    return (0, int(stem)) if stem.isdigit() else (1, stem)


# ----------------------------------------------------------------------------------------------- tables

@dataclasses.dataclass(frozen=True)
class Row:
    """One data line of a table: its 1-based line number and its whitespace-separated fields."""

    line: int
    fields: list[str]


def read_table(path: pathlib.Path, columns: int, what: str, counted_header: bool = False,
               header_names: Sequence[str] | None = None) -> tuple[list[str], list[Row]]:
    """Rows of exactly ``columns`` fields of a whitespace-separated text file → (header names, rows).

    ``counted_header``: the file starts with CelebA's two header lines, the number of rows and the
    column names (checked against ``header_names`` when given). Blank lines are ignored. ``what``
    describes a row for the error messages ("image name and 10 landmark coordinates").
    """
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: unreadable ({type(error).__name__}: {error})") from None
    lines = text.splitlines()
    first_data, names = 0, []
    if counted_header:
        if len(lines) < 2:
            raise ValueError(f"{path}:1: expected two header lines (the number of rows, then the column names)")
        count_text = lines[0].strip()
        if not count_text.isdigit():
            raise ValueError(f"{path}:1: expected the number of rows, found {count_text[:40]!r}")
        names = lines[1].split()
        if header_names is not None and names != list(header_names):
            raise ValueError(f"{path}:2: expected the column names {' '.join(header_names)!r}, found {lines[1].strip()[:80]!r}")
        first_data = 2
    rows = []
    for number, line in enumerate(lines[first_data:], start=first_data + 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise ValueError(f"{path}:{number}: expected {columns} columns ({what}), found {len(fields)}")
        rows.append(Row(number, fields))
    if counted_header and len(rows) != int(count_text):
        raise ValueError(f"{path}:1: the header says {int(count_text)} rows, the file has {len(rows)}")
    if not rows:
        raise ValueError(f"{path}: no rows ({what})")
    return names, rows


def numbers(path: pathlib.Path, row: Row, start: int = 1, stop: int | None = None, integer: bool = False) -> np.ndarray:
    """Fields ``start:stop`` of ``row`` as float64 (finite; whole numbers with ``integer``), else a one-line error."""
    values = []
    for column, text in enumerate(row.fields[start:stop], start=start + 1):
        try:
            value = float(text) if not integer else int(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise ValueError(f"{path}:{row.line}: column {column} ({text!r}) is not {kind}") from None
        if not np.isfinite(value):
            raise ValueError(f"{path}:{row.line}: column {column} ({text!r}) is not finite")
        values.append(value)
    return np.asarray(values, np.float64)


def index_rows(path: pathlib.Path, rows: Iterable[Row], key: Callable[[Row], str] = lambda row: row.fields[0]) -> dict[str, Row]:
    """Rows by their key (default: the first field); a repeated key is a one-line error naming both lines."""
    index: dict[str, Row] = {}
    for row in rows:
        name = key(row)
        if name in index:
            raise ValueError(f"{path}:{row.line}: {name} repeats line {index[name].line}")
        index[name] = row
    return index


def read_name_list(path: pathlib.Path) -> list[Row]:
    """A list of image names, one per line (MAFL's ``training.txt``/``testing.txt``), as single-field rows."""
    return read_table(path, 1, "one image name")[1]


# ----------------------------------------------------------------------------------------------- geometry

def open_rgb(path: pathlib.Path) -> Image.Image:
    """The whole image as RGB; a one-line error naming the file when it cannot be decoded."""
    try:
        return decode_rgb(str(path))
    except Exception as error:  # noqa: BLE001 - Pillow raises many types on corrupt files
        raise ValueError(f"{path}: unreadable image ({type(error).__name__}: {error})") from None


def image_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) from the image header only."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable image ({type(error).__name__}: {error})") from None


def resize(image: Image.Image, points: np.ndarray, width: int, height: int) -> tuple[Image.Image, np.ndarray]:
    """``image`` resized to ``width`` x ``height`` (aspect not kept) and its (L, 2) pixel landmarks moved with it."""
    scale = np.array([width / image.width, height / image.height])
    return image.resize((width, height), RESAMPLING), (points + 0.5) * scale - 0.5


def crop(image: Image.Image, points: np.ndarray, left: int, top: int, right: int, bottom: int) -> tuple[Image.Image, np.ndarray]:
    """The pixels ``[left, right) x [top, bottom)`` of ``image`` (integers inside it) and the landmarks moved with them."""
    return image.crop((left, top, right, bottom)), points - np.array([left, top], np.float64)


def item(image: Image.Image, points: np.ndarray | None, visibility: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A record for ``write_array_records``: uint8 (R, R, 3) image, normalised (L, 2) landmarks, (L,) visibility."""
    if image.width != image.height:
        raise AssertionError(f"benchmark images are square, got {image.size}")
    result = {"image": np.asarray(image.convert("RGB"), np.uint8)}
    if points is not None:
        result["landmarks"] = pixel_to_normalized(np.asarray(points, np.float32), image.width).astype(np.float32)
    if visibility is not None:
        result["visibility"] = np.asarray(visibility, np.float32)
    return result


# ----------------------------------------------------------------------------------------------- writing

@dataclasses.dataclass
class Split:
    """One named split: how many records, what it is for, and a factory of its items (read lazily)."""

    name: str
    count: int
    role: str
    items: Callable[[], Iterator[dict[str, np.ndarray]]]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def source_entry(tree: SourceTree, path: pathlib.Path) -> dict[str, Any]:
    return {"path": tree.relative(path), "bytes": path.stat().st_size}


def write_benchmark(out: str | os.PathLike, splits: Sequence[Split], manifest: dict[str, Any], resolution: int,
                    shards: int) -> dict[str, Any]:
    """Writes every split to ``out/<name>/`` (``min(shards, count)`` shards each), then ``out/manifest.json`` → the manifest.

    ``manifest`` holds the data set's own fields (dataset, protocol, landmark names, sources, ...); the
    resolution, the splits (directory, count, role and extras) and the format are added here.
    """
    from lkgan_jax.data.array_records import write_array_records

    for split in splits:
        if split.count == 0:
            raise ValueError(f"split {split.name!r} of {manifest['dataset']} would be empty; check --root")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)  # never a manifest beside half-written splits
    entries = {}
    for split in splits:
        metadata = write_array_records(out / split.name, split.items(), split.count, resolution, min(shards, split.count))
        entries[split.name] = {"directory": split.name, "count": split.count, "role": split.role,
                               "keys": metadata["keys"], **split.extra}
    manifest = {"format": MANIFEST_FORMAT, "format_version": MANIFEST_VERSION, **manifest, "resolution": resolution,
                "resampling": "bilinear", "splits": entries}
    write_json(out / MANIFEST_FILE, manifest)
    return manifest
