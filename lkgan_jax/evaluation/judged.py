"""Image fidelity on the procedural faces, scored by the judge (docs/design.md §7.7). Not FID.

With the judge's penultimate features f and standardised attribute predictions a, against N real
train-split faces:

    judge_fd         = Fréchet distance of Gaussians fitted to f(generated) and f(real)
    judge_attributes = the same for a(generated) and a(real)
    judge_precision  = share of generated f inside the real manifold (k-NN balls, ``manifold``)
    judge_recall     = share of real f inside the generated manifold
    swd_<side>       = sliced Wasserstein distance ×1e3 of 7×7 Laplacian-pyramid patches at each
                       pyramid level (no network; ``swd``), and swd_mean over the levels

and each one's floor ``<name>_floor``: the same score of N real test-split faces. Real faces are
rendered at the generator's resolution, so generated and real images take the same path. In a
multi-process job each process judges a share of the images (``judge_images``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Iterator

import ml_collections
import numpy as np

from lkgan_jax import parallel
from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.procedural import ProceduralFaces
from lkgan_jax.evaluation.features import RunningMoments, moments
from lkgan_jax.evaluation.fid import Statistics, frechet_distance
from lkgan_jax.evaluation.manifold import precision_recall
from lkgan_jax.evaluation.swd import sliced_wasserstein
from lkgan_jax.judge.weights import TrainedJudge


def uint8_judge_outputs(judge: TrainedJudge, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (B, R, R, 3) → (penultimate features (B, F), standardised attributes (B, A))."""
    out = judge.outputs(uint8_to_float(batch))
    return np.asarray(out.features), np.asarray(out.attributes)


def judge_statistics(judge: TrainedJudge, batches: Iterable[np.ndarray]) -> tuple[Statistics, Statistics]:
    """uint8 image batches → (feature statistics, standardised-attribute statistics), on this process."""
    features, attributes = RunningMoments(), RunningMoments()
    for batch in batches:
        batch_features, batch_attributes = uint8_judge_outputs(judge, batch)
        features.update(batch_features)
        attributes.update(batch_attributes)
    return features.statistics(), attributes.statistics()


@dataclasses.dataclass(frozen=True)
class JudgedImages:
    """N images as the fidelity scores see them: the judge's features (N, F), its standardised attributes
    (N, A) (both merged into moments ``batch_size`` rows at a time) and the uint8 images (N, R, R, 3)."""

    features: np.ndarray
    attributes: np.ndarray
    images: np.ndarray
    batch_size: int

    def statistics(self) -> tuple[Statistics, Statistics]:
        """(feature statistics, attribute statistics), merged as ``judge_statistics`` merges batches."""
        return moments(self.features, self.batch_size), moments(self.attributes, self.batch_size)


def judge_images(judge: TrainedJudge, batches_of: Callable[[range], Iterator[np.ndarray]], num: int, batch_size: int) -> JudgedImages:
    """The judge's outputs of images ``range(num)``, each process judging its share.

    ``batches_of(indices)`` gives uint8 batches of ``batch_size`` images (the last may be shorter) of a
    contiguous range; the rows are gathered in index order (``parallel.sharded_rows``), so every
    process gets the numbers of one process.
    """
    def outputs(indices: range) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        images = list(batches_of(indices))
        features, attributes = zip(*(uint8_judge_outputs(judge, batch) for batch in images))
        return np.concatenate(features), np.concatenate(attributes), np.concatenate(images)

    features, attributes, images = parallel.sharded_rows(outputs, num, batch_size)
    return JudgedImages(features, attributes, images, batch_size)


def array_batches(images: np.ndarray, batch_size: int) -> Callable[[range], Iterator[np.ndarray]]:
    """``batches_of(indices)`` for ``judge_images`` over in-memory uint8 images (N, R, R, 3)."""
    def batches_of(indices: range) -> Iterator[np.ndarray]:
        return (images[i: min(indices.stop, i + batch_size)] for i in range(indices.start, indices.stop, batch_size))

    return batches_of


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


def fidelity_scores(images: JudgedImages, real: JudgedImages, eval_config: ml_collections.ConfigDict) -> dict[str, float]:
    """Every fidelity score of ``images`` against ``real`` (module docstring); counts must match for SWD."""
    e = eval_config
    scores = judged_distances(images.statistics(), real.statistics())
    manifold = precision_recall(real.features, images.features, k=e.judge_neighbours)
    scores.update(judge_precision=manifold["precision"], judge_recall=manifold["recall"])
    scores.update(sliced_wasserstein(real.images, images.images, min_side=e.swd_min_side,
                                     patches_per_image=e.swd_patches_per_image, seed=e.seed))
    return scores


def fidelity_report(generated: JudgedImages, train: JudgedImages, floor: dict[str, float],
                    eval_config: ml_collections.ConfigDict) -> dict[str, Any]:
    """``fidelity_scores`` of ``generated`` against the real train faces, and each score's floor
    ``<name>_floor`` (``floor``: ``fidelity_scores`` of real test faces against the same train faces)."""
    return {
        **fidelity_scores(generated, train, eval_config),
        **{f"{name}_floor": value for name, value in floor.items()},
        "judge_num_samples": len(generated.features),
    }
