"""Measuring an attribute editor with an evaluation judge and detector it never trained against (docs/design.md §14).

For each attribute a the editor edits, N latents (seeds s … s + N − 1) are edited by single-attribute
changes δ ~ U(−m, m) (seeded, m = the editor's ``delta_max``). The evaluation judge reads both images
in attribute units; the achieved change is expressed in the editor's units (its training judge's
standard deviations), so that achieved = requested is perfect:

  achieved_{a,b} = (H_b(G(ℓ')) − H_b(G(ℓ))) / std_b
  editing/accuracy_mae/A         mean |achieved_{a,a} − δ|           (and per |δ| bucket, averaged over a)
  editing/slope/A                Σ δ · achieved_{a,a} / Σ δ²         (1: the right amount on average)
  editing/leakage/A->B           mean |achieved_{a,b}| / mean |achieved_{a,a}|,  b ≠ a
  editing/leakage_mean, editing/leakage_worst                        off-diagonal mean and maximum
  editing/keypoint_drift_px      mean ‖K(G(ℓ')) − K(G(ℓ))‖ in pixels over the appearance attributes
  editing/round_trip_latent      d(f(f(ℓ, δ), −δ), ℓ) in latent-std units, δ with every attribute set
  editing/round_trip_image_l1    mean |G(f(f(ℓ, δ), −δ)) − G(ℓ)| (images in [-1, 1])
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.latent_editing.editors import flatten_latent
from lkgan_jax.latent_editing.train import GEOMETRY_ATTRIBUTES
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import TrainedGenerator

DELTA_BUCKETS = (0.5, 1.0, 1.5)  # |δ| ≤ each bound (in standard deviations), as Enjoy-Your-Editing's ε segments


def _rows(latent: Latent, start: int, stop: int) -> Latent:
    return jax.tree.map(lambda x: x[start:stop], latent)


def edit_readings(
    generator: TrainedGenerator, apply: Callable[[Latent, jax.Array], Latent], latent: Latent, delta: jax.Array,
    read: Callable[[jax.Array], tuple[np.ndarray, np.ndarray]], batch_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(attributes before, after, keypoints before, after) for edits ``apply(latent, delta)``, in batches.

    ``read(images) -> (attributes (B, A_judge) in attribute units, keypoints (B, K, 2))``.
    """
    outputs = [[], [], [], []]
    for start in range(0, latent.keypoints.shape[0], batch_size):
        rows = _rows(latent, start, start + batch_size)
        before = read(generator.render(rows))
        after = read(generator.render(apply(rows, delta[start:start + batch_size])))
        for store, value in zip(outputs, (before[0], after[0], before[1], after[1])):
            store.append(np.asarray(value))
    return tuple(np.concatenate(x) for x in outputs)


def editing_metrics(
    generator: TrainedGenerator, apply: Callable[[Latent, jax.Array], Latent], names: tuple[str, ...],
    units: np.ndarray, read: Callable[[jax.Array], tuple[np.ndarray, np.ndarray]], judge_columns: tuple[int, ...],
    num_samples: int, seed: int, delta_max: float, batch_size: int,
) -> dict[str, float]:
    """The metrics of the module docstring for an editor ``apply(latent, delta (B, A)) → latent``.

    ``names`` (A,) are the edited attributes, ``units`` (A,) their standard deviations (the editor's
    unit), ``judge_columns`` (A,) their columns in the evaluation judge's ``read`` output.
    """
    a = len(names)
    columns = np.asarray(judge_columns)
    latent = generator.latent_from_seeds(np.arange(seed, seed + num_samples))
    rng = np.random.default_rng(seed)
    achieved = np.zeros((a, a))
    metrics: dict[str, float] = {}
    bucket_errors = {bound: [] for bound in DELTA_BUCKETS}
    drifts = []
    for i, name in enumerate(names):
        requested = rng.uniform(-delta_max, delta_max, num_samples).astype(np.float32)
        delta = np.zeros((num_samples, a), np.float32)
        delta[:, i] = requested
        before, after, kp_before, kp_after = edit_readings(generator, apply, latent, jnp.asarray(delta), read, batch_size)
        change = (after[:, columns] - before[:, columns]) / units  # (N, A) in the editor's units
        error = np.abs(change[:, i] - requested)
        metrics[f"editing/accuracy_mae/{name}"] = float(np.mean(error))
        metrics[f"editing/slope/{name}"] = float(np.sum(requested * change[:, i]) / np.sum(requested**2))
        lower = 0.0
        for bound in DELTA_BUCKETS:
            inside = (np.abs(requested) > lower) & (np.abs(requested) <= bound)
            if inside.any():
                bucket_errors[bound].append(float(np.mean(error[inside])))
            lower = bound
        achieved[i] = np.mean(np.abs(change), axis=0)
        if name not in GEOMETRY_ATTRIBUTES:
            drifts.append(float(np.mean(np.linalg.norm(kp_after - kp_before, axis=-1))) * generator.resolution / 2)
    leakage = achieved / np.maximum(np.diag(achieved)[:, None], 1e-12)
    off_diagonal = leakage[~np.eye(a, dtype=bool)]
    for i, source in enumerate(names):
        for j, target in enumerate(names):
            if i != j:
                metrics[f"editing/leakage/{source}->{target}"] = float(leakage[i, j])
    metrics["editing/accuracy_mae"] = float(np.mean([metrics[f"editing/accuracy_mae/{n}"] for n in names]))
    for bound, values in bucket_errors.items():
        if values:
            metrics[f"editing/accuracy_mae_delta_le_{bound}"] = float(np.mean(values))
    metrics["editing/leakage_mean"] = float(np.mean(off_diagonal)) if off_diagonal.size else 0.0
    metrics["editing/leakage_worst"] = float(np.max(off_diagonal)) if off_diagonal.size else 0.0
    if drifts:
        metrics["editing/keypoint_drift_px"] = float(np.mean(drifts))
    return metrics


def round_trip(
    generator: TrainedGenerator, apply: Callable[[Latent, jax.Array], Latent], num_attributes: int, latent_std: Any,
    num_samples: int, seed: int, delta_max: float,
) -> dict[str, float]:
    """``editing/round_trip_latent`` and ``editing/round_trip_image_l1`` (module docstring)."""
    latent = generator.latent_from_seeds(np.arange(seed, seed + num_samples))
    delta = jnp.asarray(np.random.default_rng(seed + 1).uniform(-delta_max, delta_max, (num_samples, num_attributes)), jnp.float32)
    back = apply(apply(latent, delta), -delta)
    std = jnp.asarray(latent_std)
    distance = jnp.mean(jnp.square((flatten_latent(back) - flatten_latent(latent)) / std))
    l1 = jnp.mean(jnp.abs(generator.render(back) - generator.render(latent)))
    return {"editing/round_trip_latent": float(distance), "editing/round_trip_image_l1": float(l1)}
