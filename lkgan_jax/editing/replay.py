"""Edits on a trained generator: the latents of other seeds, and the pixels of an edited latent.

Shared by ``lkgan edit`` (a whole recipe at once, ``run_recipe``) and ``lkgan studio`` (one op per
request), so that both turn the same latent into the same uint8 image:

    seeds = SeedLatents(model)                       # seed -> Latent (batch 1), memoised
    frames = apply_operation(op, latent, seeds)      # lkgan_jax.editing.recipe
    images = render_uint8(model, frames)             # uint8 (T, R, R, 3); frames[-1] is the result

An op's image is always its last frame rendered in the batch of all its frames (T = 1 except for
interpolations), exactly as ``lkgan edit`` writes ``NN_<op>.png``.
"""

from __future__ import annotations

import collections
import pathlib
from typing import Callable

import jax
import numpy as np

from lkgan_jax.conventions import float_to_uint8
from lkgan_jax.editing.recipe import Operation, RecipeError, apply_operation
from lkgan_jax.models.latent import Latent, latent_to_numpy
from lkgan_jax.models.sampling import TrainedGenerator, check_seeds


class SeedLatents:
    """``latents(seed)`` -> the latent of the image of ``seed`` (batch 1); the newest ``capacity`` are kept.

    Not thread-safe: callers that share one across threads hold their own lock.
    """

    def __init__(self, model: TrainedGenerator, capacity: int = 256):
        self.model, self.capacity = model, capacity
        self._cache: collections.OrderedDict[int, Latent] = collections.OrderedDict()

    def __call__(self, seed: int) -> Latent:
        seed = int(check_seeds([seed])[0])
        if seed in self._cache:
            self._cache.move_to_end(seed)
        else:
            self._cache[seed] = self.model.latent_from_seeds(np.asarray([seed], np.uint32))
            if len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return self._cache[seed]


def render_uint8(model: TrainedGenerator, latent: Latent) -> np.ndarray:
    """The eval-mode images of ``latent`` (B rows) as uint8 (B, R, R, 3): the pixels ``lkgan edit`` writes."""
    return float_to_uint8(model.render(latent))


class RunEditors:
    """``editors(name)`` -> the trained editor ``name`` of a run, checked against its generator, memoised."""

    def __init__(self, workdir: str | pathlib.Path, model: TrainedGenerator):
        self.workdir, self.model = workdir, model
        self._cache: dict[str, object] = {}

    def __call__(self, name: str):
        from lkgan_jax.latent_editing.inference import load_editor

        if name not in self._cache:
            self._cache[name] = load_editor(self.workdir, name, self.model)
        return self._cache[name]


def check_attribute_ops(operations: list[Operation], editors: Callable[[str], object] | None) -> None:
    """Loads the editors that ``attribute`` ops name and checks their changes, before anything renders."""
    for op in operations:
        if op.name != "attribute":
            continue
        if editors is None:
            raise RecipeError(f"{op.label}: attribute edits need a run with trained editors")
        try:
            editors(op.fields["editor"]).delta(op.fields["set"])
        except (ValueError, FileNotFoundError) as error:
            raise RecipeError(f"{op.label}: {error}") from None


def run_recipe(
    model: TrainedGenerator, start: Latent, operations: list[Operation], latents: SeedLatents | None = None,
    editors: Callable[[str], object] | None = None,
) -> list[tuple[str, str, Latent, np.ndarray]]:
    """Applies ``operations`` in order -> [(name, caption, frames latent, uint8 frames (T, R, R, 3))], input first.

    T is 1 except for interpolations; each op starts from the last frame of the one before.
    ``editors(name)`` gives the trained editors that ``attribute`` ops use (e.g. ``RunEditors``).
    """
    latents = SeedLatents(model) if latents is None else latents
    check_attribute_ops(operations, editors)
    results = [("input", "input", start, render_uint8(model, start))]
    latent = start
    for op in operations:
        frames = apply_operation(op, latent, latents, editors)
        results.append((op.name, op.caption, frames, render_uint8(model, frames)))
        latent = last_frame(frames)
    return results


def last_frame(frames: Latent) -> Latent:
    """The last row of a batch of frames, as a batch of 1."""
    return jax.tree.map(lambda x: x[-1:], frames)


def latent_record(latent: Latent, seed: int, step: int) -> dict[str, np.ndarray]:
    """A batch-1 ``latent`` of ``seed`` as the arrays of a ``latents.npz`` (``seeds``, ``step``, ``Latent`` fields).

    The format ``lkgan generate`` writes and ``lkgan edit --latents FILE --seed S`` reads.
    """
    return {"seeds": np.asarray([seed], np.uint32), "step": np.asarray(step), **latent_to_numpy(latent)}
