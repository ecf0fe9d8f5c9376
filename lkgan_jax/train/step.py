"""The GAN training step (docs/design.md §3): D update (+ lazy gradient penalty), G update, EMA — one pure function.

Optional terms: keypoint recovery (D's keypoint head regresses the fakes' keypoints; both players
minimise its L1 error), keypoint jitter (independent offsets of every training fake's keypoints),
recovery jitter (extra fakes with jittered keypoints that only the recovery term sees) and G's
equivariance term (``train/equivariance.py``: copies of some fakes with one keypoint moved, rendered in
the same batch, must show the original's pixels moved with it).

``make_train_step`` returns ``step(state, batch, do_reg, log_terms) -> (state, metrics)``;
``compile_train_step`` jits it once over a mesh with explicit shardings, the state donated, ``do_reg``
and ``log_terms`` static (one executable each: with and without the penalty, and with
``train.term_grad_norms`` on, the penalty step with the per-term norms, which the harness runs on the
logged penalty steps). Besides the losses, the metrics hold the health signals ``grad_norm/{g,d}`` and
``update_norm/{g,d}`` (global L2 norms of the gradients and Adam updates, on the logged steps) and,
with ``log_terms``, ``grad_norm/{g,d}/{adversarial,penalty,recovery,equivariance,...}`` (the norm of
each weighted loss term's own gradient).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import NamedSharding

from lkgan_jax.models.generator import statistics
from lkgan_jax.models.latent import sample_noise
from lkgan_jax.train import equivariance, health, losses
from lkgan_jax.train.state import GanModels, TrainState

Metrics = dict[str, jax.Array]
StepFn = Callable[[TrainState, dict[str, jax.Array], bool], tuple[TrainState, Metrics]]

_D_KEY, _G_KEY = 0, 1
_JITTER_KEY = 3  # folded into a D or G noise key; sample_noise uses 0, 1, 2
_RECOVERY_KEY = 4  # the recovery-jitter fakes' noise key, folded into a D or G noise key
_EQUIVARIANCE_KEY = 6  # the equivariance term's moved parts and directions, folded into the G noise key


def ema_decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """EMA decay for this step: ``decay``, or ``min(decay, (1 + t) / (10 + t))`` with warm-up."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    t = step.astype(jnp.float32)
    return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def recovery_jitter_on(train: ml_collections.ConfigDict) -> bool:
    """Whether the step renders jittered fakes for the recovery term: ``train.recovery_jitter`` and
    ``train.recovery_jitter_batch`` both above 0."""
    return train.get("recovery_jitter", 0.0) > 0 and train.get("recovery_jitter_batch", 0) > 0


def make_train_step(models: GanModels, config: ml_collections.ConfigDict) -> StepFn:
    """Builds the pure step for ``models`` with the numbers of ``config.train``."""
    t = config.train
    z_dim = config.model.z_dim
    if t.penalty not in ("r1", "gp"):
        raise ValueError(f"train.penalty must be 'r1' or 'gp', got {t.penalty!r}")
    generator, discriminator = models.generator, models.discriminator
    discriminator_f32 = discriminator.clone(dtype=jnp.float32)  # the penalty's double backward stays in f32

    recovery_weight = config.model.get("keypoint_recovery_weight", 0.0)
    jitter = t.get("keypoint_jitter", 0.0)
    if jitter < 0:
        raise ValueError(f"train.keypoint_jitter must be at least 0 (0: off), got {jitter}")
    recovery_jitter, recovery_batch = t.get("recovery_jitter", 0.0), t.get("recovery_jitter_batch", 0)
    if recovery_jitter < 0 or recovery_batch < 0:
        raise ValueError(f"train.recovery_jitter and train.recovery_jitter_batch must be at least 0, got {recovery_jitter}, {recovery_batch}")
    jittered_weight = t.get("recovery_jitter_weight", 1.0)
    if jittered_weight < 0:
        raise ValueError(f"train.recovery_jitter_weight must be at least 0, got {jittered_weight}")
    jittered_recovery = recovery_jitter_on(t)
    if jittered_recovery and recovery_weight <= 0:
        raise ValueError("train.recovery_jitter needs keypoint recovery (model.keypoint_recovery_weight > 0)")
    equivariance_weight, outside_weight = t.get("equivariance_weight", 0.0), t.get("equivariance_outside_weight", 0.0)
    equivariant = equivariance_weight > 0 or outside_weight > 0
    if equivariance_weight < 0 or outside_weight < 0:
        raise ValueError(f"train.equivariance_weight and train.equivariance_outside_weight must be at least 0 (0: off), "
                         f"got {equivariance_weight}, {outside_weight}")
    if equivariant:
        fraction, patch = t.get("equivariance_fraction", 0.25), t.get("equivariance_patch", 7)
        shift = equivariance.shift_in_units(t.get("equivariance_shift", 3.0), generator.resolution)
        outside_radius = t.get("equivariance_outside_radius", 8.0) if outside_weight > 0 else 0.0
        if not 0 < fraction <= 1 or patch < 1 or shift <= 0 or (outside_weight > 0 and outside_radius <= 0):
            raise ValueError(f"train.equivariance_fraction must be in (0, 1], train.equivariance_patch at least 1 and "
                             f"train.equivariance_shift and train.equivariance_outside_radius positive, got {fraction}, "
                             f"{patch}, {t.get('equivariance_shift', 3.0)}, {outside_radius}")

    def jitter_offsets(key, batch_size, sigma):
        """Keypoint jitter (``train.keypoint_jitter`` = σ): an N(0, σ²) offset (B, K, 2) of every keypoint, or None at σ = 0."""
        if sigma <= 0:
            return None
        return sigma * jax.random.normal(jax.random.fold_in(key, _JITTER_KEY), (batch_size, generator.num_keypoints, 2))

    def generate(g_params, g_stats, key, batch_size, sigma=jitter):
        """Fresh fakes: (images, their keypoints (B, K, 2), G's updated BatchNorm statistics).

        With ``sigma`` (``train.keypoint_jitter``) > 0 every keypoint moves by its own N(0, σ²) offset
        before rendering, so G also sees single parts displaced from the poses its MLP draws.
        """
        offsets = jitter_offsets(key, batch_size, sigma)
        (images, latent), updates = generator.apply(
            {"params": g_params, "batch_stats": g_stats},
            *sample_noise(key, batch_size, z_dim),
            train=True,
            keypoint_offsets=offsets,
            method=type(generator).sample,
            mutable=["batch_stats"],
        )
        return images, latent.keypoints, statistics(updates)

    def generate_moved(g_params, g_stats, key, batch_size, sigma=jitter):
        """``generate``'s fakes rendered in one batch with n = max(1, round(fraction · B)) moved copies of the
        first n (one keypoint each, ``equivariance.random_moves``): (images (B, R, R, 3), keypoints (B, K, 2),
        G's BatchNorm statistics (of all B + n), L_window, L_outside)."""
        variables = {"params": g_params, "batch_stats": g_stats}
        latent = generator.apply(variables, *sample_noise(key, batch_size, z_dim), method=type(generator).sample_latent)
        offsets = jitter_offsets(key, batch_size, sigma)
        if offsets is not None:  # as ``Generator.sample`` applies them in ``generate``
            latent = latent.replace(keypoints=latent.keypoints + offsets)
        count = max(1, round(fraction * batch_size))
        parts, shifts = equivariance.random_moves(jax.random.fold_in(key, _EQUIVARIANCE_KEY), count, generator.num_keypoints, shift)
        head = jax.tree.map(lambda x: x[:count], latent)
        moved = equivariance.move_keypoints(head, parts, shifts)
        images, updates = generator.apply(variables, equivariance.concatenate(latent, moved), train=True,
                                          method=type(generator).render, mutable=["batch_stats"])
        rows = jnp.arange(count)
        window, outside = equivariance.window_losses(images[:count], images[batch_size:], head.keypoints[rows, parts],
                                                     moved.keypoints[rows, parts], patch, outside_radius)
        return images[:batch_size], latent.keypoints, statistics(updates), window, outside

    def judge_fakes(d_params, images, keypoints):
        """D on fakes → (logits (B,), keypoint-recovery loss, 0 when the term is off)."""
        if recovery_weight <= 0:
            return discriminator.apply({"params": d_params}, images), 0.0
        logits, predicted = discriminator.apply({"params": d_params}, images, return_keypoints=True)
        return logits, losses.keypoint_recovery_loss(predicted, keypoints)

    def generate_jittered(g_params, g_stats, key):
        """``train.recovery_jitter_batch`` extra fakes, keypoints jittered by ``train.recovery_jitter``:
        (images, keypoints). Only the recovery term sees them; G's BatchNorm statistics do not advance."""
        images, keypoints, _ = generate(g_params, g_stats, jax.random.fold_in(key, _RECOVERY_KEY), recovery_batch, recovery_jitter)
        return images, keypoints

    def penalty_and_real_logits(d_params, real):
        logits, pullback = jax.vjp(lambda x: discriminator_f32.apply({"params": d_params}, x), real)
        (grads,) = pullback(jnp.ones_like(logits))
        if t.penalty == "r1":
            return losses.r1_penalty(grads, t.r1_gamma, t.reg_every), logits
        return losses.unit_gradient_penalty(grads, t.gp_weight), logits

    def step(state: TrainState, batch: dict[str, jax.Array], do_reg: bool, log_terms: bool = False) -> tuple[TrainState, Metrics]:
        real = batch["image"]
        batch_size = real.shape[0]
        step_key = jax.random.fold_in(state.key, state.step)

        # Discriminator update on fresh fakes (G's BatchNorm statistics advance as in PyTorch).
        d_key = jax.random.fold_in(step_key, _D_KEY)
        fake, fake_keypoints, g_stats = generate(state.g_params, state.g_stats, d_key, batch_size)
        fake = jax.lax.stop_gradient(fake)
        if jittered_recovery:
            jittered_fake, jittered_keypoints = jax.lax.stop_gradient(generate_jittered(state.g_params, state.g_stats, d_key))

        def d_terms(d_params):
            """D's weighted loss terms (their sum is L_D) and its metrics."""
            logits_fake, recovery = judge_fakes(d_params, fake, fake_keypoints)
            aux = {"d_keypoint_recovery": recovery} if recovery_weight > 0 else {}
            if jittered_recovery:
                aux["d_keypoint_recovery_jittered"] = judge_fakes(d_params, jittered_fake, jittered_keypoints)[1]
                recovery = recovery + jittered_weight * aux["d_keypoint_recovery_jittered"]
            terms = {}
            if do_reg:
                terms["penalty"], logits_real = penalty_and_real_logits(d_params, real)
                aux["grad_penalty"] = terms["penalty"]
            else:
                logits_real = discriminator.apply({"params": d_params}, real)
            terms["adversarial"] = losses.discriminator_loss(logits_real, logits_fake)
            if recovery_weight > 0:
                terms["recovery"] = recovery_weight * recovery
            aux.update(d_loss=terms["adversarial"], d_real=jnp.mean(logits_real), d_fake=jnp.mean(logits_fake))
            return terms, aux

        _, d_metrics, d_grads, d_term_norms = health.term_gradients(d_terms, state.d_params, "d", log_terms)
        d_updates, d_opt = models.d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)

        # Generator update with fresh noise through the updated discriminator.
        def g_terms(g_params):
            """G's weighted loss terms (their sum is L_G) and (unweighted recovery terms, BatchNorm statistics,
            unweighted equivariance terms)."""
            g_key = jax.random.fold_in(step_key, _G_KEY)
            equivariance_metrics = {}
            if equivariant:
                images, keypoints, stats, window, outside = generate_moved(g_params, g_stats, g_key, batch_size)
                equivariance_metrics["g_equivariance"] = window
                if outside_weight > 0:
                    equivariance_metrics["g_equivariance_outside"] = outside
            else:
                images, keypoints, stats = generate(g_params, g_stats, g_key, batch_size)
            logits, recovery = judge_fakes(d_params, images, keypoints)
            terms = {"adversarial": losses.generator_loss(logits)}
            jittered = judge_fakes(d_params, *generate_jittered(g_params, g_stats, g_key))[1] if jittered_recovery else 0.0
            if recovery_weight > 0:
                terms["recovery"] = recovery_weight * (recovery + jittered_weight * jittered)
            if equivariance_weight > 0:
                terms["equivariance"] = equivariance_weight * equivariance_metrics["g_equivariance"]
            if outside_weight > 0:
                terms["equivariance_outside"] = outside_weight * equivariance_metrics["g_equivariance_outside"]
            return terms, (recovery, jittered, stats, equivariance_metrics)

        g_loss_terms, (g_recovery, g_jittered, g_stats, g_equivariance), g_grads, g_term_norms = health.term_gradients(
            g_terms, state.g_params, "g", log_terms)
        g_loss = g_loss_terms["adversarial"]
        g_updates, g_opt = models.g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)

        decay = ema_decay_at(state.step, t.ema_decay, t.ema_warmup)
        ema_params = optax.incremental_update(g_params, state.ema_params, step_size=1.0 - decay)

        watched = [d_metrics["d_loss"], g_loss] + ([d_metrics["grad_penalty"]] if do_reg else [])
        watched += [d_metrics["d_keypoint_recovery"], g_recovery] if recovery_weight > 0 else []
        watched += [d_metrics["d_keypoint_recovery_jittered"], g_jittered] if jittered_recovery else []
        watched += list(g_equivariance.values())
        nonfinite_step = health.mark_nonfinite(state.nonfinite_step, state.step, *watched)
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_stats=g_stats,
            ema_params=ema_params,
            d_params=d_params,
            g_opt=g_opt,
            d_opt=d_opt,
            nonfinite_step=nonfinite_step,
        )
        logged = health.is_logged(state.step, t.log_every, t.steps)
        norms = {**health.optimizer_norms("g", g_grads, g_updates, logged), **health.optimizer_norms("d", d_grads, d_updates, logged),
                 **g_term_norms, **d_term_norms}
        recovery_metrics = {"g_keypoint_recovery": g_recovery} if recovery_weight > 0 else {}
        if jittered_recovery:
            recovery_metrics["g_keypoint_recovery_jittered"] = g_jittered
        return new_state, {**d_metrics, "g_loss": g_loss, **recovery_metrics, **g_equivariance, **norms}

    return step


def compile_train_step(
    step: StepFn, state_shardings: Any, batch_sharding: NamedSharding, replicated: NamedSharding
) -> Callable[..., tuple[TrainState, Metrics]]:
    """``jax.jit`` with explicit shardings, the state donated and ``do_reg``, ``log_terms`` (positional) static."""
    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding),
        out_shardings=(state_shardings, replicated),
        donate_argnums=0,
        static_argnums=(2, 3),
    )
