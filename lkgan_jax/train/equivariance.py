"""The equivariance term (docs/design.md §3): a keypoint moved by δ should carry its pixels by δ.

On n fakes, one keypoint each (part k_b) moves by δ_b; the generator renders the moved latents, and

  L_window  = mean |P(M_b, kp_b + δ_b) − sg P(A_b, kp_b)|          (A: the original fake, M: the moved one)
  L_outside = Σ_b,p∉W_b |M_b(p) − sg A_b(p)| / Σ_b,p∉W_b 1,       W_b = pixels within r (Chebyshev, pixels)
                                                                    of kp_b or of kp_b + δ_b

P(I, c) is the s×s window of image I centred at c, sampled bilinearly (edge pixels repeat beyond the
border); means run over the windows' pixels, RGB and the n samples. sg is a stop-gradient: the original
is the target, as in DragGAN's motion supervision (X. Pan et al., "Drag Your GAN", SIGGRAPH 2023:
‖F(q + d) − sg F(q)‖₁ around a handle, and an L1 to the original outside the edited region), here on
the generator's own RGB output with no detector. Shapes: images (n, R, R, C); keypoints and δ in
normalised (x, y) units (docs/design.md §1).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from lkgan_jax.conventions import normalized_to_pixel, pixels_per_unit
from lkgan_jax.models.latent import Latent

DIRECTIONS = ((1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))  # +x, −x, +y, −y (the locality metric's)


def random_moves(key: jax.Array, count: int, num_parts: int, shift: float) -> tuple[jax.Array, jax.Array]:
    """For ``count`` samples: a uniform part index (count,) int32 and an offset (count, 2) of length
    ``shift`` (normalised units) along one of ±x, ±y, chosen uniformly."""
    part_key, direction_key = jax.random.split(key)
    parts = jax.random.randint(part_key, (count,), 0, num_parts)
    directions = jnp.asarray(DIRECTIONS, jnp.float32)[jax.random.randint(direction_key, (count,), 0, len(DIRECTIONS))]
    return parts, shift * directions


def move_keypoints(latent: Latent, parts: jax.Array, shifts: jax.Array) -> Latent:
    """``latent`` (n samples) with keypoint ``parts[b]`` of sample b moved by ``shifts[b]`` (n, 2)."""
    rows = jnp.arange(latent.keypoints.shape[0])
    return latent.replace(keypoints=latent.keypoints.at[rows, parts].add(shifts.astype(latent.keypoints.dtype)))


def _interpolation_weights(positions: jax.Array, size: int) -> jax.Array:
    """Linear-interpolation weights (n, s) positions in pixels → (n, s, size), edge pixels repeated."""
    low = jnp.floor(positions)
    fraction = positions - low
    low = jnp.clip(low, 0, size - 1).astype(jnp.int32)
    high = jnp.clip(low + 1, 0, size - 1)
    pixels = jnp.arange(size)
    return (1.0 - fraction)[..., None] * (pixels == low[..., None]) + fraction[..., None] * (pixels == high[..., None])


def sample_windows(images: jax.Array, centres: jax.Array, side: int) -> jax.Array:
    """Bilinear ``side``×``side`` windows (n, s, s, C) of images (n, R, R, C) centred at normalised (x, y) (n, 2).

    Window pixel (i, j) samples the image at row y_c + i − (s−1)/2, column x_c + j − (s−1)/2 (in pixels of
    the image, ``conventions.normalized_to_pixel``). Bilinear sampling of an axis-aligned grid is separable:
    two (n, s, R) weight matrices.
    """
    size = images.shape[1]
    offsets = jnp.arange(side, dtype=jnp.float32) - (side - 1) / 2.0
    pixel = normalized_to_pixel(centres.astype(jnp.float32), size)
    rows = _interpolation_weights(pixel[:, 1:2] + offsets, size)  # (n, s, R)
    columns = _interpolation_weights(pixel[:, 0:1] + offsets, size)
    return jnp.einsum("nir,nrcd,njc->nijd", rows, images.astype(jnp.float32), columns)


def outside_mask(old: jax.Array, new: jax.Array, size: int, radius: float) -> jax.Array:
    """(n, R, R) float32: 1 at pixels farther than ``radius`` pixels (Chebyshev) from both normalised points."""
    pixels = jnp.arange(size, dtype=jnp.float32)

    def far(points: jax.Array) -> jax.Array:
        p = normalized_to_pixel(points.astype(jnp.float32), size)
        far_x = jnp.abs(pixels - p[:, 0:1]) > radius  # (n, R): columns
        far_y = jnp.abs(pixels - p[:, 1:2]) > radius  # (n, R): rows
        return far_y[:, :, None] | far_x[:, None, :]

    return (far(old) & far(new)).astype(jnp.float32)


def window_losses(
    original: jax.Array, moved: jax.Array, old: jax.Array, new: jax.Array, side: int, outside_radius: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """(L_window, L_outside) of the module docstring; images (n, R, R, C), points (n, 2) normalised.

    ``outside_radius`` ≤ 0 gives L_outside = 0 (not computed). The window centres carry no gradient.
    """
    old, new = jax.lax.stop_gradient(old), jax.lax.stop_gradient(new)
    target = jax.lax.stop_gradient(original.astype(jnp.float32))
    moved = moved.astype(jnp.float32)
    window = jnp.mean(jnp.abs(sample_windows(moved, new, side) - sample_windows(target, old, side)))
    if outside_radius <= 0:
        return window, jnp.zeros((), jnp.float32)
    mask = outside_mask(old, new, moved.shape[1], outside_radius)[..., None]
    outside = jnp.sum(mask * jnp.abs(moved - target)) / jnp.maximum(jnp.sum(mask) * moved.shape[-1], 1.0)
    return window, outside


def concatenate(first: Latent, second: Latent) -> Latent:
    """Two latents with equal K as one batch (first, then second)."""
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), first, second)


def equivariance_loss(
    render_fn: Callable[[Latent], jax.Array],
    latent: Latent,
    parts: jax.Array,
    shifts: jax.Array,
    side: int,
    outside_radius: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """(L_window, L_outside) for ``latent`` (n samples) with keypoint ``parts[b]`` moved by ``shifts[b]``.

    ``render_fn`` maps a ``Latent`` of 2n samples to images (2n, R, R, C); the originals and the moved
    latents are rendered in one call (so batch-coupled layers see both). ``shifts`` (n, 2) are normalised
    units; ``side`` and ``outside_radius`` are pixels of the rendered image.
    """
    count = latent.keypoints.shape[0]
    moved = move_keypoints(latent, parts, shifts)
    images = render_fn(concatenate(latent, moved))
    rows = jnp.arange(count)
    old = latent.keypoints[rows, parts]
    return window_losses(images[:count], images[count:], old, moved.keypoints[rows, parts], side, outside_radius)


def shift_in_units(shift_pixels: float, resolution: int) -> float:
    """A length of ``shift_pixels`` output pixels in normalised units."""
    return float(shift_pixels / pixels_per_unit(resolution))
