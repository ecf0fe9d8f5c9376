"""Metrics of a trained run: FID, KID, FID_interp, CPD (SPEC §7), on the EMA generator in eval mode.

Generated images are quantised to uint8 exactly as PNGs are saved (``conventions.float_to_uint8``)
before feature extraction. Sample i of FID/KID is the image of seed ``eval.seed + i``; FID_interp
image i interpolates the latents of seeds ``s + 2i`` and ``s + 2i + 1`` (``s = eval.interp_seed``) at
α_i ~ U(0, 1) (seeded) in one factor (``parts``, ``positions``, ``background``) or all of them.
Real statistics are cached on disk (``fid.cached_statistics``) keyed by what determines them.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Any, Callable, Iterator

import numpy as np
from absl import logging

from lkgan_jax.conventions import float_to_uint8
from lkgan_jax.data.image_folder import ImageFolder
from lkgan_jax.data.procedural import render_faces
from lkgan_jax.editing import ops
from lkgan_jax.evaluation import cpd, fid, kid
from lkgan_jax.evaluation.features import FeatureExtractor
from lkgan_jax.evaluation.landmarks import landmark_metrics
from lkgan_jax.evaluation.preprocess import DEFAULT_PROTOCOL
from lkgan_jax.models.latent import Latent
from lkgan_jax.pretrained import TrainedGenerator, load_generator, render
from lkgan_jax.utils.batching import padded_batches

STATISTICS_VERSION = 1  # bump when the way real statistics are computed changes


@dataclasses.dataclass
class RunEvaluation:
    """One evaluation of a run; the generator, extractor and real statistics are built once, on demand."""

    workdir: str
    config: Any  # the run's config with its ``eval`` section
    real: str  # procedural | folder:PATH
    step: int | None = None
    num_samples: int | None = None
    num_real: int | None = None
    inception_weights: str | None = None
    allow_unverified_weights: bool = False
    protocol: str = DEFAULT_PROTOCOL
    cpd_groups: str | None = None
    cpd_background: bool = False

    @functools.cached_property
    def generator(self) -> TrainedGenerator:
        return load_generator(self.workdir, self.step)

    @functools.cached_property
    def extractor(self) -> FeatureExtractor:
        return FeatureExtractor(
            self.inception_weights,
            protocol=self.protocol,
            batch_size=self.config.eval.inception_batch_size,
            allow_unverified=self.allow_unverified_weights,
        )

    @property
    def samples(self) -> int:
        return self.num_samples or self.config.eval.num_samples

    @functools.cached_property
    def real_statistics(self) -> fid.Statistics:
        num = self.num_real or self.config.eval.num_real
        resolution = self.generator.resolution
        key = {
            "version": STATISTICS_VERSION,
            "resolution": resolution,
            "num": num,
            "protocol": self.protocol,
            "weights_sha256": self.extractor.weights_sha256,
            "keep_features": True,
        }
        def batches() -> Iterator[np.ndarray]:
            return real_batches(self.real, resolution, num, self.config.eval.batch_size, self.config.data.seed)

        if self.real == "procedural":
            # Faces are cheap to render (thousands per second) next to Inception: hashing their pixels
            # keys the cache by content, so a change of the renderer never reuses stale statistics.
            key.update(set="procedural", content_sha256=images_content_hash(batches()))
        elif self.real.startswith("folder:"):
            key.update(set="folder", content_sha256=fid.folder_content_hash(self.real.removeprefix("folder:")))
        else:
            raise ValueError(f"unknown real set {self.real!r}; use procedural or folder:PATH")
        return fid.cached_statistics(key, lambda: self.extractor.statistics(batches(), keep_features=True))

    def provenance(self) -> dict[str, Any]:
        return {"step": self.generator.step, "resolution": self.generator.resolution}

    def fid_provenance(self) -> dict[str, Any]:
        return {
            "num_samples": self.samples,
            "num_real": self.real_statistics.num,
            "protocol": self.protocol,
            "inception_sha256": self.extractor.weights_sha256,
        }

    @functools.cached_property
    def sample_statistics(self) -> fid.Statistics:
        """Statistics (with features) of the images of seeds eval.seed … eval.seed + num_samples − 1."""
        return self.generated_statistics(seed_latents(self.generator, self.config.eval.seed))

    def generated_statistics(self, latents_of: Callable[[np.ndarray], Latent]) -> fid.Statistics:
        batches = rendered_batches(self.generator, latents_of, self.samples, self.config.eval.batch_size)
        return self.extractor.statistics(batches, keep_features=True)


def rendered_batches(
    model: TrainedGenerator, latents_of: Callable[[np.ndarray], Latent], num: int, batch_size: int
) -> Iterator[np.ndarray]:
    """uint8 (b, R, R, 3) batches of images 0 .. num−1, ``latents_of(indices)`` giving their latents.

    Every call renders ``batch_size`` latents (the last indices repeated), so one program serves all.
    """
    for indices, count in padded_batches(num, batch_size):
        yield float_to_uint8(model.render(latents_of(indices)))[:count]


def real_batches(source: str, resolution: int, num: int, batch_size: int, data_seed: int) -> Iterator[np.ndarray]:
    """uint8 batches of the first ``num`` real images of ``source`` at ``resolution``."""
    if source == "procedural":
        for start in range(0, num, batch_size):
            yield render_faces(data_seed, range(start, min(num, start + batch_size)), resolution).image
        return
    folder = ImageFolder(source.removeprefix("folder:"), resolution)
    batch, used = [], 0
    for index in range(len(folder)):
        item = folder.read(index)
        if item is None:
            continue
        batch.append(item["image"])
        used += 1
        if len(batch) == batch_size or used == num:
            yield np.stack(batch)
            batch = []
        if used == num:
            break
    if batch:
        yield np.stack(batch)
    if used < num:
        logging.warning("%s has %d readable images, fewer than the %d asked for", source, used, num)


def images_content_hash(batches: Iterator[np.ndarray]) -> str:
    """SHA-256 hex over the shapes and bytes of uint8 image batches, in order."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(str(batch.shape).encode() + np.ascontiguousarray(batch).tobytes())
    return digest.hexdigest()


def seed_latents(model: TrainedGenerator, first_seed: int) -> Callable[[np.ndarray], Latent]:
    return lambda indices: model.latent_from_seeds(first_seed + indices)


def interpolated_latents(model: TrainedGenerator, what: str, first_seed: int, alphas: np.ndarray) -> Callable[[np.ndarray], Latent]:
    """Latent i = interpolate(seed s + 2i, seed s + 2i + 1, α_i, what)."""
    def latents_of(indices: np.ndarray) -> Latent:
        a = model.latent_from_seeds(first_seed + 2 * indices)
        b = model.latent_from_seeds(first_seed + 2 * indices + 1)
        return ops.interpolate(a, b, alphas[indices], what)

    return latents_of


def fid_and_kid(run: RunEvaluation, with_fid: bool, with_kid: bool) -> dict[str, Any]:
    generated = run.sample_statistics
    result: dict[str, Any] = {**run.provenance(), **run.fid_provenance()}
    if with_fid:
        result["fid"] = fid.frechet_distance(generated, run.real_statistics)
    if with_kid:
        e = run.config.eval
        mean, std = kid.kernel_inception_distance(
            generated.features, run.real_statistics.features, e.kid_subsets, e.kid_subset_size, seed=e.seed
        )
        result.update({"kid_mean": mean, "kid_std": std, "kid_subsets": e.kid_subsets, "kid_subset_size": e.kid_subset_size})
    return result


def fid_interp(run: RunEvaluation) -> dict[str, Any]:
    e = run.config.eval
    alphas = np.random.default_rng(e.seed).uniform(0.0, 1.0, run.samples).astype(np.float32)
    result: dict[str, Any] = {**run.provenance(), **run.fid_provenance()}
    for what in ops.INTERPOLATION_TARGETS:
        stats = run.generated_statistics(interpolated_latents(run.generator, what, e.interp_seed, alphas))
        result[f"fid_interp/{what}"] = fid.frechet_distance(stats, run.real_statistics)
    return result


def cpd_metric(run: RunEvaluation) -> dict[str, Any]:
    e = run.config.eval
    model = run.generator
    groups = cpd.parse_groups(run.cpd_groups, model.num_parts, run.cpd_background)
    pairs_per_call = max(1, e.batch_size // groups.size)
    result = cpd.compute_cpd(
        functools.partial(render, model.generator),
        model.variables,
        model.latent_from_seeds,
        model.num_parts,
        num_pairs=e.cpd_pairs,
        groups=groups,
        pairs_per_call=pairs_per_call,
        seed=e.cpd_seed,
    )
    return {**run.provenance(), **result}


def landmarks(run: RunEvaluation) -> dict[str, Any]:
    return landmark_metrics(run.workdir, run.real, run.config.eval, data_seed=run.config.data.seed)


# ``lkgan evaluate --metrics`` names -> functions of a RunEvaluation returning JSON-ready entries.
METRICS: dict[str, Callable[[RunEvaluation], dict[str, Any]]] = {
    "fid": functools.partial(fid_and_kid, with_fid=True, with_kid=False),
    "kid": functools.partial(fid_and_kid, with_fid=False, with_kid=True),
    "fid_interp": fid_interp,
    "cpd": cpd_metric,
    "landmarks": landmarks,
}
