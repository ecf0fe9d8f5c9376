"""The judge: network shapes, its weight file, judge_fd on known statistics, `lkgan judge train` → evaluate."""

import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.config_loading import load_config
from lkgan_jax.data.procedural import NUM_ATTRIBUTES, NUM_LANDMARKS
from lkgan_jax.evaluation.judged import face_batches, judge_statistics, judged_distances
from lkgan_jax.judge.model import make_judge
from lkgan_jax.judge.weights import SHIPPED_SHA256, TrainedJudge, load_judge, save_judge, shipped_judge_path

TINY = "configs/tiny.py"


def _random_judge(seed: int = 0) -> TrainedJudge:
    config = load_config(TINY).judge
    judge = make_judge(config, NUM_LANDMARKS, NUM_ATTRIBUTES)
    variables = judge.init(jax.random.key(seed), jnp.zeros((1, 16, 16, 3)), train=False)
    mean, std = np.arange(NUM_ATTRIBUTES, dtype=np.float32), np.full(NUM_ATTRIBUTES, 2.0, np.float32)
    return TrainedJudge(judge, variables, config, mean, std, {"judge/attribute_r2": 0.5})


def test_outputs_have_the_documented_shapes_at_any_input_size():
    judge = _random_judge()
    for side in (16, 32):  # 32 px images are resized to the judge's 16
        out = judge.outputs(jnp.zeros((3, side, side, 3)))
        assert out.features.shape == (3, 8) and out.landmarks.shape == (3, NUM_LANDMARKS, 2)
        assert out.attributes.shape == (3, NUM_ATTRIBUTES)
    np.testing.assert_allclose(judge.attributes(np.zeros(NUM_ATTRIBUTES)), judge.attribute_mean)


def test_weight_file_round_trip_and_bad_files(tmp_path):
    judge = _random_judge(seed=3)
    path = tmp_path / "judge.msgpack"
    save_judge(path, judge)
    loaded = load_judge(path)
    images = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1, maxval=1)
    for a, b in zip(judge.outputs(images), loaded.outputs(images)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(loaded.attribute_std, judge.attribute_std)
    assert loaded.heldout == judge.heldout and len(loaded.sha256) == 64
    junk = tmp_path / "junk.msgpack"
    junk.write_bytes(b"\x00not msgpack" * 10)
    with pytest.raises(ValueError, match="not a judge weight file"):
        load_judge(junk)
    with pytest.raises(FileNotFoundError, match="lkgan judge train"):
        load_judge(tmp_path / "missing.msgpack")


def test_judged_distances_vanish_for_the_same_images_and_grow_for_others():
    judge = _random_judge()
    real = judge_statistics(judge, face_batches(0, "train", 16, 40, 16))
    again = judge_statistics(judge, face_batches(0, "train", 16, 40, 16))
    assert judged_distances(again, real) == {"judge_fd": pytest.approx(0.0, abs=1e-6), "judge_attributes": pytest.approx(0.0, abs=1e-6)}
    flat = judge_statistics(judge, (np.full((20, 16, 16, 3), 128, np.uint8) + np.arange(20, dtype=np.uint8)[:, None, None, None],))
    far = judged_distances(flat, real)
    assert far["judge_fd"] > 0 and far["judge_attributes"] > 0


@pytest.mark.slow
def test_train_the_judge_then_score_a_run(tiny_run, tmp_path, capsys):
    judge_dir = tmp_path / "judge"
    assert main(["judge", "train", "--workdir", str(judge_dir), f"--config={TINY}", "--config.judge.steps=2"]) == 0
    assert main(["judge", "train", "--workdir", str(judge_dir), f"--config={TINY}"]) == 0  # resumes 2 → 4
    rows = [json.loads(line) for line in (judge_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [2, 4]
    judge = load_judge(judge_dir / "judge.msgpack")
    assert (judge_dir / "heldout.png").stat().st_size > 0  # landmark predictions on held-out faces
    assert judge.heldout["step"] == 4
    for key in ("judge/landmark_error_iod_pct", "judge/attribute_mae", "judge/attribute_r2"):
        assert np.isfinite(judge.heldout[key]), key

    workdir, _ = tiny_run
    out = tmp_path / "judged.json"
    evaluate = ["evaluate", "--workdir", str(workdir), "--metrics", "judge", "--out", str(out)]
    assert main(evaluate) == 0  # no weights given: the shipped judge
    assert json.loads(out.read_text())["judge_sha256"] == SHIPPED_SHA256
    assert main(evaluate + ["--judge-weights", str(judge_dir / "judge.msgpack")]) == 0
    result = json.loads(out.read_text())
    for key in ("judge_fd", "judge_attributes", "judge_precision", "judge_recall", "swd_mean"):
        assert np.isfinite(result[key]) and result[key] >= 0 and np.isfinite(result[f"{key}_floor"]), key
    assert result["judge_num_samples"] == 16 and result["judge_sha256"] == judge.sha256


def test_the_shipped_judge_is_the_documented_file_and_real_faces_score_its_floor(tmp_path):
    path = shipped_judge_path()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHIPPED_SHA256 == load_judge(path).sha256
    # Real test-split faces as the "generated" images are exactly the floor's set: every score equals its floor.
    faces = np.concatenate(list(face_batches(0, "test", 32, 64, 32)))
    np.savez(tmp_path / "real_test.npz", images=faces)
    out = tmp_path / "judged.json"
    assert main(["evaluate", "judge", "--fake", str(tmp_path / "real_test.npz"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["judge_sha256"] == SHIPPED_SHA256
    for name in ("judge_fd", "judge_attributes", "judge_precision", "judge_recall", "swd_32", "swd_16"):
        assert result[name] == pytest.approx(result[f"{name}_floor"], rel=1e-6, abs=1e-9), name
    assert result["judge_fd_floor"] > 0 and result["judge_precision"] > 0.5
