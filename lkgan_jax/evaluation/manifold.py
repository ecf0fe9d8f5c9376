"""Improved precision and recall (Kynkäänniemi et al. 2019) from feature vectors, in float64 NumPy.

Real features R (N, F) and fake features G (M, F). The manifold of a set is the union of balls centred
on its samples; the radius of sample x is the distance to its k-th nearest neighbour among the OTHER
samples of its own set (x itself is excluded by index, so an exact duplicate of x counts as a
neighbour at distance 0). Distances are Euclidean.

  precision = fraction of fakes g with ‖g − r‖ ≤ radius(r) for at least one real r
  recall    = fraction of reals r with ‖r − g‖ ≤ radius(g) for at least one fake g

Distances come from ‖a‖² + ‖b‖² − 2 aᵀb (clipped at 0, then √), computed in row blocks of
``batch_size`` against the whole other set, so memory is O(batch_size · max(N, M)); results do not
depend on ``batch_size``.
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 3
DEFAULT_BATCH_SIZE = 1024


def _distance_blocks(a: np.ndarray, b: np.ndarray, batch_size: int):
    """Yields (start, distances (≤batch_size, Nb)) between row blocks of a (Na, F) and all of b (Nb, F)."""
    a_sq, b_sq = np.sum(a * a, axis=1), np.sum(b * b, axis=1)
    for start in range(0, a.shape[0], batch_size):
        stop = min(start + batch_size, a.shape[0])
        sq = a_sq[start:stop, None] + b_sq[None, :] - 2.0 * (a[start:stop] @ b.T)
        yield start, np.sqrt(np.maximum(sq, 0.0))


def knn_radii(features: np.ndarray, k: int = DEFAULT_K, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
    """Distance of each row of features (N, F) to its k-th nearest other row → (N,) float64; needs N > k."""
    x = np.asarray(features, np.float64)
    radii = np.empty(x.shape[0])
    for start, dist in _distance_blocks(x, x, batch_size):
        rows = np.arange(dist.shape[0])
        dist[rows, start + rows] = np.inf  # a sample is not its own neighbour
        radii[start : start + dist.shape[0]] = np.partition(dist, k - 1, axis=1)[:, k - 1]
    return radii


def _coverage(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray, batch_size: int) -> float:
    """Fraction of queries (Q, F) within radii (P,) of at least one manifold row (P, F)."""
    inside = np.zeros(queries.shape[0], bool)
    for start, dist in _distance_blocks(queries, manifold, batch_size):
        inside[start : start + dist.shape[0]] = np.any(dist <= radii[None, :], axis=1)
    return float(inside.mean())


def precision_recall(
    real_features: np.ndarray,
    fake_features: np.ndarray,
    k: int = DEFAULT_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, float]:
    """{"precision", "recall"} of fakes (M, F) against reals (N, F) with k-NN radii; see the module docstring."""
    real, fake = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
    if real.ndim != 2 or fake.ndim != 2:
        raise ValueError(f"precision/recall needs 2-D features (N, F) and (M, F), got {real.shape} and {fake.shape}")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision/recall needs equal feature dims, got {real.shape[1]} and {fake.shape[1]}")
    if k < 1:
        raise ValueError(f"precision/recall needs k >= 1, got {k}")
    if min(real.shape[0], fake.shape[0]) < k + 1:
        raise ValueError(f"precision/recall needs >= k+1 = {k + 1} samples per set, got {len(real)} and {len(fake)}")
    if batch_size < 1:
        raise ValueError(f"precision/recall needs batch_size >= 1, got {batch_size}")
    if not (np.all(np.isfinite(real)) and np.all(np.isfinite(fake))):
        raise ValueError("precision/recall needs finite features")
    real_radii, fake_radii = knn_radii(real, k, batch_size), knn_radii(fake, k, batch_size)
    return {
        "precision": _coverage(real, real_radii, fake, batch_size),
        "recall": _coverage(fake, fake_radii, real, batch_size),
    }
