"""Image fidelity on the procedural faces, scored by the judge (docs/design.md §7.7). Not FID.

With the judge's penultimate features f and standardised attribute predictions a:

    judge_fd         = Fréchet distance of Gaussians fitted to f(generated) and f(real train faces)
    judge_attributes = the same for a(generated) and a(real train faces)

and their floors ``judge_fd_floor``, ``judge_attributes_floor``: the same distances between real
test-split faces and the real train faces, at the same count N. Real faces are rendered at the
generator's resolution, so generated and real images take the same path into the judge. In a
multi-process job each process judges a share of the images (``sharded_judge_statistics``).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from lkgan_jax import parallel
from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.procedural import ProceduralFaces
from lkgan_jax.evaluation.features import RunningMoments, moments
from lkgan_jax.evaluation.fid import Statistics, frechet_distance
from lkgan_jax.judge.weights import TrainedJudge


def judge_outputs(judge: TrainedJudge, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (B, R, R, 3) → (penultimate features (B, F), standardised attributes (B, A))."""
    out = judge.outputs(uint8_to_float(batch))
    return np.asarray(out.features), np.asarray(out.attributes)


def judge_statistics(judge: TrainedJudge, batches: Iterable[np.ndarray]) -> tuple[Statistics, Statistics]:
    """uint8 image batches → (feature statistics, standardised-attribute statistics), on this process."""
    features, attributes = RunningMoments(), RunningMoments()
    for batch in batches:
        batch_features, batch_attributes = judge_outputs(judge, batch)
        features.update(batch_features)
        attributes.update(batch_attributes)
    return features.statistics(), attributes.statistics()


def sharded_judge_statistics(
    judge: TrainedJudge, batches_of: Callable[[range], Iterator[np.ndarray]], num: int, batch_size: int
) -> tuple[Statistics, Statistics]:
    """``judge_statistics(judge, batches_of(range(num)))``, each process judging its share.

    ``batches_of(indices)`` gives uint8 batches of ``batch_size`` images (the last may be shorter) of a
    contiguous range; the outputs are gathered in index order (``parallel.sharded_rows``) and merged
    ``batch_size`` rows at a time, as ``judge_statistics`` merges those batches: every process gets the
    numbers of one process.
    """
    def outputs(indices: range) -> tuple[np.ndarray, np.ndarray]:
        features, attributes = zip(*(judge_outputs(judge, batch) for batch in batches_of(indices)))
        return np.concatenate(features), np.concatenate(attributes)

    features, attributes = parallel.sharded_rows(outputs, num, batch_size)
    return moments(features, batch_size), moments(attributes, batch_size)


def face_batches(data_seed: int, split: str, resolution: int, indices: int | range, batch_size: int) -> Iterator[np.ndarray]:
    """uint8 batches of faces ``indices`` (a range; an int n: faces 0 … n − 1) of a procedural split."""
    indices = range(indices) if isinstance(indices, int) else indices
    source = ProceduralFaces(data_seed, split, resolution, size=indices.stop)
    for start in range(indices.start, indices.stop, batch_size):
        yield np.stack([source[i]["image"] for i in range(start, min(indices.stop, start + batch_size))])


def judged_distances(images: tuple[Statistics, Statistics], real: tuple[Statistics, Statistics]) -> dict[str, float]:
    """``judge_fd`` and ``judge_attributes`` between two (features, attributes) statistics pairs."""
    return {
        "judge_fd": frechet_distance(images[0], real[0]),
        "judge_attributes": frechet_distance(images[1], real[1]),
    }
