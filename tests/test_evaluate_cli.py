"""`lkgan evaluate` end to end on a tiny run: FID, KID, FID_interp, CPD JSON; two-folder FID; judged images; bad input."""

import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.config_loading import load_config
from lkgan_jax.evaluation.judged import face_batches
from lkgan_jax.utils.files import file_sha256

pytestmark = pytest.mark.slow

TINY = "configs/tiny.py"


@pytest.fixture(scope="module")
def weights(random_inception_weights):
    return random_inception_weights


def test_run_metrics_json(tiny_run, weights, tmp_path, monkeypatch):
    monkeypatch.setenv("LKGAN_CACHE_DIR", str(tmp_path / "cache"))
    workdir, _ = tiny_run
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--workdir", str(workdir), "--metrics", "fid,kid,fid_interp,cpd", "--inception-weights", str(weights),
            "--allow-unverified-weights", "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    for key in ("fid", "kid_mean", "kid_std", "fid_interp/parts", "fid_interp/positions", "fid_interp/background",
                "fid_interp/all", "cpd", "cpd_raw"):
        assert np.isfinite(result[key]), key
    assert result["fid"] > 0 and 0 <= result["cpd"] <= 1
    assert np.asarray(result["cpd_matrix"]).shape == (4, 4)  # configs/tiny.py: 4 parts
    assert result["step"] == 4 and result["num_samples"] == 8 and result["num_real"] == 8
    assert result["protocol"] == "pytorch_fid" and result["inception_sha256"] == file_sha256(weights)
    assert result["versions"]["jax"] and result["device"]["platform"] == "cpu" and result["seconds/fid"] > 0
    cached = list((tmp_path / "cache" / "fid_stats").glob("*.npz"))
    assert len(cached) == 1  # the real statistics, computed once for all metrics
    assert main(args[:4] + ["fid"] + args[5:] + ["--num-samples", "6"]) == 0  # cache hit, other sample count
    again = json.loads(out.read_text())
    assert again["num_samples"] == 6 and len(list((tmp_path / "cache" / "fid_stats").glob("*.npz"))) == 1


def test_cpd_and_locality_need_no_weights_and_take_pair_counts(tiny_run, tmp_path):
    workdir, _ = tiny_run
    out = tmp_path / "parts.json"
    args = ["evaluate", "--workdir", str(workdir), "--metrics", "cpd,locality", "--cpd-pairs", "3", "--locality-pairs", "3",
            "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["cpd_num_pairs"] == 3 and result["locality_num_pairs"] == 3
    for key in ("swap_ratio_r0.15", "swap_ratio_r0.3", "swap_effect", "move_follow_px", "background_swap_abs"):
        assert np.isfinite(result[f"locality/{key}"]), key
    assert len(result["locality/swap_effect/per_part"]) == 4 and result["locality_radii"] == [0.15, 0.3]


def test_runs_from_before_a_field_existed_get_its_default():
    from lkgan_jax.config_loading import config_for_run, load_config

    old = load_config("configs/tiny.py").to_dict()  # a run's config.json, from before locality existed
    del old["eval"]["locality_pairs"]
    old = ml_collections.ConfigDict(old)
    config = config_for_run(old, ("eval",), None, ["--config.eval.cpd_pairs=7"])
    assert config.eval.locality_pairs == load_config("configs/default.py").eval.locality_pairs
    assert config.eval.cpd_pairs == 7 and config.eval.num_samples == old.eval.num_samples  # the run's own fields stay


def test_two_folder_fid_is_zero_for_identical_folders(weights, tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    for i in range(4):
        image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        for name in ("a", "b"):
            Image.fromarray(image).save(tmp_path / name / f"{i}.png")
    out = tmp_path / "fid.json"
    assert main(["evaluate", "fid", "--real", str(tmp_path / "a"), "--fake", str(tmp_path / "b"), "--inception-weights",
                 str(weights), "--allow-unverified-weights", "--batch-size", "4", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert abs(result["fid"]) < 1e-6 and result["num_real"] == result["num_samples"] == 4


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--inception-weights", "{missing}"], "FID Inception weights not found"),
        (["--inception-weights", "{weights}"], "not pytorch-fid's FID Inception weights"),
        (["--inception-weights", "{weights}", "--allow-unverified-weights", "--real", "imagenet"], "unknown image source"),
    ],
)
def test_bad_weights_and_sources_get_one_line(tiny_run, weights, tmp_path, capsys, extra, message):
    workdir, _ = tiny_run
    paths = {"missing": str(tmp_path / "missing.pth"), "weights": str(weights)}
    args = ["evaluate", "--workdir", str(workdir), "--metrics", "fid", "--out", str(tmp_path / "m.json")]
    assert main(args + [a.format(**paths) for a in extra]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line for line in err) and err[-1].startswith("lkgan: error:")
    assert not (tmp_path / "m.json").exists()


@pytest.fixture(scope="module")
def judge_weights(tmp_path_factory):
    """A judge trained for 2 steps on tiny faces (`lkgan judge train`, as in test_judge.py)."""
    judge_dir = tmp_path_factory.mktemp("judge")
    assert main(["judge", "train", "--workdir", str(judge_dir), f"--config={TINY}", "--config.judge.steps=2"]) == 0
    return judge_dir / "judge.msgpack"


def _judge_mode(fake, out, *extra):
    return main(["evaluate", "judge", "--fake", str(fake), f"--config={TINY}", "--config.eval.batch_size=8",
                 "--out", str(out), *extra])


def test_judge_mode_scores_an_npz_and_a_folder_alike(judge_weights, tmp_path):
    # The fakes are real test-split faces 0..19: the first 16 are the very faces of the floor.
    faces = np.concatenate(list(face_batches(load_config(TINY).data.seed, "test", 32, 20, 8)))
    np.savez(tmp_path / "fakes.npz", images=faces, labels=np.arange(20))  # several arrays: `images` is taken
    (tmp_path / "fakes").mkdir()
    for i, face in enumerate(faces):
        Image.fromarray(face).save(tmp_path / "fakes" / f"{i:03d}.png")
    results = {}
    for name in ("fakes.npz", "fakes"):
        out = tmp_path / f"{name}.json"
        assert _judge_mode(tmp_path / name, out, "--num-samples", "16", "--judge-weights", str(judge_weights)) == 0
        results[name] = json.loads(out.read_text())
    result = results["fakes.npz"]
    assert result["mode"] == "judge" and result["fake"] == str(tmp_path / "fakes.npz")
    assert result["num_samples"] == result["judge_num_samples"] == 16 and result["resolution"] == 32
    assert result["judge_sha256"] == file_sha256(judge_weights) and result["seconds/judge"] > 0
    names = ("judge_fd", "judge_attributes", "judge_precision", "judge_recall", "swd_32", "swd_16", "swd_mean")
    for name in names:
        assert np.isfinite(result[name]) and np.isfinite(result[f"{name}_floor"]), name
        assert results["fakes"][name] == pytest.approx(result[name], rel=1e-6, abs=1e-9), name  # PNG is lossless
    assert result["judge_fd"] == pytest.approx(result["judge_fd_floor"], rel=1e-6, abs=1e-9)
    assert result["swd_mean"] == pytest.approx(result["swd_mean_floor"], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((4, 32, 32, 3), np.float32)}, "array 'images' must be uint8 (0..255), got float32"),
        ({"images": np.zeros((4, 32, 32), np.uint8)}, "must have shape (N, R, R, 3), got (4, 32, 32)"),
        ({"images": np.zeros((4, 24, 24, 3), np.uint8)}, "the image side must be a power of two >= 16, got 24"),
        ({"images": np.zeros((0, 32, 32, 3), np.uint8)}, "holds zero images"),
        ({"a": np.zeros((4, 32, 32, 3), np.uint8), "b": np.zeros(4)}, "holds the arrays a, b"),
        (None, "does not exist"),
    ],
    ids=["dtype", "shape", "side", "empty", "keys", "missing"],
)
def test_judge_mode_bad_fakes_get_one_line(tmp_path, capsys, arrays, message):
    fake = tmp_path / "fakes.npz"
    if arrays is not None:
        np.savez(fake, **arrays)
    out = tmp_path / "judged.json"
    assert _judge_mode(fake, out) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lkgan: error: --fake") and message in err[0], err
    assert not out.exists()


def test_judge_mode_refuses_flags_of_other_modes(tmp_path, capsys):
    out = tmp_path / "judged.json"
    assert _judge_mode(tmp_path, out, "--workdir", str(tmp_path), "--metrics", "fid") == EXIT_BAD_INPUT
    assert capsys.readouterr().err.strip() == ("lkgan: error: lkgan evaluate judge takes --fake, --judge-weights, "
                                               "--num-samples, --config, --config.eval.x=v, --out, not --workdir, --metrics")
