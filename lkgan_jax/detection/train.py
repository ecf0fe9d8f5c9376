"""Training the keypoint detector on the generator's own (image, keypoints) pairs (SPEC §8).

Pairs are generated inside the jitted step by the run's EMA generator in eval mode, from noise derived
from ``(key, step)``: no dataset on disk, and a resumed run sees exactly the pairs it would have seen.
The step is sharded like the GAN step (batch over the mesh, parameters replicated, state donated).

Outputs under ``RUN/detector/`` (``lkgan_jax.workdir``)::

    config.json     the ``detect`` config section and the generator step the pairs come from
    checkpoints/    Orbax checkpoints of ``DetectorState``
    metrics.jsonl   one JSON object per logged step (``step``, ``loss``, ``keypoint_error``, ``steps_per_s``)
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from lkgan_jax import checkpoint, parallel
from lkgan_jax.detection.detector import KeypointDetector, make_detector
from lkgan_jax.models.factory import generator_resolution
from lkgan_jax.models.generator import Generator
from lkgan_jax.models.heatmaps import keypoint_heatmaps
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.pretrained import TrainedGenerator, latent_from_noise, load_generator, render
from lkgan_jax.train.loop import TrainingDivergedError
from lkgan_jax.utils import files
from lkgan_jax.utils.interrupts import StopRequest
from lkgan_jax.utils.metric_writer import JsonlWriter, Progress, log_progress
from lkgan_jax.workdir import CHECKPOINT_DIR, CONFIG_FILE, DETECTOR_DIR, METRICS_FILE, read_config

# Fields of the detect section that define the network; a resumed run must keep them.
ARCHITECTURE_FIELDS = ("input_size", "down_channels", "up_channels")


class DetectorState(flax.struct.PyTreeNode):
    step: jax.Array
    key: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState


def init_state(detector: KeypointDetector, tx: optax.GradientTransformation, resolution: int, key: jax.Array) -> DetectorState:
    """A fresh detector state for images of side ``resolution``; pure, jit-able."""
    init_key, run_key = jax.random.split(key)
    variables = detector.init(init_key, jnp.zeros((1, resolution, resolution, 3)), train=False)
    params = variables["params"]
    return DetectorState(jnp.zeros((), jnp.int32), run_key, params, variables["batch_stats"], tx.init(params))


def generated_pairs(generator: Generator, g_variables: Any, key: jax.Array, batch_size: int) -> tuple[jax.Array, Any]:
    """``batch_size`` fresh (images (B, R, R, 3), latent) pairs from the EMA generator in eval mode."""
    latent = latent_from_noise(generator, g_variables, *sample_noise(key, batch_size, generator.z_dim))
    images = render(generator, g_variables, latent)
    return jax.lax.stop_gradient(images), jax.lax.stop_gradient(latent)


def keypoint_error(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean Euclidean distance (normalised units) between (B, K, 2) keypoint sets."""
    return jnp.mean(jnp.linalg.norm(predicted - target, axis=-1))


@dataclasses.dataclass(frozen=True)
class DetectorTrainer:
    """The detector, its optimiser and the jitted init/step over one mesh."""

    config: ml_collections.ConfigDict  # the detect section
    mesh: Mesh
    detector: KeypointDetector
    generator: TrainedGenerator
    tx: optax.GradientTransformation
    state_shardings: Any
    init: Callable[[jax.Array], DetectorState]
    step: Callable[[DetectorState, Any], tuple[DetectorState, dict]]


def build_detector_trainer(detect_config: ml_collections.ConfigDict, generator: TrainedGenerator, devices=None) -> DetectorTrainer:
    c = detect_config
    for name in ("steps", "batch_size", "log_every", "checkpoint_every"):
        if c[name] <= 0:
            raise ValueError(f"detect.{name} must be positive, got {c[name]}")
    mesh = parallel.make_mesh(generator.config.mesh, devices)
    parallel.check_global_batch(c.batch_size, mesh, "detect.batch_size")
    detector = make_detector(c, generator.num_parts)
    tx = optax.adam(c.lr)
    batch_sharding = parallel.batch_sharding(mesh)
    init = functools.partial(init_state, detector, tx, generator.resolution)

    def step(state: DetectorState, g_variables: Any) -> tuple[DetectorState, dict]:
        key = jax.random.fold_in(state.key, state.step)
        images, latent = generated_pairs(generator.generator, g_variables, key, c.batch_size)
        images = jax.lax.with_sharding_constraint(images, batch_sharding)
        target = latent.keypoints

        def objective(params):
            (predicted, logits), updates = detector.apply(
                {"params": params, "batch_stats": state.batch_stats}, images, train=True, mutable=["batch_stats"]
            )
            coordinate_loss = jnp.mean(jnp.sum(jnp.square(predicted - target), axis=-1))
            loss = coordinate_loss
            if c.heatmap_weight > 0:  # softmax heatmaps vs the generator's τ-Gaussians, both normalised to sum 1
                h, w = logits.shape[1:3]
                probs = jax.nn.softmax(logits.reshape(c.batch_size, h * w, -1), axis=1)
                gauss = keypoint_heatmaps(target, latent.tau, latent.mask, h).reshape(c.batch_size, h * w, -1)
                gauss = gauss / jnp.maximum(jnp.sum(gauss, axis=1, keepdims=True), 1e-12)
                loss = loss + c.heatmap_weight * jnp.mean(jnp.square((probs - gauss) * (h * w)))
            return loss, (updates["batch_stats"], predicted, coordinate_loss)

        (loss, (batch_stats, predicted, coordinate_loss)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = state.replace(
            step=state.step + 1, params=optax.apply_updates(state.params, updates), batch_stats=batch_stats, opt_state=opt_state
        )
        return new_state, {"loss": loss, "coordinate_loss": coordinate_loss, "keypoint_error": keypoint_error(predicted, target)}

    abstract = jax.eval_shape(init, jax.random.key(c.seed))
    shardings = parallel.state_shardings(abstract, mesh, generator.config.mesh.fsdp_min_bytes)
    replicated = parallel.replicated(mesh)
    g_shardings = jax.tree.map(lambda _: replicated, generator.variables)
    jitted_step = jax.jit(step, in_shardings=(shardings, g_shardings), out_shardings=(shardings, replicated), donate_argnums=0)
    jitted_init = jax.jit(init, out_shardings=shardings)
    return DetectorTrainer(c, mesh, detector, generator, tx, shardings, jitted_init, jitted_step)


def detector_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(workdir) / DETECTOR_DIR


def _write_detector_config(directory: pathlib.Path, detect_config: ml_collections.ConfigDict, generator_step: int) -> None:
    """Writes detector/config.json; refuses to resume with another architecture or generator step."""
    path = directory / CONFIG_FILE
    new = {"detect": json.loads(detect_config.to_json()), "generator_step": generator_step}
    if path.exists():
        old = json.loads(path.read_text())
        changed = [f for f in ARCHITECTURE_FIELDS if old["detect"].get(f) != new["detect"][f]]
        if changed:
            raise checkpoint.CheckpointMismatchError(
                f"{directory} holds a detector with other detect.{', detect.'.join(changed)}; delete it or keep the config"
            )
    if jax.process_index() == 0:
        files.write_json(path, new)


def recorded_generator_step(workdir: str | pathlib.Path) -> int | None:
    """The generator step an existing detector of ``workdir`` was trained on (None if there is none)."""
    path = detector_dir(workdir) / CONFIG_FILE
    return json.loads(path.read_text())["generator_step"] if path.exists() else None


def train_detector(workdir: str | pathlib.Path, detect_config: ml_collections.ConfigDict, generator_step: int | None = None) -> DetectorState:
    """Trains (or resumes) the detector of the run in ``workdir`` to ``detect_config.steps``."""
    recorded = recorded_generator_step(workdir)
    if recorded is not None and generator_step is not None and recorded != generator_step:
        raise ValueError(f"the detector in {detector_dir(workdir)} was trained on generator step {recorded}, not {generator_step}")
    generator = load_generator(workdir, recorded if recorded is not None else generator_step)
    trainer = build_detector_trainer(detect_config, generator)
    directory = detector_dir(workdir)
    _write_detector_config(directory, detect_config, generator.step)
    manager = checkpoint.make_manager(directory / CHECKPOINT_DIR, detect_config.keep_checkpoints)
    c = detect_config
    with jax.set_mesh(trainer.mesh):
        g_variables = jax.device_put(generator.variables, parallel.replicated(trainer.mesh))
        latest = manager.latest_step()
        if latest is None:
            state = trainer.init(jax.random.key(c.seed))
        else:
            target = checkpoint.abstract_target(jax.eval_shape(trainer.init, jax.random.key(c.seed)), trainer.state_shardings)
            state = checkpoint.restore(manager, latest, target)
            log_progress(f"resumed the detector from {manager.directory} at step {latest}")
        return _run(trainer, state, g_variables, manager, directory)


def _finite_scalars(metrics: dict, step: int, manager: Any) -> dict[str, float]:
    """The step's metrics as floats; ``TrainingDivergedError`` if any is NaN/Inf."""
    scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not all(map(math.isfinite, scalars.values())):
        raise TrainingDivergedError(
            f"detector loss became NaN/Inf by step {step}; training stopped (last good checkpoint: {manager.latest_step()})"
        )
    return scalars


def _run(trainer: DetectorTrainer, state: DetectorState, g_variables: Any, manager: Any, directory: pathlib.Path) -> DetectorState:
    c = trainer.config
    step = int(jax.device_get(state.step))
    writer = JsonlWriter(directory / METRICS_FILE)
    try:
        if step >= c.steps:
            log_progress(f"detector already trained to step {step} (detect.steps={c.steps}); nothing to do")
            return state
        start = time.perf_counter()
        compiled = trainer.step.lower(state, g_variables).compile()
        log_progress(f"compiled the detector step in {time.perf_counter() - start:.1f}s")
        progress = Progress(step, c.steps)
        with StopRequest() as stop:
            while step < c.steps and not stop.requested:
                state, metrics = compiled(state, g_variables)
                step += 1
                if step % c.log_every == 0 or step == c.steps:
                    scalars = _finite_scalars(metrics, step, manager)
                    steps_per_s = progress.update(step)
                    writer.write(step, {**scalars, "steps_per_s": steps_per_s})
                    log_progress(progress.line(step, steps_per_s, scalars))
                if step % c.checkpoint_every == 0 or step == c.steps:
                    _finite_scalars(metrics, step, manager)  # never checkpoint a diverged detector
                    checkpoint.save(manager, step, state, None)
            if stop.requested and manager.latest_step() != step:
                checkpoint.save(manager, step, state, None)
                log_progress(f"SIGTERM: saved the detector at step {step}")
    except KeyboardInterrupt:
        if manager.latest_step() != step:
            checkpoint.save(manager, step, state, None)
        raise
    finally:
        manager.wait_until_finished()
        manager.close()
    return state


@dataclasses.dataclass(frozen=True)
class TrainedDetector:
    """A detector with its variables; ``detect(images)`` → keypoints (B, K, 2), eval mode."""

    detector: KeypointDetector
    variables: Any
    step: int

    def detect(self, images: jax.Array) -> jax.Array:
        return _detect(self.detector, self.variables, images)


def _detect_impl(detector: KeypointDetector, variables: Any, images: jax.Array) -> jax.Array:
    return detector.apply(variables, images, train=False)[0]


_detect = jax.jit(_detect_impl, static_argnums=0)


def random_detector(detect_config: ml_collections.ConfigDict, num_keypoints: int, resolution: int, seed: int) -> TrainedDetector:
    """The untrained baseline: the same architecture with random weights (step 0)."""
    detector = make_detector(detect_config, num_keypoints)
    variables = jax.jit(detector.init, static_argnames="train")(jax.random.key(seed), jnp.zeros((1, resolution, resolution, 3)), train=False)
    return TrainedDetector(detector, variables, step=0)


def load_detector(workdir: str | pathlib.Path, step: int | None = None) -> tuple[TrainedDetector, ml_collections.ConfigDict, int]:
    """The trained detector of ``workdir`` → (detector, its detect config, the generator step it used)."""
    directory = detector_dir(workdir)
    if not (directory / CONFIG_FILE).exists():
        raise FileNotFoundError(f"no trained detector in {directory}; run `lkgan detect --workdir {workdir}` first")
    saved = json.loads((directory / CONFIG_FILE).read_text())
    detect_config = ml_collections.ConfigDict(saved["detect"])
    model_config = read_config(workdir).model  # the shapes suffice: no generator weights are read
    detector = make_detector(detect_config, model_config.num_keypoints)
    init = functools.partial(init_state, detector, optax.adam(detect_config.lr), generator_resolution(model_config))

    manager = checkpoint.make_manager(directory / CHECKPOINT_DIR, 1, read_only=True)
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no detector checkpoint in {directory / CHECKPOINT_DIR}")
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.eval_shape(init, jax.random.key(0))
        target = checkpoint.abstract_target(abstract, jax.tree.map(lambda _: sharding, abstract))
        state = checkpoint.restore(manager, step, target)
    finally:
        manager.close()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return TrainedDetector(detector, variables, step), detect_config, saved["generator_step"]
