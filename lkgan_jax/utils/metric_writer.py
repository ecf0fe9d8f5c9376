"""Metric logging without TensorFlow: JSON lines, TensorBoard event files, a progress line with ETA.

Every writer has the same methods (named like clu's metric writers): ``write_scalars(step, scalars,
group)``, ``write_images(step, images)``, ``flush()``, ``close()``. Only process 0 writes.
``metrics.jsonl`` gets one JSON object per logged step (appended on resume); TensorBoard event
files are written with tensorboardX, a small protobuf-only writer, so no TensorFlow is installed.
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from absl import logging

from lkgan_jax.utils import files


def format_duration(seconds: float) -> str:
    """12.3 → '12s', 754 → '12m34s', 7384 → '2h03m'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class JsonlWriter:
    """Appends one JSON object per call to ``path``: ``{"step": n, key: value, ...}`` (process 0 only).

    Only numbers are written; the ``group`` of a call is not recorded (keys are what ``lkgan evaluate``
    and the step call them). A run that starts at ``resumed_step`` first drops the rows of later steps
    (they will run again; so each step has one training row) and an unterminated last line (a crash
    mid-write), rewriting the file atomically only when something is dropped.
    """

    def __init__(self, path: str | pathlib.Path, resumed_step: int = 0):
        self.path = pathlib.Path(path)
        self.enabled = jax.process_index() == 0
        if self.enabled and self.path.exists():
            self._drop_rows_after(resumed_step)

    def _drop_rows_after(self, step: int) -> None:
        text = self.path.read_text()
        lines = text.split("\n")
        complete = lines[:-1]  # the part after the last newline is empty, or a partial row
        kept = [line for line in complete if line.strip() and _row_step(line) is not None and _row_step(line) <= step]
        if len(kept) != len(lines) - 1 or lines[-1]:
            rows = "".join(line + "\n" for line in kept).encode()
            files.write_atomically(self.path, lambda file: file.write(rows))

    def write_scalars(self, step: int, scalars: Mapping[str, float], group: str = "train") -> None:
        del group
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        del step, images  # pictures are PNG files beside the log

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _row_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


class TensorBoardWriter:
    """TensorBoard event files in ``logdir`` through tensorboardX (no TensorFlow; process 0 only).

    Scalars get the tag ``group/key`` (``train/d_loss``, ``eval/cpd``); images are uint8 (H, W, 3).
    """

    def __init__(self, logdir: str | pathlib.Path):
        self.enabled = jax.process_index() == 0
        if self.enabled:
            from tensorboardX import SummaryWriter  # imported here: only runs that write events need it

            self._writer = SummaryWriter(logdir=str(logdir), flush_secs=30)

    def write_scalars(self, step: int, scalars: Mapping[str, float], group: str = "train") -> None:
        if self.enabled:
            for key, value in scalars.items():
                self._writer.add_scalar(f"{group}/{key}", float(value), global_step=int(step))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        if self.enabled:
            for tag, image in images.items():
                self._writer.add_image(tag, np.asarray(image, np.uint8), global_step=int(step), dataformats="HWC")

    def flush(self) -> None:
        if self.enabled:
            self._writer.flush()

    def close(self) -> None:
        if self.enabled:
            self._writer.close()


class MultiWriter:
    """Sends every call to each of ``writers``."""

    def __init__(self, writers: Sequence[Any]):
        self.writers = list(writers)

    def write_scalars(self, step: int, scalars: Mapping[str, float], group: str = "train") -> None:
        for writer in self.writers:
            writer.write_scalars(step, scalars, group)

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        for writer in self.writers:
            writer.write_images(step, images)

    def flush(self) -> None:
        for writer in self.writers:
            writer.flush()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class Progress:
    """Steps/s over the last logging window and the ETA of the run."""

    def __init__(self, start_step: int, total_steps: int):
        self.total_steps = total_steps
        self._last_step = start_step
        self._last_time = time.perf_counter()

    def reset(self, step: int) -> None:
        """Restarts the window (e.g. after compilation or a checkpoint save)."""
        self._last_step, self._last_time = step, time.perf_counter()

    def exclude(self, seconds: float) -> None:
        """Leaves ``seconds`` (e.g. an evaluation) out of the current window's steps/s."""
        self._last_time += seconds

    def update(self, step: int) -> tuple[float, float]:
        """(steps/s, seconds) of the window since the last update."""
        now = time.perf_counter()
        seconds = max(now - self._last_time, 1e-9)
        rate = (step - self._last_step) / seconds
        self._last_step, self._last_time = step, now
        return rate, seconds

    def line(self, step: int, steps_per_s: float, scalars: Mapping[str, float]) -> str:
        eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else math.inf
        values = " ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        return f"step {step}/{self.total_steps} | {values} | {steps_per_s:.2f} steps/s | ETA {format_duration(eta)}"


def log_progress(text: str) -> None:
    if jax.process_index() == 0:
        logging.info("%s", text)
