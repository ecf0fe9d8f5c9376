"""The locality levers (docs/design.md §2–§3): learned footprints, mask gating, the keypoint layout
encoding and the equivariance term; all off by default, the default generator unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from lkgan_jax.conventions import coordinate_grid
from lkgan_jax.editing import ops
from lkgan_jax.models import Latent, make_generator
from lkgan_jax.models.generator import KeypointLayout
from lkgan_jax.models.heatmaps import (cone_heatmaps, cone_radius, embedding_map, floored_tau, keypoint_encoding,
                                       keypoint_heatmaps, normalised_masks)
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.train import equivariance
from lkgan_jax.workdir import _changed_fields

NEW_MODEL_FIELDS = ("part_footprint", "footprint_points", "part_mask_gating", "keypoint_layout_encoding")


def _init(config, batch=2, seed=0):
    generator = make_generator(config.model)
    noise = sample_noise(jax.random.key(seed + 1), batch, config.model.z_dim)
    return generator, generator.init(jax.random.key(seed), *noise), noise


def _paths(tree):
    return {jax.tree_util.keystr(path): leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _pixel_keypoints(pixels, size):
    """Integer pixel (column, row) positions (..., 2) → normalised keypoints on those pixel centres
    (``coordinate_grid``'s values, off the grid by whole pixels)."""
    pixels = np.asarray(pixels)
    spacing = 2.0 / (size - 1)
    inside = np.clip(pixels, 0, size - 1)
    return coordinate_grid(size, jnp)[inside] + jnp.asarray((pixels - inside) * spacing, jnp.float32)


def test_default_generator_has_no_new_parameters_and_old_configs_build_the_same_model():
    config = tiny.get_config()
    generator, variables, noise = _init(config)
    paths = _paths(variables)
    assert not any("layout_encoding" in path for path in paths)
    k = config.model.num_keypoints
    assert paths["['params']['mapping']['pose_mlp']['out']['kernel']"] == (config.model.z_dim, 2 * k)
    old = tiny.get_config()  # a config.json from before the levers existed
    with old.unlocked():
        for name in NEW_MODEL_FIELDS:
            del old.model[name]
    old_generator, old_variables, _ = _init(old)
    assert old_generator == generator and _paths(old_variables) == paths
    images = generator.apply(variables, *noise)
    np.testing.assert_array_equal(np.asarray(old_generator.apply(old_variables, *noise)), np.asarray(images))
    # Resuming such a run with the new config is no model change; turning a lever on is one.
    saved, new = {"model": old.model.to_dict()}, {"model": config.model.to_dict()}
    assert _changed_fields(saved, new, "model") == []
    new["model"]["part_mask_gating"] = True
    assert _changed_fields(saved, new, "model") == ["model.part_mask_gating"]


def test_bad_lever_settings_are_one_line_errors():
    for field, value, match in (("part_footprint", "box", "part_footprint"), ("footprint_points", 0, "footprint_points"),
                                ("keypoint_layout_encoding", -1, "keypoint_layout_encoding")):
        config = tiny.get_config()
        config.model[field] = value
        with pytest.raises(ValueError, match=match):
            make_generator(config.model)


def test_learned_footprint_is_nonnegative_peaks_at_one_and_moves_with_its_keypoint():
    """Normalised as max 1: the cone is in [0, 1], exactly 1 at its keypoint, 0 beyond its radius."""
    config = tiny.get_config()
    config.model.part_footprint = "learned"
    generator, variables, noise = _init(config, batch=6)
    k = config.model.num_keypoints
    assert variables["params"]["mapping"]["pose_mlp"]["out"]["kernel"].shape[-1] == 2 * k * config.model.footprint_points
    size = 32
    for seed in range(3):  # random parameters, well beyond the initial scale
        leaves, treedef = jax.tree.flatten(variables["params"])
        keys = jax.random.split(jax.random.key(10 + seed), len(leaves))
        params = treedef.unflatten([3.0 * jax.random.normal(key, leaf.shape) for key, leaf in zip(keys, leaves)])
        latent = generator.apply({"params": params}, *noise, method=generator.sample_latent)
        tau = np.asarray(latent.tau)
        assert np.all(np.isfinite(tau)) and np.all(tau >= config.model.tau * (1 - 1e-6))  # radius ≥ the fixed τ's
        # Snap the keypoints to pixel centres: the footprint peaks at exactly 1 there.
        pixels = np.asarray(jax.random.randint(jax.random.key(seed), (6, k, 2), 8, 24))
        keypoints = _pixel_keypoints(pixels, size)
        heat = np.asarray(cone_heatmaps(keypoints, latent.tau, latent.mask, size))
        assert heat.min() >= 0.0 and heat.max() <= 1.0
        b, part = np.meshgrid(np.arange(6), np.arange(k), indexing="ij")
        np.testing.assert_array_equal(heat[b, pixels[..., 1], pixels[..., 0], part], 1.0)
        grid = np.linspace(-1, 1, size)
        distance = np.hypot(grid[None, None, None, :] - np.asarray(keypoints)[..., 0, None, None],
                            grid[None, None, :, None] - np.asarray(keypoints)[..., 1, None, None])  # (B, K, rows, cols)
        outside = distance > np.asarray(cone_radius(latent.tau))[..., None, None]
        assert np.all(np.transpose(heat, (0, 3, 1, 2))[outside] == 0.0)
        # Moving a keypoint by whole pixels moves its footprint by exactly those pixels.
        moved = np.asarray(cone_heatmaps(_pixel_keypoints(pixels + np.array([3, -2]), size), latent.tau, latent.mask, size))
        np.testing.assert_allclose(moved[:, 6:30, 11:], heat[:, 8:, 8:29], atol=1e-5)
    # The generator renders with it: finite images, and the latent's τ carries the learned widths.
    images = generator.apply(variables, *noise)
    assert images.shape == (6, 32, 32, 3) and np.all(np.isfinite(np.asarray(images)))


def test_mask_gating_writes_a_convex_combination_of_the_embeddings():
    key = jax.random.key(4)
    keypoints = jax.random.uniform(key, (2, 3, 2), minval=-0.5, maxval=0.5)
    same = jnp.ones((2, 3, 5))
    latent = Latent.create(keypoints, same, jnp.ones((2, 5)), 0.05)
    for footprint in ("gaussian", "cone"):
        # Equal embeddings: a convex combination is that embedding everywhere (without gating, overlaps add up).
        np.testing.assert_allclose(np.asarray(embedding_map(latent, 16, footprint=footprint, mask_gating=True)), 1.0, atol=1e-6)
        assert np.asarray(embedding_map(latent, 16, footprint=footprint)).max() > 1.01
    heat = keypoint_heatmaps(keypoints, latent.tau, latent.mask, 16)
    parts, background = normalised_masks(heat, 1.0 - heat.max(-1, keepdims=True))
    np.testing.assert_allclose(np.asarray(parts.sum(-1) + background[..., 0]), 1.0, atol=1e-6)
    single = keypoint_heatmaps(keypoints[:, :1], latent.tau[:, :1], latent.mask[:, :1], 16)
    alone, _ = normalised_masks(single, 1.0 - single)
    np.testing.assert_allclose(np.asarray(alone), np.asarray(single), atol=1e-7)  # one part: mask = footprint


def test_keypoint_encoding_moves_with_a_translation_of_all_keypoints():
    size, frequencies = 16, 3
    pixels = np.asarray(jax.random.randint(jax.random.key(5), (2, 4, 2), 0, size))
    mask = jnp.ones((2, 4), bool).at[1, 2].set(False)
    encoding = np.asarray(keypoint_encoding(_pixel_keypoints(pixels, size), mask, size, frequencies))
    assert encoding.shape == (2, size, size, 4 * 4 * frequencies)
    np.testing.assert_array_equal(encoding.reshape(2, size, size, 4, -1)[1, :, :, 2], 0.0)  # a masked part adds nothing
    shifted = np.asarray(keypoint_encoding(_pixel_keypoints(pixels + np.array([2, -3]), size), mask, size, frequencies))
    np.testing.assert_allclose(shifted[:, : size - 3, 2:], encoding[:, 3:, : size - 2], atol=2e-5)  # rows −3, columns +2

    # The renderer's start (4×4, projected to g_const_channels) moves by the same whole pixels.
    config = tiny.get_config()
    config.model.keypoint_layout_encoding = 2
    generator, variables, noise = _init(config)
    layout_params = variables["params"]["renderer"]["layout_encoding"]
    assert layout_params["projection"]["kernel"].shape == (1, 1, config.model.num_keypoints * 4 * 2, config.model.g_const_channels)
    latent = generator.apply(variables, *noise, method=generator.sample_latent)
    layout = KeypointLayout(config.model.g_const_channels, 2, config.model.num_keypoints, config.model.leaky_slope, jnp.float32)

    def start(latent):
        return np.asarray(layout.apply({"params": layout_params}, latent))

    pixels = np.asarray(jax.random.randint(jax.random.key(6), (2, config.model.num_keypoints, 2), 0, 4))
    base = start(latent.replace(keypoints=_pixel_keypoints(pixels, 4)))
    moved = start(latent.replace(keypoints=_pixel_keypoints(pixels + np.array([1, 0]), 4)))
    np.testing.assert_allclose(moved[:, :, 1:], base[:, :, :3], atol=1e-4)
    assert np.abs(base[:, :, 1:] - base[:, :, :3]).max() > 1e-3  # not trivially constant
    # A part appended after training leaves the start unchanged; the images still render.
    grown = ops.add_part(latent, like=0, at=jnp.asarray([0.3, -0.2]))
    np.testing.assert_array_equal(start(grown), start(latent))
    assert np.all(np.isfinite(np.asarray(generator.apply(variables, grown, method=generator.render))))


def _pasting_toy(num_parts, size, static_keypoints=None):
    """A "generator" that pastes a fixed smooth pattern per part at its keypoint (or, with
    ``static_keypoints``, at those fixed positions whatever the latent says)."""
    key = jax.random.key(7)
    colours = jax.random.normal(key, (num_parts, 3))
    frequency = jax.random.uniform(jax.random.fold_in(key, 1), (num_parts, 2), minval=5.0, maxval=12.0)
    grid = jnp.linspace(-1.0, 1.0, size)

    def render(latent):
        keypoints = latent.keypoints
        if static_keypoints is not None:  # the originals' positions, for originals and moved copies alike
            keypoints = jnp.tile(static_keypoints, (keypoints.shape[0] // static_keypoints.shape[0], 1, 1))
        dx = grid[None, None, None, :] - keypoints[..., 0, None, None]  # (B, K, rows, cols)
        dy = grid[None, None, :, None] - keypoints[..., 1, None, None]
        pattern = jnp.exp(-(dx**2 + dy**2) / 0.02) * jnp.sin(frequency[:, 0, None, None] * dx + frequency[:, 1, None, None] * dy + 0.3)
        return jnp.einsum("bkyx,kc->byxc", pattern, colours) + 0.1

    return render


def test_equivariance_loss_is_zero_for_a_pasted_patch_and_positive_for_a_static_one():
    size, parts = 32, 2
    pixels = np.array([[[9, 10], [22, 21]], [[20, 8], [10, 23]]])  # well apart
    keypoints = _pixel_keypoints(pixels, size)
    latent = Latent.create(keypoints, jnp.zeros((2, parts, 1)), jnp.zeros((2, 1)), 0.01)
    moved_parts = jnp.asarray([0, 1])
    shift = equivariance.shift_in_units(2.0, size)
    shifts = jnp.asarray([[shift, 0.0], [0.0, -shift]])
    window, outside = equivariance.equivariance_loss(_pasting_toy(parts, size), latent, moved_parts, shifts, side=7, outside_radius=8.0)
    assert float(window) < 1e-5 and float(outside) < 1e-5
    static = _pasting_toy(parts, size, keypoints)
    window, outside = equivariance.equivariance_loss(static, latent, moved_parts, shifts, side=7, outside_radius=8.0)
    assert float(window) > 0.02 and float(outside) < 1e-6  # the patch stayed: the window differs, nothing else changed


def test_windows_are_bilinear_crops_and_the_original_is_a_fixed_target():
    images = jax.random.normal(jax.random.key(8), (2, 12, 12, 3))
    centres = _pixel_keypoints(np.array([[5, 6], [3, 9]]), 12)
    windows = np.asarray(equivariance.sample_windows(images, centres, 5))
    np.testing.assert_allclose(windows[0], np.asarray(images)[0, 4:9, 3:8], atol=1e-5)  # rows 6 ± 2, columns 5 ± 2
    np.testing.assert_allclose(windows[1], np.asarray(images)[1, 7:12, 1:6], atol=1e-5)
    half = equivariance.sample_windows(images, centres + 0.5 * 2 / 11, 1)[0, 0, 0]  # midway between four pixels
    np.testing.assert_allclose(np.asarray(half), np.asarray(images)[0, 6:8, 5:7].mean((0, 1)), atol=1e-5)
    grad = jax.grad(lambda a: equivariance.window_losses(a, images + 1, centres, centres, 3, 2.0)[0])(images)
    np.testing.assert_array_equal(np.asarray(grad), 0.0)
    parts, shifts = equivariance.random_moves(jax.random.key(9), 64, 4, 0.2)
    assert set(np.asarray(parts).tolist()) == {0, 1, 2, 3}
    np.testing.assert_allclose(np.abs(np.asarray(shifts)).sum(-1), 0.2, rtol=1e-6)  # one axis, length δ


def test_a_step_with_every_lever_on_logs_the_equivariance_terms():
    from lkgan_jax.train.loop import build_trainer

    config = tiny.get_config()
    config.train.equivariance_weight = -1.0
    with pytest.raises(ValueError, match="train.equivariance_weight"):
        build_trainer(config, devices=jax.devices()[:1])
    config.model.part_footprint = "learned"
    config.model.part_mask_gating = True
    config.model.keypoint_layout_encoding = 2
    config.train.equivariance_weight, config.train.equivariance_outside_weight = 1.0, 0.5
    config.train.log_every = 1
    trainer = build_trainer(config, devices=jax.devices()[:1])
    r = config.data.resolution
    images = jax.random.uniform(jax.random.key(3), (config.train.batch_size, r, r, 3), minval=-1, maxval=1)
    with jax.set_mesh(trainer.mesh):
        state, metrics = trainer.train_step(trainer.initial_state(), {"image": jax.device_put(images, trainer.batch_sharding)}, False, True)
        metrics = jax.device_get(metrics)
    for name in ("g_equivariance", "g_equivariance_outside", "grad_norm/g/equivariance", "grad_norm/g/equivariance_outside",
                 "g_loss", "d_loss"):
        assert np.isfinite(metrics[name]) and metrics[name] > 0, name
