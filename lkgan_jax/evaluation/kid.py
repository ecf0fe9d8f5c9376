"""Kernel Inception Distance: unbiased MMD² with the cubic polynomial kernel, over random subsets.

``k(x, y) = (xᵀy / d + 1)³``. For each of ``num_subsets`` subsets (``m = min(subset_size, Na, Nb)``
rows of each set, drawn without replacement by a seeded ``np.random.Generator``):

  MMD²ᵤ = Σ_{i≠j} k(aᵢ, aⱼ) / (m(m−1)) + Σ_{i≠j} k(bᵢ, bⱼ) / (m(m−1)) − 2 Σ_{i,j} k(aᵢ, bⱼ) / m²

KID = (mean, std) over subsets (std with ddof 0, as torch-fidelity). float64 matrix products; when the
full Gram matrices are small they are computed once and the subsets index into them.
"""

from __future__ import annotations

import numpy as np

DEFAULT_NUM_SUBSETS = 100
DEFAULT_SUBSET_SIZE = 1000
DEFAULT_SEED = 0
FULL_GRAM_MAX_ELEMENTS = 25_000_000  # ≈ 200 MB of float64 for the three Gram matrices together


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(xᵀy / d + 1)³ for rows of x (n, d) and y (m, d) → (n, m), float64."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_unbiased(k_aa: np.ndarray, k_bb: np.ndarray, k_ab: np.ndarray) -> float:
    m = k_aa.shape[0]
    off_diagonal = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(off_diagonal - 2.0 * k_ab.sum() / (m * m))


def kernel_inception_distance(
    features_a: np.ndarray,
    features_b: np.ndarray,
    num_subsets: int = DEFAULT_NUM_SUBSETS,
    subset_size: int = DEFAULT_SUBSET_SIZE,
    seed: int = DEFAULT_SEED,
    full_gram_max_elements: int = FULL_GRAM_MAX_ELEMENTS,
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² between features (Na, D) and (Nb, D); see the module docstring."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs features (Na, D) and (Nb, D), got shapes {a.shape} and {b.shape}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 feature vectors in each set, got {a.shape[0]} and {b.shape[0]}")
    if num_subsets < 1:
        raise ValueError(f"KID needs num_subsets >= 1, got {num_subsets}")
    rng = np.random.default_rng(seed)
    full = a.shape[0] ** 2 + b.shape[0] ** 2 + a.shape[0] * b.shape[0] <= full_gram_max_elements
    if full:
        k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    mmds = np.empty(num_subsets)
    for s in range(num_subsets):
        ia = rng.choice(a.shape[0], m, replace=False)
        ib = rng.choice(b.shape[0], m, replace=False)
        if full:
            mmds[s] = _mmd2_unbiased(k_aa[np.ix_(ia, ia)], k_bb[np.ix_(ib, ib)], k_ab[np.ix_(ia, ib)])
        else:
            sa, sb = a[ia], b[ib]
            mmds[s] = _mmd2_unbiased(polynomial_kernel(sa, sa), polynomial_kernel(sb, sb), polynomial_kernel(sa, sb))
    return float(mmds.mean()), float(mmds.std())
