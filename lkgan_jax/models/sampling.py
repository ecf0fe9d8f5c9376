"""Jitted sampling and rendering with a generator's variables, and ``TrainedGenerator`` to hold them.

Shared by training (sample grids, evaluation during training, detector pairs) and inference
(``lkgan_jax.pretrained.load_generator``). Rendering is always in eval mode (BatchNorm running
statistics), so the samples of a batch are independent (docs/design.md §1). The generator's variables
are arguments of the jitted functions, never constants baked into the compiled program.

    g = TrainedGenerator(generator, {"params": ema_params, "batch_stats": g_stats}, config, step)
    latent = g.latent_from_seeds(np.arange(8))        # the images of seeds 0..7
    images = g.render(latent)                           # (8, R, R, 3) float32 in [-1, 1]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lkgan_jax.models.generator import Generator
from lkgan_jax.models.latent import APPEARANCE_STREAM, BACKGROUND_STREAM, POSE_STREAM, Latent, noise_from_seeds, sample_noise

Variables = dict[str, Any]
MAX_SEED = 2**32 - 1


@functools.partial(jax.jit, static_argnums=0)
def latent_from_noise(generator: Generator, variables: Variables, z_pose, z_app, z_bg) -> Latent:
    """Stage 1 on explicit noise (B, Z) × 3 -> ``Latent`` (all parts active, configured τ)."""
    return generator.apply(variables, z_pose, z_app, z_bg, method=Generator.sample_latent)


@functools.partial(jax.jit, static_argnums=(0, 5))
def latent_from_seeds(
    generator: Generator, variables: Variables, pose_seeds, appearance_seeds, background_seeds, z_dim: int
) -> Latent:
    """Stage 1 on the noise of integer seeds (N,) per stream (``noise_from_seeds``)."""
    noise = (
        noise_from_seeds(pose_seeds, POSE_STREAM, z_dim),
        noise_from_seeds(appearance_seeds, APPEARANCE_STREAM, z_dim),
        noise_from_seeds(background_seeds, BACKGROUND_STREAM, z_dim),
    )
    return generator.apply(variables, *noise, method=Generator.sample_latent)


@functools.partial(jax.jit, static_argnums=0)
def render(generator: Generator, variables: Variables, latent: Latent) -> jax.Array:
    """Stage 2 in eval mode: ``Latent`` (any K) -> images (B, R, R, 3) float32 in [-1, 1]."""
    return generator.apply(variables, latent, train=False, method=Generator.render)


def generated_pairs(generator: Generator, variables: Variables, key: jax.Array, batch_size: int) -> tuple[jax.Array, Latent]:
    """``batch_size`` fresh (images (B, R, R, 3), latent) pairs from noise of ``key``, eval mode, no gradient."""
    latent = latent_from_noise(generator, variables, *sample_noise(key, batch_size, generator.z_dim))
    images = render(generator, variables, latent)
    return jax.lax.stop_gradient(images), jax.lax.stop_gradient(latent)


def standing_statistics(
    generator: Generator, params: Any, stats: Any, key: jax.Array, num_batches: int, batch_size: int, noise_sharding: Any = None
) -> Any:
    """BatchNorm statistics of the generator with ``params`` → a tree shaped like ``stats``.

    Renders ``num_batches`` batches of ``batch_size`` fresh samples from ``key`` in train mode and
    averages each BatchNorm's batch mean and (biased) batch variance over the batches ("standing"
    statistics). ``stats`` only gives the tree; its values are not used. With one batch, eval mode with
    the result renders that batch exactly as train mode does. ``noise_sharding`` (e.g. the training
    batch's) splits each batch over devices. Pure and jit-able.
    """
    if not jax.tree.leaves(stats):  # GroupNorm: nothing to average
        return stats
    exact = generator.clone(bn_momentum=0.0)  # the updated running statistics are the batch's own

    def add(total: Any, index: jax.Array) -> tuple[Any, None]:
        noise = sample_noise(jax.random.fold_in(key, index), batch_size, generator.z_dim)
        if noise_sharding is not None:
            noise = tuple(jax.lax.with_sharding_constraint(z, noise_sharding) for z in noise)
        _, updates = exact.apply({"params": params, "batch_stats": stats}, *noise, train=True, mutable=["batch_stats"])
        return jax.tree.map(jnp.add, total, updates["batch_stats"]), None

    zeros = jax.tree.map(jnp.zeros_like, stats)
    total, _ = jax.lax.scan(add, zeros, jnp.arange(num_batches))
    return jax.tree.map(lambda value: value / num_batches, total)


def check_seeds(seeds: Any) -> np.ndarray:
    """Seeds as a uint32 vector (N,); ``ValueError`` for negative, too large or non-integer seeds."""
    array = np.atleast_1d(np.asarray(seeds))
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"seeds must be integers, got {seeds!r}")
    if array.size and (array.min() < 0 or array.max() > MAX_SEED):
        raise ValueError(f"seeds must lie in 0..{MAX_SEED}, got {seeds!r}")
    return array.astype(np.uint32)


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
    """A generator with its variables at one step, and the run's config.

    ``variables`` is ``{"params": EMA params, "batch_stats": BN running statistics}``; they may be a
    checkpoint's arrays (``load_generator``) or a training state's, evaluated in memory.
    """

    generator: Generator
    variables: Variables
    config: ml_collections.ConfigDict
    step: int

    @property
    def num_parts(self) -> int:
        return self.generator.num_keypoints

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    def latent_from_noise(self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array) -> Latent:
        return latent_from_noise(self.generator, self.variables, z_pose, z_app, z_bg)

    def latent_from_seeds(
        self, seeds: Any, appearance_seeds: Any | None = None, background_seeds: Any | None = None
    ) -> Latent:
        """Latents of integer ``seeds`` (N,); the appearance / background streams may come from other seeds."""
        seeds = check_seeds(seeds)
        appearance = seeds if appearance_seeds is None else check_seeds(appearance_seeds)
        background = seeds if background_seeds is None else check_seeds(background_seeds)
        return latent_from_seeds(self.generator, self.variables, seeds, appearance, background, self.generator.z_dim)

    def render(self, latent: Latent) -> jax.Array:
        return render(self.generator, self.variables, latent)
