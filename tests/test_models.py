"""Unit tests of every model layer against hand-computed values."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import tiny
from lkgan_jax.models import Latent, make_discriminator, make_generator
from lkgan_jax.models.generator import Generator, Spade
from lkgan_jax.models.heatmaps import background_heatmap, embedding_map, floored_tau, keypoint_heatmaps
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.models.layers import MLP, conv, kaiming_leaky, upsample2x


def _random_latent(key, batch=3, parts=4, dim=5, tau=0.05):
    k1, k2, k3 = jax.random.split(key, 3)
    keypoints = jax.random.uniform(k1, (batch, parts, 2), minval=-0.8, maxval=0.8)
    return Latent.create(keypoints, jax.random.normal(k2, (batch, parts, dim)), jax.random.normal(k3, (batch, dim)), tau)


def test_heatmaps_match_closed_form_with_xy_convention():
    size = 7
    keypoints = np.array([[[0.5, -0.25], [-1.0, 1.0]]], np.float32)  # (x=col, y=row)
    tau = np.array([[0.1, 0.3]], np.float32)
    heat = np.asarray(keypoint_heatmaps(jnp.asarray(keypoints), jnp.asarray(tau), jnp.ones((1, 2), bool), size))
    grid = np.linspace(-1, 1, size)
    expected = np.zeros((size, size, 2))
    for row, col, k in itertools.product(range(size), range(size), range(2)):
        d2 = (grid[col] - keypoints[0, k, 0]) ** 2 + (grid[row] - keypoints[0, k, 1]) ** 2
        expected[row, col, k] = np.exp(-d2 / tau[0, k])
    np.testing.assert_allclose(heat[0], expected, rtol=1e-5, atol=1e-7)
    assert heat[0, size - 1, 0, 1] == pytest.approx(1.0)  # keypoint (x=-1, y=1) peaks at row S-1, column 0


def test_background_map_is_one_minus_max():
    heat = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 5, 5, 3)).astype(np.float32))
    np.testing.assert_allclose(background_heatmap(heat)[..., 0], 1.0 - heat.max(-1), atol=1e-7)
    assert np.all(np.asarray(background_heatmap(jnp.zeros((1, 4, 4, 0)))) == 1.0)


def test_embedding_map_closed_form():
    latent = _random_latent(jax.random.key(0))
    size = 9
    heat = np.asarray(keypoint_heatmaps(latent.keypoints, latent.tau, latent.mask, size))
    expected = np.einsum("byxk,bkd->byxd", heat, np.asarray(latent.part_embeddings))
    expected += (1 - heat.max(-1))[..., None] * np.asarray(latent.background_embedding)[:, None, None]
    np.testing.assert_allclose(np.asarray(embedding_map(latent, size)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [4, 8, 16, 32])
def test_width_floor_spans_the_layer_pitch_at_each_layer(size):
    spacing = 2.0 / (size - 1)
    centre = jnp.asarray([[[-1.0 + spacing * (size // 2), 0.0]]])  # on a pixel centre (column size // 2)
    centre = centre.at[..., 1].set(centre[..., 0])
    latent = Latent.create(centre, jnp.ones((1, 1, 1)), jnp.zeros((1, 1)), 0.01)
    for floor in (1.0, 2.0):
        floored = float(floored_tau(latent.tau, size, floor)[0, 0])
        assert floored == pytest.approx(max(0.01, (floor * spacing) ** 2), rel=1e-6)
        heat = np.asarray(embedding_map(latent, size, tau_floor_pixels=floor))[0, :, :, 0]
        row = size // 2
        # The neighbour one pitch away keeps at least exp(−1/floor²) of the peak: never a lost keypoint.
        assert heat[row, row] == pytest.approx(1.0, abs=1e-6)
        assert heat[row, row + 1] >= np.exp(-1.0 / floor**2) - 1e-6
        assert heat[row, row + 1] == pytest.approx(np.exp(-(spacing**2) / floored), rel=1e-5)
    np.testing.assert_array_equal(np.asarray(floored_tau(latent.tau, size, 0.0)), np.asarray(latent.tau))  # off


def test_layers_below_the_keypoint_size_see_only_the_background():
    latent = _random_latent(jax.random.key(3))
    coarse = np.asarray(embedding_map(latent, 4, min_keypoint_size=8))
    np.testing.assert_array_equal(coarse, np.broadcast_to(np.asarray(latent.background_embedding)[:, None, None], coarse.shape))
    np.testing.assert_array_equal(np.asarray(embedding_map(latent, 8, min_keypoint_size=8)), np.asarray(embedding_map(latent, 8)))


def test_generator_options_change_only_the_conditioning(tiny_generator):
    config, generator, variables, noise = tiny_generator
    options = generator.clone(tau_floor_pixels=1.0, min_keypoint_size=8)
    assert jax.tree.map(np.shape, options.init(jax.random.key(1), *noise)) == jax.tree.map(np.shape, variables)
    changed = options.apply(variables, *noise)
    assert changed.shape == generator.apply(variables, *noise).shape and not np.allclose(changed, generator.apply(variables, *noise))


def test_learned_part_size_starts_at_tau_and_stays_positive_and_bounded(tiny_generator):
    config, generator, _, noise = tiny_generator
    learned = generator.clone(part_size_range=4.0)
    variables = learned.init(jax.random.key(1), *noise)
    log_size = variables["params"]["mapping"]["part_log_size"]
    assert log_size.shape == (config.model.num_keypoints,)

    def tau_of(params):
        return learned.apply({**variables, "params": params}, *noise, method=Generator.sample_latent).tau

    np.testing.assert_allclose(np.asarray(tau_of(variables["params"])), config.model.tau, rtol=1e-6)  # s = 0: τ
    # The rendered image depends on the sizes: they receive gradient.
    grad = jax.grad(lambda p: jnp.sum(learned.apply({**variables, "params": p}, *noise)))(variables["params"])
    assert np.any(np.asarray(grad["mapping"]["part_log_size"]) != 0)
    # Driven hard towards zero width (and towards infinity), τ stays positive, finite and inside [τ/r², τ·r²].
    for direction in (1.0, -1.0):
        @jax.jit
        def descend(params):
            grad = jax.grad(lambda p: direction * jnp.sum(tau_of(p)))(params)
            return jax.tree.map(lambda p, g: p - 10.0 * jnp.sign(g) * (g != 0), params, grad)

        params = variables["params"]
        for _ in range(50):
            params = descend(params)
        tau = np.asarray(tau_of(params))
        assert np.all(np.isfinite(tau)) and np.all(tau > 0)
        assert np.all(tau >= config.model.tau / 16 * (1 - 1e-5)) and np.all(tau <= config.model.tau * 16 * (1 + 1e-5))
        assert np.allclose(tau, config.model.tau / 16 if direction > 0 else config.model.tau * 16, rtol=1e-3)
    # Off (r = 1): no parameter, τ fixed.
    assert "part_log_size" not in generator.init(jax.random.key(1), *noise)["params"]["mapping"]


def test_start_without_learned_layout_has_no_constant_and_eval_matches_train_statistics(tiny_generator):
    config, generator, _, noise = tiny_generator
    learned = generator.clone(learned_layout=True).init(jax.random.key(1), *noise)
    assert learned["params"]["renderer"]["const"].shape == (1, 4, 4, config.model.g_const_channels)
    free = generator.clone(learned_layout=False)
    free_variables = free.init(jax.random.key(1), *noise)
    assert "const" not in free_variables["params"]["renderer"]
    # The zero start has zero batch mean, so BatchNorm maps it to exactly 0 in both modes (its running mean
    # stays 0): the first block is a function of the conditioning map alone.
    trained, updates = free.apply(free_variables, *noise, train=True, mutable=["batch_stats"])
    stats = updates["batch_stats"]["renderer"]["block_4"]["spade_0"]["norm"]
    assert np.all(np.asarray(stats["mean"]) == 0)
    image = free.apply({**free_variables, **updates}, *noise)
    assert image.shape == trained.shape and np.all(np.isfinite(np.asarray(image)))


def test_masking_a_keypoint_removes_exactly_its_contribution():
    latent = _random_latent(jax.random.key(1))
    k, size = 2, 16
    masked = latent.replace(mask=latent.mask.at[:, k].set(False))
    keep = [j for j in range(latent.num_parts) if j != k]
    without = Latent(
        latent.keypoints[:, keep], latent.part_embeddings[:, keep], latent.background_embedding, latent.mask[:, keep], latent.tau[:, keep]
    )
    np.testing.assert_allclose(np.asarray(embedding_map(masked, size)), np.asarray(embedding_map(without, size)), atol=1e-6)
    heat = np.asarray(keypoint_heatmaps(masked.keypoints, masked.tau, masked.mask, size))
    assert np.all(heat[..., k] == 0.0)
    np.testing.assert_array_equal(heat[..., keep], np.asarray(keypoint_heatmaps(latent.keypoints, latent.tau, latent.mask, size))[..., keep])


def test_upsample_matches_half_pixel_bilinear():
    x = jnp.arange(4.0).reshape(1, 2, 2, 1)
    out = np.asarray(upsample2x(x))[0, :, :, 0]
    # PyTorch interpolate(scale_factor=2, mode="bilinear", align_corners=False) of [[0,1],[2,3]]
    expected = np.array(
        [[0.0, 0.25, 0.75, 1.0], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5], [2.0, 2.25, 2.75, 3.0]]
    )
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_kaiming_leaky_std():
    w = kaiming_leaky(0.2)(jax.random.key(0), (3, 3, 64, 256))
    fan_in = 3 * 3 * 64
    assert float(jnp.std(w)) == pytest.approx(np.sqrt(2 / (1.04 * fan_in)), rel=0.02)
    assert float(jnp.max(jnp.abs(w))) > 3.5 * np.sqrt(2 / (1.04 * fan_in))  # untruncated tails


def test_initial_scales_multiply_the_kaiming_std_and_zero_gives_zeros():
    w = kaiming_leaky(0.2, 0.1)(jax.random.key(0), (3, 3, 64, 256))
    assert float(jnp.std(w)) == pytest.approx(0.1 * np.sqrt(2 / (1.04 * 3 * 3 * 64)), rel=0.02)
    np.testing.assert_array_equal(np.asarray(kaiming_leaky(0.2, 0.0)(jax.random.key(0), (4, 4))), 0.0)
    config = tiny.get_config()
    config.model.keypoint_recovery_weight, config.model.keypoint_head_init_scale = 1.0, 0.0
    config.model.g_rgb_init_scale, config.model.g_residual_init_scale = 0.0, 0.5
    x = jnp.zeros((1, config.data.resolution, config.data.resolution, 3))
    head = make_discriminator(config.model).init(jax.random.key(0), x)["params"]["keypoint_head"]["kernel"]
    np.testing.assert_array_equal(np.asarray(head), 0.0)
    generator = make_generator(config.model)
    params = generator.init(jax.random.key(0), *sample_noise(jax.random.key(1), 1, config.model.z_dim))["params"]["renderer"]
    np.testing.assert_array_equal(np.asarray(params["head_rgb"]["kernel"]), 0.0)
    full = make_generator(tiny.get_config().model).init(jax.random.key(0), *sample_noise(jax.random.key(1), 1, config.model.z_dim))
    ratio = jnp.std(params["block_8"]["conv_1"]["kernel"]) / jnp.std(full["params"]["renderer"]["block_8"]["conv_1"]["kernel"])
    assert float(ratio) == pytest.approx(0.5, rel=1e-5)  # same key, same draw, half the scale


def test_lazy_regularisation_correction_scales_d_adam_only():
    from lkgan_jax.train.state import make_models

    config = tiny.get_config()
    config.train.reg_every, config.train.lr_d, config.train.beta1, config.train.beta2 = 4, 1e-3, 0.5, 0.9
    config.train.lazy_reg_correction = True
    models = make_models(config)
    params = {"w": jnp.ones(3)}
    grads = {"w": jnp.array([1.0, -2.0, 0.5])}
    c = 4 / 5

    def two_updates(tx):  # the second update depends on the betas, the first only on the learning rate
        state = tx.init(params)
        first, state = tx.update(grads, state, params)
        second, _ = tx.update({"w": jnp.array([0.3, 1.0, -1.0])}, state, params)
        return np.asarray(first["w"]), np.asarray(second["w"])

    expected = two_updates(optax.adam(1e-3 * c, b1=0.5**c, b2=0.9**c, eps=config.train.adam_eps))
    for got, want in zip(two_updates(models.d_tx), expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    uncorrected = two_updates(optax.adam(1e-3 * c, b1=0.5, b2=0.9, eps=config.train.adam_eps))
    assert not np.allclose(uncorrected[1], expected[1], rtol=1e-4)
    for got, want in zip(two_updates(models.g_tx), two_updates(optax.adam(config.train.lr_g, b1=0.5, b2=0.9, eps=config.train.adam_eps))):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_conv_padding_matches_pytorch_stride_two():
    layer = conv(1, 3, stride=2, slope=0.2, dtype=jnp.float32)
    x = jnp.zeros((1, 8, 8, 1)).at[0, 0, 0, 0].set(1.0)
    params = layer.init(jax.random.key(0), x)
    kernel = params["params"]["kernel"][:, :, 0, 0]
    out = layer.apply(params, x)[0, :, :, 0]
    assert out.shape == (4, 4)
    # PyTorch padding=1: output (0, 0) sees input (0, 0) through kernel tap (1, 1).
    assert float(out[0, 0]) == pytest.approx(float(kernel[1, 1]), abs=1e-6)


def test_mlp_layers_are_distinct():
    mlp = MLP(width=8, depth=3, out_features=2, slope=0.2)
    params = mlp.init(jax.random.key(0), jnp.ones((1, 8)))["params"]
    assert sorted(params) == ["hidden_0", "hidden_1", "hidden_2", "out"]
    kernels = [params[f"hidden_{i}"]["kernel"] for i in range(3)]
    assert not any(np.allclose(a, b) for a, b in itertools.combinations(kernels, 2))


def test_spade_is_affine_in_normalised_input():
    spade = Spade(hidden=4, slope=0.2, bn_momentum=0.9, bn_epsilon=1e-5, dtype=jnp.float32)
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 3)) * 3 + 2
    cond = jax.random.normal(jax.random.key(1), (4, 6, 6, 5))
    variables = spade.init(jax.random.key(2), x, cond, train=True)
    out, _ = spade.apply(variables, x, cond, train=True, mutable=["batch_stats"])
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    x_hat = (x - mean) / jnp.sqrt(var + 1e-5)
    params = variables["params"]
    h = jax.nn.leaky_relu(conv(4, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["shared"]}, cond), 0.2)
    gamma = conv(3, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["gamma"]}, h)
    beta = conv(3, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["beta"]}, h)
    np.testing.assert_allclose(np.asarray(out), np.asarray(x_hat * (1 + gamma) + beta), rtol=1e-4, atol=1e-4)
    assert "norm" not in params  # parameter-free BatchNorm


@pytest.fixture(scope="module")
def tiny_generator():
    config = tiny.get_config()
    generator = make_generator(config.model)
    noise = sample_noise(jax.random.key(0), 4, config.model.z_dim)
    variables = generator.init(jax.random.key(1), *noise)
    # Advance the running statistics once so eval mode is not the identity normalisation.
    _, updates = generator.apply(variables, *noise, train=True, mutable=["batch_stats"])
    return config, generator, {**variables, **updates}, noise


def test_no_two_generator_layers_share_weights(tiny_generator):
    _, _, variables, _ = tiny_generator
    kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"]) if "kernel" in jax.tree_util.keystr(path)]
    assert len(kernels) > 20
    for a, b in itertools.combinations(kernels, 2):
        if a.shape == b.shape:
            assert not np.allclose(a, b), "two layers share (identical) weights"


def test_generator_shapes_and_range(tiny_generator):
    config, generator, variables, noise = tiny_generator
    latent = generator.apply(variables, *noise, method=Generator.sample_latent)
    k, d = config.model.num_keypoints, config.model.embed_dim
    assert latent.keypoints.shape == (4, k, 2) and latent.part_embeddings.shape == (4, k, d)
    assert latent.background_embedding.shape == (4, d) and latent.mask.dtype == jnp.bool_
    assert float(jnp.max(jnp.abs(latent.keypoints))) < 0.9  # the divisor keeps tanh out of saturation
    images = generator.apply(variables, latent, method=Generator.render)
    r = config.data.resolution
    assert images.shape == (4, r, r, 3) and images.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(images))) <= 1.0


def test_eval_mode_samples_are_independent(tiny_generator):
    _, generator, variables, noise = tiny_generator
    latent = generator.apply(variables, *noise, method=Generator.sample_latent)
    edited = latent.replace(keypoints=latent.keypoints.at[0].set(-latent.keypoints[0]))
    before = generator.apply(variables, latent, train=False, method=Generator.render)
    after = generator.apply(variables, edited, train=False, method=Generator.render)
    assert not np.allclose(before[0], after[0])
    np.testing.assert_array_equal(np.asarray(before[1:]), np.asarray(after[1:]))
    # In train mode BatchNorm couples the batch: the same edit changes the other samples.
    coupled = [generator.apply(variables, lat, train=True, method=Generator.render, mutable=["batch_stats"])[0] for lat in (latent, edited)]
    assert not np.allclose(coupled[0][1:], coupled[1][1:])


def test_render_accepts_more_parts_than_trained(tiny_generator):
    config, generator, variables, noise = tiny_generator
    latent = generator.apply(variables, *noise, method=Generator.sample_latent)
    extra = Latent.create(
        jnp.concatenate([latent.keypoints, latent.keypoints[:, :2] * 0.5], 1),
        jnp.concatenate([latent.part_embeddings, latent.part_embeddings[:, :2]], 1),
        latent.background_embedding,
        config.model.tau,
    )
    images = generator.apply(variables, extra, method=Generator.render)
    assert images.shape[0] == 4 and np.all(np.isfinite(images))


def test_discriminator_shapes_and_blocks():
    config = tiny.get_config()
    disc = make_discriminator(config.model)
    r = config.data.resolution
    params = disc.init(jax.random.key(0), jnp.zeros((2, r, r, 3)))["params"]
    logits = disc.apply({"params": params}, jax.random.uniform(jax.random.key(1), (2, r, r, 3)))
    assert logits.shape == (2,) and logits.dtype == jnp.float32
    assert len([n for n in params if n.startswith("block_")]) == len(config.model.d_channels)
    final_side = r // 2 ** len(config.model.d_channels)
    assert params["dense"]["kernel"].shape[0] == final_side**2 * config.model.d_channels[-1]


def test_discriminator_samples_are_independent():
    config = tiny.get_config()
    disc = make_discriminator(config.model)
    r = config.data.resolution
    x = jax.random.uniform(jax.random.key(1), (3, r, r, 3))
    params = disc.init(jax.random.key(0), x)
    a = disc.apply(params, x)
    b = disc.apply(params, x.at[0].set(0.0))
    np.testing.assert_array_equal(np.asarray(a[1:]), np.asarray(b[1:]))


def test_sample_renders_and_returns_the_offset_keypoints(tiny_generator):
    _, generator, variables, _ = tiny_generator
    noise = sample_noise(jax.random.key(5), 2, generator.z_dim)
    offsets = jnp.full((2, generator.num_keypoints, 2), 0.25)
    images, latent = generator.apply(variables, *noise, keypoint_offsets=offsets, method=Generator.sample)
    plain = generator.apply(variables, *noise, method=Generator.sample_latent)
    np.testing.assert_allclose(latent.keypoints, plain.keypoints + 0.25, atol=1e-6)
    np.testing.assert_allclose(images, generator.apply(variables, latent, method=Generator.render), atol=1e-6)
    unmoved, _ = generator.apply(variables, *noise, method=Generator.sample)
    np.testing.assert_allclose(unmoved, generator.apply(variables, *noise), atol=1e-6)


def test_discriminator_keypoint_head_only_when_recovery_is_on():
    config = tiny.get_config()
    r, k = config.data.resolution, config.model.num_keypoints
    x = jax.random.uniform(jax.random.key(1), (3, r, r, 3))
    config.model.keypoint_recovery_weight = 0.0
    plain = make_discriminator(config.model)
    plain_params = plain.init(jax.random.key(0), x)
    assert "keypoint_head" not in plain_params["params"]
    with pytest.raises(ValueError, match="keypoint_recovery_weight"):
        plain.apply(plain_params, x, return_keypoints=True)
    config.model.keypoint_recovery_weight = 1.0
    headed = make_discriminator(config.model)
    params = headed.init(jax.random.key(0), x)
    assert params["params"]["keypoint_head"]["kernel"].shape == (config.model.d_dense, 2 * k)
    logits, keypoints = headed.apply(params, x, return_keypoints=True)
    assert keypoints.shape == (3, k, 2) and keypoints.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(headed.apply(params, x)))
    config.model.keypoint_recovery_weight = -1.0
    with pytest.raises(ValueError, match="keypoint_recovery_weight"):
        make_discriminator(config.model)


def test_bfloat16_compute_keeps_float32_params_and_output():
    config = tiny.get_config()
    generator = make_generator(config.model, dtype="bfloat16")
    noise = sample_noise(jax.random.key(0), 2, config.model.z_dim)
    variables = generator.init(jax.random.key(1), *noise)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables["params"]))
    images = generator.apply(variables, *noise)
    assert images.dtype == jnp.float32 and np.all(np.isfinite(images))
    with pytest.raises(ValueError, match="model.dtype"):
        make_generator(config.model, dtype="float16")


def test_standing_statistics_of_one_batch_make_eval_mode_equal_train_mode(tiny_generator):
    """Eval mode with one batch's standing statistics normalises exactly as train mode does on that batch."""
    from lkgan_jax.models.sampling import standing_statistics

    _, generator, variables, _ = tiny_generator
    key = jax.random.key(7)
    stats = standing_statistics(generator, variables["params"], variables["batch_stats"], key, 1, 6)
    noise = sample_noise(jax.random.fold_in(key, 0), 6, generator.z_dim)  # the noise of batch 0
    trained, _ = generator.apply(variables, *noise, train=True, mutable=["batch_stats"])
    evaluated = generator.apply({"params": variables["params"], "batch_stats": stats}, *noise)
    np.testing.assert_allclose(np.asarray(evaluated), np.asarray(trained), atol=2e-5)
    running = generator.apply(variables, *noise)  # the initial running statistics give another image
    assert np.abs(np.asarray(running) - np.asarray(trained)).max() > 1e-2


def test_standing_statistics_average_the_batches(tiny_generator):
    """Two batches' statistics are the mean of each batch's own (means and biased variances)."""
    from lkgan_jax.models.sampling import standing_statistics

    _, generator, variables, _ = tiny_generator
    key = jax.random.key(3)
    both = standing_statistics(generator, variables["params"], variables["batch_stats"], key, 2, 4)
    per_batch = []  # batch i is the noise of fold_in(key, i); its statistics, read back from one running update
    m = generator.bn_momentum
    for index in range(2):
        noise = sample_noise(jax.random.fold_in(key, index), 4, generator.z_dim)
        _, updates = generator.apply(variables, *noise, train=True, mutable=["batch_stats"])
        per_batch.append(jax.tree.map(lambda new, old: (new - m * old) / (1 - m), updates["batch_stats"], variables["batch_stats"]))
    expected = jax.tree.map(lambda a, b: (a + b) / 2, *per_batch)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-4), both, expected)
    assert jax.tree.structure(both) == jax.tree.structure(variables["batch_stats"])


def test_group_norm_spade_normalises_each_sample_over_its_groups():
    """With norm_groups = G, SPADE normalises each sample over (H, W, C/G) and keeps no statistics."""
    spade = Spade(hidden=4, slope=0.2, bn_momentum=0.9, bn_epsilon=1e-5, dtype=jnp.float32, norm_groups=2)
    x = jax.random.normal(jax.random.key(0), (3, 5, 5, 4)) * 3 + 2
    cond = jax.random.normal(jax.random.key(1), (3, 5, 5, 6))
    variables = spade.init(jax.random.key(2), x, cond, train=True)
    assert set(variables) == {"params"} and "norm" not in variables["params"]
    grouped = x.reshape(3, 5, 5, 2, 2)
    mean, var = grouped.mean((1, 2, 4), keepdims=True), grouped.var((1, 2, 4), keepdims=True)
    x_hat = ((grouped - mean) / jnp.sqrt(var + 1e-5)).reshape(x.shape)
    params = variables["params"]
    h = jax.nn.leaky_relu(conv(4, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["shared"]}, cond), 0.2)
    gamma = conv(4, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["gamma"]}, h)
    beta = conv(4, 3, slope=0.2, dtype=jnp.float32).apply({"params": params["beta"]}, h)
    for train in (True, False):  # no batch coupling, no running statistics: both modes are the same function
        out = spade.apply(variables, x, cond, train=train)
        np.testing.assert_allclose(np.asarray(out), np.asarray(x_hat * (1 + gamma) + beta), rtol=1e-4, atol=1e-4)


def test_group_norm_generator_has_no_statistics_and_rejects_bad_groups():
    from lkgan_jax.models.generator import statistics
    from lkgan_jax.models.sampling import standing_statistics

    config = tiny.get_config()
    config.model.g_norm_groups = 4
    generator = make_generator(config.model)
    noise = sample_noise(jax.random.key(0), 2, config.model.z_dim)
    variables = generator.init(jax.random.key(1), *noise)
    assert statistics(variables) == {} and standing_statistics(generator, variables["params"], {}, jax.random.key(2), 2, 2) == {}
    train_images, updates = generator.apply(variables, *noise, train=True, mutable=["batch_stats"])
    assert statistics(updates) == {}
    np.testing.assert_allclose(np.asarray(train_images), np.asarray(generator.apply(variables, *noise)), atol=1e-6)
    config.model.g_norm_groups = 3  # does not divide the width 16
    with pytest.raises(ValueError, match="model.g_norm_groups must be 0"):
        make_generator(config.model)
