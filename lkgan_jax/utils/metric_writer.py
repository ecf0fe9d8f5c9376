"""Metric logging without TensorFlow: JSON lines, a progress line with steps/s and ETA.

Only process 0 writes. ``metrics.jsonl`` gets one JSON object per logged step (appended on resume).
"""

from __future__ import annotations

import json
import math
import pathlib
import time
from typing import Mapping

import jax
from absl import logging


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
    """Appends one JSON object per call to ``path`` (process 0 only)."""

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.enabled = jax.process_index() == 0

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


class Progress:
    """Steps/s over the last logging window and the ETA of the run."""

    def __init__(self, start_step: int, total_steps: int):
        self.total_steps = total_steps
        self._last_step = start_step
        self._last_time = time.perf_counter()

    def reset(self, step: int) -> None:
        """Restarts the window (e.g. after compilation or a checkpoint save)."""
        self._last_step, self._last_time = step, time.perf_counter()

    def update(self, step: int) -> float:
        """Steps/s since the last update."""
        now = time.perf_counter()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        return rate

    def line(self, step: int, steps_per_s: float, scalars: Mapping[str, float]) -> str:
        eta = (self.total_steps - step) / steps_per_s if steps_per_s > 0 else math.inf
        values = " ".join(f"{k} {v:.4g}" for k, v in scalars.items())
        return f"step {step}/{self.total_steps} | {values} | {steps_per_s:.2f} steps/s | ETA {format_duration(eta)}"


def log_progress(text: str) -> None:
    if jax.process_index() == 0:
        logging.info("%s", text)
