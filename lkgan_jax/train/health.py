"""In-step health signals shared by every trained model: NaN/Inf tracking and optimiser norms.

Both are computed inside the jitted step, so the host reads them only when it logs (docs/design.md §9).
"""

from __future__ import annotations

from typing import Any, Callable

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


def term_gradients(terms_fn: Callable[[Any], tuple[dict[str, jax.Array], Any]], params: Any, name: str,
                   with_norms: bool) -> tuple[dict[str, jax.Array], Any, Any, dict[str, jax.Array]]:
    """Gradient of a sum of loss terms, and (``with_norms``) the gradient norm that each term contributes.

    ``terms_fn(params) -> (terms, aux)`` gives the weighted terms (a dict of scalars) whose sum is the
    objective. Returns ``(terms, aux, grads of their sum, norms)``; with ``with_norms`` (a Python bool:
    the step's logged variant), ``norms`` holds ``grad_norm/NAME/TERM``, the global L2 norm of each
    term's own gradient (the forward pass's pullback applied to that term's unit cotangent), else it
    is empty. A ``lax.cond`` over those extra backward passes would slow every step on the CPU, so
    they live in their own executable instead.
    """
    terms, pullback, aux = jax.vjp(terms_fn, params, has_aux=True)
    (grads,) = pullback(jax.tree.map(jnp.ones_like, terms))
    norms = {}
    if with_norms:
        for term in sorted(terms):
            (own,) = pullback({other: (jnp.ones_like if other == term else jnp.zeros_like)(value) for other, value in terms.items()})
            norms[f"grad_norm/{name}/{term}"] = optax.global_norm(own).astype(jnp.float32)
    return terms, aux, grads, norms


def norms_keys(name: str) -> tuple[str, str]:
    return f"grad_norm/{name}", f"update_norm/{name}"
