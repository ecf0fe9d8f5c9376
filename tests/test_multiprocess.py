"""Two processes × 2 CPU devices on loopback: the multi-host code path of `lkgan train`."""

import json
import pathlib
import subprocess

import pytest
from multiprocess_launch import launch



def _launch(workdir: pathlib.Path, steps: int) -> list[subprocess.CompletedProcess]:
    args = ["train", "--workdir", str(workdir), "--config=configs/tiny.py", f"--config.train.steps={steps}",
            "--config.train.checkpoint_every=2", "--config.train.sample_every=2"]
    return launch(lambda process: args, 2, check=False)


@pytest.mark.slow
def test_two_process_run_trains_checkpoints_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    for result in _launch(workdir, steps=4):
        assert result.returncode == 0, result.stdout[-3000:]
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # written once, by process 0
    data_dir = workdir / "checkpoints" / "4" / "data"
    assert sorted(p.name for p in data_dir.glob("process_*.json")) == ["process_0-of-2.json", "process_1-of-2.json"]
    assert (workdir / "samples" / "step_0000004.png").exists()
    results = _launch(workdir, steps=6)
    for result in results:
        assert result.returncode == 0, result.stdout[-3000:]
    assert "resumed from" in results[0].stdout and "at step 4" in results[0].stdout
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]
    # Back on one process (this one, 8 devices): the data position saved by 2 processes carries over.
    from lkgan_jax.config_loading import load_config
    from lkgan_jax.train import loop

    config = load_config("configs/tiny.py", ["--config.train.steps=8", "--config.train.checkpoint_every=2", "--config.train.sample_every=2"])
    assert int(loop.train_and_evaluate(config, workdir).step) == 8
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8]
    data_state = json.loads((workdir / "checkpoints" / "8" / "data" / "process_0-of-1.json").read_text())
    assert data_state == {"global_next_index": 8 * config.train.batch_size}
