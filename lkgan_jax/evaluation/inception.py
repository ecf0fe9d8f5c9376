"""The FID Inception-v3 (TF 2015-12-05 graph as ported by pytorch-fid) in Flax linen, NHWC, inference only.

``FidInceptionV3()(x)`` maps float32 images ``x`` (B, 299, 299, 3), already resized and scaled to the
network's range (``lkgan_jax.evaluation.preprocess``), to pool3 features (B, 2048); with
``return_taps=True`` it returns ``{"64": (B, 64), "192": (B, 192), "768": (B, 768), "2048": (B, 2048)}``,
the spatial means after the two stem max-pools, after Mixed_6e and of Mixed_7c (pytorch-fid's taps).

The quirks of that graph (docs/design.md §7.1) are reproduced exactly:
  * every conv is bias-free, followed by BatchNorm with ε = 1e-3 using stored statistics (there is no
    train mode) and ReLU;
  * the 3×3/1/pad-1 average pools of the A blocks, C blocks and Mixed_7b divide by the number of valid
    (non-padding) pixels;
  * Mixed_7c's pool branch is a 3×3/1/pad-1 *max* pool;
  * stride-2 convs and the reduction max-pools are VALID, stride-1 convs use explicit symmetric padding;
  * block outputs are concatenated as [1×1, 5×5 | 7×7 | 3×3, double, pool] and the split 1×3/3×1
    branches of the E blocks as (a, b).

Parameter names follow torchvision's ``Inception3`` (``Mixed_6b/branch7x7_2/conv/kernel``,
``.../bn/{scale,bias,mean,var}``) so the weight conversion is a renaming plus OIHW → HWIO.
Convolutions run at ``lax.Precision.HIGHEST`` by default (no TF32 on GPUs), as FID comparisons need.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_EPSILON = 1e-3
INPUT_SIZE = 299
FEATURE_DIM = 2048
TAP_DIMS = (64, 192, 768, 2048)

Padding = tuple[tuple[int, int], tuple[int, int]]
NO_PAD: Padding = ((0, 0), (0, 0))
PrecisionLike = Any


def _pad(rows: int, cols: int) -> Padding:
    return ((rows, rows), (cols, cols))


class FrozenBatchNorm(nn.Module):
    """Inference BatchNorm with stored statistics: ``(x − mean) · scale / √(var + 1e-3) + bias``."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = (x.shape[-1],)
        scale = self.param("scale", nn.initializers.ones, channels, jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, channels, jnp.float32)
        mean = self.param("mean", nn.initializers.zeros, channels, jnp.float32)
        var = self.param("var", nn.initializers.ones, channels, jnp.float32)
        return (x - mean) * (scale * lax.rsqrt(var + BN_EPSILON)) + bias


class BasicConv(nn.Module):
    """Bias-free conv → FrozenBatchNorm → ReLU (torchvision's ``BasicConv2d``)."""

    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Padding = NO_PAD
    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.Conv(
            self.features,
            self.kernel,
            strides=self.strides,
            padding=self.padding,
            use_bias=False,
            precision=self.precision,
            name="conv",
        )(x)
        return nn.relu(FrozenBatchNorm(name="bn")(x))


def avg_pool_3x3_valid_count(x: jax.Array) -> jax.Array:
    """3×3/1/pad-1 average pool dividing by the number of non-padding pixels (TF 'SAME' average)."""
    window, strides, padding = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    sums = lax.reduce_window(x, 0.0, lax.add, window, strides, padding)
    ones = jnp.ones((1, x.shape[1], x.shape[2], 1), x.dtype)
    counts = lax.reduce_window(ones, 0.0, lax.add, window, strides, padding)
    return sums / counts


def max_pool(x: jax.Array, stride: int, pad: int) -> jax.Array:
    """3×3 max pool with the given stride and symmetric padding (padding never wins: −inf)."""
    return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=_pad(pad, pad))


class InceptionA(nn.Module):
    """Mixed_5b/5c/5d: [1×1 64, 5×5 64, double 3×3 96, avg-pool → 1×1 ``pool_features``]."""

    pool_features: int
    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        branch1x1 = conv(64, (1, 1), name="branch1x1")(x)
        branch5x5 = conv(48, (1, 1), name="branch5x5_1")(x)
        branch5x5 = conv(64, (5, 5), padding=_pad(2, 2), name="branch5x5_2")(branch5x5)
        double = conv(64, (1, 1), name="branch3x3dbl_1")(x)
        double = conv(96, (3, 3), padding=_pad(1, 1), name="branch3x3dbl_2")(double)
        double = conv(96, (3, 3), padding=_pad(1, 1), name="branch3x3dbl_3")(double)
        pool = conv(self.pool_features, (1, 1), name="branch_pool")(avg_pool_3x3_valid_count(x))
        return jnp.concatenate([branch1x1, branch5x5, double, pool], axis=-1)


class InceptionB(nn.Module):
    """Mixed_6a (reduction): [3×3/2 384, double 3×3 (last /2) 96, max-pool 3/2]."""

    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        branch3x3 = conv(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
        double = conv(64, (1, 1), name="branch3x3dbl_1")(x)
        double = conv(96, (3, 3), padding=_pad(1, 1), name="branch3x3dbl_2")(double)
        double = conv(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(double)
        return jnp.concatenate([branch3x3, double, max_pool(x, 2, 0)], axis=-1)


class InceptionC(nn.Module):
    """Mixed_6b–6e: [1×1 192, 1×7·7×1 192, double 7×1·1×7 192, avg-pool → 1×1 192]."""

    channels_7x7: int
    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        c7 = self.channels_7x7
        branch1x1 = conv(192, (1, 1), name="branch1x1")(x)
        branch7x7 = conv(c7, (1, 1), name="branch7x7_1")(x)
        branch7x7 = conv(c7, (1, 7), padding=_pad(0, 3), name="branch7x7_2")(branch7x7)
        branch7x7 = conv(192, (7, 1), padding=_pad(3, 0), name="branch7x7_3")(branch7x7)
        double = conv(c7, (1, 1), name="branch7x7dbl_1")(x)
        double = conv(c7, (7, 1), padding=_pad(3, 0), name="branch7x7dbl_2")(double)
        double = conv(c7, (1, 7), padding=_pad(0, 3), name="branch7x7dbl_3")(double)
        double = conv(c7, (7, 1), padding=_pad(3, 0), name="branch7x7dbl_4")(double)
        double = conv(192, (1, 7), padding=_pad(0, 3), name="branch7x7dbl_5")(double)
        pool = conv(192, (1, 1), name="branch_pool")(avg_pool_3x3_valid_count(x))
        return jnp.concatenate([branch1x1, branch7x7, double, pool], axis=-1)


class InceptionD(nn.Module):
    """Mixed_7a (reduction): [1×1·3×3/2 320, 1×1·1×7·7×1·3×3/2 192, max-pool 3/2]."""

    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        branch3x3 = conv(192, (1, 1), name="branch3x3_1")(x)
        branch3x3 = conv(320, (3, 3), strides=(2, 2), name="branch3x3_2")(branch3x3)
        branch7x7x3 = conv(192, (1, 1), name="branch7x7x3_1")(x)
        branch7x7x3 = conv(192, (1, 7), padding=_pad(0, 3), name="branch7x7x3_2")(branch7x7x3)
        branch7x7x3 = conv(192, (7, 1), padding=_pad(3, 0), name="branch7x7x3_3")(branch7x7x3)
        branch7x7x3 = conv(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(branch7x7x3)
        return jnp.concatenate([branch3x3, branch7x7x3, max_pool(x, 2, 0)], axis=-1)


class InceptionE(nn.Module):
    """Mixed_7b/7c: [1×1 320, 1×1·(1×3, 3×1) 768, 1×1·3×3·(1×3, 3×1) 768, pool → 1×1 192].

    The pool is the valid-count 3×3 average (``max_pool_branch=False``, Mixed_7b) or a 3×3/1/pad-1 max
    pool (``max_pool_branch=True``, Mixed_7c: a quirk of the TF graph).
    """

    max_pool_branch: bool
    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = functools.partial(BasicConv, precision=self.precision)
        branch1x1 = conv(320, (1, 1), name="branch1x1")(x)
        branch3x3 = conv(384, (1, 1), name="branch3x3_1")(x)
        branch3x3 = jnp.concatenate(
            [
                conv(384, (1, 3), padding=_pad(0, 1), name="branch3x3_2a")(branch3x3),
                conv(384, (3, 1), padding=_pad(1, 0), name="branch3x3_2b")(branch3x3),
            ],
            axis=-1,
        )
        double = conv(448, (1, 1), name="branch3x3dbl_1")(x)
        double = conv(384, (3, 3), padding=_pad(1, 1), name="branch3x3dbl_2")(double)
        double = jnp.concatenate(
            [
                conv(384, (1, 3), padding=_pad(0, 1), name="branch3x3dbl_3a")(double),
                conv(384, (3, 1), padding=_pad(1, 0), name="branch3x3dbl_3b")(double),
            ],
            axis=-1,
        )
        pooled = max_pool(x, 1, 1) if self.max_pool_branch else avg_pool_3x3_valid_count(x)
        pool = conv(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([branch1x1, branch3x3, double, pool], axis=-1)


class FidInceptionV3(nn.Module):
    """pytorch-fid's FID Inception-v3 body; see the module docstring for inputs and outputs."""

    return_taps: bool = False
    precision: PrecisionLike = lax.Precision.HIGHEST

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array | dict[str, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"FidInceptionV3 expects float images (B, 299, 299, 3) NHWC, got shape {x.shape}")
        conv = functools.partial(BasicConv, precision=self.precision)
        block = dict(precision=self.precision)
        x = conv(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
        x = conv(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = conv(64, (3, 3), padding=_pad(1, 1), name="Conv2d_2b_3x3")(x)
        x = max_pool(x, 2, 0)
        tap64 = x
        x = conv(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = conv(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = max_pool(x, 2, 0)
        tap192 = x
        x = InceptionA(32, **block, name="Mixed_5b")(x)
        x = InceptionA(64, **block, name="Mixed_5c")(x)
        x = InceptionA(64, **block, name="Mixed_5d")(x)
        x = InceptionB(**block, name="Mixed_6a")(x)
        x = InceptionC(128, **block, name="Mixed_6b")(x)
        x = InceptionC(160, **block, name="Mixed_6c")(x)
        x = InceptionC(160, **block, name="Mixed_6d")(x)
        x = InceptionC(192, **block, name="Mixed_6e")(x)
        tap768 = x
        x = InceptionD(**block, name="Mixed_7a")(x)
        x = InceptionE(max_pool_branch=False, **block, name="Mixed_7b")(x)
        x = InceptionE(max_pool_branch=True, **block, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        if not self.return_taps:
            return pool3
        taps = (tap64, tap192, tap768)
        return {**{str(t.shape[-1]): jnp.mean(t, axis=(1, 2)) for t in taps}, "2048": pool3}


@functools.lru_cache(maxsize=1)
def _declared_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    abstract = jax.eval_shape(
        FidInceptionV3().init, jax.random.key(0), jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    )
    flat = jax.tree_util.tree_flatten_with_path(abstract["params"])[0]
    return tuple((_path_name(path), tuple(leaf.shape)) for path, leaf in flat)


def _path_name(path: tuple[Any, ...]) -> str:
    return "/".join(str(getattr(entry, "key", entry)) for entry in path)


def declared_param_shapes() -> dict[str, tuple[int, ...]]:
    """``{"Mixed_5b/branch1x1/conv/kernel": (1, 1, 192, 64), ...}`` for every parameter of the network."""
    return dict(_declared_shapes())


def flatten_params(params: Any) -> dict[str, np.ndarray]:
    """A nested parameter dict → ``{"a/b/c": array}``."""
    return {_path_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def unflatten_params(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a/b/c": array}`` → the nested parameter dict."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def param_problems(params: Any) -> list[str]:
    """Human-readable mismatches between ``params`` and the declared tree (missing/unexpected/shape)."""
    declared = declared_param_shapes()
    loaded = {name: tuple(np.shape(value)) for name, value in flatten_params(params).items()}
    problems = [f"parameter {name} is missing (declared shape {shape})" for name, shape in declared.items()
                if name not in loaded]
    problems += [f"unexpected parameter {name} with shape {shape}" for name, shape in loaded.items()
                 if name not in declared]
    problems += [f"parameter {name} has shape {loaded[name]} but the network declares {shape}"
                 for name, shape in declared.items() if name in loaded and loaded[name] != shape]
    return problems


def check_params(params: Any) -> None:
    """Raises ValueError (one line, naming the first offending key and both shapes) unless ``params`` fits."""
    problems = param_problems(params)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"FID Inception parameters do not fit the network: {problems[0]}{more}")


def random_params(seed: int = 0) -> dict[str, Any]:
    """Random float32 parameters with realistic scales, for tests and benchmarks (never for real FIDs).

    He-scaled conv kernels; BatchNorm γ ∈ [0.8, 1.2], β ~ N(0, 0.1), mean ~ N(0, 0.1), var ∈ [0.5, 2].
    """
    rng = np.random.default_rng(seed)
    flat = {}
    for name, shape in declared_param_shapes().items():
        kind = name.rsplit("/", 1)[-1]
        if kind == "kernel":
            fan_in = shape[0] * shape[1] * shape[2]
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        elif kind == "scale":
            value = rng.uniform(0.8, 1.2, shape)
        elif kind in ("bias", "mean"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            value = rng.uniform(0.5, 2.0, shape)
        flat[name] = value.astype(np.float32)
    return unflatten_params(flat)
