"""Gaussian keypoint heatmaps and the spatial embedding map that conditions the renderer (docs/design.md §2).

For a side of S pixels with normalised pixel centres p ∈ linspace(-1, 1, S)²:
  H_k(p)  = mask_k · exp(-‖p − kp_k‖² / τ_k)
  H_bg(p) = 1 − max_k H_k(p)
  F(p)    = Σ_k H_k(p) w_k + H_bg(p) w_bg                         shape (B, S, S, D)

Two options keep coarse layers informed (both 0, i.e. off, in the paper's renderer):
  - a width floor: τ_k is raised to (c · 2 / (S − 1))², so each Gaussian's 1/e radius spans at least
    c pixel spacings of the layer it conditions (``tau_floor_pixels = c``);
  - layers with S < ``min_keypoint_size`` get no parts: F = w_bg everywhere.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lkgan_jax.conventions import coordinate_grid
from lkgan_jax.models.latent import Latent


def keypoint_heatmaps(keypoints: jax.Array, tau: jax.Array, mask: jax.Array, size: int) -> jax.Array:
    """Masked Gaussian heatmaps, (B, K, 2), (B, K), (B, K) -> (B, S, S, K) float32, peak 1.

    The Gaussian is separable: exp(-(dx² + dy²)/τ) = exp(-dx²/τ)·exp(-dy²/τ), so it costs two
    (B, K, S) evaluations and one outer product.
    """
    grid = coordinate_grid(size, jnp)
    keypoints = keypoints.astype(jnp.float32)
    inv_tau = (1.0 / tau.astype(jnp.float32))[..., None]
    along_x = jnp.exp(-jnp.square(grid - keypoints[..., 0:1]) * inv_tau)  # (B, K, S): columns
    along_y = jnp.exp(-jnp.square(grid - keypoints[..., 1:2]) * inv_tau)  # (B, K, S): rows
    along_y = along_y * mask[..., None].astype(jnp.float32)
    return jnp.einsum("bky,bkx->byxk", along_y, along_x)


def background_heatmap(heatmaps: jax.Array) -> jax.Array:
    """(B, S, S, K) -> (B, S, S, 1): 1 − max_k H_k (1 everywhere when no part is active)."""
    if heatmaps.shape[-1] == 0:
        return jnp.ones(heatmaps.shape[:-1] + (1,), heatmaps.dtype)
    return 1.0 - jnp.max(heatmaps, axis=-1, keepdims=True)


def floored_tau(tau: jax.Array, size: int, floor_pixels: float) -> jax.Array:
    """τ raised to (floor_pixels · spacing)², spacing = 2 / (S − 1) the layer's pixel pitch (0: unchanged)."""
    if floor_pixels <= 0:
        return tau
    spacing = 2.0 / max(size - 1, 1)
    return jnp.maximum(tau, (floor_pixels * spacing) ** 2)


def embedding_map(latent: Latent, size: int, tau_floor_pixels: float = 0.0, min_keypoint_size: int = 0) -> jax.Array:
    """The conditioning map F of ``latent`` at side ``size``: (B, S, S, D) float32 (module docstring)."""
    if size < min_keypoint_size:
        background = latent.background_embedding.astype(jnp.float32)[:, None, None, :]
        return jnp.broadcast_to(background, (background.shape[0], size, size, background.shape[-1]))
    tau = floored_tau(latent.tau, size, tau_floor_pixels)
    heatmaps = keypoint_heatmaps(latent.keypoints, tau, latent.mask, size)
    parts = jnp.einsum("byxk,bkd->byxd", heatmaps, latent.part_embeddings.astype(jnp.float32))
    background = background_heatmap(heatmaps) * latent.background_embedding.astype(jnp.float32)[:, None, None, :]
    return parts + background
