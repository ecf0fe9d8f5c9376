"""The papers' landmark-regression protocols, as exact NumPy math on detected keypoints.

Each benchmark of the unsupervised-keypoint papers (LatentKeypointGAN and its siblings GANSeg and
AutoLink, KeypointGAN) maps detected keypoints to human-annotated landmarks by a linear regression
fitted on a labelled split and scores it on a test split. The details differ per data set, and they
change the numbers, so each protocol is spelled out here as read from the authors' evaluation code:

``mafl``, ``celeba_wild``
    One least-squares map without bias from all keypoints (x and y jointly) to the 5 MAFL landmarks,
    fitted on the MAFL training list and scored on the MAFL test list (aligned faces, or the same
    lists' photos in the wild; the GAN itself trains on the ``train`` split).
    Error: ‖pred − gt‖ divided by the inter-ocular distance of *that test image's own* ground truth
    (landmarks 0 and 1), averaged over images and landmarks, × 100. (AutoLink ``celeba_wild.py``,
    GANSeg ``test_seg.py``; a global inter-ocular distance was a known bug, AutoLink issue 7.)
``cub``
    One map without bias *per part* (15 parts), each fitted only on the training images where that
    part is visible. Error: Σ ‖pred − gt‖ over the visible test (image, part) entries, divided by their
    number, as a fraction of the image side (128 px), × 100. (AutoLink ``cub.py``, ``cub_three.py``.)
``cub_001``, ``cub_002``, ``cub_003``
    The same on CUB-001/002/003: fitted on the training images of the first three classes together
    (``train_three``), scored on the test images of one class (``test_001`` …). (AutoLink ``cub_three.py``.)
``taichi``
    One map *with bias* per joint (18 joints; a missing joint is skipped, in fitting and in scoring).
    Error: for each joint and each coordinate the mean absolute error over the test images where the
    joint is present, in pixels of the 256-px evaluation images, **summed** over the 18 joints and both
    coordinates (the "summed error", typically 300–450). (AutoLink ``taichi.py``, GANSeg ``test_seg.py``.)
``h36m``
    Simplified Human3.6M (32 joints). One map without bias, fitted by rounds: fit, then give every
    training image whose left/right-swapped ground truth is closer (mean L2 over joints) the swapped
    one, and refit, while *more than 10* images prefer the swap; then drop the training images whose
    error exceeds mean + 3·std and refit once. At test the same swap rule is applied to the test ground
    truth against the fixed predictions, so each image is scored on the better of the two labellings.
    Error: per image mean L2 over the joints as a fraction of the image side (128 px), averaged over
    images, × 100. (AutoLink ``h36m.py``; the swap pairs are KeypointGAN's left/right joints.)

Frame of the regression. The authors regress in image-fraction coordinates whose origin is the first
pixel centre (detected points ``u * 0.5 + 0.5``), not in the centred [-1, 1] frame; a map *without
bias* differs between the two frames, so :func:`protocol_error` converts keypoints and landmarks to
``(u + 1) / 2`` before fitting and converts the predictions back. Lengths are converted to pixels with
:func:`lkgan_jax.conventions.pixels_per_unit` at the protocol's resolution, and "fraction of the image
side" means pixels / side. A data set that ships landmarks as fractions v of the image side is therefore
scored exactly as its authors score it when prepared as pixel = v · side (then
``pixel_to_normalized``): the fit is unchanged by that uniform scale, and pixels / side gives back v.

Inputs everywhere: keypoints (N, K, 2) and landmarks (N, L, 2) in the convention of
``lkgan_jax.conventions`` ((x, y) in [-1, 1]); visibility (N, L) of 0/1 or ``None`` (all visible).
Landmark values where visibility is 0 are never read (they may be NaN).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from lkgan_jax.conventions import pixels_per_unit
from lkgan_jax.evaluation.landmarks import fit_linear_map

# error forms
MEAN_L2 = "mean_l2"  # mean over visible (image, landmark) entries of the normalised L2 distance
SUMMED_ABS = "summed_abs"  # Σ over landmarks and coordinates of the mean |error| over visible images
# normalisers
IOD = "inter_ocular"  # ÷ the test image's own eye distance, × 100 (%)
IMAGE_SIDE = "image_side"  # pixels ÷ the image side, × 100 (%)
PIXELS = "pixels"  # pixels at the protocol's resolution

# Left/right joint pairs of the 32-point Human3.6M skeleton (KeypointGAN's ``get_lr_correspondences``:
# hip, knee, ankle, ball, toes, the unnamed shoulder-girdle point, shoulder, elbow, wrist, second wrist
# point, thumb, little finger, second little-finger point). AutoLink's hand-written list omits (16, 24)
# and pairs 21 with 28 instead of 29, which makes its swap not a permutation; we keep the true pairs.
H36M_SWAP_PAIRS = (
    (6, 1), (7, 2), (8, 3), (9, 4), (10, 5), (16, 24), (17, 25),
    (18, 26), (19, 27), (20, 28), (21, 29), (22, 30), (23, 31),
)
MAX_SWAP_ROUNDS = 100  # a cap the authors' loop does not have; with a true permutation it stops far sooner


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One benchmark's regression and error, exactly as the authors' code computes them."""

    name: str
    dataset: str  # the ``lkgan prepare`` data set whose splits it reads
    regression_split: str  # the labelled split the linear map is fitted on
    test_split: str  # the split the error is measured on
    num_landmarks: int
    with_bias: bool
    per_landmark: bool  # one regression per landmark over its visible training images
    error_form: str  # MEAN_L2 or SUMMED_ABS
    normaliser: str  # IOD, IMAGE_SIDE or PIXELS
    resolution: int  # image side at which pixel lengths are measured
    eye_landmarks: tuple[int, int] | None = None  # for IOD
    swap_pairs: tuple[tuple[int, int], ...] = ()  # left/right pairs whose swap the error forgives
    swap_min_images: int = 10  # a swap round happens only when MORE than this many images prefer it
    outlier_sigmas: float | None = None  # drop training images with error > mean + this · std, then refit
    source: str = ""

    def __post_init__(self) -> None:
        if self.error_form not in (MEAN_L2, SUMMED_ABS) or self.normaliser not in (IOD, IMAGE_SIDE, PIXELS):
            raise ValueError(f"protocol {self.name}: unknown error form {self.error_form!r} or normaliser {self.normaliser!r}")
        if self.normaliser == IOD and self.eye_landmarks is None:
            raise ValueError(f"protocol {self.name}: the inter-ocular normaliser needs eye_landmarks")
        flat = [i for pair in self.swap_pairs for i in pair]
        if len(set(flat)) != len(flat) or any(not 0 <= i < self.num_landmarks for i in flat):
            raise ValueError(f"protocol {self.name}: swap pairs must be disjoint landmark indices below {self.num_landmarks}")

    @property
    def units(self) -> str:
        return {IOD: "% of the inter-ocular distance", IMAGE_SIDE: "% of the image side",
                PIXELS: f"pixels at {self.resolution} px, summed over landmarks and coordinates"}[self.normaliser]

    def swap_permutation(self) -> np.ndarray:
        """Landmark order after the left/right swap (identity where unpaired)."""
        permutation = np.arange(self.num_landmarks)
        for a, b in self.swap_pairs:
            permutation[a], permutation[b] = b, a
        return permutation


_MAFL_SOURCE = "AutoLink datasets/celeba_wild.py and GANSeg test_seg.py (regress_kp / test_epoch_end)"
PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol("mafl", "celeba", "mafl_train", "mafl_test", 5, with_bias=False, per_landmark=False,
                 error_form=MEAN_L2, normaliser=IOD, resolution=128, eye_landmarks=(0, 1), source=_MAFL_SOURCE),
        Protocol("celeba_wild", "celeba_wild", "mafl_train", "mafl_test", 5, with_bias=False, per_landmark=False,
                 error_form=MEAN_L2, normaliser=IOD, resolution=128, eye_landmarks=(0, 1), source=_MAFL_SOURCE),
        Protocol("cub", "cub", "train", "test", 15, with_bias=False, per_landmark=True,
                 error_form=MEAN_L2, normaliser=IMAGE_SIDE, resolution=128,
                 source="AutoLink datasets/cub.py and cub_three.py"),
        *(Protocol(f"cub_{c:03d}", "cub", "train_three", f"test_{c:03d}", 15, with_bias=False, per_landmark=True,
                   error_form=MEAN_L2, normaliser=IMAGE_SIDE, resolution=128, source="AutoLink datasets/cub_three.py")
          for c in (1, 2, 3)),
        Protocol("taichi", "taichi", "regression_train", "test", 18, with_bias=True, per_landmark=True,
                 error_form=SUMMED_ABS, normaliser=PIXELS, resolution=256,
                 source="AutoLink datasets/taichi.py and GANSeg test_seg.py"),
        Protocol("h36m", "h36m_simplified", "train", "test", 32, with_bias=False, per_landmark=False,
                 error_form=MEAN_L2, normaliser=IMAGE_SIDE, resolution=128, swap_pairs=H36M_SWAP_PAIRS,
                 swap_min_images=10, outlier_sigmas=3.0,
                 source="AutoLink datasets/h36m.py; swap pairs from KeypointGAN data/human36m_skeleton.py"),
    )
}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """The registered protocol ``protocol`` (or ``protocol`` itself); ValueError naming the known ones."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown landmark protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]


@dataclasses.dataclass(frozen=True)
class Regression:
    """A fitted keypoints → landmarks map: ``weights`` (L, 2K [+1], 2), one (features → x, y) block per landmark."""

    weights: np.ndarray
    bias: bool


def _points(array: Any, name: str) -> np.ndarray:
    points = np.asarray(array, np.float64)
    if points.ndim != 3 or points.shape[-1] != 2 or len(points) == 0:
        raise ValueError(f"{name} must be a non-empty (N, P, 2) array, got shape {points.shape}")
    return points


def _visibility(visibility: Any, landmarks: np.ndarray, name: str) -> np.ndarray:
    if visibility is None:
        return np.ones(landmarks.shape[:2], bool)
    vis = np.asarray(visibility)
    if vis.shape != landmarks.shape[:2]:
        raise ValueError(f"{name} must have shape {landmarks.shape[:2]} (N, L), got {vis.shape}")
    if not np.all((vis == 0) | (vis == 1)):
        raise ValueError(f"{name} must hold only 0 and 1")
    return vis.astype(bool)


def _features(keypoints: np.ndarray, bias: bool) -> np.ndarray:
    """(N, K, 2) → (N, 2K) rows (x0, y0, x1, …), with a trailing column of ones when ``bias``."""
    x = keypoints.reshape(len(keypoints), -1)
    if not np.all(np.isfinite(x)):
        raise ValueError("keypoints must be finite")
    return np.concatenate([x, np.ones((len(x), 1))], axis=1) if bias else x


def fit_regression(keypoints: Any, landmarks: Any, visibility: Any = None, bias: bool = False,
                   allow_unfitted: bool = False) -> Regression:
    """Least-squares map keypoints (N, K, 2) → landmarks (N, L, 2), in float64, on the coordinates given.

    Every landmark is fitted only on the images where it is visible (``visibility`` (N, L), ``None`` =
    all); when all are visible this is one joint fit (least squares decouples over targets). ``bias``
    appends a constant feature. The solver is :func:`~lkgan_jax.evaluation.landmarks.fit_linear_map`
    (normal equations, ridge fallback when ill-conditioned, as the authors' code falls back).
    ``allow_unfitted``: a landmark visible in no image gets zero weights (its prediction is the origin
    of the frame, as in the authors' CUB code) instead of an error.
    """
    keypoints, landmarks = _points(keypoints, "keypoints"), _points(landmarks, "landmarks")
    if len(keypoints) != len(landmarks):
        raise ValueError(f"keypoints and landmarks disagree on the number of images: {len(keypoints)} vs {len(landmarks)}")
    vis = _visibility(visibility, landmarks, "visibility")
    x = _features(keypoints, bias)
    n, num_landmarks = landmarks.shape[:2]
    if vis.all():
        w = fit_linear_map(x, landmarks.reshape(n, -1))  # (P, 2L)
        return Regression(w.reshape(len(w), num_landmarks, 2).transpose(1, 0, 2), bias)
    blocks = []
    for landmark in range(num_landmarks):
        rows = vis[:, landmark]
        if not rows.any():
            if not allow_unfitted:
                raise ValueError(f"landmark {landmark} is visible in no regression-train image; it cannot be fitted")
            blocks.append(np.zeros((x.shape[1], 2)))
            continue
        blocks.append(fit_linear_map(x[rows], landmarks[rows, landmark]))
    return Regression(np.stack(blocks), bias)


def predict(regression: Regression, keypoints: Any) -> np.ndarray:
    """Landmarks (N, L, 2) predicted from keypoints (N, K, 2) by a :class:`Regression`."""
    x = _features(_points(keypoints, "keypoints"), regression.bias)
    if x.shape[1] != regression.weights.shape[1]:
        raise ValueError(f"keypoints give {x.shape[1]} features but the regression was fitted on {regression.weights.shape[1]}")
    return np.einsum("np,lpc->nlc", x, regression.weights)


def _image_mean_l2(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(N,) mean over landmarks of the L2 distance."""
    return np.linalg.norm(predicted - target, axis=-1).mean(axis=1)


def _swap_until_stable(
    targets: np.ndarray, permutation: np.ndarray, min_images: int, predict_for: Callable[[np.ndarray], np.ndarray]
):
    """The authors' swap rounds: while more than ``min_images`` images are closer (mean L2) to their
    swapped targets than to their targets, swap those images' targets. ``predict_for(targets)`` gives the
    predictions for the current targets (a refit in training, fixed at test).

    Returns (targets, predictions, per-image distances, swapped mask, rounds)."""
    swapped = np.zeros(len(targets), bool)
    for rounds in range(MAX_SWAP_ROUNDS + 1):
        predicted = predict_for(targets)
        distance = _image_mean_l2(predicted, targets)
        alternative = targets[:, permutation]
        prefer = distance > _image_mean_l2(predicted, alternative)
        if prefer.sum() <= min_images or rounds == MAX_SWAP_ROUNDS:
            return targets, predicted, distance, swapped, rounds
        targets = np.where(prefer[:, None, None], alternative, targets)
        swapped ^= prefer


def _check_split(keypoints: Any, landmarks: Any, visibility: Any, protocol: Protocol, split: str):
    keypoints = _points(keypoints, f"{split} keypoints")
    landmarks = _points(landmarks, f"{split} landmarks")
    if len(keypoints) != len(landmarks):
        raise ValueError(f"{split}: {len(keypoints)} keypoint rows but {len(landmarks)} landmark rows")
    if landmarks.shape[1] != protocol.num_landmarks:
        raise ValueError(f"{split}: protocol {protocol.name} expects {protocol.num_landmarks} landmarks, got {landmarks.shape[1]}")
    vis = _visibility(visibility, landmarks, f"{split} visibility")
    if not protocol.per_landmark and not vis.all():
        raise ValueError(f"{split}: protocol {protocol.name} expects every landmark visible (it has no visibility rule)")
    if not vis.any():
        raise ValueError(f"{split}: no visible landmark in any image")
    return keypoints, np.where(vis[..., None], landmarks, 0.0), vis


def _to_unit(points: np.ndarray) -> np.ndarray:
    """[-1, 1] → the authors' regression frame (u + 1) / 2 (origin at the first pixel centre)."""
    return (points + 1.0) / 2.0


def protocol_error(
    protocol: str | Protocol,
    train_kp: Any, train_lm: Any, train_vis: Any,
    test_kp: Any, test_lm: Any, test_vis: Any,
) -> dict[str, Any]:
    """Fits ``protocol``'s regression on the regression-train split and scores the test split.

    Returns ``error`` (the headline number, in ``units``), ``per_landmark`` (L values in the same units:
    for MEAN_L2 the mean over that landmark's visible test images, for SUMMED_ABS that landmark's x + y
    mean absolute error; ``None`` for a landmark visible in no test image), ``num_train``, ``num_test``,
    ``num_visible_test`` (visible test entries), ``unfitted_landmarks`` and, for protocols with a swap,
    ``error_without_swap``, ``num_swapped_test``, ``train_swap_rounds``, ``num_swapped_train`` and
    ``num_outliers_dropped``.

    A per-landmark protocol gives a landmark that is visible in no regression-train image zero weights,
    as the authors' CUB code does: it is predicted at the origin of the fitting frame (the first pixel
    centre) and scored where a test image shows it. Such landmarks are listed in ``unfitted_landmarks``
    (never more than a rare part of a small split in practice).
    """
    p = get_protocol(protocol)
    train_kp, train_lm, train_vis = _check_split(train_kp, train_lm, train_vis, p, p.regression_split)
    test_kp, test_lm, test_vis = _check_split(test_kp, test_lm, test_vis, p, p.test_split)
    if test_kp.shape[1] != train_kp.shape[1]:
        raise ValueError(f"{train_kp.shape[1]} keypoints in {p.regression_split} but {test_kp.shape[1]} in {p.test_split}")
    x_train, y_train, x_test = _to_unit(train_kp), _to_unit(train_lm), _to_unit(test_kp)
    extra: dict[str, Any] = {}

    if p.swap_pairs:
        permutation = p.swap_permutation()

        def refit(targets: np.ndarray) -> np.ndarray:
            return predict(fit_regression(x_train, targets, bias=p.with_bias), x_train)

        y_train, _, distance, swapped, rounds = _swap_until_stable(y_train, permutation, p.swap_min_images, refit)
        keep = np.ones(len(distance), bool)
        if p.outlier_sigmas is not None and len(distance) > 1:
            # ≤ rather than the authors' <: identical except that a perfect fit (std 0) keeps every image
            keep = distance <= distance.mean() + p.outlier_sigmas * distance.std(ddof=1)
        regression = fit_regression(x_train[keep], y_train[keep], bias=p.with_bias)
        extra.update(train_swap_rounds=rounds, num_swapped_train=int(swapped.sum()), num_outliers_dropped=int((~keep).sum()))
    else:
        regression = fit_regression(x_train, y_train, train_vis, bias=p.with_bias, allow_unfitted=True)
    predicted = 2.0 * predict(regression, x_test) - 1.0  # back to [-1, 1]
    unfitted = [int(i) for i in np.flatnonzero(~train_vis.any(axis=0))]
    return {**_score(p, predicted, test_lm, test_vis), "num_train": int(len(train_kp)), "unfitted_landmarks": unfitted, **extra}


def mean_landmark_error(protocol: str | Protocol, train_lm: Any, train_vis: Any, test_lm: Any, test_vis: Any) -> dict[str, Any]:
    """The constant baseline under ``protocol``: every test image predicted as the mean regression-train
    landmarks (each landmark's mean over the images where it is visible; the origin of the fitting frame,
    like :func:`protocol_error`'s zero weights, for one visible in none), scored as :func:`protocol_error`
    scores (the test-time swap rule included). Same keys as :func:`protocol_error` without the
    training-swap counts."""
    p = get_protocol(protocol)
    train_lm, test_lm = _points(train_lm, f"{p.regression_split} landmarks"), _points(test_lm, f"{p.test_split} landmarks")
    _, train_lm, train_vis = _check_split(np.zeros((len(train_lm), 1, 2)), train_lm, train_vis, p, p.regression_split)
    _, test_lm, test_vis = _check_split(np.zeros((len(test_lm), 1, 2)), test_lm, test_vis, p, p.test_split)
    counts = train_vis.sum(axis=0)
    mean = (train_lm * train_vis[..., None]).sum(axis=0) / np.maximum(counts, 1)[:, None]  # (L, 2)
    mean[counts == 0] = -1.0  # the origin of the (u + 1) / 2 frame, where a zero-weight regression predicts
    predicted = np.broadcast_to(mean, test_lm.shape)
    unfitted = [int(i) for i in np.flatnonzero(counts == 0)]
    return {**_score(p, predicted, test_lm, test_vis), "num_train": int(len(train_lm)), "unfitted_landmarks": unfitted}


def _score(protocol: str | Protocol, predicted: Any, test_lm: np.ndarray, test_vis: np.ndarray) -> dict[str, Any]:
    """``protocol``'s error of predicted landmarks (N, L, 2) against checked test landmarks and visibility
    (``_check_split``: landmarks 0 where not visible) → ``protocol``, ``error``, ``units``,
    ``per_landmark``, ``num_test``, ``num_visible_test`` (and the swap protocols' ``error_without_swap``,
    ``num_swapped_test``)."""
    p = get_protocol(protocol)
    predicted = np.asarray(predicted, np.float64)
    extra: dict[str, Any] = {}
    resolution, to_pixels = p.resolution, float(pixels_per_unit(p.resolution))
    if p.swap_pairs:
        extra["error_without_swap"] = float(_image_mean_l2(predicted, test_lm).mean() * to_pixels / resolution * 100.0)
        test_lm, _, _, swapped, _ = _swap_until_stable(test_lm, p.swap_permutation(), p.swap_min_images, lambda _: predicted)
        extra["num_swapped_test"] = int(swapped.sum())

    counts = test_vis.sum(axis=0)  # visible test images per landmark
    if p.error_form == SUMMED_ABS:  # per landmark and coordinate: mean |error| over visible images, then Σ
        absolute = (np.abs(predicted - test_lm) * to_pixels * test_vis[..., None]).sum(axis=0)  # (L, 2)
        per_landmark = absolute.sum(axis=-1) / np.maximum(counts, 1)  # x + y; 0 where never visible
        error = float(per_landmark.sum())
    else:  # mean over the visible (image, landmark) entries
        distance = np.linalg.norm(predicted - test_lm, axis=-1)  # (N, L), normalised units
        if p.normaliser == IOD:
            left, right = p.eye_landmarks
            inter_ocular = np.linalg.norm(test_lm[:, left] - test_lm[:, right], axis=-1)  # each image's own
            if np.any(inter_ocular <= 0):
                raise ValueError(f"{p.test_split}: an image has coinciding eye landmarks (inter-ocular distance 0)")
            scaled = distance / inter_ocular[:, None] * 100.0
        else:
            scaled = distance * to_pixels / resolution * 100.0
        per_landmark = (scaled * test_vis).sum(axis=0) / np.maximum(counts, 1)
        error = float((scaled * test_vis).sum() / test_vis.sum())
    return {
        "protocol": p.name,
        "error": error,
        "units": p.units,
        "per_landmark": [float(v) if c else None for v, c in zip(per_landmark, counts)],
        "num_test": int(len(test_lm)),
        "num_visible_test": int(test_vis.sum()),
        **extra,
    }
