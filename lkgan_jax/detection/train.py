"""Training the keypoint detector on the generator's own (image, keypoints) pairs (docs/design.md §8).

Pairs are generated inside the jitted step by the run's EMA generator in eval mode, from noise derived
from ``(key, step)``: no dataset on disk, and a resumed run sees exactly the pairs it would have seen.
The step is sharded like the GAN step (batch over the mesh, parameters replicated, state donated) and
runs through the shared harness (``lkgan_jax.train.harness``).

Outputs under ``RUN/detector/`` (``lkgan_jax.workdir``)::

    config.json     the ``detect`` config section and the generator step the pairs come from
    checkpoints/    Orbax checkpoints of ``SupervisedState``
    metrics.jsonl   one JSON object per logged step (``loss``, ``keypoint_error``, norms, ``steps_per_s``)
                    and per evaluation (``landmarks/...`` with ``detect.eval_every``)
    events.out.tfevents.*   the same scalars for TensorBoard
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import pathlib
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh

from lkgan_jax import checkpoint, parallel
from lkgan_jax.detection.detector import KeypointDetector, make_detector
from lkgan_jax.detection.inference import DetectorRun, TrainedDetector, detector_dir
from lkgan_jax.train.supervised import SupervisedState, apply_gradients, init_supervised_state
from lkgan_jax.evaluation import run_metrics
from lkgan_jax.models.heatmaps import keypoint_heatmaps
from lkgan_jax.models.sampling import TrainedGenerator, generated_pairs
from lkgan_jax.train import harness, health
from lkgan_jax.utils import files
from lkgan_jax.workdir import CONFIG_FILE, DETECTOR_DIR

# Fields of the detect section that define the network; a resumed run must keep them.
ARCHITECTURE_FIELDS = ("input_size", "down_channels", "up_channels")


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
    abstract_state: Any
    state_shardings: Any
    init: Callable[[jax.Array], SupervisedState]
    step: Callable[[SupervisedState, Any], tuple[SupervisedState, dict]]


def build_detector_trainer(detect_config: ml_collections.ConfigDict, generator: TrainedGenerator, devices=None) -> DetectorTrainer:
    c = detect_config
    if c.batch_size <= 0:
        raise ValueError(f"detect.batch_size must be positive, got {c.batch_size}")
    harness.Schedule.from_config(c, "detect")
    mesh = parallel.make_mesh(generator.config.mesh, devices)
    parallel.check_global_batch(c.batch_size, mesh, "detect.batch_size")
    detector = make_detector(c, generator.num_parts)
    tx = optax.adam(c.lr)
    batch_sharding = parallel.batch_sharding(mesh)
    init = functools.partial(init_supervised_state, detector, tx, generator.resolution)

    def step(state: SupervisedState, g_variables: Any) -> tuple[SupervisedState, dict]:
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
        logged = health.is_logged(state.step, c.log_every, c.steps)
        new_state, norms = apply_gradients(state, tx, grads, batch_stats, loss, "detector", logged)
        metrics = {"loss": loss, "coordinate_loss": coordinate_loss, "keypoint_error": keypoint_error(predicted, target), **norms}
        return new_state, metrics

    abstract = jax.eval_shape(init, jax.random.key(c.seed))
    shardings = parallel.state_shardings(abstract, mesh, generator.config.mesh.fsdp_min_bytes)
    replicated = parallel.replicated(mesh)
    g_shardings = jax.tree.map(lambda _: replicated, generator.variables)
    jitted_step = jax.jit(step, in_shardings=(shardings, g_shardings), out_shardings=(shardings, replicated), donate_argnums=0)
    jitted_init = jax.jit(init, out_shardings=shardings)
    return DetectorTrainer(c, mesh, detector, generator, tx, abstract, shardings, jitted_init, jitted_step)


def _write_detector_config(directory: pathlib.Path, detect_config: ml_collections.ConfigDict, generator_step: int) -> None:
    """Writes detector/config.json; refuses to resume with another architecture."""
    path = directory / CONFIG_FILE
    new = {"detect": json.loads(detect_config.to_json()), "generator_step": generator_step}
    if path.exists():
        old = json.loads(path.read_text())
        changed = [f for f in ARCHITECTURE_FIELDS if old["detect"].get(f) != new["detect"][f]]
        if changed:
            raise checkpoint.CheckpointMismatchError(
                f"{directory} holds a detector with other detect.{', detect.'.join(changed)}; delete it or keep the config"
            )
    directory.mkdir(parents=True, exist_ok=True)
    if jax.process_index() == 0:
        files.write_json(path, new)


def recorded_generator_step(workdir: str | pathlib.Path, name: str = DETECTOR_DIR) -> int | None:
    """The generator step an existing detector ``name`` of ``workdir`` was trained on (None if there is none)."""
    path = detector_dir(workdir, name) / CONFIG_FILE
    return json.loads(path.read_text())["generator_step"] if path.exists() else None


def generator_inputs(g_variables: Any) -> Iterator[tuple]:
    """The detector step's inputs: the (constant) generator variables, every step."""
    return itertools.repeat((g_variables,))


def detector_task(trainer: DetectorTrainer, run_config: ml_collections.ConfigDict, directory: pathlib.Path) -> harness.Task:
    """The detector as a harness task; ``run_config`` is the run's config with this ``detect`` section."""
    c, generator = trainer.config, trainer.generator
    g_variables = parallel.replicate(generator.variables, trainer.mesh)
    generator = dataclasses.replace(generator, variables=g_variables)  # evaluation runs on the task's mesh
    evaluate = None
    if c.get("eval_every", 0) > 0:
        setup = run_metrics.EvalSetup.for_training(run_config, "detect")

        def evaluate(state: SupervisedState, step: int) -> dict[str, float]:
            detector = TrainedDetector(trainer.detector, {"params": state.params, "batch_stats": state.batch_stats}, step)
            return run_metrics.evaluate_in_memory(setup, generator, DetectorRun(detector, c, generator))

    return harness.Task(
        name="detector",
        directory=directory,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(c, "detect"),
        abstract_state=trainer.abstract_state,
        state_shardings=trainer.state_shardings,
        init_state=lambda: trainer.init(jax.random.key(c.seed)),
        step=trainer.step,
        inputs=generator_inputs(g_variables),
        abstract_inputs=(g_variables,),
        batch_size=c.batch_size,
        parameters=lambda state: {"detector": state.params},
        on_start=lambda latest: _write_detector_config(directory, c, generator.step),
        evaluate=evaluate,
    )


def train_detector(workdir: str | pathlib.Path, run_config: ml_collections.ConfigDict, generator_step: int | None = None) -> SupervisedState:
    """Trains (or resumes) the detector of the run in ``workdir`` to ``run_config.detect.steps``.

    ``run_config`` is the run's config with the ``detect`` (and ``eval``) sections to use.
    """
    from lkgan_jax.pretrained import load_generator

    name = run_config.detect.get("name", DETECTOR_DIR)
    directory = detector_dir(workdir, name)
    recorded = recorded_generator_step(workdir, name)
    if recorded is not None and generator_step is not None and recorded != generator_step:
        raise ValueError(f"the detector in {directory} was trained on generator step {recorded}, not {generator_step}")
    run_metrics.check_training_metrics(run_config, "detect")
    generator = load_generator(workdir, recorded if recorded is not None else generator_step)
    trainer = build_detector_trainer(run_config.detect, generator)
    return harness.run(detector_task(trainer, run_config, directory))
