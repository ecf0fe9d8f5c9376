"""Loading a trained generator, `lkgan generate` and `lkgan edit` on a short `configs/tiny.py` run."""

import json
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.editing.recipe import apply_operation, parse_recipe
from lkgan_jax.models.latent import latent_from_numpy
from lkgan_jax.pretrained import load_generator
from lkgan_jax.utils import visualize

pytestmark = pytest.mark.slow

RECIPE = [
    {"op": "move", "part": 2, "to": [0.1, -0.2]},
    {"op": "swap_parts", "parts": [0, 1], "from_seed": 7},
    {"op": "remove", "part": 3},
    {"op": "add", "like": 2, "at": [0.3, -0.2]},
    {"op": "swap_background", "from_seed": 9},
    {"op": "transform", "scale": 1.1, "rotate_deg": 10},
    {"op": "scale_part", "part": 1, "scale": 1.5},
    {"op": "interpolate", "to_seed": 5, "what": "positions", "parts": [0, 1, 2], "steps": 4},
]


@pytest.fixture
def run(tiny_run):
    return tiny_run


def _png(path: pathlib.Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _assert_close_images(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to uint8 rounding (float results of other batch sizes differ in the last bits)."""
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_load_generator_restores_the_ema_generator(run):
    workdir, state = run
    model = load_generator(workdir)
    assert model.step == 4 and model.num_parts == 4 and model.resolution == 32
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), model.variables["params"], state.ema_params)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), model.variables["batch_stats"], state.ema_stats)
    assert load_generator(workdir, step=2).step == 2
    with pytest.raises(ValueError, match=r"no checkpoint at step 3 .*available: \[2, 4\]"):
        load_generator(workdir, step=3)
    with pytest.raises(FileNotFoundError, match="not a training work dir"):
        load_generator(workdir / "nowhere")


def test_the_ema_generator_renders_with_its_own_standing_statistics(run):
    """The saved ``ema_stats`` are the standing statistics of the saved EMA parameters, not G's running ones."""
    from configs import tiny
    from lkgan_jax.models import make_generator
    from lkgan_jax.models.sampling import standing_statistics
    from lkgan_jax.train.loop import EMA_STATISTICS_KEY

    _, state = run
    t = tiny.get_config().train
    generator = make_generator(tiny.get_config().model)
    key = jax.random.fold_in(state.key, EMA_STATISTICS_KEY)
    expected = standing_statistics(generator, state.ema_params, state.g_stats, key, t.ema_stats_batches, t.ema_stats_batch_size)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6), state.ema_stats, expected)
    gaps = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()), state.ema_stats, state.g_stats))
    assert max(gaps) > 1e-3


def test_a_checkpoint_without_ema_stats_renders_with_g_stats(run, tmp_path, caplog):
    """Runs saved before the EMA generator had its own statistics still load, with G's statistics."""
    import orbax.checkpoint as ocp

    from lkgan_jax import checkpoint
    from lkgan_jax.workdir import CHECKPOINT_DIR, CONFIG_FILE

    workdir, state = run
    (tmp_path / CONFIG_FILE).write_text((workdir / CONFIG_FILE).read_text())
    old = {name: getattr(state, name) for name in ("step", "g_params", "g_stats", "ema_params", "d_params")}
    manager = checkpoint.make_manager(tmp_path / CHECKPOINT_DIR, 1)
    manager.save(4, args=ocp.args.Composite(**{checkpoint.STATE_ITEM: ocp.args.StandardSave(old)}))
    manager.wait_until_finished()
    manager.close()
    model = load_generator(tmp_path)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), model.variables["batch_stats"], state.g_stats)
    assert "has no ema_stats" in caplog.text


def test_generate_writes_images_grid_and_latents_independent_of_batching(run, tmp_path):
    workdir, _ = run
    assert main(["generate", "--workdir", str(workdir), "--num", "3", "--seed", "40", "--out", str(tmp_path / "a"), "--keypoints"]) == 0
    assert main(["generate", "--workdir", str(workdir), "--num", "2", "--seed", "41", "--out", str(tmp_path / "b"), "--batch-size", "1"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").glob("seed_*.png"))
    assert names == ["seed_000040.png", "seed_000041.png", "seed_000042.png"]
    for seed in (41, 42):  # an image depends on its seed only, not on the batch it was rendered in
        _assert_close_images(_png(tmp_path / "a" / f"seed_{seed:06d}.png"), _png(tmp_path / "b" / f"seed_{seed:06d}.png"))
    assert _png(tmp_path / "a" / "seed_000040.png").shape == (32, 32, 3)
    assert _png(tmp_path / "a" / "keypoints" / "seed_000040.png").shape == (128, 128, 3)
    assert (tmp_path / "a" / "grid.png").exists()
    with np.load(tmp_path / "a" / "latents.npz") as arrays:
        assert list(arrays["seeds"]) == [40, 41, 42] and int(arrays["step"]) == 4
        latent = latent_from_numpy(arrays)
    model = load_generator(workdir)
    rendered = np.clip(np.rint((np.asarray(model.render(latent)) + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(rendered[0], _png(tmp_path / "a" / "seed_000040.png"))


def test_edit_round_trip_applies_every_op(run, tmp_path):
    workdir, _ = run
    assert main(["generate", "--workdir", str(workdir), "--num", "2", "--seed", "3", "--out", str(tmp_path / "gen")]) == 0
    ops_file = tmp_path / "ops.json"
    ops_file.write_text(json.dumps(RECIPE))
    out = tmp_path / "edit"
    common = ["edit", "--workdir", str(workdir), "--seed", "3", "--ops", str(ops_file)]
    assert main([*common, "--out", str(out), "--latents", str(tmp_path / "gen" / "latents.npz")]) == 0
    assert main([*common, "--out", str(tmp_path / "edit_from_seed")]) == 0
    names = [f"{i:02d}_{entry['op']}.png" for i, entry in enumerate(RECIPE, start=1)]
    for name in ["00_input.png", *names]:
        _assert_close_images(_png(out / name), _png(tmp_path / "edit_from_seed" / name))
    _assert_close_images(_png(out / "00_input.png"), _png(tmp_path / "gen" / "seed_000003.png"))
    assert Image.open(out / "08_interpolate.gif").n_frames == 4 + 2  # there and back
    strip = _png(out / "strip.png")  # 9 columns (input + 8 ops) × 3 rows: with keypoints, without, change
    tile = 128 + visualize.CAPTION_HEIGHT
    assert strip.shape[:2] == (3 * (tile + 2) + 2, 9 * (128 + 2) + 2)
    plain, change = (strip[2 + row * (tile + 2):][:128] for row in (1, 2))
    np.testing.assert_array_equal(plain[:, 2:130], visualize.upscale_nearest(_png(out / "00_input.png"), 4))
    assert (change[:, 2:130] == 255).all()  # the input against itself: no change
    np.testing.assert_array_equal(change[:, 132:260], visualize.upscale_nearest(
        visualize.change_map(_png(out / "00_input.png"), _png(out / "01_move.png")), 4))
    assert change[:, 132:260].min() < 128  # the move changes the image
    model = load_generator(workdir)
    latent = model.latent_from_seeds([3])
    for op in parse_recipe(json.dumps(RECIPE), model.num_parts):
        latent = jax.tree.map(lambda x: x[-1:], apply_operation(op, latent, lambda s: model.latent_from_seeds([s])))
    with np.load(out / "latent.npz") as arrays:
        saved = latent_from_numpy(arrays)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6), saved, latent)
    assert saved.num_parts == 5


@pytest.mark.parametrize(
    "ops_text, message",
    [
        ('[{"op": "move", "part": 1, "to": [0, 0]', "ops.json: malformed JSON"),
        ('[{"op": "explode"}]', "ops.json op 1 ('explode'): unknown op"),
        ('[{"op": "remove", "part": 0}, {"op": "remove", "part": 4}]', "ops.json op 2 ('remove'): part 4 out of range"),
    ],
)
def test_edit_rejects_bad_ops_files_with_one_line(run, tmp_path, capsys, ops_text, message):
    workdir, _ = run
    ops_file = tmp_path / "ops.json"
    ops_file.write_text(ops_text)
    out = tmp_path / "edit"
    assert main(["edit", "--workdir", str(workdir), "--seed", "0", "--ops", str(ops_file), "--out", str(out)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing is rendered before the whole recipe is valid


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--workdir", "{missing}", "--num", "2", "--out", "{out}"], "not a training work dir"),
        (["generate", "--workdir", "{run}", "--step", "3", "--num", "2", "--out", "{out}"], "no checkpoint at step 3"),
        (["generate", "--workdir", "{run}", "--num", "0", "--out", "{out}"], "--num must be positive, got 0"),
        (["generate", "--workdir", "{run}", "--num", "2", "--batch-size", "-1", "--out", "{out}"], "--batch-size must be positive, got -1"),
        (["generate", "--workdir", "{run}", "--seed", "-5", "--num", "2", "--out", "{out}"], "--seed -5: seeds -5..-4 must lie in"),
        (["generate", "--workdir", "{run}", "--seed", "4294967295", "--num", "2", "--out", "{out}"],
         "--seed 4294967295: seeds 4294967295..4294967296 must lie in 0..4294967295"),
        (["edit", "--workdir", "{run}", "--seed", "0", "--ops", "{missing}", "--out", "{out}"], "ops file not found"),
    ],
)
def test_generate_and_edit_bad_input(run, tmp_path, capsys, args, message):
    workdir, _ = run
    paths = {"run": str(workdir), "missing": str(tmp_path / "missing"), "out": str(tmp_path / "out")}
    assert main([a.format(**paths) for a in args]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
