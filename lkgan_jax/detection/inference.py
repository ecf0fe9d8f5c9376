"""A trained keypoint detector, ready to detect: ``load_detector(workdir)``, and the random-weight baseline.

``TrainedDetector.detect(images (B, R, R, 3) in [-1, 1]) -> keypoints (B, K, 2)`` runs in eval mode
(BatchNorm running statistics). ``DetectorRun`` adds what the landmark metric needs besides: the detect
config and the generator whose pairs the detector was trained on.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from lkgan_jax.detection.detector import KeypointDetector, make_detector
from lkgan_jax.models.factory import generator_resolution
from lkgan_jax.models.sampling import TrainedGenerator
from lkgan_jax.pretrained import load_generator, restore_state_parts
from lkgan_jax.train.supervised import init_supervised_state
from lkgan_jax.workdir import CONFIG_FILE, DETECTOR_DIR, read_config


@dataclasses.dataclass(frozen=True)
class TrainedDetector:
    """A detector with its variables; ``detect(images)`` → keypoints (B, K, 2), eval mode."""

    detector: KeypointDetector
    variables: Any
    step: int

    def detect(self, images: jax.Array) -> jax.Array:
        return detect_keypoints(self.detector, self.variables, images)


@functools.partial(jax.jit, static_argnums=0)
def detect_keypoints(detector: KeypointDetector, variables: Any, images: jax.Array) -> jax.Array:
    """Eval-mode keypoints (B, K, 2) of images (B, R, R, 3) in [-1, 1]; the variables are an argument."""
    return detector.apply(variables, images, train=False)[0]


@dataclasses.dataclass(frozen=True)
class DetectorRun:
    """A detector, its ``detect`` config section and the generator its training pairs came from."""

    detector: TrainedDetector
    detect_config: ml_collections.ConfigDict
    generator: TrainedGenerator


def detector_dir(workdir: str | pathlib.Path, name: str = DETECTOR_DIR) -> pathlib.Path:
    """``RUN/NAME``: where ``lkgan detect`` trains the detector ``detect.name`` (default ``detector``)."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"detect.name must be a plain directory name, got {name!r}")
    return pathlib.Path(workdir) / name


def random_detector(detect_config: ml_collections.ConfigDict, num_keypoints: int, resolution: int, seed: int) -> TrainedDetector:
    """The untrained baseline: the same architecture with random weights (step 0)."""
    detector = make_detector(detect_config, num_keypoints)
    variables = jax.jit(detector.init, static_argnames="train")(jax.random.key(seed), jnp.zeros((1, resolution, resolution, 3)), train=False)
    return TrainedDetector(detector, variables, step=0)


def load_detector(
    workdir: str | pathlib.Path, step: int | None = None, name: str = DETECTOR_DIR
) -> tuple[TrainedDetector, ml_collections.ConfigDict, int]:
    """The trained detector ``name`` of ``workdir`` → (detector, its detect config, the generator step it used)."""
    directory = detector_dir(workdir, name)
    if not (directory / CONFIG_FILE).exists():
        flag = "" if name == DETECTOR_DIR else f" --config.detect.name={name}"
        raise FileNotFoundError(f"no trained detector in {directory}; run `lkgan detect --workdir {workdir}{flag}` first")
    saved = json.loads((directory / CONFIG_FILE).read_text())
    detect_config = ml_collections.ConfigDict(saved["detect"])
    model_config = read_config(workdir).model  # the shapes suffice: no generator weights are read
    detector = make_detector(detect_config, model_config.num_keypoints)
    init = functools.partial(init_supervised_state, detector, optax.adam(detect_config.lr), generator_resolution(model_config))

    abstract = jax.eval_shape(init, jax.random.key(0))
    # Only the weights are read; a damaged newest checkpoint falls back to the previous one (without ``step``).
    restored, step = restore_state_parts(
        directory, step, {"params": abstract.params, "batch_stats": abstract.batch_stats}, "the detector"
    )
    variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
    return TrainedDetector(detector, variables, step), detect_config, saved["generator_step"]


def load_detector_run(workdir: str | pathlib.Path) -> DetectorRun:
    """The latest detector of ``workdir`` with the generator checkpoint it was trained on."""
    detector, detect_config, generator_step = load_detector(workdir)
    return DetectorRun(detector, detect_config, load_generator(workdir, generator_step))
