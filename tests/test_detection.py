"""Keypoint detector, landmark-regression protocol, and `lkgan detect` → `lkgan evaluate --metrics landmarks`."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from lkgan_jax.checkpoint import CheckpointDamagedError
from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.config_loading import load_config
from lkgan_jax.data.export import export_procedural
from lkgan_jax.detection.detector import downsample2x, make_detector, spatial_soft_argmax
from lkgan_jax.detection.inference import load_detector
from lkgan_jax.evaluation.landmarks import (
    fit_linear_map,
    landmark_errors,
    load_labelled_splits,
    mean_landmark_errors,
    regress_landmarks,
)


def test_soft_argmax_closed_form_cases():
    h, w = 5, 7
    logits = np.full((1, h, w, 3), -1e4, np.float32)
    logits[0, 1, 5, 0] = 0.0  # a single peak at row 1, column 5
    logits[0, :, :, 1] = 0.0  # uniform → the centre
    logits[0, 0, 0, 2] = logits[0, 4, 6, 2] = 0.0  # two equal peaks at opposite corners → the centre
    keypoints, probs = spatial_soft_argmax(jnp.asarray(logits))
    grid_x, grid_y = np.linspace(-1, 1, w), np.linspace(-1, 1, h)
    np.testing.assert_allclose(np.asarray(keypoints[0, 0]), [grid_x[5], grid_y[1]], atol=1e-6)
    np.testing.assert_allclose(np.asarray(keypoints[0, 1]), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(keypoints[0, 2]), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(np.asarray(probs).sum(axis=(1, 2)), 1.0, rtol=1e-6)
    weights = np.exp(np.linspace(0, 1, w))  # a soft case against the explicit expectation
    soft = np.broadcast_to(np.log(weights)[None, :, None], (h, w, 1))[None].astype(np.float32)
    got = np.asarray(spatial_soft_argmax(jnp.asarray(soft))[0])[0, 0]
    np.testing.assert_allclose(got, [np.sum(weights / weights.sum() * grid_x), 0.0], atol=1e-6)


def test_downsample_is_the_two_by_two_mean():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 8, 3)), jnp.float32)
    expected = np.asarray(x).reshape(2, 3, 2, 4, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(downsample2x(x)), expected, atol=1e-6)


def test_detector_shapes_and_eval_mode_independence():
    detect = load_config("configs/default.py").detect
    detector = make_detector(detect, num_keypoints=10)
    images = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3), minval=-1, maxval=1)
    variables = detector.init(jax.random.key(1), images[:1], train=False)
    keypoints, logits = detector.apply(variables, images, train=False)
    assert keypoints.shape == (3, 10, 2) and logits.shape == (3, 16, 16, 10)
    assert np.all(np.abs(np.asarray(keypoints)) <= 1.0)
    edited = images.at[1].set(0.0)
    again, _ = detector.apply(variables, edited, train=False)
    np.testing.assert_allclose(np.asarray(again)[[0, 2]], np.asarray(keypoints)[[0, 2]], atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        make_detector(_with(detect, input_size=30), 10)


def _with(config, **changes):
    config = config.copy_and_resolve_references()
    for key, value in changes.items():
        config[key] = value
    return config


def test_regression_recovers_a_known_linear_map_exactly():
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(-1, 1, (50, 4, 2))
    true_map = rng.normal(size=(8, 6))
    landmarks = (keypoints.reshape(50, 8) @ true_map).reshape(50, 3, 2)
    np.testing.assert_allclose(fit_linear_map(keypoints.reshape(50, 8), landmarks.reshape(50, 6)), true_map, atol=1e-9)
    test = rng.uniform(-1, 1, (5, 4, 2))
    np.testing.assert_allclose(regress_landmarks(keypoints, landmarks, test), (test.reshape(5, 8) @ true_map).reshape(5, 3, 2), atol=1e-9)
    singular = np.concatenate([keypoints.reshape(50, 8), keypoints.reshape(50, 8)[:, :1]], axis=1)  # repeated column
    assert np.all(np.isfinite(fit_linear_map(singular, landmarks.reshape(50, 6))))


def test_error_normalisation_on_hand_made_examples():
    target = np.array([[[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5]]] * 2)  # eyes 1.0 apart (normalised)
    predicted = target + np.array([0.1, 0.0])  # every landmark 0.1 off
    errors = landmark_errors(predicted, target, resolution=33)
    assert errors["error_iod_pct"] == pytest.approx(10.0)
    assert errors["error_size_pct"] == pytest.approx(0.1 * 16 / 33 * 100)  # 0.1 units = 1.6 px of 33
    wide = target * np.array([2.0, 1.0])  # eyes 2.0 apart halves the IOD error
    assert landmark_errors(wide + np.array([0.1, 0.0]), wide, 33)["error_iod_pct"] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="inter-ocular"):
        landmark_errors(target, np.zeros_like(target), 33)


def test_labelled_splits_from_procedural_faces_and_a_folder(tmp_path):
    train, test = load_labelled_splits("procedural", 32, num_train=6, num_test=4, test_fraction=0.2, seed=0)
    assert train.images.shape == (6, 32, 32, 3) and test.landmarks.shape == (4, 10, 2)
    assert not any(np.array_equal(a, b) for a in train.images for b in test.images)
    folder = export_procedural(tmp_path / "faces", num=10, resolution=32)
    (folder / "images" / "000003.png").write_bytes(b"not a png")  # unreadable: skipped
    train_f, test_f = load_labelled_splits(f"folder:{folder}", 32, num_train=100, num_test=100, test_fraction=0.25, seed=0)
    assert len(train_f) + len(test_f) == 9 and len(test_f) == 2
    reference = np.stack([Image.open(folder / "images" / f"{i:06d}.png") for i in range(10) if i != 3])
    for split in (train_f, test_f):
        for image in split.images:
            assert any(np.array_equal(image, r) for r in reference)
    errors = mean_landmark_errors(train, test, 32, (0, 1))
    assert errors["error_iod_pct"] > 0
    with pytest.raises(ValueError, match="unknown image source"):
        load_labelled_splits("celeba", 32, 4, 4, 0.2, 0)


@pytest.mark.slow
def test_detect_then_evaluate_landmarks_through_the_cli(tiny_run, tmp_path, capsys, caplog):
    workdir, _ = tiny_run
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "landmarks", "--out", str(out)]) == EXIT_BAD_INPUT
    assert "no trained detector" in capsys.readouterr().err
    assert main(["detect", "--workdir", str(workdir), "--config.detect.steps=2"]) == 0
    assert main(["detect", "--workdir", str(workdir), "--config.detect.steps=4"]) == 0  # resumes from step 2
    assert "detector: resumed from" in caplog.text
    lines = [json.loads(line) for line in (workdir / "detector" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [2, 4] and all(np.isfinite(line["loss"]) for line in lines)
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "landmarks", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("error_iod_pct", "error_size_pct", "random_detector/error_iod_pct", "mean_landmarks/error_iod_pct",
                "generated/detector_error_size_pct"):
        assert np.isfinite(result[f"landmarks/{key}"]) and result[f"landmarks/{key}"] > 0
    assert result["landmarks/num_train"] == 24 and result["landmarks/num_test"] == 16  # configs/tiny.py eval section
    assert result["landmarks/detector_step"] == 4 and result["landmarks/generator_step"] == 4
    assert result["versions"]["jax"] and result["seconds/landmarks"] > 0
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "locality", "--locality-pairs", "2", "--out", str(out)]) == 0
    assert np.isfinite(json.loads(out.read_text())["locality/move_follow"])  # the run's detector is used
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "landmarks,sharpness", "--out", str(out)]) == EXIT_BAD_INPUT
    assert "unknown metric sharpness" in capsys.readouterr().err

    # A damaged newest detector checkpoint: readers fall back; naming it is a one-line error.
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    for path in (copy / "detector" / "checkpoints" / "4" / "state").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(b"\x07" * path.stat().st_size)
    assert load_detector(copy)[0].step == 2
    with pytest.raises(CheckpointDamagedError, match="checkpoint step 4 .* is damaged"):
        load_detector(copy, step=4)
