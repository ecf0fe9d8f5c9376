"""ArrayRecord shards of labelled images: the fast multi-host format (docs/design.md §6).

Written by ``lkgan prepare {procedural,folder} --format arrayrecord --out DIR [--shards N]``::

    DIR/metadata.json                        format, format_version, count, resolution, keys,
                                             image_encoding, num_landmarks, attribute_names, shards
    DIR/records-00000-of-0000N.array_record  records 0 .. n0 - 1, then the next shard, ...

A record is a msgpack map: ``image`` (PNG bytes of the R x R image), and where the set has them
``landmarks`` (float32 bytes of (L, 2) pixel coordinates of that image, NaN where unknown),
``attributes`` (float32 bytes of (A,) values named by ``attribute_names``) and ``visibility``
(float32 bytes of (L,) values, 1 visible, 0 not; a set without it has every landmark visible, so sets
written before it existed read unchanged). Records go to shards in
order, so record ``i`` of the set is item ``i``. Shards use ``group_size:1`` (one record per chunk),
so random access reads one chunk, and a damaged chunk costs one record.

``ArrayRecordImages(DIR, resolution)`` reads them back through Grain's ``ArrayRecordDataSource`` as
items of the image-folder form: ``image`` uint8 (R', R', 3) (centre-cropped and resized when the
wanted R' differs from the stored R), ``landmarks`` (L, 2) normalised, ``attributes`` (A,),
``visibility`` (L,) when the set has it. Corrupt
records are skipped and counted like corrupt files (``lkgan_jax.data.skipping``).
"""

from __future__ import annotations

import io
import os
import pathlib
from typing import Any, Iterable, Iterator, Sequence

import msgpack
import numpy as np
from PIL import Image

from lkgan_jax.conventions import normalized_to_pixel
from lkgan_jax.data import export
from lkgan_jax.data.image_folder import ImageFolder, decode_rgb, image_item
from lkgan_jax.data.skipping import SkipsUnreadable
from lkgan_jax.utils.files import files_sha256, read_format_json, write_json

FORMAT = "lkgan_jax.arrayrecord"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
IMAGE_ENCODING = "png"
WRITER_OPTIONS = "group_size:1"  # one record per chunk: cheap random access
KEYS = ("image", "landmarks", "attributes", "visibility")  # in this order in metadata["keys"]


def shard_name(index: int, count: int) -> str:
    return f"records-{index:05d}-of-{count:05d}.array_record"


def shard_sizes(count: int, shards: int) -> list[int]:
    """Records per shard: ``count`` split as evenly as possible, larger shards first."""
    return [len(part) for part in np.array_split(np.arange(count), shards)]


def encode_record(item: dict[str, np.ndarray]) -> bytes:
    """One record of an item (``image`` uint8 (R, R, 3); optional normalised ``landmarks`` (L, 2), ``attributes`` (A,),
    ``visibility`` (L,) 1/0)."""
    image = np.asarray(item["image"], np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=IMAGE_ENCODING.upper())
    record = {"image": buffer.getvalue()}
    if "landmarks" in item:
        pixels = normalized_to_pixel(np.asarray(item["landmarks"], np.float32), image.shape[0])
        record["landmarks"] = np.asarray(pixels, np.float32).tobytes()
    if "attributes" in item:
        record["attributes"] = np.asarray(item["attributes"], np.float32).tobytes()
    if "visibility" in item:
        record["visibility"] = np.asarray(item["visibility"], np.float32).tobytes()
    return msgpack.packb(record, use_bin_type=True)


def write_array_records(out_dir: str | os.PathLike, items: Iterable[dict[str, np.ndarray]], count: int,
                        resolution: int, shards: int, attribute_names: Sequence[str] = ()) -> dict[str, Any]:
    """Writes ``count`` items into ``shards`` ArrayRecord files, then metadata.json (atomically, last) → the metadata.

    Every item has the keys of the first one; ``image`` is uint8 (resolution, resolution, 3).
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    if not 1 <= shards <= count:
        raise ValueError(f"--shards must be between 1 and the number of images ({count}), got {shards}")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / METADATA_FILE).unlink(missing_ok=True)  # a reader never pairs old metadata with new shards
    sizes = shard_sizes(count, shards)
    iterator = iter(items)
    keys: tuple[str, ...] | None = None
    num_landmarks, shard_entries = 0, []
    for index, size in enumerate(sizes):
        name = shard_name(index, shards)
        writer = ArrayRecordWriter(str(out / name), WRITER_OPTIONS)
        try:
            for _ in range(size):
                item = next(iterator)
                item_keys = tuple(k for k in KEYS if k in item)
                if keys is None:
                    keys, num_landmarks = item_keys, len(item.get("landmarks", ()))
                if item_keys != keys or item["image"].shape != (resolution, resolution, 3):
                    raise ValueError(f"item {sum(e['count'] for e in shard_entries)} has keys {item_keys} and image shape "
                                     f"{item['image'].shape}; the set has {keys} and ({resolution}, {resolution}, 3)")
                writer.write(encode_record(item))
        finally:
            writer.close()
        shard_entries.append({"file": name, "count": size})
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "count": count,
        "resolution": resolution,
        "keys": list(keys or ()),
        "image_encoding": IMAGE_ENCODING,
        "num_landmarks": num_landmarks,
        "landmark_units": "pixels",
        "attribute_names": list(attribute_names) if "attributes" in (keys or ()) else [],
        "shards": shard_entries,
    }
    write_json(out / METADATA_FILE, metadata)
    return metadata


def prepare_procedural(out_dir: str | os.PathLike, num: int, resolution: int, seed: int, split: str, shards: int) -> dict[str, Any]:
    """Faces ``0 .. num - 1`` of ``ProceduralFaces(seed, split, resolution)`` as ArrayRecord shards → the metadata."""
    from lkgan_jax.data.procedural import ATTRIBUTE_NAMES

    source = export.procedural_export_source(num, resolution, seed, split)
    return write_array_records(out_dir, (source[i] for i in range(num)), num, resolution, shards, ATTRIBUTE_NAMES)


def prepare_folder(folder: str, out_dir: str | os.PathLike, resolution: int, shards: int) -> tuple[dict[str, Any], int]:
    """An image folder (with its landmarks.csv and attributes.csv, when present) as ArrayRecord shards.

    Images are centre-cropped and resized to ``resolution`` as for training from the folder; images
    missing from a CSV get NaN landmarks or attributes; unreadable ones are skipped. → (metadata, skipped).
    """
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    source = ImageFolder(folder, resolution)
    attributes_by_file, attribute_names = _read_attributes(folder)
    readable = [(index, item) for index, item in ((i, source.read(i)) for i in range(len(source))) if item is not None]
    if not readable:
        raise ValueError(f"--path {folder}: no readable image")

    def items() -> Iterator[dict[str, np.ndarray]]:
        for index, item in readable:
            if attribute_names:
                missing = np.full(len(attribute_names), np.nan, np.float32)
                item["attributes"] = attributes_by_file.get(source.relative_paths[index], missing)
            yield item

    metadata = write_array_records(out_dir, items(), len(readable), resolution, shards, attribute_names)
    return metadata, len(source) - len(readable)


def _read_attributes(folder: str) -> tuple[dict[str, np.ndarray], list[str]]:
    path = os.path.join(folder, export.ATTRIBUTES_CSV)
    if not os.path.isfile(path):
        return {}, []
    filenames, names, values = export.read_attributes_csv(path)
    return {os.path.normpath(f).replace(os.sep, "/"): v for f, v in zip(filenames, values)}, names


def read_metadata(path: str) -> dict[str, Any]:
    """The checked metadata.json of an ArrayRecord directory; one-line ValueErrors name the path."""
    if not os.path.isdir(path):
        raise ValueError(f"ArrayRecord directory {path!r} does not exist or is not a directory.")
    metadata_path = os.path.join(path, METADATA_FILE)
    if not os.path.isfile(metadata_path):
        raise ValueError(f"{path}: no {METADATA_FILE}; write ArrayRecord shards with `lkgan prepare procedural|folder --format arrayrecord`")
    metadata = read_format_json(metadata_path, FORMAT, FORMAT_VERSION, "an lkgan_jax ArrayRecord set", "prepare the set again")
    for entry in metadata["shards"]:
        if not os.path.isfile(os.path.join(path, entry["file"])):
            raise ValueError(f"{path}: shard {entry['file']} listed in {METADATA_FILE} is missing")
    return metadata


class ArrayRecordImages(SkipsUnreadable):
    """Random-access source over the shards of one ArrayRecord directory (module docstring).

    ``require_landmarks=True`` refuses a set without landmarks (per-record NaN landmarks stay; the
    landmark protocol drops them).
    """

    unreadable_kind = "record"

    def __init__(self, path: str, resolution: int, require_landmarks: bool = False):
        import grain

        self.metadata = read_metadata(path)
        self._init_skipping(path)
        self.resolution = resolution
        self.keys = tuple(self.metadata["keys"])
        if require_landmarks and not self.has_landmarks:
            raise ValueError(f"{path}: landmarks were required but this ArrayRecord set has none (keys: {', '.join(self.keys)})")
        self.shard_files = [entry["file"] for entry in self.metadata["shards"]]
        self._records = grain.sources.ArrayRecordDataSource([os.path.join(path, f) for f in self.shard_files])
        if len(self._records) != self.metadata["count"]:
            raise ValueError(f"{path}: the shards hold {len(self._records)} records, {METADATA_FILE} says {self.metadata['count']}")

    @property
    def has_landmarks(self) -> bool:
        return "landmarks" in self.keys

    @property
    def has_visibility(self) -> bool:
        """Whether records carry ``visibility``; without it every landmark counts as visible."""
        return "visibility" in self.keys

    def __len__(self) -> int:
        return self.metadata["count"]

    def content_sha256(self) -> str:
        """SHA-256 over metadata.json and every shard (keys cached real statistics)."""
        return files_sha256(self.root, [METADATA_FILE, *self.shard_files])

    def _describe(self, index: int) -> str:
        return f"{os.path.abspath(self.root)}#{index}"

    def _decode(self, index: int) -> tuple[Image.Image, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
        """(image, landmarks (L, 2) pixels, attributes (A,), visibility (L,)) of record ``index``; raises on any damage."""
        record = msgpack.unpackb(self._records[index], raw=False)
        landmarks = attributes = visibility = None
        if self.has_landmarks:
            landmarks = np.frombuffer(record["landmarks"], np.float32).reshape(self.metadata["num_landmarks"], 2)
        if "attributes" in self.keys:
            attributes = np.frombuffer(record["attributes"], np.float32).reshape(len(self.metadata["attribute_names"]))
        if self.has_visibility:
            visibility = np.frombuffer(record["visibility"], np.float32).reshape(self.metadata["num_landmarks"])
        return decode_rgb(io.BytesIO(record["image"])), landmarks, attributes, visibility

    def _make_item(self, index: int, decoded: tuple[Image.Image, np.ndarray | None, np.ndarray | None, np.ndarray | None]
                   ) -> dict[str, np.ndarray]:
        image, landmarks, attributes, visibility = decoded
        item = image_item(image, self.resolution, landmarks)
        if attributes is not None:
            item["attributes"] = attributes.copy()
        if visibility is not None:
            item["visibility"] = visibility.copy()
        return item
