"""Random thin-plate-spline (TPS) warps for image-pair augmentation; pure JAX, jit-able.

An ``S×S`` image is replicate-padded by ``S // 2`` on every side to a canvas of side ``N = S + 2·(S // 2)``
(``2S`` for even ``S``). The warp lives on that canvas in normalised coordinates [-1, 1] with pixel
centres at ``linspace(-1, 1, N)``, so the image spans about [-0.5, 0.5] and one canvas unit is
``(N - 1) / 2 ≈ S`` pixels. For every output location ``g = (x, y)`` (column, row) the sampling location is

    g' = t + A·g + Σ_k w_k · U(‖g − c_k‖²),   U(r²) = r² · log r²  (r² clipped at 1e-8),

with control points ``c_k`` on a regular ``G×G`` grid over [-1, 1]². The canvas is sampled bilinearly at
``g'`` (pixel centres at the grid ends, zero outside the canvas) and the central ``S×S`` is kept; only
that crop's locations are ever computed.

Per sample: ``A = s·R(θ)`` with ``θ ~ N(0, rotation_deg)`` degrees and ``s = 1 + N(0, scale)``;
``t ~ N(0, translation)`` per coordinate; ``w = σ1·N(0, 1) + σ2·Bernoulli(0.5)·N(0, 1)`` per coordinate,
``(σ1, σ2) = warp``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class TpsMagnitudes:
    """Standard deviations of the random warp; ``translation`` in canvas units (1 unit ≈ S pixels)."""

    rotation_deg: float = 5.0
    scale: float = 0.05
    translation: float = 0.05
    warp: tuple[float, float] = (0.0005, 0.005)

    @classmethod
    def from_config(cls, section: Any) -> TpsMagnitudes:
        """From a mapping or ConfigDict with any of the fields ``rotation_deg, scale, translation, warp``."""
        get = section.get if hasattr(section, "get") else (lambda name: getattr(section, name, None))
        values = {}
        for field in dataclasses.fields(cls):
            value = get(field.name)
            if value is not None:
                values[field.name] = tuple(float(v) for v in value) if field.name == "warp" else float(value)
        return cls(**values)


FULL_TPS = TpsMagnitudes()
AFFINE_ONLY = TpsMagnitudes(warp=(0.0, 0.0))
IDENTITY = TpsMagnitudes(rotation_deg=0.0, scale=0.0, translation=0.0, warp=(0.0, 0.0))


@flax.struct.dataclass
class TpsParams:
    """One warp per sample: ``A`` (B, 2, 2), ``t`` (B, 2), ``w`` (B, G², 2); all act on (x, y)."""

    A: jax.Array
    t: jax.Array
    w: jax.Array


def sample_tps(key: jax.Array, batch: int, magnitudes: TpsMagnitudes = FULL_TPS, grid_points: int = 10) -> TpsParams:
    """Independent random warps for ``batch`` samples on a ``grid_points²`` control grid."""
    k_rot, k_scale, k_t, k_w1, k_w2, k_bern = jax.random.split(key, 6)
    theta = jnp.deg2rad(magnitudes.rotation_deg * jax.random.normal(k_rot, (batch,)))
    s = 1.0 + magnitudes.scale * jax.random.normal(k_scale, (batch,))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    A = s[:, None, None] * jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)
    t = magnitudes.translation * jax.random.normal(k_t, (batch, 2))
    shape = (batch, grid_points * grid_points, 2)
    sigma1, sigma2 = magnitudes.warp
    bernoulli = jax.random.bernoulli(k_bern, 0.5, shape).astype(jnp.float32)
    w = sigma1 * jax.random.normal(k_w1, shape) + sigma2 * bernoulli * jax.random.normal(k_w2, shape)
    return TpsParams(A=A.astype(jnp.float32), t=t.astype(jnp.float32), w=w.astype(jnp.float32))


def identity_tps(batch: int, grid_points: int = 10) -> TpsParams:
    """``batch`` identity warps (A = I, t = 0, w = 0)."""
    return TpsParams(
        A=jnp.broadcast_to(jnp.eye(2, dtype=jnp.float32), (batch, 2, 2)),
        t=jnp.zeros((batch, 2), jnp.float32),
        w=jnp.zeros((batch, grid_points * grid_points, 2), jnp.float32),
    )


def control_points(grid_points: int) -> jax.Array:
    """(G², 2) control points (x, y) on a regular grid over [-1, 1]²."""
    axis = jnp.linspace(-1.0, 1.0, grid_points, dtype=jnp.float32)
    y, x = jnp.meshgrid(axis, axis, indexing="ij")
    return jnp.stack([x.ravel(), y.ravel()], -1)


def _canvas_side(size: int) -> tuple[int, int]:
    pad = size // 2
    return size + 2 * pad, pad


def sampling_grid(params: TpsParams, size: int, central_only: bool = False) -> jax.Array:
    """Sampling locations (x, y) in canvas units: (B, N, N, 2) on the whole canvas of an ``size``-px image,
    or (B, size, size, 2) for its central crop when ``central_only``."""
    side, pad = _canvas_side(size)
    axis = jnp.linspace(-1.0, 1.0, side, dtype=jnp.float32)
    if central_only:
        axis = axis[pad : pad + size]
    n = axis.shape[0]
    y, x = jnp.meshgrid(axis, axis, indexing="ij")
    g = jnp.stack([x.ravel(), y.ravel()], -1)  # (P, 2)
    grid_points = math.isqrt(params.w.shape[1])
    if grid_points * grid_points != params.w.shape[1]:
        raise ValueError(f"TPS weights need a square number of control points, got {params.w.shape[1]}")
    r2 = jnp.sum((g[:, None, :] - control_points(grid_points)[None]) ** 2, -1)  # (P, G²)
    r2 = jnp.maximum(r2, 1e-8)
    kernel = r2 * jnp.log(r2)
    warped = params.t[:, None, :] + jnp.einsum("bij,pj->bpi", params.A, g) + jnp.einsum("pk,bki->bpi", kernel, params.w)
    return warped.reshape(-1, n, n, 2)


def warp_images(images: jax.Array, params: TpsParams) -> jax.Array:
    """Warps (B, S, S, C) images with one TPS each; returns (B, S, S, C) in the input dtype."""
    batch, size, size_w, channels = images.shape
    if size != size_w:
        raise ValueError(f"TPS warps need square images, got {size}×{size_w}")
    side, pad = _canvas_side(size)
    grid = sampling_grid(params, size, central_only=True).reshape(batch, size * size, 2)
    pixels = (grid + 1.0) * (0.5 * (side - 1))  # canvas pixel coordinates (column, row)
    lower = jnp.floor(pixels)
    frac = pixels - lower
    lower = lower.astype(jnp.int32)
    flat = images.reshape(batch, size * size, channels)
    out = jnp.zeros((batch, size * size, channels), jnp.float32)
    for dy in (0, 1):
        for dx in (0, 1):
            col, row = lower[..., 0] + dx, lower[..., 1] + dy
            inside = (col >= 0) & (col < side) & (row >= 0) & (row < side)
            weight = (frac[..., 0] if dx else 1.0 - frac[..., 0]) * (frac[..., 1] if dy else 1.0 - frac[..., 1])
            weight = jnp.where(inside, weight, 0.0)
            # The canvas is the replicate-padded image: canvas pixel j is image pixel clip(j - pad).
            index = jnp.clip(row - pad, 0, size - 1) * size + jnp.clip(col - pad, 0, size - 1)
            values = jnp.take_along_axis(flat, index[..., None], axis=1)
            out = out + weight[..., None] * values
    return out.reshape(batch, size, size, channels).astype(images.dtype)


def random_warp(key: jax.Array, images: jax.Array, magnitudes: TpsMagnitudes = FULL_TPS) -> jax.Array:
    """Warps each of the (B, S, S, C) images with its own random TPS."""
    return warp_images(images, sample_tps(key, images.shape[0], magnitudes))
