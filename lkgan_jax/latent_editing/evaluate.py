"""Measuring attribute editors with an evaluation judge and detector they never trained against (docs/design.md §14).

For each attribute a an editor edits, N latents (seeds s … s + N − 1) are edited by single-attribute
changes δ ~ U(−m, m) (seeded, m = the editor's ``delta_max``). The evaluation judge reads both images
in attribute units; the achieved change is expressed in the editor's units (its training judge's
standard deviations), so that achieved = requested is perfect:

  achieved_{a,b} = (H_b(G(ℓ')) − H_b(G(ℓ))) / std_b
  accuracy_mae/A         mean |achieved_{a,a} − δ|           (and per |δ| bucket, averaged over a)
  slope/A                Σ δ · achieved_{a,a} / Σ δ²         (1: the right amount on average)
  leakage/A->B           mean |achieved_{a,b}| / mean |achieved_{a,a}|,  b ≠ a
  leakage_mean, leakage_worst                                off-diagonal mean and maximum
  keypoint_drift_px      mean ‖K(G(ℓ')) − K(G(ℓ))‖ in pixels over the appearance attributes
  outside_share/A        for a local attribute (``ATTRIBUTE_LANDMARKS``): the share of Σ|G(ℓ') − G(ℓ)|
                         outside discs of radius r around the evaluation judge's landmarks of the
                         original image; ``outside_share`` averages the local attributes
  round_trip_latent      d(f(f(ℓ, δ), −δ), ℓ) in latent-std units, δ with every attribute set
  round_trip_image_l1    mean |G(f(f(ℓ, δ), −δ)) − G(ℓ)| (images in [-1, 1])
  judge_fd               the evaluation judge's Fréchet distance between all edited images and real
                         train faces (``judge_fd_unedited``: the same for the unedited images)
  kid_mean, kid_std, fid with Inception weights: the edited images against the real images

Baselines, measured the same way: ``least_squares``, the minimum-norm linear directions of a
least-squares fit from standardised latents to the training judge's attributes (InterFaceGAN-like:
ℓ' = ℓ + δ·W⁺·σ_ℓ), and ``random``, a random direction per attribute with the norm of that
attribute's least-squares direction.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.conventions import float_to_uint8, uint8_to_float
from lkgan_jax.data.procedural import ATTRIBUTE_LANDMARKS, ATTRIBUTE_NAMES
from lkgan_jax.detection.inference import TrainedDetector
from lkgan_jax.evaluation import judged
from lkgan_jax.evaluation.features import RunningMoments
from lkgan_jax.evaluation.fid import frechet_distance
from lkgan_jax.evaluation.locality import disc_masks
from lkgan_jax.judge.train import heldout_scores, test_faces
from lkgan_jax.judge.weights import TrainedJudge
from lkgan_jax.latent_editing.editors import flatten_latent, unflatten_offset
from lkgan_jax.latent_editing.train import GEOMETRY_ATTRIBUTES
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import TrainedGenerator

DELTA_BUCKETS = (0.5, 1.0, 1.5)  # |δ| ≤ each bound (in standard deviations), as Enjoy-Your-Editing's ε segments
BASELINES = ("least_squares", "random")
Apply = Callable[[Latent, jax.Array], Latent]


class Reading(NamedTuple):
    """What the evaluation models read from images (B, R, R, 3) in [-1, 1]."""

    attributes: np.ndarray  # (B, A_judge) in attribute units (evaluation judge)
    keypoints: np.ndarray  # (B, K, 2) (evaluation detector)
    landmarks: np.ndarray  # (B, L, 2) (evaluation judge)
    features: np.ndarray  # (B, F) the evaluation judge's penultimate features


def reader(judge: TrainedJudge, detector: TrainedDetector) -> Callable[[jax.Array], Reading]:
    """``read(images) → Reading`` of an evaluation judge and detector."""
    def read(images: jax.Array) -> Reading:
        out = judge.outputs(images)
        return Reading(judge.attributes(np.asarray(out.attributes)), np.asarray(detector.detect(images)),
                       np.asarray(out.landmarks), np.asarray(out.features))
    return read


@dataclasses.dataclass(frozen=True)
class EditingProtocol:
    """The numbers of one editing evaluation (the ``eval.editing_*`` config fields)."""

    num_samples: int  # latents edited per attribute
    seed: int  # latents of seeds seed … seed + num_samples − 1; also seeds δ
    batch_size: int
    region_radius: float  # outside_share: disc radius around the attribute's landmarks (normalised)
    num_fit: int  # least_squares: generated latents it is fitted on
    ridge: float = 0.01  # least_squares: ridge λ, in units of the standardised latents' covariance

    @classmethod
    def from_config(cls, eval_config: Any) -> "EditingProtocol":
        e = eval_config
        protocol = cls(e.editing_num_samples, e.editing_seed, e.batch_size, e.editing_region_radius, e.editing_num_fit, e.editing_ridge)
        for name in ("num_samples", "batch_size", "region_radius", "num_fit", "ridge"):
            if getattr(protocol, name) <= 0:
                raise ValueError(f"eval.editing_{name} must be positive, got {getattr(protocol, name)}")
        return protocol


def _rows(latent: Latent, start: int, stop: int) -> Latent:
    return jax.tree.map(lambda x: x[start:stop], latent)


def quantised_render(generator: TrainedGenerator, latent: Latent) -> jax.Array:
    """G(ℓ) quantised to uint8 as saved images are, back in [-1, 1]: what every reading sees."""
    return uint8_to_float(float_to_uint8(generator.render(latent)))


def outside_share(before: jax.Array, after: jax.Array, centres: np.ndarray, radius: float) -> np.ndarray:
    """(B,) share of Σ|after − before| (images (B, R, R, 3)) outside the union of discs at ``centres`` (B, n, 2)."""
    change = jnp.sum(jnp.abs(after - before), axis=-1)  # (B, R, R)
    inside = jnp.max(disc_masks(jnp.asarray(centres), radius, change.shape[1]), axis=1)  # (B, R, R)
    total = jnp.sum(change, axis=(1, 2))
    return np.asarray(jnp.sum(change * (1.0 - inside), axis=(1, 2)) / jnp.maximum(total, 1e-12))


def editing_metrics(
    generator: TrainedGenerator, apply: Apply, names: tuple[str, ...], units: np.ndarray,
    read: Callable[[jax.Array], Reading], judge_columns: tuple[int, ...], delta_max: float, protocol: EditingProtocol,
) -> tuple[dict[str, float], RunningMoments, list[np.ndarray]]:
    """The per-attribute metrics of the module docstring for ``apply(latent, delta (B, A)) → latent``.

    ``names`` (A,) are the edited attributes, ``units`` (A,) their standard deviations (the editor's
    unit), ``judge_columns`` (A,) their columns in ``read(...).attributes``. Also returns the
    evaluation judge's feature moments of the edited images and the edited images themselves (uint8).
    """
    a, n = len(names), protocol.num_samples
    columns = np.asarray(judge_columns)
    latent = generator.latent_from_seeds(np.arange(protocol.seed, protocol.seed + n))
    rng = np.random.default_rng(protocol.seed)
    achieved = np.zeros((a, a))
    metrics: dict[str, float] = {}
    bucket_errors: dict[float, list[float]] = {bound: [] for bound in DELTA_BUCKETS}
    drifts, outside, edited_moments, edited_images = [], [], RunningMoments(), []
    for i, name in enumerate(names):
        requested = rng.uniform(-delta_max, delta_max, n).astype(np.float32)
        delta = np.zeros((n, a), np.float32)
        delta[:, i] = requested
        readings, shares = [], []
        for start in range(0, n, protocol.batch_size):
            rows = _rows(latent, start, start + protocol.batch_size)
            before_images = quantised_render(generator, rows)
            after_images = quantised_render(generator, apply(rows, jnp.asarray(delta[start:start + protocol.batch_size])))
            before, after = read(before_images), read(after_images)
            readings.append((before, after))
            edited_moments.update(after.features)
            edited_images.append(float_to_uint8(after_images))  # exact: the images are already quantised
            if name in ATTRIBUTE_LANDMARKS:
                centres = before.landmarks[:, list(ATTRIBUTE_LANDMARKS[name])]
                shares.append(outside_share(before_images, after_images, centres, protocol.region_radius))
        joined = [Reading(*(np.concatenate(x) for x in zip(*[r[k] for r in readings]))) for k in (0, 1)]
        before, after = joined
        change = (after.attributes[:, columns] - before.attributes[:, columns]) / units  # (N, A) in the editor's units
        error = np.abs(change[:, i] - requested)
        metrics[f"accuracy_mae/{name}"] = float(np.mean(error))
        metrics[f"slope/{name}"] = float(np.sum(requested * change[:, i]) / np.sum(requested**2))
        lower = 0.0
        for bound in DELTA_BUCKETS:
            inside = (np.abs(requested) > lower) & (np.abs(requested) <= bound)
            if inside.any():
                bucket_errors[bound].append(float(np.mean(error[inside])))
            lower = bound
        achieved[i] = np.mean(np.abs(change), axis=0)
        if name not in GEOMETRY_ATTRIBUTES:
            drifts.append(float(np.mean(np.linalg.norm(after.keypoints - before.keypoints, axis=-1))) * generator.resolution / 2)
        if shares:
            metrics[f"outside_share/{name}"] = float(np.mean(np.concatenate(shares)))
            outside.append(metrics[f"outside_share/{name}"])
    leakage = achieved / np.maximum(np.diag(achieved)[:, None], 1e-12)
    off_diagonal = leakage[~np.eye(a, dtype=bool)]
    for i, source in enumerate(names):
        for j, target in enumerate(names):
            if i != j:
                metrics[f"leakage/{source}->{target}"] = float(leakage[i, j])
    metrics["accuracy_mae"] = float(np.mean([metrics[f"accuracy_mae/{name}"] for name in names]))
    for bound, values in bucket_errors.items():
        if values:
            metrics[f"accuracy_mae_delta_le_{bound}"] = float(np.mean(values))
    metrics["leakage_mean"] = float(np.mean(off_diagonal)) if off_diagonal.size else 0.0
    metrics["leakage_worst"] = float(np.max(off_diagonal)) if off_diagonal.size else 0.0
    if drifts:
        metrics["keypoint_drift_px"] = float(np.mean(drifts))
    if outside:
        metrics["outside_share"] = float(np.mean(outside))
    return metrics, edited_moments, edited_images


def round_trip(generator: TrainedGenerator, apply: Apply, num_attributes: int, latent_std: Any, delta_max: float,
               protocol: EditingProtocol) -> dict[str, float]:
    """``round_trip_latent`` and ``round_trip_image_l1`` (module docstring)."""
    n = protocol.num_samples
    latent = generator.latent_from_seeds(np.arange(protocol.seed, protocol.seed + n))
    delta = np.random.default_rng(protocol.seed + 1).uniform(-delta_max, delta_max, (n, num_attributes)).astype(np.float32)
    std = jnp.asarray(latent_std)
    distances, l1 = [], []
    for start in range(0, n, protocol.batch_size):
        rows, d = _rows(latent, start, start + protocol.batch_size), jnp.asarray(delta[start:start + protocol.batch_size])
        back = apply(apply(rows, d), -d)
        distances.append(np.asarray(jnp.mean(jnp.square((flatten_latent(back) - flatten_latent(rows)) / std), axis=-1)))
        l1.append(np.asarray(jnp.mean(jnp.abs(generator.render(back) - generator.render(rows)), axis=(1, 2, 3))))
    return {"round_trip_latent": float(np.mean(np.concatenate(distances))), "round_trip_image_l1": float(np.mean(np.concatenate(l1)))}


def latent_statistics(generator: TrainedGenerator, num: int, seed: int) -> tuple[np.ndarray, np.ndarray, Latent]:
    """(mean (W,), std (W,), latents) of the flat latents of seeds seed … seed + num − 1."""
    latent = generator.latent_from_seeds(np.arange(seed, seed + num))
    flat = np.asarray(flatten_latent(latent), np.float64)
    return flat.mean(axis=0), flat.std(axis=0) + 1e-6, latent


def least_squares_directions(
    generator: TrainedGenerator, judge: TrainedJudge, columns: tuple[int, ...], protocol: EditingProtocol,
) -> tuple[np.ndarray, np.ndarray, float]:
    """(directions (A, W) in latent units per standard deviation of each attribute, the latent std (W,), the fit's mean R²).

    Fits standardised judge attributes Y (N, A) ≈ X W + b on standardised flat latents X (N, W) by ridge
    regression, W = (XᵀX/N + λI)⁻¹ XᵀY/N on centred X and Y (λ = ``protocol.ridge``: without it, near-constant
    latent coordinates get huge spurious weights), then takes W⁺ (A, W): moving X by δ W⁺ changes the
    fitted Y by exactly δ with the least latent motion. The latents are seeds disjoint from the
    evaluation's (``seed + num_samples`` onwards).
    """
    mean, std, latent = latent_statistics(generator, protocol.num_fit, protocol.seed + protocol.num_samples)
    index = jnp.asarray(columns)
    targets = []
    for start in range(0, protocol.num_fit, protocol.batch_size):
        images = generator.render(_rows(latent, start, start + protocol.batch_size))
        targets.append(np.asarray(judge.outputs(images).attributes[:, index], np.float64))
    y = np.concatenate(targets)
    y = y - y.mean(axis=0)
    x = (np.asarray(flatten_latent(latent), np.float64) - mean) / std  # centred: mean is x's own mean
    n, width = x.shape
    weights = np.linalg.solve(x.T @ x / n + protocol.ridge * np.eye(width), x.T @ y / n)  # (W, A)
    r2 = 1.0 - (y - x @ weights).var(axis=0) / np.maximum(y.var(axis=0), 1e-12)
    return np.linalg.pinv(weights) * std[None, :], std, float(np.mean(r2))


def random_directions(directions: np.ndarray, std: np.ndarray, seed: int) -> np.ndarray:
    """Random directions (A, W) with each row's norm (in standardised latent units) equal to ``directions``'."""
    norms = np.linalg.norm(directions / std, axis=1, keepdims=True)
    random = np.random.default_rng(seed).standard_normal(directions.shape)
    return random / np.linalg.norm(random, axis=1, keepdims=True) * norms * std


def linear_editor(directions: np.ndarray) -> Apply:
    """``apply(latent, delta (B, A)) = latent + delta · directions`` for directions (A, W), W the flat latent width."""
    table = jnp.asarray(directions, jnp.float32)

    @jax.jit
    def apply(latent: Latent, delta: jax.Array) -> Latent:
        return unflatten_offset(latent, delta.astype(jnp.float32) @ table)

    return apply


@dataclasses.dataclass(frozen=True)
class EditorUnderTest:
    """An editor as the evaluation sees it: ``apply`` and what its δ means."""

    apply: Apply
    attribute_names: tuple[str, ...]
    attribute_std: np.ndarray  # (A,) its unit per attribute (the training judge's standard deviations)
    delta_max: float


def judge_ceilings(prefix: str, judge: TrainedJudge, data_seed: int, num: int, batch_size: int, eyes: tuple[int, int]) -> dict[str, float]:
    """A judge's held-out scores on real test faces (the ceiling of every attribute metric), under ``prefix``."""
    faces = test_faces(data_seed, num, judge.config.input_size)
    scores = heldout_scores(judge, faces, batch_size, eyes)
    return {f"{prefix}/{key.removeprefix('judge/')}": value for key, value in scores.items()}


def evaluate_editing(
    generator: TrainedGenerator, editors: Mapping[str, EditorUnderTest], train_judge: TrainedJudge, eval_judge: TrainedJudge,
    eval_detector: TrainedDetector, eval_config: Any, data_seed: int, default_delta_max: float, extractor: Any = None,
    real_features: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, EditorUnderTest]]:
    """(``editing/...`` metrics of every editor and of the baselines (module docstring), flat and JSON-ready;
    the editors with the baselines added).

    The baselines edit the attributes of the first editor (every attribute without editors) with its
    δ range (``default_delta_max`` without editors). ``extractor`` (an Inception ``FeatureExtractor``) and ``real_features`` (N, 2048) add KID
    and FID of the edited images.
    """
    protocol = EditingProtocol.from_config(eval_config)
    taken = [name for name in BASELINES if name in editors]
    if taken:
        raise ValueError(f"an editor named {taken[0]!r} would hide the baseline of that name; rename it (edit.name)")
    if eval_judge.sha256 and eval_judge.sha256 == train_judge.sha256:
        raise ValueError("the evaluation judge is the training judge; give a second judge (another seed, architecture and data split)")
    read = reader(eval_judge, eval_detector)
    first = next(iter(editors.values()), None)
    names = first.attribute_names if first else ATTRIBUTE_NAMES
    columns = tuple(ATTRIBUTE_NAMES.index(n) for n in names)
    units = train_judge.attribute_std[list(columns)]
    delta_max = first.delta_max if first else default_delta_max
    directions, latent_std, fit_r2 = least_squares_directions(generator, train_judge, columns, protocol)
    everything = dict(editors)
    everything["least_squares"] = EditorUnderTest(linear_editor(directions), names, units, delta_max)
    everything["random"] = EditorUnderTest(linear_editor(random_directions(directions, latent_std, protocol.seed)), names, units, delta_max)

    e = eval_config
    eyes = tuple(e.eye_landmarks)
    real = judged.judge_statistics(eval_judge, judged.face_batches(data_seed, "train", generator.resolution, e.judge_num_samples, e.batch_size))
    unedited = judged.judge_statistics(eval_judge, (float_to_uint8(generator.render(rows)) for rows in _seed_batches(generator, protocol)))
    result: dict[str, Any] = {
        "editing/editors": list(everything),
        "editing/attributes": list(names),
        "editing/num_samples": protocol.num_samples,
        "editing/judge_fd_unedited": frechet_distance(unedited[0], real[0]),
        "editing/least_squares/fit_r2": fit_r2,
        **judge_ceilings("editing/train_judge", train_judge, data_seed, e.editing_num_judge_test, e.batch_size, eyes),
        **judge_ceilings("editing/eval_judge", eval_judge, data_seed, e.editing_num_judge_test, e.batch_size, eyes),
    }
    for name, editor in everything.items():
        judge_columns = tuple(ATTRIBUTE_NAMES.index(n) for n in editor.attribute_names)
        metrics, moments, images = editing_metrics(
            generator, editor.apply, editor.attribute_names, editor.attribute_std, read, judge_columns, editor.delta_max, protocol)
        metrics.update(round_trip(generator, editor.apply, len(editor.attribute_names), latent_std, editor.delta_max, protocol))
        metrics["judge_fd"] = frechet_distance(moments.statistics(), real[0])
        if extractor is not None and real_features is not None:
            metrics.update(_inception_metrics(extractor, np.concatenate(images), real_features, e))
        result.update({f"editing/{name}/{key}": value for key, value in metrics.items()})
    return result, everything


def _seed_batches(generator: TrainedGenerator, protocol: EditingProtocol):
    latent = generator.latent_from_seeds(np.arange(protocol.seed, protocol.seed + protocol.num_samples))
    for start in range(0, protocol.num_samples, protocol.batch_size):
        yield _rows(latent, start, start + protocol.batch_size)


def _inception_metrics(extractor: Any, images: np.ndarray, real_features: np.ndarray, eval_config: Any) -> dict[str, float]:
    from lkgan_jax.evaluation.fid import Statistics
    from lkgan_jax.evaluation.kid import kernel_inception_distance

    features = extractor.extract(images)
    kid_mean, kid_std = kernel_inception_distance(real_features, features, eval_config.kid_subsets, eval_config.kid_subset_size, eval_config.seed)
    return {"kid_mean": kid_mean, "kid_std": kid_std,
            "fid": frechet_distance(Statistics.from_features(features), Statistics.from_features(real_features))}


def evaluate_run_editing(
    workdir: Any, config: Any, editor_names: list[str] | None = None, extractor: Any = None, real_features: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """``lkgan evaluate --metrics editing``: (the metrics of the run's editors (all trained ones by default)
    and the baselines, their ``editing_picture`` on the first evaluation seed).

    The evaluation judge is ``eval.judge_weights`` and the evaluation detector ``RUN/eval.editing_detector``;
    neither may be what the editors trained against.
    """
    from lkgan_jax.detection.inference import load_detector
    from lkgan_jax.judge.weights import load_judge
    from lkgan_jax.latent_editing.inference import available_editors, load_editor
    from lkgan_jax.pretrained import load_generator
    from lkgan_jax.workdir import DETECTOR_DIR

    e = config.eval
    if not e.get("judge_weights"):
        raise ValueError("the editing metric needs eval.judge_weights (--judge-weights): a second judge, not the editors' training judge")
    if not e.editing_detector or e.editing_detector == DETECTOR_DIR:
        raise ValueError("the editing metric needs eval.editing_detector: a second detector of the run, trained with "
                         "`lkgan detect --config.detect.name=NAME --config.detect.seed=S` (the editors trained against RUN/detector)")
    names = list(editor_names) if editor_names else available_editors(workdir)
    detector, _, generator_step = load_detector(workdir, name=e.editing_detector)
    generator = load_generator(workdir, generator_step)
    editors = {name: load_editor(workdir, name, generator) for name in names}
    judge_paths = {editor.config.judge_weights for editor in editors.values()} or {config.edit.judge_weights}
    if len(judge_paths) != 1 or not next(iter(judge_paths)):
        raise ValueError(f"the editors were trained with different judges ({', '.join(sorted(judge_paths))}); evaluate them separately"
                         if len(judge_paths) > 1 else "no training judge: set edit.judge_weights (the baselines are fitted with it)")
    under_test = {
        name: EditorUnderTest(editor.apply, editor.attribute_names, np.asarray(editor.attribute_std), editor.config.delta_max)
        for name, editor in editors.items()
    }
    result, everything = evaluate_editing(generator, under_test, load_judge(next(iter(judge_paths))), load_judge(e.judge_weights),
                                          detector, e, config.data.seed, config.edit.delta_max, extractor, real_features)
    picture = editing_picture(generator, everything, detector, e.editing_seed)
    return {"editing/generator_step": generator.step, "editing/eval_detector": e.editing_detector, **result}, picture


def editing_picture(
    generator: TrainedGenerator, editors: Mapping[str, EditorUnderTest], detector: TrainedDetector, seed: int,
    values: tuple[float, ...] = (-1.0, 0.0, 1.0), upscale: int | None = None,
) -> np.ndarray:
    """One face (latent of ``seed``) edited by each attribute at each of ``values`` standard deviations: a uint8 grid.

    One row per attribute (the first editor's), one column group per editor (columns: ``values``), with
    ``detector``'s keypoints of each edited image drawn, so that keypoint drift is visible; two caption
    lines name the columns and rows.
    """
    from lkgan_jax.utils import visualize

    first = next(iter(editors.values()))
    latent = generator.latent_from_seeds([seed])
    factor = upscale or visualize.readable_upscale_factor(generator.resolution)
    tiles = []
    for name in first.attribute_names:
        for editor in editors.values():
            index = editor.attribute_names.index(name)
            delta = np.zeros((len(values), len(editor.attribute_names)), np.float32)
            delta[:, index] = values
            batch = jax.tree.map(lambda x: jnp.repeat(x, len(values), axis=0), latent)
            images = quantised_render(generator, editor.apply(batch, jnp.asarray(delta)))
            keypoints = np.asarray(detector.detect(images))
            tiles.append(visualize.draw_keypoints(visualize.upscale_nearest(float_to_uint8(images), factor), keypoints))
    grid = visualize.make_grid(np.concatenate(tiles), ncols=len(values) * len(editors))
    steps = ", ".join(f"{v:+g}" for v in values)
    grid = visualize.add_caption(grid, f"columns: {' | '.join(editors)}, each at {steps} std")
    return visualize.add_caption(grid, f"rows: {', '.join(first.attribute_names)}")
