"""Loading a trained run's generator (and discriminator) from its work dir: ``load_generator(workdir)``.

Only the EMA generator and its own BatchNorm statistics are read from the checkpoint (a partial Orbax
restore); rendering is always in eval mode, so the samples of a batch are independent.

    g = load_generator("runs/default")                # latest checkpoint (or step=N)
    latent = g.latent_from_seeds(jnp.arange(8))        # the images of seeds 0..7
    images = g.render(latent)                          # (8, R, R, 3) float32 in [-1, 1]
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from lkgan_jax.checkpoint import STATE_ITEM, CheckpointDamagedError, CheckpointMismatchError, check_fits, error_summary, read_only_options
from lkgan_jax.models.discriminator import Discriminator
from lkgan_jax.models.factory import generator_resolution, make_discriminator, make_generator
from lkgan_jax.models.generator import statistics
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.models.sampling import TrainedGenerator
from lkgan_jax.workdir import CHECKPOINT_DIR, read_config


def load_generator(
    workdir: str | pathlib.Path, step: int | None = None, device: jax.Device | None = None, dtype: str | None = None
) -> TrainedGenerator:
    """The EMA generator of the run in ``workdir`` at ``step`` (default: latest), on ``device``.

    ``dtype`` (``float32`` | ``bfloat16``) overrides the run's compute dtype (``model.dtype``); the
    parameters are float32 either way.

    Raises ``FileNotFoundError`` / ``ValueError`` / ``CheckpointMismatchError`` with one-line messages
    for a missing work dir or checkpoint, an unknown step, or arrays that do not fit the config.
    """
    workdir = pathlib.Path(workdir)
    config = read_config(workdir)
    generator = make_generator(config.model, dtype)
    abstract = jax.eval_shape(lambda: generator.init(jax.random.key(0), *sample_noise(jax.random.key(0), 1, generator.z_dim)))
    try:
        restored, step = restore_state_parts(
            workdir, step, {"ema_params": abstract["params"], "ema_stats": statistics(abstract)}, "the generator", device
        )
        stats = restored["ema_stats"]
    except CheckpointMismatchError:  # a run from before the EMA generator had its own BatchNorm statistics
        restored, step = restore_state_parts(
            workdir, step, {"ema_params": abstract["params"], "g_stats": statistics(abstract)}, "the generator", device
        )
        stats = restored["g_stats"]
        logging.warning("%s: checkpoint step %d has no ema_stats; the EMA generator renders with G's BatchNorm statistics", workdir, step)
    return TrainedGenerator(generator, {"params": restored["ema_params"], "batch_stats": stats}, config, step)


def load_discriminator_params(workdir: str | pathlib.Path, step: int) -> tuple[Discriminator, Any]:
    """The run's discriminator at ``step`` → (module, params), e.g. for an editor's adversarial term."""
    workdir = pathlib.Path(workdir)
    config = read_config(workdir)
    discriminator = make_discriminator(config.model)
    side = generator_resolution(config.model)
    abstract = jax.eval_shape(lambda: discriminator.init(jax.random.key(0), jax.numpy.zeros((1, side, side, 3))))
    restored, _ = restore_state_parts(workdir, step, {"d_params": abstract["params"]}, "the discriminator")
    return discriminator, restored["d_params"]


def restore_state_parts(
    workdir: pathlib.Path, step: int | None, abstract: Any, what: str, device: jax.Device | None = None
) -> tuple[Any, int]:
    """Reads only the fields of the saved state named by ``abstract`` (a nested dict of shapes) → (arrays, step).

    ``step`` None: the latest checkpoint. One-line errors for a missing checkpoint, an unknown step, or
    arrays that do not fit ``abstract`` (``what`` names the part in the message).
    """
    manager = _manager(workdir)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {workdir / CHECKPOINT_DIR}")
        if step is not None and step not in steps:
            raise ValueError(f"no checkpoint at step {step} in {workdir / CHECKPOINT_DIR} (available: {steps})")
        sharding = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
        target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), abstract)
        candidates = [step] if step is not None else steps[::-1]  # without --step: the newest that reads back
        for number, candidate in enumerate(candidates):
            try:
                restored = _restore_parts(manager, workdir, candidate, target, what)
                step = candidate
                break
            except CheckpointDamagedError as error:
                if number == len(candidates) - 1:
                    raise
                logging.warning("%s; reading the previous checkpoint instead", error)
    finally:
        manager.close()
    _check_shapes(restored, target, workdir, step)
    return restored, step


def _restore_parts(manager: ocp.CheckpointManager, workdir: pathlib.Path, step: int, target: Any, what: str) -> Any:
    check_fits(workdir / CHECKPOINT_DIR / str(step), target, partial=True)
    restore = ocp.args.PyTreeRestore(target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True)
    try:
        return manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: restore}))[STATE_ITEM]
    except Exception as error:  # the tree fits (checked above): the files are damaged
        raise CheckpointDamagedError(
            f"checkpoint step {step} in {workdir} is damaged and cannot give {what} "
            f"({type(error).__name__}: {error_summary(error)})"
        ) from error


def _manager(workdir: pathlib.Path) -> ocp.CheckpointManager:
    directory = (workdir / CHECKPOINT_DIR).absolute()
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory {directory}")
    return ocp.CheckpointManager(directory, options=read_only_options(), item_handlers={STATE_ITEM: ocp.PyTreeCheckpointHandler()})


def _check_shapes(restored: Any, target: Any, workdir: pathlib.Path, step: int) -> None:
    for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(restored), jax.tree.leaves(target)):
        if got.shape != want.shape:
            raise CheckpointMismatchError(
                f"checkpoint step {step} in {workdir}: {jax.tree_util.keystr(path)} has shape {got.shape}, "
                f"the config expects {want.shape}"
            )
