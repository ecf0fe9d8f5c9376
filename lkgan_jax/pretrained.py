"""A trained generator, ready to sample latents from seeds and render them: ``load_generator(workdir)``.

Only the EMA generator and its BatchNorm statistics are read from the checkpoint (a partial Orbax
restore); rendering is always in eval mode, so the samples of a batch are independent.

    g = load_generator("runs/default")                # latest checkpoint (or step=N)
    latent = g.latent_from_seeds(jnp.arange(8))        # the images of seeds 0..7
    images = g.render(latent)                          # (8, R, R, 3) float32 in [-1, 1]
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from lkgan_jax.checkpoint import STATE_ITEM, CheckpointMismatchError, read_only_options
from lkgan_jax.models.factory import make_generator
from lkgan_jax.models.generator import Generator
from lkgan_jax.models.latent import APPEARANCE_STREAM, BACKGROUND_STREAM, POSE_STREAM, Latent, noise_from_seeds, sample_noise
from lkgan_jax.workdir import CHECKPOINT_DIR, read_config

Variables = dict[str, Any]


@functools.partial(jax.jit, static_argnums=0)
def latent_from_noise(generator: Generator, variables: Variables, z_pose, z_app, z_bg) -> Latent:
    """Stage 1 on explicit noise (B, Z) × 3 -> ``Latent`` (all parts active, configured τ)."""
    return generator.apply(variables, z_pose, z_app, z_bg, method=Generator.sample_latent)


@functools.partial(jax.jit, static_argnums=(0, 5))
def latent_from_seeds(
    generator: Generator, variables: Variables, pose_seeds, appearance_seeds, background_seeds, z_dim: int
) -> Latent:
    """Stage 1 on the noise of integer seeds (N,) per stream (``noise_from_seeds``)."""
    noise = (
        noise_from_seeds(pose_seeds, POSE_STREAM, z_dim),
        noise_from_seeds(appearance_seeds, APPEARANCE_STREAM, z_dim),
        noise_from_seeds(background_seeds, BACKGROUND_STREAM, z_dim),
    )
    return generator.apply(variables, *noise, method=Generator.sample_latent)


@functools.partial(jax.jit, static_argnums=0)
def render(generator: Generator, variables: Variables, latent: Latent) -> jax.Array:
    """Stage 2 in eval mode: ``Latent`` (any K) -> images (B, R, R, 3) float32 in [-1, 1]."""
    return generator.apply(variables, latent, train=False, method=Generator.render)


@dataclasses.dataclass(frozen=True)
class TrainedGenerator:
    """The EMA generator of a run at one step, with its config.

    ``variables`` is ``{"params": EMA params, "batch_stats": BN running statistics}``.
    """

    generator: Generator
    variables: Variables
    config: ml_collections.ConfigDict
    step: int

    @property
    def num_parts(self) -> int:
        return self.generator.num_keypoints

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    def latent_from_noise(self, z_pose: jax.Array, z_app: jax.Array, z_bg: jax.Array) -> Latent:
        return latent_from_noise(self.generator, self.variables, z_pose, z_app, z_bg)

    def latent_from_seeds(
        self, seeds: Any, appearance_seeds: Any | None = None, background_seeds: Any | None = None
    ) -> Latent:
        """Latents of integer ``seeds`` (N,); the appearance / background streams may come from other seeds."""
        seeds = check_seeds(seeds)
        appearance = seeds if appearance_seeds is None else check_seeds(appearance_seeds)
        background = seeds if background_seeds is None else check_seeds(background_seeds)
        return latent_from_seeds(self.generator, self.variables, seeds, appearance, background, self.generator.z_dim)

    def render(self, latent: Latent) -> jax.Array:
        return render(self.generator, self.variables, latent)


MAX_SEED = 2**32 - 1


def check_seeds(seeds: Any) -> np.ndarray:
    """Seeds as a uint32 vector (N,); ``ValueError`` for negative, too large or non-integer seeds."""
    array = np.atleast_1d(np.asarray(seeds))
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"seeds must be integers, got {seeds!r}")
    if array.size and (array.min() < 0 or array.max() > MAX_SEED):
        raise ValueError(f"seeds must lie in 0..{MAX_SEED}, got {seeds!r}")
    return array.astype(np.uint32)


def load_generator(workdir: str | pathlib.Path, step: int | None = None, device: jax.Device | None = None) -> TrainedGenerator:
    """The EMA generator of the run in ``workdir`` at ``step`` (default: latest), on ``device``.

    Raises ``FileNotFoundError`` / ``ValueError`` / ``CheckpointMismatchError`` with one-line messages
    for a missing work dir or checkpoint, an unknown step, or arrays that do not fit the config.
    """
    workdir = pathlib.Path(workdir)
    config = read_config(workdir)
    generator = make_generator(config.model)
    manager = _manager(workdir)
    try:
        steps = sorted(manager.all_steps())
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {workdir / CHECKPOINT_DIR}")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ValueError(f"no checkpoint at step {step} in {workdir / CHECKPOINT_DIR} (available: {steps})")
        sharding = jax.sharding.SingleDeviceSharding(device or jax.local_devices()[0])
        abstract = jax.eval_shape(lambda: generator.init(jax.random.key(0), *sample_noise(jax.random.key(0), 1, generator.z_dim)))
        target = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
            {"ema_params": abstract["params"], "g_stats": abstract["batch_stats"]},
        )
        restore = ocp.args.PyTreeRestore(
            target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
        )
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**{STATE_ITEM: restore}))[STATE_ITEM]
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointMismatchError(
                f"checkpoint step {step} in {workdir} does not fit the generator of its config.json "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
            ) from error
    finally:
        manager.close()
    _check_shapes(restored, target, workdir, step)
    variables = {"params": restored["ema_params"], "batch_stats": restored["g_stats"]}
    return TrainedGenerator(generator, variables, config, step)


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
