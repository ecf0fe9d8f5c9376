"""The host training loop: mesh, state, data, jitted step, logging, samples, checkpoints, resume.

Outputs go into the work dir layout of ``lkgan_jax.workdir`` (SPEC §12).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging
from jax.sharding import Mesh, NamedSharding

from lkgan_jax import checkpoint, parallel
from lkgan_jax.data import pipeline
from lkgan_jax.models.factory import generator_resolution
from lkgan_jax.train import samples
from lkgan_jax.train.state import GanModels, TrainState, create_state, make_models
from lkgan_jax.train.step import compile_train_step, make_train_step
from lkgan_jax.utils import files
from lkgan_jax.utils.compilation import compile_lowered
from lkgan_jax.utils.interrupts import StopRequest
from lkgan_jax.utils.metric_writer import JsonlWriter, Progress, log_progress
from lkgan_jax.workdir import CHECKPOINT_DIR, CONFIG_FILE, METRICS_FILE, SAMPLES_DIR


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/Inf; the run stopped without checkpointing the bad state."""


def validate_config(config: ml_collections.ConfigDict) -> None:
    """One-line errors for configs that cannot train."""
    resolution = generator_resolution(config.model)
    if resolution != config.data.resolution:
        raise ValueError(
            f"model.g_channels has {len(config.model.g_channels)} entries, i.e. a {resolution}-px generator, "
            f"but data.resolution={config.data.resolution}"
        )
    if config.data.resolution % 2 ** len(config.model.d_channels):
        raise ValueError(f"data.resolution={config.data.resolution} is not divisible by 2^len(model.d_channels)")
    for name in ("steps", "batch_size", "log_every", "checkpoint_every", "sample_every", "reg_every"):
        if config.train[name] <= 0:
            raise ValueError(f"train.{name} must be positive, got {config.train[name]}")


def write_config(workdir: pathlib.Path, config: ml_collections.ConfigDict, resuming: bool) -> None:
    """Writes config.json; on resume, refuses a config whose model section differs from the saved one."""
    path = workdir / CONFIG_FILE
    new = json.loads(config.to_json())
    if resuming and path.exists():
        old = json.loads(path.read_text())
        if old.get("model") != new["model"]:
            changed = sorted(k for k in new["model"] if old.get("model", {}).get(k) != new["model"][k])
            raise checkpoint.CheckpointMismatchError(
                f"{workdir} holds checkpoints of another model config (differs in model.{', model.'.join(changed)}); "
                "use a new --workdir"
            )
    if jax.process_index() == 0:
        files.write_json(path, new)


def _check_finite(state: TrainState, manager: Any) -> None:
    bad_step = int(jax.device_get(state.nonfinite_step))
    if bad_step >= 0:
        good = manager.latest_step()
        kept = f"last good checkpoint: step {good}" if good is not None else "no checkpoint was written"
        raise TrainingDivergedError(f"loss became NaN/Inf at step {bad_step + 1}; training stopped ({kept})")


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Everything compiled for one config over one mesh (shared by the loop and the benchmarks)."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    models: GanModels
    abstract_state: Any
    state_shardings: Any
    batch_sharding: NamedSharding
    init: Callable[[jax.Array], TrainState]
    train_step: Callable[..., tuple[TrainState, dict]]

    def initial_state(self) -> TrainState:
        """A fresh state, born with its shardings (never materialised on one device)."""
        key = jax.random.key(self.config.seed)
        lowered = jax.jit(self.init, out_shardings=self.state_shardings).lower(key)
        return compile_lowered(lowered, fast=True)(key)  # runs once: optimising it is not worth the compile time

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shape, dtype and sharding of a global training batch."""
        r = self.config.data.resolution
        shape = (self.config.train.batch_size, r, r, 3)
        return {"image": jax.ShapeDtypeStruct(shape, jnp.float32, sharding=self.batch_sharding)}


def build_trainer(config: ml_collections.ConfigDict, devices: list | None = None) -> Trainer:
    """Validates ``config`` and builds mesh (over ``devices``, default all), models, shardings, step."""
    validate_config(config)
    mesh = parallel.make_mesh(config.mesh, devices)
    parallel.check_global_batch(config.train.batch_size, mesh)
    models = make_models(config)

    def init(key: jax.Array) -> TrainState:
        return create_state(models, key, config.model.z_dim, config.data.resolution)

    abstract = jax.eval_shape(init, jax.random.key(config.seed))
    shardings = parallel.state_shardings(abstract, mesh, config.mesh.fsdp_min_bytes)
    batch_sharding = parallel.batch_sharding(mesh)
    train_step = compile_train_step(make_train_step(models, config), shardings, batch_sharding, parallel.replicated(mesh))
    return Trainer(config, mesh, models, abstract, shardings, batch_sharding, init, train_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> TrainState:
    """Trains (or resumes training) until ``config.train.steps``; returns the final state."""
    trainer = build_trainer(config)
    t = config.train
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / SAMPLES_DIR).mkdir(exist_ok=True)
    data_iterator = iter(pipeline.make_train_dataset(config.data, t.batch_size, seed=config.seed))

    manager = checkpoint.make_manager(workdir / CHECKPOINT_DIR, t.keep_checkpoints)
    latest = manager.latest_step()
    write_config(workdir, config, resuming=latest is not None)
    with jax.set_mesh(trainer.mesh):
        if latest is None:
            state = trainer.initial_state()
        else:
            target = checkpoint.abstract_target(trainer.abstract_state, trainer.state_shardings)
            state = checkpoint.restore(manager, latest, target, data_iterator)
            log_progress(f"resumed from {manager.directory} at step {latest}")
        sampler = samples.make_sampler(trainer.models.generator, t.num_samples, t.sample_seed)
        try:
            return _run(trainer, workdir, state, sampler, data_iterator, manager)
        finally:
            if hasattr(data_iterator, "close"):
                data_iterator.close()  # stops Grain worker processes and frees their shared memory


def _run(trainer: Trainer, workdir, state, sampler, data_iterator, manager) -> TrainState:
    t = trainer.config.train
    start = int(jax.device_get(state.step))
    writer = JsonlWriter(workdir / METRICS_FILE)
    progress = Progress(start, t.steps)
    step = start
    if start >= t.steps:
        log_progress(f"already trained to step {start} (train.steps={t.steps}); nothing to do")
        manager.close()
        return state
    position, fetched_for = None, -1
    try:
        with StopRequest() as stop:
            steps = _compile_both_variants(trainer, state)
            progress.reset(step)
            while step < t.steps and not stop.requested:
                position = data_iterator.get_state()  # where to rewind if this step does not complete
                fetched_for = step
                batch = pipeline.make_global_batch(next(data_iterator), trainer.batch_sharding)
                state, metrics = steps[step % t.reg_every == 0](state, batch)
                step += 1
                if step % t.log_every == 0 or step == t.steps:
                    _check_finite(state, manager)
                    steps_per_s = progress.update(step)
                    scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
                    writer.write(step, {**scalars, "steps_per_s": steps_per_s, "images_per_s": steps_per_s * t.batch_size})
                    log_progress(progress.line(step, steps_per_s, scalars))
                if step % t.sample_every == 0 or step == t.steps:
                    images, latent = sampler(state.ema_params, state.g_stats)
                    if jax.process_index() == 0:
                        samples.save_sample_grid(workdir / SAMPLES_DIR / f"step_{step:07d}.png", images, latent, t.sample_upscale)
                if step % t.checkpoint_every == 0 or step == t.steps:
                    _check_finite(state, manager)
                    checkpoint.save(manager, step, state, data_iterator)
            if stop.requested and step < t.steps:
                _save_on_stop(state, step, manager, data_iterator, "SIGTERM")
    except KeyboardInterrupt:
        done = int(jax.device_get(state.step))
        if done == fetched_for:
            data_iterator.set_state(position)  # the batch fetched for step `done` was not trained on
        _save_on_stop(state, done, manager, data_iterator, "interrupt")
        raise
    finally:
        manager.wait_until_finished()
        manager.close()
    return state


def _compile_both_variants(trainer: Trainer, state: TrainState) -> dict[bool, Callable]:
    """AOT-compiles the step with and without the penalty (keeps compilation out of steps/s)."""
    start = time.perf_counter()
    fast = trainer.config.train.fast_compile
    compiled = {reg: compile_lowered(trainer.train_step.lower(state, trainer.abstract_batch(), reg), fast) for reg in (False, True)}
    log_progress(f"compiled the train step in {time.perf_counter() - start:.1f}s")
    return compiled


def _save_on_stop(state, step, manager, data_iterator, reason: str) -> None:
    """Checkpoints the current step (if finite and not saved yet) before leaving the loop."""
    if manager.latest_step() == step:
        return
    try:
        _check_finite(state, manager)
    except TrainingDivergedError as error:
        logging.warning("%s: not saving on %s", error, reason)
        return
    checkpoint.save(manager, step, state, data_iterator)
    log_progress(f"{reason}: saved checkpoint at step {step}")
