"""Batched FID-Inception features and streaming float64 moments.

``FeatureExtractor`` holds the network's parameters and ONE jitted function of a fixed batch shape
(pre-processing + ``FidInceptionV3``): uint8 (batch_size, H, W, 3) → float32 (batch_size, 2048).
``extract``/``iter_features``/``statistics`` accept a uint8 array (N, H, W, 3) or any iterable of
uint8 batches (b, H, W, 3) of one image size; batches are regrouped to ``batch_size``, the last one
is zero-padded and the padding rows are dropped, so results do not depend on how the input was split.
Host work (fetching the previous batch's features, updating moments) overlaps the device computing
the next batch.

``RunningMoments`` merges per-batch centred moments in float64 on the host (Chan et al.), so
statistics of any number of images need O(D²) memory; covariances are unbiased (÷ N − 1).
``sharded_statistics`` splits the images over the processes of a multi-process job and gives every
process the numbers of one process (docs/design.md §7.1).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lkgan_jax import parallel
from lkgan_jax.evaluation import inception
from lkgan_jax.evaluation.fid import Statistics
from lkgan_jax.evaluation.inception import FEATURE_DIM, FidInceptionV3
from lkgan_jax.evaluation.inception_weights import load_inception_params
from lkgan_jax.evaluation.preprocess import DEFAULT_PROTOCOL, check_protocol, preprocess

Images = np.ndarray | Iterable[np.ndarray]


class RunningMoments:
    """Streaming mean and covariance of feature rows (float64, Chan/Welford merge of batch moments)."""

    def __init__(self, keep_features: bool = False):
        self.keep_features = keep_features
        self.num = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None  # Σ (x − mean)(x − mean)ᵀ over all rows so far
        self._kept: list[np.ndarray] = []

    def update(self, features: np.ndarray) -> None:
        """Adds rows ``features`` (b, D); an empty batch is a no-op."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or (self._mean is not None and x.shape[1] != self._mean.shape[0]):
            expected = "(b, D)" if self._mean is None else f"(b, {self._mean.shape[0]})"
            raise ValueError(f"RunningMoments.update expects features {expected}, got shape {x.shape}")
        count = x.shape[0]
        if count == 0:
            return
        if not np.all(np.isfinite(x)):
            raise ValueError("RunningMoments.update got non-finite features")
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        batch_scatter = centred.T @ centred
        if self._mean is None:
            self._mean, self._scatter = batch_mean, batch_scatter
        else:
            total = self.num + count
            delta = batch_mean - self._mean
            self._mean = self._mean + delta * (count / total)
            self._scatter = self._scatter + batch_scatter + np.outer(delta, delta) * (self.num * count / total)
        self.num += count
        if self.keep_features:
            self._kept.append(np.asarray(features, np.float32))

    def statistics(self) -> Statistics:
        """``Statistics(mu, sigma = scatter / (N − 1), num, features if kept)``; needs N ≥ 2."""
        if self.num < 2:
            raise ValueError(f"FID statistics need at least 2 images, got {self.num}")
        features = np.concatenate(self._kept) if self.keep_features else None
        return Statistics(self._mean.copy(), self._scatter / (self.num - 1), self.num, features)


def moments(rows: np.ndarray, batch_size: int, keep_features: bool = False) -> Statistics:
    """``Statistics`` of feature rows (N, D), merged ``batch_size`` rows at a time in order: the numbers of
    ``RunningMoments`` fed the same rows in batches of that size (as ``FeatureExtractor.statistics`` does)."""
    running = RunningMoments(keep_features=keep_features)
    for start in range(0, len(rows), batch_size):
        running.update(rows[start: start + batch_size])
    return running.statistics()


def _check_batch(batch: Any) -> np.ndarray:
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"FID feature extraction expects uint8 images (N, H, W, 3) NHWC, got shape {batch.shape}")
    if batch.dtype != np.uint8:
        raise ValueError(f"FID feature extraction expects uint8 images (as saved on disk), got dtype {batch.dtype}")
    return batch


def _input_batches(images: Images) -> Iterator[np.ndarray]:
    if isinstance(images, (np.ndarray, jax.Array)):
        yield _check_batch(images)
    else:
        for batch in images:
            yield _check_batch(batch)


class FeatureExtractor:
    """pool3 features (N, 2048) float32 of uint8 images under a pre-processing protocol.

    Weights come from pytorch-fid's file at ``weights_path`` (checked, see ``inception_weights``) or,
    for tests and benchmarks, from ``params`` (then ``weights_sha256`` is None).
    """

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        *,
        params: Any = None,
        protocol: str = DEFAULT_PROTOCOL,
        batch_size: int = 50,
        allow_unverified: bool = False,
        precision: Any = lax.Precision.HIGHEST,
    ):
        self.protocol = check_protocol(protocol)
        if batch_size < 1:
            raise ValueError(f"FeatureExtractor batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        if params is None:
            params, self.weights_sha256 = load_inception_params(weights_path, allow_unverified=allow_unverified)
        else:
            if weights_path is not None:
                raise ValueError("FeatureExtractor takes weights_path or params, not both")
            inception.check_params(params)
            self.weights_sha256 = None
        self.params = jax.device_put(jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params))
        network = FidInceptionV3(precision=precision)

        def features(params: Any, images: jax.Array) -> jax.Array:
            return network.apply({"params": params}, preprocess(images, protocol))

        self._features = jax.jit(features)

    def __call__(self, batch: np.ndarray) -> jax.Array:
        """Features (batch_size, 2048) of exactly one full uint8 batch, as an (asynchronous) device array."""
        batch = _check_batch(batch)
        if batch.shape[0] != self.batch_size:
            raise ValueError(f"FeatureExtractor called on {batch.shape[0]} images; it takes batches of "
                             f"{self.batch_size} (use extract() for any number)")
        return self._features(self.params, batch)

    def _fixed_batches(self, images: Images) -> Iterator[tuple[np.ndarray, int]]:
        """(batch (batch_size, H, W, 3), number of real rows) with the last batch zero-padded."""
        pending: list[np.ndarray] = []
        buffered = 0
        size = None
        for batch in _input_batches(images):
            if batch.shape[0] == 0:
                continue
            if size is None:
                size = batch.shape[1:3]
            elif batch.shape[1:3] != size:
                raise ValueError(f"All images of one FID set must share one size: got {batch.shape[1:3]} after {size}")
            pending.append(batch)
            buffered += batch.shape[0]
            while buffered >= self.batch_size:
                joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield joined[: self.batch_size], self.batch_size
                rest = joined[self.batch_size:]
                pending, buffered = ([rest] if len(rest) else []), len(rest)
        if buffered:
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            padding = np.zeros((self.batch_size - buffered, *joined.shape[1:]), np.uint8)
            yield np.concatenate([joined, padding]), buffered

    def iter_features(self, images: Images) -> Iterator[np.ndarray]:
        """Features (b, 2048) float32 per processed batch, in input order (padding rows dropped)."""
        previous = None
        for batch, valid in self._fixed_batches(images):
            current = (self(batch), valid)  # dispatched asynchronously
            if previous is not None:
                yield np.asarray(previous[0])[: previous[1]]
            previous = current
        if previous is not None:
            yield np.asarray(previous[0])[: previous[1]]

    def extract(self, images: Images) -> np.ndarray:
        """Features (N, 2048) float32 of every image."""
        chunks = list(self.iter_features(images))
        return np.concatenate(chunks) if chunks else np.zeros((0, FEATURE_DIM), np.float32)

    def statistics(self, images: Images, keep_features: bool = False) -> Statistics:
        """Streaming ``Statistics`` (float64 moments; float32 features too when ``keep_features``)."""
        running = RunningMoments(keep_features=keep_features)
        for features in self.iter_features(images):
            running.update(features)
        return running.statistics()

    def sharded_statistics(self, images_of: Callable[[range], Images], num: int, images_batch_size: int = 1) -> Statistics:
        """``statistics(images_of(range(num)), keep_features=True)``, each process extracting its share.

        ``images_of(indices)`` gives the uint8 images of a contiguous range, made ``images_batch_size`` at a
        time from its start (1: one by one). Shares are whole multiples of that and of ``batch_size``
        (``parallel.sharded_rows``), so each image is made and its features extracted in the same batch as
        on one process; the features are gathered in index order and merged per ``batch_size`` rows
        (``moments``): every process gets the numbers of one process.
        """
        unit = math.lcm(self.batch_size, images_batch_size)
        features = parallel.sharded_rows(lambda indices: self.extract(images_of(indices)), num, unit)
        return moments(features, self.batch_size, keep_features=True)
