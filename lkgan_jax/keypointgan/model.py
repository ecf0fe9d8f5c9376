"""The KeypointGAN networks of one config, and the pure functions that wire them (docs/design.md §13).

    y  = Φ(x)                 (B, R, R, 1)   skeleton image of the image x (unbounded)
    p  = softargmax(η(y))     (B, K, 2)      keypoints: the detector's output
    ŷ  = β(p)                 (B, R, R, 1)   the clean re-rendered skeleton, in [-1, 1]
    x̂  = Ψ(ŷ, x')             (B, R, R, 3)   the reconstruction of x from the style image x'
    D(y) and D(β(p̄))          lists of patch logits, one per scale (prior poses p̄ are "real")

With ``model.bottleneck = "none"`` (an ablation), Ψ sees Φ(x) itself instead of β(p).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from lkgan_jax.keypointgan import networks, skeleton

BOTTLENECKS = ("skeleton", "none")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class KeypointGan:
    """Module definitions and the renderer of one ``model`` config section (no arrays)."""

    encoder: networks.SkeletonEncoder  # Φ
    regressor: networks.PoseRegressor  # η
    decoder: networks.ConditionalDecoder  # Ψ
    discriminator: networks.MultiScaleDiscriminator  # D
    render: Callable[[jax.Array], jax.Array]  # β: (B, K, 2) → (B, R, R, 1)
    resolution: int
    num_points: int
    bottleneck: str
    flip_pairs: tuple[tuple[int, int], ...]

    def skeleton_image(self, encoder_variables: Any, images: jax.Array, train: bool = False):
        """Φ(x): (B, R, R, 1); with ``train``, also the updated BatchNorm statistics."""
        if train:
            y, updates = self.encoder.apply(encoder_variables, images, train=True, mutable=["batch_stats"])
            return y, updates["batch_stats"]
        return self.encoder.apply(encoder_variables, images, train=False)

    def keypoints(self, regressor_params: Any, skeleton_images: jax.Array) -> jax.Array:
        """softargmax(η(y)): (B, K, 2) in [-1, 1]."""
        return skeleton.soft_argmax(self.regressor.apply({"params": regressor_params}, skeleton_images))

    def detect(self, encoder_variables: Any, regressor_params: Any, images: jax.Array) -> jax.Array:
        """The detector p = softargmax(η(Φ(x))) in eval mode: (B, R, R, 3) → (B, K, 2)."""
        return self.keypoints(regressor_params, self.skeleton_image(encoder_variables, images))

    def pose_input(self, skeleton_images: jax.Array, keypoints: jax.Array) -> jax.Array:
        """What Ψ sees as pose: β(p), or Φ(x) itself without the bottleneck."""
        return self.render(keypoints) if self.bottleneck == "skeleton" else skeleton_images


def validate_model_config(m: ml_collections.ConfigDict, resolution: int) -> None:
    """One-line errors for a ``model`` section that cannot be built at ``resolution``."""
    if m.num_points < 1:
        raise ValueError(f"model.num_points must be >= 1, got {m.num_points}")
    skeleton.validate_edges(m.edges, m.num_points, "model.edges")
    if len(m.flip_pairs):
        skeleton.validate_edges(m.flip_pairs, m.num_points, "model.flip_pairs")
    if m.bottleneck not in BOTTLENECKS:
        raise ValueError(f"model.bottleneck must be one of {', '.join(BOTTLENECKS)}, got {m.bottleneck!r}")
    if m.dtype not in DTYPES:
        raise ValueError(f"model.dtype must be one of {', '.join(DTYPES)}, got {m.dtype!r}")
    if m.sigma <= 0 or m.gamma <= 0:
        raise ValueError(f"model.sigma and model.gamma must be positive, got {m.sigma} and {m.gamma}")
    for name in ("encoder_channels", "regressor_channels", "decoder_channels"):
        stages = len(m[name]) - 1
        if stages < 1:
            raise ValueError(f"model.{name} needs at least 2 widths, got {tuple(m[name])}")
        if resolution % 2**stages:
            raise ValueError(f"data.resolution={resolution} is not divisible by 2^(len(model.{name}) - 1) = {2 ** stages}")
    smallest = resolution // 2 ** (m.disc_scales - 1)
    if m.disc_scales < 1 or smallest // 2**m.disc_layers < 3:  # two stride-1 4×4 convs still take 1 px each
        raise ValueError(
            f"D's smallest input ({smallest} px) is too small for model.disc_layers={m.disc_layers}: "
            f"it needs >= {3 * 2 ** m.disc_layers} px; lower model.disc_scales={m.disc_scales} or model.disc_layers")


def make_keypointgan(m: ml_collections.ConfigDict, resolution: int) -> KeypointGan:
    """The networks of the ``model`` config section ``m`` for ``resolution``-px images."""
    validate_model_config(m, resolution)
    dtype = DTYPES[m.dtype]
    edges = skeleton.validate_edges(m.edges, m.num_points, "model.edges")
    return KeypointGan(
        encoder=networks.SkeletonEncoder(channels=tuple(m.encoder_channels), dtype=dtype),
        regressor=networks.PoseRegressor(channels=tuple(m.regressor_channels), num_points=m.num_points, dtype=dtype),
        decoder=networks.ConditionalDecoder(channels=tuple(m.decoder_channels), dtype=dtype),
        discriminator=networks.MultiScaleDiscriminator(
            num_scales=m.disc_scales, base_channels=m.disc_channels, num_layers=m.disc_layers, dtype=dtype
        ),
        render=functools.partial(skeleton.render_skeleton, edges=edges, size=resolution, sigma=m.sigma, form=m.renderer, gamma=m.gamma),
        resolution=resolution,
        num_points=m.num_points,
        bottleneck=m.bottleneck,
        flip_pairs=skeleton.validate_edges(m.flip_pairs, m.num_points, "model.flip_pairs") if len(m.flip_pairs) else (),
    )


def lsgan_loss(patch_logits: list[jax.Array], target: float) -> jax.Array:
    """mean over scales of mean((D_s − target)²): LSGAN with real → 1, fake → 0."""
    return jnp.mean(jnp.stack([jnp.mean(jnp.square(logits.astype(jnp.float32) - target)) for logits in patch_logits]))
