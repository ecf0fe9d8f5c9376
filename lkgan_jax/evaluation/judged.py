"""Image fidelity on the procedural faces, scored by the judge (docs/design.md §7.7). Not FID.

With the judge's penultimate features f and standardised attribute predictions a:

    judge_fd         = Fréchet distance of Gaussians fitted to f(generated) and f(real train faces)
    judge_attributes = the same for a(generated) and a(real train faces)

and their floors ``judge_fd_floor``, ``judge_attributes_floor``: the same distances between real
test-split faces and the real train faces, at the same count N. Real faces are rendered at the
generator's resolution, so generated and real images take the same path into the judge.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.procedural import ProceduralFaces
from lkgan_jax.evaluation.features import RunningMoments
from lkgan_jax.evaluation.fid import Statistics, frechet_distance
from lkgan_jax.judge.weights import TrainedJudge


def judge_statistics(judge: TrainedJudge, batches: Iterator[np.ndarray]) -> tuple[Statistics, Statistics]:
    """uint8 image batches → (feature statistics, standardised-attribute statistics)."""
    features, attributes = RunningMoments(), RunningMoments()
    for batch in batches:
        out = judge.outputs(uint8_to_float(batch))
        features.update(np.asarray(out.features))
        attributes.update(np.asarray(out.attributes))
    return features.statistics(), attributes.statistics()


def face_batches(data_seed: int, split: str, resolution: int, num: int, batch_size: int) -> Iterator[np.ndarray]:
    """uint8 batches of faces 0 … num − 1 of a procedural split."""
    source = ProceduralFaces(data_seed, split, resolution, size=num)
    for start in range(0, num, batch_size):
        yield np.stack([source[i]["image"] for i in range(start, min(num, start + batch_size))])


def judged_distances(images: tuple[Statistics, Statistics], real: tuple[Statistics, Statistics]) -> dict[str, float]:
    """``judge_fd`` and ``judge_attributes`` between two (features, attributes) statistics pairs."""
    return {
        "judge_fd": frechet_distance(images[0], real[0]),
        "judge_attributes": frechet_distance(images[1], real[1]),
    }
