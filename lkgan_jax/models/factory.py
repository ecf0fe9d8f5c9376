"""Builds the models from an ``ml_collections`` model config (every number lives in the config)."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from lkgan_jax.models.discriminator import Discriminator
from lkgan_jax.models.generator import Generator

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
PART_FOOTPRINTS = ("gaussian", "learned")  # model.part_footprint


def compute_dtype(name: str):
    """'float32' | 'bfloat16' → the JAX dtype (parameters always stay float32)."""
    if name not in _DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name]


def generator_resolution(model_config: ml_collections.ConfigDict) -> int:
    """Output side of the generator: 4 · 2^(len(g_channels) − 1)."""
    return 4 * 2 ** (len(model_config.g_channels) - 1)


def make_generator(model_config: ml_collections.ConfigDict, dtype: str | None = None) -> Generator:
    c = model_config
    if c.num_keypoints < 1:
        raise ValueError(f"model.num_keypoints must be at least 1, got {c.num_keypoints}")
    if c.tau <= 0:
        raise ValueError(f"model.tau must be positive, got {c.tau}")
    groups = c.get("g_norm_groups", 0)
    widths = [c.g_const_channels, *c.g_channels]  # every normalised width: the blocks' inputs and outputs
    if groups < 0 or (groups and any(width % groups for width in widths)):
        raise ValueError(f"model.g_norm_groups must be 0 (BatchNorm) or divide every G width {tuple(c.g_channels)}, got {groups}")
    if c.get("part_size_range", 1.0) < 1:
        raise ValueError(f"model.part_size_range must be at least 1 (1: fixed τ), got {c.part_size_range}")
    if c.get("part_footprint", "gaussian") not in PART_FOOTPRINTS:
        raise ValueError(f"model.part_footprint must be one of {', '.join(PART_FOOTPRINTS)}, got {c.part_footprint!r}")
    if c.get("footprint_points", 4) < 1:
        raise ValueError(f"model.footprint_points must be at least 1, got {c.footprint_points}")
    if c.get("keypoint_layout_encoding", 0) < 0:
        raise ValueError(f"model.keypoint_layout_encoding must be at least 0 (0: off), got {c.keypoint_layout_encoding}")
    return Generator(
        num_keypoints=c.num_keypoints,
        embed_dim=c.embed_dim,
        z_dim=c.z_dim,
        pose_depth=c.pose_depth,
        appearance_depth=c.appearance_depth,
        tanh_divisor=c.tanh_divisor,
        tau=c.tau,
        channels=tuple(c.g_channels),
        const_channels=c.g_const_channels,
        spade_hidden=c.spade_hidden,
        slope=c.leaky_slope,
        bn_momentum=c.bn_momentum,
        bn_epsilon=c.bn_epsilon,
        dtype=compute_dtype(dtype or c.dtype),
        tau_floor_pixels=c.get("tau_floor_pixels", 0.0),  # runs from before these options: off
        min_keypoint_size=c.get("min_keypoint_size", 0),
        part_size_range=c.get("part_size_range", 1.0),
        learned_layout=c.get("learned_layout", True),
        residual_init_scale=c.get("g_residual_init_scale", 1.0),
        rgb_init_scale=c.get("g_rgb_init_scale", 1.0),
        norm_groups=c.get("g_norm_groups", 0),
        part_footprint=c.get("part_footprint", "gaussian"),  # locality levers (docs/design.md §2): off when absent
        footprint_points=c.get("footprint_points", 4),
        part_mask_gating=c.get("part_mask_gating", False),
        keypoint_layout_encoding=c.get("keypoint_layout_encoding", 0),
    )


def make_discriminator(model_config: ml_collections.ConfigDict, dtype: str | None = None) -> Discriminator:
    c = model_config
    if c.get("keypoint_recovery_weight", 0.0) < 0:
        raise ValueError(f"model.keypoint_recovery_weight must be at least 0 (0: off), got {c.keypoint_recovery_weight}")
    return Discriminator(
        channels=tuple(c.d_channels),
        dense_features=c.d_dense,
        slope=c.leaky_slope,
        dtype=compute_dtype(dtype or c.dtype),
        num_keypoints=c.num_keypoints if c.get("keypoint_recovery_weight", 0.0) > 0 else 0,
        keypoint_head_init_scale=c.get("keypoint_head_init_scale", 1.0),
    )
