"""Fréchet Inception Distance from feature statistics, statistics files and a reference-statistics cache.

``frechet_distance(a, b) = ‖μa − μb‖² + tr Σa + tr Σb − 2 tr √(Σa Σb)`` in float64 NumPy. The trace
term uses the symmetric route (no ``scipy.linalg.sqrtm``, no complex numbers): Σa Σb is similar to the
PSD matrix √Σa Σb √Σa, so ``tr √(Σa Σb) = Σᵢ √λᵢ(√Σa Σb √Σa)`` with √Σa from ``eigh`` and the λᵢ
from ``eigvalsh``; in both, negative eigenvalues and those below the round-off level d·eps·λmax are set
to 0. It stays finite, ≥ 0 and accurate for rank-deficient covariances (fewer samples than dimensions).

Statistics files are ``.npz`` with ``mu`` (D,), ``sigma`` (D, D), ``num`` and optionally ``features``
(N, D) float32 (for KID); pytorch-fid's own ``--save-stats`` files (``mu``, ``sigma``) load too.
``cached_statistics`` stores reference statistics under ``$LKGAN_CACHE_DIR/fid_stats`` (default
``~/.cache/lkgan_jax/fid_stats``) keyed by the SHA-256 of a canonical JSON of the caller's key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from typing import Any, Callable

import jax
import numpy as np
from absl import logging

from lkgan_jax import parallel
from lkgan_jax.data.image_folder import find_image_files
from lkgan_jax.utils.files import files_sha256, save_npz

CACHE_ENV = "LKGAN_CACHE_DIR"
DEFAULT_CACHE_ROOT = pathlib.Path.home() / ".cache" / "lkgan_jax"
CACHE_SUBDIR = "fid_stats"


@dataclasses.dataclass(frozen=True)
class Statistics:
    """Feature moments of one image set: mean ``mu`` (D,) and unbiased covariance ``sigma`` (D, D), float64.

    ``num`` is the number of images (−1 when unknown, e.g. pytorch-fid's .npz files); ``features``
    (N, D) float32 is kept only when asked for (KID).
    """

    mu: np.ndarray
    sigma: np.ndarray
    num: int
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        mu, sigma = np.asarray(self.mu), np.asarray(self.sigma)
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise ValueError(f"Statistics need mu (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}")
        if self.features is not None and (self.features.ndim != 2 or self.features.shape[1] != mu.shape[0]):
            raise ValueError(f"Statistics features must be (N, {mu.shape[0]}), got {self.features.shape}")

    @classmethod
    def from_features(cls, features: np.ndarray, keep_features: bool = False) -> "Statistics":
        """Mean and unbiased covariance (÷ N − 1) of features (N, D), in float64."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"FID statistics need at least 2 feature vectors (N, D), got shape {x.shape}")
        kept = np.asarray(features, np.float32) if keep_features else None
        return cls(x.mean(axis=0), np.cov(x, rowvar=False), x.shape[0], kept)

    @property
    def dim(self) -> int:
        return int(np.shape(self.mu)[0])

    def save(self, path: str | os.PathLike, **extra: Any) -> None:
        """Writes ``path`` (.npz) atomically; ``extra`` arrays/strings are stored alongside."""
        arrays = dict(mu=np.asarray(self.mu, np.float64), sigma=np.asarray(self.sigma, np.float64),
                      num=np.int64(self.num), **extra)
        if self.features is not None:
            arrays["features"] = np.asarray(self.features, np.float32)
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Statistics":
        """Reads a statistics ``.npz`` (ours or pytorch-fid's ``mu``/``sigma``); one-line errors."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"FID statistics file {path} does not exist.")
        try:
            with np.load(path, allow_pickle=False) as data:
                mu = np.asarray(data["mu"], np.float64)
                sigma = np.asarray(data["sigma"], np.float64)
                num = int(data["num"]) if "num" in data.files else -1
                features = np.asarray(data["features"], np.float32) if "features" in data.files else None
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path} is not a readable FID statistics .npz ({error})") from None
        return cls(mu, sigma, num, features)


def frechet_distance(stats_a: Statistics, stats_b: Statistics) -> float:
    """FID between two statistics (float64; see the module docstring for the trace term)."""
    if stats_a.dim != stats_b.dim:
        raise ValueError(f"Cannot compare FID statistics of dimension {stats_a.dim} and {stats_b.dim}")
    mu_a, mu_b = np.asarray(stats_a.mu, np.float64), np.asarray(stats_b.mu, np.float64)
    sigma_a, sigma_b = np.asarray(stats_a.sigma, np.float64), np.asarray(stats_b.sigma, np.float64)
    for name, array in (("mu", mu_a), ("mu", mu_b), ("sigma", sigma_a), ("sigma", sigma_b)):
        if not np.all(np.isfinite(array)):
            raise ValueError(f"FID statistics contain non-finite values in {name}")
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * trace_sqrt_product(sigma_a, sigma_b))


def _clip_round_off(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix with round-off removed: values ≤ d·eps·λmax (negative ones
    included) become 0, the numerical-rank cutoff of ``np.linalg.matrix_rank``. Without it, √ of the
    ~1e-16·λmax noise in the null space of a rank-deficient covariance adds ~1e-8·√λmax per dimension.
    """
    cutoff = max(float(eigenvalues.max(initial=0.0)), 0.0) * eigenvalues.shape[0] * np.finfo(np.float64).eps
    return np.where(eigenvalues > cutoff, eigenvalues, 0.0)


def symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """√M of a symmetric PSD matrix by ``eigh`` (float64); negative and round-off eigenvalues become 0."""
    m = np.asarray(matrix, np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh((m + m.T) / 2.0)
    return (eigenvectors * np.sqrt(_clip_round_off(eigenvalues))) @ eigenvectors.T


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """tr √(Σa Σb) = Σᵢ √λᵢ(√Σa Σb √Σa) for symmetric PSD Σa, Σb (float64, eigenvalues clipped at 0)."""
    root_a = symmetric_sqrt(sigma_a)
    product = root_a @ np.asarray(sigma_b, np.float64) @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2.0)
    return float(np.sum(np.sqrt(_clip_round_off(eigenvalues))))


def statistics_cache_dir(cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """``cache_dir`` if given, else ``$LKGAN_CACHE_DIR/fid_stats``, else ``~/.cache/lkgan_jax/fid_stats``."""
    if cache_dir is not None:
        return pathlib.Path(cache_dir)
    return pathlib.Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE_ROOT) / CACHE_SUBDIR


def _canonical_json(key_parts: dict[str, Any]) -> str:
    try:
        return json.dumps(key_parts, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"FID cache key parts must be plain JSON values ({error})") from None


def cache_key(key_parts: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys, no spaces, ASCII) of ``key_parts``."""
    return hashlib.sha256(_canonical_json(key_parts).encode("ascii")).hexdigest()


def cache_path(key_parts: dict[str, Any], cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where ``cached_statistics`` keeps the statistics for ``key_parts`` (exists ⇔ a cache hit)."""
    return statistics_cache_dir(cache_dir) / f"{cache_key(key_parts)}.npz"


def cached_statistics(
    key_parts: dict[str, Any],
    compute: Callable[[], Statistics],
    cache_dir: str | os.PathLike | None = None,
) -> Statistics:
    """Loads the statistics cached for ``key_parts``, or calls ``compute()`` and stores the result.

    Callers key real sets by what determines the numbers: content hash (``folder_content_hash``) or
    dataset version, resolution, protocol, N, the weights' SHA-256 and whether features are kept. The
    file (``cache_path``) is written atomically and records the key's JSON as ``key_json``; a cached
    file that cannot be read is recomputed and overwritten. In a multi-process job the file is used only
    when every process reads it (else all of them compute, as ``compute`` may split its work over them),
    and only process 0 writes it.
    """
    path = cache_path(key_parts, cache_dir)
    statistics = _read_cached(path)
    if parallel.all_processes(statistics is not None):
        return statistics
    statistics = compute()
    if not isinstance(statistics, Statistics):
        raise TypeError(f"cached_statistics: compute() must return Statistics, got {type(statistics).__name__}")
    if jax.process_index() == 0:
        statistics.save(path, key_json=np.asarray(_canonical_json(key_parts)))
    return statistics


def _read_cached(path: pathlib.Path) -> Statistics | None:
    """The statistics stored at ``path``, or None when there are none or they cannot be read (logged)."""
    if not path.is_file():
        return None
    try:
        return Statistics.load(path)
    except ValueError as error:
        logging.warning("Recomputing unreadable cached FID statistics %s (%s).", path, error)
        return None


def folder_content_hash(path: str | os.PathLike) -> str:
    """SHA-256 hex over the sorted relative names and bytes of every PNG/JPEG below ``path``."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise ValueError(f"Image folder {root!r} does not exist or is not a directory.")
    return files_sha256(root, find_image_files(root))
