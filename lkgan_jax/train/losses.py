"""GAN losses and gradient penalties (docs/design.md §3). All reductions are batch means in float32."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def discriminator_loss(logits_real: jax.Array, logits_fake: jax.Array) -> jax.Array:
    """Non-saturating logistic D loss: mean softplus(D(fake)) + mean softplus(−D(real))."""
    return jnp.mean(jax.nn.softplus(logits_fake)) + jnp.mean(jax.nn.softplus(-logits_real))


def generator_loss(logits_fake: jax.Array) -> jax.Array:
    """Non-saturating G loss: mean softplus(−D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-logits_fake))


def keypoint_recovery_loss(predicted: jax.Array, keypoints: jax.Array) -> jax.Array:
    """Mean absolute error, (B, K, 2) × (B, K, 2) → scalar, against the keypoints as fixed targets."""
    return jnp.mean(jnp.abs(predicted.astype(jnp.float32) - jax.lax.stop_gradient(keypoints.astype(jnp.float32))))


def per_sample_grad_sq_norm(grads: jax.Array) -> jax.Array:
    """(B, ...) gradients → (B,) squared L2 norms over all non-batch axes."""
    return jnp.sum(jnp.square(grads.astype(jnp.float32)).reshape(grads.shape[0], -1), axis=-1)


def r1_penalty(grads: jax.Array, gamma: float, interval: int) -> jax.Array:
    """R1 on reals, γ/2 · mean ‖∇ₓD‖², scaled by the lazy-regularisation interval."""
    return 0.5 * gamma * interval * jnp.mean(per_sample_grad_sq_norm(grads))


def unit_gradient_penalty(grads: jax.Array, weight: float) -> jax.Array:
    """The authors' penalty on reals: weight · mean (‖∇ₓD‖ − 1)², not rescaled by the interval."""
    return weight * jnp.mean(jnp.square(jnp.sqrt(per_sample_grad_sq_norm(grads) + 1e-12) - 1.0))
