"""The shared training harness: schedule, SIGTERM, NaN and exact resume for the GAN and the detector,
evaluation during training, TensorBoard event files, profiling, and bad evaluation settings."""

import json
import os
import shutil
import signal

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.config_loading import load_config
from lkgan_jax.detection import train as detection_train
from lkgan_jax.detection.inference import load_detector
from lkgan_jax.pretrained import load_generator
from lkgan_jax.train import harness, loop
from lkgan_jax.utils.compilation import compile_all
from lkgan_jax.utils.metric_writer import JsonlWriter
from lkgan_jax.workdir import METRICS_FILE

TINY = "configs/tiny.py"


def _rows(directory):
    return [json.loads(line) for line in (directory / METRICS_FILE).read_text().splitlines()]


def _checkpoints(directory):
    return sorted(int(p.name) for p in (directory / "checkpoints").iterdir() if p.name.isdigit())


def _assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6), a, b)


# --- schedule -----------------------------------------------------------------------------------------

def test_actions_are_due_every_n_steps_and_at_the_last_step():
    assert [s for s in range(1, 11) if harness.is_due(s, 4, 10)] == [4, 8, 10]
    assert [s for s in range(1, 11) if harness.is_due(s, 0, 10)] == []  # 0: never
    assert harness.parse_step_range("", "x") is None
    assert harness.parse_step_range("3,5", "x") == (3, 5)
    for bad in ("5,3", "0,2", "3", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="train.profile_steps must look like A,B"):
            harness.parse_step_range(bad, "train.profile_steps")


def test_compile_all_compiles_each_variant_side_by_side_under_its_key():
    step = jax.jit(lambda x, scale: x * scale + 1.0, static_argnums=1)
    x = jax.numpy.arange(4.0)
    compiled = compile_all({key: step.lower(x, scale) for key, scale in (("a", 2.0), ("b", 3.0), ("c", -1.0))}, fast=True)
    assert list(compiled) == ["a", "b", "c"]
    for key, scale in (("a", 2.0), ("b", 3.0), ("c", -1.0)):
        np.testing.assert_array_equal(compiled[key](x), np.arange(4.0) * scale + 1.0)


def test_schedule_rejects_bad_fields_by_name():
    config = load_config(TINY)
    schedule = harness.Schedule.from_config(config.train, "train")
    assert (schedule.steps, schedule.log_every, schedule.eval_every, schedule.profile_steps) == (10, 2, 0, None)
    config.train.checkpoint_every = 0
    with pytest.raises(ValueError, match="train.checkpoint_every must be positive, got 0"):
        harness.Schedule.from_config(config.train, "train")


# --- the GAN on the harness ---------------------------------------------------------------------------

def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, monkeypatch):
    config = load_config(TINY)
    real_make_global_batch = loop.pipeline.make_global_batch
    calls = {"n": 0}

    def terminate_during_step_seven(batch, sharding):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)  # a preemption notice: finish the step, save, leave
        return real_make_global_batch(batch, sharding)

    workdir = tmp_path / "preempted"
    with monkeypatch.context() as patch:
        patch.setattr(loop.pipeline, "make_global_batch", terminate_during_step_seven)
        with pytest.raises(harness.Preempted, match="at step 7") as preempted:
            loop.train_and_evaluate(config, workdir)
    stopped = preempted.value.state
    assert int(stopped.step) == 7 and _checkpoints(workdir) == [5, 7]
    assert [r["step"] for r in _rows(workdir) if "g_loss" in r] == [2, 4, 6, 7]  # the saved step's row is written
    restored = load_generator(workdir, 7)  # the SIGTERM save holds the state after step 7
    _assert_trees_equal(restored.variables["params"], stopped.ema_params)
    assert int(loop.train_and_evaluate(config, workdir).step) == 10  # exact resume: test_train_e2e.py
    assert [r["step"] for r in _rows(workdir) if "g_loss" in r] == [2, 4, 6, 7, 8, 10]  # one row per step


def test_metrics_log_drops_rows_after_the_resumed_step_and_a_partial_line(tmp_path):
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 2, "a": 1}\n{"step": 4, "a": 2}\n{"step": 6, "a": 3}\n{"step": 7, "a"')
    writer = JsonlWriter(path, resumed_step=4)
    writer.write_scalars(6, {"a": 9.0})
    assert _rows(tmp_path) == [{"step": 2, "a": 1}, {"step": 4, "a": 2}, {"step": 6, "a": 9.0}]
    before = path.stat().st_mtime_ns
    JsonlWriter(path, resumed_step=6)  # nothing to drop: the file is not rewritten
    assert path.stat().st_mtime_ns == before


def test_evaluation_tensorboard_and_profile_during_training(tmp_path):
    workdir = tmp_path / "run"
    overrides = ["--config.train.eval_every=5", "--config.train.eval_metrics=cpd,locality", "--config.train.profile_steps=3,4"]
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", *overrides]) == 0

    rows = _rows(workdir)
    evals = [r for r in rows if "cpd" in r]
    assert [r["step"] for r in evals] == [5, 10]
    for row in evals:
        assert 0 <= row["cpd"] <= 1 and row["seconds/cpd"] > 0 and row["seconds/eval"] >= row["seconds/cpd"]
        assert np.isfinite(row["locality/swap_effect"]) and "locality/move_follow" not in row  # no detector yet
    train_rows = [r for r in rows if "d_loss" in r]
    assert [r["step"] for r in train_rows] == [2, 4, 6, 8, 10]
    for row in train_rows:
        for key in ("grad_norm/g", "grad_norm/d", "update_norm/g", "update_norm/d"):
            assert np.isfinite(row[key]) and row[key] > 0, key
        assert 0 <= row["data_wait_fraction"] <= 1

    events = EventAccumulator(str(workdir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("train/d_loss", "train/g_loss", "train/grad_norm/g", "train/update_norm/d", "train/steps_per_s",
                "train/data_wait_fraction", "eval/cpd", "eval/seconds/cpd"):
        assert tag in tags["scalars"], tag
    assert [e.step for e in events.Scalars("train/d_loss")] == [2, 4, 6, 8, 10]
    np.testing.assert_allclose([e.value for e in events.Scalars("eval/cpd")], [r["cpd"] for r in evals], rtol=1e-6)
    assert tags["images"] == ["samples"]
    grids = events.Images("samples")
    assert [g.step for g in grids] == [5, 10] and grids[-1].width > 0 and grids[-1].height > 0
    assert list((workdir / "plugins" / "profile").glob("*/*.xplane.pb"))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--config.train.eval_every=5", "--config.train.eval_metrics=landmarks"], "train.eval_metrics: landmarks cannot run here"),
        (["--config.train.eval_every=5", "--config.train.eval_metrics=fid"], "needs eval.inception_weights"),
        (["--config.train.eval_every=5", "--config.train.eval_metrics=cpd,sharpness"], "unknown metric sharpness"),
        (["--config.train.profile_steps=4"], "train.profile_steps must look like A,B"),
        (["--config.train.eval_every=-1"], "train.eval_every must be >= 0"),
    ],
)
def test_bad_evaluation_settings_fail_before_training(tmp_path, capsys, overrides, message):
    workdir = tmp_path / "run"
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", *overrides]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lkgan: error: ") and message in err[0], err
    assert not (workdir / "checkpoints").exists() or not _checkpoints(workdir)


# --- the detector on the harness ----------------------------------------------------------------------

@pytest.fixture
def gan_run(tiny_run, tmp_path):
    """A private copy of the tiny GAN run, so each detector test starts without a detector."""
    workdir = tmp_path / "gan"
    shutil.copytree(tiny_run[0], workdir, ignore=shutil.ignore_patterns("detector"))
    return workdir


def _detect_config(workdir, *overrides):
    from lkgan_jax.config_loading import config_for_run
    from lkgan_jax.workdir import read_config

    return config_for_run(read_config(workdir), ("detect", "eval"), None, list(overrides))


def _with_inputs_patched(monkeypatch, at_call, change):
    """Makes the detector's input stream call ``change(inputs)`` when the inputs of step ``at_call`` are fetched."""
    real = detection_train.generator_inputs

    def patched(g_variables):
        for n, inputs in enumerate(real(g_variables), start=1):
            yield change(inputs) if n == at_call else inputs

    monkeypatch.setattr(detection_train, "generator_inputs", patched)


def _interrupt(inputs):
    raise KeyboardInterrupt


def test_interrupted_detector_resumes_to_the_same_result(gan_run, tmp_path, monkeypatch):
    config = _detect_config(gan_run)
    reference_run = tmp_path / "reference"
    shutil.copytree(gan_run, reference_run)
    reference = detection_train.train_detector(reference_run, config)

    with monkeypatch.context() as patch:
        _with_inputs_patched(patch, 4, _interrupt)
        with pytest.raises(KeyboardInterrupt):
            detection_train.train_detector(gan_run, config)
    assert _checkpoints(gan_run / "detector") == [2, 3]  # the regular checkpoint and the one saved on interrupt
    resumed = detection_train.train_detector(gan_run, config)
    assert int(resumed.step) == int(reference.step) == 4
    _assert_trees_equal((reference.params, reference.batch_stats, reference.opt_state),
                        (resumed.params, resumed.batch_stats, resumed.opt_state))
    ref_rows, rows = _rows(reference_run / "detector"), _rows(gan_run / "detector")
    assert rows[-1]["step"] == 4 and rows[-1]["loss"] == pytest.approx(ref_rows[-1]["loss"], rel=1e-6)


def test_sigterm_saves_the_detector(gan_run, monkeypatch):
    def terminate(inputs):
        os.kill(os.getpid(), signal.SIGTERM)
        return inputs

    _with_inputs_patched(monkeypatch, 3, terminate)
    with pytest.raises(harness.Preempted) as preempted:
        detection_train.train_detector(gan_run, _detect_config(gan_run))
    assert int(preempted.value.state.step) == 3 and _checkpoints(gan_run / "detector") == [2, 3]


def test_nan_stops_the_detector_and_keeps_its_previous_checkpoint(gan_run, monkeypatch):
    _with_inputs_patched(monkeypatch, 3, lambda inputs: jax.tree.map(lambda x: x * np.nan, inputs))
    with pytest.raises(harness.TrainingDivergedError, match=r"loss became NaN/Inf at step 3; training stopped \(last good checkpoint: step 2\)"):
        detection_train.train_detector(gan_run, _detect_config(gan_run))
    assert _checkpoints(gan_run / "detector") == [2]
    detector, _, _ = load_detector(gan_run)
    assert detector.step == 2


def test_detector_evaluates_landmarks_while_it_trains(gan_run):
    overrides = ["--config.detect.eval_every=2", "--config.detect.eval_metrics=landmarks,locality"]
    detection_train.train_detector(gan_run, _detect_config(gan_run, *overrides))
    evals = [r for r in _rows(gan_run / "detector") if "landmarks/error_iod_pct" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for row in evals:
        assert row["landmarks/error_iod_pct"] > 0 and row["landmarks/mean_landmarks/error_iod_pct"] > 0
        assert "landmarks/num_train" not in row  # provenance stays out of the metric rows
        assert np.isfinite(row["locality/move_follow"])  # from the detector being trained
    events = EventAccumulator(str(gan_run / "detector"))
    events.Reload()
    assert {"train/loss", "train/grad_norm/detector", "eval/landmarks/error_iod_pct"} <= set(events.Tags()["scalars"])
