"""The one host training loop: every trained model (GAN, detector, ...) runs through ``run(task)``.

A model supplies a ``Task``: how to create its state, its jitted step variants, the inputs of each
step, and optional sample and evaluation hooks. The harness owns everything else
(docs/design.md §9):

- creating the state, or restoring it and the data-iterator position from the latest checkpoint;
- compiling every step variant ahead of time through ``utils.compilation``;
- the periodic actions, each due every ``N`` steps and at the last step: log (``metrics.jsonl``,
  TensorBoard, the progress line with steps/s and ETA), checkpoint, sample grid, evaluation;
- the NaN/Inf stop (the step names itself in ``state.nonfinite_step``; the last good checkpoint is
  kept), the SIGTERM/Ctrl-C save after the same finite check (SIGTERM then raises ``Preempted``), and a
  ``jax.profiler`` trace window;
- resuming from the newest checkpoint that reads back completely (damaged newer ones are set aside);
- health signals: the fraction of wall time spent waiting for the next batch.

A state is a pytree with an integer ``step`` (steps done) and ``nonfinite_step`` (−1, or the first
step whose loss was NaN/Inf); see ``train.health.mark_nonfinite``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Callable, Hashable, Iterator, Mapping

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from lkgan_jax import checkpoint
from lkgan_jax.data import skipping
from lkgan_jax.utils import visualize
from lkgan_jax.utils.compilation import compile_all
from lkgan_jax.utils.interrupts import StopRequest
from lkgan_jax.utils.metric_writer import JsonlWriter, MultiWriter, Progress, TensorBoardWriter, log_progress
from lkgan_jax.workdir import CHECKPOINT_DIR, METRICS_FILE, SAMPLES_DIR

State = Any
StepFn = Callable[..., tuple[State, Mapping[str, jax.Array]]]  # a compiled step: (state, *inputs)


class TrainingDivergedError(RuntimeError):
    """A loss became NaN/Inf; the run stopped without checkpointing the bad state."""


class Preempted(Exception):
    """SIGTERM stopped the run after checkpointing ``step``; running the same command again resumes.

    ``state`` is the saved state. The CLI exits with code 143 (as a process killed by SIGTERM would),
    so that schedulers requeue the job.
    """

    def __init__(self, step: int, state: Any):
        super().__init__(f"stopped by SIGTERM after saving a checkpoint at step {step}")
        self.step, self.state = step, state


def is_due(step: int, every: int, total: int) -> bool:
    """Whether an action repeated ``every`` steps (0: never) runs after step ``step`` of ``total``."""
    return every > 0 and (step % every == 0 or step == total)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How long a task trains and when its periodic actions run (``every = 0``: never)."""

    steps: int
    log_every: int
    checkpoint_every: int
    keep_checkpoints: int
    sample_every: int = 0
    eval_every: int = 0
    profile_steps: tuple[int, int] | None = None  # trace steps A..B (1-based, inclusive)
    fast_compile: bool = False

    @classmethod
    def from_config(cls, section: Any, prefix: str) -> "Schedule":
        """From a config section (``train``, ``detect``); one-line errors name ``prefix.field``."""
        for name in ("steps", "log_every", "checkpoint_every", "keep_checkpoints"):
            if section[name] <= 0:
                raise ValueError(f"{prefix}.{name} must be positive, got {section[name]}")
        for name in ("sample_every", "eval_every"):
            if section.get(name, 0) < 0:
                raise ValueError(f"{prefix}.{name} must be >= 0 (0: never), got {section[name]}")
        return cls(
            steps=section.steps,
            log_every=section.log_every,
            checkpoint_every=section.checkpoint_every,
            keep_checkpoints=section.keep_checkpoints,
            sample_every=section.get("sample_every", 0),
            eval_every=section.get("eval_every", 0),
            profile_steps=parse_step_range(section.get("profile_steps", ""), f"{prefix}.profile_steps"),
            fast_compile=section.get("fast_compile", False),
        )


def parse_step_range(text: str, name: str) -> tuple[int, int] | None:
    """``''`` → None; ``'A,B'`` → (A, B) with 1 <= A <= B."""
    if not str(text).strip():
        return None
    parts = str(text).split(",")
    try:
        first, last = (int(p) for p in parts)
    except ValueError:
        first = last = 0
    if len(parts) != 2 or not 1 <= first <= last:
        raise ValueError(f"{name} must look like A,B with 1 <= A <= B, got {text!r}")
    return first, last


@dataclasses.dataclass(frozen=True)
class Task:
    """What one trained model supplies to the harness; everything else is the harness's.

    ``step`` is the jitted ``step(state, *inputs, *static) -> (state, metrics)``. ``variants`` maps a
    key to the static trailing arguments of one compiled variant, and ``variant(n)`` picks the key
    that trains step ``n + 1`` (e.g. with or without a lazy penalty); one variant by default.
    ``inputs`` yields each step's arguments after the state (global arrays); ``abstract_inputs`` are
    their shapes for ahead-of-time compilation. ``data_iterator`` is the checkpointable Grain iterator
    behind ``inputs`` (saved and restored with the state), or None.
    """

    name: str  # in log lines: "GAN", "detector"
    directory: pathlib.Path  # checkpoints/, metrics.jsonl, TensorBoard events, samples/
    mesh: Mesh
    schedule: Schedule
    abstract_state: Any  # ShapeDtypeStructs of the state (``jax.eval_shape`` of its init)
    state_shardings: Any  # the state's shardings over ``mesh``; with ``abstract_state``, the restore target
    init_state: Callable[[], State]
    step: Any  # jitted, with ``.lower``
    inputs: Iterator[tuple]
    abstract_inputs: tuple
    batch_size: int
    variants: Mapping[Hashable, tuple] = dataclasses.field(default_factory=lambda: {(): ()})
    variant: Callable[[int], Hashable] = lambda step: ()
    data_iterator: Any | None = None
    parameters: Callable[[State], Mapping[str, Any]] | None = None  # named parameter trees for the start-up table
    on_start: Callable[[int | None], None] | None = None  # called with the latest checkpoint step before restoring
    sample: Callable[[State], np.ndarray] | None = None  # uint8 (H, W, 3) grid; runs on every process
    # Fields the step does not train (e.g. the EMA generator's BatchNorm statistics), derived afresh
    # from the rest of the state before every checkpoint, sample grid and evaluation; a pure function.
    refresh: Callable[[State], State] | None = None
    evaluate: Callable[[State, int], Mapping[str, float]] | None = None  # metric name -> value; every process


def run(task: Task) -> State:
    """Trains ``task`` from scratch or from its latest checkpoint to ``schedule.steps``; returns the state."""
    task.directory.mkdir(parents=True, exist_ok=True)
    manager = checkpoint.make_manager(task.directory / CHECKPOINT_DIR, task.schedule.keep_checkpoints)
    writer = None
    try:
        latest = manager.latest_step()
        if task.on_start is not None:
            task.on_start(latest)
        with jax.set_mesh(task.mesh):
            restored = None
            if latest is not None:
                target = checkpoint.abstract_target(task.abstract_state, task.state_shardings)
                restored = checkpoint.restore_newest_complete(manager, target, task.data_iterator, log=log_progress)
            if restored is None:
                state = task.init_state()
            else:
                state, step = restored
                log_progress(f"{task.name}: resumed from {manager.directory} at step {step}")
            if int(jax.device_get(state.step)) >= task.schedule.steps:
                log_progress(f"{task.name}: already trained to step {int(state.step)} (steps={task.schedule.steps}); nothing to do")
                return state
            _log_parameters(task, state)
            jsonl = JsonlWriter(task.directory / METRICS_FILE, resumed_step=int(jax.device_get(state.step)))
            writer = MultiWriter([jsonl, TensorBoardWriter(task.directory)])
            return _Loop(task, manager, writer).train(state)
    finally:
        try:
            manager.wait_until_finished()  # a pending asynchronous save
        finally:
            manager.close()  # even when that save failed: no Orbax thread outlives the run
            if writer is not None:
                writer.close()


def _log_parameters(task: Task, state: State) -> None:
    if task.parameters is None or jax.process_index() != 0:
        return
    from clu import parameter_overview  # TensorFlow-free part of clu

    for name, params in task.parameters(state).items():
        log_progress(f"{task.name}: parameters of {name}\n{parameter_overview.get_parameter_overview(params, include_stats=False)}")


class _Loop:
    """One training session of a task: the step loop and its periodic actions."""

    def __init__(self, task: Task, manager: Any, writer: MultiWriter):
        self.task, self.schedule, self.manager, self.writer = task, task.schedule, manager, writer
        self.tracing = False

    def train(self, state: State) -> State:
        task, s = self.task, self.schedule
        step = int(jax.device_get(state.step))
        position, fetched_for = None, -1
        metrics, logged_step, progress, waited = None, step, None, 0.0
        try:
            with StopRequest() as stop:
                steps = self._compile(state)
                progress = Progress(step, s.steps)
                waited = 0.0
                while step < s.steps and not stop.requested:
                    self._maybe_start_trace(step)
                    if task.data_iterator is not None:
                        position = task.data_iterator.get_state()  # where to rewind if this step does not complete
                    fetched_for = step
                    start = time.perf_counter()
                    inputs = next(task.inputs)
                    waited += time.perf_counter() - start
                    state, metrics = steps[task.variant(step)](state, *inputs)
                    step += 1
                    self._maybe_stop_trace(step, state)
                    if is_due(step, s.log_every, s.steps):
                        self._check_finite(state)
                        self._log(step, metrics, progress, waited)
                        waited, logged_step = 0.0, step
                    save_due = is_due(step, s.checkpoint_every, s.steps)
                    sample_due = task.sample is not None and is_due(step, s.sample_every, s.steps)
                    evaluate_due = task.evaluate is not None and is_due(step, s.eval_every, s.steps)
                    if save_due or sample_due or evaluate_due:
                        state = self._refreshed(state)
                    if save_due:
                        self._check_finite(state)
                        checkpoint.save(self.manager, step, state, task.data_iterator)
                    if sample_due:
                        progress.exclude(self._sample(step, state))
                    if evaluate_due:
                        progress.exclude(self._evaluate(step, state))
                if step >= s.steps and task.data_iterator is not None and skipping.total_skipped():
                    log_progress(f"{task.name}: skipped {skipping.total_skipped()} unreadable file(s) or record(s) in total "
                                 "(data_skipped_files in metrics.jsonl)")
                if stop.requested and step < s.steps:
                    if metrics is not None and logged_step != step:
                        self._log(step, metrics, progress, waited)  # the saved step's row is never lost
                    if self._save_on_stop(state, step, "SIGTERM"):
                        raise Preempted(step, state)
        except KeyboardInterrupt:
            done = int(jax.device_get(state.step))
            if done == fetched_for and task.data_iterator is not None:
                task.data_iterator.set_state(position)  # the inputs fetched for step `done` were not trained on
            if metrics is not None and logged_step != done == step:
                self._log(done, metrics, progress, waited)
            self._save_on_stop(state, done, "interrupt")
            raise
        finally:
            if self.tracing:
                jax.profiler.stop_trace()
        return state

    def _compile(self, state: State) -> dict[Hashable, StepFn]:
        """AOT-compiles every step variant, side by side (keeps compilation out of steps/s)."""
        start = time.perf_counter()
        task = self.task
        lowered = {key: task.step.lower(state, *task.abstract_inputs, *static) for key, static in task.variants.items()}
        compiled = compile_all(lowered, self.schedule.fast_compile)
        log_progress(f"{self.task.name}: compiled the step in {time.perf_counter() - start:.1f}s")
        return compiled

    def _check_finite(self, state: State) -> None:
        bad_step = int(jax.device_get(state.nonfinite_step))
        if bad_step >= 0:
            good = self.manager.latest_step()
            kept = f"last good checkpoint: step {good}" if good is not None else "no checkpoint was written"
            raise TrainingDivergedError(f"loss became NaN/Inf at step {bad_step + 1}; training stopped ({kept})")

    def _log(self, step: int, metrics: Mapping[str, jax.Array], progress: Progress, waited: float) -> None:
        """One row of metrics.jsonl / TensorBoard and a progress line; ``waited``: seconds spent waiting for data."""
        steps_per_s, seconds = progress.update(step)
        wait_fraction = waited / seconds
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        rates = {
            "steps_per_s": steps_per_s,
            "images_per_s": steps_per_s * self.task.batch_size,
            "data_wait_fraction": min(1.0, wait_fraction),
        }
        if self.task.data_iterator is not None:
            rates["data_skipped_files"] = skipping.total_skipped()  # distinct unreadable items so far, this process
        self.writer.write_scalars(step, {**scalars, **rates}, group="train")
        self.writer.flush()
        losses = {k: v for k, v in scalars.items() if "/" not in k}  # norms and other groups: in the logs only
        log_progress(f"{self.task.name} {progress.line(step, steps_per_s, losses)}")

    def _sample(self, step: int, state: State) -> float:
        start = time.perf_counter()
        grid = self.task.sample(state)
        if jax.process_index() == 0:
            (self.task.directory / SAMPLES_DIR).mkdir(exist_ok=True)
            visualize.save_png(str(self.task.directory / SAMPLES_DIR / f"step_{step:07d}.png"), grid)
            self.writer.write_images(step, {"samples": grid})
        return time.perf_counter() - start

    def _evaluate(self, step: int, state: State) -> float:
        start = time.perf_counter()
        values = dict(self.task.evaluate(state, step))
        seconds = time.perf_counter() - start
        self.writer.write_scalars(step, {**values, "seconds/eval": round(seconds, 3)}, group="eval")
        self.writer.flush()
        shown = " ".join(f"{k} {v:.4g}" for k, v in values.items() if not k.startswith("seconds/"))
        log_progress(f"{self.task.name} eval at step {step}: {shown} ({seconds:.1f}s)")
        return seconds

    def _maybe_start_trace(self, step: int) -> None:
        window = self.schedule.profile_steps
        if window is not None and step + 1 == window[0]:
            jax.profiler.start_trace(str(self.task.directory))
            self.tracing = True

    def _maybe_stop_trace(self, step: int, state: State) -> None:
        window = self.schedule.profile_steps
        if self.tracing and step == window[1]:
            jax.block_until_ready(state)
            jax.profiler.stop_trace()
            self.tracing = False
            log_progress(f"{self.task.name}: wrote a profile of steps {window[0]}..{window[1]} to {self.task.directory}/plugins/profile")

    def _save_on_stop(self, state: State, step: int, reason: str) -> bool:
        """Checkpoints the current step (if finite and not saved yet) before leaving the loop → whether it is saved."""
        if self.manager.latest_step() == step:
            return True
        try:
            self._check_finite(state)
        except TrainingDivergedError as error:
            logging.warning("%s: not saving on %s", error, reason)
            return False
        checkpoint.save(self.manager, step, self._refreshed(state), self.task.data_iterator)
        log_progress(f"{reason}: saved checkpoint at step {step}")
        return True

    def _refreshed(self, state: State) -> State:
        return state if self.task.refresh is None else self.task.refresh(state)
