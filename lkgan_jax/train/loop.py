"""LatentKeypointGAN training: the GAN as a task of the shared harness (``lkgan_jax.train.harness``).

``build_trainer`` builds the mesh, models, shardings and the jitted step for one config (shared with
the benchmarks); ``gan_task`` adds the data, sample grid and evaluation hooks; ``train_and_evaluate``
runs it. Outputs go into the work dir layout of ``lkgan_jax.workdir`` (docs/design.md §11).
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
from jax.sharding import Mesh, NamedSharding

from lkgan_jax import parallel
from lkgan_jax.data import pipeline
from lkgan_jax.evaluation import run_metrics
from lkgan_jax.models.factory import generator_resolution
from lkgan_jax.models.sampling import MAX_SEED, TrainedGenerator, standing_statistics
from lkgan_jax.train import harness, samples
from lkgan_jax.train.state import GanModels, TrainState, create_state, make_models
from lkgan_jax.train.step import compile_train_step, make_train_step
from lkgan_jax.utils.compilation import run_once
from lkgan_jax.workdir import write_config

EMA_STATISTICS_KEY = 5  # folded into the run key: the noise of the EMA generator's standing statistics


def is_penalty_step(step: int, reg_every: int) -> bool:
    """Whether step index ``step`` (from 0) adds the lazy gradient penalty: the last of every ``reg_every``,
    so that a logged step (``train.log_every`` a multiple of it, or of a common multiple) shows it."""
    return (step + 1) % reg_every == 0


def step_variants(train_config: ml_collections.ConfigDict) -> dict[tuple[bool, bool], tuple[bool, bool]]:
    """The step's static ``(do_reg, log_terms)`` pairs to compile: with and without the lazy penalty, and
    (``train.term_grad_norms``) the penalty step with the per-term gradient norms: three executables, not
    four, since the norms are taken on logged penalty steps only (each executable costs ~10-20 s of compile
    on a CPU)."""
    pairs = [(False, False), (True, False)] + ([(True, True)] if train_config.get("term_grad_norms", False) else [])
    return {pair: pair for pair in pairs}


def step_variant(step: int, train_config: ml_collections.ConfigDict) -> tuple[bool, bool]:
    """The ``(do_reg, log_terms)`` variant that trains step index ``step``: per-term norms on the logged
    penalty steps (every common multiple of ``train.log_every`` and ``train.reg_every``), where every term,
    the penalty's included, has a gradient."""
    t = train_config
    reg = is_penalty_step(step, t.reg_every)
    logged = t.get("term_grad_norms", False) and harness.is_due(step + 1, t.log_every, t.steps)
    return reg, bool(reg and logged)


def validate_config(config: ml_collections.ConfigDict) -> None:
    """One-line errors for configs that cannot train."""
    resolution = generator_resolution(config.model)
    if resolution != config.data.resolution:
        raise ValueError(
            f"data.resolution={config.data.resolution}, but model.g_channels has {len(config.model.g_channels)} entries: "
            f"a generator of {resolution}-px images only (each entry doubles the side from 4 px)"
        )
    if config.data.resolution % 2 ** len(config.model.d_channels):
        raise ValueError(f"data.resolution={config.data.resolution} is not divisible by 2^len(model.d_channels)")
    for name in ("batch_size", "reg_every"):
        if config.train[name] <= 0:
            raise ValueError(f"train.{name} must be positive, got {config.train[name]}")
    if config.train.ema_stats_batches < 0:
        raise ValueError(f"train.ema_stats_batches must be at least 0 (0: G's running statistics), got {config.train.ema_stats_batches}")
    if not 0 <= config.seed <= MAX_SEED:
        raise ValueError(f"seed must lie in 0..{MAX_SEED}, got {config.seed}")
    harness.Schedule.from_config(config.train, "train")
    run_metrics.check_training_metrics(config, "train")


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
        return run_once(self.init, self.state_shardings, jax.random.key(self.config.seed))

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
    if config.train.ema_stats_batches:
        parallel.check_global_batch(config.train.ema_stats_batch_size, mesh, "train.ema_stats_batch_size")
    models = make_models(config)

    def init(key: jax.Array) -> TrainState:
        return create_state(models, key, config.model.z_dim, config.data.resolution)

    abstract = jax.eval_shape(init, jax.random.key(config.seed))
    shardings = parallel.state_shardings(abstract, mesh, config.mesh.fsdp_min_bytes)
    batch_sharding = parallel.batch_sharding(mesh)
    train_step = compile_train_step(make_train_step(models, config), shardings, batch_sharding, parallel.replicated(mesh))
    return Trainer(config, mesh, models, abstract, shardings, batch_sharding, init, train_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, devices: list | None = None) -> TrainState:
    """Trains (or resumes training) until ``config.train.steps`` over ``devices`` (default all); returns the final state."""
    trainer = build_trainer(config, devices)
    workdir = pathlib.Path(workdir)
    data_iterator = iter(pipeline.make_train_dataset(config.data, config.train.batch_size, seed=config.seed))
    try:
        return harness.run(gan_task(trainer, workdir, data_iterator))
    finally:
        if hasattr(data_iterator, "close"):
            data_iterator.close()  # stops Grain worker processes and frees their shared memory


def gan_task(trainer: Trainer, workdir: pathlib.Path, data_iterator: Any) -> harness.Task:
    """The GAN as a harness task: its state, step variants, batches, sample grid and evaluation."""
    config, t = trainer.config, trainer.config.train
    sampler = samples.make_sampler(trainer.models.generator, t.num_samples, t.sample_seed)

    def sample(state: TrainState) -> np.ndarray:
        images, latent = sampler(state.ema_params, state.ema_stats)
        return samples.keypoint_grid(images, latent, t.sample_upscale)

    evaluate = None
    if t.get("eval_every", 0) > 0:
        setup = run_metrics.EvalSetup.for_training(config)

        def evaluate(state: TrainState, step: int) -> dict[str, float]:
            generator = TrainedGenerator(trainer.models.generator, state.ema_variables(), config, step)
            return run_metrics.evaluate_in_memory(setup, generator)

    def batches() -> Iterator[tuple]:
        for batch in data_iterator:
            yield (pipeline.make_global_batch(batch, trainer.batch_sharding),)

    return harness.Task(
        name="GAN",
        directory=workdir,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(t, "train"),
        abstract_state=trainer.abstract_state,
        state_shardings=trainer.state_shardings,
        init_state=trainer.initial_state,
        step=trainer.train_step,
        inputs=batches(),
        abstract_inputs=(trainer.abstract_batch(),),
        batch_size=t.batch_size,
        variants=step_variants(t),
        variant=functools.partial(step_variant, train_config=t),
        data_iterator=data_iterator,
        parameters=lambda state: {"G": state.g_params, "D": state.d_params},
        on_start=lambda latest: write_config(workdir, config, resuming=latest is not None),
        sample=sample,
        evaluate=evaluate,
        refresh=make_ema_statistics_refresh(trainer),
    )


def make_ema_statistics_refresh(trainer: Trainer) -> Callable[[TrainState], TrainState]:
    """``state -> state`` with ``ema_stats`` renewed for the current EMA parameters (docs/design.md §3).

    ``train.ema_stats_batches`` > 0: the standing BatchNorm statistics of the EMA generator over that
    many fresh batches of ``train.ema_stats_batch_size`` (``standing_statistics``), from a fixed key of
    the run, so a resumed run renews them to the same values. 0: a copy of G's running statistics.
    """
    t = trainer.config.train
    num_batches, batch_size = t.ema_stats_batches, t.ema_stats_batch_size
    shardings = trainer.state_shardings

    @functools.partial(jax.jit, in_shardings=(shardings.ema_params, shardings.g_stats, shardings.key), out_shardings=shardings.ema_stats)
    def statistics(ema_params, g_stats, key):
        if num_batches == 0:
            return jax.tree.map(jnp.copy, g_stats)
        key = jax.random.fold_in(key, EMA_STATISTICS_KEY)
        return standing_statistics(trainer.models.generator, ema_params, g_stats, key, num_batches, batch_size, trainer.batch_sharding)

    return lambda state: state.replace(ema_stats=statistics(state.ema_params, state.g_stats, state.key))
