"""Shared building blocks: initialisers, convolutions, activations, resampling (NHWC)."""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

Dtype = Any


def kaiming_leaky(negative_slope: float, scale: float = 1.0) -> nn.initializers.Initializer:
    """PyTorch's ``kaiming_normal_(a=slope, mode='fan_in')``: untruncated N(0, 2 / ((1 + a²) fan_in)),
    its standard deviation multiplied by ``scale`` (0: zeros)."""
    if scale == 0:
        return nn.initializers.zeros
    return nn.initializers.variance_scaling(scale**2 * 2.0 / (1.0 + negative_slope**2), "fan_in", "normal")


def conv(
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    use_bias: bool = True,
    slope: float,
    dtype: Dtype,
    init_scale: float = 1.0,
    name: str | None = None,
) -> nn.Conv:
    """A k×k convolution with PyTorch's ``padding=k//2`` (symmetric, also for stride 2); its Kaiming
    initial kernel is multiplied by ``init_scale``.

    Convolutions feeding a BatchNorm take ``use_bias=False``: the normalisation removes a bias, whose
    gradient is then zero up to rounding (and Adam would turn that rounding noise into updates).
    """
    pad = kernel // 2
    return nn.Conv(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=use_bias,
        kernel_init=kaiming_leaky(slope, init_scale),
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def dense(features: int, *, slope: float, dtype: Dtype, init_scale: float = 1.0, name: str | None = None) -> nn.Dense:
    """A fully connected layer with Kaiming(leaky slope) weights × ``init_scale`` and zero bias."""
    return nn.Dense(
        features,
        kernel_init=kaiming_leaky(slope, init_scale),
        bias_init=nn.initializers.zeros,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )


def upsample2x(x: jax.Array) -> jax.Array:
    """Bilinear ×2 upsampling with half-pixel centres (PyTorch ``align_corners=False``). (B,H,W,C)."""
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), method="bilinear")


class MLP(nn.Module):
    """``depth`` × (Dense(width) + LeakyReLU) then Dense(out_features); every layer its own module."""

    width: int
    depth: int
    out_features: int
    slope: float
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i in range(self.depth):
            x = nn.leaky_relu(dense(self.width, slope=self.slope, dtype=self.dtype, name=f"hidden_{i}")(x), self.slope)
        return dense(self.out_features, slope=self.slope, dtype=self.dtype, name="out")(x)


class ConvParams(nn.Module):
    """The parameters of a ``conv`` (k×k, stride 1, with bias) without the convolution.

    ``(in_features, features)`` → ``kernel`` (k, k, in_features, features) and ``bias`` (features,), both
    float32, declared in ``nn.Conv``'s order with its names and ``conv``'s initialisers: a module
    of the same name holds the same parameters, with the same initial values, as that conv. Lets several
    convs over one input run as one (``fused_conv``).
    """

    kernel_size: int
    slope: float
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, in_features: int, features: int) -> tuple[jax.Array, jax.Array]:
        k = self.kernel_size
        kernel = self.param("kernel", kaiming_leaky(self.slope, self.init_scale), (k, k, in_features, features), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        return kernel, bias


def fused_conv(x: jax.Array, params: Sequence[tuple[jax.Array, jax.Array]], dtype: Dtype) -> jax.Array:
    """Several ``conv``s (stride 1, padding k//2) of one input x (B, H, W, C_in) as one conv.

    ``params`` holds (kernel (k, k, C_in, C_i), bias (C_i,)) pairs (``ConvParams``); they are concatenated
    along the output axis, so the result is (B, H, W, ΣC_i), the i-th conv's output in channels
    [ΣC_<i, ΣC_≤i). Like ``nn.Conv`` with ``dtype``: input, kernel and bias are cast to ``dtype`` first.
    """
    kernel = jnp.concatenate([k for k, _ in params], axis=-1)
    bias = jnp.concatenate([b for _, b in params], axis=-1)
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=dtype)
    pad = kernel.shape[0] // 2
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias
