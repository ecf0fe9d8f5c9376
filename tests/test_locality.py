"""Locality metrics on hand-built renderers with known answers (swap discs, pasted patches, detectors)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.conventions import coordinate_grid, normalized_to_pixel, pixel_to_normalized
from lkgan_jax.evaluation.locality import LocalitySettings, compute_locality, disc_masks, shift_images, window_masks
from lkgan_jax.models.latent import Latent

K, D, S = 3, 4, 24
PATCH = 4  # half-width in pixels of the pasted patch


def _latents(seeds: np.ndarray) -> Latent:
    """Keypoints on whole pixels, away from the border; random embeddings."""
    rng = [np.random.default_rng(int(s)) for s in seeds]
    pixels = np.stack([r.integers(7, S - 7, size=(K, 2)) for r in rng]).astype(np.float32)
    embeddings = np.stack([r.normal(size=(K, D)) for r in rng]).astype(np.float32)
    background = np.stack([r.normal(size=(D,)) for r in rng]).astype(np.float32)
    return Latent.create(jnp.asarray(pixel_to_normalized(pixels, S)), jnp.asarray(embeddings), jnp.asarray(background), 0.01)


def _pixel_offsets(latent: Latent) -> tuple[jax.Array, jax.Array]:
    """Each pixel's (column, row) offset from each keypoint, rounded to whole pixels: (B, K, S, S) each."""
    centre = jnp.round(normalized_to_pixel(latent.keypoints, S))
    cols, rows = jnp.arange(S, dtype=jnp.float32), jnp.arange(S, dtype=jnp.float32)
    return cols[None, None, None, :] - centre[..., 0, None, None], rows[None, None, :, None] - centre[..., 1, None, None]


def _disc_render(radius_px: float):
    """Part k paints a disc of ``radius_px`` pixels around its keypoint in a colour from its embedding."""

    def render(variables, latent: Latent) -> jax.Array:
        dx, dy = _pixel_offsets(latent)
        inside = (dx * dx + dy * dy <= radius_px**2).astype(jnp.float32)[..., None]  # (B, K, S, S, 1)
        colours = jnp.tanh(latent.part_embeddings[..., :3])[:, :, None, None, :]
        background = jnp.tanh(latent.background_embedding[:, :3])[:, None, None, :]
        return background + jnp.sum(inside * colours, axis=1)

    return render


def _patch_render(variables, latent: Latent) -> jax.Array:
    """A constant background with a textured square patch pasted at each keypoint (moves with it)."""
    dx, dy = _pixel_offsets(latent)
    inside = ((jnp.abs(dx) <= PATCH) & (jnp.abs(dy) <= PATCH)).astype(jnp.float32)
    texture = jnp.sin(1.3 * dx + 0.4) * jnp.cos(0.7 * dy - 0.2) + 0.1 * latent.part_embeddings[..., 0, None, None]
    image = jnp.sum(inside * texture, axis=1)  # (B, S, S)
    return jnp.broadcast_to(image[..., None], image.shape + (3,))


def _static_render(variables, latent: Latent) -> jax.Array:
    """Ignores the keypoints: a fixed pattern, changed only by the embeddings."""
    grid = coordinate_grid(S, jnp)
    pattern = jnp.sin(5 * grid[None, :]) * jnp.cos(3 * grid[:, None])
    amount = jnp.sum(latent.part_embeddings[..., 0], axis=-1) + latent.background_embedding[:, 0]
    return jnp.broadcast_to((amount[:, None, None] * pattern)[..., None], (latent.keypoints.shape[0], S, S, 3))


def _run(render, num_pairs=6, pairs_per_call=4, settings=LocalitySettings(radii=(0.5, 0.8), move_pixels=2, window=0.4), **kwargs):
    return compute_locality(render, None, _latents, num_pairs, pairs_per_call, settings, seed=3, **kwargs)


def test_masks_and_shift_by_hand():
    centre = jnp.asarray([[0.0, 0.0]])
    disc = np.asarray(disc_masks(centre, 0.3, 5))  # grid -1, -0.5, 0, 0.5, 1: only the centre pixel
    assert disc.sum() == 1 and disc[0, 2, 2] == 1
    assert np.asarray(disc_masks(centre, 0.5, 5)).sum() == 5  # the centre and its four neighbours
    window = np.asarray(window_masks(jnp.asarray([[0.5, -1.0]]), 0.5, 5))[0]
    assert window.sum() == 6 and window[:2, 2:].all()  # columns 2..4, rows 0..1
    images = jnp.arange(2 * 3 * 4, dtype=jnp.float32).reshape(2, 3, 4, 1)
    shifted, valid = shift_images(images, jnp.asarray([[1, 0], [0, -1]]))
    np.testing.assert_array_equal(np.asarray(shifted[0, :, 1:, 0]), np.asarray(images[0, :, :3, 0]))
    np.testing.assert_array_equal(np.asarray(valid[0, :, 0]), 0)
    np.testing.assert_array_equal(np.asarray(shifted[1, :2, :, 0]), np.asarray(images[1, 1:, :, 0]))
    np.testing.assert_array_equal(np.asarray(valid[1, 2]), 0)


def test_swap_confined_to_a_disc_gives_the_analytic_ratio():
    radius = 0.5  # normalised: 0.5 · (S − 1) / 2 = 5.75 pixels
    result = _run(_disc_render(4.0))  # each part's change lies inside its keypoint's disc
    # Keypoints sit at least 7 pixels from the border, so the disc is whole: its pixel count is fixed.
    offsets = np.arange(-6, 7)
    disc_pixels = np.sum((offsets[:, None] ** 2 + offsets[None, :] ** 2) * (2 / (S - 1)) ** 2 <= radius**2)
    assert result["locality/swap_ratio_r0.5"] == pytest.approx(S * S / disc_pixels, rel=1e-5)
    assert len(result["locality/swap_ratio_r0.5/per_part"]) == K


def test_swap_effect_compares_part_and_background_swaps():
    result = _run(_static_render)
    # Part and background swaps change the same pattern by |Δ embedding[0]| on average: effect ≈ 1.
    assert 0.3 < result["locality/swap_effect"] < 3
    assert result["locality/swap_ratio_r0.5"] < 2  # spread over the image like the area
    parts = np.asarray(result["locality/part_swap_abs/per_part"])
    assert result["locality/swap_effect"] == pytest.approx(np.mean(parts / result["locality/background_swap_abs"]))


def _one_part(seeds: np.ndarray) -> Latent:
    """Single-part latents: nothing else moves or overlaps the moved patch."""
    latent = _latents(seeds)
    return Latent.create(latent.keypoints[:, :1], latent.part_embeddings[:, :1], latent.background_embedding, 0.01)


SETTINGS = LocalitySettings(radii=(0.5,), move_pixels=2, window=0.4)


def test_move_follow_px_is_one_for_a_pasted_patch_and_zero_without_keypoints():
    followed = compute_locality(_patch_render, None, _one_part, 5, 2, SETTINGS)
    assert followed["locality/move_follow_px"] == pytest.approx(1.0, abs=1e-5)
    assert _run(_static_render)["locality/move_follow_px"] == pytest.approx(0.0, abs=1e-6)


def _centre_of_mass(_, images: jax.Array) -> jax.Array:
    """A one-keypoint "detector": the centre of mass of |image| (the patch's centre), (B, 1, 2)."""
    weights = jnp.abs(images[..., 0])
    grid = coordinate_grid(S, jnp)
    total = jnp.sum(weights, axis=(1, 2))
    x = jnp.sum(weights * grid[None, None, :], axis=(1, 2)) / total
    y = jnp.sum(weights * grid[None, :, None], axis=(1, 2)) / total
    return jnp.stack([x, y], -1)[:, None]


def test_move_follow_is_the_detected_shift_along_the_move():
    assert "locality/move_follow" not in _run(_static_render)  # no detector: not reported
    frozen = _run(_static_render, detect=lambda v, images: jnp.zeros((images.shape[0], K, 2)))
    assert frozen["locality/move_follow"] == 0.0
    followed = compute_locality(_patch_render, None, _one_part, 4, 4, SETTINGS, detect=_centre_of_mass)
    assert followed["locality/move_follow"] == pytest.approx(1.0, abs=1e-4)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="positive"):
        _run(_patch_render, num_pairs=0)
    with pytest.raises(ValueError, match="radii"):
        _run(_patch_render, settings=LocalitySettings(radii=()))
