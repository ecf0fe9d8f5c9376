"""In-step health signals shared by every trained model: NaN/Inf tracking and optimiser norms.

Both are computed inside the jitted step, so the host reads them only when it logs (docs/design.md §9).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def mark_nonfinite(nonfinite_step: jax.Array, step: jax.Array, *values: jax.Array) -> jax.Array:
    """``step`` if this is the first step where any of ``values`` is NaN/Inf, else ``nonfinite_step``.

    ``nonfinite_step`` is −1 until then; once set it never changes, so the host learns the exact step
    whenever it next looks, without a device-to-host copy per step.
    """
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in values]))
    return jnp.where((nonfinite_step < 0) & ~finite, step, nonfinite_step)


def is_logged(step: jax.Array, log_every: int, total: int) -> jax.Array:
    """Whether the harness logs the metrics of the step that brings the state to ``step + 1``."""
    done = step + 1
    return (done % log_every == 0) | (done == total)


def optimizer_norms(name: str, grads: Any, updates: Any, logged: jax.Array | None = None) -> dict[str, jax.Array]:
    """``grad_norm/NAME`` and ``update_norm/NAME``: global L2 norms over all leaves (float32).

    With ``logged`` (a traced bool, ``is_logged``), the norms are computed only on the steps the host
    logs (a ``lax.cond``, so the other steps skip the reduction over every parameter) and are 0 elsewhere.
    """
    def norms() -> dict[str, jax.Array]:
        grad_key, update_key = norms_keys(name)
        return {grad_key: optax.global_norm(grads).astype(jnp.float32), update_key: optax.global_norm(updates).astype(jnp.float32)}

    if logged is None:
        return norms()
    return jax.lax.cond(logged, norms, lambda: {key: jnp.zeros((), jnp.float32) for key in norms_keys(name)})


def norms_keys(name: str) -> tuple[str, str]:
    return f"grad_norm/{name}", f"update_norm/{name}"
