"""CelebA with the MAFL splits: aligned faces (``celeba``) and photos in the wild (``celeba_wild``).

Files read (found by name anywhere below ``--root``; both CelebA's official folders and the
``celeba.zip`` that the unsupervised-landmark papers share are accepted):

- ``list_landmarks_align_celeba.txt`` (aligned) or ``list_landmarks_celeba.txt`` (wild): the row
  count, the column names ``lefteye_x lefteye_y ... rightmouth_y``, then ``NAME x0 y0 ... x4 y4`` in
  pixels of that image;
- ``list_eval_partition.txt``: ``NAME 0|1|2`` (train / validation / test), no header;
- ``MAFL/training.txt``, ``MAFL/testing.txt``: one image name per line;
- wild only: ``list_bbox_celeba.txt``: the row count, ``image_id x_1 y_1 width height``, then one face
  box per image;
- the images: ``img_align_celeba/`` (or ``img_align_celeba_hq/``, or ``img_align_celeba_png/`` with
  ``.png`` names) for aligned faces, ``img_celeba/`` for the wild photos.

Splits written (each a normal ArrayRecord set with the 5 landmarks; landmark 0 and 1 are the eyes,
whose distance normalises the error):

- ``train``: CelebA's training partition without the MAFL test images (for training the GAN);
- ``mafl_train``: MAFL's training list (for fitting the landmark regression);
- ``mafl_test``: MAFL's test list (for the error).

``celeba`` crop: the whole aligned image is resized (aspect ignored) to ``round(R / 0.8)`` pixels and
the central ``R`` x ``R`` square is kept. ``celeba_wild``: a photo is kept only if its face box covers at
least 30 % of the image's area, and the whole photo is resized to ``R`` x ``R`` (aspect ignored).
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import numpy as np

from lkgan_jax.data.benchmarks import common

DEFAULT_RESOLUTION = 128  # both face benchmarks are run at 128 px
LANDMARK_COLUMNS = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                    "leftmouth_x leftmouth_y rightmouth_x rightmouth_y").split()
LANDMARK_NAMES = ("lefteye", "righteye", "nose", "leftmouth", "rightmouth")
BBOX_COLUMNS = ("image_id", "x_1", "y_1", "width", "height")
ALIGNED_IMAGE_DIRS = ("img_align_celeba", "img_align_celeba_hq", "img_align_celeba_png")
WILD_IMAGE_DIRS = ("img_celeba",)
TRAIN_PARTITION = 0
# The aligned crop: the MAFL benchmark's usual pipeline (Jakab et al.'s conditional-image-generation
# landmark code, whose CelebA/MAFL split logic we follow too) resizes the whole aligned face to R / 0.8
# and keeps the central R x R square. LatentKeypointGAN does not publish its own crop.
ALIGNED_CROP_FRACTION = 0.8
# The wild filter: the authors' CelebA-in-the-wild preprocessing (GANSeg / AutoLink) drops a photo
# whose face box area is below 30 % of the photo's area, in every split.
WILD_MIN_BOX_FRACTION = 0.3


def prepare_celeba(root: str | os.PathLike, out: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                   shards: int = 1) -> dict[str, Any]:
    """Aligned CelebA with the MAFL splits (module docstring) → the manifest."""
    tree = common.SourceTree(root)
    _refuse_tfds(tree)
    annotations = _Annotations(tree, "list_landmarks_align_celeba.txt")
    images = _ImageDirectory(tree, ALIGNED_IMAGE_DIRS, "CelebA's aligned faces")
    resized = int(np.round(resolution / ALIGNED_CROP_FRACTION))
    margin = int(np.round((resized - resolution) / 2.0))

    def load(path: pathlib.Path, points: np.ndarray) -> dict[str, np.ndarray]:
        image, points = common.resize(common.open_rgb(path), points, resized, resized)
        image, points = common.crop(image, points, margin, margin, margin + resolution, margin + resolution)
        return common.item(image, points)

    splits = [_split(name, role, members, annotations, images, load) for name, role, members in annotations.splits()]
    manifest = annotations.manifest("celeba", "mafl_aligned", images)
    manifest["preprocessing"] = (f"whole aligned image resized (aspect ignored) to {resized} x {resized}, "
                                 f"central {resolution} x {resolution} crop (fraction {ALIGNED_CROP_FRACTION})")
    return common.write_benchmark(out, splits, manifest, resolution, shards)


def prepare_celeba_wild(root: str | os.PathLike, out: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                        shards: int = 1) -> dict[str, Any]:
    """CelebA in the wild with the MAFL splits and the 30 % face-box filter (module docstring) → the manifest."""
    tree = common.SourceTree(root)
    annotations = _Annotations(tree, "list_landmarks_celeba.txt")
    bbox_path = tree.find_file("list_bbox_celeba.txt", "CelebA's face boxes")
    _, bbox_rows = common.read_table(bbox_path, 5, "image name, x_1, y_1, width, height", counted_header=True,
                                     header_names=BBOX_COLUMNS)
    boxes = common.index_rows(bbox_path, bbox_rows)
    images = _ImageDirectory(tree, WILD_IMAGE_DIRS, "CelebA's photos in the wild")

    def keep(list_path: pathlib.Path, row: common.Row) -> bool:
        name = row.fields[0]
        if name not in boxes:
            raise ValueError(f"{list_path}:{row.line}: {name} has no row in {bbox_path}")
        box = common.numbers(bbox_path, boxes[name])
        width, height = common.image_size(images.path(list_path, row))
        return box[2] * box[3] >= WILD_MIN_BOX_FRACTION * width * height

    def load(path: pathlib.Path, points: np.ndarray) -> dict[str, np.ndarray]:
        image, points = common.resize(common.open_rgb(path), points, resolution, resolution)
        return common.item(image, points)

    splits = []
    for name, role, members in annotations.splits():
        annotations.check(members, images)
        kept = [(list_path, row) for list_path, row in members if keep(list_path, row)]
        split = _split(name, role, kept, annotations, images, load)
        split.extra = {"listed": len(members), "dropped_small_face": len(members) - len(kept)}
        splits.append(split)
    manifest = annotations.manifest("celeba_wild", "celeba_wild", images)
    manifest["sources"].append(common.source_entry(tree, bbox_path))
    manifest["preprocessing"] = (f"photos whose face box covers less than {WILD_MIN_BOX_FRACTION:.0%} of the image "
                                 f"dropped; whole photo resized (aspect ignored) to {resolution} x {resolution}")
    return common.write_benchmark(out, splits, manifest, resolution, shards)


Member = tuple[pathlib.Path, common.Row]  # the list file that names an image, and that line


def _refuse_tfds(tree: common.SourceTree) -> None:
    """A prepared TFDS ``celeb_a`` cannot give the MAFL splits: its records hold neither file names nor keys."""
    if tree.has_file("dataset_info.json") and not tree.has_file("list_landmarks_align_celeba.txt"):
        if any(part.startswith("celeb_a") for path in tree.files_named("dataset_info.json") for part in path.parts):
            raise ValueError(f"--root {tree.root} is a prepared TFDS celeb_a, whose records carry no file names, so the "
                             "MAFL splits cannot be selected from it; give the CelebA files and MAFL lists instead")


class _Annotations:
    """The landmark table, the partition and the two MAFL lists, all read and checked up front."""

    def __init__(self, tree: common.SourceTree, landmark_file: str):
        self.tree = tree
        self.landmarks_path = tree.find_file(landmark_file, "CelebA's 5 landmarks per image")
        self.partition_path = tree.find_file("list_eval_partition.txt", "CelebA's train/validation/test partition")
        self.mafl_train_path = tree.find_file("training.txt", "MAFL's training list", parent="MAFL")
        self.mafl_test_path = tree.find_file("testing.txt", "MAFL's test list", parent="MAFL")
        _, rows = common.read_table(self.landmarks_path, 11, "image name and 10 landmark coordinates",
                                    counted_header=True, header_names=LANDMARK_COLUMNS)
        self.landmarks = {name: common.numbers(self.landmarks_path, row).reshape(5, 2)
                          for name, row in common.index_rows(self.landmarks_path, rows).items()}
        _, self.partition = common.read_table(self.partition_path, 2, "image name and partition 0, 1 or 2")
        for row in self.partition:
            if row.fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{self.partition_path}:{row.line}: partition must be 0, 1 or 2, got {row.fields[1]!r}")
        self.mafl_train = common.read_name_list(self.mafl_train_path)
        self.mafl_test = common.read_name_list(self.mafl_test_path)

    def splits(self) -> list[tuple[str, str, list[Member]]]:
        """(name, role, members) of train, mafl_train and mafl_test, in the order of the files that list them."""
        # The GAN's training images: CelebA's training partition minus the MAFL test images, the split of
        # the MAFL protocol (Thewlis et al.; the same list as the authors' celebA_training.txt).
        test_names = {row.fields[0] for row in self.mafl_test}
        train = [(self.partition_path, row) for row in self.partition
                 if int(row.fields[1]) == TRAIN_PARTITION and row.fields[0] not in test_names]
        return [("train", "GAN training (CelebA train partition without MAFL test)", train),
                ("mafl_train", "landmark regression fit (MAFL training list)", [(self.mafl_train_path, r) for r in self.mafl_train]),
                ("mafl_test", "landmark error (MAFL test list)", [(self.mafl_test_path, r) for r in self.mafl_test])]

    def check(self, members: list[Member], images: _ImageDirectory) -> None:
        """Every listed image has a landmark row and an image file (one-line errors naming the list and line)."""
        for list_path, row in members:
            if row.fields[0] not in self.landmarks:
                raise ValueError(f"{list_path}:{row.line}: {row.fields[0]} has no row in {self.landmarks_path}")
            images.path(list_path, row)

    def manifest(self, dataset: str, protocol: str, images: _ImageDirectory) -> dict[str, Any]:
        paths = (self.landmarks_path, self.partition_path, self.mafl_train_path, self.mafl_test_path)
        return {"dataset": dataset, "protocol": protocol, "num_landmarks": len(LANDMARK_NAMES),
                "landmark_names": list(LANDMARK_NAMES), "eye_landmarks": [0, 1],
                "evaluation": {protocol: {"train": "train", "regression": "mafl_train", "test": "mafl_test"}},
                "sources": [common.source_entry(self.tree, p) for p in paths],
                "image_directory": self.tree.relative(images.directory)}


class _ImageDirectory:
    """The folder of one CelebA image set; resolves listed names (``.jpg`` names also match ``.png`` files)."""

    def __init__(self, tree: common.SourceTree, names: tuple[str, ...], what: str):
        self.directory = tree.find_dir(names, what)
        self.files = common.images_in(self.directory)

    def path(self, list_path: pathlib.Path, row: common.Row) -> pathlib.Path:
        name = row.fields[0]
        if name in self.files:
            return self.directory / name
        png = os.path.splitext(name)[0] + ".png"
        if png in self.files:
            return self.directory / png
        raise ValueError(f"{list_path}:{row.line}: image {name} is not in {self.directory}")


def _split(name: str, role: str, members: list[Member], annotations: _Annotations, images: _ImageDirectory,
           load) -> common.Split:
    annotations.check(members, images)
    paths = [(images.path(list_path, row), annotations.landmarks[row.fields[0]]) for list_path, row in members]

    def items() -> Iterator[dict[str, np.ndarray]]:
        for path, points in paths:
            yield load(path, points)

    return common.Split(name, len(paths), role, items)
