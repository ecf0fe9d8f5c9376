"""The Grain input pipeline for training (docs/design.md §6), Dataset API.

Chain::

    MapDataset.source(src).seed(seed).shuffle().repeat()   # new permutation every epoch
      .map(keep image) [.random_map(resized crop)] [.random_map(horizontal flip)] .map(uint8 -> float [-1, 1])
      ElasticIterator: [n + process_index :: process_count]  # this host's share, from global example n
        .batch(B_local, drop_remainder=True)
        .to_iter_dataset(ReadOptions(num_threads, prefetch_buffer_size))
        [.mp_prefetch(MultiprocessingOptions(num_workers))]  # only when num_workers > 0

Batches are **host-local**: ``dict(image=float32 (B_local, R, R, 3))`` in [-1, 1] with
``B_local = global_batch_size / jax.process_count()``; ``make_global_batch`` assembles the global
``jax.Array`` with ``jax.make_array_from_process_local_data`` (``device_put`` fails multi-host).
Element order depends only on the seeds, not on thread, worker or process counts: global batch ``t``
is examples ``t·B .. (t+1)·B − 1`` of the shuffled stream, process ``p`` holding every P-th of them.

``make_train_dataset`` returns a checkpointable ``grain.DatasetIterator`` whose state is the number
of global examples consumed, ``{"global_next_index": n}``, the same on every process (Grain's
``ElasticIterator``): a run resumes exactly on another process count. States of the earlier
per-process pipeline (``next_index`` batches) are converted. It is saved with Orbax through
``grain.checkpoint.CheckpointSave`` / ``CheckpointRestore``. With ``num_workers > 0`` close the
iterator (``iterator.close()``) when done, or shared-memory buffers leak; worker processes import
this module, so scripts need the ``if __name__ == "__main__"`` guard (or ``absl.app.run``).

Data config fields (``ml_collections.ConfigDict``):
    source        "procedural" (embedded ProceduralFaces, split "train"), "folder" (ImageFolder),
                  "arrayrecord" (ArrayRecordImages) or "tfds" (TfdsImages); see ``data.sources``.
    path          image folder (source="folder") or ArrayRecord directory (source="arrayrecord").
    tfds_name, tfds_split, image_key, tfds_dir
                  the TFDS dataset, its split, its image feature and data dir (source="tfds").
    resolution    R, side of the square images.
    seed          seed of the procedural dataset (the shuffle seed is ``make_train_dataset``'s).
    random_flip   bool, random horizontal flips with probability ``FLIP_PROBABILITY``.
    random_crop_scale, random_crop_ratio
                  (min, max) of a random resized crop's area fraction and aspect ratio (width /
                  height; torchvision's ``RandomResizedCrop``), resized back to R × R; (1, 1) and
                  (1, 1), the default, is off.
    num_threads   Grain read threads per process.
    prefetch      Grain prefetch buffer size (number of batches read ahead per process).
    num_workers   Grain worker processes; 0 reads in the main process.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import grain
import jax
import numpy as np
from PIL import Image

from lkgan_jax.conventions import normalized_to_pixel, pixel_to_normalized, uint8_to_float
from lkgan_jax.data.sources import ImageSource

FLIP_PROBABILITY = 0.5
CROP_ATTEMPTS = 10  # torchvision's tries at a crop inside the image before the centre-crop fallback
TRAINING_KEYS = ("image",)  # what the GAN trains on
LABELLED_KEYS = ("image", "landmarks", "attributes")  # what supervised networks (the judge) train on
GLOBAL_NEXT_INDEX = "global_next_index"  # the iterator state: global examples consumed

Source = Any  # a random-access source: __len__ and __getitem__(i) -> dict of NumPy arrays


def build_source(data_config: Any) -> Source:
    """The random-access source named by ``data_config.source`` (one-line errors name the data.* field)."""
    return ImageSource.from_data_config(data_config).open(data_config.resolution, data_config.seed)


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


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random crop (top, left, h, w) of an H × W image, as torchvision's ``RandomResizedCrop``.

    Area fraction uniform in ``scale``, aspect ratio w / h log-uniform in ``ratio``; after
    ``CROP_ATTEMPTS`` misses, the largest centred crop whose ratio is clamped into ``ratio``.
    """
    area = height * width
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = min(max(width / height, ratio[0]), ratio[1])
    w, h = (width, round(width / aspect)) if width / height < aspect else (round(height * aspect), height)
    w, h = min(w, width), min(h, height)
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop(sample: dict[str, np.ndarray], box: tuple[int, int, int, int]) -> dict[str, np.ndarray]:
    """The crop ``box`` = (top, left, h, w) of the image (R, R, 3), bilinearly resized back to R × R.

    Landmarks (normalised, pixel centres at -1 and +1) follow: a pixel coordinate p becomes
    (p − offset + ½) · R / extent − ½ along each axis (half-pixel-centred resampling, as PIL's).
    """
    top, left, h, w = box
    side = sample["image"].shape[0]
    image = Image.fromarray(sample["image"]).resize((side, side), Image.BILINEAR, box=(left, top, left + w, top + h))
    cropped = {**sample, "image": np.asarray(image)}
    if "landmarks" in sample:
        pixels = normalized_to_pixel(sample["landmarks"], side)
        offset, extent = np.array([left, top], np.float32), np.array([w, h], np.float32)
        cropped["landmarks"] = pixel_to_normalized((pixels - offset + 0.5) * side / extent - 0.5, side).astype(np.float32)
    return cropped


def random_resized_crop(sample: dict[str, np.ndarray], rng: np.random.Generator, scale: tuple[float, float],
                        ratio: tuple[float, float]) -> dict[str, np.ndarray]:
    """``resized_crop`` at a ``crop_box`` drawn from ``rng`` (Grain ``random_map`` signature once bound)."""
    height, width = sample["image"].shape[:2]
    return resized_crop(sample, crop_box(height, width, scale, ratio, rng))


def check_crop_config(data_config: Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """(scale, ratio) of ``data.random_crop_*``, or None when the crop is off; one-line errors for bad ranges."""
    scale = tuple(float(v) for v in data_config.get("random_crop_scale", (1.0, 1.0)))
    ratio = tuple(float(v) for v in data_config.get("random_crop_ratio", (1.0, 1.0)))
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise ValueError(f"data.random_crop_scale must be (min, max) with 0 < min <= max <= 1, got {scale}")
    if len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"data.random_crop_ratio must be (min, max) with 0 < min <= max, got {ratio}")
    return None if scale == (1.0, 1.0) and ratio == (1.0, 1.0) else (scale, ratio)


def image_to_float(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """uint8 image -> float32 in [-1, 1]; other entries unchanged."""
    return {**sample, "image": uint8_to_float(sample["image"])}


def make_train_dataset(
    data_config: Any, global_batch_size: int, seed: int, keys: tuple[str, ...] = TRAINING_KEYS
) -> "ElasticBatches":
    """Infinite, shuffled, process-sharded iterator of host-local float batches of ``keys`` (module docstring)."""
    local_batch_size(global_batch_size)
    dataset = grain.MapDataset.source(build_source(data_config)).seed(seed).shuffle().repeat()
    dataset = dataset.map(functools.partial(select_keys, keys=keys))
    crop = check_crop_config(data_config)
    if crop is not None:
        dataset = dataset.random_map(functools.partial(random_resized_crop, scale=crop[0], ratio=crop[1]))
    if data_config.random_flip:
        dataset = dataset.random_map(random_horizontal_flip)
    dataset = dataset.map(image_to_float)
    workers = None
    if data_config.num_workers > 0:
        workers = grain.MultiprocessingOptions(num_workers=data_config.num_workers)
    elastic = grain.experimental.ElasticIterator(
        dataset,
        global_batch_size,
        grain.sharding.ShardOptions(jax.process_index(), jax.process_count(), drop_remainder=True),
        read_options=grain.ReadOptions(num_threads=data_config.num_threads, prefetch_buffer_size=data_config.prefetch),
        multiprocessing_options=workers,
    )
    return ElasticBatches(elastic, global_batch_size)


class ElasticBatches(grain.DatasetIterator):
    """Grain's ``ElasticIterator`` (state: global examples consumed) that also takes the states of the
    earlier per-process pipeline: ``{"next_index": t}`` (no workers) or the interleaved workers' states,
    each meaning t batches per process, i.e. ``t · global_batch_size`` global examples."""

    def __init__(self, elastic: Any, global_batch_size: int):
        super().__init__()
        self._elastic, self._iterator, self.global_batch_size = elastic, iter(elastic), global_batch_size

    def __next__(self) -> dict[str, np.ndarray]:
        return next(self._iterator)

    def get_state(self) -> dict[str, int]:
        return self._iterator.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._iterator.set_state(elastic_state(state, self.global_batch_size))

    def close(self) -> None:
        self._elastic.close()


def elastic_state(state: dict[str, Any], global_batch_size: int) -> dict[str, int]:
    """``{"global_next_index": n}`` from a saved iterator state (this pipeline's, or the earlier per-process one's)."""
    if GLOBAL_NEXT_INDEX in state:
        return {GLOBAL_NEXT_INDEX: int(state[GLOBAL_NEXT_INDEX])}
    if "next_index" in state:
        batches = int(state["next_index"])
    elif "iterators_in_use_states" in state:
        batches = sum(int(worker["next_index"]) for worker in state["iterators_in_use_states"])
    else:
        raise ValueError(f"unknown data-iterator state with keys {sorted(state)}")
    return {GLOBAL_NEXT_INDEX: batches * global_batch_size}


def make_global_batch(host_batch: dict[str, np.ndarray], sharding: jax.sharding.Sharding) -> dict[str, jax.Array]:
    """Host-local batch -> global ``jax.Array``s laid out by ``sharding`` (leading axis = batch)."""
    return {key: jax.make_array_from_process_local_data(sharding, value) for key, value in host_batch.items()}
