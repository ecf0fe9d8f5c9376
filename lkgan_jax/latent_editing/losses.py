"""Losses of the learned editors (docs/design.md §14). Batch means in float32; shapes in each docstring.

Attribute values are the judge's standardised outputs (B, A); latents are compared flat
(``editors.flatten_latent``), divided by the latent's standard deviation so that positions and
embeddings weigh alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def attribute_loss(edited: jax.Array, original: jax.Array, delta: jax.Array) -> jax.Array:
    """mean_{b,a} (Ĥ(G(ℓ'))_a − (Ĥ(G(ℓ))_a + δ_a))², (B, A) each; the original's reading is a fixed target.

    Attributes with δ_a = 0 are asked to stay where they were, so the loss also penalises leakage.
    """
    target = jax.lax.stop_gradient(original.astype(jnp.float32)) + delta.astype(jnp.float32)
    return jnp.mean(jnp.square(edited.astype(jnp.float32) - target))


def latent_distance(a: jax.Array, b: jax.Array, scale: jax.Array) -> jax.Array:
    """mean_b ‖(a − b) / scale‖² / width for flat latents (B, W) and a scale (W,)."""
    return jnp.mean(jnp.square((a - b) / scale))


def keypoint_preservation_loss(edited: jax.Array, original: jax.Array, weight: jax.Array) -> jax.Array:
    """mean |K(G(ℓ')) − K(G(ℓ))| over the samples with ``weight`` (B,) 1, keypoints (B, K, 2).

    The original's keypoints are a fixed target; samples that edit geometry attributes get weight 0.
    """
    per_sample = jnp.mean(jnp.abs(edited.astype(jnp.float32) - jax.lax.stop_gradient(original.astype(jnp.float32))), axis=(1, 2))
    weight = weight.astype(jnp.float32)
    return jnp.sum(per_sample * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def group_lasso(block_norms: jax.Array) -> jax.Array:
    """Σ of the group norms (A, G): the penalty that drives whole blocks of an attribute to zero."""
    return jnp.sum(block_norms)


def balanced_weight(reference_grads, term_grads, eps: float = 1e-12) -> jax.Array:
    """‖∇ reference‖₂ / ‖∇ term‖₂ over whole gradient pytrees: the weight that equalises the two terms."""
    norm = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))  # noqa: E731
    return norm(reference_grads) / (norm(term_grads) + eps)
