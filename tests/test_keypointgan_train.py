"""KeypointGAN training and evaluation: prior, history pool, gradient path, CLI smoke run, resume, bad input."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lkgan_jax.cli.main import main
from lkgan_jax.config_loading import load_config
from lkgan_jax.data.export import export_procedural
from lkgan_jax.data.procedural import LEFT_RIGHT_PAIRS, PRIOR_INDEX_START, face_landmarks_only
from lkgan_jax.keypointgan import train as kg_train
from lkgan_jax.keypointgan.evaluate import correct_flips, direct_errors, load_keypointgan
from lkgan_jax.keypointgan.prior import load_prior_poses
from lkgan_jax.keypointgan.skeleton import swap_left_right

TINY = "configs/keypointgan_tiny.py"


def _tiny(*overrides):
    return load_config(TINY, list(overrides))


def test_procedural_prior_comes_from_faces_disjoint_from_training():
    config = _tiny("--config.prior.size=5")
    poses = load_prior_poses(config.prior, config.data, 10)
    np.testing.assert_array_equal(poses, face_landmarks_only(0, range(PRIOR_INDEX_START, PRIOR_INDEX_START + 5)))
    training = face_landmarks_only(0, range(5))
    assert not np.any(np.all(np.isclose(poses[:, None], training[None]), axis=(2, 3)))


def test_folder_prior_is_read_and_checked(tmp_path):
    prior_dir, train_dir = tmp_path / "prior", tmp_path / "train"
    export_procedural(prior_dir, 6, 32, split="test")
    config = _tiny("--config.data.source=folder", f"--config.data.path={train_dir}", f"--config.prior.source=folder:{prior_dir}",
                   "--config.prior.size=0")
    poses = load_prior_poses(config.prior, config.data, 10)
    assert poses.shape == (6, 10, 2) and np.all(np.abs(poses) <= 1.0)
    with pytest.raises(ValueError, match="has 10 landmarks per pose, but model.num_points=7"):
        load_prior_poses(config.prior, config.data, 7)
    config.data.path = str(prior_dir)
    with pytest.raises(ValueError, match="is the training folder"):
        load_prior_poses(config.prior, config.data, 10)


def test_history_pool_fills_then_swaps_half_the_time():
    history = jnp.zeros((3, 2, 2, 1))
    fakes = jnp.arange(1.0, 5.0)[:, None, None, None] * jnp.ones((4, 2, 2, 1))
    history, count, used = kg_train.history_pool(history, jnp.array(0), fakes, jax.random.key(0))
    assert int(count) == 3
    np.testing.assert_array_equal(used[:3, 0, 0, 0], [1, 2, 3])  # while filling: the fakes themselves
    assert float(used[3, 0, 0, 0]) in (1.0, 2.0, 3.0, 4.0)
    stored = sorted(np.asarray(history[:, 0, 0, 0]).tolist())
    assert stored in ([1, 2, 3], [1, 2, 4], [1, 3, 4], [2, 3, 4])
    shown = [float(kg_train.history_pool(jnp.array(history), jnp.array(3), fakes[3:] * 0 + 9.0, jax.random.key(i))[2][0, 0, 0, 0])
             for i in range(40)]
    assert 8 <= sum(v == 9.0 for v in shown) <= 32  # p = ½ of showing the new fake


def test_reconstruction_gradient_reaches_the_encoder_through_eta_and_the_renderer():
    config = _tiny("--config.train.gan_weight=0", "--config.train.finetune_regressor=False")
    trainer = kg_train.build_trainer(config)
    eta = kg_train.init_regressor(trainer.kg, jax.random.key(1))
    state = trainer.init_state(jax.random.key(0), eta)
    images = jnp.asarray(kg_train.sample_images(config, 8))
    new_state, metrics = jax.jit(kg_train.make_main_step(trainer))(state, {"image": images}, jnp.asarray(trainer.prior), trainer.perceptual.params)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), state.g_params["encoder"], new_state.g_params["encoder"])
    assert max(jax.tree.leaves(moved)) > 0, "no gradient reached Φ"  # gan_weight 0: the only path is through η, soft-argmax and β
    jax.tree.map(np.testing.assert_array_equal, new_state.eta, state.eta)  # η frozen without fine-tuning
    assert float(metrics["perceptual"]) == pytest.approx(1.0, abs=1e-5)  # first step: EMA-normalised to 1



def test_flip_correction_and_direct_errors_by_hand():
    pairs = tuple(LEFT_RIGHT_PAIRS)
    truth = face_landmarks_only(0, range(4))
    mirrored = np.asarray(swap_left_right(truth, pairs))
    predicted = np.concatenate([truth[:2], mirrored[2:]])  # images 2 and 3 come out with left/right swapped
    corrected, swapped = correct_flips(predicted, read_back=truth, pairs=pairs)  # an offline η that reads the truth
    np.testing.assert_array_equal(swapped, [False, False, True, True])
    np.testing.assert_allclose(corrected, truth)
    errors = direct_errors(predicted, truth, truth, pairs, 32, (0, 1))
    assert errors["direct/error_iod_pct"] == pytest.approx(0.0, abs=1e-9)
    assert errors["direct_min_flip/error_iod_pct"] == pytest.approx(0.0, abs=1e-9)
    assert errors["direct/correct_flip_fraction"] == 1.0
    assert errors["direct_raw/error_iod_pct"] > 10.0


def test_cli_smoke_run_evaluates_landmarks(tiny_keypointgan_run, tmp_path):
    workdir, out = tiny_keypointgan_run, tmp_path / "landmarks.json"  # trained with `lkgan train --config=TINY`
    config = json.loads((workdir / "config.json").read_text())
    assert config["system"] == "keypointgan" and config["perceptual"]["used"] == "random_vgg19"
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert {"g_loss", "d_loss", "eta_loss", "perceptual"} <= set(rows[0]) and any("landmarks/direct/error_iod_pct" in r for r in rows)
    pretrain_rows = [json.loads(line) for line in (workdir / "regressor" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in pretrain_rows] == [2, 4] and np.isfinite(pretrain_rows[-1]["error_pct"])
    assert (workdir / "samples" / "step_0000004.png").exists()
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "landmarks", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("landmarks/direct/error_iod_pct", "landmarks/direct_min_flip/error_iod_pct", "landmarks/direct/correct_flip_fraction",
                "landmarks/error_iod_pct", "landmarks/random_detector/direct/error_iod_pct", "landmarks/mean_landmarks/error_iod_pct",
                "landmarks/mean_prior_pose/error_iod_pct"):
        assert np.isfinite(result[key]), key
    assert result["perceptual"] == "random_vgg19" and result["step"] == 4
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "cpd", "--out", str(out)]) == 2


def test_resume_is_exact(tmp_path):
    straight = kg_train.train_keypointgan(_tiny(), tmp_path / "straight")
    kg_train.train_keypointgan(_tiny("--config.train.steps=2"), tmp_path / "resumed")
    resumed = kg_train.train_keypointgan(_tiny(), tmp_path / "resumed")
    for name in ("g_params", "g_stats", "eta", "offline_eta", "d_params", "g_opt", "d_opt", "eta_opt", "perceptual_ema", "history"):
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), getattr(straight, name), getattr(resumed, name))
    loaded = load_keypointgan(tmp_path / "resumed")
    assert loaded.step == 4
    jax.tree.map(np.testing.assert_array_equal, loaded.eta, jax.device_get(resumed.eta))


@pytest.mark.parametrize("override, message", [
    ("--config.model.edges=((0, 1), (1, 12))", "model.edges: edge (1, 12) names a landmark outside 0..9"),
    ("--config.perceptual.vgg_weights=MISSING.npz", "no VGG-19 weights at MISSING.npz"),
    ("--config.model.disc_scales=3", "D's smallest input"),
    ("--config.prior.source=folder:/nonexistent", "does not exist"),
])
def test_bad_config_gives_one_line_error(tmp_path, capsys, override, message):
    assert main(["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", override]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("lkgan: error:") and message in error[0], error


def test_wrong_vgg_hash_and_wrong_prior_point_count_give_one_line_errors(tmp_path, capsys):
    weights = tmp_path / "vgg.npz"
    np.savez(weights, dummy=np.zeros(1))
    prior = tmp_path / "prior"
    export_procedural(prior, 3, 32, split="test")
    (prior / "landmarks.csv").write_text("filename,x0,y0,x1,y1\n" + "".join(f"images/{i:06d}.png,1,2,3,4\n" for i in range(3)))
    cases = [
        ([f"--config.perceptual.vgg_weights={weights}", "--config.perceptual.vgg_sha256=0123456789abcdef"], "SHA-256"),
        ([f"--config.prior.source=folder:{prior}", "--config.prior.size=0"], "has 2 landmarks per pose, but model.num_points=10"),
    ]
    for overrides, message in cases:
        assert main(["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", *overrides]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and message in error[0], error
