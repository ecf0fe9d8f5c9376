"""KeypointGAN training through the shared harness: η pre-training, then the main objective (docs/design.md §13).

``lkgan train --config=configs/keypointgan.py --workdir RUN`` runs two harness tasks in turn:

1. ``regressor`` (``RUN/regressor/``): η learns to read keypoints back from skeleton images β(p̄)
   rendered from poses p̄ of the prior alone: loss mean((softargmax(η(β(p̄))) − p̄)²);
2. ``KeypointGAN`` (``RUN/``): Φ and Ψ learn, from thin-plate-spline pairs (x, x') of one unlabelled
   image, to reconstruct x from its keypoints and the style of x':

     L_G = gan_weight · LSGAN(D(Φ(x)), real) + reconstruction_weight · Perc(Ψ(β(η(Φ(x))), x'), x)
     L_D = ½ [LSGAN(D(β(p̄)), real) + LSGAN(D(pool(Φ(x))), fake)]
     L_η = fake_weight · mean((β(η(Φ(x))) − Φ(x))²) + real_weight · mean((softargmax(η(β(p̄))) − p̄)²)

   The gradient of L_G flows through η (frozen in L_G), the soft-argmax and β into Φ. All three losses
   come from one forward pass at the step's starting parameters and update Φ+Ψ, D and η with three
   Adam optimisers (each with a global-norm clip). A frozen copy of the pre-trained η (``offline_eta``)
   is kept for the evaluation's flip correction.

Randomness (TPS warps, prior draws, the history pool) comes from ``fold_in(state.key, step)``, so a
resumed run continues exactly. Work dir: ``config.json`` (with ``perceptual.used``: the loss actually
used), ``checkpoints/``, ``metrics.jsonl``, ``samples/`` (rows: x, Φ(x), β(p) over x, x', Ψ's
reconstruction) and ``regressor/`` (the pre-training's checkpoints and metrics).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable, Iterator

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from lkgan_jax import checkpoint, parallel
from lkgan_jax.conventions import float_to_uint8, uint8_to_float
from lkgan_jax.data import pipeline
from lkgan_jax.data.sources import ImageSource
from lkgan_jax.keypointgan import perceptual as perceptual_lib
from lkgan_jax.keypointgan import tps
from lkgan_jax.keypointgan.model import KeypointGan, lsgan_loss, make_keypointgan
from lkgan_jax.keypointgan.prior import load_prior_poses
from lkgan_jax.train import harness, health
from lkgan_jax.train.supervised import SupervisedState, apply_gradients
from lkgan_jax.utils import visualize
from lkgan_jax.utils.compilation import run_once
from lkgan_jax.workdir import CHECKPOINT_DIR, write_config

REGRESSOR_DIR = "regressor"
SKELETON_COLOUR = np.array([1.0, 0.9, -1.0], np.float32)  # yellow, in [-1, 1] image units


class KeypointGanState(flax.struct.PyTreeNode):
    """Everything the main KeypointGAN step needs to continue exactly.

    ``g_params`` / ``g_stats``: ``{"encoder": Φ, "decoder": Ψ}`` parameters and BatchNorm statistics;
    ``eta`` the fine-tuned η, ``offline_eta`` the frozen pre-trained copy; ``history`` (P, R, R, 1) the
    pool of past Φ outputs with ``history_count`` filled slots; ``perceptual_ema`` the loss normaliser.
    """

    step: jax.Array
    key: jax.Array
    g_params: Any
    g_stats: Any
    eta: Any
    offline_eta: Any
    d_params: Any
    g_opt: optax.OptState
    d_opt: optax.OptState
    eta_opt: optax.OptState
    perceptual_ema: perceptual_lib.EmaState
    history: jax.Array
    history_count: jax.Array
    nonfinite_step: jax.Array


def adam(section: ml_collections.ConfigDict, lr: float) -> optax.GradientTransformation:
    """Adam(lr, β1, β2) after a global-norm clip (``section.clip``; 0: none)."""
    beta1, beta2 = section.get("beta1", 0.5), section.get("beta2", 0.999)
    tx = optax.adam(lr, b1=beta1, b2=beta2)
    return optax.chain(optax.clip_by_global_norm(section.clip), tx) if section.clip > 0 else tx


def style_magnitudes(t: ml_collections.ConfigDict) -> tps.TpsMagnitudes:
    return tps.TpsMagnitudes(t.style_rotation_deg, t.style_scale, t.style_translation, tuple(t.style_warp))


def target_magnitudes(t: ml_collections.ConfigDict) -> tps.TpsMagnitudes:
    return tps.TpsMagnitudes(t.target_rotation_deg, t.target_scale, t.target_translation, (0.0, 0.0))


def make_pairs(key: jax.Array, images: jax.Array, t: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
    """(x, x'): the affine-warped target and the TPS-warped style image of the same images."""
    target_key, style_key = jax.random.split(key)
    return tps.random_warp(target_key, images, target_magnitudes(t)), tps.random_warp(style_key, images, style_magnitudes(t))


def sample_prior(key: jax.Array, pool: jax.Array, batch_size: int) -> jax.Array:
    """``batch_size`` poses drawn uniformly, with replacement, from the prior pool (N, K, 2)."""
    return pool[jax.random.randint(key, (batch_size,), 0, pool.shape[0])]


def history_pool(history: jax.Array, count: jax.Array, fakes: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The CycleGAN image pool, one sample at a time → (history, count, the fakes D sees).

    While fewer than P are stored, each fake is stored and used; then, with probability ½, it replaces a
    random stored one, which is used instead; otherwise the fake itself is used.
    """
    capacity = history.shape[0]

    def one(carry, inputs):
        history, count = carry
        fake, sample_key = inputs
        swap_key, slot_key = jax.random.split(sample_key)
        filling = count < capacity
        swap = jax.random.bernoulli(swap_key)
        slot = jnp.where(filling, count, jax.random.randint(slot_key, (), 0, capacity))
        stored = history[slot]
        used = jnp.where(filling | ~swap, fake, stored)
        history = history.at[slot].set(jnp.where(filling | swap, fake, stored))
        return (history, jnp.minimum(count + 1, capacity)), used

    (history, count), used = jax.lax.scan(one, (history, count), (fakes, jax.random.split(key, len(fakes))))
    return history, count, used


def mean_distance_pct(predicted: jax.Array, target: jax.Array) -> jax.Array:
    """Mean Euclidean distance of (B, K, 2) keypoints in % of the image side (the side is 2 units)."""
    return jnp.mean(jnp.linalg.norm(predicted - target, axis=-1)) * 50.0


# ----------------------------------------------------------------------------------------------------
# η pre-training on prior poses.


def make_pretrain_step(kg: KeypointGan, tx: optax.GradientTransformation, p: ml_collections.ConfigDict) -> Callable:
    def step(state: SupervisedState, pool: jax.Array) -> tuple[SupervisedState, dict]:
        poses = sample_prior(jax.random.fold_in(state.key, state.step), pool, p.batch_size)

        def objective(params):
            predicted = kg.keypoints(params, kg.render(poses))
            return jnp.mean(jnp.square(predicted - poses)), predicted

        (loss, predicted), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        logged = health.is_logged(state.step, p.log_every, p.steps)
        new_state, norms = apply_gradients(state, tx, grads, {}, loss, "regressor", logged)
        return new_state, {"loss": loss, "error_pct": mean_distance_pct(predicted, poses), **norms}

    return step


def init_regressor(kg: KeypointGan, key: jax.Array) -> Any:
    return kg.regressor.init(key, jnp.zeros((1, kg.resolution, kg.resolution, 1)))["params"]


# ----------------------------------------------------------------------------------------------------
# The main step.


@dataclasses.dataclass(frozen=True)
class KeypointGanTrainer:
    """Networks, losses, optimisers and the jitted steps of one config over one mesh."""

    config: ml_collections.ConfigDict
    mesh: Mesh
    kg: KeypointGan
    perceptual: perceptual_lib.Perceptual
    prior: np.ndarray  # (N, K, 2) pose pool
    g_tx: optax.GradientTransformation
    d_tx: optax.GradientTransformation
    eta_tx: optax.GradientTransformation
    pretrain_tx: optax.GradientTransformation
    batch_sharding: Any
    replicated: Any

    def init_state(self, key: jax.Array, eta: Any) -> KeypointGanState:
        """A fresh main state with η (and its frozen copy) from pre-training; pure, jit-able."""
        kg, r, c = self.kg, self.kg.resolution, self.config
        enc_key, dec_key, d_key, run_key = jax.random.split(key, 4)
        image = jnp.zeros((1, r, r, 3))
        enc = kg.encoder.init(enc_key, image, train=False)
        dec = kg.decoder.init(dec_key, jnp.zeros((1, r, r, 1)), image, train=False)
        d_params = kg.discriminator.init(d_key, jnp.zeros((1, r, r, 1)))["params"]
        g_params = {"encoder": enc["params"], "decoder": dec["params"]}
        pool = max(c.train.pool_size, 1)
        return KeypointGanState(
            step=jnp.zeros((), jnp.int32),
            key=run_key,
            g_params=g_params,
            g_stats={"encoder": enc["batch_stats"], "decoder": dec["batch_stats"]},
            eta=eta,
            offline_eta=jax.tree.map(jnp.copy, eta),
            d_params=d_params,
            g_opt=self.g_tx.init(g_params),
            d_opt=self.d_tx.init(d_params),
            eta_opt=self.eta_tx.init(eta),
            perceptual_ema=perceptual_lib.init_ema(self.perceptual.num_layers),
            history=jnp.zeros((pool, r, r, 1), jnp.float32),
            history_count=jnp.zeros((), jnp.int32),
            nonfinite_step=jnp.full((), -1, jnp.int32),
        )

    def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
        r, b = self.kg.resolution, self.config.train.batch_size
        return {"image": jax.ShapeDtypeStruct((b, r, r, 3), jnp.float32, sharding=self.batch_sharding)}

    def abstract_prior(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.prior.shape, jnp.float32, sharding=self.replicated)

    def prior_array(self) -> jax.Array:
        return jax.device_put(self.prior, self.replicated)

    def abstract_perceptual(self) -> Any:
        return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=self.replicated), self.perceptual.params)

    def perceptual_params(self) -> Any:
        return jax.device_put(self.perceptual.params, self.replicated)


def make_main_step(trainer: KeypointGanTrainer) -> Callable:
    """The fused step ``(state, batch, prior pool, perceptual weights) -> (state, metrics)`` (module docstring).

    The prior pool and the frozen perceptual weights are arguments, not constants of the compiled step.
    """
    kg, perceptual, c = trainer.kg, trainer.perceptual, trainer.config
    t = c.train
    use_gan, use_pool = t.gan_weight > 0, t.pool_size > 0

    def step(state: KeypointGanState, batch: dict[str, jax.Array], pool: jax.Array, perceptual_params: Any) -> tuple[KeypointGanState, dict]:
        pair_key, prior_key, history_key = jax.random.split(jax.random.fold_in(state.key, state.step), 3)
        x, x_style = make_pairs(pair_key, batch["image"], t)
        prior_poses = sample_prior(prior_key, pool, t.batch_size)
        prior_images = kg.render(prior_poses)

        def g_objective(g_params):
            y, encoder_stats = kg.skeleton_image({"params": g_params["encoder"], "batch_stats": state.g_stats["encoder"]}, x, train=True)
            points = kg.keypoints(jax.lax.stop_gradient(state.eta), y)
            reconstruction, decoder_updates = kg.decoder.apply(
                {"params": g_params["decoder"], "batch_stats": state.g_stats["decoder"]},
                kg.pose_input(y, points), x_style, train=True, mutable=["batch_stats"],
            )
            perceptual_loss, ema, _ = perceptual_lib.normalized_loss(
                perceptual, reconstruction, x, state.perceptual_ema, c.perceptual.ema_decay, perceptual_params)
            adversarial = lsgan_loss(kg.discriminator.apply({"params": state.d_params}, y), 1.0) if use_gan else jnp.zeros(())
            loss = t.gan_weight * adversarial + t.reconstruction_weight * perceptual_loss
            stats = {"encoder": encoder_stats, "decoder": decoder_updates["batch_stats"]}
            return loss, (stats, ema, y, points, adversarial, perceptual_loss)

        (g_loss, (g_stats, ema, y, points, adversarial, perceptual_loss)), g_grads = jax.value_and_grad(
            g_objective, has_aux=True)(state.g_params)
        g_updates, g_opt = trainer.g_tx.update(g_grads, state.g_opt, state.g_params)
        fake = jax.lax.stop_gradient(y)

        history, history_count = state.history, state.history_count
        if use_pool:
            history, history_count, shown = history_pool(history, history_count, fake, history_key)
        else:
            shown = fake

        def d_objective(d_params):
            real = lsgan_loss(kg.discriminator.apply({"params": d_params}, prior_images), 1.0)
            generated = lsgan_loss(kg.discriminator.apply({"params": d_params}, shown), 0.0)
            return 0.5 * (real + generated), (real, generated)

        (d_loss, (d_real, d_fake)), d_grads = jax.value_and_grad(d_objective, has_aux=True)(state.d_params)
        d_updates, d_opt = trainer.d_tx.update(d_grads, state.d_opt, state.d_params)

        def eta_objective(eta):
            fake_term = jnp.mean(jnp.square(kg.render(kg.keypoints(eta, fake)) - fake))
            real_points = kg.keypoints(eta, prior_images)
            real_term = jnp.mean(jnp.square(real_points - prior_poses))
            return t.regressor_fake_weight * fake_term + t.regressor_real_weight * real_term, (fake_term, real_points)

        (eta_loss, (eta_fake, real_points)), eta_grads = jax.value_and_grad(eta_objective, has_aux=True)(state.eta)
        eta_updates, eta_opt = trainer.eta_tx.update(eta_grads, state.eta_opt, state.eta)
        if not t.finetune_regressor:
            eta_updates, eta_opt = jax.tree.map(jnp.zeros_like, eta_updates), state.eta_opt

        new_state = state.replace(
            step=state.step + 1,
            g_params=optax.apply_updates(state.g_params, g_updates),
            g_stats=g_stats,
            eta=optax.apply_updates(state.eta, eta_updates),
            d_params=optax.apply_updates(state.d_params, d_updates) if use_gan else state.d_params,
            g_opt=g_opt,
            d_opt=d_opt if use_gan else state.d_opt,
            eta_opt=eta_opt,
            perceptual_ema=ema,
            history=history,
            history_count=history_count,
            nonfinite_step=health.mark_nonfinite(state.nonfinite_step, state.step, g_loss, d_loss, eta_loss),
        )
        logged = health.is_logged(state.step, t.log_every, t.steps)
        norms = {
            **health.optimizer_norms("g", g_grads, g_updates, logged),
            **health.optimizer_norms("d", d_grads, d_updates, logged),
            **health.optimizer_norms("eta", eta_grads, eta_updates, logged),
        }
        metrics = {
            "g_loss": g_loss,
            "perceptual": perceptual_loss,
            "g_adversarial": adversarial,
            "d_loss": d_loss,
            "d_real": d_real,
            "d_fake": d_fake,
            "eta_loss": eta_loss,
            "eta_fake": eta_fake,
            "eta_prior_error_pct": mean_distance_pct(real_points, prior_poses),
            "keypoint_spread": jnp.mean(jnp.std(points, axis=0)),  # 0 when every image gets the same keypoints
        }
        return new_state, {**metrics, **norms}

    return step


def validate_config(config: ml_collections.ConfigDict) -> None:
    """One-line errors for schedules and sizes that cannot train."""
    for section in ("pretrain", "train"):
        harness.Schedule.from_config(config[section], section)
        if config[section].batch_size <= 0:
            raise ValueError(f"{section}.batch_size must be positive, got {config[section].batch_size}")
    if config.train.pool_size < 0:
        raise ValueError(f"train.pool_size must be >= 0, got {config.train.pool_size}")


def build_trainer(config: ml_collections.ConfigDict, devices: list | None = None) -> KeypointGanTrainer:
    """Validates ``config``; builds the mesh, networks, perceptual loss, prior pool and optimisers."""
    validate_config(config)
    resolution = config.data.resolution
    kg = make_keypointgan(config.model, resolution)
    mesh = parallel.make_mesh(config.mesh, devices)
    parallel.check_global_batch(config.train.batch_size, mesh)
    parallel.check_global_batch(config.pretrain.batch_size, mesh, "pretrain.batch_size")
    p = config.perceptual
    perceptual = perceptual_lib.make_perceptual(
        p.kind, vgg_weights=p.vgg_weights, vgg_sha256=p.vgg_sha256, relu=p.relu, width_divisor=p.width_divisor,
        seed=p.seed, resolution=resolution,
    )
    prior = load_prior_poses(config.prior, config.data, config.model.num_points)
    return KeypointGanTrainer(
        config=config, mesh=mesh, kg=kg, perceptual=perceptual, prior=prior,
        g_tx=adam(config.train, config.train.lr), d_tx=adam(config.train, config.train.lr),
        eta_tx=adam(config.train, config.train.lr), pretrain_tx=adam(config.pretrain, config.pretrain.lr),
        batch_sharding=parallel.batch_sharding(mesh), replicated=parallel.replicated(mesh),
    )


def pretrain_task(trainer: KeypointGanTrainer, directory: pathlib.Path) -> harness.Task:
    """η pre-training on the prior as a harness task (state: ``SupervisedState`` without BatchNorm)."""
    p, kg = trainer.config.pretrain, trainer.kg

    def init(key: jax.Array) -> SupervisedState:
        init_key, run_key = jax.random.split(key)
        params = init_regressor(kg, init_key)
        return SupervisedState(
            step=jnp.zeros((), jnp.int32), key=run_key, params=params, batch_stats={},
            opt_state=trainer.pretrain_tx.init(params), nonfinite_step=jnp.full((), -1, jnp.int32),
        )

    abstract = jax.eval_shape(init, jax.random.key(p.seed))
    shardings = parallel.state_shardings(abstract, trainer.mesh, trainer.config.mesh.fsdp_min_bytes)
    step = jax.jit(make_pretrain_step(kg, trainer.pretrain_tx, p), in_shardings=(shardings, trainer.replicated),
                   out_shardings=(shardings, trainer.replicated), donate_argnums=0)
    prior = trainer.prior_array()
    return harness.Task(
        name="regressor",
        directory=directory,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(p, "pretrain"),
        abstract_state=abstract,
        state_shardings=shardings,
        init_state=lambda: run_once(init, shardings, jax.random.key(p.seed)),
        step=step,
        inputs=iter(lambda: (prior,), None),
        abstract_inputs=(trainer.abstract_prior(),),
        batch_size=p.batch_size,
        parameters=lambda state: {"eta": state.params},
    )


def sample_images(config: ml_collections.ConfigDict, num: int) -> np.ndarray:
    """The fixed images of the sample grids: float (num, R, R, 3), from the test split when there is one."""
    source = ImageSource.from_data_config(config.data).open(config.data.resolution, config.data.seed, split="test", size=num)
    items = [item for item in (source[i] for i in range(min(num, len(source)))) if item is not None]
    return uint8_to_float(np.stack([item["image"] for item in items]))


def make_sampler(trainer: KeypointGanTrainer) -> Callable[[KeypointGanState], np.ndarray]:
    """State → uint8 grid; one row per image: x, Φ(x), β(p) over x (keypoints drawn), x', Ψ's reconstruction."""
    kg, t = trainer.kg, trainer.config.train
    images = jnp.asarray(sample_images(trainer.config, t.num_samples))
    style = tps.random_warp(jax.random.key(t.sample_seed), images, style_magnitudes(t))

    @jax.jit
    def panels(g_params, g_stats, eta):
        y = kg.skeleton_image({"params": g_params["encoder"], "batch_stats": g_stats["encoder"]}, images)
        points = kg.keypoints(eta, y)
        rendered = kg.render(points)
        reconstruction = kg.decoder.apply(
            {"params": g_params["decoder"], "batch_stats": g_stats["decoder"]}, kg.pose_input(y, points), style, train=False)
        coverage = (rendered + 1.0) / 2.0
        overlay = images * (1.0 - coverage) + SKELETON_COLOUR * coverage
        return y, overlay, points, reconstruction

    def sample(state: KeypointGanState) -> np.ndarray:
        y, overlay, points, reconstruction = jax.device_get(panels(state.g_params, state.g_stats, state.eta))
        grey = np.repeat(np.clip(y, -1.0, 1.0), 3, axis=-1)
        up = lambda a: visualize.upscale_nearest(float_to_uint8(a), t.sample_upscale)  # noqa: E731
        drawn = visualize.draw_keypoints(up(overlay), np.asarray(points))
        rows = np.stack([up(images), up(grey), drawn, up(style), up(reconstruction)], axis=1)
        return visualize.make_grid(rows.reshape(-1, *rows.shape[2:]), ncols=5)

    return sample


def has_landmarks(data_config: ml_collections.ConfigDict) -> bool:
    """Whether the training data carry landmarks (procedural faces, or a folder with landmarks.csv)."""
    from lkgan_jax.evaluation.landmarks import check_labelled

    try:
        check_labelled(ImageSource.from_data_config(data_config))
    except ValueError:
        return False
    return True


def main_task(trainer: KeypointGanTrainer, directory: pathlib.Path, eta: Any, data_iterator: Any) -> harness.Task:
    """The main objective as a harness task, starting from the pre-trained η ``eta``."""
    c, t = trainer.config, trainer.config.train
    init = lambda key: trainer.init_state(key, eta)  # noqa: E731
    abstract = jax.eval_shape(init, jax.random.key(c.seed))
    shardings = parallel.state_shardings(abstract, trainer.mesh, c.mesh.fsdp_min_bytes)
    step = jax.jit(make_main_step(trainer), in_shardings=(shardings, trainer.batch_sharding, trainer.replicated, trainer.replicated),
                   out_shardings=(shardings, trainer.replicated), donate_argnums=0)
    prior, perceptual_params = trainer.prior_array(), trainer.perceptual_params()

    def batches() -> Iterator[tuple]:
        for batch in data_iterator:
            yield pipeline.make_global_batch(batch, trainer.batch_sharding), prior, perceptual_params

    evaluate = None
    if t.eval_every > 0 and has_landmarks(c.data):
        from lkgan_jax.keypointgan.evaluate import training_evaluator

        evaluate = training_evaluator(trainer)
    return harness.Task(
        name="KeypointGAN",
        directory=directory,
        mesh=trainer.mesh,
        schedule=harness.Schedule.from_config(t, "train"),
        abstract_state=abstract,
        state_shardings=shardings,
        init_state=lambda: run_once(init, shardings, jax.random.key(c.seed)),
        step=step,
        inputs=batches(),
        abstract_inputs=(trainer.abstract_batch(), trainer.abstract_prior(), trainer.abstract_perceptual()),
        batch_size=t.batch_size,
        data_iterator=data_iterator,
        parameters=lambda state: {"Φ (encoder)": state.g_params["encoder"], "Ψ (decoder)": state.g_params["decoder"],
                                  "η (regressor)": state.eta, "D": state.d_params},
        sample=make_sampler(trainer) if t.sample_every > 0 else None,
        evaluate=evaluate,
    )


def recorded_config(config: ml_collections.ConfigDict, perceptual: perceptual_lib.Perceptual) -> ml_collections.ConfigDict:
    """``config`` plus ``perceptual.used`` / ``perceptual.used_sha256``: the loss this run really uses."""
    recorded = ml_collections.ConfigDict(config.to_dict())
    recorded.perceptual.used = perceptual.name
    recorded.perceptual.used_sha256 = perceptual.weights_sha256
    return recorded


def has_checkpoint(directory: pathlib.Path) -> bool:
    """Whether ``directory`` holds a complete Orbax checkpoint step."""
    if not directory.is_dir():
        return False
    manager = checkpoint.make_manager(directory, 1, read_only=True)
    try:
        return manager.latest_step() is not None
    finally:
        manager.close()


def train_keypointgan(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> KeypointGanState:
    """Pre-trains η (or resumes it), then trains (or resumes) the main objective to ``train.steps``."""
    workdir = pathlib.Path(workdir)
    trainer = build_trainer(config)
    config = recorded_config(config, trainer.perceptual)
    workdir.mkdir(parents=True, exist_ok=True)
    started = any(has_checkpoint(d / CHECKPOINT_DIR) for d in (workdir, workdir / REGRESSOR_DIR))
    write_config(workdir, config, resuming=started, fixed=("model", "perceptual.used"))
    eta = harness.run(pretrain_task(trainer, workdir / REGRESSOR_DIR)).params  # returns at once when done
    data_iterator = iter(pipeline.make_train_dataset(config.data, config.train.batch_size, seed=config.seed))
    try:
        return harness.run(main_task(trainer, workdir, eta, data_iterator))
    finally:
        if hasattr(data_iterator, "close"):
            data_iterator.close()
