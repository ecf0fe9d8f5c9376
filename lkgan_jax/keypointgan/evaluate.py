"""KeypointGAN's landmark evaluation (docs/design.md §13.8): direct errors, flips, regression, baselines.

KeypointGAN's keypoints take the prior's meaning, so they are compared with the ground truth directly,
with no regression. A skeleton image is left/right symmetric, so a prediction may come out mirrored;
three direct errors handle that (keys under ``landmarks/``):

  direct/error_*            primary: flips corrected without ground truth by the frozen pre-trained η
                            ("offline" η): it reads β(p) back, and p is swapped left/right when that
                            reading lies closer to the swapped p than to p;
  direct_min_flip/error_*   per image, the smaller error against the ground truth and its mirror labels;
  direct/correct_flip_fraction   how often the offline correction picks the orientation that the
                            ground truth prefers;
  direct_raw/error_*        no flip handling.

``error_*`` (after the landmark regression of ``lkgan_jax.evaluation.landmarks``, on the corrected
keypoints), the same two baselines as ``landmarks`` (``random_detector``: Φ and η with random weights;
``mean_landmarks``: the mean regression-train landmarks for every image), and ``mean_prior_pose`` (the
mean pose of the prior, a ground-truth-free constant) complete the table.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.sources import ImageSource
from lkgan_jax.evaluation.landmarks import (
    LabelledSplit, in_batches, landmark_errors, load_labelled_splits, mean_landmark_errors, per_image_errors, regress_landmarks,
)
from lkgan_jax.keypointgan.model import KeypointGan, make_keypointgan
from lkgan_jax.keypointgan.skeleton import swap_left_right
from lkgan_jax.workdir import read_config


@dataclasses.dataclass(frozen=True)
class TrainedKeypointGan:
    """The detector of a KeypointGAN run: Φ (eval mode), the fine-tuned η and the frozen offline η."""

    kg: KeypointGan
    encoder_variables: Any
    eta: Any
    offline_eta: Any
    step: int
    config: ml_collections.ConfigDict

    def keypoints(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float images (B, R, R, 3) in [-1, 1] → (keypoints, offline η's reading of their skeleton), (B, K, 2) each."""
        points, read_back = _jitted_detect(self.kg)(self.encoder_variables, self.eta, self.offline_eta, jnp.asarray(images))
        return np.asarray(points), np.asarray(read_back)

    def corrected_keypoints(self, images: np.ndarray) -> np.ndarray:
        """Keypoints (B, K, 2) of float images in [-1, 1], flips corrected by the offline η (no ground truth)."""
        return correct_flips(*self.keypoints(images), self.kg.flip_pairs)[0]


@functools.lru_cache(maxsize=8)
def _jitted_detect(kg: KeypointGan) -> Callable:
    """(Φ variables, η, offline η, images) → (p, offline η's reading of β(p)), compiled once per model."""

    @jax.jit
    def detect(encoder_variables, eta, offline_eta, images):
        points = kg.detect(encoder_variables, eta, images)
        return points, kg.keypoints(offline_eta, kg.render(points))

    return detect


def encoder_and_regressor_shapes(kg: KeypointGan) -> dict[str, Any]:
    r = kg.resolution
    encoder = jax.eval_shape(lambda: kg.encoder.init(jax.random.key(0), jnp.zeros((1, r, r, 3)), train=False))
    eta = jax.eval_shape(lambda: kg.regressor.init(jax.random.key(0), jnp.zeros((1, r, r, 1)))["params"])
    return {"g_params": {"encoder": encoder["params"]}, "g_stats": {"encoder": encoder["batch_stats"]}, "eta": eta, "offline_eta": eta}


def is_keypointgan_run(config: ml_collections.ConfigDict) -> bool:
    return config.get("system", "") == "keypointgan"


def load_keypointgan(workdir: str | pathlib.Path, step: int | None = None) -> TrainedKeypointGan:
    """The detector of the KeypointGAN run in ``workdir`` at ``step`` (default: latest); reads only Φ and η."""
    from lkgan_jax.pretrained import restore_state_parts

    workdir = pathlib.Path(workdir)
    config = read_config(workdir)
    kg = make_keypointgan(config.model, config.data.resolution)
    restored, step = restore_state_parts(workdir, step, encoder_and_regressor_shapes(kg), "the KeypointGAN detector")
    encoder = {"params": restored["g_params"]["encoder"], "batch_stats": restored["g_stats"]["encoder"]}
    return TrainedKeypointGan(kg, encoder, restored["eta"], restored["offline_eta"], step, config)


def random_keypointgan(config: ml_collections.ConfigDict, seed: int) -> TrainedKeypointGan:
    """The untrained baseline: Φ and η with random weights (η also serves as its own offline η)."""
    kg = make_keypointgan(config.model, config.data.resolution)
    r = kg.resolution
    encoder_key, eta_key = jax.random.split(jax.random.key(seed))
    encoder = jax.jit(kg.encoder.init, static_argnames="train")(encoder_key, jnp.zeros((1, r, r, 3)), train=False)
    eta = jax.jit(kg.regressor.init)(eta_key, jnp.zeros((1, r, r, 1)))["params"]
    return TrainedKeypointGan(kg, encoder, eta, eta, 0, config)


def correct_flips(points: np.ndarray, read_back: np.ndarray, pairs: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Swaps p left/right where the offline reading lies closer to the swapped p → (corrected, swapped (N,) bool)."""
    swapped_points = swap_left_right(points, pairs)
    keep = np.mean(np.linalg.norm(read_back - points, axis=-1), axis=-1)
    swap = np.mean(np.linalg.norm(read_back - swapped_points, axis=-1), axis=-1)
    swapped = swap < keep
    return np.where(swapped[:, None, None], swapped_points, points), swapped


def direct_errors(
    points: np.ndarray, read_back: np.ndarray, target: np.ndarray, pairs: tuple, resolution: int, eyes: tuple[int, int]
) -> dict[str, float]:
    """The three direct errors of the module docstring (keys without the ``landmarks/`` prefix)."""
    corrected, swapped = correct_flips(points, read_back, pairs)
    errors = {f"direct/{k}": v for k, v in landmark_errors(corrected, target, resolution, eyes).items()}
    errors.update({f"direct_raw/{k}": v for k, v in landmark_errors(points, target, resolution, eyes).items()})
    as_is = per_image_errors(points, target, resolution, eyes)
    mirrored = per_image_errors(swap_left_right(points, pairs), target, resolution, eyes)
    errors["direct_min_flip/error_iod_pct"] = float(np.mean(np.minimum(as_is[0], mirrored[0])))
    errors["direct_min_flip/error_size_pct"] = float(np.mean(np.minimum(as_is[1], mirrored[1])))
    if pairs:
        errors["direct/correct_flip_fraction"] = float(np.mean(swapped == (mirrored[0] < as_is[0])))
    return errors


def _keypoints(model: TrainedKeypointGan, split: LabelledSplit, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    both = in_batches(lambda x: np.concatenate(model.keypoints(uint8_to_float(x)), axis=1), split.images, batch_size)
    k = model.kg.num_points
    return both[:, :k], both[:, k:]


def detector_errors(model: TrainedKeypointGan, train: LabelledSplit, test: LabelledSplit, eval_config: Any) -> dict[str, float]:
    """Direct errors on ``test`` and the regression protocol (fitted on ``train``) on flip-corrected keypoints."""
    eyes, resolution, pairs = tuple(eval_config.eye_landmarks), model.kg.resolution, model.kg.flip_pairs
    test_points, test_read_back = _keypoints(model, test, eval_config.batch_size)
    train_points, train_read_back = _keypoints(model, train, eval_config.batch_size)
    results: dict[str, float] = {}
    if test_points.shape[1] == test.landmarks.shape[1]:
        results.update(direct_errors(test_points, test_read_back, test.landmarks, pairs, resolution, eyes))
    regressed = regress_landmarks(correct_flips(train_points, train_read_back, pairs)[0], train.landmarks,
                                  correct_flips(test_points, test_read_back, pairs)[0])
    results.update(landmark_errors(regressed, test.landmarks, resolution, eyes))
    return results


def keypointgan_landmark_metrics(
    model: TrainedKeypointGan, source: ImageSource, eval_config: Any, data_seed: int = 0, prior_mean: np.ndarray | None = None,
) -> dict[str, Any]:
    """``landmarks/...`` metrics of a KeypointGAN run (module docstring) on the labelled ``source``."""
    e = eval_config
    eyes, resolution = tuple(e.eye_landmarks), model.kg.resolution
    train, test = load_labelled_splits(source, resolution, e.landmarks_num_train, e.landmarks_num_test,
                                       e.landmarks_test_fraction, e.seed, data_seed)
    metrics: dict[str, Any] = {f"landmarks/{k}": v for k, v in detector_errors(model, train, test, e).items()}
    baseline = detector_errors(random_keypointgan(model.config, e.seed), train, test, e)
    metrics.update({f"landmarks/random_detector/{k}": v for k, v in baseline.items()})
    metrics.update({f"landmarks/mean_landmarks/{k}": v for k, v in mean_landmark_errors(train, test, resolution, eyes).items()})
    if prior_mean is not None and prior_mean.shape == test.landmarks.shape[1:]:
        constant = np.broadcast_to(prior_mean, test.landmarks.shape)
        metrics.update({f"landmarks/mean_prior_pose/{k}": v for k, v in landmark_errors(constant, test.landmarks, resolution, eyes).items()})
    metrics.update({
        "landmarks/num_train": len(train),
        "landmarks/num_test": len(test),
        "landmarks/num_landmarks": int(test.landmarks.shape[1]),
        "landmarks/detector_step": model.step,
        "landmarks/source": str(source),
        "perceptual": model.config.get("perceptual", {}).get("used", ""),
    })
    return metrics


def training_evaluator(trainer: Any) -> Callable[[Any, int], dict[str, float]]:
    """The in-training evaluation: direct errors on ``train.eval_num_test`` test images of the run's data."""
    config = trainer.config
    e = config.eval
    source = ImageSource.from_data_config(config.data)
    _, test = load_labelled_splits(source, config.data.resolution, 1, config.train.eval_num_test,
                                   e.landmarks_test_fraction, e.seed, config.data.seed)

    def evaluate(state: Any, step: int) -> dict[str, float]:
        encoder = {"params": state.g_params["encoder"], "batch_stats": state.g_stats["encoder"]}
        model = TrainedKeypointGan(trainer.kg, encoder, state.eta, state.offline_eta, step, config)
        points, read_back = _keypoints(model, test, e.batch_size)
        errors = direct_errors(points, read_back, test.landmarks, trainer.kg.flip_pairs, config.data.resolution, tuple(e.eye_landmarks))
        return {f"landmarks/{k}": v for k, v in errors.items() if "iod" in k or "flip_fraction" in k}

    return evaluate
