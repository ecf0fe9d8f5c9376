"""Edit operations on the explicit latent (docs/design.md §4): pure, batched, jit- and vmap-able.

Every op takes a ``Latent`` whose fields have any leading batch axes (``(K, 2)`` keypoints for one
sample, ``(B, K, 2)`` for a batch) and returns a new ``Latent``; nothing is modified in place. Parts
are picked by index (an int or a sequence of ints, ``0 ≤ part < K``). Sources and targets of swaps
and interpolations (``source``, ``target``) broadcast against the edited latent, so one sample can
be applied to a whole batch, and they may have a different number of parts as long as the chosen
parts exist in both. Interpolation weights ``alpha`` are scalars or have the batch shape
(``alpha = 0`` keeps the latent, ``alpha = 1`` gives the target).

Geometry follows ``lkgan_jax.conventions``: keypoints are (x, y) = (column, row) in [-1, 1], so y
points down and a positive ``rotate_deg`` turns the keypoints counter-clockwise as seen on the image.
"""

from __future__ import annotations

from typing import Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.models.latent import Latent

Parts = int | Sequence[int] | jax.Array
InterpolationTarget = Literal["parts", "positions", "background", "all"]
INTERPOLATION_TARGETS = ("parts", "positions", "background", "all")


def check_parts(parts: Parts, num_parts: int) -> None:
    """Raises ``ValueError`` for out-of-range or repeated part indices (when they are concrete)."""
    try:
        indices = np.atleast_1d(np.asarray(parts))
    except jax.errors.TracerArrayConversionError:
        return  # traced indices (under jit) cannot be checked
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"parts must be an int or a list of ints, got {parts!r}")
    bad = [int(i) for i in indices if not 0 <= i < num_parts]
    if bad:
        raise ValueError(f"part {bad[0]} out of range for a latent with {num_parts} parts (0..{num_parts - 1})")
    if len(set(indices.tolist())) != len(indices):
        raise ValueError(f"repeated part index in {indices.tolist()}")


def _index(parts: Parts, *latents: Latent) -> jax.Array:
    """Checked part indices as a 1-D integer array."""
    for latent in latents:
        check_parts(parts, latent.num_parts)
    return jnp.atleast_1d(jnp.asarray(parts, jnp.int32))


def _batch_weight(alpha: float | jax.Array, trailing_axes: int) -> jax.Array:
    """``alpha`` (scalar or batch-shaped) with ``trailing_axes`` singleton axes appended."""
    alpha = jnp.asarray(alpha, jnp.float32)
    return alpha.reshape(alpha.shape + (1,) * trailing_axes)


def _lerp(a: jax.Array, b: jax.Array, alpha: jax.Array) -> jax.Array:
    return a + alpha * (b - a)


def move(latent: Latent, parts: Parts, *, to: jax.Array | None = None, offset: jax.Array | None = None) -> Latent:
    """Moves keypoints ``parts`` to absolute positions ``to`` or by ``offset``, (2,) or (P, 2) each."""
    if (to is None) == (offset is None):
        raise ValueError("move needs exactly one of `to` (absolute position) or `offset`")
    index = _index(parts, latent)
    selected = latent.keypoints[..., index, :]
    value = jnp.asarray(to, jnp.float32) if to is not None else selected + jnp.asarray(offset, jnp.float32)
    keypoints = latent.keypoints.at[..., index, :].set(jnp.broadcast_to(value, selected.shape))
    return latent.replace(keypoints=keypoints)


def centroid(latent: Latent) -> jax.Array:
    """Mean position of the active keypoints, (..., 2) (the origin when no part is active)."""
    weights = latent.mask.astype(jnp.float32)[..., None]
    return jnp.sum(latent.keypoints * weights, axis=-2) / jnp.maximum(jnp.sum(weights, axis=-2), 1.0)


def transform(
    latent: Latent,
    *,
    scale: float | jax.Array = 1.0,
    rotate_deg: float | jax.Array = 0.0,
    translate: Sequence[float] | jax.Array = (0.0, 0.0),
) -> Latent:
    """Scales and rotates all keypoints about the centroid of the active ones, then translates.

    ``kp' = c + t + s · R(θ) (kp − c)`` with R counter-clockwise on the image (y points down).
    """
    theta = jnp.deg2rad(jnp.asarray(rotate_deg, jnp.float32))
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    center = centroid(latent)[..., None, :]
    dx, dy = jnp.moveaxis(latent.keypoints - center, -1, 0)
    s = _batch_weight(scale, 1)
    cos, sin = _batch_weight(cos, 1), _batch_weight(sin, 1)
    rotated = jnp.stack([cos * dx + sin * dy, -sin * dx + cos * dy], axis=-1)
    keypoints = center + jnp.asarray(translate, jnp.float32)[..., None, :] + s[..., None] * rotated
    return latent.replace(keypoints=keypoints)


def swap_parts(latent: Latent, source: Latent, parts: Parts) -> Latent:
    """The part embeddings of ``parts`` taken from ``source``; positions and the rest unchanged.

    ``swap_parts(a, b, p)`` and ``swap_parts(b, a, p)`` together exchange exactly those rows.
    """
    index = _index(parts, latent, source)
    values = jnp.broadcast_to(source.part_embeddings[..., index, :], latent.part_embeddings[..., index, :].shape)
    return latent.replace(part_embeddings=latent.part_embeddings.at[..., index, :].set(values))


def interpolate_parts(latent: Latent, target: Latent, alpha: float | jax.Array, parts: Parts | None = None) -> Latent:
    """Part embeddings of ``parts`` (default: all) moved linearly towards ``target``'s."""
    index = _index(_all_parts(latent, target) if parts is None else parts, latent, target)
    own = latent.part_embeddings[..., index, :]
    mixed = _lerp(own, target.part_embeddings[..., index, :], _batch_weight(alpha, 2))
    return latent.replace(part_embeddings=latent.part_embeddings.at[..., index, :].set(mixed))


def interpolate_positions(latent: Latent, target: Latent, alpha: float | jax.Array, parts: Parts | None = None) -> Latent:
    """Keypoints of ``parts`` (default: all) moved linearly towards ``target``'s positions."""
    index = _index(_all_parts(latent, target) if parts is None else parts, latent, target)
    own = latent.keypoints[..., index, :]
    mixed = _lerp(own, target.keypoints[..., index, :], _batch_weight(alpha, 2))
    return latent.replace(keypoints=latent.keypoints.at[..., index, :].set(mixed))


def swap_background(latent: Latent, source: Latent) -> Latent:
    """The background embedding of ``source``; everything else unchanged."""
    background = jnp.broadcast_to(source.background_embedding, latent.background_embedding.shape)
    return latent.replace(background_embedding=background)


def interpolate_background(latent: Latent, target: Latent, alpha: float | jax.Array) -> Latent:
    """The background embedding moved linearly towards ``target``'s."""
    mixed = _lerp(latent.background_embedding, target.background_embedding, _batch_weight(alpha, 1))
    return latent.replace(background_embedding=mixed)


def interpolate(
    latent: Latent, target: Latent, alpha: float | jax.Array, what: InterpolationTarget, parts: Parts | None = None
) -> Latent:
    """One of ``interpolate_parts`` / ``_positions`` / ``_background``, or all three (``what='all'``)."""
    if what not in INTERPOLATION_TARGETS:
        raise ValueError(f"interpolate `what` must be one of {'|'.join(INTERPOLATION_TARGETS)}, got {what!r}")
    if what in ("parts", "all"):
        latent = interpolate_parts(latent, target, alpha, parts)
    if what in ("positions", "all"):
        latent = interpolate_positions(latent, target, alpha, parts)
    if what in ("background", "all"):
        latent = interpolate_background(latent, target, alpha)
    return latent


def remove_part(latent: Latent, parts: Parts) -> Latent:
    """Masks ``parts`` off: they leave the heatmap sum and the background's max (their area becomes background)."""
    index = _index(parts, latent)
    return latent.replace(mask=latent.mask.at[..., index].set(False))


def add_part(latent: Latent, like: int, at: jax.Array) -> Latent:
    """Appends part K: a copy of part ``like`` (embedding, τ) at position ``at`` (2,); K grows by one."""
    index = _index(like, latent)
    batch = latent.keypoints.shape[:-2]
    keypoint = jnp.broadcast_to(jnp.asarray(at, jnp.float32), batch + (1, 2))
    return Latent(
        keypoints=jnp.concatenate([latent.keypoints, keypoint.astype(latent.keypoints.dtype)], axis=-2),
        part_embeddings=jnp.concatenate([latent.part_embeddings, latent.part_embeddings[..., index, :]], axis=-2),
        background_embedding=latent.background_embedding,
        mask=jnp.concatenate([latent.mask, jnp.ones(batch + (1,), bool)], axis=-1),
        tau=jnp.concatenate([latent.tau, latent.tau[..., index]], axis=-1),
    )


def scale_part(latent: Latent, parts: Parts, scale: float | jax.Array) -> Latent:
    """Scales the spatial extent of ``parts`` by ``scale``: τ_k ← scale² · τ_k (heatmap exp(−d²/τ))."""
    index = _index(parts, latent)
    return latent.replace(tau=latent.tau.at[..., index].multiply(jnp.square(jnp.asarray(scale, jnp.float32))))


def _all_parts(latent: Latent, target: Latent) -> np.ndarray:
    if latent.num_parts != target.num_parts:
        raise ValueError(
            f"the latent has {latent.num_parts} parts and the target {target.num_parts}; name the parts to interpolate"
        )
    return np.arange(latent.num_parts)
