"""The unpaired pose prior: landmarks of images that are never trained on, as a (N, K, 2) pool.

Sources (``prior.source``):
  procedural   the procedural faces' ``prior`` split: faces disjoint from the train and test splits,
               of which only the landmarks are computed (no image is drawn);
  folder:PATH  an image folder with ``landmarks.csv`` (the format of ``lkgan prepare``), which must not
               be the training folder. Landmarks follow the images' centre crop, like the training data.
  arrayrecord:PATH  ArrayRecord shards with landmarks (``lkgan prepare ... --format arrayrecord``),
               likewise not the training set.

``prior.size`` poses are kept: the first ``size`` faces of the procedural split, or a seeded
(``prior.seed``) choice without replacement among a folder's images (0: all of them).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from lkgan_jax.data.procedural import PRIOR_INDEX_START, face_landmarks_only
from lkgan_jax.data.sources import PROCEDURAL, ImageSource


def load_prior_poses(prior_config: Any, data_config: Any, num_points: int) -> np.ndarray:
    """float32 (N, K, 2) poses in the keypoint convention; one-line errors name the config field."""
    source = ImageSource.parse(prior_config.source)
    size = int(prior_config.size)
    if size < 0 or (size == 0 and source.kind == PROCEDURAL):
        raise ValueError(f"prior.size must be positive (0: all of a folder), got {size}")
    if source.kind == PROCEDURAL:
        if data_config.source != PROCEDURAL:
            raise ValueError("prior.source=procedural needs procedural training data; give prior.source=folder:PATH")
        poses = face_landmarks_only(data_config.seed, range(PRIOR_INDEX_START, PRIOR_INDEX_START + size))
    else:
        poses = _folder_poses(source, data_config, size, prior_config.seed)
    if poses.shape[1] != num_points:
        raise ValueError(f"prior {source} has {poses.shape[1]} landmarks per pose, but model.num_points={num_points}")
    return poses.astype(np.float32)


def _folder_poses(source: ImageSource, data_config: Any, size: int, seed: int) -> np.ndarray:
    if data_config.source == source.kind and os.path.realpath(data_config.path) == os.path.realpath(source.path):
        raise ValueError(f"prior.source {source} is the training folder (data.path); the prior must be a disjoint set of poses")
    folder = source.open(data_config.resolution, require_landmarks=True)
    order = np.arange(len(folder))
    if size:
        order = np.random.default_rng(seed).permutation(len(folder))[:size]
    poses = [item["landmarks"] for item in map(folder.read, order) if item is not None]
    poses = [pose for pose in poses if np.all(np.isfinite(pose))]
    if not poses:
        raise ValueError(f"prior.source {source} has no readable image with landmarks")
    return np.stack(poses)
