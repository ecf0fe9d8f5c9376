"""Residual discriminator (docs/design.md §2): no normalisation, no batch-coupled layers."""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.models.layers import conv, dense

Dtype = Any


class DiscriminatorBlock(nn.Module):
    """conv3×3 → LReLU → conv3×3 → LReLU → conv3×3 stride 2, plus a 1×1 stride-2 skip; sum / √2."""

    features: int
    slope: float
    dtype: Dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.leaky_relu(conv(self.features, 3, slope=self.slope, dtype=self.dtype, name="conv_0")(x), self.slope)
        h = nn.leaky_relu(conv(self.features, 3, slope=self.slope, dtype=self.dtype, name="conv_1")(h), self.slope)
        h = conv(self.features, 3, stride=2, slope=self.slope, dtype=self.dtype, name="conv_down")(h)
        skip = conv(self.features, 1, stride=2, slope=self.slope, dtype=self.dtype, name="skip")(x)
        return (h + skip) * (1.0 / math.sqrt(2.0))


class Discriminator(nn.Module):
    """Images (B, R, R, 3) in [-1, 1] → logits (B,) float32; ``channels[i]`` = width of block i.

    With ``num_keypoints`` K > 0 a linear head on the last hidden features also regresses the K
    keypoints the image was rendered from (the keypoint-recovery term, docs/design.md §3);
    ``return_keypoints=True`` then returns ``(logits, keypoints (B, K, 2) float32)``.
    """

    channels: Sequence[int]
    dense_features: int
    slope: float = 0.2
    dtype: Dtype = jnp.float32
    num_keypoints: int = 0
    keypoint_head_init_scale: float = 1.0  # × the head's Kaiming initial weights (0: it starts at 0)

    @nn.compact
    def __call__(self, images: jax.Array, return_keypoints: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        x = images.astype(self.dtype)
        for i, features in enumerate(self.channels):
            x = DiscriminatorBlock(features, self.slope, self.dtype, name=f"block_{i}")(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.leaky_relu(dense(self.dense_features, slope=self.slope, dtype=self.dtype, name="dense")(x), self.slope)
        logits = dense(1, slope=self.slope, dtype=self.dtype, name="logit")(x)[:, 0].astype(jnp.float32)
        if self.num_keypoints > 0:
            keypoints = dense(2 * self.num_keypoints, slope=self.slope, dtype=self.dtype, init_scale=self.keypoint_head_init_scale,
                              name="keypoint_head")(x)
            keypoints = keypoints.astype(jnp.float32).reshape(-1, self.num_keypoints, 2)
        if not return_keypoints:
            return logits
        if self.num_keypoints <= 0:
            raise ValueError("this discriminator has no keypoint head (model.keypoint_recovery_weight is 0)")
        return logits, keypoints
