"""Learned attribute editors on the explicit latent (docs/design.md §14): ``apply(latent, delta) → latent``.

An editor moves a ``Latent`` of the trained K parts by a requested attribute change ``delta`` (B, A),
in the judge's standardised units (one unit = one standard deviation of the attribute on real
faces). Only the positions, part embeddings and background embedding are edited; the mask and τ
pass through. Both editors are Flax linen modules, pure and jit/vmap-able:

- ``DirectionMatrix``: ℓ' = ℓ + T·δ, one learned direction per attribute and block, in blocks
  T_pos (A, K, 2), T_emb (A, K, D) and T_bg (A, D), initialised N(0, 0.02). ``block_norms`` gives
  the group-lasso groups: per attribute, the L2 norm of each part's positions, each part's
  embedding and the background.
- ``LatentMapper`` (Latent-to-Latent): ℓ' = ℓ + g([ℓ̂, δ]), g a tanh MLP whose hidden layers are as
  wide as the flat latent and whose last layer is zero-initialised, so g ≡ 0 and f(ℓ, δ) = ℓ at
  initialisation. ℓ̂ is the flat latent standardised by ``latent_mean`` and ``latent_std`` in the
  ``standardisation`` collection (statistics of the generator's own latents, set once when training
  starts and never trained); the offset is scaled back by ``latent_std``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.models.latent import Latent

DIRECTION_INIT_STD = 0.02
STANDARDISATION = "standardisation"  # the mapper's fixed latent statistics (a variable collection)


def flatten_latent(latent: Latent) -> jax.Array:
    """(B, K, 2), (B, K, D), (B, D) → (B, 2K + KD + D): positions, part embeddings, background."""
    b = latent.keypoints.shape[0]
    return jnp.concatenate(
        [latent.keypoints.reshape(b, -1), latent.part_embeddings.reshape(b, -1), latent.background_embedding], axis=-1
    ).astype(jnp.float32)


def unflatten_offset(latent: Latent, offset: jax.Array) -> Latent:
    """``latent`` plus a flat offset (B, 2K + KD + D) laid out as in ``flatten_latent``."""
    b, k, d = latent.part_embeddings.shape
    positions, rest = offset[:, : 2 * k], offset[:, 2 * k :]
    embeddings, background = rest[:, : k * d], rest[:, k * d :]
    return latent.replace(
        keypoints=latent.keypoints + positions.reshape(b, k, 2),
        part_embeddings=latent.part_embeddings + embeddings.reshape(b, k, d),
        background_embedding=latent.background_embedding + background,
    )


def check_latent(latent: Latent, num_parts: int, embed_dim: int) -> None:
    """One-line error unless ``latent`` has the editor's K parts and D-wide embeddings, batched (B, ...)."""
    if latent.keypoints.ndim != 3 or latent.part_embeddings.shape[1:] != (num_parts, embed_dim):
        raise ValueError(
            f"this editor edits latents of {num_parts} parts with {embed_dim}-wide embeddings, batched; "
            f"got keypoints {latent.keypoints.shape} and part embeddings {latent.part_embeddings.shape}"
        )


class DirectionMatrix(nn.Module):
    """ℓ' = ℓ + T·δ with blocks T_pos (A, K, 2), T_emb (A, K, D), T_bg (A, D) (module docstring).

    ``edit_positions`` / ``edit_embeddings`` / ``edit_background`` False fix a whole block at zero.
    """

    num_attributes: int
    num_parts: int
    embed_dim: int
    edit_positions: bool = True
    edit_embeddings: bool = True
    edit_background: bool = True

    def setup(self) -> None:
        a, k, d = self.num_attributes, self.num_parts, self.embed_dim
        init = nn.initializers.normal(DIRECTION_INIT_STD)
        zeros = nn.initializers.zeros
        self.positions = self.param("positions", init if self.edit_positions else zeros, (a, k, 2), jnp.float32)
        self.embeddings = self.param("embeddings", init if self.edit_embeddings else zeros, (a, k, d), jnp.float32)
        self.background = self.param("background", init if self.edit_background else zeros, (a, d), jnp.float32)

    def blocks(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The three blocks with the disabled ones held at exactly zero (no gradient reaches them)."""
        keep = lambda on, x: x if on else jax.lax.stop_gradient(jnp.zeros_like(x))  # noqa: E731
        return (keep(self.edit_positions, self.positions), keep(self.edit_embeddings, self.embeddings),
                keep(self.edit_background, self.background))

    def __call__(self, latent: Latent, delta: jax.Array) -> Latent:
        check_latent(latent, self.num_parts, self.embed_dim)
        positions, embeddings, background = self.blocks()
        delta = delta.astype(jnp.float32)
        return latent.replace(
            keypoints=latent.keypoints + jnp.einsum("ba,akc->bkc", delta, positions),
            part_embeddings=latent.part_embeddings + jnp.einsum("ba,akd->bkd", delta, embeddings),
            background_embedding=latent.background_embedding + delta @ background,
        )

    def block_norms(self) -> jax.Array:
        """(A, 2K + 1): per attribute, ‖T_pos[a, k]‖₂ for each part, ‖T_emb[a, k]‖₂ for each part, ‖T_bg[a]‖₂."""
        positions, embeddings, background = self.blocks()
        norm = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=-1) + 1e-12)  # noqa: E731
        return jnp.concatenate([norm(positions), norm(embeddings), norm(background)[:, None]], axis=-1)


class LatentMapper(nn.Module):
    """ℓ' = ℓ + g([ℓ̂, δ]): a tanh MLP of ``depth`` hidden layers as wide as the flat latent (docstring)."""

    num_attributes: int
    num_parts: int
    embed_dim: int
    depth: int

    @nn.compact
    def __call__(self, latent: Latent, delta: jax.Array) -> Latent:
        check_latent(latent, self.num_parts, self.embed_dim)
        flat = flatten_latent(latent)
        width = flat.shape[-1]
        mean = self.variable(STANDARDISATION, "latent_mean", jnp.zeros, (width,), jnp.float32).value
        std = self.variable(STANDARDISATION, "latent_std", jnp.ones, (width,), jnp.float32).value
        h = jnp.concatenate([(flat - mean) / std, delta.astype(jnp.float32)], axis=-1)
        for i in range(self.depth):
            h = jnp.tanh(nn.Dense(width, kernel_init=nn.initializers.lecun_normal(), name=f"hidden_{i}")(h))
        offset = nn.Dense(width, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name="out")(h)
        return unflatten_offset(latent, offset * std)
