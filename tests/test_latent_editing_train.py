"""Training learned editors through the CLI on a tiny run, loading them, and their one-line errors."""

import json
import shutil

import jax
import numpy as np
import pytest

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.latent_editing.inference import load_editor
from lkgan_jax.latent_editing.train import sample_delta
from lkgan_jax.pretrained import load_generator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_with_judge(tiny_run, tmp_path_factory):
    """A copy of the tiny run with a 4-step detector, and a 4-step tiny judge."""
    root = tmp_path_factory.mktemp("editing")
    workdir = root / "run"
    shutil.copytree(tiny_run[0], workdir)
    assert main(["detect", "--workdir", str(workdir)]) == 0
    assert main(["judge", "train", "--workdir", str(root / "judge"), "--config=configs/tiny.py"]) == 0
    return workdir, root / "judge" / "judge.msgpack"


def test_sampled_deltas_stay_in_range_and_spare_geometry():
    geometry = jax.numpy.asarray([False, False, True])
    delta = np.asarray(sample_delta(jax.random.key(0), 4000, geometry, 0.5, 0.25, 1.5))
    assert np.abs(delta).max() <= 1.5
    assert np.mean(delta[:, 0] != 0) == pytest.approx(0.5, abs=0.03)
    assert np.mean(delta[:, 2] != 0) == pytest.approx(0.125, abs=0.02)


@pytest.mark.parametrize("kind", ["mapper", "matrix"])
def test_edit_train_through_the_cli_resumes_and_loads(run_with_judge, kind, capsys):
    workdir, judge = run_with_judge
    args = ["edit-train", "--workdir", str(workdir), f"--config.edit.judge_weights={judge}", f"--config.edit.editor={kind}",
            f"--config.edit.name={kind}", "--config.edit.adversarial_weight=0.05", "--config.edit.group_lasso_weight=0.01"]
    assert main(args + ["--config.edit.steps=2"]) == 0
    assert main(args + ["--config.edit.steps=4"]) == 0  # resumes from step 2
    directory = workdir / "editors" / kind
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2, 4]
    expected = {"attribute", "keypoint", "keypoint_weight", "adversarial"} | (
        {"cycle", "identity", "neighbourhood"} if kind == "mapper" else {"group_lasso"})
    assert expected <= set(rows[-1]) and all(np.isfinite(rows[-1][k]) for k in expected)
    assert rows[-1]["keypoint_weight"] > 0 and rows[0]["keypoint_weight"] == rows[-1]["keypoint_weight"]
    saved = json.loads((directory / "config.json").read_text())
    assert saved["attribute_names"][6] == "mouth_open" and saved["generator_step"] == 4

    generator = load_generator(workdir)
    editor = load_editor(workdir, kind, generator)
    assert editor.step == 4 and editor.attribute_names == tuple(saved["attribute_names"])
    latent = generator.latent_from_seeds([1, 2])
    edited = editor.apply(latent, editor.delta({"mouth_open": 1.0}, batch=2))
    assert edited.keypoints.shape == latent.keypoints.shape
    unchanged = editor.apply(latent, editor.delta({}, batch=2))
    if kind == "mapper":  # f(ℓ, 0) = ℓ up to what the identity loss has not yet pinned down
        np.testing.assert_allclose(unchanged.part_embeddings, latent.part_embeddings, atol=1e-2)
    else:  # T·0 = 0 exactly
        np.testing.assert_array_equal(np.asarray(unchanged.part_embeddings), np.asarray(latent.part_embeddings))


def test_editor_errors_are_one_line(run_with_judge, tmp_path, capsys):
    workdir, judge = run_with_judge
    assert main(["edit-train", "--workdir", str(workdir), f"--config.edit.judge_weights={judge}"]) == 0  # or already trained
    editor = load_editor(workdir, "mapper")
    with pytest.raises(ValueError, match="does not edit 'beard'"):
        editor.delta({"beard": 1.0})
    with pytest.raises(ValueError, match=r"within ±1.5"):
        editor.delta({"mouth_open": 3.0})
    with pytest.raises(FileNotFoundError, match="trained editors: mapper"):
        load_editor(workdir, "nope")
    # The editor of another run: same step, other weights.
    other = tmp_path / "other"
    assert main(["train", "--workdir", str(other), "--config=configs/tiny.py", "--config.seed=7", "--config.train.steps=4"]) == 0
    shutil.copytree(workdir / "editors", other / "editors")
    with pytest.raises(ValueError, match="trained on another generator"):
        load_editor(other, "mapper", load_generator(other))
    code = main(["edit-train", "--workdir", str(workdir), "--config.edit.editor=ridge", f"--config.edit.judge_weights={judge}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and len(err) == 1 and "edit.editor" in err[0], err
    code = main(["edit-train", "--workdir", str(workdir), "--config.edit.attributes=mouth_open,beard", f"--config.edit.judge_weights={judge}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and len(err) == 1 and "unknown attribute 'beard'" in err[0], err
    code = main(["edit-train", "--workdir", str(workdir)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_BAD_INPUT and len(err) == 1 and "edit.judge_weights" in err[0], err


def test_attribute_op_through_lkgan_edit(run_with_judge, tmp_path, capsys):
    workdir, judge = run_with_judge
    assert main(["edit-train", "--workdir", str(workdir), f"--config.edit.judge_weights={judge}"]) == 0  # or already trained
    ops = tmp_path / "ops.json"
    ops.write_text(json.dumps([{"op": "attribute", "set": {"mouth_open": 1.0, "hair_lightness": -0.5}},
                               {"op": "move", "part": 0, "offset": [0.1, 0.0]}]))
    out = tmp_path / "out"
    assert main(["edit", "--workdir", str(workdir), "--seed", "3", "--ops", str(ops), "--out", str(out)]) == 0
    assert (out / "01_attribute.png").is_file() and (out / "02_move.png").is_file()
    generator = load_generator(workdir)
    editor = load_editor(workdir, "mapper", generator)
    expected = editor.apply(generator.latent_from_seeds([3]), editor.delta({"mouth_open": 1.0, "hair_lightness": -0.5}))
    saved = np.load(out / "latent.npz")
    np.testing.assert_allclose(saved["part_embeddings"], np.asarray(expected.part_embeddings), atol=1e-6)
    capsys.readouterr()
    for entries, message in [
        ([{"op": "attribute", "set": {"beard": 1.0}}], "does not edit 'beard'"),
        ([{"op": "attribute", "set": {"mouth_open": 9.0}}], "within ±1.5"),
        ([{"op": "attribute", "set": {"mouth_open": 1.0}, "editor": "ridge"}], "no editor 'ridge'"),
        ([{"op": "add", "like": 0, "at": [0, 0]}, {"op": "attribute", "set": {"mouth_open": 1.0}}], "trained 4 parts"),
        ([{"op": "attribute", "set": {}}], "non-empty object"),
    ]:
        ops.write_text(json.dumps(entries))
        code = main(["edit", "--workdir", str(workdir), "--seed", "3", "--ops", str(ops), "--out", str(tmp_path / "bad")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == EXIT_BAD_INPUT and len(err) == 1 and message in err[0], (entries, err)
    assert not (tmp_path / "bad").exists()


def test_editing_metrics_through_lkgan_evaluate(run_with_judge, random_inception_weights, tmp_path, capsys):
    """Editors and baselines measured with a second judge and detector; the JSON, the picture and the one-line errors."""
    workdir, judge = run_with_judge
    assert main(["edit-train", "--workdir", str(workdir), f"--config.edit.judge_weights={judge}"]) == 0  # or already trained
    second_judge = tmp_path / "judge2"
    assert main(["judge", "train", "--workdir", str(second_judge), "--config=configs/tiny.py", "--config.judge.seed=1",
                 "--config.data.seed=1"]) == 0
    assert main(["detect", "--workdir", str(workdir), "--config.detect.name=detector_eval", "--config.detect.seed=1"]) == 0
    assert (workdir / "detector_eval" / "config.json").is_file()
    small = ["--config.eval.editing_num_samples=6", "--config.eval.editing_num_fit=96", "--config.eval.judge_num_samples=16",
             "--config.eval.editing_num_judge_test=16", "--config.eval.batch_size=8"]
    out = tmp_path / "editing.json"
    args = ["evaluate", "--workdir", str(workdir), "--metrics", "editing", "--editors", "mapper", "--out", str(out), *small]
    assert main([*args, f"--judge-weights={second_judge / 'judge.msgpack'}", "--config.eval.editing_detector=detector_eval"]) == 0
    result = json.loads(out.read_text())
    assert result["editing/editors"] == ["mapper", "least_squares", "random"] and len(result["editing/attributes"]) == 12
    for name in result["editing/editors"]:
        for key in ("accuracy_mae", "leakage_mean", "leakage_worst", "keypoint_drift_px", "outside_share", "round_trip_latent",
                    "round_trip_image_l1", "judge_fd", "slope/mouth_open", "leakage/mouth_open->skin_tone"):
            assert np.isfinite(result[f"editing/{name}/{key}"]), (name, key)
    assert "editing/eval_judge/attribute_mae/mouth_open" in result and "editing/train_judge/attribute_r2/glasses" in result
    assert (tmp_path / "editing.editing.png").is_file()
    # With Inception weights: KID and FID of the edited images against the real ones.
    assert main([*args, f"--judge-weights={second_judge / 'judge.msgpack'}", "--config.eval.editing_detector=detector_eval",
                 "--config.eval.editing_num_samples=2", "--config.eval.inception_batch_size=8", "--num-real=8",
                 f"--inception-weights={random_inception_weights}", "--allow-unverified-weights"]) == 0
    result = json.loads(out.read_text())
    for name in result["editing/editors"]:
        assert np.isfinite(result[f"editing/{name}/kid_mean"]) and np.isfinite(result[f"editing/{name}/fid"])
    capsys.readouterr()
    for extra, message in [
        ([f"--judge-weights={judge}", "--config.eval.editing_detector=detector_eval"], "is the training judge"),
        ([f"--judge-weights={second_judge / 'judge.msgpack'}"], "eval.editing_detector"),
        ([f"--judge-weights={second_judge / 'judge.msgpack'}", "--config.eval.editing_detector=nope"], "no trained detector"),
        ([f"--judge-weights={second_judge / 'judge.msgpack'}", "--config.eval.editing_detector=detector_eval",
          "--config.eval.editing_num_samples=0"], "eval.editing_num_samples"),
    ]:
        code = main([*args, *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == EXIT_BAD_INPUT and len(err) == 1 and message in err[0], (extra, err)
