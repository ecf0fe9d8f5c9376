"""Keypoint detector (docs/design.md §8; the detector design of AutoLink).

images (B, S, S, 3) in [-1, 1] → resize to ``input_size`` → residual down blocks → bilinear up blocks
→ conv3×3 to K heatmap logits (B, h, w, K) → spatial softmax → soft-argmax keypoints (B, K, 2) in the
convention of docs/design.md §1 ((x, y) = (column, row) in [-1, 1], the heatmap's pixel centres on linspace(-1, 1)).
BatchNorm uses batch statistics with ``train=True`` and running averages otherwise.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.conventions import coordinate_grid
from lkgan_jax.models.layers import conv, upsample2x

Dtype = Any


def downsample2x(x: jax.Array) -> jax.Array:
    """Bilinear ×0.5 (half-pixel centres, no antialiasing, i.e. the mean of each 2×2 block). (B,H,W,C)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h // 2, w // 2, c), method="bilinear", antialias=False)


def spatial_soft_argmax(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Heatmap logits (B, H, W, K) → (keypoints (B, K, 2) as (x, y) in [-1, 1], probabilities (B, H, W, K)).

    Each keypoint is the expectation of the pixel-centre coordinates under the softmax over H·W.
    """
    b, h, w, k = logits.shape
    probs = jax.nn.softmax(logits.astype(jnp.float32).reshape(b, h * w, k), axis=1).reshape(b, h, w, k)
    x = jnp.einsum("bhwk,w->bk", probs, coordinate_grid(w, jnp))
    y = jnp.einsum("bhwk,h->bk", probs, coordinate_grid(h, jnp))
    return jnp.stack([x, y], axis=-1), probs


class DownBlock(nn.Module):
    """conv3×3 → ×0.5 → BN → LReLU → conv3×3 → BN, plus conv3×3 → ×0.5 → BN skip; sum → LReLU."""

    features: int
    slope: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        def norm(name: str) -> nn.BatchNorm:
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=name)

        h = downsample2x(conv(self.features, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="conv_0")(x))
        h = nn.leaky_relu(norm("norm_0")(h), self.slope)
        h = norm("norm_1")(conv(self.features, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="conv_1")(h))
        skip = downsample2x(conv(self.features, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="skip")(x))
        return nn.leaky_relu(h + norm("norm_skip")(skip), self.slope)


class UpBlock(nn.Module):
    """×2 bilinear → conv3×3 → BN → LReLU."""

    features: int
    slope: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        h = conv(self.features, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="conv")(upsample2x(x))
        h = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name="norm")(h)
        return nn.leaky_relu(h, self.slope)


class KeypointDetector(nn.Module):
    """Images (B, S, S, 3) in [-1, 1] → (keypoints (B, K, 2), heatmap logits (B, h, w, K)).

    h = input_size / 2^len(down_channels) · 2^len(up_channels).
    """

    num_keypoints: int
    input_size: int
    down_channels: Sequence[int]
    up_channels: Sequence[int]
    slope: float = 0.2
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool = False) -> tuple[jax.Array, jax.Array]:
        b, s = images.shape[0], images.shape[1]
        x = images.astype(jnp.float32)
        if s != self.input_size:
            x = jax.image.resize(x, (b, self.input_size, self.input_size, 3), method="bilinear", antialias=s > self.input_size)
        x = x.astype(self.dtype)
        for i, features in enumerate(self.down_channels):
            x = DownBlock(features, self.slope, self.dtype, name=f"down_{i}")(x, train)
        for i, features in enumerate(self.up_channels):
            x = UpBlock(features, self.slope, self.dtype, name=f"up_{i}")(x, train)
        logits = conv(self.num_keypoints, 3, slope=self.slope, dtype=self.dtype, name="heatmaps")(x).astype(jnp.float32)
        keypoints, _ = spatial_soft_argmax(logits)
        return keypoints, logits


def make_detector(detect_config: Any, num_keypoints: int, dtype: Any = jnp.float32) -> KeypointDetector:
    """The detector of a ``detect`` config section for ``num_keypoints`` generator keypoints."""
    c = detect_config
    if c.input_size % 2 ** len(c.down_channels):
        raise ValueError(f"detect.input_size={c.input_size} is not divisible by 2^len(detect.down_channels)")
    return KeypointDetector(num_keypoints, c.input_size, tuple(c.down_channels), tuple(c.up_channels), dtype=dtype)
