"""Pictures people look at: keypoint overlays, image grids, PNG files (NumPy only, docs/design.md §11).

Shapes and conventions (``lkgan_jax.conventions``):
    images     uint8 (B, H, W, 3).
    keypoints  (B, K, 2) as (x, y) = (column, row) normalised to [-1, 1]; mapped to pixels with
               ``normalized_to_pixel`` (x with the width, y with the height).
    mask       (B, K) bool, True = draw; non-finite keypoints are never drawn.

Part ``k`` always has the colour ``part_colors(K)[k]``: a fixed hand-picked palette first, then
hues stepped by the golden ratio. Each keypoint is an anti-aliased filled disc with a thin dark
outline. Small samples (32 px) are unreadable at 1:1: upscale grids with ``upscale_nearest`` by
``readable_upscale_factor(tile_size)`` before saving; for crisp dots, upscale the images before
drawing (normalised keypoints do not depend on the resolution).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from lkgan_jax.conventions import normalized_to_pixel
from lkgan_jax.utils.files import write_atomically

# Well-separated colours (Kelly / Tableau inspired), used in this order for parts 0, 1, 2, ...
PART_PALETTE = np.array(
    [
        [230, 25, 75],  # red
        [60, 180, 75],  # green
        [255, 225, 25],  # yellow
        [0, 130, 200],  # blue
        [245, 130, 48],  # orange
        [145, 30, 180],  # purple
        [70, 240, 240],  # cyan
        [240, 50, 230],  # magenta
        [210, 245, 60],  # lime
        [250, 190, 212],  # pink
        [0, 128, 128],  # teal
        [170, 110, 40],  # brown
    ],
    dtype=np.uint8,
)
GOLDEN_RATIO_CONJUGATE = 0.618033988749895
EXTRA_COLOR_SATURATION = 0.85
EXTRA_COLOR_VALUE = 0.95

OUTLINE_COLOR = np.array([20, 20, 20], np.float32)
OUTLINE_WIDTH = 1.0  # pixels
MIN_RADIUS = 1.5  # pixels
RADIUS_PER_IMAGE_HEIGHT = 1.0 / 40.0

GRID_PAD_VALUE = 255
MIN_READABLE_TILE_SIZE = 128  # pixels per grid tile worth looking at
GIF_FRAME_MS = 120
CAPTION_HEIGHT = 14  # pixels, fits PIL's default bitmap font
CAPTION_COLOR = (40, 40, 40)
CHANGE_GAIN = 4.0  # change maps: a channel moved by a quarter of its range or more shows black


def hsv_to_rgb(hue: np.ndarray, saturation: float, value: float) -> np.ndarray:
    """Vectorised HSV -> RGB for hues in [0, 1): float (N,) -> float (N, 3) in [0, 1]."""
    channel_offsets = np.array([5.0, 3.0, 1.0])
    k = (channel_offsets + hue[:, None] * 6.0) % 6.0
    return value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def part_colors(num_parts: int) -> np.ndarray:
    """uint8 (K, 3): the palette, then golden-ratio hue steps for parts beyond it."""
    palette = PART_PALETTE[:num_parts]
    num_extra = num_parts - len(palette)
    hues = (np.arange(num_extra) * GOLDEN_RATIO_CONJUGATE) % 1.0
    extra = np.rint(hsv_to_rgb(hues, EXTRA_COLOR_SATURATION, EXTRA_COLOR_VALUE) * 255.0).astype(np.uint8)
    return np.concatenate([palette, extra.reshape(num_extra, 3)], axis=0)


def default_radius(image_height: int) -> float:
    """Disc radius in pixels that stays visible and scales with the image: max(1.5, H / 40)."""
    return max(MIN_RADIUS, image_height * RADIUS_PER_IMAGE_HEIGHT)


def disc_coverage(distance: np.ndarray, radius: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a disc of ``radius`` at pixels ``distance`` from its centre."""
    return np.clip(radius + 0.5 - distance, 0.0, 1.0)


def composite(canvas: np.ndarray, color: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """Blend ``color`` (3,) over ``canvas`` (B, H, W, 3) with per-pixel ``coverage`` (B, H, W)."""
    alpha = coverage[..., None]
    return canvas * (1.0 - alpha) + color * alpha


def draw_keypoints(
    images: np.ndarray,
    keypoints: np.ndarray,
    mask: np.ndarray | None = None,
    radius: float | None = None,
) -> np.ndarray:
    """Draw keypoints (B, K, 2, normalised) on uint8 images (B, H, W, 3) -> new uint8 (B, H, W, 3).

    Parts are drawn in index order (later parts on top); keypoints outside the image are clipped.
    """
    images = np.asarray(images)
    keypoints = np.asarray(keypoints, np.float32)
    _, height, width, _ = images.shape
    num_parts = keypoints.shape[1]
    radius = default_radius(height) if radius is None else radius
    visible = np.all(np.isfinite(keypoints), axis=-1)
    if mask is not None:
        visible &= np.asarray(mask, bool)
    columns = normalized_to_pixel(np.nan_to_num(keypoints[..., 0]), width)  # (B, K)
    rows = normalized_to_pixel(np.nan_to_num(keypoints[..., 1]), height)
    pixel_columns = np.arange(width, dtype=np.float32)[None, None, :]
    pixel_rows = np.arange(height, dtype=np.float32)[None, :, None]
    colors = part_colors(num_parts).astype(np.float32)
    canvas = images.astype(np.float32)
    for part in range(num_parts):  # K is small; every part is vectorised over (B, H, W)
        distance = np.hypot(pixel_columns - columns[:, part, None, None], pixel_rows - rows[:, part, None, None])
        on = visible[:, part, None, None]
        canvas = composite(canvas, OUTLINE_COLOR, disc_coverage(distance, radius) * on)
        canvas = composite(canvas, colors[part], disc_coverage(distance, radius - OUTLINE_WIDTH) * on)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile uint8 (B, H, W, 3) row-major into one uint8 image with ``pad`` pixels around every tile.

    ``ncols`` defaults to ceil(sqrt(B)); the output is
    (rows * (H + pad) + pad, ncols * (W + pad) + pad, 3) with rows = ceil(B / ncols).
    """
    images = np.asarray(images)
    count, height, width, channels = images.shape
    ncols = math.ceil(math.sqrt(count)) if ncols is None else min(ncols, count)
    nrows = math.ceil(count / ncols)
    tiles = np.full((nrows * ncols, height + pad, width + pad, channels), GRID_PAD_VALUE, images.dtype)
    tiles[:count, pad:, pad:] = images
    grid = tiles.reshape(nrows, ncols, height + pad, width + pad, channels).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(nrows * (height + pad), ncols * (width + pad), channels)
    return np.pad(grid, ((0, pad), (0, pad), (0, 0)), constant_values=GRID_PAD_VALUE)


def readable_upscale_factor(tile_size: int, min_tile_size: int = MIN_READABLE_TILE_SIZE) -> int:
    """Smallest integer factor that makes a ``tile_size`` tile at least ``min_tile_size`` pixels."""
    return max(1, math.ceil(min_tile_size / tile_size))


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscale of (..., H, W, C) by an integer ``factor`` -> (..., H*f, W*f, C)."""
    return np.repeat(np.repeat(image, factor, axis=-3), factor, axis=-2)


def save_png(path: str, image: np.ndarray) -> None:
    """Write uint8 (H, W, 3) or (H, W) to ``path`` atomically (temporary file + os.replace)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"save_png needs a uint8 (H, W[, 3]) image, got {image.dtype} {image.shape} for {path!r}.")
    write_atomically(path, lambda file: Image.fromarray(image).save(file, format="PNG"))


def save_gif(path: str, frames: np.ndarray, frame_ms: int = GIF_FRAME_MS, loop_back: bool = True) -> None:
    """Write uint8 frames (T, H, W, 3) as a looping animated GIF, atomically.

    ``loop_back`` appends the frames in reverse (without repeating the ends) so the animation
    swings back and forth instead of jumping from the last frame to the first.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"save_gif needs uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape} for {path!r}.")
    if loop_back and len(frames) > 2:
        frames = np.concatenate([frames, frames[-2:0:-1]])
    images = [Image.fromarray(frame) for frame in frames]
    write_atomically(
        path, lambda file: images[0].save(file, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    )


def change_map(before: np.ndarray, after: np.ndarray, gain: float = CHANGE_GAIN) -> np.ndarray:
    """Where two uint8 (..., H, W, 3) images differ -> uint8 (..., H, W, 3) grey: white where they agree,
    darker with the largest channel difference d (in [0, 1] of the range): 255 · (1 − min(1, gain · d))."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape or before.dtype != np.uint8 or after.dtype != np.uint8:
        raise ValueError(f"change_map needs two uint8 images of one shape, got {before.dtype} {before.shape} and {after.dtype} {after.shape}.")
    difference = np.abs(after.astype(np.int16) - before.astype(np.int16)).max(axis=-1) / 255.0
    shade = np.rint(255.0 * (1.0 - np.minimum(1.0, gain * difference))).astype(np.uint8)
    return np.repeat(shade[..., None], 3, axis=-1)


def add_caption(image: np.ndarray, text: str, height: int = CAPTION_HEIGHT) -> np.ndarray:
    """uint8 (H, W, 3) -> (H + height, W, 3) with ``text`` in dark grey on white below the image."""
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + height), (GRID_PAD_VALUE,) * 3)
    canvas.paste(Image.fromarray(image), (0, 0))
    ImageDraw.Draw(canvas).text((2, image.shape[0] + 1), text, fill=CAPTION_COLOR)
    return np.asarray(canvas)
