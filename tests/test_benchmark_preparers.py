"""`lkgan prepare celeba|celeba_wild|cub|taichi|h36m_simplified` on tiny copies of each data set.

For every data set: the exact count of every split, the manifest, and a landmark round trip (a mark
drawn at a landmark of the source image, and the landmark itself, come back at the protocol's position
through ArrayRecordImages). Then the one-line errors: missing files, wrong counts, malformed lines,
listed images that are absent, CUB visibility outside 0/1.
"""

from __future__ import annotations

import json
import re
import pathlib

import numpy as np
import pytest
from PIL import Image

from benchmark_fixtures import (CELEBA_PARTITION, MAFL_TEST, MARKED, write_celeba, write_cub, write_h36m,
                                write_taichi)
from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.conventions import pixel_to_normalized
from lkgan_jax.data import benchmarks
from lkgan_jax.data.array_records import ArrayRecordImages, read_metadata

R = 16  # every test prepares at 16 px


def _size(path: pathlib.Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _aligned(path, points):
    """The aligned-CelebA crop: whole image to round(R / 0.8) = 20 px, central 16 px (margin 2)."""
    width, height = _size(path)
    return (points + 0.5) * [20 / width, 20 / height] - 0.5 - 2


def _whole(path, points):
    """The whole image resized to R x R (aspect ignored)."""
    width, height = _size(path)
    return (points + 0.5) * [R / width, R / height] - 0.5


def _check_round_trip(split_dir: pathlib.Path, samples, expected, visibility: bool) -> None:
    """Every record: landmarks (and visibility) as the protocol maps them; the drawn mark at the marked landmark."""
    source = ArrayRecordImages(str(split_dir), R)
    assert len(source) == len(samples)
    assert source.has_visibility == visibility
    for index, (path, points, stored_visibility) in enumerate(samples):
        item = source[index]
        np.testing.assert_allclose(item["landmarks"], pixel_to_normalized(expected(path, points), R), atol=1e-4)
        if visibility:
            np.testing.assert_array_equal(item["visibility"], stored_visibility)
        else:
            assert "visibility" not in item
        gray = item["image"].astype(np.float64).mean(axis=-1)
        weights = np.clip(gray - 100.0, 0.0, None)
        rows, columns = np.indices(gray.shape)
        centroid = np.array([(weights * columns).sum(), (weights * rows).sum()]) / weights.sum()
        mark = expected(path, np.rint(points[MARKED:MARKED + 1]))[0]
        assert np.abs(centroid - mark).max() < 0.75, (path, centroid, mark)


def _manifest(out: pathlib.Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def _check_manifest(out: pathlib.Path, dataset: str, counts: dict[str, int], num_landmarks: int) -> dict:
    manifest = _manifest(out)
    assert manifest["dataset"] == dataset and manifest["resolution"] == R and manifest["num_landmarks"] == num_landmarks
    assert {name: entry["count"] for name, entry in manifest["splits"].items()} == counts
    for name, entry in manifest["splits"].items():
        assert entry["directory"] == name and read_metadata(str(out / name))["count"] == counts[name]
    for source in manifest["sources"]:
        assert source["bytes"] == (out.parent / "data" / source["path"]).stat().st_size > 0
    for variant in manifest.get("evaluation", {}).values():
        assert set(variant.values()) <= set(counts)
    return manifest


# ------------------------------------------------------------------------------------------ readers

@pytest.mark.parametrize("layout", ["official", "zip"])
def test_celeba_aligned_splits_manifest_and_round_trip(tmp_path, layout):
    fixture = write_celeba(tmp_path / "data", layout)
    assert fixture.counts == {"train": 6, "mafl_train": 6, "mafl_test": 4}
    out = tmp_path / "out"
    benchmarks.prepare("celeba", fixture.root, out, R, shards=2)
    manifest = _check_manifest(out, "celeba", fixture.counts, 5)
    assert manifest["protocol"] == "mafl_aligned"
    assert manifest["landmark_names"] == ["lefteye", "righteye", "nose", "leftmouth", "rightmouth"]
    assert manifest["eye_landmarks"] == [0, 1]
    assert {pathlib.PurePath(s["path"]).name for s in manifest["sources"]} == {
        "list_landmarks_align_celeba.txt", "list_eval_partition.txt", "training.txt", "testing.txt"}
    assert manifest["evaluation"] == {"mafl_aligned": {"train": "train", "regression": "mafl_train", "test": "mafl_test"}}
    assert len(read_metadata(str(out / "train"))["shards"]) == 2
    for split, samples in fixture.samples.items():
        _check_round_trip(out / split, samples, _aligned, visibility=False)
    train_names = [path.name for path, _, _ in fixture.samples["train"]]
    assert not {f"{n:06d}.jpg" for n in MAFL_TEST} & set(train_names)  # MAFL test faces never train the GAN


def test_celeba_wild_keeps_faces_covering_30_percent(tmp_path):
    fixture = write_celeba(tmp_path / "data")
    counts = fixture.extra["wild_counts"]
    assert fixture.extra["small_faces"] == [4, 9] and counts == {"train": 5, "mafl_train": 4, "mafl_test": 4}
    out = tmp_path / "out"
    benchmarks.prepare("celeba_wild", fixture.root, out, R)
    manifest = _check_manifest(out, "celeba_wild", counts, 5)
    assert manifest["protocol"] == "celeba_wild"
    assert manifest["splits"]["train"]["listed"] == 6 and manifest["splits"]["train"]["dropped_small_face"] == 1
    assert manifest["splits"]["mafl_train"]["dropped_small_face"] == 2
    assert "list_bbox_celeba.txt" in {pathlib.PurePath(s["path"]).name for s in manifest["sources"]}
    for split, samples in fixture.extra["wild_samples"].items():
        _check_round_trip(out / split, samples, _whole, visibility=False)


def _cub_expected(boxes):
    def expected(path, points):
        """The authors' CUB crop: trim to a multiple of 16, square box around the bird clipped, resize."""
        width, height = _size(path)
        image_id = int(path.stem.split("_")[-2])
        x, y, w, h = boxes[image_id]
        trim_w, trim_h = width % 16, height % 16
        centre_x, centre_y, half = x + w / 2, y + h / 2, max(w, h) / 2
        left = round(max(0, max(0, centre_x - half) - trim_w // 2))
        top = round(max(0, max(0, centre_y - half) - trim_h // 2))
        right = round(min(width - trim_w, min(width, centre_x + half)))
        bottom = round(min(height - trim_h, min(height, centre_y + half)))
        moved = points - [trim_w // 2 + left, trim_h // 2 + top]
        return (moved + 0.5) * [R / (right - left), R / (bottom - top)] - 0.5
    return expected


def test_cub_splits_visibility_and_round_trip(tmp_path):
    fixture = write_cub(tmp_path / "data")
    assert fixture.counts == {"train": 6, "test": 4, "train_three": 4, "test_001": 1, "test_002": 1, "test_003": 1}
    out = tmp_path / "out"
    benchmarks.prepare("cub", fixture.root, out, R, shards=3)
    manifest = _check_manifest(out, "cub", fixture.counts, 15)
    assert manifest["landmark_names"][:3] == ["back", "beak", "belly"] and manifest["landmark_names"][6] == "left eye"
    assert manifest["evaluation"]["cub_002"] == {"train": "train_three", "regression": "train_three", "test": "test_002"}
    assert read_metadata(str(out / "test"))["keys"] == ["image", "landmarks", "visibility"]
    hidden = 0
    for split, samples in fixture.samples.items():
        _check_round_trip(out / split, samples, _cub_expected(fixture.extra["boxes"]), visibility=True)
        hidden += sum(int((v == 0).sum()) for _, _, v in samples)
    assert hidden > 2 * sum(fixture.counts.values())  # parts 3 and 9 everywhere, and trimmed-off parts


@pytest.mark.parametrize("table", ["csv", "pkl"])
def test_taichi_splits_missing_joints_and_round_trip(tmp_path, table):
    if table == "pkl":
        pytest.importorskip("pandas")
    fixture = write_taichi(tmp_path / "data", pickle=table == "pkl")
    assert fixture.counts == {"train": 5, "regression_train": 4, "test": 3}
    out = tmp_path / "out"
    benchmarks.prepare("taichi", fixture.root, out, R)
    manifest = _check_manifest(out, "taichi", fixture.counts, 18)
    assert manifest["error_resolution"] == 256
    assert manifest["evaluation"]["taichi"] == {"train": "train", "regression": "regression_train", "test": "test"}
    assert read_metadata(str(out / "train"))["keys"] == ["image"]
    for split in ("regression_train", "test"):
        _check_round_trip(out / split, fixture.samples[split], _whole, visibility=True)
    assert ArrayRecordImages(str(out / "test"), R)[0]["visibility"].sum() == 16  # joints 3 and 10 missing


def test_h36m_subjects_activities_sequences_and_round_trip(tmp_path):
    fixture = write_h36m(tmp_path / "data")
    assert fixture.counts == {"train": 13, "test": 5}  # Eating and Smoking are left out
    out = tmp_path / "out"
    benchmarks.prepare("h36m_simplified", fixture.root, out, R)
    manifest = _check_manifest(out, "h36m_simplified", fixture.counts, 32)
    assert manifest["landmark_names"][11] == "pelvis" and [6, 1] in manifest["left_right_pairs"]
    sequences = manifest["splits"]["train"]["sequences"]
    assert [(s["subject"], s["sequence"], s["count"]) for s in sequences] == fixture.extra["sequences"]["train"]
    assert [s["start"] for s in sequences] == list(np.cumsum([0] + [s["count"] for s in sequences[:-1]]))
    assert [s["activity"] for s in manifest["splits"]["test"]["sequences"]] == ["Directions", "Posing"]
    for split, samples in fixture.samples.items():
        _check_round_trip(out / split, samples, lambda path, points: points, visibility=False)

    masked = tmp_path / "masked"
    benchmarks.prepare("h36m_simplified", fixture.root, masked, R, remove_background=True)
    assert _manifest(masked)["background_removed"] is True
    image = ArrayRecordImages(str(masked / "test"), R)[0]["image"]
    assert image[:2].max() == 0 and image[:, :3].max() == 0 and image[2:-2, 3:-3].max() > 0


def test_cli_prepares_and_reports_one_line_errors(tmp_path, capsys):
    root = write_cub(tmp_path / "data").root
    assert main(["prepare", "cub", "--root", str(root), "--out", str(tmp_path / "out"), "--resolution", str(R)]) == 0
    assert "train 6, test 4, train_three 4, test_001 1" in capsys.readouterr().out
    for flags, message in ((["--resolution", "0"], "--resolution must be positive, got 0"),
                           (["--shards", "-1"], "--shards must be positive, got -1")):
        assert main(["prepare", "cub", "--root", str(root), "--out", str(tmp_path / "bad"), *flags]) == EXIT_BAD_INPUT
        assert capsys.readouterr().err == f"lkgan: error: {message}\n"
    assert main(["prepare", "taichi", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "bad")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == f"lkgan: error: --root {tmp_path / 'nowhere'} is not an existing directory\n"
    (root / "CUB_200_2011" / "bounding_boxes.txt").unlink()
    assert main(["prepare", "cub", "--root", str(root), "--out", str(tmp_path / "bad")]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert error.startswith("lkgan: error: ") and error.count("\n") == 1 and "bounding_boxes.txt" in error
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------ errors

def test_a_tfds_celeb_a_directory_is_refused_with_the_reason(tmp_path):
    info = tmp_path / "tfds" / "celeb_a" / "2.1.0" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    info.write_text("{}")
    with pytest.raises(ValueError, match=r"is a prepared TFDS celeb_a, whose records carry no file names"):
        benchmarks.prepare("celeba", tmp_path / "tfds", tmp_path / "out", R)
    assert not (tmp_path / "out").exists()


def _replace_line(path: pathlib.Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _celeba_missing_partition(fixture):
    fixture.extra["partition"].unlink()
    return "celeba", r"list_eval_partition\.txt \(CelebA's train/validation/test partition\) not found"


def _celeba_short_landmark_line(fixture):
    _replace_line(fixture.extra["annotations"] / "list_landmarks_align_celeba.txt", 5, "000003.jpg 6 9 12 9 9 12 7 16")
    return "celeba", r"list_landmarks_align_celeba\.txt:5: expected 11 columns \(image name and 10 landmark coordinates\), found 9"


def _celeba_non_numeric_landmark(fixture):
    _replace_line(fixture.extra["annotations"] / "list_landmarks_align_celeba.txt", 4, "000002.jpg 6 9 12 9 9 x 7 16 11 16")
    return "celeba", r"list_landmarks_align_celeba\.txt:4: column 7 \('x'\) is not a number"


def _celeba_wrong_count(fixture):
    _replace_line(fixture.extra["annotations"] / "list_landmarks_align_celeba.txt", 1, str(len(CELEBA_PARTITION) + 1))
    return "celeba", r"list_landmarks_align_celeba\.txt:1: the header says 13 rows, the file has 12"


def _celeba_image_absent(fixture):
    (fixture.extra["aligned_dir"] / "000007.jpg").unlink()  # listed on line 2 of MAFL's testing.txt
    return "celeba", r"MAFL/testing\.txt:2: image 000007\.jpg is not in .*img_align_celeba$"


def _celeba_wild_bad_bbox_header(fixture):
    _replace_line(fixture.extra["annotations"] / "list_bbox_celeba.txt", 2, "image_id x y w h")
    return "celeba_wild", r"list_bbox_celeba\.txt:2: expected the column names 'image_id x_1 y_1 width height'"


def _celeba_wild_missing_mafl(fixture):
    (fixture.extra["mafl_dir"] / "training.txt").unlink()
    return "celeba_wild", r"training\.txt \(MAFL's training list\) not found"


def _cub_visibility_out_of_range(fixture):
    _replace_line(fixture.extra["base"] / "parts" / "part_locs.txt", 17, "2 2 20.0 11.0 2")
    return "cub", r"part_locs\.txt:17: visibility must be 0 or 1, got '2'"


def _cub_part_line_wrong_columns(fixture):
    _replace_line(fixture.extra["base"] / "parts" / "part_locs.txt", 3, "1 3 0.0 0.0")
    return "cub", r"part_locs\.txt:3: expected 5 columns \(image id, part id, x, y, visible\), found 4"


def _cub_image_absent(fixture):
    path = fixture.samples["test"][0][0]
    path.unlink()
    return "cub", rf"images\.txt:3: image {path.parent.name}/{path.name} is not in"


def _cub_missing_split(fixture):
    (fixture.extra["base"] / "train_test_split.txt").unlink()
    return "cub", r"train_test_split\.txt \(CUB's train/test split\) not found"


def _taichi_image_absent(fixture):
    fixture.samples["test"][1][0].unlink()
    return "taichi", r"taichi_test_gt\.csv:3: image test_001\.png is not in .*taichi-256/test$"


def _taichi_short_line(fixture):
    _replace_line(fixture.extra["base"] / "landmark" / "taichi_train_gt.csv", 2, "train_000.png,1,2")
    return "taichi", r"taichi_train_gt\.csv:2: expected 37 columns"


def _h36m_missing_landmarks(fixture):
    path = fixture.extra["base"] / "S6" / "Landmarks" / "Greeting.60457274" / "000002.mat"
    path.unlink()
    return "h36m_simplified", r"S6/Landmarks/Greeting\.60457274/000002\.mat: missing \(the landmarks of .*000002\.jpg\)"


WRITERS = {"celeba": write_celeba, "celeba_wild": write_celeba, "cub": write_cub, "taichi": write_taichi,
           "h36m_simplified": write_h36m}


@pytest.mark.parametrize("damage", [
    _celeba_missing_partition, _celeba_short_landmark_line, _celeba_non_numeric_landmark, _celeba_wrong_count,
    _celeba_image_absent, _celeba_wild_bad_bbox_header, _celeba_wild_missing_mafl, _cub_visibility_out_of_range,
    _cub_part_line_wrong_columns, _cub_image_absent, _cub_missing_split, _taichi_image_absent, _taichi_short_line,
    _h36m_missing_landmarks], ids=lambda f: f.__name__.lstrip("_"))
def test_bad_inputs_are_one_line_errors_naming_the_file_and_line(tmp_path, damage):
    dataset = damage.__name__.lstrip("_").split("_")[0]
    dataset = {"h36m": "h36m_simplified"}.get(dataset, dataset)
    fixture = WRITERS[dataset](tmp_path / "data")
    dataset, pattern = damage(fixture)
    out = tmp_path / "out"
    with pytest.raises(ValueError) as raised:
        benchmarks.prepare(dataset, fixture.root, out, R)
    message = str(raised.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    assert not out.exists()  # nothing is written before the inputs validate
