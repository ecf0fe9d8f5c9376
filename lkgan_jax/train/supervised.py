"""The training state of a supervised network (detector, judge): one pytree of arrays.

It follows the harness's state contract (docs/design.md §9): an integer ``step`` and
``nonfinite_step``, −1 until the loss first becomes NaN/Inf, then that step.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from lkgan_jax.train import health


class SupervisedState(flax.struct.PyTreeNode):
    """A network with BatchNorm statistics and its optimiser; ``key`` seeds anything the step draws."""

    step: jax.Array
    key: jax.Array
    params: Any
    batch_stats: Any
    opt_state: optax.OptState
    nonfinite_step: jax.Array


def init_supervised_state(module: nn.Module, tx: optax.GradientTransformation, resolution: int, key: jax.Array) -> SupervisedState:
    """A fresh state for ``module(images (1, R, R, 3), train=False)`` with R = ``resolution``; pure, jit-able."""
    init_key, run_key = jax.random.split(key)
    variables = module.init(init_key, jnp.zeros((1, resolution, resolution, 3)), train=False)
    params = variables["params"]
    return SupervisedState(
        step=jnp.zeros((), jnp.int32),
        key=run_key,
        params=params,
        batch_stats=variables["batch_stats"],
        opt_state=tx.init(params),
        nonfinite_step=jnp.full((), -1, jnp.int32),
    )


def apply_gradients(
    state: SupervisedState, tx: optax.GradientTransformation, grads: Any, batch_stats: Any, loss: jax.Array,
    name: str, logged: jax.Array,
) -> tuple[SupervisedState, dict[str, jax.Array]]:
    """One optimiser update of ``state`` → (next state, ``grad_norm/NAME`` and ``update_norm/NAME``).

    The step advances, the BatchNorm statistics become ``batch_stats``, and a NaN/Inf ``loss`` is marked
    (``health.mark_nonfinite``); the norms are reduced on ``logged`` steps only (``health.is_logged``).
    """
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1,
        params=optax.apply_updates(state.params, updates),
        batch_stats=batch_stats,
        opt_state=opt_state,
        nonfinite_step=health.mark_nonfinite(state.nonfinite_step, state.step, loss),
    )
    return new_state, health.optimizer_norms(name, grads, updates, logged)
