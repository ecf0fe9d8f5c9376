"""KeypointGAN augmentation and loss pieces: random TPS warps and the EMA-normalised perceptual loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.keypointgan import perceptual as perc
from lkgan_jax.keypointgan import tps
from lkgan_jax.utils.files import file_sha256


def _images(seed: int, batch: int = 2, size: int = 32) -> jax.Array:
    return jax.random.uniform(jax.random.key(seed), (batch, size, size, 3), minval=-1.0, maxval=1.0)


# ---------------------------------------------------------------------------------------------- TPS


def test_identity_warp_returns_the_input():
    images = _images(0, size=16)
    out = tps.random_warp(jax.random.key(1), images, tps.IDENTITY)
    np.testing.assert_allclose(out, images, atol=1e-5)
    np.testing.assert_allclose(tps.warp_images(images, tps.identity_tps(2)), images, atol=1e-5)


def test_nonlinear_part_displaces_pixels_by_the_expected_amount():
    size, batch = 128, 64
    params = tps.sample_tps(jax.random.key(0), batch, tps.TpsMagnitudes())
    params = params.replace(A=tps.identity_tps(batch).A, t=jnp.zeros((batch, 2)))
    moved = tps.sampling_grid(params, size, central_only=True)
    still = tps.sampling_grid(tps.identity_tps(batch), size, central_only=True)
    assert moved.shape == (batch, size, size, 2)
    pixels = np.linalg.norm(np.asarray(moved - still), axis=-1) * (2 * size - 1) / 2
    assert 3.5 < pixels.mean() < 6.5 and 8.0 < np.percentile(pixels, 95) < 14.0


def test_full_canvas_grid_contains_the_central_crop():
    params = tps.sample_tps(jax.random.key(3), 2, tps.TpsMagnitudes())
    full = tps.sampling_grid(params, 8)
    assert full.shape == (2, 16, 16, 2)
    np.testing.assert_allclose(full[:, 4:12, 4:12], tps.sampling_grid(params, 8, central_only=True), atol=1e-6)


def test_translation_moves_a_pattern_by_t_times_canvas_pixels():
    size, shift = 32, 3  # t = 2·shift/(N − 1) canvas units is exactly `shift` pixels (1 unit ≈ S px)
    images = _images(4, batch=1, size=size)
    params = tps.identity_tps(1)
    params = params.replace(t=jnp.asarray([[2.0 * shift / (2 * size - 1), 0.0]]))
    out = tps.warp_images(images, params)
    # Sampling at x + t: output column j shows input column j + shift; the right edge replicates.
    np.testing.assert_allclose(out[:, :, : size - shift], images[:, :, shift:], atol=1e-5)
    np.testing.assert_allclose(out[:, :, size - shift :], np.repeat(images[:, :, -1:], shift, 2), atol=1e-5)


def test_warp_is_jittable_and_independent_per_sample():
    images = jnp.broadcast_to(_images(5, batch=1, size=16), (2, 16, 16, 3))
    warp = jax.jit(lambda key, x: tps.random_warp(key, x, tps.TpsMagnitudes()))
    out = warp(jax.random.key(6), images)
    assert out.shape == images.shape and bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.abs(out[0] - out[1]).max()) > 1e-2
    affine = tps.sample_tps(jax.random.key(7), 3, tps.AFFINE_ONLY)
    assert float(jnp.abs(affine.w).max()) == 0.0


def test_magnitudes_from_config():
    magnitudes = tps.TpsMagnitudes.from_config({"rotation_deg": 2, "warp": [0, 0]})
    assert magnitudes == tps.TpsMagnitudes(rotation_deg=2.0, warp=(0.0, 0.0))


# ------------------------------------------------------------------------------------- perceptual

SMALL = {"width_divisor": 16, "resolution": 32}


@pytest.mark.parametrize("kind", ["random_vgg19", "pyramid"])
def test_first_call_is_exactly_one_and_second_updates_the_ema(kind):
    bank = perc.make_perceptual(kind, **SMALL)
    assert bank.name == kind and bank.num_layers == 6
    x, target = _images(10), _images(11)
    step = jax.jit(lambda a, b, ema: perc.normalized_loss(bank, a, b, ema))
    loss, ema, raw = step(x, target, perc.init_ema(bank.num_layers))
    assert raw.shape == (6,) and bool(jnp.all(raw > 0))
    np.testing.assert_allclose(loss, 1.0, atol=1e-5)
    np.testing.assert_allclose(ema.running, raw, rtol=1e-6)
    loss2, ema2, raw2 = step(0.5 * x, target, ema)
    expected = 0.99 * np.asarray(raw) + 0.01 * np.asarray(raw2)
    np.testing.assert_allclose(ema2.running, expected, rtol=1e-5)
    np.testing.assert_allclose(loss2, np.mean(np.asarray(raw2) / (expected + 1e-8)), rtol=1e-5)


def test_gradient_reaches_the_reconstruction_but_not_the_trunk():
    bank = perc.make_perceptual("random_vgg19", **SMALL)
    x, target, ema = _images(12), _images(13), perc.init_ema(6)
    loss = lambda params, a: perc.normalized_loss(bank, a, target, ema, params=params)[0]
    params_grad, image_grad = jax.grad(loss, argnums=(0, 1))(bank.params, x)
    assert bool(jnp.all(jnp.isfinite(image_grad))) and float(jnp.abs(image_grad).max()) > 0
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(params_grad))


def test_relu_flag_changes_the_features():
    x = _images(14, batch=1)
    plain = perc.make_perceptual("random_vgg19", **SMALL).features(x)
    rectified = perc.make_perceptual("random_vgg19", relu=True, **SMALL).features(x)
    assert [f.shape for f in plain] == [(1, 32, 32, 3), (1, 32, 32, 4), (1, 16, 16, 8), (1, 8, 8, 16),
                                        (1, 4, 4, 32), (1, 2, 2, 32)]
    np.testing.assert_allclose(plain[0], rectified[0])
    assert float(jnp.min(rectified[1])) >= 0.0 and float(jnp.min(plain[1])) < 0.0


@pytest.mark.parametrize("size,smallest", [(32, 1), (64, 2)])
def test_pyramid_levels_fit_the_resolution(size, smallest):
    bank = perc.make_perceptual("pyramid", resolution=size)
    features = bank.features(_images(15, batch=1, size=size))
    assert len(features) == bank.num_layers == 6 and bank.weights_sha256 == ""
    assert [f.shape[1] for f in features] == [size >> i for i in range(6)] and features[-1].shape[1] == smallest
    constant = bank.features(jnp.full((1, size, size, 3), 0.25))
    assert all(np.allclose(f, 0.25, atol=1e-6) for f in constant)  # the blur preserves constants


def _write_weights(path, width_divisor=16, seed=0):
    params = perc.random_vgg19_params(perc.vgg19_channels(width_divisor), seed=seed)
    arrays = {f"{name}/{leaf}": value for name, leaves in params.items() for leaf, value in leaves.items()}
    arrays["conv1_1/bias"] = np.arange(arrays["conv1_1/bias"].size, dtype=np.float32)
    np.savez(path, **arrays)
    return arrays


def test_vgg19_weight_file_round_trip(tmp_path):
    path = tmp_path / "vgg19_conv.npz"
    arrays = _write_weights(path)
    sha = file_sha256(path)
    for expected in (sha, sha[:12].upper()):
        params, actual = perc.load_vgg19(path, expected, perc.vgg19_channels(16))
        assert actual == sha
        for key, value in arrays.items():
            name, leaf = key.split("/")
            np.testing.assert_array_equal(params[name][leaf], value)
    bank = perc.make_perceptual("auto", vgg_weights=str(path), vgg_sha256=sha[:16], width_divisor=16)
    assert bank.name == "vgg19" and bank.weights_sha256 == sha
    np.testing.assert_array_equal(bank.params["conv1_1"]["bias"], arrays["conv1_1/bias"])
    assert len(bank.features(_images(16, batch=1))) == 6
    loss, _, _ = perc.normalized_loss(bank, _images(16), _images(17), perc.init_ema(bank.num_layers))
    np.testing.assert_allclose(loss, 1.0, atol=1e-5)


def test_vgg19_weight_file_errors(tmp_path):
    path = tmp_path / "vgg19_conv.npz"
    _write_weights(path)
    sha = file_sha256(path)
    channels = perc.vgg19_channels(16)
    with pytest.raises(FileNotFoundError, match="perceptual.vgg_weights"):
        perc.load_vgg19(tmp_path / "missing.npz", sha, channels)
    with pytest.raises(ValueError, match=f"expected {'0' * 64}, got {sha}"):
        perc.load_vgg19(path, "0" * 64, channels)
    with pytest.raises(ValueError, match=f"perceptual.vgg_sha256.*{sha}"):
        perc.load_vgg19(path, "", channels)
    with pytest.raises(ValueError, match="at least 12 hex digits"):
        perc.load_vgg19(path, sha[:8], channels)
    with pytest.raises(ValueError, match=r"conv1_1/kernel is float32\[3, 3, 3, 4\], expected float\[3, 3, 3, 8\]"):
        perc.load_vgg19(path, sha, perc.vgg19_channels(8))
    np.savez(path, **{"conv1_1/kernel": np.zeros((3, 3, 3, 4), np.float32)})
    with pytest.raises(ValueError, match="lacks conv1_1/bias"):
        perc.load_vgg19(path, file_sha256(path), channels)
    with pytest.raises(ValueError, match="perceptual.kind"):
        perc.make_perceptual("lpips")
