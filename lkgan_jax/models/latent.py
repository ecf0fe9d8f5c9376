"""The explicit latent of LatentKeypointGAN: what stage 1 produces and stage 2 renders (SPEC §4)."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp


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


def sample_noise(key: jax.Array, batch: int, z_dim: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Three independent N(0, I) streams (pose, part appearance, background), each (B, Z).

    The streams come from ``fold_in(key, 0/1/2)``, so resampling one factor leaves the others fixed.
    """
    return tuple(jax.random.normal(jax.random.fold_in(key, i), (batch, z_dim)) for i in range(3))
