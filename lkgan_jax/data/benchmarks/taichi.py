"""Tai-Chi-HD as the unsupervised-keypoint papers use it (``taichi``).

Layout read (found by name anywhere below ``--root``; the authors' ``taichi/`` folder):

- ``train/``: the training videos' frames, one sub-folder per video (PNG/JPEG), unlabelled;
- ``eval_images/taichi-256/train/`` and ``eval_images/taichi-256/test/``: the 256 x 256 evaluation
  frames;
- ``landmark/taichi_train_gt.pkl`` and ``landmark/taichi_test_gt.pkl``: pandas data frames with the
  columns ``file_name`` (a frame of the matching evaluation folder) and ``value`` (18 x 2 joint
  positions (x, y) in pixels of that frame, -1 where a joint is missing). Reading them needs pandas.
  Instead of a ``.pkl``, a ``taichi_train_gt.csv`` / ``taichi_test_gt.csv`` with the header
  ``filename,x0,y0,...,x17,y17`` (the image-folder landmark CSV of ``lkgan_jax.data.export``, same
  values) is accepted and preferred.

Splits written (every frame resized to ``R`` x ``R``; the evaluation frames with 18 landmarks, NaN
where missing, and ``visibility`` (18,) 1 where both coordinates are known):

- ``train``: every frame below ``train/`` (for training the GAN; no landmarks);
- ``regression_train``: the frames of ``taichi_train_gt`` (for fitting the per-joint regression);
- ``test``: the frames of ``taichi_test_gt`` (the error is summed over joints at 256 px).
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Any, Iterator

import numpy as np

from lkgan_jax.data import export
from lkgan_jax.data.benchmarks import common
from lkgan_jax.data.image_folder import find_image_files

DEFAULT_RESOLUTION = 128  # Taichi models are trained at 128 px; the error is measured at 256 px
ERROR_RESOLUTION = 256
NUM_JOINTS = 18
# A missing joint is stored as -1 in the ground truth; the authors' evaluation (AutoLink/GANSeg) skips
# each coordinate within 1e-6 of -1.
MISSING = -1.0
MISSING_TOLERANCE = 1e-6
EVAL_DIR = "taichi-256"


def prepare_taichi(root: str | os.PathLike, out: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                   shards: int = 1) -> dict[str, Any]:
    """Tai-Chi-HD (module docstring) → the manifest."""
    tree = common.SourceTree(root)
    eval_dir = tree.find_dir(EVAL_DIR, "Taichi's 256 px evaluation frames")
    train_dir = tree.find_dir("train", "Taichi's training videos",
                              accept=lambda p: not {EVAL_DIR, "eval_images"} & set(p.relative_to(tree.root).parts))
    labelled = []
    sources = []
    for part in ("train", "test"):
        table_path, names, points, lines = _read_ground_truth(tree, part)
        frames_dir = eval_dir / part
        if not frames_dir.is_dir():
            raise ValueError(f"--root {tree.root}: no {part}/ folder in {eval_dir} (Taichi's {part} evaluation frames)")
        available = common.images_in(frames_dir)
        for name, line in zip(names, lines):
            if name not in available:
                raise ValueError(f"{table_path}:{line}: image {name} is not in {frames_dir}")
        labelled.append(([frames_dir / n for n in names], points))
        sources.append(common.source_entry(tree, table_path))
    frames = find_image_files(str(train_dir))

    def train_items() -> Iterator[dict[str, np.ndarray]]:
        for relative in frames:
            image = common.open_rgb(train_dir / relative)
            yield common.item(image.resize((resolution, resolution), common.RESAMPLING), None)

    def labelled_items(paths: list[pathlib.Path], points: np.ndarray) -> Iterator[dict[str, np.ndarray]]:
        for path, joints in zip(paths, points):
            missing = np.abs(joints - MISSING) <= MISSING_TOLERANCE
            image, moved = common.resize(common.open_rgb(path), joints, resolution, resolution)
            yield common.item(image, np.where(missing, np.nan, moved), (~missing.any(axis=1)).astype(np.float32))

    (train_paths, train_points), (test_paths, test_points) = labelled
    splits = [common.Split("train", len(frames), "GAN training (all training-video frames)", train_items),
              common.Split("regression_train", len(train_paths), "per-joint regression fit (taichi_train_gt)",
                           lambda: labelled_items(train_paths, train_points)),
              common.Split("test", len(test_paths), "summed joint error at 256 px (taichi_test_gt)",
                           lambda: labelled_items(test_paths, test_points))]
    manifest = {"dataset": "taichi", "protocol": "taichi", "num_landmarks": NUM_JOINTS, "landmark_names": None,
                "sources": sources, "image_directory": tree.relative(train_dir),
                "evaluation_directory": tree.relative(eval_dir), "error_resolution": ERROR_RESOLUTION,
                "evaluation": {"taichi": {"train": "train", "regression": "regression_train", "test": "test"}},
                "preprocessing": f"every frame resized (aspect ignored) to {resolution} x {resolution}; "
                                 "joints at -1 stored as NaN with visibility 0"}
    return common.write_benchmark(out, splits, manifest, resolution, shards)


def _read_ground_truth(tree: common.SourceTree, part: str) -> tuple[pathlib.Path, list[str], np.ndarray, list[str]]:
    """taichi_{part}_gt.csv (preferred) or .pkl → (path, frame names, joints (N, 18, 2) pixels, where each row is)."""
    stem = f"taichi_{part}_gt"
    if tree.has_file(stem + ".csv"):
        return _read_csv(tree.find_file(stem + ".csv", f"Taichi's {part} joints", parent="landmark"))
    path = tree.find_file(stem + ".pkl", f"Taichi's {part} joints", parent="landmark")
    return _read_pickle(path)


def _read_csv(path: pathlib.Path) -> tuple[pathlib.Path, list[str], np.ndarray, list[str]]:
    expected = export.landmark_header(NUM_JOINTS)
    with path.open(newline="") as file:
        rows = [(line, row) for line, row in enumerate(csv.reader(file), start=1) if row]
    if not rows or [c.strip() for c in rows[0][1]] != expected:
        raise ValueError(f"{path}:1: expected the header {','.join(expected)}")
    names, points, lines = [], [], []
    for line, row in rows[1:]:
        if len(row) != len(expected):
            raise ValueError(f"{path}:{line}: expected {len(expected)} columns (file name and {NUM_JOINTS} x, y), found {len(row)}")
        names.append(row[0].strip())
        points.append(common.numbers(path, common.Row(line, row)))
        lines.append(str(line))
    if not names:
        raise ValueError(f"{path}: no rows")
    return path, names, np.asarray(points).reshape(len(names), NUM_JOINTS, 2), lines


def _read_pickle(path: pathlib.Path) -> tuple[pathlib.Path, list[str], np.ndarray, list[str]]:
    try:
        import pandas
    except ImportError:
        raise ValueError(f"{path}: reading this pandas pickle needs pandas (pip install pandas), or give the same "
                         f"joints as {path.stem}.csv with the header filename,x0,y0,...,x{NUM_JOINTS - 1},y{NUM_JOINTS - 1}") from None
    try:
        # The authors' own ground-truth file: a pickle, which runs code when loaded; read only files you trust.
        frame = pandas.read_pickle(path)
        names = [str(name) for name in frame["file_name"]]
        values = list(frame["value"])
    except Exception as error:  # noqa: BLE001 - a damaged or foreign pickle raises anything
        raise ValueError(f"{path}: not the authors' Taichi ground truth ({type(error).__name__}: {error})") from None
    points = []
    for row, value in enumerate(values, start=1):
        array = np.asarray(value, np.float64)
        if array.shape != (NUM_JOINTS, 2) or not np.isfinite(array).all():
            raise ValueError(f"{path}: row {row}: expected {NUM_JOINTS} x 2 finite joint coordinates, found shape {array.shape}")
        points.append(array)
    if not names:
        raise ValueError(f"{path}: no rows")
    return path, names, np.asarray(points), [f"row {i}" for i in range(1, len(names) + 1)]
