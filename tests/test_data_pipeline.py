"""Tests for lkgan_jax.data.image_folder and lkgan_jax.data.pipeline (docs/design.md §6, §12)."""

import io
import logging

import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from PIL import Image

from lkgan_jax.conventions import normalized_to_pixel, pixel_to_normalized
from lkgan_jax.data import export, pipeline, skipping
from lkgan_jax.data.image_folder import ImageFolder
from lkgan_jax.data.procedural import ProceduralFaces

RESOLUTION = 16
GLOBAL_BATCH = 8
RED = (255, 0, 0)
GREEN = (0, 255, 0)
GRAY = (128, 128, 128)


def _save(path, image: Image.Image, format_name: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=format_name)


def _solid(size, color, mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def _data_config(**overrides) -> ml_collections.ConfigDict:
    fields = dict(source="procedural", path="", resolution=RESOLUTION, seed=0, random_flip=False,
                  num_threads=2, prefetch=4, num_workers=0)
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


def _take(iterator, count: int) -> list[np.ndarray]:
    return [next(iterator)["image"] for _ in range(count)]


@pytest.fixture
def landscape_with_marker(tmp_path):
    """90 x 60 image: a green strip that the centre crop removes and a red 5 x 5 marker centred at
    pixel (x=60, y=9). The crop keeps columns 15..74, so at resolution 30 (scale 1/2) the marker's
    centre lands at ((60 - 15 + 0.5) / 2 - 0.5, (9 + 0.5) / 2 - 0.5) = (22.25, 4.25)."""
    pixels = np.full((60, 90, 3), GRAY, np.uint8)
    pixels[:, :15] = GREEN
    pixels[7:12, 58:63] = RED
    _save(tmp_path / "landscape.png", Image.fromarray(pixels))
    return tmp_path


# ----------------------------------------------------------------------------------- ImageFolder


def test_scan_is_recursive_sorted_and_case_insensitive(tmp_path):
    for name in ["b.png", "sub/a.JPG", "sub/deeper/c.jpeg", "a.PNG"]:
        format_name = "JPEG" if name.lower().endswith(("jpg", "jpeg")) else "PNG"
        _save(tmp_path / name, _solid((8, 8), GRAY), format_name)
    (tmp_path / "notes.txt").write_text("not an image")
    source = ImageFolder(str(tmp_path), resolution=RESOLUTION)
    assert source.relative_paths == ["a.PNG", "b.png", "sub/a.JPG", "sub/deeper/c.jpeg"]
    assert len(source) == 4
    item = source[2]
    assert set(item) == {"image"} and item["image"].shape == (RESOLUTION, RESOLUTION, 3)
    assert item["image"].dtype == np.uint8


def test_centre_crop_geometry(landscape_with_marker):
    image = ImageFolder(str(landscape_with_marker), resolution=30)[0]["image"].astype(np.float32)
    assert image.shape == (30, 30, 3)
    greenness = image[..., 1] - image[..., 0]
    assert greenness.max() < 40, "the cropped-away strip must not appear"
    redness = np.clip(image[..., 0] - image[..., 1], 0, None)
    rows, columns = np.indices(redness.shape)
    centroid = np.array([(columns * redness).sum(), (rows * redness).sum()]) / redness.sum()
    np.testing.assert_allclose(centroid, [22.25, 4.25], atol=0.15)


def test_portrait_crop_is_vertically_centred(tmp_path):
    pixels = np.full((40, 20, 3), GRAY, np.uint8)
    pixels[:10] = GREEN  # rows 0..9 are cropped away (crop keeps rows 10..29)
    pixels[30:] = RED
    _save(tmp_path / "portrait.png", Image.fromarray(pixels))
    image = ImageFolder(str(tmp_path), resolution=20)[0]["image"]
    np.testing.assert_array_equal(image, np.full((20, 20, 3), GRAY, np.uint8))


def _write_landmarks_csv(folder, filenames: list[str], landmarks_pixels: np.ndarray) -> None:
    rows = [",".join(export.landmark_header(landmarks_pixels.shape[1]))]
    rows += [",".join([name, *map(str, points.reshape(-1))]) for name, points in zip(filenames, landmarks_pixels)]
    (folder / export.LANDMARKS_CSV).write_text("\n".join(rows) + "\n")


def test_landmarks_csv_transforms_into_cropped_resized_frame(landscape_with_marker):
    original_pixels = np.array([[[60.0, 9.0], [15.0, 0.0], [74.0, 59.0]]], np.float32)
    _write_landmarks_csv(landscape_with_marker, ["landscape.png"], original_pixels)
    landmarks = ImageFolder(str(landscape_with_marker), resolution=30)[0]["landmarks"]
    assert landmarks.shape == (3, 2) and landmarks.dtype == np.float32
    # The first kept column/row (15, 0) covers the left/top half of output pixel 0's area, so it maps
    # half an output pixel before that centre (-0.25); the last kept one (74, 59) is symmetric.
    expected_pixels = np.array([[22.25, 4.25], [-0.25, -0.25], [29.25, 29.25]], np.float32)
    np.testing.assert_allclose(landmarks, pixel_to_normalized(expected_pixels, 30), atol=1e-6)


def test_exported_procedural_faces_round_trip(tmp_path):
    export.export_procedural(tmp_path, num=3, resolution=RESOLUTION, seed=7)
    folder = ImageFolder(str(tmp_path), resolution=RESOLUTION, require_landmarks=True)
    faces = ProceduralFaces(seed=7, resolution=RESOLUTION)
    assert len(folder) == 3
    for i in range(3):
        np.testing.assert_array_equal(folder[i]["image"], faces[i]["image"])
        np.testing.assert_allclose(folder[i]["landmarks"], faces[i]["landmarks"], atol=1e-5)


def test_require_landmarks_excludes_unlisted_images(tmp_path):
    for name in ["listed.png", "unlisted.png"]:
        _save(tmp_path / name, _solid((12, 12), GRAY))
    with pytest.raises(ValueError, match="landmarks.csv"):
        ImageFolder(str(tmp_path), resolution=RESOLUTION, require_landmarks=True)
    _write_landmarks_csv(tmp_path, ["listed.png"], np.zeros((1, 4, 2), np.float32))
    required = ImageFolder(str(tmp_path), resolution=RESOLUTION, require_landmarks=True)
    assert required.relative_paths == ["listed.png"]
    optional = ImageFolder(str(tmp_path), resolution=RESOLUTION)
    assert len(optional) == 2 and np.isnan(optional[1]["landmarks"]).all()
    assert optional[1]["landmarks"].shape == (4, 2)


@pytest.mark.parametrize(
    "mode,color,expected",
    [("L", 100, (100, 100, 100)), ("RGBA", (10, 20, 30, 40), (10, 20, 30)), ("LA", (70, 255), (70, 70, 70))],
)
def test_non_rgb_modes_become_rgb(tmp_path, mode, color, expected):
    _save(tmp_path / "x.png", _solid((10, 14), color, mode))
    image = ImageFolder(str(tmp_path), resolution=8)[0]["image"]
    np.testing.assert_array_equal(image, np.broadcast_to(np.array(expected, np.uint8), (8, 8, 3)))


def test_palette_image_becomes_rgb(tmp_path):
    _save(tmp_path / "p.png", _solid((10, 10), RED).convert("P", palette=Image.Palette.ADAPTIVE))
    image = ImageFolder(str(tmp_path), resolution=8)[0]["image"]
    np.testing.assert_array_equal(image[0, 0], RED)


def test_corrupt_files_are_skipped_counted_and_logged(tmp_path, caplog):
    _save(tmp_path / "0_good.png", _solid((12, 12), RED))
    (tmp_path / "1_garbage.png").write_bytes(b"this is not a png at all" * 10)
    _save(tmp_path / "2_good.png", _solid((12, 12), GREEN))
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    (tmp_path / "3_truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    source = ImageFolder(str(tmp_path), resolution=8)
    skipped_before = skipping.total_skipped()
    with caplog.at_level(logging.WARNING):
        items = [source[i] for i in range(len(source))]
    # Falls back to the next readable index: 1 -> 2, and 3 wraps around to 0.
    np.testing.assert_array_equal(items[1]["image"], items[2]["image"])
    np.testing.assert_array_equal(items[3]["image"], items[0]["image"])
    assert source.num_skipped == 2
    assert skipping.total_skipped() == skipped_before + 2
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "1_garbage.png" in messages and "3_truncated.jpg" in messages
    source[1]
    assert source.num_skipped == 2, "a bad file is counted once"


@pytest.mark.parametrize("make_folder", [lambda p: p / "missing", lambda p: p])
def test_missing_or_empty_folder_is_a_one_line_error(tmp_path, make_folder):
    folder = make_folder(tmp_path)
    with pytest.raises(ValueError, match=str(folder)) as error:
        ImageFolder(str(folder), resolution=RESOLUTION)
    assert "\n" not in str(error.value)


# -------------------------------------------------------------------------------------- pipeline


def test_unknown_source_lists_choices():
    with pytest.raises(ValueError, match="procedural, folder, arrayrecord, tfds"):
        pipeline.build_source(_data_config(source="imagenet"))


def test_global_batch_must_divide_over_processes(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=0)


def test_batches_shape_range_and_determinism():
    first = _take(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=1)), 2)
    again = _take(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=1)), 2)
    other = _take(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=2)), 2)
    batch = first[0]
    assert batch.shape == (GLOBAL_BATCH, RESOLUTION, RESOLUTION, 3) and batch.dtype == np.float32
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_training_batches_hold_only_images():
    batch = next(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=0)))
    assert set(batch) == {"image"}


def test_folder_source_through_pipeline(landscape_with_marker):
    config = _data_config(source="folder", path=str(landscape_with_marker))
    batch = next(iter(pipeline.make_train_dataset(config, 4, seed=0)))["image"]
    assert batch.shape == (4, RESOLUTION, RESOLUTION, 3)
    np.testing.assert_array_equal(batch[0], batch[1])  # one image, repeated


def test_flip_mirrors_image_and_landmark_x():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    landmarks = np.array([[-0.5, 0.25], [1.0, -1.0]], np.float32)
    flipped = pipeline.flip_horizontally({"image": image, "landmarks": landmarks})
    np.testing.assert_array_equal(flipped["image"], image[:, ::-1])
    np.testing.assert_array_equal(flipped["landmarks"], [[0.5, 0.25], [-1.0, -1.0]])


def test_random_flip_flips_some_samples_only():
    plain = np.concatenate(_take(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=4)), 2))
    config = _data_config(random_flip=True)
    flipped = np.concatenate(_take(iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=4)), 2))
    is_mirror = [np.array_equal(f, p[:, ::-1]) and not np.array_equal(f, p) for f, p in zip(flipped, plain)]
    is_same = [np.array_equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or s for m, s in zip(is_mirror, is_same))
    assert any(is_mirror) and any(is_same)


def test_iterator_state_restores_identical_continuation():
    config = _data_config(random_flip=True)
    iterator = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=5))
    _take(iterator, 3)
    state = iterator.get_state()
    expected = _take(iterator, 2)
    resumed = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=5))
    resumed.set_state(state)
    for a, b in zip(expected, _take(resumed, 2)):
        np.testing.assert_array_equal(a, b)


def test_iterator_checkpoint_with_orbax(tmp_path):
    config = _data_config()
    iterator = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=6))
    _take(iterator, 2)
    with ocp.CheckpointManager(tmp_path / "checkpoints", item_names=("data",)) as manager:
        manager.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
        manager.wait_until_finished()
        expected = _take(iterator, 2)
        resumed = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=6))
        manager.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    for a, b in zip(expected, _take(resumed, 2)):
        np.testing.assert_array_equal(a, b)


def test_make_global_batch_shards_over_data_axis():
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("data"))
    host_batch = next(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=0)))
    global_batch = pipeline.make_global_batch(host_batch, sharding)
    image = global_batch["image"]
    assert isinstance(image, jax.Array) and image.sharding == sharding
    assert len(image.addressable_shards) == 8
    assert image.addressable_shards[0].data.shape == (1, RESOLUTION, RESOLUTION, 3)
    np.testing.assert_array_equal(np.asarray(image), host_batch["image"])


def test_process_shards_interleave_into_the_one_process_batches(monkeypatch):
    """Global batch t is the same examples whatever the process count: process p holds every P-th."""
    config = _data_config(random_flip=True)
    whole = _take(iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=7)), 2)
    shards = []
    for index in range(2):
        monkeypatch.setattr(jax, "process_index", lambda index=index: index)
        monkeypatch.setattr(jax, "process_count", lambda: 2)
        iterator = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=7))
        shards.append(_take(iterator, 2))
        assert iterator.get_state() == {"global_next_index": 2 * GLOBAL_BATCH}  # the same on every process
    for step, batch in enumerate(whole):
        np.testing.assert_array_equal(batch[0::2], shards[0][step])
        np.testing.assert_array_equal(batch[1::2], shards[1][step])


@pytest.mark.parametrize("saved", [
    {"next_index": 3},  # the earlier per-process pipeline without workers: 3 local batches
    {"next_index_in_cycle": 1, "next_index_in_datasets": 2, "iterators_in_use_indices": [0, 1],
     "iterators_in_use_states": [{"next_index": 2}, {"next_index": 1}], "exhausted": [0, 0], "future_states": {}},  # 2 workers
    {"global_next_index": 3 * GLOBAL_BATCH},
])
def test_saved_iterator_states_resume_after_three_batches(saved):
    config = _data_config()
    expected = _take(iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=8)), 4)[3]
    resumed = iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=8))
    resumed.set_state(saved)
    np.testing.assert_array_equal(next(resumed)["image"], expected)


def test_crop_box_follows_torchvision_ranges_and_falls_back_to_the_centre():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = pipeline.crop_box(40, 40, (0.9, 1.0), (0.9, 1.1), rng)
        assert 0.9 * 1600 * 0.97 <= h * w <= 1600 and 0.9 / 1.1 <= w / h <= 1.1 * 1.1  # rounding to whole pixels
        assert 0 <= top <= 40 - h and 0 <= left <= 40 - w
    assert pipeline.crop_box(20, 40, (1.0, 1.0), (1.0, 1.0), rng) == (0, 10, 20, 20)  # no square fits the area: centre


def test_resized_crop_moves_landmarks_with_the_pixels():
    """A 1-pixel mark at a landmark is still under the landmark after any crop (to the resampling's blur)."""
    side, mark = 33, (22, 9)  # (column, row)
    image = np.zeros((side, side, 3), np.uint8)
    image[mark[1] - 1:mark[1] + 2, mark[0] - 1:mark[0] + 2] = 255  # 3 × 3 so that bilinear resampling keeps a peak
    landmarks = pixel_to_normalized(np.array([mark], np.float32), side)
    unchanged = pipeline.resized_crop({"image": image, "landmarks": landmarks}, (0, 0, side, side))
    np.testing.assert_array_equal(unchanged["image"], image)
    np.testing.assert_allclose(unchanged["landmarks"], landmarks, atol=1e-6)
    cropped = pipeline.resized_crop({"image": image, "landmarks": landmarks}, (3, 5, 26, 24))
    x, y = normalized_to_pixel(cropped["landmarks"][0], side)
    # by hand: x = (22 - 5 + 0.5) · 33 / 24 - 0.5 = 23.5625, y = (9 - 3 + 0.5) · 33 / 26 - 0.5 = 7.75
    np.testing.assert_allclose([x, y], [23.5625, 7.75], atol=1e-4)
    brightest = np.unravel_index(np.argmax(cropped["image"][..., 0]), (side, side))
    assert abs(brightest[0] - y) <= 1 and abs(brightest[1] - x) <= 1


def test_random_resized_crop_in_the_pipeline_and_bad_ranges():
    plain = np.concatenate(_take(iter(pipeline.make_train_dataset(_data_config(), GLOBAL_BATCH, seed=4)), 1))
    config = _data_config(random_crop_scale=(0.5, 0.6), random_crop_ratio=(0.9, 1.1))
    cropped = np.concatenate(_take(iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=4)), 1))
    again = np.concatenate(_take(iter(pipeline.make_train_dataset(config, GLOBAL_BATCH, seed=4)), 1))
    assert cropped.shape == plain.shape and not np.allclose(cropped, plain)
    np.testing.assert_array_equal(cropped, again)  # seeded
    for bad, message in [(dict(random_crop_scale=(0.0, 1.0)), "data.random_crop_scale"),
                         (dict(random_crop_ratio=(1.2, 1.1)), "data.random_crop_ratio")]:
        with pytest.raises(ValueError, match=message):
            pipeline.make_train_dataset(_data_config(**bad), GLOBAL_BATCH, seed=0)
