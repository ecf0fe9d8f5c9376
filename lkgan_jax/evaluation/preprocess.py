"""FID pre-processing protocols: uint8 NHWC images → float32 (B, 299, 299, 3) in the Inception's range.

``pytorch_fid`` (default; pytorch-fid's ``InceptionV3(resize_input=True, normalize_input=True)``):
    x / 255 → bilinear resize to 299 with half-pixel centres and **no antialias** (torch
    ``F.interpolate(..., align_corners=False)``) → 2x − 1.
``tf_legacy`` (TTUR / TF1 graph / torch-fidelity / StyleGAN metrics):
    TF1 ``resize_bilinear(align_corners=False)`` on the uint8-valued floats — source coordinate
    ``dst · (in / out)`` without half-pixel offset, the upper neighbour clamped at the far edge, no
    antialias — then (x − 128) / 128.

Both are traceable (use them inside ``jax.jit``); index tables depend only on static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.evaluation.inception import INPUT_SIZE

PROTOCOLS = ("pytorch_fid", "tf_legacy")
DEFAULT_PROTOCOL = "pytorch_fid"


def check_protocol(protocol: str) -> str:
    """Returns ``protocol`` or raises ValueError (one line) naming the known protocols."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown FID protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    return protocol


def tf1_resize_indices(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF1 legacy bilinear sampling along one axis: (lower int32, upper int32, lerp float32), each (out,).

    ``scale = in / out`` (float32), ``src = i · scale``, ``lower = ⌊src⌋``, ``upper = min(lower + 1, in − 1)``,
    ``lerp = src − ⌊src⌋``.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    source = np.arange(out_size, dtype=np.float32) * scale
    lower = np.floor(source)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower.astype(np.int32), upper.astype(np.int32), (source - lower).astype(np.float32)


def tf1_resize_bilinear(images: jax.Array, size: int) -> jax.Array:
    """TF1 ``resize_bilinear(align_corners=False, half_pixel_centers=False)`` of float (B, H, W, C) to size².

    Same operation order as TF: ``top = tl + (tr − tl)·dx``, ``bottom = bl + (br − bl)·dx``,
    ``out = top + (bottom − top)·dy``.
    """
    _, height, width, _ = images.shape
    y0, y1, dy = tf1_resize_indices(height, size)
    x0, x1, dx = tf1_resize_indices(width, size)
    top, bottom = jnp.take(images, y0, axis=1), jnp.take(images, y1, axis=1)
    dx = dx[None, None, :, None]
    top = jnp.take(top, x0, axis=2) + (jnp.take(top, x1, axis=2) - jnp.take(top, x0, axis=2)) * dx
    bottom = jnp.take(bottom, x0, axis=2) + (jnp.take(bottom, x1, axis=2) - jnp.take(bottom, x0, axis=2)) * dx
    return top + (bottom - top) * dy[None, :, None, None]


def preprocess(images: jax.Array | np.ndarray, protocol: str = DEFAULT_PROTOCOL) -> jax.Array:
    """uint8 images (B, H, W, 3) NHWC → float32 (B, 299, 299, 3) for ``FidInceptionV3`` under ``protocol``."""
    check_protocol(protocol)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"FID pre-processing expects uint8 images (B, H, W, 3), got shape {tuple(images.shape)}")
    if images.dtype != jnp.uint8:
        raise ValueError(f"FID pre-processing expects uint8 images (as saved on disk), got dtype {images.dtype}")
    batch, height, width, _ = images.shape
    x = jnp.asarray(images).astype(jnp.float32)
    already_sized = (height, width) == (INPUT_SIZE, INPUT_SIZE)
    if protocol == "pytorch_fid":
        x = x / 255.0
        if not already_sized:
            x = jax.image.resize(x, (batch, INPUT_SIZE, INPUT_SIZE, 3), "bilinear", antialias=False)
        return 2.0 * x - 1.0
    if not already_sized:
        x = tf1_resize_bilinear(x, INPUT_SIZE)
    return (x - 128.0) / 128.0
