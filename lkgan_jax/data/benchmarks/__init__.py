"""Preparers of the papers' benchmark data sets: ``lkgan prepare celeba|celeba_wild|cub|taichi|h36m_simplified``.

Each reads a data set as it is distributed (files found by name anywhere below ``--root``), applies the
benchmark's crops and filters, and writes ``OUT/<split>/`` ArrayRecord sets (readable as
``arrayrecord:OUT/<split>``; landmarks in pixels of the stored image, NaN where unknown, and a
``visibility`` (L,) key where the data set has one) plus ``OUT/manifest.json``::

    format, format_version, dataset, protocol, resolution, num_landmarks, landmark_names,
    sources [{path, bytes}], preprocessing, evaluation {variant: {train, regression, test}},
    splits {name: {directory, count, role, keys, ...}}, and data-set extras

Annotation files are read and checked before anything is written; every problem is a one-line
``ValueError`` naming the file (and the 1-based line for text tables).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

from lkgan_jax.data.benchmarks import celeba, cub, h36m, taichi


@dataclasses.dataclass(frozen=True)
class Benchmark:
    prepare: Callable[..., dict[str, Any]]
    default_resolution: int
    help: str


BENCHMARKS = {
    "celeba": Benchmark(celeba.prepare_celeba, celeba.DEFAULT_RESOLUTION,
                        "aligned CelebA with the MAFL splits (train, mafl_train, mafl_test)"),
    "celeba_wild": Benchmark(celeba.prepare_celeba_wild, celeba.DEFAULT_RESOLUTION,
                             "CelebA in the wild, faces covering >= 30%% of the photo (train, mafl_train, mafl_test)"),
    "cub": Benchmark(cub.prepare_cub, cub.DEFAULT_RESOLUTION,
                     "CUB-200-2011 birds (train, test, train_three, test_001..003)"),
    "taichi": Benchmark(taichi.prepare_taichi, taichi.DEFAULT_RESOLUTION,
                        "Tai-Chi-HD (train, regression_train, test)"),
    "h36m_simplified": Benchmark(h36m.prepare_h36m, h36m.DEFAULT_RESOLUTION,
                                 "Simplified Human3.6M (train: S1,5,6,7,8,9; test: S11)"),
}


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, resolution: int | None = None,
            shards: int = 1, **options: Any) -> dict[str, Any]:
    """Prepares ``dataset`` from ``root`` into ``out`` (module docstring) → the manifest."""
    benchmark = BENCHMARKS[dataset]
    return benchmark.prepare(root, out, resolution or benchmark.default_resolution, shards, **options)
