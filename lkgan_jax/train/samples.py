"""Sample grids from the EMA generator in eval mode, keypoints drawn in one colour per part."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from lkgan_jax.conventions import float_to_uint8
from lkgan_jax.models.generator import Generator
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import latent_from_seeds, render
from lkgan_jax.utils import visualize


def make_sampler(generator: Generator, num: int, seed: int) -> Callable:
    """A jitted ``(ema_params, g_stats) -> (images (N,R,R,3), latent)`` for seeds ``seed .. seed+num-1``.

    The same images as ``lkgan generate --seed SEED --num NUM`` of the checkpoint.
    """
    seeds = np.arange(seed, seed + num, dtype=np.uint32)

    @jax.jit
    def sample(ema_params, g_stats) -> tuple[jax.Array, Latent]:
        variables = {"params": ema_params, "batch_stats": g_stats}
        latent = latent_from_seeds(generator, variables, seeds, seeds, seeds, generator.z_dim)
        return render(generator, variables, latent), latent

    return sample


def keypoint_grid(images: jax.Array, latent: Latent, upscale: int) -> np.ndarray:
    """Images in [-1, 1] and their latent → one uint8 grid, tiles upscaled, keypoints drawn."""
    tiles = visualize.upscale_nearest(float_to_uint8(images), upscale)
    tiles = visualize.draw_keypoints(tiles, np.asarray(latent.keypoints), np.asarray(latent.mask))
    return visualize.make_grid(tiles)

