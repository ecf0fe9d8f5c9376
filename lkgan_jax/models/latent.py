"""The explicit latent of LatentKeypointGAN: what stage 1 produces and stage 2 renders (docs/design.md §2, §4)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Latent:
    """A batch of latent tuples; every field has a leading batch axis B and K may vary at render time.

    Attributes:
      keypoints: (B, K, 2) float, (x, y) normalised to [-1, 1] (see ``lkgan_jax.conventions``).
      part_embeddings: (B, K, D) float, one appearance vector per part.
      background_embedding: (B, D) float.
      mask: (B, K) bool, which parts are rendered (removing a part = masking it off).
      tau: (B, K) float, per-part Gaussian width τ (heatmap ``exp(-d² / τ)``).
    """

    keypoints: jax.Array
    part_embeddings: jax.Array
    background_embedding: jax.Array
    mask: jax.Array
    tau: jax.Array

    @property
    def num_parts(self) -> int:
        return self.keypoints.shape[-2]

    @classmethod
    def create(
        cls,
        keypoints: jax.Array,
        part_embeddings: jax.Array,
        background_embedding: jax.Array,
        tau: float | jax.Array,
        mask: jax.Array | None = None,
    ) -> "Latent":
        """Builds a latent with all parts active (unless ``mask`` is given) and τ broadcast to (B, K)."""
        batch_parts = keypoints.shape[:-1]
        if mask is None:
            mask = jnp.ones(batch_parts, bool)
        tau = jnp.broadcast_to(jnp.asarray(tau, jnp.float32), batch_parts)
        return cls(keypoints, part_embeddings, background_embedding, mask, tau)


POSE_STREAM, APPEARANCE_STREAM, BACKGROUND_STREAM = 0, 1, 2


def sample_noise(key: jax.Array, batch: int, z_dim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Three independent N(0, I) streams (pose, part appearance, background), each (B, Z).

    The streams come from ``fold_in(key, 0/1/2)``, so resampling one factor leaves the others fixed.
    """
    streams = (POSE_STREAM, APPEARANCE_STREAM, BACKGROUND_STREAM)
    return tuple(jax.random.normal(jax.random.fold_in(key, i), (batch, z_dim)) for i in streams)


def noise_from_seeds(seeds: jax.Array, stream: int, z_dim: int) -> jax.Array:
    """One noise stream for integer ``seeds`` (N,) -> (N, Z): row i depends on ``seeds[i]`` alone.

    ``noise_from_seeds(s, POSE_STREAM, z)``, ``(s, APPEARANCE_STREAM, z)`` and
    ``(s, BACKGROUND_STREAM, z)`` give the three factors of the image of seed s; mixing seeds across
    streams combines the pose of one image with the appearance or background of another.
    """

    def one(seed: jax.Array) -> jax.Array:
        return jax.random.normal(jax.random.fold_in(jax.random.key(seed), stream), (z_dim,))

    return jax.vmap(one)(jnp.asarray(seeds, jnp.uint32))


def latent_to_numpy(latent: Latent) -> dict[str, np.ndarray]:
    """The fields of ``latent`` as NumPy arrays (for ``np.savez``)."""
    return {field.name: np.asarray(getattr(latent, field.name)) for field in dataclasses.fields(latent)}


def latent_from_numpy(arrays: Mapping[str, Any]) -> Latent:
    """Inverse of ``latent_to_numpy`` (e.g. on an ``np.load`` result); checks the shapes agree."""
    names = [field.name for field in dataclasses.fields(Latent)]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ValueError(f"latent file lacks {', '.join(missing)}")
    latent = Latent(**{n: jnp.asarray(arrays[n]) for n in names})
    batch_parts = latent.keypoints.shape[:-1]
    if (
        latent.keypoints.shape[-1:] != (2,)
        or latent.part_embeddings.shape[:-1] != batch_parts
        or latent.mask.shape != batch_parts
        or latent.tau.shape != batch_parts
        or latent.background_embedding.shape[:-1] != batch_parts[:-1]
    ):
        raise ValueError(f"latent arrays have inconsistent shapes: {[(n, arrays[n].shape) for n in names]}")
    return latent.replace(mask=latent.mask.astype(bool))
