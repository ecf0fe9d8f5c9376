"""Keypoint footprints and the spatial embedding map that conditions the renderer (docs/design.md §2).

For a side of S pixels with normalised pixel centres p ∈ linspace(-1, 1, S)²:
  H_k(p)  = mask_k · exp(-‖p − kp_k‖² / τ_k)                       (the default Gaussian footprint)
  H_bg(p) = 1 − max_k H_k(p)
  F(p)    = Σ_k H_k(p) w_k + H_bg(p) w_bg                         shape (B, S, S, D)

Two options keep coarse layers informed (both 0, i.e. off, in the paper's renderer):
  - a width floor: τ_k is raised to (c · 2 / (S − 1))², so each Gaussian's 1/e radius spans at least
    c pixel spacings of the layer it conditions (``tau_floor_pixels = c``);
  - layers with S < ``min_keypoint_size`` get no parts: F = w_bg everywhere.

Locality options (off by default, docs/design.md §2 "The part's own footprint"):
  - ``footprint="cone"`` (``model.part_footprint = "learned"``): GANSeg's linear cone
    H_k(p) = mask_k · max(0, 1 − ‖p − kp_k‖ / ρ_k), ρ_k = 2 √(τ_k ln 2) (the Gaussian's half-maximum
    radius doubled, so a cone and a Gaussian of one τ share their half-maximum contour);
  - ``mask_gating``: the parts and the background write through normalised masks
    M_k = H_k / Z, M_bg = H_bg / Z, Z = Σ_j H_j + H_bg (≥ 1), so F is a convex combination of embeddings.
``keypoint_encoding`` is the sin/cos map of the keypoint offsets that can start the renderer.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lkgan_jax.conventions import coordinate_grid
from lkgan_jax.models.latent import Latent

FOOTPRINTS = ("gaussian", "cone")


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


def cone_radius(tau: jax.Array) -> jax.Array:
    """ρ = 2 √(τ ln 2): the radius of the cone whose half-maximum contour is the Gaussian exp(-d²/τ)'s."""
    return 2.0 * jnp.sqrt(tau * math.log(2.0))


def cone_heatmaps(keypoints: jax.Array, tau: jax.Array, mask: jax.Array, size: int) -> jax.Array:
    """Masked linear cones (GANSeg), (B, K, 2), (B, K), (B, K) -> (B, S, S, K) float32.

    H_k(p) = mask_k · max(0, 1 − ‖p − kp_k‖ / ρ_k), ρ_k = ``cone_radius(τ_k)``: in [0, 1], exactly 1 at
    the keypoint, 0 beyond ρ_k; a function of p − kp_k only, so it moves exactly with its keypoint. The
    distance's gradient is taken as 0 where p = kp_k (a safe square root).
    """
    grid = coordinate_grid(size, jnp)
    keypoints = keypoints.astype(jnp.float32)
    dx2 = jnp.square(grid - keypoints[..., 0:1])  # (B, K, S): columns
    dy2 = jnp.square(grid - keypoints[..., 1:2])  # (B, K, S): rows
    d2 = dy2[..., :, None] + dx2[..., None, :]  # (B, K, S_rows, S_cols)
    positive = d2 > 0
    distance = jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)
    radius = cone_radius(tau.astype(jnp.float32))[..., None, None]
    heat = jnp.maximum(0.0, 1.0 - distance / radius) * mask[..., None, None].astype(jnp.float32)
    return jnp.transpose(heat, (0, 2, 3, 1))


def part_footprints(keypoints: jax.Array, tau: jax.Array, mask: jax.Array, size: int, footprint: str = "gaussian") -> jax.Array:
    """The parts' footprints H (B, S, S, K) float32, max 1: ``"gaussian"`` (default) or ``"cone"``."""
    if footprint == "gaussian":
        return keypoint_heatmaps(keypoints, tau, mask, size)
    if footprint == "cone":
        return cone_heatmaps(keypoints, tau, mask, size)
    raise ValueError(f"footprint must be one of {FOOTPRINTS}, got {footprint!r}")


def background_heatmap(heatmaps: jax.Array) -> jax.Array:
    """(B, S, S, K) -> (B, S, S, 1): 1 − max_k H_k (1 everywhere when no part is active)."""
    if heatmaps.shape[-1] == 0:
        return jnp.ones(heatmaps.shape[:-1] + (1,), heatmaps.dtype)
    return 1.0 - jnp.max(heatmaps, axis=-1, keepdims=True)


def background_from_first_max(heatmaps: jax.Array) -> jax.Array:
    """``background_heatmap``'s value, its gradient routed to the first maximal part only (argmax, no ties).

    The cone's many exact zeros tie in max_k; ``jnp.max``'s tie-splitting gradient divides by the number of
    entries equal to the maximum, which a recomputed forward pass can make 0 under jit (NaN gradients).
    """
    if heatmaps.shape[-1] == 0:
        return jnp.ones(heatmaps.shape[:-1] + (1,), heatmaps.dtype)
    first = jnp.argmax(jax.lax.stop_gradient(heatmaps), axis=-1)[..., None]
    return 1.0 - jnp.take_along_axis(heatmaps, first, axis=-1)


def normalised_masks(heatmaps: jax.Array, background: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Part and background masks that sum to 1 at every pixel: H_k / Z and H_bg / Z, Z = Σ_k H_k + H_bg.

    (B, S, S, K), (B, S, S, 1) -> the same shapes. Z ≥ 1 (Σ_k H_k ≥ max_k H_k), so no division by ~0.
    Where at most one part is present, Z = 1 and the masks are the footprints themselves.
    """
    total = jnp.sum(heatmaps, axis=-1, keepdims=True) + background
    return heatmaps / total, background / total


def floored_tau(tau: jax.Array, size: int, floor_pixels: float) -> jax.Array:
    """τ raised to (floor_pixels · spacing)², spacing = 2 / (S − 1) the layer's pixel pitch (0: unchanged)."""
    if floor_pixels <= 0:
        return tau
    spacing = 2.0 / max(size - 1, 1)
    return jnp.maximum(tau, (floor_pixels * spacing) ** 2)


def embedding_map(
    latent: Latent,
    size: int,
    tau_floor_pixels: float = 0.0,
    min_keypoint_size: int = 0,
    footprint: str = "gaussian",
    mask_gating: bool = False,
) -> jax.Array:
    """The conditioning map F of ``latent`` at side ``size``: (B, S, S, D) float32 (module docstring)."""
    if size < min_keypoint_size:
        background = latent.background_embedding.astype(jnp.float32)[:, None, None, :]
        return jnp.broadcast_to(background, (background.shape[0], size, size, background.shape[-1]))
    tau = floored_tau(latent.tau, size, tau_floor_pixels)
    heatmaps = part_footprints(latent.keypoints, tau, latent.mask, size, footprint)
    background_weight = background_heatmap(heatmaps) if footprint == "gaussian" else background_from_first_max(heatmaps)
    if mask_gating:
        heatmaps, background_weight = normalised_masks(heatmaps, background_weight)
    parts = jnp.einsum("byxk,bkd->byxd", heatmaps, latent.part_embeddings.astype(jnp.float32))
    background = background_weight * latent.background_embedding.astype(jnp.float32)[:, None, None, :]
    return parts + background


def encoding_frequencies(num_frequencies: int) -> jax.Array:
    """ω_f = 2^f · π/2, f = 0 … F − 1 (rad per normalised unit): ω_0 is injective on offsets in [-2, 2)."""
    return (math.pi / 2.0) * 2.0 ** jnp.arange(num_frequencies, dtype=jnp.float32)


def keypoint_encoding(keypoints: jax.Array, mask: jax.Array, size: int, num_frequencies: int) -> jax.Array:
    """sin/cos of every pixel's offset to every keypoint: (B, K, 2), (B, K) -> (B, S, S, K · 4F) float32.

    Channels of part k (masked parts give zeros), with Δx = x_p − x_k, Δy = y_p − y_k in normalised units:
    [sin ω_f Δx, cos ω_f Δx] (f = 0 … F−1) then [sin ω_f Δy, cos ω_f Δy]. A function of p − kp_k only,
    so translating all keypoints by n pixels of this side translates the map by n pixels.
    """
    grid = coordinate_grid(size, jnp)
    omega = encoding_frequencies(num_frequencies)
    keypoints = keypoints.astype(jnp.float32)
    batch, parts = keypoints.shape[:2]

    def along(axis: int) -> jax.Array:  # (B, K, S, 2F)
        phase = (grid - keypoints[..., axis : axis + 1])[..., None] * omega
        return jnp.concatenate([jnp.sin(phase), jnp.cos(phase)], axis=-1)

    along_x, along_y = along(0), along(1)
    width = 2 * num_frequencies
    columns = jnp.broadcast_to(jnp.transpose(along_x, (0, 2, 1, 3))[:, None], (batch, size, size, parts, width))
    rows = jnp.broadcast_to(jnp.transpose(along_y, (0, 2, 1, 3))[:, :, None], (batch, size, size, parts, width))
    encoding = jnp.concatenate([columns, rows], axis=-1) * mask.astype(jnp.float32)[:, None, None, :, None]
    return encoding.reshape(batch, size, size, parts * 2 * width)
