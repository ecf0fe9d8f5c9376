"""The trained generator behind every studio page: edits and renders, serialised by one lock.

All JAX work of the server (applying an op, rendering, the latents of seeds) runs under ``Engine.lock``,
so concurrent requests never run two programs at once on the CPU cores; the compiled render of each
latent shape is kept (``jax.jit``'s cache), and ``warm_up`` compiles the common ones at start-up.

Images are uint8 (T, R, R, 3) from ``editing.replay.render_uint8``: the pixels ``lkgan edit`` writes.
"""

from __future__ import annotations

import collections
import io
import threading
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from lkgan_jax.cli.generate import generate
from lkgan_jax.editing.recipe import Operation, apply_operation
from lkgan_jax.editing.replay import SeedLatents, last_frame, render_uint8
from lkgan_jax.models.latent import Latent
from lkgan_jax.models.sampling import TrainedGenerator

THUMBNAIL_BATCH = 8  # thumbnails render in padded batches of this size: one compiled program
THUMBNAIL_CACHE = 512  # PNGs of seed thumbnails kept
PREVIEW_PNG_LEVEL = 1  # zlib level of the PNGs sent to the page (fast; the pixels are exact)


def png_bytes(image: np.ndarray, compress_level: int = PREVIEW_PNG_LEVEL) -> bytes:
    """uint8 (H, W, 3) -> PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


class Engine:
    """One ``TrainedGenerator`` shared by all sessions; every method is thread-safe."""

    def __init__(self, model: TrainedGenerator, editors: Callable[[str], object] | None = None):
        self.model, self.editors = model, editors  # editors: the run's trained editors, for ``attribute`` ops
        self.lock = threading.Lock()
        self._latents = SeedLatents(model)
        self._thumbnails: collections.OrderedDict[int, bytes] = collections.OrderedDict()

    @property
    def num_parts(self) -> int:
        return self.model.num_parts

    @property
    def resolution(self) -> int:
        return self.model.resolution

    def latent_of_seed(self, seed: int) -> Latent:
        """The latent of the image of ``seed`` (batch 1, the trained number of parts)."""
        with self.lock:
            return self._latents(seed)

    def apply(self, op: Operation, latent: Latent) -> Latent:
        """``op`` applied to ``latent`` (batch 1) -> its frames (T rows; the last is the result)."""
        with self.lock:
            return apply_operation(op, latent, self._latents, self.editors)

    def render(self, frames: Latent) -> tuple[np.ndarray, float]:
        """uint8 images (T, R, R, 3) of ``frames`` and the seconds the render took (on the host, lock held)."""
        with self.lock:
            start = time.perf_counter()
            images = render_uint8(self.model, frames)
            return images, time.perf_counter() - start

    def thumbnails(self, seeds: list[int]) -> dict[int, bytes]:
        """PNG bytes of the image of each seed (native resolution), rendered in padded batches."""
        with self.lock:
            missing = [s for s in dict.fromkeys(seeds) if s not in self._thumbnails]
            if missing:
                images, _ = generate(self.model, np.asarray(missing, np.int64), THUMBNAIL_BATCH)
                self._thumbnails.update((seed, png_bytes(image)) for seed, image in zip(missing, images))
            for seed in seeds:
                self._thumbnails.move_to_end(seed)
            result = {seed: self._thumbnails[seed] for seed in seeds}
            while len(self._thumbnails) > max(THUMBNAIL_CACHE, len(result)):
                self._thumbnails.popitem(last=False)
            return result

    def warm_up(self, seed: int) -> float:
        """Compiles what a page needs first (render at batch 1 and 2, a move, thumbnails) -> seconds."""
        start = time.perf_counter()
        latent = self.latent_of_seed(seed)
        self.render(latent)
        self.render(jax.tree.map(lambda x: jnp.concatenate([x, x]), latent))  # interpolation commits: 2 frames
        move = Operation(1, "move", {"part": [0], "to": [[0.0, 0.0]], "offset": None})
        self.render(last_frame(self.apply(move, latent)))
        self.thumbnails([seed])
        return time.perf_counter() - start
