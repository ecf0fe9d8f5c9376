"""Multi-scale sliced Wasserstein distance (SWD) on Laplacian-pyramid patches (Karras et al. 2018, app. D.4).

Images: uint8 (N, R, R, 3) in [0, 255], or floating (N, R, R, 3) in [-1, 1], mapped to [0, 255] by
(x + 1) · 127.5 (the uint8 range the method was defined on). R is a power of two ≥ ``min_side``.

1. Laplacian pyramid per image (float64) with the 5×5 binomial filter w = [1, 4, 6, 4, 1]/16 ⊗ the
   same, reflect ("mirror", edge sample not repeated) borders: ``down(x)`` = blur then keep every
   second pixel; ``up(x)`` = insert zeros between pixels, then blur with 4·w. Levels at sides R, R/2,
   … ≥ ``min_side``: level i = gᵢ − up(gᵢ₊₁) with g₀ = image, gᵢ₊₁ = down(gᵢ); the last level is
   the Gaussian residual itself (at 32 px: levels 32 and 16). ``reconstruct_pyramid`` inverts it.
2. Per level, ``patches_per_image`` random 7×7×3 patches (descriptors of dim 147) per image, their
   centres drawn from a seeded ``np.random.Generator``. The same positions are used for the real
   and the fake image of equal index, so identical sets give exactly 0. Each descriptor set (real or
   fake, per level) is normalised by its own per-colour-channel mean and std (a channel with zero
   std is only centred).
3. SWD between two equal-size descriptor sets: for each of ``num_repeats`` draws of
   ``dirs_per_repeat`` random unit directions, project both sets, sort each projection, take the
   mean absolute difference of the sorted values; average over directions and repeats.

Reported values are SWD × 1e3, as in the paper: keys ``swd_{side}`` per level and ``swd_mean``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PATCH_SIZE = 7
DEFAULT_MIN_SIDE = 16
DEFAULT_PATCHES_PER_IMAGE = 64
DEFAULT_NUM_REPEATS = 4
DEFAULT_DIRS_PER_REPEAT = 128
IMAGE_CHUNK = 256  # images whose pyramids are held at once
SORT_THREADS = max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

_TAPS = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur_axis(x: np.ndarray, axis: int, gain: float = 1.0, stride: int = 1) -> np.ndarray:
    """5-tap binomial filter (× gain) along axis with reflect borders, keeping every ``stride``-th output."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (2, 2)
    padded = np.pad(x, pad, mode="reflect")
    size = x.shape[axis]
    out = np.zeros(x.shape[:axis] + ((size + stride - 1) // stride,) + x.shape[axis + 1 :], np.float64)
    for t, w in enumerate(_TAPS * gain):
        index = [slice(None)] * x.ndim
        index[axis] = slice(t, t + size, stride)
        out += w * padded[tuple(index)]
    return out


def pyr_down(images: np.ndarray) -> np.ndarray:
    """Blur then halve: (N, H, W, C) → (N, H/2, W/2, C) float64."""
    return _blur_axis(_blur_axis(images, 1, stride=2), 2, stride=2)


def pyr_up(images: np.ndarray) -> np.ndarray:
    """Zero-insert then blur with 4·w: (N, H, W, C) → (N, 2H, 2W, C) float64."""
    n, h, w, c = images.shape
    up = np.zeros((n, 2 * h, 2 * w, c), np.float64)
    up[:, ::2, ::2] = images
    return _blur_axis(_blur_axis(up, 1, gain=2.0), 2, gain=2.0)


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> list[np.ndarray]:
    """Levels [(N, R, R, C), (N, R/2, R/2, C), …] float64, the last one the Gaussian residual."""
    current = np.asarray(images, np.float64)
    levels = []
    for _ in range(num_levels - 1):
        smaller = pyr_down(current)
        levels.append(current - pyr_up(smaller))
        current = smaller
    levels.append(current)
    return levels


def reconstruct_pyramid(levels: list[np.ndarray]) -> np.ndarray:
    """Inverse of ``laplacian_pyramid``: the (N, R, R, C) float64 images."""
    image = levels[-1]
    for level in levels[-2::-1]:
        image = pyr_up(image) + level
    return image


def _to_uint8_range(images: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"SWD needs uint8 or floating {name} images, got dtype {x.dtype}")
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= -1.0 - 1e-3 and x.max() <= 1.0 + 1e-3):
        raise ValueError(f"SWD needs floating {name} images in [-1, 1], got range [{x.min()}, {x.max()}]")
    return (x.astype(np.float64) + 1.0) * 127.5


def _extract_patches(level: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Patches around centres ys, xs (n, P) of level (n, S, S, C) → (n·P, 7, 7, C) float32."""
    offsets = np.arange(PATCH_SIZE) - PATCH_SIZE // 2
    n, p = ys.shape
    image = np.repeat(np.arange(n), p)[:, None, None]
    rows = ys.reshape(-1)[:, None, None] + offsets[None, :, None]
    cols = xs.reshape(-1)[:, None, None] + offsets[None, None, :]
    return level[image, rows, cols].astype(np.float32)


def _normalise(patches: np.ndarray) -> np.ndarray:
    """Per-channel standardisation of patches (P, 7, 7, C) over the whole set → descriptors (P, 49·C) float32."""
    mean = patches.mean(axis=(0, 1, 2), dtype=np.float64)
    std = np.sqrt(np.mean((patches - mean.astype(np.float32)) ** 2, axis=(0, 1, 2), dtype=np.float64))
    scale = 1.0 / np.where(std > 0, std, 1.0)
    x = (patches - mean.astype(np.float32)) * scale.astype(np.float32)
    return x.reshape(x.shape[0], -1)


def _sorted_gap_sum(proj_a: np.ndarray, proj_b: np.ndarray) -> float:
    """Σ |sorted rows of proj_a − sorted rows of proj_b| for (d, P) arrays, sorting them in place."""
    proj_a.sort(axis=1)
    proj_b.sort(axis=1)
    proj_a -= proj_b
    return float(np.abs(proj_a, out=proj_a).sum(dtype=np.float64))


def sliced_distance(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Mean over directions (D, F) of the mean |sorted projection of a − sorted projection of b|; a, b (P, F).

    The directions are used as given (unit rows for a Wasserstein-1 distance); no ×1e3 scaling. The
    projections are sorted in row blocks on ``SORT_THREADS`` threads (NumPy's sort releases the GIL).
    """
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"sliced distance needs equal-size descriptor sets (P, F), got {a.shape} and {b.shape}")
    dirs = np.asarray(directions, a.dtype)
    proj_a, proj_b = dirs @ a.T, dirs @ b.T  # (D, P)
    rows = np.array_split(np.arange(dirs.shape[0]), min(SORT_THREADS, dirs.shape[0]))
    with ThreadPoolExecutor(len(rows)) as pool:
        sums = pool.map(lambda r: _sorted_gap_sum(proj_a[r[0] : r[-1] + 1], proj_b[r[0] : r[-1] + 1]), rows)
        total = sum(sums)
    return total / proj_a.size


def random_directions(rng: np.random.Generator, num: int, dim: int) -> np.ndarray:
    """``num`` random unit vectors (num, dim) float64, uniform on the sphere."""
    dirs = rng.standard_normal((num, dim))
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def sliced_wasserstein(
    real_images: np.ndarray,
    fake_images: np.ndarray,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    patches_per_image: int = DEFAULT_PATCHES_PER_IMAGE,
    num_repeats: int = DEFAULT_NUM_REPEATS,
    dirs_per_repeat: int = DEFAULT_DIRS_PER_REPEAT,
    seed: int = 0,
) -> dict[str, float]:
    """SWD × 1e3 per pyramid level (``swd_{side}``) and their mean (``swd_mean``) between real and fake
    images (N, R, R, 3), uint8 or float in [-1, 1]; see the module docstring."""
    real_shape, fake_shape = np.shape(real_images), np.shape(fake_images)
    if len(real_shape) != 4 or real_shape[-1] != 3 or real_shape[1:] != fake_shape[1:] or len(fake_shape) != 4:
        raise ValueError(f"SWD needs real and fake images (N, R, R, 3) of one size, got {real_shape} and {fake_shape}")
    if real_shape[0] != fake_shape[0] or real_shape[0] < 1:
        raise ValueError(f"SWD needs equal, non-zero image counts, got {real_shape[0]} real and {fake_shape[0]} fake")
    if min_side < PATCH_SIZE:
        raise ValueError(f"SWD needs min_side >= {PATCH_SIZE} (the patch size), got {min_side}")
    side = real_shape[1]
    if real_shape[2] != side or side < min_side or side & (side - 1):
        raise ValueError(f"SWD needs square images with a power-of-two side >= {min_side}, got {real_shape[1:3]}")
    if min(patches_per_image, num_repeats, dirs_per_repeat) < 1:
        raise ValueError("SWD needs patches_per_image, num_repeats and dirs_per_repeat >= 1")
    real, fake = _to_uint8_range(real_images, "real"), _to_uint8_range(fake_images, "fake")

    sides = []
    while side >= min_side:
        sides.append(side)
        side //= 2
    n, half = real.shape[0], PATCH_SIZE // 2
    rng = np.random.default_rng(seed)
    centres = [
        (rng.integers(half, s - half, (n, patches_per_image)), rng.integers(half, s - half, (n, patches_per_image)))
        for s in sides
    ]

    patches: dict[str, list[list[np.ndarray]]] = {"real": [[] for _ in sides], "fake": [[] for _ in sides]}
    for start in range(0, n, IMAGE_CHUNK):
        chunk = slice(start, min(start + IMAGE_CHUNK, n))
        for name, images in (("real", real), ("fake", fake)):
            for i, level in enumerate(laplacian_pyramid(images[chunk], len(sides))):
                patches[name][i].append(_extract_patches(level, centres[i][0][chunk], centres[i][1][chunk]))

    result = {}
    for i, s in enumerate(sides):
        desc_real = _normalise(np.concatenate(patches["real"][i]))
        desc_fake = _normalise(np.concatenate(patches["fake"][i]))
        patches["real"][i] = patches["fake"][i] = []
        distances = [
            sliced_distance(desc_real, desc_fake, random_directions(rng, dirs_per_repeat, desc_real.shape[1]))
            for _ in range(num_repeats)
        ]
        result[f"swd_{s}"] = 1e3 * float(np.mean(distances))
    result["swd_mean"] = float(np.mean([result[f"swd_{s}"] for s in sides]))
    return result
