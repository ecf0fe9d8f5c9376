"""The landmark-regression protocol (docs/design.md §7.5) for detected keypoints.

Detected keypoints (N, K, 2) → ground-truth landmarks (N, L, 2) by one closed-form linear map without
bias (x and y jointly: (N, 2K) @ W (2K, 2L)), fitted on a regression-train split and applied to a test
split. Errors, with keypoints and landmarks in the convention of docs/design.md §1 ((x, y) in [-1, 1]):

  error_iod_pct   mean over test images and landmarks of ‖pred − gt‖ / ‖gt[eye0] − gt[eye1]‖, × 100
  error_size_pct  mean over test images and landmarks of ‖pred − gt‖ in pixels / image side, × 100

Labelled sources: ``procedural`` (the procedural faces' 10 landmarks; regression-train from the train
split, test from the test split), ``folder:PATH`` (an image folder with ``landmarks.csv`` in pixel
coordinates) and ``arrayrecord:PATH`` (shards with landmarks, ``lkgan prepare ... --format
arrayrecord``); stored sets are split by a seeded shuffle. In a multi-process job every process loads
the splits and detects a share of the images; the regression runs whole on every process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from lkgan_jax import parallel
from lkgan_jax.conventions import pixels_per_unit, uint8_to_float
from lkgan_jax.data.export import LANDMARKS_CSV
from lkgan_jax.data.array_records import read_metadata
from lkgan_jax.data.sources import ARRAYRECORD, FOLDER, PROCEDURAL, TFDS, UNLABELLED_TFDS, ImageSource
from lkgan_jax.utils.batching import padded_batches

if TYPE_CHECKING:
    from lkgan_jax.detection.inference import TrainedDetector
    from lkgan_jax.models.sampling import TrainedGenerator

RIDGE = 1.0  # fallback regulariser when XᵀX is singular or ill-conditioned (docs/design.md §7.5)
MAX_CONDITION = 1e12


def fit_linear_map(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Least squares without bias: (N, P), (N, Q) → W (P, Q) minimising ‖X W − Y‖², in float64.

    Solves the normal equations; when XᵀX is singular or ill-conditioned, uses ridge (XᵀX + λI).
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"fit_linear_map needs (N, P) and (N, Q) arrays, got {x.shape} and {y.shape}")
    gram = x.T @ x
    if np.linalg.cond(gram) > MAX_CONDITION:
        gram = gram + RIDGE * np.eye(len(gram))
    return np.linalg.solve(gram, x.T @ y)


def regress_landmarks(
    train_keypoints: np.ndarray, train_landmarks: np.ndarray, test_keypoints: np.ndarray
) -> np.ndarray:
    """Fits keypoints → landmarks on the train split and predicts the test landmarks (N_test, L, 2)."""
    n_train, n_test = len(train_keypoints), len(test_keypoints)
    w = fit_linear_map(train_keypoints.reshape(n_train, -1), train_landmarks.reshape(n_train, -1))
    return (np.asarray(test_keypoints, np.float64).reshape(n_test, -1) @ w).reshape(n_test, -1, 2)


def per_image_errors(
    predicted: np.ndarray, target: np.ndarray, resolution: int, eye_landmarks: tuple[int, int] = (0, 1)
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image mean landmark errors (N,), in % of the inter-ocular distance and in % of the image side."""
    predicted = np.asarray(predicted, np.float64)
    target = np.asarray(target, np.float64)
    if predicted.shape != target.shape or predicted.ndim != 3 or predicted.shape[-1] != 2:
        raise ValueError(f"landmark errors need two (N, L, 2) arrays, got {predicted.shape} and {target.shape}")
    distance = np.linalg.norm(predicted - target, axis=-1)  # (N, L), normalised units
    left, right = eye_landmarks
    inter_ocular = np.linalg.norm(target[:, left] - target[:, right], axis=-1)  # (N,)
    if np.any(inter_ocular <= 0):
        raise ValueError("an image has coinciding eye landmarks (inter-ocular distance 0)")
    pixels = distance * pixels_per_unit(resolution)
    return np.mean(distance / inter_ocular[:, None], axis=1) * 100.0, np.mean(pixels / resolution, axis=1) * 100.0


def landmark_errors(
    predicted: np.ndarray, target: np.ndarray, resolution: int, eye_landmarks: tuple[int, int] = (0, 1)
) -> dict[str, float]:
    """``error_iod_pct`` and ``error_size_pct`` of predicted vs target landmarks (N, L, 2), normalised coords."""
    iod, size = per_image_errors(predicted, target, resolution, eye_landmarks)
    return {"error_iod_pct": float(np.mean(iod)), "error_size_pct": float(np.mean(size))}


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """uint8 images (N, R, R, 3) with landmarks (N, L, 2) in normalised coordinates."""

    images: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def _stack(items: list[dict]) -> LabelledSplit:
    return LabelledSplit(np.stack([i["image"] for i in items]), np.stack([i["landmarks"] for i in items]).astype(np.float32))


def check_labelled(source: ImageSource) -> None:
    """A one-line error unless ``source`` carries landmarks (procedural faces, a folder with landmarks.csv,
    or an ArrayRecord set with landmarks)."""
    if source.kind == FOLDER and not os.path.isfile(os.path.join(source.path, LANDMARKS_CSV)):
        raise ValueError(f"{source}: landmarks need {LANDMARKS_CSV} in the folder (the format `lkgan prepare` writes)")
    if source.kind == ARRAYRECORD and "landmarks" not in read_metadata(source.path)["keys"]:
        raise ValueError(f"{source}: this ArrayRecord set has no landmarks (prepare it from a source with landmarks)")
    if source.kind == TFDS:
        raise ValueError(f"{source}: {UNLABELLED_TFDS}")


def load_labelled_splits(
    source: ImageSource | str, resolution: int, num_train: int, num_test: int, test_fraction: float, seed: int, data_seed: int = 0
) -> tuple[LabelledSplit, LabelledSplit]:
    """(regression-train, test) splits of ``source`` (``procedural``, ``folder:PATH``, ``arrayrecord:PATH``) at ``resolution``."""
    source = ImageSource.parse(source) if isinstance(source, str) else source
    if num_train <= 0 or num_test <= 0:
        raise ValueError(f"landmark splits need positive sizes, got num_train={num_train}, num_test={num_test}")
    if source.kind == PROCEDURAL:
        train = source.open(resolution, data_seed, split="train", size=num_train)
        test = source.open(resolution, data_seed, split="test", size=num_test)
        return _stack([train[i] for i in range(num_train)]), _stack([test[i] for i in range(num_test)])
    stored = source.open(resolution, require_landmarks=True)
    items = [item for item in map(stored.read, range(len(stored))) if item is not None]
    items = [item for item in items if np.all(np.isfinite(item["landmarks"]))]
    if len(items) < 2:
        raise ValueError(f"{source}: fewer than 2 readable images with landmarks")
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = min(num_test, max(1, int(round(test_fraction * len(items)))))
    test_idx, train_idx = order[:n_test], order[n_test:][:num_train]
    if len(train_idx) == 0:
        raise ValueError(f"{source}: no images left for the regression-train split")
    return _stack([items[i] for i in train_idx]), _stack([items[i] for i in test_idx])


def in_batches(function: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """``function`` over ``inputs`` in fixed-shape batches (the last one padded, padding dropped)."""
    batches = padded_batches(len(inputs), batch_size)
    return np.concatenate([np.asarray(function(inputs[indices]))[:count] for indices, count in batches])


def protocol_errors(
    detect: Callable[[np.ndarray], np.ndarray],
    train: LabelledSplit,
    test: LabelledSplit,
    resolution: int,
    eye_landmarks: tuple[int, int],
    batch_size: int,
) -> dict[str, float]:
    """Runs ``detect`` (float images in [-1, 1] → keypoints) on both splits, regresses, scores the test split.

    In a multi-process job each process detects a share of the images (``parallel.map_rows``).
    """
    def keypoints(split: LabelledSplit) -> np.ndarray:
        return parallel.map_rows(lambda index: detect(uint8_to_float(split.images[index])), len(split), batch_size)

    predicted = regress_landmarks(keypoints(train), train.landmarks, keypoints(test))
    return landmark_errors(predicted, test.landmarks, resolution, eye_landmarks)


def mean_landmark_errors(train: LabelledSplit, test: LabelledSplit, resolution: int, eye_landmarks: tuple[int, int]) -> dict[str, float]:
    """The constant baseline: every test image gets the mean regression-train landmarks."""
    constant = np.broadcast_to(train.landmarks.mean(axis=0), test.landmarks.shape)
    return landmark_errors(constant, test.landmarks, resolution, eye_landmarks)


def landmark_metrics(
    detector: TrainedDetector, detect_config: Any, generator: TrainedGenerator, source: ImageSource, eval_config: Any, data_seed: int = 0
) -> dict[str, float | int | str]:
    """The landmark error of ``detector``, its baselines and the generated-pairs sanity error.

    ``generator`` is the one whose pairs the detector was trained on. Keys (``landmarks/`` prefix):
    ``error_iod_pct``, ``error_size_pct``, ``num_train``, ``num_test``; baselines
    ``random_detector/error_*`` (same architecture, random weights) and ``mean_landmarks/error_*``
    (constant prediction); ``generated/detector_error_size_pct`` (detector vs the generator's own
    keypoints on fresh generated images); provenance ``detector_step``, ``generator_step``, ``source``.
    """
    import jax

    from lkgan_jax.detection.inference import random_detector
    from lkgan_jax.models.sampling import generated_pairs

    e = eval_config
    eyes = tuple(e.eye_landmarks)
    resolution = generator.resolution
    train, test = load_labelled_splits(
        source, resolution, e.landmarks_num_train, e.landmarks_num_test, e.landmarks_test_fraction, e.seed, data_seed
    )
    baseline = random_detector(detect_config, generator.num_parts, resolution, seed=e.seed)
    results = {
        "trained": protocol_errors(detector.detect, train, test, resolution, eyes, e.batch_size),
        "random_detector": protocol_errors(baseline.detect, train, test, resolution, eyes, e.batch_size),
        "mean_landmarks": mean_landmark_errors(train, test, resolution, eyes),
    }
    pairs = jax.jit(generated_pairs, static_argnums=(0, 3))  # the weights are an argument, not constants

    def distances(batches: range) -> np.ndarray:
        """Detector-vs-generator keypoint distances (len(batches) · batch_size, K) of generated batches ``batches``."""
        rows = []
        for i in batches:
            images, latent = pairs(generator.generator, generator.variables, jax.random.fold_in(jax.random.key(e.seed), i), e.batch_size)
            rows.append(np.linalg.norm(np.asarray(detector.detect(images)) - np.asarray(latent.keypoints), axis=-1))
        return np.concatenate(rows)

    generated = parallel.sharded_rows(distances, -(-e.generated_pairs // e.batch_size))
    generated_error = float(np.mean(generated[: e.generated_pairs]) * pixels_per_unit(resolution) / resolution * 100.0)
    metrics: dict[str, float | int | str] = {f"landmarks/{k}": v for k, v in results["trained"].items()}
    for name in ("random_detector", "mean_landmarks"):
        metrics.update({f"landmarks/{name}/{k}": v for k, v in results[name].items()})
    metrics.update({
        "landmarks/generated/detector_error_size_pct": generated_error,
        "landmarks/num_train": len(train),
        "landmarks/num_test": len(test),
        "landmarks/num_landmarks": int(test.landmarks.shape[1]),
        "landmarks/detector_step": detector.step,
        "landmarks/generator_step": generator.step,
        "landmarks/source": str(source),
    })
    return metrics
