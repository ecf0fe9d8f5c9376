"""Batches of an image folder as stored (no crop or resize), for FID between two folders.

``FolderBatches`` reads every PNG/JPEG below a folder in sorted order, decoding in threads one batch
ahead; unreadable files are logged, skipped and counted, and every image must have one size.
"""

from __future__ import annotations

import concurrent.futures
import os
from typing import Iterator

import numpy as np
from absl import logging

from lkgan_jax.data.image_folder import decode_rgb, find_image_files


def _read_image(path: str) -> np.ndarray | Exception:
    try:
        return np.asarray(decode_rgb(path), np.uint8)
    except Exception as error:  # Pillow's decoders raise many types; a bad file is skipped, not fatal.
        return error


class FolderBatches:
    """Iterable of uint8 batches (≤ batch_size, H, W, 3) of the PNG/JPEG files below ``path`` (sorted).

    Every image must have the size of the first readable one (else a one-line ValueError naming the
    file); unreadable files are logged, skipped and counted (``num_skipped``, ``skipped_files``).
    Decoding runs in ``num_threads`` threads, one batch ahead. ``max_images`` stops after that many
    readable images. Counters describe the last completed or running iteration.
    """

    def __init__(self, path: str | os.PathLike, batch_size: int, max_images: int | None = None,
                 num_threads: int = 4):
        self.root = os.fspath(path)
        if not os.path.isdir(self.root):
            raise ValueError(f"Image folder {self.root!r} does not exist or is not a directory.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.relative_paths = find_image_files(self.root)
        if not self.relative_paths:
            raise ValueError(f"Image folder {self.root!r} holds no .png/.jpg/.jpeg images.")
        self.batch_size = batch_size
        self.max_images = max_images
        self.num_threads = max(1, num_threads)
        self.num_images = 0
        self.skipped_files: list[str] = []
        self.image_shape: tuple[int, int] | None = None

    @property
    def num_skipped(self) -> int:
        return len(self.skipped_files)

    def __len__(self) -> int:
        """Number of image files found (before skipping unreadable ones)."""
        return len(self.relative_paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        self.num_images, self.skipped_files, self.image_shape = 0, [], None
        first_file = None
        paths = [os.path.join(self.root, p) for p in self.relative_paths]
        chunks = [paths[i: i + self.batch_size] for i in range(0, len(paths), self.batch_size)]
        with concurrent.futures.ThreadPoolExecutor(self.num_threads) as pool:
            upcoming = [pool.submit(_read_image, p) for p in chunks[0]] if chunks else []
            for index in range(len(chunks)):
                current = upcoming
                upcoming = [pool.submit(_read_image, p) for p in chunks[index + 1]] if index + 1 < len(chunks) else []
                images = []
                for file, future in zip(chunks[index], current):
                    image = future.result()
                    if isinstance(image, Exception):
                        self.skipped_files.append(file)
                        logging.warning("Skipping unreadable image %s (%s: %s); %d skipped so far.",
                                        file, type(image).__name__, image, len(self.skipped_files))
                        continue
                    if self.image_shape is None:
                        self.image_shape, first_file = image.shape[:2], file
                    elif image.shape[:2] != self.image_shape:
                        for future in upcoming:
                            future.cancel()
                        raise ValueError(
                            f"Image {file} is {image.shape[1]}x{image.shape[0]} but {first_file} is "
                            f"{self.image_shape[1]}x{self.image_shape[0]}: FID needs one image size per set.")
                    images.append(image)
                if self.max_images is not None:
                    images = images[: max(0, self.max_images - self.num_images)]
                if images:
                    self.num_images += len(images)
                    yield np.stack(images)
                if self.max_images is not None and self.num_images >= self.max_images:
                    for future in upcoming:
                        future.cancel()
                    return


def iterate_folder_batches(path: str | os.PathLike, batch_size: int, max_images: int | None = None,
                           num_threads: int = 4) -> FolderBatches:
    """``FolderBatches(path, batch_size, max_images, num_threads)``: uint8 batches of an image folder."""
    return FolderBatches(path, batch_size, max_images=max_images, num_threads=num_threads)
