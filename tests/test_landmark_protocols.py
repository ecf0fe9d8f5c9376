"""The papers' landmark protocols (evaluation/protocols.py) on hand-built predictions with known answers."""

import dataclasses

import numpy as np
import pytest

from lkgan_jax.conventions import pixels_per_unit
from lkgan_jax.evaluation.landmarks import regress_landmarks
from lkgan_jax.evaluation.protocols import (
    H36M_SWAP_PAIRS,
    PROTOCOLS,
    Protocol,
    fit_regression,
    get_protocol,
    mean_landmark_error,
    predict,
    protocol_error,
)

K = 10  # detected keypoints


def random_keypoints(rng, n, k=K):
    return rng.uniform(-0.9, 0.9, (n, k, 2))


def linear_landmarks(keypoints, matrix, offset=None):
    """Landmarks that are an exact linear (+ offset) function of the keypoints in the (u + 1) / 2 frame."""
    unit = (keypoints.reshape(len(keypoints), -1) + 1) / 2 @ matrix
    if offset is not None:
        unit = unit + offset
    return 2 * unit.reshape(len(keypoints), -1, 2) - 1


def pixels(d, size):
    """A length of d pixels at side ``size``, in normalised units."""
    return d / float(pixels_per_unit(size))


def select_first(num_landmarks, k=K):
    """The linear map 'landmark l = keypoint l'."""
    matrix = np.zeros((2 * k, 2 * num_landmarks))
    matrix[np.arange(2 * num_landmarks), np.arange(2 * num_landmarks)] = 1.0
    return matrix


def test_registry_table():
    table = {name: (p.dataset, p.regression_split, p.test_split, p.with_bias, p.per_landmark, p.error_form,
                    p.normaliser, p.resolution, p.num_landmarks) for name, p in PROTOCOLS.items()}
    assert table == {
        "mafl": ("celeba", "mafl_train", "mafl_test", False, False, "mean_l2", "inter_ocular", 128, 5),
        "celeba_wild": ("celeba_wild", "mafl_train", "mafl_test", False, False, "mean_l2", "inter_ocular", 128, 5),
        "cub": ("cub", "train", "test", False, True, "mean_l2", "image_side", 128, 15),
        **{f"cub_{c}": ("cub", "train_three", f"test_{c}", False, True, "mean_l2", "image_side", 128, 15)
           for c in ("001", "002", "003")},
        "taichi": ("taichi", "regression_train", "test", True, True, "summed_abs", "pixels", 256, 18),
        "h36m": ("h36m_simplified", "train", "test", False, False, "mean_l2", "image_side", 128, 32),
    }
    assert PROTOCOLS["mafl"].eye_landmarks == PROTOCOLS["celeba_wild"].eye_landmarks == (0, 1)
    permutation = PROTOCOLS["h36m"].swap_permutation()
    assert sorted(permutation) == list(range(32)) and np.all(permutation[permutation] == np.arange(32))
    assert [i for i in range(32) if permutation[i] == i] == [0, 11, 12, 13, 14, 15]  # the spine and head stay
    assert (21, 29) in H36M_SWAP_PAIRS and (16, 24) in H36M_SWAP_PAIRS


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_a_perfect_relation_gives_zero(name):
    p = PROTOCOLS[name]
    rng = np.random.default_rng(0)
    matrix = rng.normal(0, 0.3, (2 * K, 2 * p.num_landmarks))
    offset = rng.uniform(-0.2, 0.2, 2 * p.num_landmarks) if p.with_bias else None
    train_kp, test_kp = random_keypoints(rng, 200), random_keypoints(rng, 30)
    train_lm, test_lm = linear_landmarks(train_kp, matrix, offset), linear_landmarks(test_kp, matrix, offset)
    train_vis = test_vis = None
    if p.per_landmark:  # the protocols with visibility: hide a quarter of the points, with garbage behind them
        train_vis = (rng.random(train_lm.shape[:2]) > 0.25).astype(np.int64)
        test_vis = (rng.random(test_lm.shape[:2]) > 0.25).astype(np.int64)
        train_lm = np.where(train_vis[..., None] == 1, train_lm, np.nan)
        test_lm = np.where(test_vis[..., None] == 1, test_lm, 5.0)
    result = protocol_error(name, train_kp, train_lm, train_vis, test_kp, test_lm, test_vis)
    assert result["protocol"] == name and result["num_train"] == 200 and result["num_test"] == 30
    assert result["error"] == pytest.approx(0.0, abs=1e-8)
    assert np.allclose([v for v in result["per_landmark"] if v is not None], 0.0, atol=1e-8)
    assert result["num_visible_test"] == (30 * p.num_landmarks if test_vis is None else int(test_vis.sum()))


def test_mafl_constant_offset_uses_each_images_own_inter_ocular_distance():
    # landmark l = keypoint l; three test faces with eye distances of 20, 40 and 80 px at 128 px; every
    # ground-truth landmark is then moved 2 px right, so each prediction is off by exactly 2 px.
    rng = np.random.default_rng(1)
    train_kp = random_keypoints(rng, 60)
    train_lm = linear_landmarks(train_kp, select_first(5))
    test_kp = random_keypoints(rng, 3)
    for i, iod_px in enumerate((20, 40, 80)):
        test_kp[i, 0] = -1 + pixels(np.array([64 - iod_px / 2, 50.0]), 128)  # pixel → normalised, in float64
        test_kp[i, 1] = -1 + pixels(np.array([64 + iod_px / 2, 50.0]), 128)
    test_lm = test_kp[:, :5] + np.array([pixels(2, 128), 0.0])
    result = protocol_error("mafl", train_kp, train_lm, None, test_kp, test_lm, None)
    expected = (2 / 20 + 2 / 40 + 2 / 80) / 3 * 100  # 5.8333…
    assert result["error"] == pytest.approx(expected, rel=1e-9)
    assert result["error"] != pytest.approx(2 / np.mean([20, 40, 80]) * 100, rel=1e-3)  # one global IOD: 4.2857
    assert result["per_landmark"] == pytest.approx([expected] * 5, rel=1e-9)
    same = protocol_error("celeba_wild", train_kp, train_lm, None, test_kp, test_lm, None)
    assert same["error"] == pytest.approx(expected, rel=1e-9)


def test_the_regression_frame_is_the_authors_corner_frame():
    # landmarks = keypoints halved toward the first pixel centre: linear without bias in the (u + 1) / 2
    # frame, but it needs a bias in the centred [-1, 1] frame
    rng = np.random.default_rng(2)
    train_kp, test_kp = random_keypoints(rng, 60), random_keypoints(rng, 20)
    train_lm, test_lm = 0.5 * train_kp[:, :5] - 0.5, 0.5 * test_kp[:, :5] - 0.5
    assert protocol_error("mafl", train_kp, train_lm, None, test_kp, test_lm, None)["error"] == pytest.approx(0, abs=1e-8)
    centred = regress_landmarks(train_kp, train_lm, test_kp)  # our own protocol's centred frame
    assert np.abs(centred - test_lm).max() > 1e-2


def test_with_and_without_bias_on_data_with_an_offset():
    # one keypoint → one landmark = keypoint + c, at the keypoints (1, 0), (0, 1), (1, 1)
    keypoints = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    c = np.array([0.3, -0.6])
    landmarks = keypoints + c
    with_bias = fit_regression(keypoints, landmarks, bias=True)
    np.testing.assert_allclose(with_bias.weights[0], [[1, 0], [0, 1], [0.3, -0.6]], atol=1e-12)
    np.testing.assert_allclose(predict(with_bias, keypoints), landmarks, atol=1e-12)
    # without bias: W = I + (XᵀX)⁻¹ Xᵀ 1 cᵀ = I + (2/3, 2/3)ᵀ cᵀ, so every residual is ±c/3
    without = fit_regression(keypoints, landmarks, bias=False)
    np.testing.assert_allclose(without.weights[0], [[1.2, -0.4], [0.2, 0.6]], atol=1e-12)
    np.testing.assert_allclose(predict(without, keypoints) - landmarks, [[-c / 3], [-c / 3], [c / 3]], atol=1e-12)


def test_cub_fits_each_part_on_its_visible_training_images_and_scores_visible_test_points():
    rng = np.random.default_rng(3)
    matrix = rng.normal(0, 0.3, (2 * K, 30))
    train_kp, test_kp = random_keypoints(rng, 120), random_keypoints(rng, 25)
    train_lm, test_lm = linear_landmarks(train_kp, matrix), linear_landmarks(test_kp, matrix)
    train_vis = (rng.random((120, 15)) > 0.3).astype(int)
    test_vis = (rng.random((25, 15)) > 0.3).astype(int)
    train_lm[train_vis == 0] += 0.5  # wrong labels behind the invisible training points
    test_lm[test_vis == 0] += 0.5
    assert protocol_error("cub", train_kp, train_lm, train_vis, test_kp, test_lm, test_vis)["error"] == pytest.approx(0, abs=1e-8)
    # counting the invisible training points would change the fit
    assert protocol_error("cub", train_kp, train_lm, np.ones_like(train_vis), test_kp, test_lm, test_vis)["error"] > 1.0
    # a constant offset of 3 px on every visible test point: 3 / 128 × 100 = 2.34375 (% of the image side)
    shifted = test_lm + np.array([0.0, pixels(3, 128)])
    result = protocol_error("cub", train_kp, train_lm, train_vis, test_kp, shifted, test_vis)
    assert result["error"] == pytest.approx(2.34375, rel=1e-9)
    assert result["num_visible_test"] == test_vis.sum()
    # a test image with only part 0 visible, off by 10 px, among one otherwise perfect image with all visible:
    # (10 + 14·0 + 0) / 16 visible points
    two_vis = np.zeros((2, 15), int)
    two_vis[0, 0], two_vis[1] = 1, 1
    two_lm = linear_landmarks(test_kp[:2], matrix)
    two_lm[0, 0, 0] += pixels(10, 128)
    two_lm[0, 1:] = np.nan
    result = protocol_error("cub", train_kp, train_lm, train_vis, test_kp[:2], two_lm, two_vis)
    assert result["error"] == pytest.approx(10 / 128 * 100 / 16, rel=1e-9)
    assert result["per_landmark"][0] == pytest.approx(10 / 128 * 100 / 2, rel=1e-9)


def test_taichi_is_the_summed_error_at_256_px():
    rng = np.random.default_rng(4)
    matrix = rng.normal(0, 0.3, (2 * K, 36))
    offset = rng.uniform(-0.2, 0.2, 36)
    train_kp, test_kp = random_keypoints(rng, 150), random_keypoints(rng, 20)
    train_lm, test_lm = linear_landmarks(train_kp, matrix, offset), linear_landmarks(test_kp, matrix, offset)
    test_vis = (rng.random((20, 18)) > 0.2).astype(int)
    test_vis[0] = 1  # every joint visible somewhere
    # 4 px right on every joint: 18 × 4 = 72 px
    right = protocol_error("taichi", train_kp, train_lm, None, test_kp, test_lm + [pixels(4, 256), 0], test_vis)
    assert right["error"] == pytest.approx(72.0, rel=1e-9)
    assert right["per_landmark"] == pytest.approx([4.0] * 18, rel=1e-9)
    # (3, 4) px: the sum runs over joints AND coordinates of the mean absolute error, 18 × (3 + 4) = 126
    diagonal = test_lm + [pixels(3, 256), pixels(-4, 256)]
    assert protocol_error("taichi", train_kp, train_lm, None, test_kp, diagonal, test_vis)["error"] == pytest.approx(126.0, rel=1e-9)
    # the same data needs the bias: a fit without it is off
    no_bias = dataclasses.replace(PROTOCOLS["taichi"], with_bias=False)
    assert protocol_error(no_bias, train_kp, train_lm, None, test_kp, test_lm, test_vis)["error"] > 1.0


def test_a_part_never_visible_in_training_gets_zero_weights_as_in_the_authors_code():
    rng = np.random.default_rng(8)
    matrix = rng.normal(0, 0.3, (2 * K, 30))
    train_kp, test_kp = random_keypoints(rng, 80), random_keypoints(rng, 20)
    train_lm, test_lm = linear_landmarks(train_kp, matrix), linear_landmarks(test_kp, matrix)
    train_vis, test_vis = np.ones((80, 15), int), np.ones((20, 15), int)
    train_vis[:, 7] = test_vis[:, 7] = 0
    hidden = np.where(train_vis[..., None] == 1, train_lm, np.nan)
    result = protocol_error("cub", train_kp, hidden, train_vis, test_kp, test_lm, test_vis)
    assert result["error"] == pytest.approx(0.0, abs=1e-8) and result["per_landmark"][7] is None
    assert result["num_visible_test"] == 20 * 14 and result["unfitted_landmarks"] == [7]
    # shown in one test image: predicted at the first pixel centre (-1, -1) and scored there
    test_vis[3, 7] = 1
    test_lm[3, 7] = [-1 + pixels(30, 128), -1 + pixels(40, 128)]  # 30 px right and 40 px down: 50 px away
    shown = protocol_error("cub", train_kp, hidden, train_vis, test_kp, test_lm, test_vis)
    assert shown["per_landmark"][7] == pytest.approx(50 / 128 * 100, rel=1e-9)
    assert shown["error"] == pytest.approx(50 / 128 * 100 / (20 * 14 + 1), rel=1e-9)
    baseline = mean_landmark_error("cub", hidden, train_vis, test_lm, test_vis)
    assert baseline["per_landmark"][7] == pytest.approx(50 / 128 * 100, rel=1e-9) and baseline["unfitted_landmarks"] == [7]
    one_line_error("landmark 7 is visible in no regression-train image", fit_regression, train_kp, train_lm, train_vis)


def test_the_mean_landmark_baseline_under_each_error_form():
    rng = np.random.default_rng(9)
    # MAFL: training faces scatter around a mean face; every test face is that mean face moved 2 px right
    face = random_keypoints(rng, 1, 5)[0] * 0.5
    face[1] = face[0] + [pixels(40, 128), 0.0]  # eyes 40 px apart
    noise = rng.normal(0, 0.01, (50, 5, 2))
    train_lm = face + noise - noise.mean(axis=0)
    test_lm = np.repeat(face[None] + [pixels(2, 128), 0.0], 4, axis=0)
    result = mean_landmark_error("mafl", train_lm, None, test_lm, None)
    assert result["error"] == pytest.approx(2 / 40 * 100, rel=1e-9) and result["num_train"] == 50 and result["num_test"] == 4
    # Taichi: each joint's mean over the images where it is visible; 3 px down on every joint: 18 × 3 px
    joints = random_keypoints(rng, 1, 18)[0] * 0.5
    train_lm = np.repeat(joints[None], 6, axis=0)
    train_vis = np.ones((6, 18), int)
    train_vis[0, 4] = 0
    train_lm[0, 4] = 9.0  # garbage behind an invisible joint is never read
    test_lm = np.repeat(joints[None] + [0.0, pixels(3, 256)], 2, axis=0)
    assert mean_landmark_error("taichi", train_lm, train_vis, test_lm, None)["error"] == pytest.approx(18 * 3, rel=1e-9)
    # H36M: a test pose labelled left/right-swapped is scored on the better labelling, as for a detector
    poses, labels = h36m_swapped_case(rng, 1, 2.0)
    swapped = mean_landmark_error("h36m", np.repeat(poses, 5, axis=0), None, np.repeat(labels, 12, axis=0), None)
    assert swapped["num_swapped_test"] == 12 and swapped["error"] == pytest.approx(2 / 128 * 100, rel=1e-9)
    assert swapped["error_without_swap"] == pytest.approx(2 * 2 / 128 * 100, rel=1e-9)


def h36m_swapped_case(rng, n, d_px):
    """Test poses T whose left/right partners sit m = 29d/13 apart along x, labelled swap(T) + (d, 0).

    Against the predictions T, the labels are off by d on the 6 unpaired joints and by m ∓ d on each of the
    26 paired ones: mean (6d + 26m) / 32 = 2d. Swapped back, every joint is off by exactly d."""
    d = pixels(d_px, 128)
    poses = random_keypoints(rng, n, 32) * 0.5
    for a, b in H36M_SWAP_PAIRS:
        poses[:, a] = poses[:, b] + [29 * d / 13, 0.0]
    return poses, poses[:, PROTOCOLS["h36m"].swap_permutation()] + [d, 0.0]


def test_h36m_swap_takes_the_better_labelling():
    rng = np.random.default_rng(5)
    train_kp = random_keypoints(rng, 200, 32)  # detected keypoints = the joints: the fit is the identity
    test_kp, test_lm = h36m_swapped_case(rng, 12, d_px=1.0)
    result = protocol_error("h36m", train_kp, train_kp, None, test_kp, test_lm, None)
    assert result["error_without_swap"] == pytest.approx(2 / 128 * 100, rel=1e-9)  # 2d = 1.5625 %
    assert result["error"] == pytest.approx(1 / 128 * 100, rel=1e-9)  # d = 0.78125 %: swapping halves it
    assert result["num_swapped_test"] == 12 and result["num_swapped_train"] == 0
    # the authors' rule swaps only when MORE than 10 images prefer it
    few = protocol_error("h36m", train_kp, train_kp, None, test_kp[:10], test_lm[:10], None)
    assert few["num_swapped_test"] == 0 and few["error"] == pytest.approx(2 / 128 * 100, rel=1e-9)


def test_h36m_training_swaps_and_drops_outliers():
    rng = np.random.default_rng(6)
    train_kp = random_keypoints(rng, 300, 32)
    train_lm = train_kp.copy()
    train_lm[:20] = train_lm[:20, PROTOCOLS["h36m"].swap_permutation()]  # 20 mislabelled left/right
    train_lm[20] += [0.6, 0.0]  # one image labelled far off: an outlier
    test_kp = random_keypoints(rng, 15, 32)
    result = protocol_error("h36m", train_kp, train_lm, None, test_kp, test_kp.copy(), None)
    assert result["num_swapped_train"] == 20 and result["train_swap_rounds"] >= 1
    assert result["num_outliers_dropped"] == 1
    assert result["error"] == pytest.approx(0.0, abs=1e-8)
    kept = protocol_error(dataclasses.replace(PROTOCOLS["h36m"], outlier_sigmas=None),
                          train_kp, train_lm, None, test_kp, test_kp.copy(), None)
    assert kept["num_outliers_dropped"] == 0 and kept["error"] > 0.1


def one_line_error(match, function, *args, **kwargs):
    with pytest.raises(ValueError, match=match) as info:
        function(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_inputs_are_one_line_value_errors():
    rng = np.random.default_rng(7)
    kp, lm = random_keypoints(rng, 30), random_keypoints(rng, 30, 5)
    message = one_line_error("unknown landmark protocol 'aflw'", get_protocol, "aflw")
    assert all(name in message for name in PROTOCOLS)
    one_line_error("unknown landmark protocol", protocol_error, "aflw", kp, lm, None, kp, lm, None)
    one_line_error(r"\(N, P, 2\)", protocol_error, "mafl", kp[..., :1], lm, None, kp, lm, None)
    one_line_error("30 keypoint rows but 29 landmark rows", protocol_error, "mafl", kp, lm[:29], None, kp, lm, None)
    one_line_error("expects 15 landmarks, got 5", protocol_error, "cub", kp, lm, None, kp, lm, None)
    one_line_error("10 keypoints in mafl_train but 8 in mafl_test", protocol_error, "mafl", kp, lm, None, kp[:, :8], lm, None)
    one_line_error("expects every landmark visible", protocol_error, "mafl", kp, lm, np.eye(30, 5), kp, lm, None)
    one_line_error(r"shape \(30, 5\)", protocol_error, "mafl", kp, lm, np.ones((30, 4)), kp, lm, None)
    one_line_error("only 0 and 1", fit_regression, kp, lm, np.full((30, 5), 2))
    one_line_error("disagree on the number of images", fit_regression, kp, lm[:3])
    bad_eyes = lm.copy()
    bad_eyes[3, 1] = bad_eyes[3, 0]
    one_line_error("inter-ocular distance 0", protocol_error, "mafl", kp, lm, None, kp, bad_eyes, None)
    cub_lm = random_keypoints(rng, 30, 15)
    vis = np.ones((30, 15), int)
    vis[:, 7] = 0
    one_line_error("landmark 7 is visible in no regression-train image", fit_regression, kp, cub_lm, vis)
    one_line_error("no visible landmark", protocol_error, "cub", kp, cub_lm, None, kp, cub_lm, np.zeros((30, 15)))
    one_line_error("features", predict, fit_regression(kp, lm), kp[:, :4])
    one_line_error("swap pairs must be disjoint", dataclasses.replace, PROTOCOLS["h36m"], swap_pairs=((1, 6), (6, 2)))
    with pytest.raises(ValueError, match="finite"):
        fit_regression(np.full_like(kp, np.nan), lm)
    assert isinstance(get_protocol(PROTOCOLS["cub"]), Protocol)
