"""Improved precision/recall (k-NN manifolds) and multi-scale sliced Wasserstein distance: hand values, properties."""

import numpy as np
import pytest

from lkgan_jax.evaluation import manifold, swd


def _column(*values):
    return np.asarray(values, np.float64)[:, None]


# ---------------------------------------------------------------- precision / recall


def test_identical_sets_give_full_precision_and_recall():
    x = np.random.default_rng(0).normal(size=(200, 16))
    assert manifold.precision_recall(x, x.copy()) == {"precision": 1.0, "recall": 1.0}


def test_knn_radii_by_hand_and_against_brute_force():
    # Reals 0, 1, 2, 3: k=1 → 1 each; k=3 → 3, 2, 2, 3 (the point itself never counts).
    reals = _column(0, 1, 2, 3)
    np.testing.assert_array_equal(manifold.knn_radii(reals, k=1), [1, 1, 1, 1])
    np.testing.assert_array_equal(manifold.knn_radii(reals, k=3), [3, 2, 2, 3])
    # A duplicate is another sample, at distance 0.
    np.testing.assert_array_equal(manifold.knn_radii(_column(0, 0, 5, 5), k=1), [0, 0, 0, 0])
    x = np.random.default_rng(1).normal(size=(50, 5))
    brute = np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1), axis=1)[:, 3]  # column 0 is the point itself
    np.testing.assert_allclose(manifold.knn_radii(x, k=3, batch_size=7), brute, rtol=1e-9)


def test_one_dimensional_example_by_hand():
    reals = _column(0, 1, 2, 3)  # k=3 radii 3, 2, 2, 3
    # Fakes: 0.5 (within 3 of real 0), 4.9 (1.9 from real 3 ≤ 3), 10 and 30 (≥ 7 from every real).
    fakes = _column(0.5, 4.9, 10, 30)  # k=3 radii 29.5, 25.1, 20, 29.5: every real lies in the ball of 0.5
    assert manifold.precision_recall(reals, fakes, k=3) == {"precision": 0.5, "recall": 1.0}
    # k=1: real radii 1; fake radii 1 for fakes 0, 1, 10, 11. Fakes 0, 1 in; reals 0, 1, 2 in, 3 is 2 away.
    assert manifold.precision_recall(reals, _column(0, 1, 10, 11), k=1) == {"precision": 0.5, "recall": 0.75}


def test_ball_boundary_is_inside():
    # Real radii (k=1) are 1: fake 4 is exactly 1 from real 3 (inside), fake 4.5 is 1.5 away (outside).
    result = manifold.precision_recall(_column(0, 1, 2, 3), _column(4, 4.5), k=1)
    assert result["precision"] == 0.5
    # Zero radii (duplicates): only exact copies are inside.
    assert manifold.precision_recall(_column(0, 0, 5, 5), _column(0, 5.1), k=1)["precision"] == 0.5


def test_far_apart_clusters_give_zero():
    rng = np.random.default_rng(2)
    reals, fakes = rng.normal(size=(100, 8)), rng.normal(size=(80, 8)) + 100.0
    assert manifold.precision_recall(reals, fakes) == {"precision": 0.0, "recall": 0.0}


def test_swapping_sets_swaps_precision_and_recall():
    rng = np.random.default_rng(3)
    reals, fakes = rng.normal(size=(120, 4)), 1.5 * rng.normal(size=(90, 4)) + 0.5
    forward, backward = manifold.precision_recall(reals, fakes), manifold.precision_recall(fakes, reals)
    assert 0.0 < forward["precision"] < 1.0 and 0.0 < forward["recall"] < 1.0
    assert forward == {"precision": backward["recall"], "recall": backward["precision"]}


def test_batch_size_does_not_change_results():
    rng = np.random.default_rng(4)
    reals, fakes = rng.normal(size=(300, 8)), rng.normal(size=(250, 8)) * 1.3
    results = [manifold.precision_recall(reals, fakes, k=3, batch_size=b) for b in (1, 7, 64, 1024)]
    assert all(r == results[0] for r in results)


@pytest.mark.parametrize(
    "reals, fakes, kwargs",
    [
        (np.zeros((10,)), np.zeros((10, 2)), {}),  # not 2-D
        (np.zeros((10, 2, 1)), np.zeros((10, 2)), {}),
        (np.zeros((10, 2)), np.zeros((10, 3)), {}),  # feature dims differ
        (np.zeros((10, 2)), np.zeros((10, 2)), {"k": 0}),
        (np.zeros((3, 2)), np.zeros((10, 2)), {"k": 3}),  # fewer than k+1 reals
        (np.zeros((10, 2)), np.zeros((4, 2)), {"k": 4}),  # fewer than k+1 fakes
    ],
)
def test_precision_recall_rejects_bad_inputs(reals, fakes, kwargs):
    with pytest.raises(ValueError):
        manifold.precision_recall(reals, fakes, **kwargs)


# ---------------------------------------------------------------- Laplacian pyramid


def test_pyr_down_of_an_impulse_by_hand():
    x = np.zeros((1, 8, 8, 1))
    x[0, 2, 2, 0] = 256.0
    down = swd.pyr_down(x)[0, :, :, 0]
    assert down.shape == (4, 4)
    # Output (i, j) sits on input (2i, 2j). Centre weight (6/16)²; 2 away (1/16)²; at the border the
    # reflected copy of input 2 adds another 1/16, so output 0 along an axis weighs input 2 by 2/16.
    expected = np.zeros((4, 4))
    expected[1, 1], expected[0, 0], expected[0, 1], expected[1, 0], expected[2, 2] = 36, 4, 12, 12, 1
    expected[1, 2] = expected[2, 1] = 6  # 6/16 · 1/16
    expected[0, 2] = expected[2, 0] = 2  # 2/16 · 1/16
    np.testing.assert_allclose(down, expected, atol=1e-12)


def test_pyramid_shapes_constant_image_and_reconstruction():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 64, 64, 3)).astype(np.float64)
    levels = swd.laplacian_pyramid(images, 3)
    assert [level.shape for level in levels] == [(3, 64, 64, 3), (3, 32, 32, 3), (3, 16, 16, 3)]
    np.testing.assert_allclose(swd.reconstruct_pyramid(levels), images, atol=1e-4, rtol=0)
    constant = swd.laplacian_pyramid(np.full((1, 32, 32, 3), 7.0), 2)
    np.testing.assert_allclose(constant[0], 0.0, atol=1e-12)
    np.testing.assert_allclose(constant[1], 7.0, atol=1e-12)


# ---------------------------------------------------------------- sliced Wasserstein distance


def test_sliced_distance_by_hand():
    a, b = _column(0, 1, 2), _column(3, 1, 5)
    # Sorted: 0, 1, 2 against 1, 3, 5 → (1 + 2 + 3) / 3.
    assert swd.sliced_distance(a, b, np.ones((1, 1))) == pytest.approx(2.0)
    points = np.random.default_rng(6).normal(size=(50, 3))
    shifted = points + np.array([2.0, 0.0, 0.0])
    assert swd.sliced_distance(points, shifted, np.array([[1.0, 0.0, 0.0]])) == pytest.approx(2.0)
    assert swd.sliced_distance(points, shifted, np.array([[0.0, 1.0, 0.0]])) == pytest.approx(0.0, abs=1e-12)
    assert swd.sliced_distance(points, shifted, np.array([[0.6, 0.8, 0.0]])) == pytest.approx(1.2)
    assert swd.sliced_distance(points, shifted, np.eye(3)) == pytest.approx(2.0 / 3.0)
    # Order of the samples does not matter.
    assert swd.sliced_distance(points, points[::-1], np.eye(3)) == 0.0


def _smooth_noisy_images(rng, n, side=32):
    """Float images (n, side, side, 3) in [-1, 1]: upsampled coarse noise plus fine noise."""
    coarse = rng.uniform(-1, 1, (n, side // 4, side // 4, 3))
    x = swd.pyr_up(swd.pyr_up(coarse)) + 0.3 * rng.normal(size=(n, side, side, 3))
    return np.clip(x / np.abs(x).max(), -1.0, 1.0)


_FAST = {"num_repeats": 2, "dirs_per_repeat": 32}


def test_identical_sets_give_zero_at_every_level():
    images = np.random.default_rng(7).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    result = swd.sliced_wasserstein(images, images.copy(), **_FAST)
    assert result == {"swd_64": 0.0, "swd_32": 0.0, "swd_16": 0.0, "swd_mean": 0.0}
    assert set(swd.sliced_wasserstein(images[:, :32, :32], images[:, :32, :32], min_side=8, **_FAST)) == {
        "swd_32", "swd_16", "swd_8", "swd_mean"
    }


def test_uint8_and_float_inputs_agree():
    rng = np.random.default_rng(8)
    real, fake = (rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8) for _ in range(2))
    as_uint8 = swd.sliced_wasserstein(real, fake, **_FAST)
    as_float = swd.sliced_wasserstein(real / 127.5 - 1.0, (fake / 127.5 - 1.0).astype(np.float32), **_FAST)
    assert as_uint8.keys() == as_float.keys() == {"swd_32", "swd_16", "swd_mean"}
    for key, value in as_uint8.items():
        assert as_float[key] == pytest.approx(value, rel=1e-4)
    assert as_uint8["swd_mean"] == pytest.approx((as_uint8["swd_32"] + as_uint8["swd_16"]) / 2)


def test_blur_raises_finest_level_and_seeds_agree():
    rng = np.random.default_rng(9)
    real, other = _smooth_noisy_images(rng, 48), _smooth_noisy_images(rng, 48)
    blurred = np.clip(swd.pyr_up(swd.pyr_down(real)), -1.0, 1.0)
    same_distribution = swd.sliced_wasserstein(real, other, seed=0)
    blur = [swd.sliced_wasserstein(real, blurred, seed=seed) for seed in (0, 1)]
    assert blur[0]["swd_32"] > 2.0 * same_distribution["swd_32"] > 0.0
    for key in blur[0]:
        assert blur[1][key] == pytest.approx(blur[0][key], rel=0.15)
        assert blur[1][key] != blur[0][key]


def test_sliced_wasserstein_rejects_bad_inputs():
    images = np.zeros((4, 32, 32, 3), np.uint8)
    bad = [
        (images, images[:3], {}),  # unequal counts
        (images[:0], images[:0], {}),  # no images
        (np.zeros((4, 24, 24, 3), np.uint8),) * 2 + ({},),  # side not a power of two
        (np.zeros((4, 32, 16, 3), np.uint8),) * 2 + ({},),  # not square
        (np.zeros((4, 8, 8, 3), np.uint8),) * 2 + ({},),  # side below min_side
        (np.zeros((4, 32, 32, 1), np.uint8),) * 2 + ({},),  # not RGB
        (images, np.zeros((4, 16, 16, 3), np.uint8), {}),  # sizes differ
        (images, np.full((4, 32, 32, 3), 200.0), {}),  # float outside [-1, 1]
        (images, images, {"min_side": 4}),  # smaller than a patch
    ]
    for real, fake, kwargs in bad:
        with pytest.raises(ValueError):
            swd.sliced_wasserstein(real, fake, **kwargs)
