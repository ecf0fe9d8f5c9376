"""Edit locality: do parts change only near their keypoints, and do they follow them? (docs/design.md §7.6)

Pairs (a, b) are generated samples (seeds ``s + 2i`` and ``s + 2i + 1``). Images are float [-1, 1].

- **Swap** (each part k, and the background): a with part k's embedding (or the background
  embedding) taken from b. With the per-pixel energy E_k = Σ_rgb (I_swap − I_a)²:

    swap_ratio(r) = mean_k [ Σ_pairs E_k inside disc(kp_k, r) / Σ_pairs E_k ]
                           / [ Σ_pairs pixels inside disc(kp_k, r) / Σ_pairs pixels ]
    swap_effect   = mean_{pairs, k} |I_swap_k − I_a| / mean_pairs |I_swap_bg − I_a|

  The disc's radius is in normalised units; ``swap_ratio`` is 1 when a swap's change is spread
  like the image area and 1 / (disc area share) when it lies wholly inside the disc.
- **Move** (each part k): keypoint k of a moved by δ, a whole number of pixels along one axis (pair i
  takes direction i mod 4: +x, −x, +y, −y). E is the edited image, A the original, S = A shifted by δ.
  Inside the square window of half-width w around the new position (pixels where S is defined):

    move_follow_px = mean_k [ Σ_pairs ⟨E − A, S − A⟩ / Σ_pairs ‖S − A‖² ]

  the least-squares coefficient t of E ≈ A + t (S − A): 1 when the window shows the original's content
  from the old position (the part followed), 0 when it is unchanged.
  With a keypoint detector d, ``move_follow = mean_{pairs, k} ⟨d_k(E) − d_k(A), δ⟩ / ‖δ‖²``: the
  detected shift along δ as a fraction of δ.

A part whose swaps change nothing scores 0 (``swap_ratio``, ``move_follow_px``) rather than 0/0.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax import parallel
from lkgan_jax.conventions import coordinate_grid, pixels_per_unit
from lkgan_jax.evaluation.cpd import Renderer, swapped_latents
from lkgan_jax.models.latent import Latent

# (detector variables, images (B, R, R, 3)) -> keypoints (B, K, 2), or None when no detector is given.
Detect = Callable[[Any, jax.Array], jax.Array]
# Unit moves (dx, dy) in pixels; pair i moves along DIRECTIONS[i % 4].
DIRECTIONS = np.array([(1, 0), (-1, 0), (0, 1), (0, -1)], np.int32)


@dataclasses.dataclass(frozen=True)
class LocalitySettings:
    """What the locality metrics measure: disc radii and window half-width (normalised), move in pixels."""

    radii: tuple[float, ...] = (0.15, 0.3)
    move_pixels: int = 3
    window: float = 0.15

    def check(self) -> None:
        if not self.radii or any(r <= 0 for r in self.radii):
            raise ValueError(f"locality radii must be positive, got {self.radii}")
        if self.move_pixels <= 0 or self.window <= 0:
            raise ValueError(f"locality move_pixels and window must be positive, got {self.move_pixels}, {self.window}")


def disc_masks(keypoints: jax.Array, radius: float, size: int) -> jax.Array:
    """(..., 2) keypoints → (..., size, size) float masks of the pixel centres within ``radius`` (normalised)."""
    grid = coordinate_grid(size, jnp)
    dx = grid[None, :] - keypoints[..., 0, None, None]
    dy = grid[:, None] - keypoints[..., 1, None, None]
    return (dx * dx + dy * dy <= radius * radius).astype(jnp.float32)


def window_masks(centres: jax.Array, half_width: float, size: int) -> jax.Array:
    """(..., 2) centres → (..., size, size) float masks of the pixel centres within the square window."""
    grid = coordinate_grid(size, jnp)
    inside_x = jnp.abs(grid[None, :] - centres[..., 0, None, None]) <= half_width + 1e-6
    inside_y = jnp.abs(grid[:, None] - centres[..., 1, None, None]) <= half_width + 1e-6
    return (inside_x & inside_y).astype(jnp.float32)


def shift_images(images: jax.Array, shifts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Images (P, H, W, C) moved by whole pixels (P, 2) = (dx, dy) → (shifted, valid (P, H, W) float).

    ``shifted[y, x] = images[y − dy, x − dx]`` where that pixel exists (``valid``), else 0.
    """
    height, width = images.shape[1:3]
    rows = jnp.arange(height)[None, :, None] - shifts[:, 1, None, None]
    cols = jnp.arange(width)[None, None, :] - shifts[:, 0, None, None]
    valid = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    rows, cols = jnp.clip(rows, 0, height - 1), jnp.clip(cols, 0, width - 1)
    batch = jnp.arange(images.shape[0])[:, None, None]
    shifted = images[batch, rows, cols]
    return jnp.where(valid[..., None], shifted, 0.0), valid.astype(jnp.float32)


def swap_statistics(render: Renderer, variables: Any, a: Latent, b: Latent, radii: tuple[float, ...]) -> dict[str, jax.Array]:
    """Per-pair sums of the swap edits: energy in/out of each disc, disc areas, mean |ΔI| (part, background).

    Returns ``energy_inside`` (P, R, K), ``energy`` (P, K), ``area`` (P, R, K) and ``pixels`` (P,)
    (pixel counts), ``part_abs`` (P, K) and ``background_abs`` (P,): the pair axis first.
    """
    pairs, parts = a.keypoints.shape[:2]
    masks = jnp.concatenate([jnp.eye(parts, dtype=bool), jnp.zeros((1, parts), bool)])  # K parts, then background
    base = render(variables, a)
    edited = render(variables, swapped_latents(a, b, masks, background=True)).reshape((parts + 1, pairs) + base.shape[1:])
    delta = edited - base[None]
    energy = jnp.sum(jnp.square(delta[:parts]), axis=-1).transpose(1, 0, 2, 3)  # (P, K, H, W)
    size = base.shape[1]
    discs = jnp.stack([disc_masks(a.keypoints, r, size) for r in radii], axis=1)  # (P, R, K, H, W)
    mean_abs = jnp.mean(jnp.abs(delta), axis=(2, 3, 4))  # (K + 1, P)
    return {
        "energy_inside": jnp.sum(discs * energy[:, None], axis=(-2, -1)),
        "energy": jnp.sum(energy, axis=(-2, -1)),
        "area": jnp.sum(discs, axis=(-2, -1)),
        "pixels": jnp.full((pairs,), float(size * base.shape[2])),
        "part_abs": mean_abs[:parts].T,
        "background_abs": mean_abs[parts],
    }


def move_statistics(
    render: Renderer,
    variables: Any,
    a: Latent,
    directions: jax.Array,
    settings: LocalitySettings,
    detect: Detect | None = None,
    detector_variables: Any = None,
) -> dict[str, jax.Array]:
    """Per-pair sums of the move edits, each part moved by ``directions`` (P, 2) × ``move_pixels`` pixels.

    Returns ``follow_numerator`` and ``follow_denominator`` (P, K) of ``move_follow_px`` and, with a
    detector, ``detected_shift`` (P, K): ⟨d_k(E) − d_k(A), δ⟩ / ‖δ‖².
    """
    pairs, parts = a.keypoints.shape[:2]
    base = render(variables, a)
    size = base.shape[1]
    shifts = directions * settings.move_pixels  # (P, 2) pixels
    offsets = shifts.astype(jnp.float32) / pixels_per_unit(size)  # normalised

    def moved(k: jax.Array) -> Latent:
        keypoints = a.keypoints.at[:, k].add(offsets)
        return a.replace(keypoints=keypoints)

    latents = jax.vmap(moved)(jnp.arange(parts))  # (K, P, ...)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), latents)
    edited = render(variables, flat).reshape((parts, pairs) + base.shape[1:])
    shifted, valid = shift_images(base, shifts)
    windows = window_masks(a.keypoints + offsets[:, None], settings.window, size) * valid[:, None]  # (P, K, H, W)
    windows = windows.transpose(1, 0, 2, 3)[..., None]  # (K, P, H, W, 1)
    towards = (shifted - base)[None]
    result = {
        "follow_numerator": jnp.sum(windows * (edited - base[None]) * towards, axis=(2, 3, 4)).T,
        "follow_denominator": jnp.sum(windows * jnp.square(towards), axis=(2, 3, 4)).T,
    }
    if detect is not None:
        found = detect(detector_variables, edited.reshape((-1,) + base.shape[1:])).reshape(parts, pairs, parts, 2)
        own = found[jnp.arange(parts), :, jnp.arange(parts)]  # (K, P, 2): part k's detection on its own move
        before = detect(detector_variables, base)  # (P, K, 2)
        moved_by = own.transpose(1, 0, 2) - before
        result["detected_shift"] = jnp.sum(moved_by * offsets[:, None], axis=-1) / jnp.sum(jnp.square(offsets), axis=-1)[:, None]
    return result


@functools.lru_cache(maxsize=16)
def _statistics_program(render: Renderer, settings: LocalitySettings, detect: Detect | None) -> Callable:
    """One jitted program per renderer, settings and detector, reused by repeated evaluations."""

    @jax.jit
    def statistics(variables: Any, a: Latent, b: Latent, directions: jax.Array, detector_variables: Any) -> dict[str, jax.Array]:
        return {
            **swap_statistics(render, variables, a, b, settings.radii),
            **move_statistics(render, variables, a, directions, settings, detect, detector_variables),
        }

    return statistics


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0."""
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def radius_name(radius: float) -> str:
    return f"r{radius:g}"


def compute_locality(
    render: Renderer,
    variables: Any,
    latents_of: Callable[[np.ndarray], Latent],
    num_pairs: int,
    pairs_per_call: int,
    settings: LocalitySettings,
    seed: int = 0,
    detect: Detect | None = None,
    detector_variables: Any = None,
) -> dict[str, Any]:
    """The locality metrics over ``num_pairs`` pairs (seeds ``seed + 2i``, ``seed + 2i + 1``).

    Pairs go ``pairs_per_call`` at a time (the last call padded with repeats that are not counted); in a
    multi-process job each process takes a share of the calls and the per-pair sums are added in pair
    order (``parallel.sum_rows``). Returns ``locality/...`` floats (averaged over parts), their
    ``.../per_part`` lists and the settings.
    """
    if num_pairs <= 0 or pairs_per_call <= 0:
        raise ValueError(f"locality needs positive num_pairs and pairs_per_call, got {num_pairs}, {pairs_per_call}")
    settings.check()
    program = _statistics_program(render, settings, detect)

    def pair_sums(index: np.ndarray) -> dict[str, jax.Array]:  # every entry has the pair axis first
        a, b = latents_of(seed + 2 * index), latents_of(seed + 2 * index + 1)
        return program(variables, a, b, DIRECTIONS[index % len(DIRECTIONS)], detector_variables)

    totals = parallel.sum_rows(pair_sums, num_pairs, pairs_per_call)

    result: dict[str, Any] = {}
    share = _ratio(totals["energy_inside"], totals["energy"][None])  # (R, K)
    area_share = totals["area"] / totals["pixels"]
    for r, radius in enumerate(settings.radii):
        per_part = _ratio(share[r], area_share[r])
        _store(result, f"swap_ratio_{radius_name(radius)}", per_part)
    background = totals["background_abs"] / num_pairs
    part_abs = totals["part_abs"] / num_pairs
    _store(result, "swap_effect", _ratio(part_abs, np.full_like(part_abs, background)))  # 0 if nothing changes
    _store(result, "part_swap_abs", part_abs)
    result["locality/background_swap_abs"] = float(background)
    _store(result, "move_follow_px", _ratio(totals["follow_numerator"], totals["follow_denominator"]))
    if detect is not None:
        _store(result, "move_follow", totals["detected_shift"] / num_pairs)
    result.update({
        "locality_num_pairs": num_pairs,
        "locality_radii": list(settings.radii),
        "locality_move_pixels": settings.move_pixels,
        "locality_window": settings.window,
    })
    return result


def _store(result: dict[str, Any], name: str, per_part: np.ndarray) -> None:
    result[f"locality/{name}"] = float(np.mean(per_part))
    result[f"locality/{name}/per_part"] = [float(v) for v in per_part]

