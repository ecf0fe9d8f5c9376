"""CUB-200-2011 birds with their 15 parts and visibility (``cub``).

Files read (found by name anywhere below ``--root``, as in the ``CUB_200_2011`` archive; no header lines,
image and part ids 1-based):

- ``images.txt``: ``IMAGE_ID RELATIVE_PATH`` (paths below the ``images/`` folder);
- ``train_test_split.txt``: ``IMAGE_ID IS_TRAINING_IMAGE`` (1 train, 0 test);
- ``image_class_labels.txt``: ``IMAGE_ID CLASS_ID`` (1 .. 200);
- ``bounding_boxes.txt``: ``IMAGE_ID X Y WIDTH HEIGHT`` in pixels;
- ``parts/part_locs.txt``: ``IMAGE_ID PART_ID X Y VISIBLE``, 15 rows per image, VISIBLE 0 or 1;
- ``parts/parts.txt`` (optional): ``PART_ID NAME`` (the landmark names);
- the images below ``images/``.

Splits written (landmarks (15, 2) with NaN for invisible parts, and ``visibility`` (15,) 1/0):

- ``train`` / ``test``: the official training / test images of all 200 classes (CUB aligned and CUB-all);
- ``train_three``: the training images of classes 001, 002 and 003 (the three-class variants);
- ``test_001``, ``test_002``, ``test_003``: the test images of each of those classes (CUB-001/002/003).

Crop (the authors' CUB preprocessing in AutoLink, adapted there from Choudhury et al.'s part-discovery
evaluation): the image is first trimmed to a multiple of 16 pixels on each side (the remainder split
evenly, the odd pixel at the right/bottom), visible parts that fall outside become invisible, then a
square of side max(box width, box height) around the box centre, clipped to the image, is cut out and
resized to ``R`` x ``R`` (aspect ignored when clipping made it non-square).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import numpy as np

from lkgan_jax.data.benchmarks import common

DEFAULT_RESOLUTION = 128  # the CUB benchmarks are run at 128 px
NUM_PARTS = 15
PART_NAMES = ("back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
              "right eye", "right leg", "right wing", "tail", "throat")  # parts/parts.txt of the archive
TRIM_MULTIPLE = 16  # the authors trim every image to a multiple of 16 pixels before cropping
THREE_CLASSES = (1, 2, 3)  # CUB-001/002/003: the first three classes, as in SCOPS and its successors


def prepare_cub(root: str | os.PathLike, out: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                shards: int = 1) -> dict[str, Any]:
    """CUB-200-2011 (module docstring) → the manifest."""
    tree = common.SourceTree(root)
    images_path = tree.find_file("images.txt", "CUB's image list")
    split_path = tree.find_file("train_test_split.txt", "CUB's train/test split")
    classes_path = tree.find_file("image_class_labels.txt", "CUB's class of each image")
    boxes_path = tree.find_file("bounding_boxes.txt", "CUB's bird boxes")
    parts_path = tree.find_file("part_locs.txt", "CUB's 15 part locations per image", parent="parts")

    _, image_rows = common.read_table(images_path, 2, "image id and relative path")
    ids = common.index_rows(images_path, image_rows)
    for expected, row in enumerate(image_rows, start=1):
        if row.fields[0] != str(expected):
            raise ValueError(f"{images_path}:{row.line}: image ids must run 1, 2, 3, ...; expected {expected}, got {row.fields[0]!r}")
    num_images = len(image_rows)
    is_train = _per_image(split_path, "image id and 1 (train) or 0 (test)", ids, allowed={"0", "1"})
    class_ids = _per_image(classes_path, "image id and class id", ids)
    boxes = _per_image(boxes_path, "image id, x, y, width, height", ids, columns=5)
    points, visibility = _read_parts(parts_path, num_images)

    image_dir = images_path.parent / "images"  # beside images.txt in the archive, else anywhere below the root
    if not image_dir.is_dir():
        image_dir = tree.find_dir("images", "CUB's images", accept=lambda p: (p / image_rows[0].fields[1]).is_file())
    for row in image_rows:
        if not (image_dir / row.fields[1]).is_file():
            raise ValueError(f"{images_path}:{row.line}: image {row.fields[1]} is not in {image_dir}")

    def split(name: str, role: str, members: list[int]) -> common.Split:
        def items() -> Iterator[dict[str, np.ndarray]]:
            for index in members:
                yield _load(image_dir / image_rows[index].fields[1], boxes[index], points[index], visibility[index], resolution)
        return common.Split(name, len(members), role, items)

    train = [i for i in range(num_images) if is_train[i] == "1"]
    test = [i for i in range(num_images) if is_train[i] == "0"]
    splits = [split("train", "GAN training and landmark regression fit (official training images)", train),
              split("test", "landmark error (official test images)", test),
              split("train_three", "GAN training and regression fit for CUB-001/002/003 (training images of classes 1-3)",
                    [i for i in train if int(class_ids[i]) in THREE_CLASSES])]
    splits += [split(f"test_{c:03d}", f"landmark error of CUB-{c:03d} (test images of class {c})",
                     [i for i in test if int(class_ids[i]) == c]) for c in THREE_CLASSES]

    names_path = tree.find_file("parts.txt", "CUB's part names", parent="parts") if tree.has_file("parts.txt") else None
    part_names = _part_names(names_path) if names_path else list(PART_NAMES)
    manifest = {"dataset": "cub", "protocol": "cub", "num_landmarks": NUM_PARTS,
                "landmark_names": part_names,
                "evaluation": {"cub": {"train": "train", "regression": "train", "test": "test"},
                               **{f"cub_{c:03d}": {"train": "train_three", "regression": "train_three", "test": f"test_{c:03d}"}
                                  for c in THREE_CLASSES}},
                "sources": [common.source_entry(tree, p) for p in
                            (images_path, split_path, classes_path, boxes_path, parts_path, *([names_path] if names_path else []))],
                "image_directory": tree.relative(image_dir),
                "preprocessing": (f"trimmed to a multiple of {TRIM_MULTIPLE} px, square box of side max(w, h) around the "
                                  f"bird box centre clipped to the image, resized (aspect ignored) to {resolution} x {resolution}; "
                                  "parts outside the trimmed image made invisible")}
    return common.write_benchmark(out, splits, manifest, resolution, shards)


def _per_image(path: pathlib.Path, what: str, ids: dict[str, common.Row], columns: int = 2,
               allowed: set[str] | None = None) -> list[Any]:
    """One row per image id of ``images.txt`` → values in image order (a string, or floats for several columns)."""
    _, rows = common.read_table(path, columns, what)
    by_id = common.index_rows(path, rows)
    values = []
    for image_id in ids:
        if image_id not in by_id:
            raise ValueError(f"{path}: no row for image id {image_id} (images.txt line {ids[image_id].line})")
    for row in rows:
        if row.fields[0] not in ids:
            raise ValueError(f"{path}:{row.line}: image id {row.fields[0]!r} is not in images.txt")
        if allowed is not None and row.fields[1] not in allowed:
            raise ValueError(f"{path}:{row.line}: expected {' or '.join(sorted(allowed))} in column 2, got {row.fields[1]!r}")
        if columns == 2 and allowed is None:
            common.numbers(path, row, 1, integer=True)
    for image_id in ids:
        row = by_id[image_id]
        values.append(common.numbers(path, row) if columns > 2 else row.fields[1])
    return values


def _read_parts(path: pathlib.Path, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """part_locs.txt → (points (N, 15, 2) float64 pixels, visibility (N, 15) float32), every row checked."""
    _, rows = common.read_table(path, 5, "image id, part id, x, y, visible")
    if len(rows) != num_images * NUM_PARTS:
        raise ValueError(f"{path}:{rows[-1].line}: expected {NUM_PARTS} rows for each of the {num_images} images "
                         f"({num_images * NUM_PARTS} rows), found {len(rows)}")
    points = np.zeros((num_images, NUM_PARTS, 2))
    visibility = np.zeros((num_images, NUM_PARTS), np.float32)
    seen = np.zeros((num_images, NUM_PARTS), bool)
    for row in rows:
        image_id, part_id = common.numbers(path, row, 0, 2, integer=True).astype(int)
        if not 1 <= image_id <= num_images:
            raise ValueError(f"{path}:{row.line}: image id {image_id} is out of range 1..{num_images}")
        if not 1 <= part_id <= NUM_PARTS:
            raise ValueError(f"{path}:{row.line}: part id {part_id} is out of range 1..{NUM_PARTS}")
        if seen[image_id - 1, part_id - 1]:
            raise ValueError(f"{path}:{row.line}: part {part_id} of image {image_id} appears twice")
        seen[image_id - 1, part_id - 1] = True
        x, y, visible = common.numbers(path, row, 2, 5)
        if visible not in (0.0, 1.0):
            raise ValueError(f"{path}:{row.line}: visibility must be 0 or 1, got {row.fields[4]!r}")
        points[image_id - 1, part_id - 1] = (x, y)
        visibility[image_id - 1, part_id - 1] = visible
    return points, visibility


def _part_names(path: pathlib.Path) -> list[str]:
    """parts/parts.txt (``PART_ID NAME``, names may hold spaces) → the 15 names in part order."""
    names: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split(maxsplit=1)
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit() or not 1 <= int(fields[0]) <= NUM_PARTS:
            raise ValueError(f"{path}:{number}: expected a part id 1..{NUM_PARTS} and its name, found {line.strip()[:60]!r}")
        names[int(fields[0])] = fields[1].strip()
    if sorted(names) != list(range(1, NUM_PARTS + 1)):
        raise ValueError(f"{path}: expected names for parts 1..{NUM_PARTS}, found {len(names)}")
    return [names[i] for i in range(1, NUM_PARTS + 1)]


def _load(path: pathlib.Path, box: np.ndarray, points: np.ndarray, visibility: np.ndarray,
          resolution: int) -> dict[str, np.ndarray]:
    """The authors' CUB crop (module docstring) of one image → its record."""
    image = common.open_rgb(path)
    width, height = image.size
    visible = visibility.copy()
    # 1. Trim to a multiple of 16: the remainder is cut evenly, its odd pixel at the right/bottom.
    trim_w, trim_h = width % TRIM_MULTIPLE, height % TRIM_MULTIPLE
    new_w, new_h = width - trim_w, height - trim_h
    image, points = common.crop(image, points, trim_w // 2, trim_h // 2, trim_w // 2 + new_w, trim_h // 2 + new_h)
    outside = (points[:, 0] < 0) | (points[:, 0] >= new_w) | (points[:, 1] < 0) | (points[:, 1] >= new_h)
    visible[outside] = 0.0  # the authors drop visible parts that the trim cut off
    # 2. A square of side max(w, h) around the box centre, clipped to the original image, then moved into
    #    the trimmed frame. As in the authors' script, only the left/top edges are shifted by the trim
    #    offset, so the right/bottom edges are clipped to the trimmed image without the shift.
    x, y, box_w, box_h = box
    centre_x, centre_y, half = x + box_w / 2, y + box_h / 2, max(box_w, box_h) / 2
    left = max(0.0, max(0.0, centre_x - half) - trim_w // 2)
    top = max(0.0, max(0.0, centre_y - half) - trim_h // 2)
    right = min(float(new_w), min(float(width), centre_x + half))
    bottom = min(float(new_h), min(float(height), centre_y + half))
    left, top, right, bottom = (int(round(v)) for v in (left, top, right, bottom))
    image, points = common.crop(image, points, left, top, max(right, left + 1), max(bottom, top + 1))
    image, points = common.resize(image, points, resolution, resolution)
    points = np.where(visible[:, None] > 0, points, np.nan)
    return common.item(image, points, visible)
