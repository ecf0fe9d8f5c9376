"""The one convention for images and keypoints used everywhere in lkgan_jax (docs/design.md §1).

Images
    NHWC. Float in [-1, 1] inside models; uint8 in [0, 255] on disk.
Keypoints
    ``(..., K, 2)`` arrays of **(x, y) = (column, row)**, normalised to [-1, 1]. The centre of pixel
    ``i`` on a side of ``S`` pixels sits at ``-1 + 2 i / (S - 1)`` (the ``linspace(-1, 1, S)`` grid:
    pixel centres at exactly -1 and +1).

Every function here works on NumPy and JAX arrays alike (plain arithmetic only).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Array = Any  # np.ndarray | jax.Array


def pixel_to_normalized(pixels: Array, size: int | Array) -> Array:
    """Pixel coordinates (column, row; pixel centres at integers) -> normalised [-1, 1]."""
    return pixels * (2.0 / (np.asarray(size, np.float32) - 1.0)) - 1.0


def normalized_to_pixel(points: Array, size: int | Array) -> Array:
    """Normalised [-1, 1] coordinates -> pixel coordinates (column, row; centres at integers)."""
    return (points + 1.0) * pixels_per_unit(size)


def pixels_per_unit(size: int | Array) -> Array:
    """Pixels per normalised unit along a side of ``size`` pixels (lengths, not positions)."""
    return (np.asarray(size, np.float32) - 1.0) / 2.0


def coordinate_grid(size: int, xp: Any = np, dtype: Any = np.float32) -> Array:
    """The normalised coordinate of every pixel centre along one side: ``linspace(-1, 1, size)``."""
    return xp.linspace(-1.0, 1.0, size, dtype=dtype)


def uint8_to_float(images: Array) -> Array:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(np.float32) * (2.0 / 255.0) - 1.0


def float_to_uint8(images: Array) -> np.ndarray:
    """float [-1, 1] -> uint8 [0, 255] (rounded, clipped); returns a NumPy array."""
    images = np.asarray(images, dtype=np.float32)
    return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)
