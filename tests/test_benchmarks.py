"""The benchmark scripts run and print one JSON object with their documented fields (tiny settings)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_edit_latency_reports_each_batch_size():
    out = _run("edit_latency.py", "--configs", "configs/tiny.py", "--batch-sizes", "1,2", "--iters", "2")
    assert [r["batch_size"] for r in out["results"]] == [1, 2]
    for r in out["results"]:
        assert r["resolution"] == 32 and r["ms_per_call"] > 0 and r["flops_per_call"] > 0
        assert r["ms_per_image"] == pytest.approx(r["ms_per_call"] / r["batch_size"], rel=1e-2)


def test_train_step_compile_only_reports_flops_and_memory():
    out = _run("train_step.py", "--config=configs/tiny.py", "--compile-only")
    assert out["flops_per_step"] > 0 and out["peak_bytes"] > 0 and out["steps_per_s"] is None
    assert out["device_kind"] and out["device_count"] >= 1


def test_torch_peer_step_runs_and_matches_the_jax_parameter_counts():
    pytest.importorskip("torch")
    out = _run("torch_peer_step.py", "--config=configs/tiny.py", "--steps", "4", "--threads", "1")  # tiny: reg_every 4
    assert out["steps_timed"] == 4 and out["steps_per_s"] > 0 and out["images_per_s"] > 0
    assert out["params_g"] == pytest.approx(out["params_g_jax"], rel=0.01)
    assert out["params_d"] == pytest.approx(out["params_d_jax"], rel=0.01)


def test_data_throughput_reports_each_source_and_worker_count_and_the_step():
    out = _run("data_throughput.py", "--sources", "procedural,folder,arrayrecord,tfds", "--workers", "0,1", "--resolutions", "32",
               "--num", "8", "--batches", "2", "--warmup-batches", "1", "--step-steps", "1", "--step-config", "32=configs/tiny.py")
    assert [r["resolution"] for r in out["procedural_render"]] == [32] and out["procedural_render"][0]["images_per_s"] > 0
    measured = {(r["source"], r["workers"]) for r in out["pipeline"] if r["images_per_s"] > 0 and r["resolution"] == 32}
    sources = ["procedural", "folder", "arrayrecord"] + (["tfds"] if "tfds" not in out["notes"] else [])
    assert measured == {(source, workers) for source in sources for workers in (0, 1)}
    (step,) = out["train_step"]
    assert step["resolution"] == 32 and step["config"] == "configs/tiny.py" and step["images_per_s"] > 0


def test_fid_throughput_reports_images_per_second():
    out = _run("fid_throughput.py", "--resolutions", "32", "--batch-size", "2", "--num", "2", "--no-torch")
    (result,) = out["results"]
    assert result["resolution"] == 32 and result["images_per_s"] > 0 and out["random_weights"] is True


def test_gpu_check_script_writes_every_json_and_a_summary(tmp_path):
    """The GPU check's plumbing on the CPU, with the tiny config and a few FID images."""
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_CONFIGS": "tiny", "GPU_CHECK_STEPS": "1",
           "GPU_CHECK_FID_NUM": "2", "GPU_CHECK_FID_RESOLUTIONS": "32", "GPU_CHECK_LIMIT": "280",
           "GPU_CHECK_DTYPES": "float32"}  # one dtype: the plumbing is the same for both
    result = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    expected = {"train_step_tiny_float32", "edit_latency", "fid_throughput"}
    # On a CPU the PyTorch peer's GPU comparison is recorded as skipped, not failed.
    assert summary["results"] == {**{name: "ok" for name in expected}, "step_vs_torch": "skipped (no PyTorch with CUDA)"}
    for name in expected:
        assert json.loads((tmp_path / f"{name}.json").read_text())["benchmark"]


def test_torch_peer_step_refuses_a_term_it_does_not_mirror():
    pytest.importorskip("torch")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "torch_peer_step.py"), "--config=configs/default.py", "--steps", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "torch_peer_step mirrors train.recovery_jitter_batch=0 only, got 4: pass --config.train.recovery_jitter_batch=0" in result.stderr
