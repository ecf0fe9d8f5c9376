"""KeypointGAN networks (NHWC): encoder Φ, pose regressor η, conditional decoder Ψ and the pose discriminator D.

images (B, R, R, 3) ─Φ→ skeleton image (B, R, R, 1) ─η→ heat-map logits (B, R/2^(n-1), R/2^(n-1), K)
─soft-argmax→ keypoints ─render→ skeleton ─Ψ(·, style image)→ reconstruction (B, R, R, 3).
D judges skeleton images at scales 1, 1/2, 1/4, … with separate weights.

Convolutions use N(0, 0.02) weights and zero biases; BatchNorm scales start at N(1, 0.02). Every module
computes in ``dtype`` (parameters stay float32) and returns float32.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.models.layers import upsample2x

Dtype = Any

_WEIGHT_INIT = nn.initializers.normal(stddev=0.02)


def _bn_scale_init(key: jax.Array, shape: Sequence[int], dtype: Dtype = jnp.float32) -> jax.Array:
    """BatchNorm scale ~ N(1, 0.02)."""
    return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _conv(features: int, kernel: int, *, stride: int = 1, pad: int | None = None, use_bias: bool, dtype: Dtype, name: str) -> nn.Conv:
    """A k×k convolution with symmetric PyTorch-style padding (default k // 2)."""
    p = kernel // 2 if pad is None else pad
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((p, p), (p, p)),
        use_bias=use_bias,
        kernel_init=_WEIGHT_INIT,
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def _batch_norm(train: bool, dtype: Dtype, name: str) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=_bn_scale_init,
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def _instance_norm(dtype: Dtype, name: str | None = None) -> nn.GroupNorm:
    """Per-sample, per-channel normalisation over H, W; no scale, no bias, no running statistics."""
    return nn.GroupNorm(num_groups=None, group_size=1, epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype, name=name)


def downsample(x: jax.Array, factor: int) -> jax.Array:
    """Bilinear ×1/factor with half-pixel centres and no antialiasing (×½: the mean of each 2×2 block). (B,H,W,C)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, h // factor, w // factor, c), method="bilinear", antialias=False)


def _check_channels(channels: Sequence[int], name: str) -> None:
    if len(channels) < 2:
        raise ValueError(f"{name}.channels needs at least 2 entries, got {tuple(channels)}")


class _ConvBNReLU(nn.Module):
    """conv k×k (no bias) → BatchNorm → ReLU."""

    features: int
    kernel: int = 3
    stride: int = 1
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = _conv(self.features, self.kernel, stride=self.stride, use_bias=False, dtype=self.dtype, name="conv")(x)
        return nn.relu(_batch_norm(train, self.dtype, "norm")(x))


class _BNEncoder(nn.Module):
    """η's trunk with BatchNorm and bias-free convs, then a plain 1×1: (B,R,R,C) → (B, R/2^(n-1), R/2^(n-1), channels[-1])."""

    channels: Sequence[int]
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        for i, c in enumerate(self.channels):
            x = _ConvBNReLU(c, 7 if i == 0 else 3, 1 if i == 0 else 2, self.dtype, name=f"block_{i}_0")(x, train)
            x = _ConvBNReLU(c, 3, 1, self.dtype, name=f"block_{i}_1")(x, train)
        return _conv(self.channels[-1], 1, use_bias=False, dtype=self.dtype, name="out")(x)


class SkeletonEncoder(nn.Module):
    """Φ, a U-Net ("SkipNips"): images (B, R, R, 3) → skeleton image (B, R, R, 1), unbounded.

    Encoder block i (channels[i], stride 2 for i > 0) is two conv-BN-ReLUs (the first 7×7 in block 0);
    the last block adds a plain 1×1. The decoder mirrors it: two convs and ×2 up at the bottom, then per
    level concat(skip) → plain 1×1 fuse → convs → ×2 up, ending in a 3×3 conv with bias to one channel.
    R must be divisible by 2^(len(channels) - 1).
    """

    channels: Sequence[int] = (32, 64, 128, 256)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> jax.Array:
        ch = tuple(self.channels)
        _check_channels(ch, "SkeletonEncoder")
        n = len(ch)
        x = images.astype(self.dtype)
        skips = []
        for i, c in enumerate(ch):
            x = _ConvBNReLU(c, 7 if i == 0 else 3, 1 if i == 0 else 2, self.dtype, name=f"enc_{i}_0")(x, train)
            x = _ConvBNReLU(c, 3, 1, self.dtype, name=f"enc_{i}_1")(x, train)
            skips.append(x)
        x = _conv(ch[-1], 1, use_bias=False, dtype=self.dtype, name=f"enc_{n - 1}_out")(x)
        x = _ConvBNReLU(ch[-1], dtype=self.dtype, name="dec_0_0")(x, train)
        x = _ConvBNReLU(ch[-1], dtype=self.dtype, name="dec_0_1")(x, train)
        x = upsample2x(x)
        for j in range(1, n):
            level = n - 1 - j
            fused = x.shape[-1]
            x = jnp.concatenate([x, skips[level]], axis=-1)
            x = _conv(fused, 1, use_bias=False, dtype=self.dtype, name=f"dec_{j}_fuse")(x)
            x = _ConvBNReLU(ch[level], dtype=self.dtype, name=f"dec_{j}_0")(x, train)
            if level > 0:
                x = _ConvBNReLU(ch[level], dtype=self.dtype, name=f"dec_{j}_1")(x, train)
                x = upsample2x(x)
        x = _conv(1, 3, use_bias=True, dtype=self.dtype, name="out")(x)
        return x.astype(jnp.float32)


class PoseRegressor(nn.Module):
    """η: skeleton image (B, R, R, 1) → heat-map logits (B, R/2^(n-1), R/2^(n-1), num_points).

    Block i (channels[i]): conv (7×7 s1 for i = 0, else 3×3 s2) and conv 3×3 s1, each with bias →
    InstanceNorm → ReLU; then a plain 1×1 to ``num_points``. Read keypoints with ``soft_argmax(logits)``.
    """

    num_points: int
    channels: Sequence[int] = (32, 64, 128, 256)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, skeleton: jax.Array) -> jax.Array:
        x = skeleton.astype(self.dtype)
        for i, c in enumerate(self.channels):
            x = _conv(c, 7 if i == 0 else 3, stride=1 if i == 0 else 2, use_bias=True, dtype=self.dtype, name=f"block_{i}_0")(x)
            x = nn.relu(_instance_norm(self.dtype, name=f"block_{i}_0_norm")(x))
            x = _conv(c, 3, use_bias=True, dtype=self.dtype, name=f"block_{i}_1")(x)
            x = nn.relu(_instance_norm(self.dtype, name=f"block_{i}_1_norm")(x))
        return _conv(self.num_points, 1, use_bias=True, dtype=self.dtype, name="out")(x).astype(jnp.float32)


class ConditionalDecoder(nn.Module):
    """Ψ ("CondNips"): (skeleton (B, R, R, 1), style image (B, R, R, 3)) → image (B, R, R, 3), unbounded.

    Separate pose and style encoders (η's trunk with BatchNorm, no conv bias, a plain 1×1 at the end)
    give two spatial maps at R/2^(n-1), concatenated. The decoder runs, per level from the deepest,
    two conv-BN-ReLUs and ×2 up; the top level has one conv-BN-ReLU and a 3×3 conv with bias to RGB.
    No skip connections.
    """

    channels: Sequence[int] = (32, 64, 128, 256)
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, skeleton: jax.Array, style: jax.Array, train: bool) -> jax.Array:
        ch = tuple(self.channels)
        _check_channels(ch, "ConditionalDecoder")
        pose = _BNEncoder(ch, self.dtype, name="pose_encoder")(skeleton.astype(self.dtype), train)
        look = _BNEncoder(ch, self.dtype, name="style_encoder")(style.astype(self.dtype), train)
        x = jnp.concatenate([pose, look], axis=-1)
        for level in range(len(ch) - 1, 0, -1):
            x = _ConvBNReLU(ch[level], dtype=self.dtype, name=f"dec_{level}_0")(x, train)
            x = _ConvBNReLU(ch[level], dtype=self.dtype, name=f"dec_{level}_1")(x, train)
            x = upsample2x(x)
        x = _ConvBNReLU(ch[0], dtype=self.dtype, name="dec_0_0")(x, train)
        x = _conv(3, 3, use_bias=True, dtype=self.dtype, name="out")(x)
        return x.astype(jnp.float32)


class PatchDiscriminator(nn.Module):
    """PatchGAN: (B, R, R, C) → patch logits (B, h, w, 1) (h = 14 at R = 128 with the defaults).

    4×4 convs with bias and padding 1: ``num_layers`` stride-2 convs (width base·min(2^i, 8); the first
    without norm), one stride-1 conv, then a stride-1 conv to one channel. InstanceNorm, LeakyReLU 0.2.
    """

    base_channels: int = 64
    num_layers: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        for i in range(self.num_layers + 1):
            stride = 2 if i < self.num_layers else 1
            x = _conv(self.base_channels * min(2**i, 8), 4, stride=stride, pad=1, use_bias=True, dtype=self.dtype, name=f"conv_{i}")(x)
            if i > 0:
                x = _instance_norm(self.dtype, name=f"norm_{i}")(x)
            x = nn.leaky_relu(x, 0.2)
        x = _conv(1, 4, pad=1, use_bias=True, dtype=self.dtype, name="out")(x)
        return x.astype(jnp.float32)


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` PatchDiscriminators (``scale_s``, separate weights); scale s sees the input resized by 1/2^s.

    x (B, R, R, 1) → [patch logits (B, h_s, w_s, 1) for s in 0..num_scales-1]. Each scale is resized
    directly from the input (bilinear, half-pixel centres, no antialiasing: at ×½ the 2×2 block mean,
    at ×¼ the mean of the central 2×2 of each 4×4 block).
    """

    num_scales: int = 3
    base_channels: int = 64
    num_layers: int = 3
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        x = x.astype(jnp.float32)
        outputs = []
        for s in range(self.num_scales):
            xs = x if s == 0 else downsample(x, 2**s)
            d = PatchDiscriminator(self.base_channels, self.num_layers, self.dtype, name=f"scale_{s}")
            outputs.append(d(xs))
        return outputs
