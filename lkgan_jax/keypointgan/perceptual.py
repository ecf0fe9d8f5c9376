"""The perceptual loss Γ: a frozen multi-scale feature bank, each layer's L2 normalised by its own EMA.

Kinds (``perceptual.kind``), in order of fidelity:

``vgg19``
    The VGG-19 convolutions conv1_1 … conv5_2 (3×3, pad 1, with bias; 2×2 max-pools between stages)
    with ImageNet weights from a local file. Input mapping ``z = (img + 1)/2·255 − (123.68, 116.779,
    103.939)`` (RGB). Compared features: ``z`` itself, conv1_2, conv2_2, conv3_2, conv4_2, conv5_2.
    No ReLU by default (as in the official KeypointGAN release); ``relu=True`` puts one after every
    conv, and the features are then the post-ReLU maps.
``random_vgg19``
    The same trunk, frozen, with a fixed-seed random init (fan-in normal, gain 2 with ReLU and 1
    without, so every layer keeps the input's scale).
``pyramid``
    No learned weights: the raw [-1, 1] pixels and a Gaussian pyramid (separable [1, 3, 3, 1]/8 blur,
    stride 2, edge padding), ``min(6, ⌊log2 S⌋ + 1)`` levels in all so the smallest is ≥ 1 px
    (at 32 px: 32, 16, 8, 4, 2, 1; at 64 px: 64 … 2).
``auto``
    ``vgg19`` when a weight file is given, else ``random_vgg19``.

VGG-19 weight file: a NumPy ``.npz`` with, for each ``name`` in conv1_1, conv1_2, conv2_1, conv2_2,
conv3_1 … conv3_4, conv4_1 … conv4_4, conv5_1, conv5_2, the arrays ``<name>/kernel`` (3, 3, Cin, Cout)
HWIO float32 and ``<name>/bias`` (Cout,) float32 (MatConvNet's ``imagenet-vgg-verydeep-19`` layout is
already HWIO; torch OIHW kernels need a transpose to (2, 3, 1, 0)). Other keys are ignored. Its SHA-256
must be given in ``perceptual.vgg_sha256`` (the full hash or a prefix of ≥ 12 hex digits).

The EMA normalisation (``init_ema``, ``normalized_loss``) is a pure function of an ``EmaState``:
``r_l ← ℓ_l`` at the first call, then ``r_l ← decay·r_l + (1 − decay)·ℓ_l`` before use, and the loss is
``mean_l ℓ_l / (r_l + 1e-8)``; it is 1 at the first call.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.utils.files import file_sha256

VGG19_LAYERS = (
    ("conv1_1", "conv1_2"),
    ("conv2_1", "conv2_2"),
    ("conv3_1", "conv3_2", "conv3_3", "conv3_4"),
    ("conv4_1", "conv4_2", "conv4_3", "conv4_4"),
    ("conv5_1", "conv5_2"),
)
VGG19_NAMES = tuple(name for stage in VGG19_LAYERS for name in stage)
VGG19_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512)
FEATURE_LAYERS = ("input", "conv1_2", "conv2_2", "conv3_2", "conv4_2", "conv5_2")
RGB_MEAN = (123.68, 116.779, 103.939)
KINDS = ("auto", "vgg19", "random_vgg19", "pyramid")
PYRAMID_LEVELS = 6
EMA_EPSILON = 1e-8
_MIN_HASH_DIGITS = 12


def vgg19_channels(width_divisor: int = 1) -> tuple[int, ...]:
    """The 14 conv widths conv1_1 … conv5_2, each divided by ``width_divisor`` (at least 1)."""
    return tuple(max(1, c // width_divisor) for c in VGG19_CHANNELS)


class Vgg19Trunk(nn.Module):
    """VGG-19 conv1_1 … conv5_2: (B, H, W, 3) images in [-1, 1] → the six features of ``FEATURE_LAYERS``,
    at H, H, H/2, H/4, H/8, H/16 with 3, c[1], c[3], c[5], c[9], c[13] channels."""

    channels: Sequence[int] = VGG19_CHANNELS
    relu: bool = False

    @nn.compact
    def __call__(self, images: jax.Array) -> list[jax.Array]:
        if len(self.channels) != len(VGG19_NAMES):
            raise ValueError(f"Vgg19Trunk needs {len(VGG19_NAMES)} channel counts, got {len(self.channels)}")
        z = (images.astype(jnp.float32) + 1.0) * 127.5 - jnp.asarray(RGB_MEAN, jnp.float32)
        features, x = [z], z
        init = nn.initializers.variance_scaling(2.0 if self.relu else 1.0, "fan_in", "normal")
        width = iter(self.channels)
        for index, stage in enumerate(VGG19_LAYERS):
            if index:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
            for name in stage:
                x = nn.Conv(next(width), (3, 3), padding=((1, 1), (1, 1)), kernel_init=init, name=name)(x)
                if self.relu:
                    x = nn.relu(x)
                if name in FEATURE_LAYERS:
                    features.append(x)
        return features


def _conv_shapes(channels: Sequence[int]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    inputs = (3, *channels[:-1])
    return {name: ((3, 3, cin, cout), (cout,)) for name, cin, cout in zip(VGG19_NAMES, inputs, channels)}


def random_vgg19_params(channels: Sequence[int] = VGG19_CHANNELS, relu: bool = False, seed: int = 0) -> dict:
    """Fixed-seed random trunk parameters (NumPy, so identical on every platform); zero biases."""
    rng = np.random.default_rng(seed)
    gain = 2.0 if relu else 1.0
    params = {}
    for name, (kernel_shape, bias_shape) in _conv_shapes(channels).items():
        std = np.sqrt(gain / (9 * kernel_shape[2]))
        kernel = (rng.standard_normal(kernel_shape, dtype=np.float32) * std).astype(np.float32)
        params[name] = {"kernel": kernel, "bias": np.zeros(bias_shape, np.float32)}
    return params


def load_vgg19(path: str | os.PathLike, sha256: str, channels: Sequence[int] = VGG19_CHANNELS) -> tuple[dict, str]:
    """Verified VGG-19 conv parameters from a ``.npz`` (module docstring) → (params, the file's SHA-256).

    One-line errors: ``FileNotFoundError`` for a missing file; ``ValueError`` for an unset, malformed or
    mismatching ``sha256`` (the message shows the file's actual hash) and for missing keys or wrong shapes.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no VGG-19 weights at {path} (perceptual.vgg_weights)")
    actual = file_sha256(path)
    expected = str(sha256 or "").strip().lower()
    if not expected:
        raise ValueError(
            f"the expected SHA-256 of {path} must be set in perceptual.vgg_sha256; "
            f"this file's SHA-256 is {actual}"
        )
    if len(expected) < _MIN_HASH_DIGITS or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(
            f"perceptual.vgg_sha256 must be at least {_MIN_HASH_DIGITS} hex digits, got {expected!r}"
        )
    if not actual.startswith(expected):
        raise ValueError(f"SHA-256 mismatch for {path}: expected {expected}, got {actual}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz weight file ({type(error).__name__}: {error})") from None
    params = {}
    for name, shapes in _conv_shapes(channels).items():
        params[name] = {}
        for leaf, shape in zip(("kernel", "bias"), shapes):
            key = f"{name}/{leaf}"
            if key not in arrays:
                raise ValueError(f"{path} lacks {key} (perceptual.vgg_weights)")
            array = arrays[key]
            if array.shape != shape or not np.issubdtype(array.dtype, np.floating):
                raise ValueError(f"{path}: {key} is {array.dtype}{list(array.shape)}, expected float{list(shape)}")
            params[name][leaf] = array.astype(np.float32)
    return params, actual


def _pyramid_levels(resolution: int) -> int:
    return min(PYRAMID_LEVELS, int(resolution).bit_length())  # ⌊log2 S⌋ + 1 for S ≥ 1


def _downsample(images: jax.Array) -> jax.Array:
    """(B, H, W, C) → (B, ⌊H/2⌋, ⌊W/2⌋, C): separable [1, 3, 3, 1]/8 blur at stride 2, edge padding."""
    batch, height, width, channels = images.shape
    taps = jnp.asarray([1.0, 3.0, 3.0, 1.0], jnp.float32) / 8.0
    kernel = (taps[:, None] * taps[None, :])[:, :, None, None]  # HWIO, one channel
    x = jnp.transpose(images, (0, 3, 1, 2)).reshape(batch * channels, height, width, 1)
    x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    x = jax.lax.conv_general_dilated(x, kernel, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(x.reshape(batch, channels, *x.shape[1:3]), (0, 2, 3, 1))


def pyramid_features(images: jax.Array, levels: int) -> list[jax.Array]:
    """(B, S, S, C) images → ``levels`` maps: the raw pixels, then each halving of a Gaussian pyramid."""
    if images.shape[1] < 2 ** (levels - 1) or images.shape[2] < 2 ** (levels - 1):
        raise ValueError(f"a {levels}-level pyramid needs images of at least {2 ** (levels - 1)} px, "
                         f"got {images.shape[1]}×{images.shape[2]} (perceptual.kind)")
    features = [images.astype(jnp.float32)]
    for _ in range(levels - 1):
        features.append(_downsample(features[-1]))
    return features


@dataclasses.dataclass(frozen=True, eq=False)
class Perceptual:
    """A frozen feature bank Γ. ``features(images (B, S, S, 3) in [-1, 1])`` → ``num_layers`` float32 maps.

    ``params`` (None for ``pyramid``) are closed over by default; pass them explicitly as an argument of
    a jitted step to keep large weights out of the compiled program as constants. Gradients never reach
    them (``stop_gradient``); they flow to the images only.
    """

    name: str
    num_layers: int
    weights_sha256: str
    params: Any
    apply: Callable[[Any, jax.Array], list[jax.Array]]

    def features(self, images: jax.Array, params: Any = None) -> list[jax.Array]:
        params = jax.lax.stop_gradient(self.params if params is None else params)
        return [f.astype(jnp.float32) for f in self.apply(params, images)]


def make_perceptual(
    kind: str = "auto",
    *,
    vgg_weights: str = "",
    vgg_sha256: str = "",
    relu: bool = False,
    width_divisor: int = 1,
    seed: int = 0,
    resolution: int = 128,
) -> Perceptual:
    """The perceptual feature bank of ``kind`` (module docstring); ``resolution`` sizes the pyramid only."""
    if kind not in KINDS:
        raise ValueError(f"unknown perceptual.kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "vgg19" if vgg_weights else "random_vgg19"
    if kind == "pyramid":
        levels = _pyramid_levels(resolution)
        return Perceptual("pyramid", levels, "", None, lambda params, images: pyramid_features(images, levels))
    channels = vgg19_channels(width_divisor)
    if kind == "vgg19":
        if not vgg_weights:
            raise ValueError("perceptual.kind 'vgg19' needs perceptual.vgg_weights")
        params, sha = load_vgg19(vgg_weights, vgg_sha256, channels)
    else:
        params, sha = random_vgg19_params(channels, relu, seed), ""
    trunk = Vgg19Trunk(channels=channels, relu=relu)
    params = jax.tree.map(jnp.asarray, params)
    return Perceptual(kind, len(FEATURE_LAYERS), sha, params, lambda p, images: trunk.apply({"params": p}, images))


@flax.struct.dataclass
class EmaState:
    """Per-layer running loss scale: ``running`` (L,) float32; ``started`` () bool."""

    running: jax.Array
    started: jax.Array


def init_ema(num_layers: int) -> EmaState:
    """A fresh EMA state: the next ``normalized_loss`` call sets ``running`` to its raw losses."""
    return EmaState(running=jnp.zeros((num_layers,), jnp.float32), started=jnp.zeros((), bool))


def normalized_loss(
    perceptual: Perceptual,
    reconstruction: jax.Array,
    target: jax.Array,
    ema: EmaState,
    decay: float = 0.99,
    params: Any = None,
) -> tuple[jax.Array, EmaState, jax.Array]:
    """EMA-normalised perceptual loss of (B, S, S, 3) images → (scalar loss, new EmaState, raw losses (L,)).

    ``raw_l = mean((Γ_l(reconstruction) − Γ_l(target))²)``; the EMA is updated with ``raw`` (no
    gradient) before use; ``loss = mean_l raw_l / (running_l + 1e-8)``. No gradient reaches ``target``.
    """
    predicted = perceptual.features(reconstruction, params)
    wanted = jax.lax.stop_gradient(perceptual.features(target, params))
    raw = jnp.stack([jnp.mean(jnp.square(a - b)) for a, b in zip(predicted, wanted)])
    observed = jax.lax.stop_gradient(raw)
    running = jnp.where(ema.started, decay * ema.running + (1.0 - decay) * observed, observed)
    loss = jnp.mean(raw / (running + EMA_EPSILON))
    return loss, EmaState(running=running, started=jnp.ones((), bool)), raw
