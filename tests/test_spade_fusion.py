"""The fused SPADE convolutions compute the unfused ones' function with the same parameters.

``Spade`` runs γ and β as one conv and ``SpadeResBlock`` runs the ``shared`` convs of all its SPADEs as
one; the reference below is the unfused form (three ``layers.conv``s per SPADE). Both must declare the
same parameter tree with bit-identical initial values (old checkpoints restore, runs reproduce) and
agree in outputs and gradients up to float32 rounding.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from lkgan_jax.models import generator as generator_module
from lkgan_jax.models import make_generator
from lkgan_jax.models.generator import Generator, Spade, SpadeResBlock
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.models.layers import conv

Dtype = Any


class ReferenceSpade(nn.Module):
    """The unfused SPADE: ``shared``, ``gamma`` and ``beta`` as three separate convs."""

    hidden: int
    slope: float
    bn_momentum: float
    bn_epsilon: float
    dtype: Dtype
    norm_groups: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        if self.norm_groups:
            norm = nn.GroupNorm(self.norm_groups, epsilon=self.bn_epsilon, use_bias=False, use_scale=False, dtype=self.dtype, name="norm")
        else:
            norm = nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                use_bias=False,
                use_scale=False,
                dtype=self.dtype,
                name="norm",
            )
        normalized = norm(x)
        h = nn.leaky_relu(conv(self.hidden, 3, slope=self.slope, dtype=self.dtype, name="shared")(cond), self.slope)
        gamma = conv(x.shape[-1], 3, slope=self.slope, dtype=self.dtype, name="gamma")(h)
        beta = conv(x.shape[-1], 3, slope=self.slope, dtype=self.dtype, name="beta")(h)
        return normalized * (1.0 + gamma) + beta


class ReferenceSpadeResBlock(nn.Module):
    """The unfused SPADE residual block: each SPADE runs its own ``shared`` conv."""

    features: int
    hidden: int
    slope: float
    bn_momentum: float
    bn_epsilon: float
    dtype: Dtype
    residual_init_scale: float = 1.0
    norm_groups: int = 0

    def _spade(self, name: str) -> ReferenceSpade:
        return ReferenceSpade(self.hidden, self.slope, self.bn_momentum, self.bn_epsilon, self.dtype, self.norm_groups, name=name)

    @nn.compact
    def __call__(self, x: jax.Array, cond: jax.Array, train: bool) -> jax.Array:
        features_in = x.shape[-1]
        middle = min(features_in, self.features)
        h = nn.leaky_relu(self._spade("spade_0")(x, cond, train), self.slope)
        h = conv(middle, 3, use_bias=False, slope=self.slope, dtype=self.dtype, name="conv_0")(h)
        h = nn.leaky_relu(self._spade("spade_1")(h, cond, train), self.slope)
        h = conv(self.features, 3, slope=self.slope, dtype=self.dtype, init_scale=self.residual_init_scale, name="conv_1")(h)
        if features_in == self.features:
            shortcut = x
        else:
            shortcut = self._spade("spade_shortcut")(x, cond, train)
            shortcut = conv(self.features, 3, slope=self.slope, dtype=self.dtype, name="conv_shortcut")(shortcut)
        return h + shortcut


# Tolerances. Fusing changes only how XLA tiles and orders the float32 sums of one conv (and, backwards,
# sums the cond gradient of two or three convs inside one conv instead of adding their results): the
# same terms, reassociated. Outputs are O(1) and agree to a few ulps, well inside 1e-6 absolute.
# Gradients pass through more ops (BatchNorm's backward subtracts means, convs sum 100s of products) and
# reach O(10–100) per leaf, while single entries can be small results of large cancelling terms; their
# rounding error scales with the terms, not with the entry. So each gradient leaf is compared relative
# to its own scale: max|new − old| ≤ 1e-5 · max|old| + 1e-6 (1e-5 ≈ 100 float32 ulps of the leaf's
# largest entry: far below any change of the math, which would show at O(1) relative).
OUT_ATOL = 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-5, 1e-6
GENERATOR_ATOL = 1e-5  # the whole generator's images (see its test)

BLOCK_CASES = [  # (features_in, features): width kept / width changed (with spade_shortcut)
    pytest.param(8, 8, id="same-width"),
    pytest.param(8, 4, id="width-change"),
]
NORM_CASES = [pytest.param(0, id="batchnorm"), pytest.param(4, id="groupnorm4")]


def _inputs(features_in: int):
    kx, kc = jax.random.split(jax.random.key(7))
    x = jax.random.normal(kx, (3, 8, 8, features_in)) * 2.0 + 0.5
    cond = jax.random.normal(kc, (3, 8, 8, 6))
    return x, cond


def _modules(features: int, norm_groups: int):
    kwargs = dict(features=features, hidden=5, slope=0.2, bn_momentum=0.9, bn_epsilon=1e-5, dtype=jnp.float32,
                  residual_init_scale=0.5, norm_groups=norm_groups)
    return SpadeResBlock(**kwargs), ReferenceSpadeResBlock(**kwargs)


def _assert_identical_trees(new, old):
    assert jax.tree.structure(new) == jax.tree.structure(old)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new), jax.tree.leaves(old)):
        assert a.dtype == b.dtype and a.shape == b.shape, jax.tree_util.keystr(path)
        assert np.array_equal(np.asarray(a), np.asarray(b)), jax.tree_util.keystr(path)


def _assert_close(new, old, rtol, atol):
    """Per leaf: max|new − old| ≤ rtol · max|old| + atol."""
    assert jax.tree.structure(new) == jax.tree.structure(old)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(new), jax.tree.leaves(old)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        error, scale = np.max(np.abs(a - b)), np.max(np.abs(b))
        assert error <= rtol * scale + atol, f"{jax.tree_util.keystr(path)}: max error {error:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("norm_groups", NORM_CASES)
@pytest.mark.parametrize("features_in,features", BLOCK_CASES)
def test_fused_block_has_identical_initial_variables(features_in, features, norm_groups):
    new, old = _modules(features, norm_groups)
    x, cond = _inputs(features_in)
    new_vars = new.init(jax.random.key(3), x, cond, train=True)
    old_vars = old.init(jax.random.key(3), x, cond, train=True)
    _assert_identical_trees(new_vars, old_vars)
    spades = {"spade_0", "spade_1"} | ({"spade_shortcut"} if features_in != features else set())
    assert spades <= set(new_vars["params"])
    for name in spades:
        assert set(new_vars["params"][name]) == {"shared", "gamma", "beta"}
        assert new_vars["params"][name]["shared"]["kernel"].shape == (3, 3, 6, 5)
        assert new_vars["params"][name]["gamma"]["bias"].dtype == jnp.float32


@pytest.mark.parametrize("norm_groups", NORM_CASES)
@pytest.mark.parametrize("features_in,features", BLOCK_CASES)
def test_fused_block_matches_unfused_outputs_and_gradients(features_in, features, norm_groups):
    new, old = _modules(features, norm_groups)
    x, cond = _inputs(features_in)
    variables = old.init(jax.random.key(3), x, cond, train=True)
    # Perturb the zero biases (and the initial values) so every parameter matters in the comparison.
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(11), len(leaves))
    params = jax.tree.unflatten(treedef, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    stats = {k: v for k, v in variables.items() if k != "params"}
    weights = jax.random.normal(jax.random.key(5), (3, 8, 8, features))

    def loss(module, params, x, cond):
        out, updates = module.apply({"params": params, **stats}, x, cond, train=True, mutable=["batch_stats"])
        return jnp.sum(out * weights), (out, updates)

    results = {}
    for tag, module in (("new", new), ("old", old)):
        grad_fn = jax.jit(jax.grad(lambda p, a, c, m=module: loss(m, p, a, c), argnums=(0, 1, 2), has_aux=True))
        results[tag] = grad_fn(params, x, cond)
    (new_grads, (new_out, new_updates)), (old_grads, (old_out, old_updates)) = results["new"], results["old"]
    assert float(jnp.max(jnp.abs(new_out - old_out))) <= OUT_ATOL
    _assert_close(new_updates, old_updates, 0.0, OUT_ATOL)
    _assert_close(new_grads, old_grads, GRAD_RTOL, GRAD_ATOL)
    # Rendering mode (running statistics with BatchNorm).
    eval_vars = {"params": params, **stats}
    np.testing.assert_allclose(np.asarray(new.apply(eval_vars, x, cond, train=False)),
                               np.asarray(old.apply(eval_vars, x, cond, train=False)), rtol=0, atol=OUT_ATOL)


@pytest.mark.parametrize("norm_groups", NORM_CASES)
def test_standalone_spade_matches_unfused(norm_groups):
    kwargs = dict(hidden=5, slope=0.2, bn_momentum=0.9, bn_epsilon=1e-5, dtype=jnp.float32, norm_groups=norm_groups)
    x, cond = _inputs(8)
    new_vars = Spade(**kwargs).init(jax.random.key(4), x, cond, train=True)
    old_vars = ReferenceSpade(**kwargs).init(jax.random.key(4), x, cond, train=True)
    _assert_identical_trees(new_vars, old_vars)
    new_out, _ = Spade(**kwargs).apply(new_vars, x, cond, train=True, mutable=["batch_stats"])
    old_out, _ = ReferenceSpade(**kwargs).apply(old_vars, x, cond, train=True, mutable=["batch_stats"])
    assert float(jnp.max(jnp.abs(new_out - old_out))) <= OUT_ATOL


@pytest.mark.parametrize("norm_groups", NORM_CASES)
def test_tiny_generator_matches_unfused_generator(monkeypatch, norm_groups):
    """The whole tiny generator: identical initial variables, and rendered images within 1e-5.

    Through four blocks and two head convs float32 rounding alone moves the images by ~1–3e-6: the
    unchanged unfused code, eager vs. jitted, differs by that much here (and the fused vs. unfused
    forms by as much), so 1e-5 is the tightest bound that is not a test of rounding luck; a wrong
    split of a fused conv moves them by O(0.1). Rendering is compared where the generator normalises
    its activations: training mode (batch statistics) and GroupNorm (the same in both modes). With
    BatchNorm's barely-updated running statistics of an untrained generator, rendering mode lets the
    activations grow to O(10³) before the RGB conv, and rounding alone then moves the images by
    O(10⁻⁵); the block tests above compare that mode at 1e-6.
    """
    config = tiny.get_config()
    config.model.g_norm_groups = norm_groups
    generator = make_generator(config.model)
    noise = sample_noise(jax.random.key(0), 4, config.model.z_dim)
    variables = generator.init(jax.random.key(1), *noise)
    latent = generator.apply(variables, *noise, method=Generator.sample_latent)
    modes = (True, False) if norm_groups else (True,)

    def renders():  # a new function each time: jax.jit caches traces per function, which would skip the patch
        def render(variables, latent, train):
            mutable = ["batch_stats"] if train and not norm_groups else False
            out = generator.apply(variables, latent, train=train, method=Generator.render, mutable=mutable)
            return out if mutable else (out, {})

        render = jax.jit(render, static_argnums=2)
        return {train: render(variables, latent, train) for train in modes}

    new = renders()
    monkeypatch.setattr(generator_module, "SpadeResBlock", ReferenceSpadeResBlock)  # the renderer's blocks, unfused
    _assert_identical_trees(variables, generator.init(jax.random.key(1), *noise))
    old = renders()
    for train in modes:
        (new_images, new_updates), (old_images, old_updates) = new[train], old[train]
        assert float(jnp.max(jnp.abs(new_images - old_images))) <= GENERATOR_ATOL, f"train={train}"
        _assert_close(new_updates, old_updates, GRAD_RTOL, GRAD_ATOL)
