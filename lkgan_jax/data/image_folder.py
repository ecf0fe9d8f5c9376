"""A folder of PNG/JPEG images as a random-access Grain source (docs/design.md §6).

``ImageFolder(path, resolution)`` scans ``path`` recursively for ``.png``/``.jpg``/``.jpeg`` files
(extension case-insensitive, order sorted by relative path so every process sees the same list).
``source[i]`` decodes file ``i`` fully with Pillow, converts it to RGB (grayscale, RGBA -- alpha
dropped --, palette, CMYK, ...), centre-crops the largest square and resizes that square to
``resolution`` with **Lanczos** resampling (``RESAMPLING``). EXIF orientation is not applied, so
landmarks stay in the stored pixel frame.

Item: ``dict(image=uint8 (R, R, 3))`` plus, when the folder holds ``landmarks.csv`` (format of
``lkgan_jax.data.export.read_landmarks_csv``: file names relative to the folder, landmarks in
pixel coordinates of the original image), ``landmarks=float32 (L, 2)`` as (x, y) normalised to
[-1, 1] in the frame of the cropped, resized image (``lkgan_jax.conventions``). With
``require_landmarks=True`` images missing from the CSV are excluded (and a missing CSV is an
error); otherwise they are kept and their landmarks are NaN, so every item has the same keys.

Corrupt or unreadable files never stop a run (``lkgan_jax.data.skipping``): a file that fails to
decode is logged (naming the file and the running count), remembered, and replaced by the next
readable index (wrapping around), so ``source[i]`` always returns an item. ``ImageFolder.num_skipped``
counts the distinct bad files of one source, ``skipping.total_skipped()`` those of every source in
this process (each Grain worker process keeps its own count).
"""

from __future__ import annotations

import os
from typing import IO

import numpy as np
from absl import logging
from PIL import Image

from lkgan_jax.conventions import pixel_to_normalized
from lkgan_jax.data.export import LANDMARKS_CSV, read_landmarks_csv
from lkgan_jax.data.skipping import SkipsUnreadable

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
RESAMPLING = Image.Resampling.LANCZOS

def find_image_files(root: str) -> list[str]:
    """Relative paths (POSIX separators, sorted) of every PNG/JPEG file below ``root``."""
    relative_paths = []
    for directory, _, filenames in os.walk(root):
        for filename in filenames:
            if os.path.splitext(filename)[1].lower() in IMAGE_EXTENSIONS:
                relative = os.path.relpath(os.path.join(directory, filename), root)
                relative_paths.append(relative.replace(os.sep, "/"))
    return sorted(relative_paths)


def centre_square(width: int, height: int) -> tuple[int, int, int]:
    """(left, top, side) of the largest centred square inside a ``width`` x ``height`` image."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def crop_and_resize_landmarks(
    landmarks_pixels: np.ndarray, width: int, height: int, resolution: int
) -> np.ndarray:
    """Landmarks (L, 2) in original pixels -> normalised coordinates of the cropped, resized image.

    Pillow resamples with pixel *areas* aligned (pixel ``j`` of the output covers input
    ``[j, j + 1) * side / resolution``), so a pixel centre ``x`` maps to
    ``(x - left + 0.5) * resolution / side - 0.5``.
    """
    left, top, side = centre_square(width, height)
    offset = np.array([left, top], np.float32)
    scale = np.float32(resolution / side)
    resized_pixels = (landmarks_pixels - offset + 0.5) * scale - 0.5
    return pixel_to_normalized(resized_pixels, resolution).astype(np.float32)


SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # Pillow's modes of 16-bit grayscale files


def decode_rgb(path: str | IO[bytes]) -> Image.Image:
    """Decode a whole image file (a path or a binary file object) into an RGB Pillow image (raises on any corrupt data).

    16-bit grayscale is scaled to 8 bits (v / 257, rounded): Pillow's own conversion would clip it.
    """
    with Image.open(path) as image:
        image.load()
        if image.mode in SIXTEEN_BIT_MODES:
            values = np.asarray(image, dtype=np.float64)
            return Image.fromarray(np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8), "L").convert("RGB")
        return image.convert("RGB")


def crop_and_resize_image(image: Image.Image, resolution: int) -> np.ndarray:
    """Centre-crop the largest square of ``image`` and resize it to uint8 (R, R, 3)."""
    left, top, side = centre_square(image.width, image.height)
    square = image.crop((left, top, left + side, top + side))
    return np.asarray(square.resize((resolution, resolution), RESAMPLING), dtype=np.uint8)


def image_item(image: Image.Image, resolution: int, landmarks_pixels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``dict(image=uint8 (R, R, 3))`` of the centre crop, plus ``landmarks`` (L, 2) normalised when given.

    ``landmarks_pixels`` (L, 2) are pixel coordinates of ``image`` (NaN stays NaN).
    """
    item = {"image": crop_and_resize_image(image, resolution)}
    if landmarks_pixels is not None:
        item["landmarks"] = crop_and_resize_landmarks(
            np.asarray(landmarks_pixels, np.float32), image.width, image.height, resolution)
    return item


class ImageFolder(SkipsUnreadable):
    """Random-access source over a folder of images; see the module docstring for items."""

    unreadable_kind = "image"

    def __init__(self, path: str, resolution: int, require_landmarks: bool = False):
        if not os.path.isdir(path):
            raise ValueError(f"Image folder {path!r} does not exist or is not a directory.")
        self._init_skipping(path)
        self.resolution = resolution
        relative_paths = find_image_files(path)
        self._landmarks_by_file = self._read_landmarks(path, require_landmarks)
        if require_landmarks:
            relative_paths = [p for p in relative_paths if p in self._landmarks_by_file]
        if not relative_paths:
            raise ValueError(f"Image folder {path!r} holds no usable .png/.jpg/.jpeg images.")
        self.relative_paths = relative_paths

    @staticmethod
    def _read_landmarks(root: str, require_landmarks: bool) -> dict[str, np.ndarray]:
        """Map relative file name -> landmarks (L, 2) in original pixels; {} when no CSV exists."""
        csv_path = os.path.join(root, LANDMARKS_CSV)
        if not os.path.isfile(csv_path):
            if require_landmarks:
                raise ValueError(f"Landmarks were required but {csv_path!r} does not exist.")
            return {}
        try:
            filenames, landmarks = read_landmarks_csv(csv_path)
        except ValueError as error:
            if require_landmarks:
                raise
            logging.warning("ignoring %s, which is not needed here: %s", LANDMARKS_CSV, error)
            return {}
        return {os.path.normpath(f).replace(os.sep, "/"): lm for f, lm in zip(filenames, landmarks)}

    @property
    def has_landmarks(self) -> bool:
        """Whether items carry a ``landmarks`` entry."""
        return bool(self._landmarks_by_file)

    @property
    def num_landmarks(self) -> int:
        """L, the number of landmarks per image (0 without a landmarks CSV)."""
        return next(iter(self._landmarks_by_file.values())).shape[0] if self.has_landmarks else 0

    def __len__(self) -> int:
        return len(self.relative_paths)

    def _full_path(self, index: int) -> str:
        return os.path.join(self.root, self.relative_paths[index])

    def _describe(self, index: int) -> str:
        return os.path.abspath(self._full_path(index))

    def _decode(self, index: int) -> Image.Image:
        return decode_rgb(self._full_path(index))

    def _make_item(self, index: int, image: Image.Image) -> dict[str, np.ndarray]:
        if not self.has_landmarks:
            return image_item(image, self.resolution)
        landmarks = self._landmarks_by_file.get(self.relative_paths[index])
        if landmarks is None:
            landmarks = np.full((self.num_landmarks, 2), np.nan, np.float32)
        return image_item(image, self.resolution, landmarks)
