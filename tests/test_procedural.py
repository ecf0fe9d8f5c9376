"""Procedural faces dataset (lkgan_jax/data/procedural.py) and its image-folder export."""

import csv

import numpy as np
import pytest

from lkgan_jax.conventions import normalized_to_pixel, pixel_to_normalized
from lkgan_jax.data.export import export_procedural, read_landmarks_csv
from lkgan_jax.data.procedural import (
    ATTRIBUTE_NAMES,
    LANDMARK_NAMES,
    SKELETON_EDGES,
    TEST_INDEX_START,
    ProceduralFaces,
    render_face,
    render_faces,
)

NUM_FACES = 24  # faces checked by the geometric tests
EYE_LANDMARKS = (LANDMARK_NAMES.index("left_eye"), LANDMARK_NAMES.index("right_eye"))
MOUTH_CENTRE = LANDMARK_NAMES.index("mouth_centre")
CHIN = LANDMARK_NAMES.index("chin")


def _pixel_at(image: np.ndarray, point: np.ndarray) -> np.ndarray:
    """RGB (as int) of the pixel nearest a normalised point."""
    column, row = np.rint(normalized_to_pixel(point, image.shape[0])).astype(int)
    return image[row, column].astype(int)


def _largest_difference_near(image: np.ndarray, point: np.ndarray, colour: np.ndarray) -> int:
    """Largest L1 colour difference from ``colour`` among the pixels within one pixel of a point."""
    column, row = np.rint(normalized_to_pixel(point, image.shape[0])).astype(int)
    neighbourhood = image[row - 1:row + 2, column - 1:column + 2].astype(int)
    return int(np.abs(neighbourhood - colour).sum(-1).max())


def test_names_and_skeleton():
    assert len(LANDMARK_NAMES) == 10 and len(ATTRIBUTE_NAMES) == 12
    assert len(SKELETON_EDGES) == 10
    assert all(0 <= i < 10 and 0 <= j < 10 and i != j for i, j in SKELETON_EDGES)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_shapes_and_dtypes(resolution):
    sample = render_face(3, 7, resolution)
    assert sample.image.shape == (resolution, resolution, 3) and sample.image.dtype == np.uint8
    assert sample.landmarks.shape == (10, 2) and sample.landmarks.dtype == np.float32
    assert sample.attributes.shape == (12,) and sample.attributes.dtype == np.float32


def test_deterministic_and_independent_of_batching():
    single = render_face(5, 11)
    again = render_face(5, 11)
    batch = render_faces(5, [2, 11, 40])
    for field in range(3):
        np.testing.assert_array_equal(single[field], again[field])
        np.testing.assert_array_equal(single[field], batch[field][1])
    assert batch.image.shape == (3, 64, 64, 3) and batch.landmarks.shape == (3, 10, 2)


def test_different_indices_and_seeds_differ():
    faces = render_faces(0, range(8))
    for i in range(8):
        for j in range(i + 1, 8):
            assert not np.array_equal(faces.image[i], faces.image[j])
            assert not np.allclose(faces.attributes[i], faces.attributes[j])
    assert not np.array_equal(render_face(0, 0).image, render_face(1, 0).image)


def test_landmarks_inside_image_and_consistent_across_resolutions():
    small, large = render_faces(9, range(NUM_FACES), 32), render_faces(9, range(NUM_FACES), 128)
    assert np.all(np.abs(small.landmarks) <= 1.0)
    one_small_pixel = 2.0 / (32 - 1)
    assert np.max(np.abs(small.landmarks - large.landmarks)) < one_small_pixel
    np.testing.assert_array_equal(small.attributes, large.attributes)


def test_landmarks_sit_on_drawn_features():
    """Within a pixel of the eyes and the mouth centre, the image differs clearly from the skin
    between mouth and chin."""
    for index in range(NUM_FACES):
        sample = render_face(2, index, 128)
        landmarks = sample.landmarks
        chin_skin = _pixel_at(sample.image, 0.3 * landmarks[MOUTH_CENTRE] + 0.7 * landmarks[CHIN])
        for landmark in (*EYE_LANDMARKS, MOUTH_CENTRE):
            difference = _largest_difference_near(sample.image, landmarks[landmark], chin_skin)
            assert difference > 50, (index, LANDMARK_NAMES[landmark], difference)


def test_face_just_inside_head_landmarks():
    """A few pixels inside the chin and head-side landmarks is the face's skin (glasses' temples run to
    the head's sides, so faces with glasses only check the chin)."""
    glasses = ATTRIBUTE_NAMES.index("glasses")
    for index in range(NUM_FACES):
        sample = render_face(4, index, 128)
        landmarks = sample.landmarks
        centre = landmarks[[LANDMARK_NAMES.index("head_left"), LANDMARK_NAMES.index("head_right")]].mean(0)
        skin = _pixel_at(sample.image, 0.3 * landmarks[MOUTH_CENTRE] + 0.7 * landmarks[CHIN])
        names = ("chin",) if sample.attributes[glasses] else ("chin", "head_left", "head_right")
        for name in names:
            point = landmarks[LANDMARK_NAMES.index(name)]
            inward = (centre - point) / np.linalg.norm(centre - point)
            step = 4 * 2.0 / 127  # four pixels
            inside = _pixel_at(sample.image, point + step * inward)
            assert np.abs(inside - skin).sum() < 30, (index, name)


def test_anti_aliased():
    image = render_face(0, 1, 64).image
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 500


def test_attribute_values_in_range():
    attributes = render_faces(1, range(64)).attributes
    columns = {name: attributes[:, i] for i, name in enumerate(ATTRIBUTE_NAMES)}
    for flag in ("glasses", "eyes_closed"):
        assert set(np.unique(columns[flag])) <= {0.0, 1.0}
    assert np.all((columns["mouth_open"] >= 0) & (columns["mouth_open"] <= 1))
    assert np.all((columns["head_scale"] >= 0.45) & (columns["head_scale"] <= 0.7))
    assert np.array_equal(columns["hair_colour_id"], np.round(columns["hair_colour_id"]))


def test_splits_are_disjoint_and_validated():
    train = ProceduralFaces(seed=0, split="train", resolution=32, size=10)
    test = ProceduralFaces(seed=0, split="test", resolution=32, size=10)
    assert len(train) == 10 and len(ProceduralFaces()) == 2**30
    item = train[3]
    assert set(item) == {"image", "landmarks", "attributes"}
    np.testing.assert_array_equal(item["image"], render_face(0, 3, 32).image)
    np.testing.assert_array_equal(test[3]["image"], render_face(0, TEST_INDEX_START + 3, 32).image)
    assert not np.array_equal(train[3]["image"], test[3]["image"])
    with pytest.raises(IndexError):
        train[10]
    with pytest.raises(ValueError, match="split"):
        ProceduralFaces(split="validation")


def test_export_round_trip(tmp_path):
    out = export_procedural(tmp_path / "faces", num=5, resolution=32, seed=7)
    filenames, pixels = read_landmarks_csv(out / "landmarks.csv")
    assert filenames == [f"images/{i:06d}.png" for i in range(5)]
    assert all((out / name).is_file() for name in filenames)
    assert pixels.shape == (5, 10, 2) and pixels.dtype == np.float32
    expected = render_faces(7, range(5), 32).landmarks
    np.testing.assert_allclose(pixel_to_normalized(pixels, 32), expected, atol=1e-4)
    with open(out / "attributes.csv", newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header == ["filename", *ATTRIBUTE_NAMES] and len(rows) == 5
    assert all(len(row) == 13 for row in rows)


def test_export_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="num"):
        export_procedural(tmp_path, num=0, resolution=32)
    with pytest.raises(ValueError, match="resolution"):
        export_procedural(tmp_path, num=2, resolution=4)


@pytest.mark.parametrize("content, message", [
    ("filename,x0,y0\nimages/a.png,1.0\n", "columns"),
    ("filename,x0,y0\nimages/a.png,1.0,abc\n", "non-numeric"),
    ("filename,x0\nimages/a.png,1.0\n", "header"),
    ("", "empty"),
])
def test_read_landmarks_csv_rejects_malformed(tmp_path, content, message):
    path = tmp_path / "landmarks.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_landmarks_csv(path)
