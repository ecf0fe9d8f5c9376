"""The metric registry: FID, KID, FID_interp, CPD, locality, landmarks, judge (docs/design.md §7) of a generator in eval mode.

The generator is a run's checkpoint (``lkgan evaluate``) or a training state in memory (evaluation
during training, ``train.eval_every``); both go through ``RunEvaluation`` and ``evaluate``.

Generated images are quantised to uint8 exactly as PNGs are saved (``conventions.float_to_uint8``)
before feature extraction. Sample i of FID/KID is the image of seed ``eval.seed + i``; FID_interp
image i interpolates the latents of seeds ``s + 2i`` and ``s + 2i + 1`` (``s = eval.interp_seed``) at
α_i ~ U(0, 1) (seeded) in one factor (``parts``, ``positions``, ``background``) or all of them.
Real statistics are cached on disk (``fid.cached_statistics``) keyed by what determines them.

In a multi-process job every process runs the same evaluation: FID, KID, FID_interp, CPD, locality,
judge and landmarks split their samples (pairs, images) over the processes in whole batches, gather
the per-sample rows in sample order and reduce them as one process does (``parallel.sharded_rows``), so
every process gets the numbers of one process; models held in memory are first copied whole to each
process (``evaluate_in_memory``). Only process 0 writes files.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np
from absl import logging

from lkgan_jax import parallel
from lkgan_jax.conventions import float_to_uint8
from lkgan_jax.data.procedural import render_faces
from lkgan_jax.data.sources import FOLDER, PROCEDURAL, ImageSource
from lkgan_jax.detection.inference import DetectorRun, detect_keypoints
from lkgan_jax.editing import ops
from lkgan_jax.evaluation import cpd, fid, judged, kid, locality
from lkgan_jax.evaluation.features import FeatureExtractor
from lkgan_jax.evaluation.landmarks import check_labelled, landmark_metrics
from lkgan_jax.evaluation.preprocess import DEFAULT_PROTOCOL
from lkgan_jax.models.generator import Generator
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import TrainedGenerator, render
from lkgan_jax.utils.batching import padded_batches

STATISTICS_VERSION = 1  # bump when the way real statistics are computed changes


@dataclasses.dataclass
class EvalSetup:
    """What stays fixed across the evaluations of one run: settings, real set, Inception, real statistics.

    ``config`` is the run's config with its ``eval`` section; ``num_samples``, ``num_real``,
    ``cpd_pairs`` and ``locality_pairs`` override the ``eval`` fields when given (training evaluates
    with fewer samples).
    """

    config: Any
    real: ImageSource
    metric_names: tuple[str, ...] = ()
    num_samples: int | None = None
    num_real: int | None = None
    cpd_pairs: int | None = None
    locality_pairs: int | None = None
    inception_weights: str | None = None
    allow_unverified_weights: bool = False
    protocol: str = DEFAULT_PROTOCOL
    cpd_groups: str | None = None
    cpd_background: bool = False

    def __post_init__(self) -> None:
        check_eval_section(self.config.eval)

    @classmethod
    def for_training(cls, config: Any, section: str = "train") -> "EvalSetup":
        """The setup of ``SECTION.eval_metrics`` (checked by ``check_training_metrics``) against the run's data."""
        c = config[section]
        return cls(
            config,
            ImageSource.from_data_config(config.data),
            parse_metric_names(c.eval_metrics, f"{section}.eval_metrics"),
            num_samples=c.get("eval_num_samples"),
            cpd_pairs=c.get("eval_cpd_pairs"),
            locality_pairs=c.get("eval_locality_pairs"),
            inception_weights=config.eval.get("inception_weights") or None,
        )

    @functools.cached_property
    def extractor(self) -> FeatureExtractor:
        return FeatureExtractor(
            self.inception_weights or self.config.eval.get("inception_weights") or None,
            protocol=self.protocol,
            batch_size=self.config.eval.inception_batch_size,
            allow_unverified=self.allow_unverified_weights,
        )

    @functools.cached_property
    def judge(self) -> Any:
        from lkgan_jax.judge.weights import load_judge, shipped_judge_path

        return load_judge(self.config.eval.get("judge_weights") or shipped_judge_path())

    def judge_real_images(self, resolution: int, split: str) -> judged.JudgedImages:
        """The judge's view of ``eval.judge_num_samples`` real faces of ``split``; cached in memory."""
        cache = self.__dict__.setdefault("_judged_real_images", {})
        if (resolution, split) not in cache:
            e = self.config.eval

            def batches_of(indices: range) -> Iterator[np.ndarray]:
                return judged.face_batches(self.config.data.seed, split, resolution, indices, e.batch_size)

            cache[resolution, split] = judged.judge_images(self.judge, batches_of, e.judge_num_samples, e.batch_size)
        return cache[resolution, split]

    def judge_floor(self, resolution: int) -> dict[str, float]:
        """Every fidelity score of real test faces against the real train faces; cached in memory."""
        cache = self.__dict__.setdefault("_judge_floor", {})
        if resolution not in cache:
            test, train = (self.judge_real_images(resolution, split) for split in ("test", "train"))
            cache[resolution] = judged.fidelity_scores(test, train, self.config.eval)
        return cache[resolution]

    @property
    def samples(self) -> int:
        return self.num_samples or self.config.eval.num_samples

    def real_statistics(self, resolution: int) -> fid.Statistics:
        """Statistics (with features) of the first ``num_real`` real images; cached in memory and on disk."""
        cache = self.__dict__.setdefault("_real_statistics", {})
        if resolution not in cache:
            cache[resolution] = self._compute_real_statistics(resolution)
        return cache[resolution]

    def _compute_real_statistics(self, resolution: int) -> fid.Statistics:
        num = self.num_real or self.config.eval.num_real
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

        if self.real.kind == PROCEDURAL:
            # Faces are cheap to render (thousands per second) next to Inception: hashing their pixels
            # keys the cache by content, so a change of the renderer never reuses stale statistics.
            key.update(set="procedural", content_sha256=images_content_hash(batches()))
        elif self.real.kind == FOLDER:
            key.update(set="folder", content_sha256=fid.folder_content_hash(self.real.path))
        else:  # stored sets: their files, as stored
            key.update(set=self.real.kind, content_sha256=self.real.open(resolution).content_sha256())
        return fid.cached_statistics(key, lambda: self.extractor.sharded_statistics(lambda indices: take_rows(batches(), indices), num))


EVAL_COUNTS = ("batch_size", "num_samples", "num_real", "inception_batch_size", "kid_subsets", "kid_subset_size",
               "cpd_pairs", "locality_pairs", "landmarks_num_train", "landmarks_num_test", "judge_num_samples")
EVAL_SEEDS = ("seed", "interp_seed", "cpd_seed", "locality_seed")


def check_eval_section(e: Any) -> None:
    """One-line errors naming ``eval.<field>`` for a count that is not positive or a seed that is negative."""
    for name in EVAL_COUNTS:
        if name in e and e[name] <= 0:
            raise ValueError(f"eval.{name} must be positive, got {e[name]}")
    for name in EVAL_SEEDS:
        if name in e and e[name] < 0:
            raise ValueError(f"eval.{name} must be non-negative, got {e[name]}")


@dataclasses.dataclass
class RunEvaluation:
    """One evaluation of a generator (and, for ``landmarks``, a detector) under an ``EvalSetup``.

    The models come from loaders, called only when a metric needs them: a checkpoint on disk
    (``lkgan evaluate``) or the arrays of a training state in memory (evaluation during training).
    """

    setup: EvalSetup
    load_generator: Callable[[], TrainedGenerator]
    load_detector: Callable[[], DetectorRun] | None = None
    workdir: str | pathlib.Path | None = None

    @functools.cached_property
    def generator(self) -> TrainedGenerator:
        return self.load_generator()

    @functools.cached_property
    def detector(self) -> DetectorRun:
        if self.load_detector is None:
            raise ValueError("landmarks needs a trained detector (`lkgan detect`); none was given")
        return self.load_detector()

    def optional_detector(self) -> DetectorRun | None:
        """The run's detector, or None when it has none (metrics that only add a detector-based value)."""
        if self.load_detector is None:
            return None
        try:
            return self.detector
        except FileNotFoundError:
            return None

    @property
    def config(self) -> Any:
        return self.setup.config

    @property
    def real_statistics(self) -> fid.Statistics:
        return self.setup.real_statistics(self.generator.resolution)

    def provenance(self) -> dict[str, Any]:
        return {"step": self.generator.step, "resolution": self.generator.resolution}

    def fid_provenance(self) -> dict[str, Any]:
        return {
            "num_samples": self.setup.samples,
            "num_real": self.real_statistics.num,
            "protocol": self.setup.protocol,
            "inception_sha256": self.setup.extractor.weights_sha256,
        }

    @functools.cached_property
    def sample_statistics(self) -> fid.Statistics:
        """Statistics (with features) of the images of seeds eval.seed … eval.seed + num_samples − 1."""
        return self.generated_statistics(seed_latents(self.generator, self.config.eval.seed))

    def generated_statistics(self, latents_of: Callable[[np.ndarray], Latent]) -> fid.Statistics:
        """Statistics (with features) of images 0 … num_samples − 1, each process rendering its share."""
        batch_size = self.config.eval.batch_size

        def images_of(indices: range) -> Iterator[np.ndarray]:
            return rendered_batches(self.generator, latents_of, indices, batch_size)

        return self.setup.extractor.sharded_statistics(images_of, self.setup.samples, batch_size)


def rendered_batches(
    model: TrainedGenerator, latents_of: Callable[[np.ndarray], Latent], indices: range, batch_size: int
) -> Iterator[np.ndarray]:
    """uint8 (b, R, R, 3) batches of images ``indices`` (a range), ``latents_of(indices)`` giving their latents.

    Every call renders ``batch_size`` latents (the last indices repeated), so one program serves all.
    """
    for batch, count in padded_batches(len(indices), batch_size):
        yield float_to_uint8(model.render(latents_of(indices.start + batch)))[:count]


def take_rows(batches: Iterable[np.ndarray], indices: range) -> Iterator[np.ndarray]:
    """The rows ``indices`` (a range) of a stream of batches, rows counted from the first batch's first."""
    start = 0
    for batch in batches:
        part = batch[max(0, indices.start - start): max(0, indices.stop - start)]
        if len(part):
            yield part
        start += len(batch)
        if start >= indices.stop:
            return


def real_batches(source: ImageSource, resolution: int, num: int, batch_size: int, data_seed: int) -> Iterator[np.ndarray]:
    """uint8 batches of the first ``num`` real images of ``source`` at ``resolution``."""
    if source.kind == PROCEDURAL:
        for start in range(0, num, batch_size):
            yield render_faces(data_seed, range(start, min(num, start + batch_size)), resolution).image
        return
    stored = source.open(resolution)
    batch, used = [], 0
    for index in range(len(stored)):
        item = stored.read(index)
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
    alphas = np.random.default_rng(e.seed).uniform(0.0, 1.0, run.setup.samples).astype(np.float32)
    result: dict[str, Any] = {**run.provenance(), **run.fid_provenance()}
    for what in ops.INTERPOLATION_TARGETS:
        stats = run.generated_statistics(interpolated_latents(run.generator, what, e.interp_seed, alphas))
        result[f"fid_interp/{what}"] = fid.frechet_distance(stats, run.real_statistics)
    return result


@functools.lru_cache(maxsize=8)
def _renderer(generator: Generator) -> Callable:
    """``(variables, latent) -> images`` for ``generator``, one object per architecture (CPD caches on it)."""
    return functools.partial(render, generator)


def cpd_metric(run: RunEvaluation) -> dict[str, Any]:
    e = run.config.eval
    model = run.generator
    groups = cpd.parse_groups(run.setup.cpd_groups, model.num_parts, run.setup.cpd_background)
    result = cpd.compute_cpd(
        _renderer(model.generator),
        model.variables,
        model.latent_from_seeds,
        model.num_parts,
        num_pairs=run.setup.cpd_pairs or e.cpd_pairs,
        groups=groups,
        pairs_per_call=max(1, e.batch_size // groups.size),
        seed=e.cpd_seed,
    )
    return {**run.provenance(), **result}


def locality_metric(run: RunEvaluation) -> dict[str, Any]:
    e = run.config.eval
    model = run.generator
    settings = locality.LocalitySettings(tuple(e.locality_radii), e.locality_move_px, e.locality_window)
    found = run.optional_detector()
    trained = None if found is None else found.detector
    if trained is None:
        logging.info("locality/move_follow needs a trained detector (`lkgan detect`); reporting the rest")
    result = locality.compute_locality(
        _renderer(model.generator),
        model.variables,
        model.latent_from_seeds,
        num_pairs=run.setup.locality_pairs or e.locality_pairs,
        pairs_per_call=max(1, e.batch_size // (model.num_parts + 1)),
        settings=settings,
        seed=e.locality_seed,
        detect=None if trained is None else _detect_function(trained.detector),
        detector_variables=None if trained is None else trained.variables,
    )
    return {**run.provenance(), **result}


@functools.lru_cache(maxsize=8)
def _detect_function(detector: Any) -> Callable:
    """``(variables, images) -> keypoints`` for a detector architecture, one object each (locality caches on it)."""
    return functools.partial(detect_keypoints, detector)


def judge_metric(run: RunEvaluation) -> dict[str, Any]:
    if run.setup.real.kind != PROCEDURAL:
        raise ValueError(f"the judge scores procedural faces only; the real images here are {run.setup.real}")
    e, setup = run.config.eval, run.setup
    resolution = run.generator.resolution

    def batches_of(indices: range) -> Iterator[np.ndarray]:
        return rendered_batches(run.generator, seed_latents(run.generator, e.seed), indices, e.batch_size)

    generated = judged.judge_images(setup.judge, batches_of, e.judge_num_samples, e.batch_size)
    report = judged.fidelity_report(generated, setup.judge_real_images(resolution, "train"), setup.judge_floor(resolution), e)
    return {**run.provenance(), **report, "judge_sha256": setup.judge.sha256}


def landmarks(run: RunEvaluation) -> dict[str, Any]:
    d = run.detector
    return landmark_metrics(d.detector, d.detect_config, d.generator, run.setup.real, run.config.eval, data_seed=run.config.data.seed)


@dataclasses.dataclass(frozen=True)
class Metric:
    """A registered metric: ``compute(run)`` → JSON-ready entries, and what it needs besides a generator."""

    compute: Callable[[RunEvaluation], dict[str, Any]]
    needs_file: str = ""  # the eval field naming a weight file it needs (``inception_weights``)
    needs_detector: bool = False
    uses_detector: bool = False  # adds detector-based values when the run has a detector


# What each weight-file field of the eval section must point to.
WEIGHT_FILES = {
    "inception_weights": "a local copy of pytorch-fid's pt_inception-2015-12-05-6726825d.pth",
}

# ``lkgan evaluate --metrics`` and ``*.eval_metrics`` names -> metrics.
METRICS: dict[str, Metric] = {
    "fid": Metric(functools.partial(fid_and_kid, with_fid=True, with_kid=False), needs_file="inception_weights"),
    "kid": Metric(functools.partial(fid_and_kid, with_fid=False, with_kid=True), needs_file="inception_weights"),
    "fid_interp": Metric(fid_interp, needs_file="inception_weights"),
    "cpd": Metric(cpd_metric),
    "locality": Metric(locality_metric, uses_detector=True),
    "landmarks": Metric(landmarks, needs_detector=True),
    "judge": Metric(judge_metric),  # eval.judge_weights, or the judge shipped with the package
}


def parse_metric_names(text: str, field: str = "--metrics", extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """'cpd,fid' → ('cpd', 'fid'); a one-line error for an empty list or an unknown name.

    ``extra`` names metrics outside the registry that the caller computes itself (``editing``)."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip())
    known = (*METRICS, *extra)
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise ValueError(f"{field}: unknown metric {unknown[0] if unknown else '(none given)'}; choose from {', '.join(known)}")
    return names


def evaluate(run: RunEvaluation, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Every metric of ``names`` on ``run``, merged, with ``seconds/<name>`` for each."""
    result: dict[str, Any] = {}
    for name in names:
        start = time.perf_counter()
        result.update(METRICS[name].compute(run))
        result[f"seconds/{name}"] = round(time.perf_counter() - start, 3)
    return result


def evaluate_in_memory(setup: EvalSetup, generator: TrainedGenerator, detector: DetectorRun | None = None) -> dict[str, float]:
    """The values of ``setup.metric_names`` for models held in memory (evaluation during training).

    Every process of a multi-process job calls it: arrays of a training state that span processes are
    first copied whole to each process (``parallel.process_local``), which then evaluates its share on
    its own devices, outside the training mesh.
    """
    generator = _process_local_generator(generator)
    if detector is not None:
        trained = dataclasses.replace(detector.detector, variables=parallel.process_local(detector.detector.variables))
        detector = DetectorRun(trained, detector.detect_config, _process_local_generator(detector.generator))
    run = RunEvaluation(setup, lambda: generator, None if detector is None else lambda: detector)
    with jax.set_mesh(None):
        return metric_values(evaluate(run, setup.metric_names))


def _process_local_generator(generator: TrainedGenerator) -> TrainedGenerator:
    return dataclasses.replace(generator, variables=parallel.process_local(generator.variables))


def metric_values(result: dict[str, Any]) -> dict[str, float]:
    """The metric values of an ``evaluate`` result: its float entries (ints and strings are provenance)."""
    return {k: v for k, v in result.items() if isinstance(v, float)}


def check_training_metrics(config: Any, section: str) -> None:
    """One-line errors, before training starts, for evaluations the run could not do when they fall due.

    The GAN (``train.eval_metrics``) may use every metric but ``landmarks``, which scores a detector and
    so runs while ``lkgan detect`` trains (``detect.eval_metrics``: the metrics that need or use a
    detector). FID-type metrics need ``eval.inception_weights``, the judge ``eval.judge_weights``;
    landmarks on an image folder need its ``landmarks.csv``.
    """
    if config[section].get("eval_every", 0) <= 0:
        return
    if section == "detect":
        allowed = tuple(n for n, m in METRICS.items() if m.needs_detector or m.uses_detector)
    else:
        allowed = tuple(n for n, m in METRICS.items() if not m.needs_detector)
    field = f"{section}.eval_metrics"
    for name in parse_metric_names(config[section].eval_metrics, field):
        if name not in allowed:
            raise ValueError(f"{field}: {name} cannot run here; choose from {', '.join(allowed)}")
        needed = METRICS[name].needs_file
        if needed and not config.eval.get(needed):
            raise ValueError(f"{field} has {name}, which needs eval.{needed} ({WEIGHT_FILES[needed]})")
        if METRICS[name].needs_detector:
            check_labelled(ImageSource.from_data_config(config.data))
