"""The Grain input pipeline for training (docs/design.md §6), Dataset API.

Chain::

    MapDataset.source(src).seed(seed).shuffle().repeat()   # new permutation every epoch
      [process_index::process_count]                         # this host's share
      .map(keep image) [.random_map(horizontal flip)] .map(uint8 -> float [-1, 1])
      .batch(B_local, drop_remainder=True)
      .to_iter_dataset(ReadOptions(num_threads, prefetch_buffer_size))
      [.mp_prefetch(MultiprocessingOptions(num_workers))]    # only when num_workers > 0

Batches are **host-local**: ``dict(image=float32 (B_local, R, R, 3))`` in [-1, 1] with
``B_local = global_batch_size / jax.process_count()``; ``make_global_batch`` assembles the global
``jax.Array`` with ``jax.make_array_from_process_local_data`` (``device_put`` fails multi-host).
Element order depends only on the seeds, not on thread or worker counts. ``iter(dataset)`` gives a
``grain.DatasetIterator`` with ``get_state()``/``set_state()``, checkpointable with Orbax through
``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore``. With ``num_workers > 0`` close the
iterator (``iterator.close()``) when done, or shared-memory buffers leak; worker processes import
this module, so scripts need the ``if __name__ == "__main__"`` guard (or ``absl.app.run``).

Data config fields (``ml_collections.ConfigDict``):
    source        "procedural" (embedded ProceduralFaces, split "train") or "folder" (ImageFolder).
    path          image folder for source="folder".
    resolution    R, side of the square images.
    seed          seed of the procedural dataset (the shuffle seed is ``make_train_dataset``'s).
    random_flip   bool, random horizontal flips with probability ``FLIP_PROBABILITY``.
    num_threads   Grain read threads per process.
    prefetch      Grain prefetch buffer size (number of batches read ahead per process).
    num_workers   Grain worker processes; 0 reads in the main process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import grain
import jax
import numpy as np

from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.image_folder import ImageFolder
from lkgan_jax.data.procedural import ProceduralFaces

FLIP_PROBABILITY = 0.5
TRAINING_KEYS = ("image",)  # what the GAN trains on
LABELLED_KEYS = ("image", "landmarks", "attributes")  # what supervised networks (the judge) train on

Source = Any  # a random-access source: __len__ and __getitem__(i) -> dict of NumPy arrays


def _build_procedural(data_config: Any) -> Source:
    return ProceduralFaces(seed=data_config.seed, split="train", resolution=data_config.resolution)


def _build_folder(data_config: Any) -> Source:
    if not data_config.path:
        raise ValueError("data.source=folder needs data.path, the image folder")
    if not os.path.isdir(data_config.path):
        raise ValueError(f"data.path={data_config.path!r} is not an existing directory")
    return ImageFolder(data_config.path, resolution=data_config.resolution)


SOURCE_BUILDERS: dict[str, Callable[[Any], Source]] = {
    "procedural": _build_procedural,
    "folder": _build_folder,
}


def build_source(data_config: Any) -> Source:
    """The random-access source named by ``data_config.source``."""
    builder = SOURCE_BUILDERS.get(data_config.source)
    if builder is None:
        raise ValueError(
            f"Unknown data source {data_config.source!r}; valid choices: {', '.join(sorted(SOURCE_BUILDERS))}."
        )
    return builder(data_config)


def local_batch_size(global_batch_size: int) -> int:
    """This process's share of a global batch (global / process_count); must divide evenly."""
    process_count = jax.process_count()
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"Global batch size {global_batch_size} must be a positive multiple of the process count {process_count}."
        )
    return global_batch_size // process_count


def select_keys(sample: dict[str, np.ndarray], keys: tuple[str, ...] = TRAINING_KEYS) -> dict[str, np.ndarray]:
    """Keep only what training consumes (by default the image; landmarks/attributes are dropped)."""
    return {key: sample[key] for key in keys}


def flip_horizontally(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mirror the image (H, W, C) left-right and, if present, the landmarks' x (normalised: x -> -x).

    Landmark indices keep their order (a "left eye" landmark is not relabelled as the right one).
    """
    flipped = dict(sample)
    flipped["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
    if "landmarks" in sample:
        flipped["landmarks"] = sample["landmarks"] * np.array([-1.0, 1.0], np.float32)
    return flipped


def random_horizontal_flip(sample: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``flip_horizontally`` with probability ``FLIP_PROBABILITY`` (Grain ``random_map`` signature)."""
    return flip_horizontally(sample) if rng.random() < FLIP_PROBABILITY else sample


def image_to_float(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """uint8 image -> float32 in [-1, 1]; other entries unchanged."""
    return {**sample, "image": uint8_to_float(sample["image"])}


def make_train_dataset(
    data_config: Any, global_batch_size: int, seed: int, keys: tuple[str, ...] = TRAINING_KEYS
) -> grain.IterDataset:
    """Infinite, shuffled, process-sharded dataset of host-local float batches of ``keys`` (module docstring)."""
    batch_size = local_batch_size(global_batch_size)
    dataset = grain.MapDataset.source(build_source(data_config)).seed(seed).shuffle().repeat()
    dataset = dataset[jax.process_index() :: jax.process_count()]
    dataset = dataset.map(functools.partial(select_keys, keys=keys))
    if data_config.random_flip:
        dataset = dataset.random_map(random_horizontal_flip)
    dataset = dataset.map(image_to_float).batch(batch_size, drop_remainder=True)
    read_options = grain.ReadOptions(
        num_threads=data_config.num_threads, prefetch_buffer_size=data_config.prefetch
    )
    iter_dataset = dataset.to_iter_dataset(read_options)
    if data_config.num_workers > 0:
        iter_dataset = iter_dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.num_workers))
    return iter_dataset


def make_global_batch(host_batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """Host-local batch -> global ``jax.Array``s laid out by ``sharding`` (leading axis = batch)."""
    return {key: jax.make_array_from_process_local_data(sharding, value) for key, value in host_batch.items()}
