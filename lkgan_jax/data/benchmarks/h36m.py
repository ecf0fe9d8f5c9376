"""Simplified Human3.6M as released by Zhang et al. (CVPR 2018) and used by KeypointGAN and AutoLink (``h36m_simplified``).

Layout read (the subject folders are found by name anywhere below ``--root``)::

    S<n>/WithBackground/<sequence>/<frame>.jpg   128 x 128 frames
    S<n>/Landmarks/<sequence>/<frame>.mat        keypoints_2d: 32 x 2, (row, column) as fractions in [0, 1]
    S<n>/BackgroudMask/<sequence>/<frame>.png    foreground masks (the release's spelling); only read
                                                 with ``remove_background``

Only sequences of the six activities (Directions, Discussion, Greeting, Posing, Waiting, Walking) are
read. The 32 fractions are taken on the pixel-centre grid (fraction 0 = first pixel centre, 1 = last),
so a stored landmark's normalised coordinate ``u`` gives back the file's fraction as ``(u + 1) / 2``,
the quantity the error is measured in (fraction of the image size).

Splits written (32 landmarks, all visible; frames ordered by subject, sequence name, frame number):

- ``train``: subjects 1, 5, 6, 7, 8, 9 (GAN or KeypointGAN training, and the regression fit);
- ``test``: subject 11.

Each split's manifest entry lists its sequences (subject, sequence, activity, first record, count):
KeypointGAN takes image pairs from the first half of each training sequence and prior poses from the
second half, and averages the test error per activity.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import numpy as np
from PIL import Image

from lkgan_jax.data.benchmarks import common

DEFAULT_RESOLUTION = 128  # the release's frames are 128 x 128
NUM_JOINTS = 32
# The subject split and the six activities of Zhang et al.'s simplified set, as KeypointGAN and
# AutoLink read it: train on S1, S5, S6, S7, S8, S9, test on S11.
TRAIN_SUBJECTS = (1, 5, 6, 7, 8, 9)
TEST_SUBJECTS = (11,)
ACTIVITIES = ("Directions", "Discussion", "Greeting", "Posing", "Waiting", "Walking")
IMAGES_DIR, LANDMARKS_DIR, MASKS_DIR = "WithBackground", "Landmarks", "BackgroudMask"
LANDMARK_KEY = "keypoints_2d"
# KeypointGAN's names of the 32 Human3.6M joints, in index order.
JOINT_NAMES = ("hip", "r_hip", "r_knee", "r_ankle", "r_ball", "r_toes", "l_hip", "l_knee", "l_ankle", "l_ball",
               "l_toes", "pelvis", "thorax", "neck", "head_center", "head_back", "l_unknown", "l_shoulder", "l_elbow",
               "l_wrist", "l_wrist_2", "l_thumb", "l_little", "l_little_2", "r_unknown", "r_shoulder", "r_elbow",
               "r_wrist", "r_wrist_2", "r_thumb", "r_little", "r_little_2")
# Left/right joint pairs (KeypointGAN's flip pairs), which the evaluation swaps.
LEFT_RIGHT_PAIRS = ((6, 1), (7, 2), (8, 3), (9, 4), (10, 5), (16, 24), (17, 25), (18, 26), (19, 27), (20, 28),
                    (21, 29), (22, 30), (23, 31))


def prepare_h36m(root: str | os.PathLike, out: str | os.PathLike, resolution: int = DEFAULT_RESOLUTION,
                 shards: int = 1, remove_background: bool = False) -> dict[str, Any]:
    """Simplified Human3.6M (module docstring) → the manifest.

    ``remove_background``: multiply every frame by its foreground mask (black background), as KeypointGAN
    trains and tests; AutoLink's reported number keeps the background.
    """
    tree = common.SourceTree(root)
    splits, subject_dirs = [], []
    for name, subjects, role in (("train", TRAIN_SUBJECTS, "training and regression fit (S1, S5, S6, S7, S8, S9)"),
                                 ("test", TEST_SUBJECTS, "error (S11)")):
        frames, sequences = [], []
        for subject in subjects:
            folder = tree.find_dir(f"S{subject}", f"subject {subject}'s frames",
                                   accept=lambda p: (p / IMAGES_DIR).is_dir())
            first = len(frames)
            for sequence, activity, sequence_frames in _sequences(folder, remove_background):
                sequences.append({"subject": f"S{subject}", "sequence": sequence, "activity": activity,
                                  "start": len(frames), "count": len(sequence_frames)})
                frames.extend(sequence_frames)
            subject_dirs.append({"path": tree.relative(folder), "frames": len(frames) - first})
        splits.append(common.Split(name, len(frames), role, _items(frames, resolution), {"sequences": sequences}))
    manifest = {"dataset": "h36m_simplified", "protocol": "h36m_simplified", "num_landmarks": NUM_JOINTS,
                "landmark_names": list(JOINT_NAMES), "left_right_pairs": [list(p) for p in LEFT_RIGHT_PAIRS],
                "sources": [], "subject_directories": subject_dirs, "activities": list(ACTIVITIES), "background_removed": remove_background,
                "evaluation": {"h36m": {"train": "train", "regression": "train", "test": "test"}},
                "preprocessing": (f"frames resized to {resolution} x {resolution}" if resolution != DEFAULT_RESOLUTION
                                  else "frames stored as released") + ("; multiplied by the foreground mask" if remove_background else "")}
    return common.write_benchmark(out, splits, manifest, resolution, shards)


Frame = tuple[pathlib.Path, pathlib.Path, pathlib.Path | None]  # image, landmarks, mask


def _sequences(subject_dir: pathlib.Path, remove_background: bool) -> Iterator[tuple[str, str, list[Frame]]]:
    """(sequence name, activity, frames) of one subject's six activities, every landmark (and mask) file checked."""
    images_root = subject_dir / IMAGES_DIR
    for sequence in sorted(os.listdir(images_root)):
        activity = next((a for a in ACTIVITIES if sequence.startswith(a)), None)
        if activity is None or not (images_root / sequence).is_dir():
            continue
        names = sorted((n for n in common.images_in(images_root / sequence)), key=common.frame_sort_key)
        landmark_dir = subject_dir / LANDMARKS_DIR / sequence
        landmark_files = set(os.listdir(landmark_dir)) if landmark_dir.is_dir() else set()
        mask_dir = subject_dir / MASKS_DIR / sequence
        mask_files = set(os.listdir(mask_dir)) if remove_background and mask_dir.is_dir() else set()
        frames = []
        for image_name in names:
            stem = os.path.splitext(image_name)[0]
            if stem + ".mat" not in landmark_files:
                raise ValueError(f"{landmark_dir / (stem + '.mat')}: missing (the landmarks of {images_root / sequence / image_name})")
            mask = None
            if remove_background:
                if stem + ".png" not in mask_files:
                    raise ValueError(f"{mask_dir / (stem + '.png')}: missing "
                                     f"(the foreground mask of {images_root / sequence / image_name})")
                mask = mask_dir / (stem + ".png")
            frames.append((images_root / sequence / image_name, landmark_dir / (stem + ".mat"), mask))
        if frames:
            yield sequence, activity, frames


def _items(frames: list[Frame], resolution: int):
    def items() -> Iterator[dict[str, np.ndarray]]:
        for image_path, landmark_path, mask_path in frames:
            image = common.open_rgb(image_path)
            if mask_path is not None:
                mask = np.asarray(common.open_rgb(mask_path).convert("L"), np.float32)[..., None] / 255.0
                if mask.shape[:2] != (image.height, image.width):
                    raise ValueError(f"{mask_path}: mask of {mask.shape[1]} x {mask.shape[0]} px for a "
                                     f"{image.width} x {image.height} frame")
                image = Image.fromarray(np.rint(np.asarray(image, np.float32) * mask).astype(np.uint8))
            fractions = _read_landmarks(landmark_path)
            # (row, column) fractions on the pixel-centre grid → (x, y) pixels of this frame.
            points = fractions[:, ::-1] * (np.array([image.width, image.height], np.float64) - 1.0)
            if image.size != (resolution, resolution):
                image, points = common.resize(image, points, resolution, resolution)
            yield common.item(image, points)
    return items


def _read_landmarks(path: pathlib.Path) -> np.ndarray:
    """keypoints_2d of one .mat file → float64 (32, 2); a one-line error naming the file otherwise."""
    from scipy import io as scipy_io

    try:
        values = scipy_io.loadmat(str(path))
    except Exception as error:  # noqa: BLE001 - scipy raises many types on damaged files
        raise ValueError(f"{path}: unreadable .mat file ({type(error).__name__}: {error})") from None
    if LANDMARK_KEY not in values:
        raise ValueError(f"{path}: no {LANDMARK_KEY} variable")
    array = np.asarray(values[LANDMARK_KEY], np.float64)
    if array.shape != (NUM_JOINTS, 2) or not np.isfinite(array).all():
        raise ValueError(f"{path}: {LANDMARK_KEY} must be {NUM_JOINTS} x 2 finite fractions, found shape {array.shape}")
    return array
