"""The training state: one pytree of arrays, created directly with its shardings."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lkgan_jax.models import make_discriminator, make_generator
from lkgan_jax.models.discriminator import Discriminator
from lkgan_jax.models.generator import Generator, statistics
from lkgan_jax.models.latent import sample_noise

Params = Any


class TrainState(flax.struct.PyTreeNode):
    """Everything a GAN run needs to continue exactly (the data-iterator position is saved beside it).

    ``g_stats`` are G's BatchNorm running statistics. The EMA generator renders with ``ema_params`` and
    ``ema_stats``, its own statistics, refreshed before every checkpoint, sample grid and evaluation
    (``train.loop.refresh_ema_statistics``). ``nonfinite_step`` is −1 until a loss first becomes
    NaN/Inf, then that step.
    """

    step: jax.Array
    key: jax.Array
    g_params: Params
    g_stats: Params
    ema_params: Params
    ema_stats: Params
    d_params: Params
    g_opt: optax.OptState
    d_opt: optax.OptState
    nonfinite_step: jax.Array


    def ema_variables(self) -> dict[str, Params]:
        """The EMA generator's Flax variables: ``{"params": ema_params, "batch_stats": ema_stats}``."""
        return {"params": self.ema_params, "batch_stats": self.ema_stats}


class GanModels(flax.struct.PyTreeNode):
    """The static (non-array) parts of a run: module definitions and optimisers."""

    generator: Generator = flax.struct.field(pytree_node=False)
    discriminator: Discriminator = flax.struct.field(pytree_node=False)
    g_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_models(config: ml_collections.ConfigDict) -> GanModels:
    """Modules and Adam optimisers. With ``train.lazy_reg_correction``, D's learning rate and betas
    become lr·c, β₁^c, β₂^c with c = k / (k + 1) for the penalty interval k (StyleGAN2's correction for
    a penalty applied every k-th step: the k + 1 updates of k steps then move as k plain ones)."""
    t = config.train
    c = t.reg_every / (t.reg_every + 1) if t.get("lazy_reg_correction", False) else 1.0
    return GanModels(
        generator=make_generator(config.model),
        discriminator=make_discriminator(config.model),
        g_tx=optax.adam(t.lr_g, b1=t.beta1, b2=t.beta2, eps=t.adam_eps),
        d_tx=optax.adam(t.lr_d * c, b1=t.beta1**c, b2=t.beta2**c, eps=t.adam_eps),
    )


def create_state(models: GanModels, key: jax.Array, z_dim: int, resolution: int) -> TrainState:
    """Initialises all parameters from ``key`` (a typed PRNG key); pure, jit-able."""
    g_key, d_key, noise_key, run_key = jax.random.split(key, 4)
    g_vars = models.generator.init(g_key, *sample_noise(noise_key, 1, z_dim), train=False)
    d_params = models.discriminator.init(d_key, jnp.zeros((1, resolution, resolution, 3)))["params"]
    g_params = g_vars["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        key=run_key,
        g_params=g_params,
        g_stats=statistics(g_vars),
        ema_params=jax.tree.map(jnp.copy, g_params),
        ema_stats=jax.tree.map(jnp.copy, statistics(g_vars)),
        d_params=d_params,
        g_opt=models.g_tx.init(g_params),
        d_opt=models.d_tx.init(d_params),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )
