"""End-to-end runs of the tiny config: CLI smoke run, interrupt/resume, divergence, bad input."""

import json
import pathlib

import jax
import numpy as np
import pytest
from multiprocess_launch import launch
from PIL import Image

from lkgan_jax.checkpoint import CheckpointMismatchError
from lkgan_jax.cli.main import main
from lkgan_jax.config_loading import load_config
from lkgan_jax.data.export import export_procedural
from lkgan_jax.pretrained import load_generator
from lkgan_jax.train import loop
from lkgan_jax.workdir import METRICS_FILE

TINY = "configs/tiny.py"


def _metrics(workdir: pathlib.Path) -> dict[int, dict]:
    """step → the union of that step's rows in metrics.jsonl (training and evaluation write separate rows)."""
    merged: dict[int, dict] = {}
    for record in map(json.loads, (workdir / METRICS_FILE).read_text().splitlines()):
        merged.setdefault(record["step"], {}).update(record)
    return merged


def _assert_states_equal(a, b):
    for name in ("g_params", "g_stats", "ema_params", "ema_stats", "d_params", "g_opt", "d_opt"):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6), getattr(a, name), getattr(b, name))
    assert int(a.step) == int(b.step)


def test_cli_smoke_run_writes_the_workdir(tmp_path):
    workdir = tmp_path / "run"
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=6", "--config.train.checkpoint_every=3"]) == 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["train"]["steps"] == 6 and config["model"]["num_keypoints"] == 4
    metrics = _metrics(workdir)
    assert sorted(metrics) == [2, 4, 6]
    # reg_every 4: the penalty trains step 4 (index 3), a logged step.
    assert metrics[4]["grad_penalty"] > 0 and "grad_penalty" not in metrics[2] and "grad_penalty" not in metrics[6]
    for record in metrics.values():
        assert {"step", "d_loss", "g_loss", "steps_per_s"} <= set(record)
        assert np.isfinite(record["d_loss"]) and np.isfinite(record["g_loss"]) and record["steps_per_s"] > 0
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]
    grids = sorted((workdir / "samples").glob("step_*.png"))
    assert [g.name for g in grids] == ["step_0000005.png", "step_0000006.png"]
    grid = np.asarray(Image.open(grids[-1]))
    assert grid.ndim == 3 and grid.shape[0] >= 2 * 32 * 2  # 2×2 tiles, upscaled ×2


@pytest.mark.slow
def test_default_config_smoke_run_trains_evaluates_and_edits(tmp_path):
    """The README's main job, shortened to 4 steps, as a user runs it (its own process, one CPU device):
    every default option (evaluation included) runs."""
    workdir, edits = tmp_path / "run", tmp_path / "edits"
    # reg_every 2: the logged steps 2 and 4 are penalty steps, which carry the per-term gradient norms.
    schedule = [f"--config.train.{field}=2" for field in ("log_every", "checkpoint_every", "sample_every", "eval_every", "reg_every")]
    def one_cpu_device(process):
        return {"JAX_NUM_CPU_DEVICES": "1"}

    launch(lambda process: ["train", "--workdir", str(workdir), "--config=configs/default.py", "--config.train.steps=4", *schedule,
                            "--config.eval.judge_num_samples=64"], 1, one_cpu_device)
    metrics = _metrics(workdir)
    assert sorted(metrics) == [2, 4]
    for key in ("d_loss", "g_loss", "cpd", "judge_fd", "judge_precision", "swd_mean", "grad_norm/d/adversarial", "grad_norm/d/penalty",
                "grad_norm/g/recovery", "d_keypoint_recovery_jittered", "g_keypoint_recovery_jittered"):
        assert np.isfinite(metrics[4][key]), key
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps([{"op": "move", "part": 4, "offset": [0.2, 0.0]}, {"op": "swap_parts", "parts": [0, 1], "from_seed": 7}]))
    launch(lambda process: ["edit", "--workdir", str(workdir), "--seed", "2", "--ops", str(ops), "--out", str(edits)], 1, one_cpu_device)
    strip = np.asarray(Image.open(edits / "strip.png"))
    assert strip.ndim == 3 and np.ptp(strip) > 0


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """The tiny config's uninterrupted run: its workdir and final state."""
    workdir = tmp_path_factory.mktemp("reference") / "run"
    return workdir, loop.train_and_evaluate(load_config(TINY), workdir)


def test_interrupted_run_resumes_to_the_same_result(tiny_reference, tmp_path, monkeypatch):
    config = load_config(TINY)
    reference_dir, reference = tiny_reference

    calls = {"n": 0}
    real_make_global_batch = loop.pipeline.make_global_batch

    def interrupt_at_step_seven(batch, sharding):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real_make_global_batch(batch, sharding)

    workdir = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        patch.setattr(loop.pipeline, "make_global_batch", interrupt_at_step_seven)
        with pytest.raises(KeyboardInterrupt):
            loop.train_and_evaluate(config, workdir)
    saved = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert saved == [5, 7]  # the regular checkpoint and the one saved on interrupt
    resumed = loop.train_and_evaluate(config, workdir)
    _assert_states_equal(reference, resumed)
    ref_metrics, got_metrics = _metrics(reference_dir), _metrics(workdir)
    for step in (8, 10):
        for key in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert got_metrics[step][key] == pytest.approx(ref_metrics[step][key], rel=1e-6, abs=1e-7)


def test_crashed_run_resumes_from_last_checkpoint(tiny_reference, tmp_path, monkeypatch):
    config = load_config(TINY)
    _, reference = tiny_reference
    real_make_global_batch = loop.pipeline.make_global_batch
    calls = {"n": 0}

    def crash_at_step_seven(batch, sharding):
        calls["n"] += 1
        if calls["n"] == 8:
            raise RuntimeError("simulated crash")
        return real_make_global_batch(batch, sharding)

    workdir = tmp_path / "crashed"
    with monkeypatch.context() as patch:
        patch.setattr(loop.pipeline, "make_global_batch", crash_at_step_seven)
        with pytest.raises(RuntimeError, match="simulated crash"):
            loop.train_and_evaluate(config, workdir)
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [5]
    _assert_states_equal(reference, loop.train_and_evaluate(config, workdir))


def test_nan_loss_stops_with_clear_message_and_keeps_good_checkpoint(tmp_path, monkeypatch, capsys):
    real_make_global_batch = loop.pipeline.make_global_batch
    calls = {"n": 0}

    def poison_at_step_seven(batch, sharding):
        calls["n"] += 1
        if calls["n"] == 7:
            batch = {"image": np.full_like(batch["image"], np.nan)}
        return real_make_global_batch(batch, sharding)

    monkeypatch.setattr(loop.pipeline, "make_global_batch", poison_at_step_seven)
    workdir = tmp_path / "nan"
    code = main(["train", "--workdir", str(workdir), f"--config={TINY}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3
    assert err[-1] == "lkgan: error: loss became NaN/Inf at step 7; training stopped (last good checkpoint: step 5)"
    assert sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()) == [5]
    generator = load_generator(workdir)  # the last good checkpoint still loads and renders
    assert generator.step == 5
    assert np.all(np.isfinite(np.asarray(generator.render(generator.latent_from_seeds([0, 1])))))


def test_image_folder_with_corrupt_file_trains_and_reports_the_skip(tmp_path, caplog):
    folder = tmp_path / "faces"
    export_procedural(folder, num=12, resolution=40)
    (folder / "images" / "broken.png").write_bytes(b"not a png at all")
    workdir = tmp_path / "run"
    with caplog.at_level("INFO"):
        code = main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.data.source=folder",
                     f"--config.data.path={folder}", "--config.train.steps=4"])
    assert code == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("broken.png" in m for m in messages)
    assert any("unreadable file(s) or record(s) in total" in m for m in messages)  # the total, at the end of the run
    rows = _metrics(workdir)
    assert sorted(rows) == [2, 4]
    assert all(row["data_skipped_files"] >= 1 for row in rows.values())


def test_resume_with_another_model_config_is_refused(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=2", "--config.train.checkpoint_every=2"]) == 0
    capsys.readouterr()
    code = main(["train", "--workdir", str(workdir), f"--config={TINY}", "--config.train.steps=4", "--config.model.embed_dim=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "another model config" in err[0] and "model.embed_dim" in err[0]
    with pytest.raises(CheckpointMismatchError):
        config = load_config(TINY, ["--config.model.embed_dim=16"])
        loop.train_and_evaluate(config, workdir)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config=configs/nope.py"], "config file not found: configs/nope.py"),
        (["--config.train.stepz=3"], "stepz"),
        (["--config.data.source=webdataset"], "Unknown data source 'webdataset'"),
        (["--config.data.source=folder", "--config.data.path=/does/not/exist"], "/does/not/exist"),
        (["--config.train.batch_size=12"], "not divisible by the 8 devices"),
        (["--config.model.num_keypoints=0"], "model.num_keypoints must be at least 1, got 0"),
        (["--config.model.part_size_range=0.5"], "model.part_size_range must be at least 1"),
        (["--config=configs/tiny.py:bogusvariant"], "unknown config variant 'bogusvariant'; known: paper"),
        (["--config.data.source=folder"], "data.source=folder needs data.path"),
        (["--config.data.resolution=33"], "data.resolution=33, but model.g_channels has 4 entries: a generator of 32-px images only"),
    ],
)
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, message):
    code = main(["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lkgan: error: ") and message in err[0], err
    assert "Traceback" not in err[0] and "File " not in err[0], err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--workdir", "{tmp}/run", "--config={tmp}/syntax.py"], "has a syntax error at line 1"),
        (["train", "--workdir", "{tmp}/run", "--config={tmp}/no_get_config.py"], "defines no get_config() function"),
        (["train", "--workdir", "{tmp}/a_file", f"--config={TINY}"], "--workdir {tmp}/a_file is a file, not a directory"),
        (["train", "--workdir", "{tmp}/a_file/run", f"--config={TINY}"], "--workdir {tmp}/a_file/run: cannot create the directory ({tmp}/a_file is a file)"),
        (["generate", "--workdir", "{tmp}/no_run", "--num", "1", "--seed", "0", "--out", "{tmp}/a_file/out"], "--out {tmp}/a_file/out: cannot create the directory ({tmp}/a_file is a file)"),
        (["prepare", "procedural", "--out", "{tmp}/a_file", "--num", "1"], "--out {tmp}/a_file is a file, not a directory"),
        (["train", "--workdir", "/sys/lkgan_no_permission", f"--config={TINY}"], "/sys/lkgan_no_permission"),  # EPERM, even as root
        (["train", "--workdir", "{tmp}/run", f"--config={TINY}", "--config.train.steps=-1"], "train.steps must be positive, got -1"),
        (["train", "--workdir", "{tmp}/run", f"--config={TINY}", "--config.seed=-1"], "seed must lie in 0..4294967295, got -1"),
        (["judge", "train", "--workdir", "{tmp}/a_file", f"--config={TINY}"], "--workdir {tmp}/a_file is a file, not a directory"),
        (["evaluate", "fid", "--real", "{tmp}", "--fake", "{tmp}", "--out", "{tmp}"], "--out {tmp} is a directory, not a file"),
        (["evaluate", "fid", "--real", "{tmp}", "--fake", "{tmp}", "--step", "3", "--out", "{tmp}/e.json"], "--out, not --step"),
        (["evaluate", "fid", "--real", "{tmp}", "--fake", "{tmp}", "--batch-size", "0", "--out", "{tmp}/e.json"], "--batch-size must be positive, got 0"),
        (["generate", "--workdir", "{tmp}/no_run", "--num", "abc", "--out", "{tmp}/out"], "generate: argument --num: invalid int value: 'abc'"),
    ],
)
def test_bad_files_and_directories_give_one_line_errors(tmp_path, capsys, argv, message):
    (tmp_path / "syntax.py").write_text("def get_config(:\n    pass\n")
    (tmp_path / "no_get_config.py").write_text("import ml_collections\nX = 1\n")
    (tmp_path / "a_file").write_text("keep me")
    code = main([arg.format(tmp=tmp_path) for arg in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lkgan: error: ") and message.format(tmp=tmp_path) in err[0], err
    assert (tmp_path / "a_file").read_text() == "keep me" and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["evaluate", "--workdir", "{run}", "--metrics", "cpd", "--num-samples", "-5", "--out", "{tmp}/e.json"], "--num-samples must be positive, got -5"),
        (["edit", "--workdir", "{run}", "--seed", "0", "--ops", "{tmp}/ops.json", "--latents", "{tmp}/ops.json", "--out", "{tmp}/e"],
         "--latents {tmp}/ops.json is not a .npz file"),
        (["edit", "--workdir", "{run}", "--seed", "-1", "--ops", "{tmp}/ops.json", "--out", "{tmp}/e"], "--seed -1: seeds must lie in 0..4294967295"),
        (["detect", "--workdir", "{tmp}/detector"], "{tmp}/detector is not a training work dir (config.json has no model or data section)"),
        (["evaluate", "--workdir", "{run}", "--metrics", "cpd", "--batch-size", "4", "--out", "{tmp}/e.json"],
         "--batch-size is only for `lkgan evaluate fid`"),
        (["evaluate", "--workdir", "{run}", "--metrics", "cpd", "--config.eval.batch_size=0", "--out", "{tmp}/e.json"],
         "eval.batch_size must be positive, got 0"),
        (["evaluate", "--workdir", "{run}", "--metrics", "cpd", "--config.eval.cpd_seed=-3", "--out", "{tmp}/e.json"],
         "eval.cpd_seed must be non-negative, got -3"),
        (["evaluate", "--workdir", "{run}", "--metrics", "landmarks", "--step", "4", "--out", "{tmp}/e.json"],
         "--step picks the generator, but landmarks scores the run's detector"),
        (["evaluate", "--workdir", "{run}", "--metrics", "cpd", "--out", "{tmp}/ops.json/e.json"], "--out {tmp}/ops.json is a file, not a directory"),
    ],
)
def test_bad_flags_of_run_commands_name_the_flag(tiny_run, tmp_path, capsys, argv, message):
    (tmp_path / "ops.json").write_text("[]")
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "config.json").write_text('{"detect": {}, "generator_step": 4}')  # a detector's, not a run's
    code = main([arg.format(tmp=tmp_path, run=tiny_run[0]) for arg in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message.format(tmp=tmp_path) in err[0], err


def test_cli_prepare_procedural_exports_a_trainable_folder(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["prepare", "procedural", "--out", str(out), "--num", "3", "--resolution", "32"]) == 0
    assert "wrote 3 images" in capsys.readouterr().out
    assert len(list((out / "images").glob("*.png"))) == 3
    header = (out / "landmarks.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "filename" and len(header) == 1 + 2 * 10
    assert main(["prepare", "procedural", "--out", str(out), "--num", "0"]) == 2
    assert capsys.readouterr().err.startswith("lkgan: error: ")
