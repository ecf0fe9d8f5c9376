"""One studio page's state: the seed, the committed ops with undo/redo, previews, and the store of pages.

A session starts from the latent of a seed (``Engine.latent_of_seed``) and keeps every committed op
with its frames, so undo and redo never re-apply an op. Ops are the ``ops.json`` entries of
``lkgan_jax.editing.recipe``, validated against the number of parts at that point of the history:

  preview(entry)           the op applied to the current latent, rendered, nothing kept (dragging, sliders)
  commit(entry)            the op appended to the history (the redo branch is dropped)
  replace=True             either of them applied to the latent before the last op, and a commit replaces
                           that op: a slider moved again edits its own op instead of stacking a new one

The image of a commit is the last frame of the op rendered in the batch of all its frames, the pixels
``lkgan edit`` writes for that op (``editing.replay``), so ``ops`` replays to the same image.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import threading
from typing import Any

import numpy as np

from lkgan_jax.editing.recipe import Operation, RecipeError, parse_operation, parts_after
from lkgan_jax.editing.replay import last_frame
from lkgan_jax.models.latent import Latent
from lkgan_jax.studio.engine import Engine

MAX_FRAMES = 16  # interpolation steps per op: every frame is rendered on commit
MAX_EXTRA_PARTS = 16  # parts a page may add beyond the trained K (each new K compiles a new render)
MAX_HISTORY = 1000  # committed ops per session
MAX_SESSIONS = 32  # pages kept; the least recently used is dropped first
REQUEST_SOURCE = "request"  # names the op in recipe errors: "request op 3 ('move'): ..."


class StudioError(ValueError):
    """A request the studio refuses: a one-line message and the HTTP status (4xx) to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Step:
    """A committed op (None for the start) and its frames (T rows; the last is the latent after it)."""

    op: Operation | None
    frames: Latent

    @property
    def latent(self) -> Latent:
        return last_frame(self.frames)


class Session:
    """The edit history of one page; callers hold ``lock`` around every call (one request at a time)."""

    def __init__(self, engine: Engine, session_id: str, seed: int):
        self.engine, self.id = engine, session_id
        self.lock = threading.Lock()
        self.start(seed)

    def start(self, seed: int) -> None:
        """Starts over from the image of ``seed`` (the history is dropped)."""
        start = Step(None, self.engine.latent_of_seed(seed))
        self.image, self.render_seconds = self._render(start)
        self.seed, self.steps, self.index = seed, [start], 0

    @property
    def latent(self) -> Latent:
        """The current latent (batch 1)."""
        return self.steps[self.index].latent

    @property
    def operations(self) -> list[Operation]:
        """The committed ops up to the current one, in order."""
        return [step.op for step in self.steps[1 : self.index + 1]]

    def ops_json(self) -> list[dict[str, Any]]:
        """The committed ops as an ``ops.json`` list (``lkgan edit --seed SEED`` replays it)."""
        return [op.to_json() for op in self.operations]

    def preview(self, entry: Any, replace: bool = False) -> tuple[np.ndarray, float, Latent]:
        """``entry`` applied and rendered at batch 1 without being kept -> (uint8 image, render seconds, latent)."""
        base, op = self._parse(entry, replace)
        latent = last_frame(self._apply(op, base))
        images, seconds = self.engine.render(latent)
        return images[-1], seconds, latent

    def commit(self, entry: Any, replace: bool = False) -> None:
        """Appends ``entry`` to the history (or replaces the last op) and renders it."""
        if not replace and self.index >= MAX_HISTORY:
            raise StudioError(f"the history holds {MAX_HISTORY} ops, the most a session keeps; export, then start a new seed", 409)
        base, op = self._parse(entry, replace)
        step = Step(op, self._apply(op, base))
        self.image, self.render_seconds = self._render(step)
        self.steps = self.steps[: base + 1] + [step]
        self.index = base + 1

    def undo(self) -> None:
        if self.index == 0:
            raise StudioError("nothing to undo", 409)
        self._go_to(self.index - 1)

    def redo(self) -> None:
        if self.index == len(self.steps) - 1:
            raise StudioError("nothing to redo", 409)
        self._go_to(self.index + 1)

    def state(self, preview: Latent | None = None) -> dict[str, Any]:
        """JSON-ready state of the page; of a ``preview`` latent only its seed, parts, keypoints and mask."""
        latent = self.latent if preview is None else preview
        keypoints = np.asarray(latent.keypoints[0], np.float64)
        state = {
            "seed": self.seed,
            "num_parts": latent.num_parts,
            "keypoints": [[round(float(x), 6), round(float(y), 6)] for x, y in keypoints],
            "mask": [bool(m) for m in np.asarray(latent.mask[0])],
        }
        if preview is None:
            state.update(ops=self.ops_json(), can_undo=self.index > 0, can_redo=self.index < len(self.steps) - 1)
        return state

    def _go_to(self, index: int) -> None:
        self.image, self.render_seconds = self._render(self.steps[index])
        self.index = index

    def _render(self, step: Step) -> tuple[np.ndarray, float]:
        images, seconds = self.engine.render(step.frames)
        return images[-1], seconds

    def _apply(self, op: Operation, base: int) -> Latent:
        try:
            return self.engine.apply(op, self.steps[base].latent)
        except RecipeError as error:  # checks that need the latents themselves
            raise StudioError(f"{REQUEST_SOURCE} {error}") from None

    def _parse(self, entry: Any, replace: bool) -> tuple[int, Operation]:
        """Validates ``entry`` against the latent it applies to -> (index of that step, the op)."""
        if replace and self.index == 0:
            raise StudioError("nothing to replace: no op is committed", 409)
        base = self.index - 1 if replace else self.index
        num_parts = self.steps[base].latent.num_parts
        try:
            op = parse_operation(entry, num_parts, self.engine.num_parts, position=base + 1, source=REQUEST_SOURCE)
        except RecipeError as error:
            raise StudioError(str(error)) from None
        if op.name == "interpolate" and op.fields["steps"] > MAX_FRAMES:
            raise StudioError(f"{REQUEST_SOURCE} {op.label}: steps {op.fields['steps']} is more than the studio renders ({MAX_FRAMES})")
        most = self.engine.num_parts + MAX_EXTRA_PARTS
        if parts_after(op, num_parts) > most:
            raise StudioError(f"{REQUEST_SOURCE} {op.label}: a latent in the studio has at most {most} parts")
        return base, op


class Sessions:
    """The open pages by session id, at most ``capacity`` (the least recently used is dropped); thread-safe."""

    def __init__(self, engine: Engine, capacity: int = MAX_SESSIONS):
        self.engine, self.capacity = engine, capacity
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def create(self, seed: int) -> Session:
        session = Session(self.engine, secrets.token_urlsafe(16), seed)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.capacity:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: Any) -> Session:
        with self._lock:
            session = self._sessions.get(session_id) if isinstance(session_id, str) else None
            if session is None:
                raise StudioError("unknown session (expired or never opened); reload the page", 404)
            self._sessions.move_to_end(session_id)
            return session

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)
