"""KeypointGAN skeleton renderer, soft-argmax, edge checks and the Φ/η/Ψ/D networks (shapes, parameter counts)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.conventions import coordinate_grid
from lkgan_jax.data.procedural import LEFT_RIGHT_PAIRS, SKELETON_EDGES
from lkgan_jax.keypointgan.networks import (
    ConditionalDecoder,
    MultiScaleDiscriminator,
    PatchDiscriminator,
    PoseRegressor,
    SkeletonEncoder,
    downsample,
)
from lkgan_jax.keypointgan.skeleton import (
    render_skeleton,
    soft_argmax,
    swap_left_right,
    validate_edges,
)

KEY = jax.random.PRNGKey(0)


def _count(variables) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(variables["params"]))


def test_render_values_across_a_horizontal_segment():
    grid = np.asarray(coordinate_grid(128))
    row = 64
    points = jnp.asarray([[[grid[30], grid[row]], [grid[100], grid[row]]]], jnp.float32)
    image = np.asarray(render_skeleton(points, ((0, 1),), 128))
    assert image.shape == (1, 128, 128, 1) and image.dtype == np.float32
    col = image[0, :, 64, 0]
    np.testing.assert_allclose(col[row], 0.9506, atol=1e-3)
    np.testing.assert_allclose([col[row - 1], col[row + 1]], [0.348, 0.348], atol=1e-3)
    np.testing.assert_allclose([col[row - 2], col[row + 2]], [-0.090, -0.090], atol=1e-3)
    np.testing.assert_allclose(image[0, 0, 0, 0], -1.0, atol=1e-6)
    np.testing.assert_allclose(image[0, 127, 127, 0], -1.0, atol=1e-6)
    assert image.max() <= 1.0 and image.min() >= -1.0


def test_render_max_of_edges_and_squared_form():
    points = jnp.asarray([[[-0.6, -0.5], [0.5, 0.4], [-0.3, 0.7], [0.4, -0.6]]], jnp.float32)
    both = render_skeleton(points, ((0, 1), (2, 3)), 48)
    first = render_skeleton(points, ((0, 1),), 48)
    second = render_skeleton(points, ((2, 3),), 48)
    np.testing.assert_allclose(both, jnp.maximum(first, second), atol=1e-6)
    grid = coordinate_grid(48)
    on_grid = jnp.asarray([[[grid[5], grid[10]], [grid[40], grid[10]]]])
    squared = render_skeleton(on_grid, ((0, 1),), 48, form="squared")
    np.testing.assert_allclose(squared.max(), 1.0, atol=1e-5)
    np.testing.assert_allclose(squared[0, 0, 0, 0], -1.0, atol=1e-5)
    # A degenerate edge (a == b) renders a finite dot.
    dot = render_skeleton(jnp.asarray([[[0.0, 0.0], [0.0, 0.0]]]), ((0, 1),), 17)
    assert np.isfinite(np.asarray(dot)).all()
    np.testing.assert_allclose(dot[0, 8, 8, 0], 0.9506, atol=1e-3)
    with pytest.raises(ValueError, match="form='dots'"):
        render_skeleton(points, ((0, 1),), 48, form="dots")


def test_render_gradient_wrt_points():
    points = jnp.asarray([[[-0.5, -0.3], [0.4, 0.2], [0.1, 0.6]]], jnp.float32)
    target = render_skeleton(points + 0.05, ((0, 1), (1, 2)), 32)
    grad = jax.jit(jax.grad(lambda p: jnp.mean((render_skeleton(p, ((0, 1), (1, 2)), 32) - target) ** 2)))(points)
    assert np.isfinite(np.asarray(grad)).all()
    assert np.all(np.abs(np.asarray(grad)).sum(-1) > 0)


def test_soft_argmax_marginals():
    logits = np.zeros((2, 16, 16, 3), np.float32)
    for k, c in enumerate((0, 7, 15)):
        logits[0, :, c, k] = 50.0  # a column, constant over rows
        logits[1, c, :, k] = 50.0  # a row, constant over columns
    points = np.asarray(soft_argmax(jnp.asarray(logits)))
    expected = np.array([-1 + 2 * c / 15 for c in (0, 7, 15)])
    np.testing.assert_allclose(points[0, :, 0], expected, atol=1e-5)
    np.testing.assert_allclose(points[0, :, 1], 0.0, atol=1e-5)
    np.testing.assert_allclose(points[1, :, 1], expected, atol=1e-5)
    np.testing.assert_allclose(points[1, :, 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(soft_argmax(jnp.full((1, 16, 16, 4), 3.0)), 0.0, atol=1e-6)
    # The softmax is taken over the row-averaged logits, not a 2-D softmax: a single +50 pixel is diluted to 50/16.
    single = np.zeros((1, 16, 16, 1), np.float32)
    single[0, 3, 12, 0] = 50.0
    weights = np.ones(16)
    grid = np.linspace(-1, 1, 16)

    def marginal(index):
        w = weights.copy()
        w[index] = np.exp(50.0 / 16)
        return (w * grid).sum() / w.sum()

    np.testing.assert_allclose(soft_argmax(jnp.asarray(single))[0, 0], [marginal(12), marginal(3)], atol=1e-5)


def test_validate_edges():
    assert validate_edges(tuple(SKELETON_EDGES), 10) == tuple(SKELETON_EDGES)
    assert validate_edges([[0, 1], np.array([1, 2])], 3) == ((0, 1), (1, 2))
    with pytest.raises(ValueError, match=r"face.edges: edge \(3, 10\).*0\.\.9 \(10 landmarks\)"):
        validate_edges([(0, 1), (3, 10)], 10, name="face.edges")
    with pytest.raises(ValueError, match=r"edge \(-1, 2\)"):
        validate_edges([(-1, 2)], 10)
    with pytest.raises(ValueError, match="not a pair"):
        validate_edges([(0, 1, 2)], 10)
    with pytest.raises(ValueError, match="not a pair"):
        validate_edges([3], 10)
    with pytest.raises(ValueError, match="not a pair of integer"):
        validate_edges([(0.0, 1)], 10)
    with pytest.raises(ValueError, match="model.edges: the edge list is empty"):
        validate_edges([], 10)


def test_swap_left_right():
    points = np.arange(10 * 2, dtype=np.float32).reshape(1, 10, 2)
    swapped = swap_left_right(points, tuple(LEFT_RIGHT_PAIRS))
    order = [1, 0, 2, 4, 3, 5, 6, 8, 7, 9]
    np.testing.assert_array_equal(swapped, points[:, order])
    np.testing.assert_array_equal(swap_left_right(jnp.asarray(swapped), tuple(LEFT_RIGHT_PAIRS)), points)
    assert validate_edges(tuple(LEFT_RIGHT_PAIRS), 10) == tuple(LEFT_RIGHT_PAIRS)


def test_shapes_and_parameter_counts_at_128():
    images = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
    skeleton = jax.ShapeDtypeStruct((2, 128, 128, 1), jnp.float32)

    phi = SkeletonEncoder()
    v = jax.eval_shape(lambda x: phi.init(KEY, x, False), images)
    assert _count(v) == 3_124_801
    assert jax.eval_shape(lambda v, x: phi.apply(v, x, False), v, images).shape == (2, 128, 128, 1)

    psi = ConditionalDecoder()
    v = jax.eval_shape(lambda y, x: psi.init(KEY, y, x, False), skeleton, images)
    assert _count(v) == 4_825_635
    assert _count({"params": v["params"]["pose_encoder"]}) == 1_239_456
    assert _count({"params": v["params"]["style_encoder"]}) == 1_242_592
    assert jax.eval_shape(lambda v, y, x: psi.apply(v, y, x, False), v, skeleton, images).shape == (2, 128, 128, 3)

    eta = PoseRegressor(num_points=32)
    v = jax.eval_shape(lambda y: eta.init(KEY, y), skeleton)
    assert _count(v) == 1_181_184
    assert jax.eval_shape(eta.apply, v, skeleton).shape == (2, 16, 16, 32)

    disc = MultiScaleDiscriminator()
    v = jax.eval_shape(lambda y: disc.init(KEY, y), skeleton)
    assert sorted(v["params"]) == ["scale_0", "scale_1", "scale_2"]
    assert _count(v) == 8_288_067
    assert all(_count({"params": v["params"][f"scale_{s}"]}) == 2_762_689 for s in range(3))
    maps = jax.eval_shape(disc.apply, v, skeleton)
    assert [m.shape for m in maps] == [(2, 14, 14, 1), (2, 6, 6, 1), (2, 2, 2, 1)]


def test_official_config_builds_the_official_networks():
    from lkgan_jax.config_loading import load_config
    from lkgan_jax.keypointgan.model import make_keypointgan

    config = load_config("configs/keypointgan_128.py", ["--config.model.num_points=32"])
    kg = make_keypointgan(config.model, config.data.resolution)
    images = jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32)
    skeleton = jax.ShapeDtypeStruct((1, 128, 128, 1), jnp.float32)
    assert _count(jax.eval_shape(lambda x: kg.encoder.init(KEY, x, False), images)) == 3_124_801
    assert _count(jax.eval_shape(lambda y, x: kg.decoder.init(KEY, y, x, False), skeleton, images)) == 4_825_635
    assert _count(jax.eval_shape(lambda y: kg.regressor.init(KEY, y), skeleton)) == 1_181_184
    assert _count(jax.eval_shape(lambda y: kg.discriminator.init(KEY, y), skeleton)) == 3 * 2_762_689


def test_downsample_is_block_mean_without_antialiasing():
    x = jax.random.normal(KEY, (2, 16, 16, 3))
    half = downsample(x, 2)
    np.testing.assert_allclose(half, x.reshape(2, 8, 2, 8, 2, 3).mean(axis=(2, 4)), atol=1e-5)
    quarter = downsample(x, 4)
    central = x.reshape(2, 4, 4, 4, 4, 3)[:, :, 1:3, :, 1:3].mean(axis=(2, 4))
    np.testing.assert_allclose(quarter, central, atol=1e-5)


def test_small_networks_run_train_and_eval():
    channels = (8, 16, 24)
    images = jax.random.uniform(KEY, (2, 32, 32, 3), minval=-1, maxval=1)
    skeleton = render_skeleton(jnp.asarray([[[-0.5, -0.5], [0.5, 0.5]]] * 2), ((0, 1),), 32)

    phi = SkeletonEncoder(channels)
    v = phi.init(KEY, images, False)
    scales = np.concatenate([np.ravel(p["norm"]["scale"]) for k, p in v["params"].items() if "norm" in p])
    assert abs(scales.mean() - 1.0) < 0.01 and 0.01 < scales.std() < 0.03
    y, updates = jax.jit(lambda v, x: phi.apply(v, x, True, mutable=["batch_stats"]))(v, images)
    assert y.shape == (2, 32, 32, 1) and np.isfinite(np.asarray(y)).all()
    assert not np.allclose(
        jax.tree_util.tree_leaves(updates["batch_stats"])[0], jax.tree_util.tree_leaves(v["batch_stats"])[0]
    )

    eta = PoseRegressor(num_points=5, channels=channels, dtype=jnp.bfloat16)
    ve = eta.init(KEY, skeleton)
    assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(ve))
    logits = jax.jit(eta.apply)(ve, skeleton)
    assert logits.shape == (2, 8, 8, 5) and logits.dtype == jnp.float32
    assert soft_argmax(logits).shape == (2, 5, 2)

    psi = ConditionalDecoder(channels)
    vp = psi.init(KEY, skeleton, images, False)
    out = jax.jit(lambda v, y, x: psi.apply(v, y, x, False))(vp, skeleton, images)
    assert out.shape == (2, 32, 32, 3) and out.dtype == jnp.float32

    patch = PatchDiscriminator(base_channels=8, num_layers=2)
    logits = patch.apply(patch.init(KEY, skeleton), skeleton)
    assert logits.shape == (2, 6, 6, 1)
