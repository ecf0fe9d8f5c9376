"""LatentKeypointGAN generator (docs/design.md §2): noise → ``Latent`` (stage 1) → image through SPADE (stage 2).

``Generator`` exposes the two stages separately so that editing, metrics and detection can render any
explicit latent:

  variables = Generator(...).init(key, z_pose, z_app, z_bg)
  latent = Generator(...).apply(variables, z_pose, z_app, z_bg, method=Generator.sample_latent)
  image  = Generator(...).apply(variables, latent, train=False, method=Generator.render)

Images are (B, R, R, 3) float32 in [-1, 1]. BatchNorm uses batch statistics when ``train=True`` and
running averages otherwise (eval mode: samples of a batch are independent); a generator with GroupNorm
(``norm_groups`` > 0) has no statistics, and ``statistics(variables)`` is then ``{}``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lkgan_jax.models.heatmaps import cone_radius, embedding_map, keypoint_encoding
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.layers import MLP, ConvParams, conv, fused_conv, upsample2x

Dtype = Any


def statistics(variables: Any) -> Any:
    """The BatchNorm statistics in a generator's Flax ``variables`` (or ``mutable`` updates); ``{}`` with GroupNorm."""
    return variables.get("batch_stats", {})


class KeypointMapping(nn.Module):
    """Stage 1: three independent noises (B, Z) → keypoints, part embeddings, background embedding.

    With ``part_size_range`` r > 1 each part k also learns its Gaussian width: a parameter s_k
    (initialised 0) scales the width by r^tanh(s_k), i.e. τ_k = τ · r^(2·tanh(s_k)), always in
    [τ / r², τ · r²] and positive. r = 1 (default) keeps τ fixed, with no parameter.

    With ``footprint_points`` P > 0 (the learned footprint, GANSeg's sub-points) the pose MLP draws P
    sub-points s_kj = tanh(MLP/divisor) per part instead of one point; kp_k = mean_j s_kj, and the part's
    cone radius is ρ_k = 2√(τ_k ln 2) + mean_{j,c} |s_kjc − kp_kc| (the fixed τ's radius plus GANSeg's
    learned width), stored in the latent as the Gaussian-equivalent τ_k = ρ_k² / (4 ln 2) (> 0).
    P = 0 (default) draws one point per part.
    """

    num_keypoints: int
    embed_dim: int
    z_dim: int
    pose_depth: int
    appearance_depth: int
    tanh_divisor: float
    tau: float
    slope: float
    part_size_range: float = 1.0
    footprint_points: int = 0  # > 0: sub-points per part, whose spread widens the part's cone (learned footprint)

    def part_tau(self) -> jax.Array | float:
        """τ per part, (K,) when sizes are learned, else the scalar τ."""
        if self.part_size_range <= 1.0:
            return self.tau
        log_size = self.param("part_log_size", nn.initializers.zeros, (self.num_keypoints,), jnp.float32)
        return self.tau * self.part_size_range ** (2.0 * jnp.tanh(log_size))

    @nn.compact
    def __call__(self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array) -> Latent:
        k, d = self.num_keypoints, self.embed_dim
        points = max(self.footprint_points, 1)
        pose = MLP(self.z_dim, self.pose_depth, 2 * k * points, self.slope, name="pose_mlp")(z_pose)
        part_table = self.param("part_table", nn.initializers.normal(1.0), (k, d), jnp.float32)
        global_appearance = MLP(self.z_dim, self.appearance_depth, d, self.slope, name="appearance_mlp")(z_app)
        part_embeddings = part_table[None] * global_appearance[:, None, :]
        background = MLP(self.z_dim, self.appearance_depth, d, self.slope, name="background_mlp")(z_bg)
        tau = self.part_tau()
        if self.footprint_points == 0:
            keypoints = jnp.tanh(pose / self.tanh_divisor).reshape(-1, k, 2)
            return Latent.create(keypoints, part_embeddings, background, tau)
        sub_points = jnp.tanh(pose / self.tanh_divisor).reshape(-1, k, points, 2)
        keypoints = jnp.mean(sub_points, axis=2)
        spread = jnp.mean(jnp.abs(sub_points - keypoints[:, :, None, :]), axis=(2, 3))  # (B, K)
        radius = cone_radius(jnp.asarray(tau, jnp.float32)) + spread
        return Latent.create(keypoints, part_embeddings, background, jnp.square(radius) / (4.0 * jnp.log(2.0)))


class Spade(nn.Module):
    """SPADE: a parameter-free normalisation of x, modulated by (1 + γ(F)) and β(F) computed from F.

    F = LeakyReLU(``shared`` 3×3 conv of the conditioning map, ``hidden`` wide); γ and β are 3×3 convs
    of F with x's width C, run fused as one conv of 2C outputs (one pass over F instead of two).
    ``__call__`` computes F itself; a ``SpadeResBlock`` instead computes the F of all its SPADEs in one
    conv (``hidden_params``) and passes each its F (``modulate``). The parameters are those of three
    ``layers.conv``s named ``shared``, ``gamma`` and ``beta``.

    ``norm_groups`` = 0 normalises with BatchNorm (the authors'; running statistics in ``batch_stats``);
    G > 0 with GroupNorm of G groups, per sample and the same in training and rendering.
    """

    hidden: int
    slope: float
    bn_momentum: float
    bn_epsilon: float
    dtype: Dtype
    norm_groups: int = 0

    def setup(self) -> None:
        if self.norm_groups:
            self.norm = nn.GroupNorm(self.norm_groups, epsilon=self.bn_epsilon, use_bias=False, use_scale=False, dtype=self.dtype)
        else:
            self.norm = nn.BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon, use_bias=False, use_scale=False, dtype=self.dtype)
        self.shared = ConvParams(3, self.slope)
        self.gamma = ConvParams(3, self.slope)
        self.beta = ConvParams(3, self.slope)

    def hidden_params(self, cond_features: int) -> tuple[jax.Array, jax.Array]:
        """The ``shared`` conv's kernel (3, 3, cond_features, hidden) and bias (hidden,)."""
        return self.shared(cond_features, self.hidden)

    def modulate(self, x: jax.Array, hidden: jax.Array, train: bool) -> jax.Array:
        """x (B, H, W, C) and F (B, H, W, hidden), the activated ``shared`` conv → (B, H, W, C)."""
        normalized = self.norm(x) if self.norm_groups else self.norm(x, use_running_average=not train)
        width, features = hidden.shape[-1], x.shape[-1]
        gamma_beta = fused_conv(hidden, [self.gamma(width, features), self.beta(width, features)], self.dtype)
        gamma, beta = jnp.split(gamma_beta, 2, axis=-1)
        return normalized * (1.0 + gamma) + beta

    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        """x (B, H, W, C), conditioning map (B, H, W, C_cond) → (B, H, W, C)."""
        hidden = fused_conv(cond, [self.hidden_params(cond.shape[-1])], self.dtype)
        return self.modulate(x, nn.leaky_relu(hidden, self.slope), train)


class SpadeResBlock(nn.Module):
    """SPADE residual block (docs/design.md §2); a SPADE + 3×3 conv shortcut when the width changes.

    x (B, H, W, C_in), conditioning map (B, H, W, C_cond) → (B, H, W, ``features``). The ``shared``
    convs of its two or three SPADEs all read the same conditioning map, so they run fused as one conv
    of (number of SPADEs × ``hidden``) outputs, split per SPADE: one pass over the map instead of two
    or three. Each SPADE keeps its own parameters (``spade_0/shared/kernel``, ...).

    ``residual_init_scale`` multiplies the initial kernel of the residual branch's last conv, so that
    a block starts near its shortcut (1: Kaiming, as every other conv).
    """

    features: int
    hidden: int
    slope: float
    bn_momentum: float
    bn_epsilon: float
    dtype: Dtype
    residual_init_scale: float = 1.0
    norm_groups: int = 0  # each SPADE's normalisation (``Spade``)

    def _spade(self, name: str) -> Spade:
        return Spade(self.hidden, self.slope, self.bn_momentum, self.bn_epsilon, self.dtype, self.norm_groups, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        features_in = x.shape[-1]
        middle = min(features_in, self.features)
        names = ["spade_0", "spade_1"] + ([] if features_in == self.features else ["spade_shortcut"])
        spades = [self._spade(name) for name in names]
        hidden = fused_conv(cond, [spade.hidden_params(cond.shape[-1]) for spade in spades], self.dtype)
        hidden = jnp.split(nn.leaky_relu(hidden, self.slope), len(spades), axis=-1)
        h = nn.leaky_relu(spades[0].modulate(x, hidden[0], train), self.slope)
        h = conv(middle, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="conv_0")(h)  # → a normalisation
        h = nn.leaky_relu(spades[1].modulate(h, hidden[1], train), self.slope)
        h = conv(self.features, 3, slope=self.slope, dtype=self.dtype, init_scale=self.residual_init_scale, name="conv_1")(h)
        if features_in == self.features:
            shortcut = x
        else:
            shortcut = spades[2].modulate(x, hidden[2], train)
            shortcut = conv(self.features, 3, slope=self.slope, dtype=self.dtype, name="conv_shortcut")(shortcut)
        return h + shortcut


class KeypointLayout(nn.Module):
    """A start tensor from the keypoints: 1×1 conv ("projection") of ``heatmaps.keypoint_encoding`` at 4×4.

    ``Latent`` → (B, 4, 4, ``features``). The conv was built for ``parts`` keypoints: parts beyond them
    (appended by an edit) are left out, missing ones count as masked. Equivariant to translations of all
    keypoints by whole pixels of the 4×4 grid (a function of pixel − keypoint only).
    """

    features: int
    frequencies: int
    parts: int
    slope: float
    dtype: Dtype

    @nn.compact
    def __call__(self, latent: Latent) -> jax.Array:
        keypoints, mask = latent.keypoints[:, : self.parts], latent.mask[:, : self.parts]
        if latent.num_parts < self.parts:
            pad = ((0, 0), (0, self.parts - latent.num_parts))
            keypoints, mask = jnp.pad(keypoints, pad + ((0, 0),)), jnp.pad(mask, pad)
        encoding = keypoint_encoding(keypoints, mask, 4, self.frequencies).astype(self.dtype)
        return conv(self.features, 1, slope=self.slope, dtype=self.dtype, name="projection")(encoding)


class SpadeRenderer(nn.Module):
    """Stage 2: a learned 4×4 constant, then per resolution (×2 upsample,) one SPADE res-block.

    ``channels[i]`` is the output width of the block at side 4·2^i; the output side is 4·2^(n−1).
    ``tau_floor_pixels`` and ``min_keypoint_size`` shape the conditioning maps (``heatmaps.embedding_map``).
    ``rgb_init_scale`` multiplies the RGB conv's initial kernel, so that the output tanh can start
    unsaturated; ``residual_init_scale`` is each block's (``SpadeResBlock``).
    With ``learned_layout=False`` there is no constant: the blocks start from zeros, so the first block's
    output is computed from the conditioning map alone and every spatial structure starts from the
    keypoints (docs/design.md §2).

    Locality options (docs/design.md §2, off by default): ``footprint`` ("gaussian" | "cone") and
    ``mask_gating`` shape the conditioning maps (``heatmaps.embedding_map``); ``layout_encoding`` F > 0
    adds to the 4×4 start a ``KeypointLayout`` ("layout_encoding", ``const_channels`` wide): a 1×1 conv of
    the sin/cos encoding of every pixel's offset to each of the first ``layout_parts`` keypoints at F
    frequencies; parts appended later (index ≥ ``layout_parts``) add nothing to it.
    """

    channels: Sequence[int]
    const_channels: int
    hidden: int
    slope: float
    bn_momentum: float
    bn_epsilon: float
    dtype: Dtype
    tau_floor_pixels: float = 0.0
    min_keypoint_size: int = 0
    learned_layout: bool = True
    residual_init_scale: float = 1.0
    rgb_init_scale: float = 1.0
    norm_groups: int = 0  # each SPADE's normalisation (``Spade``)
    footprint: str = "gaussian"  # the parts' footprints: "gaussian" | "cone" (``heatmaps.part_footprints``)
    mask_gating: bool = False  # parts write through normalised masks (``heatmaps.normalised_masks``)
    layout_encoding: int = 0  # F > 0: the start adds a projected sin/cos encoding of the keypoints (F frequencies)
    layout_parts: int = 0  # the parts the layout encoding's projection was built for (the trained K)

    @nn.compact
    def __call__(self, latent: Latent, train: bool) -> jax.Array:
        batch = latent.keypoints.shape[0]
        if self.learned_layout:
            const = self.param("const", nn.initializers.normal(1.0), (1, 4, 4, self.const_channels), jnp.float32)
        else:
            const = jnp.zeros((1, 4, 4, self.const_channels), jnp.float32)
        x = jnp.broadcast_to(const, (batch,) + const.shape[1:]).astype(self.dtype)
        if self.layout_encoding > 0:
            layout = KeypointLayout(self.const_channels, self.layout_encoding, self.layout_parts, self.slope, self.dtype,
                                    name="layout_encoding")
            x = x + layout(latent).astype(self.dtype)
        for i, features in enumerate(self.channels):
            if i > 0:
                x = upsample2x(x)
            cond = embedding_map(latent, x.shape[1], self.tau_floor_pixels, self.min_keypoint_size, self.footprint, self.mask_gating)
            cond = cond.astype(self.dtype)
            block = SpadeResBlock(features, self.hidden, self.slope, self.bn_momentum, self.bn_epsilon, self.dtype,
                                  self.residual_init_scale, self.norm_groups, name=f"block_{x.shape[1]}")
            x = block(x, cond, train)
        x = conv(self.channels[-1], 3, slope=self.slope, dtype=self.dtype, name="head_0")(nn.leaky_relu(x, self.slope))
        x = conv(3, 3, slope=self.slope, dtype=self.dtype, init_scale=self.rgb_init_scale, name="head_rgb")(nn.leaky_relu(x, self.slope))
        return jnp.tanh(x.astype(jnp.float32))


class Generator(nn.Module):
    """The full LatentKeypointGAN generator; ``__call__`` = ``render(sample_latent(z))``."""

    num_keypoints: int
    embed_dim: int
    z_dim: int
    pose_depth: int
    appearance_depth: int
    tanh_divisor: float
    tau: float
    channels: Sequence[int]
    const_channels: int
    spade_hidden: int
    slope: float = 0.2
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    tau_floor_pixels: float = 0.0  # conditioning-map width floor, in pixel spacings of each layer (0: off)
    min_keypoint_size: int = 0  # layers smaller than this see only the background embedding (0: all see parts)
    part_size_range: float = 1.0  # > 1: each part learns its width within [1/r, r] × √τ's (1: fixed τ)
    learned_layout: bool = True  # False: no learned 4×4 constant (zeros); the layout comes from the keypoints
    residual_init_scale: float = 1.0  # × the initial kernel of each residual branch's last conv
    rgb_init_scale: float = 1.0  # × the initial kernel of the RGB conv
    norm_groups: int = 0  # SPADE normalisation: 0 BatchNorm (batch_stats), G > 0 GroupNorm of G groups (none)
    part_footprint: str = "gaussian"  # "learned": GANSeg-style cones widened by sub-points (docs/design.md §2)
    footprint_points: int = 4  # sub-points per part of the learned footprint (GANSeg: 4)
    part_mask_gating: bool = False  # True: parts write their embeddings through normalised masks
    keypoint_layout_encoding: int = 0  # F > 0: the renderer starts from a sin/cos encoding of the keypoints

    def setup(self) -> None:
        learned = self.part_footprint == "learned"
        self.mapping = KeypointMapping(
            self.num_keypoints,
            self.embed_dim,
            self.z_dim,
            self.pose_depth,
            self.appearance_depth,
            self.tanh_divisor,
            self.tau,
            self.slope,
            self.part_size_range,
            self.footprint_points if learned else 0,
        )
        self.renderer = SpadeRenderer(
            tuple(self.channels),
            self.const_channels,
            self.spade_hidden,
            self.slope,
            self.bn_momentum,
            self.bn_epsilon,
            self.dtype,
            self.tau_floor_pixels,
            self.min_keypoint_size,
            self.learned_layout,
            self.residual_init_scale,
            self.rgb_init_scale,
            self.norm_groups,
            "cone" if learned else "gaussian",
            self.part_mask_gating,
            self.keypoint_layout_encoding,
            self.num_keypoints,
        )

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.channels) - 1)

    def sample_latent(self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array) -> Latent:
        """(B, Z) × 3 → ``Latent`` with all K parts active and the configured τ."""
        return self.mapping(z_pose, z_app, z_bg)

    def render(self, latent: Latent, train: bool = False) -> jax.Array:
        """``Latent`` (any number of parts) → images (B, R, R, 3) in [-1, 1]."""
        return self.renderer(latent, train)

    def sample(
        self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array, train: bool = False, keypoint_offsets: jax.Array | None = None
    ) -> tuple[jax.Array, Latent]:
        """Noise → (images (B, R, R, 3), the ``Latent`` they were rendered from).

        ``keypoint_offsets`` (B, K, 2), when given, are added to the sampled keypoints before rendering
        (training's keypoint jitter); the returned latent holds the moved keypoints.
        """
        latent = self.sample_latent(z_pose, z_app, z_bg)
        if keypoint_offsets is not None:
            latent = latent.replace(keypoints=latent.keypoints + keypoint_offsets)
        return self.render(latent, train), latent

    def __call__(self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array, train: bool = False) -> jax.Array:
        return self.render(self.sample_latent(z_pose, z_app, z_bg), train)
