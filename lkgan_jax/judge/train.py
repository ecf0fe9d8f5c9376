"""Training the judge on real procedural faces (docs/design.md §7.7), through the one harness.

The judge learns each face's 10 landmarks and its 12 attributes (standardised by the mean and std of
``judge.num_standardise`` training faces) from the train split, fed by the Grain pipeline without
flips. Every ``judge.eval_every`` steps (and at the end) it is scored on ``judge.num_test`` faces of
the held-out test split. Work dir::

    checkpoints/    Orbax checkpoints of the ``SupervisedState`` (resumable)
    metrics.jsonl   losses, health signals and held-out scores; TensorBoard events beside it
    judge.msgpack   the exported judge (``eval.judge_weights``), written when training completes
    heldout.png     its landmark predictions on the first held-out faces, for a person to judge
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from lkgan_jax import parallel
from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data import pipeline
from lkgan_jax.data.procedural import ATTRIBUTE_NAMES, NUM_ATTRIBUTES, NUM_LANDMARKS, render_faces
from lkgan_jax.evaluation.landmarks import in_batches, landmark_errors
from lkgan_jax.judge.model import Judge, make_judge
from lkgan_jax.judge.weights import TrainedJudge, save_judge
from lkgan_jax.train import harness, health
from lkgan_jax.train.supervised import SupervisedState, apply_gradients, init_supervised_state
from lkgan_jax.utils import visualize

JUDGE_FILE = "judge.msgpack"
PICTURE_FILE = "heldout.png"
PICTURE_FACES = 16


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """Real test-split faces at the judge's resolution, with their labels."""

    images: np.ndarray  # uint8 (N, R, R, 3)
    landmarks: np.ndarray  # (N, L, 2)
    attributes: np.ndarray  # (N, A)


def test_faces(data_seed: int, num: int, resolution: int, split: str = "test") -> HeldOut:
    """Faces 0 … num − 1 of a procedural split (``test``: held out from every training set)."""
    from lkgan_jax.data.procedural import ProceduralFaces

    source = ProceduralFaces(data_seed, split, resolution, size=num)
    items = [source[i] for i in range(num)]
    return HeldOut(*(np.stack([item[key] for item in items]) for key in ("image", "landmarks", "attributes")))


def heldout_scores(judge: TrainedJudge, faces: HeldOut, batch_size: int, eye_landmarks: tuple[int, int]) -> dict[str, float]:
    """``judge/landmark_error_iod_pct``, ``judge/attribute_mae`` (standardised) and ``judge/attribute_r2``,
    also per attribute (``judge/attribute_mae/NAME``, ``judge/attribute_r2/NAME``)."""
    def predict(images: np.ndarray) -> np.ndarray:
        out = judge.outputs(uint8_to_float(images))
        return np.concatenate([np.asarray(out.landmarks).reshape(len(images), -1), np.asarray(out.attributes)], axis=1)

    predicted = in_batches(predict, faces.images, batch_size)
    landmarks = predicted[:, : faces.landmarks[0].size].reshape(faces.landmarks.shape)
    attributes = predicted[:, faces.landmarks[0].size :]
    target = (faces.attributes - judge.attribute_mean) / judge.attribute_std
    residual = np.mean(np.square(attributes - target), axis=0)
    variance = np.maximum(np.var(target, axis=0), 1e-12)
    mae, r2 = np.mean(np.abs(attributes - target), axis=0), 1.0 - residual / variance
    return {
        "judge/landmark_error_iod_pct": landmark_errors(landmarks, faces.landmarks, faces.images.shape[1], eye_landmarks)["error_iod_pct"],
        "judge/attribute_mae": float(np.mean(mae)),
        "judge/attribute_r2": float(np.mean(r2)),
        **{f"judge/attribute_mae/{name}": float(value) for name, value in zip(ATTRIBUTE_NAMES, mae)},
        **{f"judge/attribute_r2/{name}": float(value) for name, value in zip(ATTRIBUTE_NAMES, r2)},
    }


def heldout_picture(judge: TrainedJudge, faces: HeldOut, upscale: int = 4) -> np.ndarray:
    """The first held-out faces with the judge's landmark predictions drawn: a uint8 grid."""
    images = faces.images[:PICTURE_FACES]
    predicted = np.asarray(judge.outputs(uint8_to_float(images)).landmarks)
    return visualize.make_grid(visualize.draw_keypoints(visualize.upscale_nearest(images, upscale), predicted))


@dataclasses.dataclass(frozen=True)
class JudgeTrainer:
    config: ml_collections.ConfigDict  # the judge section
    mesh: Mesh
    judge: Judge
    attribute_mean: np.ndarray
    attribute_std: np.ndarray
    abstract_state: Any
    state_shardings: Any
    batch_sharding: Any
    init: Callable[[jax.Array], SupervisedState]
    step: Any

    def trained(self, state: SupervisedState, heldout: dict[str, float] | None = None) -> TrainedJudge:
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return TrainedJudge(self.judge, variables, self.config, self.attribute_mean, self.attribute_std, heldout or {})


def build_judge_trainer(config: ml_collections.ConfigDict, devices=None) -> JudgeTrainer:
    """``config`` is a run config with ``judge``, ``data`` (seed, reader settings) and ``mesh`` sections."""
    c = config.judge
    if c.batch_size <= 0:
        raise ValueError(f"judge.batch_size must be positive, got {c.batch_size}")
    harness.Schedule.from_config(c, "judge")
    mesh = parallel.make_mesh(config.mesh, devices)
    parallel.check_global_batch(c.batch_size, mesh, "judge.batch_size")
    judge = make_judge(c, NUM_LANDMARKS, NUM_ATTRIBUTES)
    attributes = render_faces(config.data.seed, range(c.num_standardise), 8).attributes  # labels need no pixels
    mean, std = attributes.mean(axis=0), np.maximum(attributes.std(axis=0), 1e-6)
    tx = optax.adam(c.lr)
    batch_sharding = parallel.batch_sharding(mesh)
    init = functools.partial(init_supervised_state, judge, tx, c.input_size)

    def step(state: SupervisedState, batch: dict[str, jax.Array]) -> tuple[SupervisedState, dict]:
        target = (batch["attributes"] - mean) / std

        def objective(params):
            out, updates = judge.apply(
                {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True, mutable=["batch_stats"]
            )
            landmark_loss = jnp.mean(jnp.sum(jnp.square(out.landmarks - batch["landmarks"]), axis=-1))
            attribute_loss = jnp.mean(jnp.square(out.attributes - target))
            return landmark_loss + c.attribute_weight * attribute_loss, (updates["batch_stats"], landmark_loss, attribute_loss)

        (loss, (batch_stats, landmark_loss, attribute_loss)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        logged = health.is_logged(state.step, c.log_every, c.steps)
        new_state, norms = apply_gradients(state, tx, grads, batch_stats, loss, "judge", logged)
        return new_state, {"loss": loss, "landmark_loss": landmark_loss, "attribute_loss": attribute_loss, **norms}

    abstract = jax.eval_shape(init, jax.random.key(c.seed))
    shardings = parallel.state_shardings(abstract, mesh, config.mesh.fsdp_min_bytes)
    replicated = parallel.replicated(mesh)
    jitted_step = jax.jit(step, in_shardings=(shardings, batch_sharding), out_shardings=(shardings, replicated), donate_argnums=0)
    return JudgeTrainer(c, mesh, judge, mean, std, abstract, shardings, batch_sharding, jax.jit(init, out_shardings=shardings), jitted_step)


def judge_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The judge's input pipeline: procedural train faces at ``judge.input_size``, never flipped."""
    data = ml_collections.ConfigDict(config.data.to_dict())
    data.source, data.resolution, data.random_flip = "procedural", config.judge.input_size, False
    return data


def judge_task(trainer: JudgeTrainer, config: ml_collections.ConfigDict, directory: pathlib.Path, faces: HeldOut) -> harness.Task:
    """The judge as a harness task; ``faces`` are the held-out faces it is scored on."""
    c = trainer.config
    data_iterator = iter(pipeline.make_train_dataset(judge_data_config(config), c.batch_size, c.seed, keys=pipeline.LABELLED_KEYS))

    def batches() -> Iterator[tuple]:
        for batch in data_iterator:
            yield (pipeline.make_global_batch(batch, trainer.batch_sharding),)

    def evaluate(state: SupervisedState, step: int) -> dict[str, float]:
        return heldout_scores(trainer.trained(state), faces, c.batch_size, tuple(config.eval.eye_landmarks))

    return harness.Task(
        name="judge",
        directory=directory,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(c, "judge"),
        abstract_state=trainer.abstract_state,
        state_shardings=trainer.state_shardings,
        init_state=lambda: trainer.init(jax.random.key(c.seed)),
        step=trainer.step,
        inputs=batches(),
        abstract_inputs=(trainer_abstract_batch(trainer),),
        batch_size=c.batch_size,
        data_iterator=data_iterator,
        parameters=lambda state: {"judge": state.params},
        evaluate=evaluate if c.eval_every > 0 else None,
    )


def trainer_abstract_batch(trainer: JudgeTrainer) -> dict[str, jax.ShapeDtypeStruct]:
    b, r = trainer.config.batch_size, trainer.config.input_size
    shapes = {"image": (b, r, r, 3), "landmarks": (b, NUM_LANDMARKS, 2), "attributes": (b, NUM_ATTRIBUTES)}
    return {k: jax.ShapeDtypeStruct(s, jnp.float32, sharding=trainer.batch_sharding) for k, s in shapes.items()}


def train_judge(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> TrainedJudge:
    """Trains (or resumes) the judge in ``workdir`` to ``judge.steps``; writes and returns ``judge.msgpack``."""
    directory = pathlib.Path(workdir)
    trainer = build_judge_trainer(config)
    faces = test_faces(config.data.seed, config.judge.num_test, config.judge.input_size)
    state = harness.run(judge_task(trainer, config, directory, faces))
    scores = heldout_scores(trainer.trained(state), faces, config.judge.batch_size, tuple(config.eval.eye_landmarks))
    trained = trainer.trained(jax.device_get(state), {**scores, "step": int(state.step)})
    if jax.process_index() == 0:
        save_judge(directory / JUDGE_FILE, trained)
        visualize.save_png(str(directory / PICTURE_FILE), heldout_picture(trained, faces))
    return trained
