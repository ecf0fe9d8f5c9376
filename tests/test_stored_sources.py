"""ArrayRecord and TFDS sources (docs/design.md §6): prepare, read back, skip corrupt records, train, evaluate."""

import json
import logging

import msgpack
import numpy as np
import pytest

from lkgan_jax.cli.main import main
from lkgan_jax.data import array_records, export, pipeline, skipping
from lkgan_jax.data.array_records import ArrayRecordImages
from lkgan_jax.data.image_folder import ImageFolder
from lkgan_jax.data.procedural import ATTRIBUTE_NAMES, ProceduralFaces
from lkgan_jax.data.sources import ImageSource

TINY = "configs/tiny.py"
RESOLUTION = 32  # configs/tiny.py
NUM = 10


def _prepare(out, *extra) -> None:
    assert main(["prepare", "procedural", "--out", str(out), "--num", str(NUM), "--resolution", str(RESOLUTION),
                 "--format", "arrayrecord", *extra]) == 0


@pytest.fixture(scope="module")
def procedural_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("records") / "faces"
    _prepare(out, "--shards", "3")
    return out


def pipeline_config(**fields):
    import ml_collections

    base = dict(source="procedural", path="", resolution=RESOLUTION, seed=0, random_flip=False, num_threads=2,
                prefetch=2, num_workers=0, tfds_name="", tfds_split="train", image_key="image", tfds_dir="")
    return ml_collections.ConfigDict({**base, **fields})


def _one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("lkgan: error: "), err
    return err[0]


# ------------------------------------------------------------------------------------- ArrayRecord


def test_prepare_procedural_writes_shards_and_metadata(procedural_records):
    metadata = json.loads((procedural_records / array_records.METADATA_FILE).read_text())
    assert metadata["format"] == array_records.FORMAT and metadata["format_version"] == array_records.FORMAT_VERSION
    assert metadata["count"] == NUM and metadata["resolution"] == RESOLUTION
    assert metadata["keys"] == ["image", "landmarks", "attributes"] and metadata["num_landmarks"] == 10
    assert metadata["attribute_names"] == list(ATTRIBUTE_NAMES)
    assert [shard["count"] for shard in metadata["shards"]] == [4, 3, 3]
    assert all((procedural_records / shard["file"]).is_file() for shard in metadata["shards"])


def test_records_read_back_as_the_faces(procedural_records):
    records = ArrayRecordImages(str(procedural_records), RESOLUTION, require_landmarks=True)
    faces = ProceduralFaces(seed=0, resolution=RESOLUTION)
    assert len(records) == NUM
    for i in range(NUM):  # record i is face i, across shard boundaries
        item, face = records[i], faces[i]
        np.testing.assert_array_equal(item["image"], face["image"])  # PNG: lossless
        np.testing.assert_allclose(item["landmarks"], face["landmarks"], atol=1e-5)
        np.testing.assert_array_equal(item["attributes"], face["attributes"])
    smaller = ArrayRecordImages(str(procedural_records), 16)[3]
    assert smaller["image"].shape == (16, 16, 3) and smaller["landmarks"].shape == (10, 2)


def test_prepare_folder_matches_the_folder_and_skips_unreadable_images(tmp_path, capsys):
    folder = tmp_path / "faces"
    export.export_procedural(folder, num=5, resolution=40)
    (folder / "images" / "zz_broken.png").write_bytes(b"not a png")
    out = tmp_path / "records"
    assert main(["prepare", "folder", "--path", str(folder), "--out", str(out), "--resolution", str(RESOLUTION), "--shards", "2"]) == 0
    printed = capsys.readouterr().out
    assert "wrote 5 records" in printed and "skipped 1 unreadable image" in printed
    source = ImageFolder(str(folder), RESOLUTION)
    records = ArrayRecordImages(str(out), RESOLUTION)
    _, names, attributes = export.read_attributes_csv(folder / export.ATTRIBUTES_CSV)
    assert len(records) == 5 and records.metadata["attribute_names"] == names
    for i in range(5):
        np.testing.assert_array_equal(records[i]["image"], source[i]["image"])
        np.testing.assert_allclose(records[i]["landmarks"], source[i]["landmarks"], atol=1e-5)
        np.testing.assert_allclose(records[i]["attributes"], attributes[i])


def _rewrite_shard(path, replace: dict[int, bytes]) -> None:
    """Rewrites one shard with records ``replace[i]`` in place of record i."""
    import grain
    from array_record.python.array_record_module import ArrayRecordWriter

    source = grain.sources.ArrayRecordDataSource([str(path)])
    records = [replace.get(i, source[i]) for i in range(len(source))]
    writer = ArrayRecordWriter(str(path), array_records.WRITER_OPTIONS)
    for record in records:
        writer.write(record)
    writer.close()


def test_corrupt_records_are_skipped_counted_and_logged(tmp_path, caplog):
    out = tmp_path / "faces"
    _prepare(out)
    shard = out / json.loads((out / array_records.METADATA_FILE).read_text())["shards"][0]["file"]
    bad_png = msgpack.packb({"image": b"\x89PNG\r\n\x1a\n truncated", "landmarks": b"", "attributes": b""})
    _rewrite_shard(shard, {1: b"not msgpack at all \xff", 4: bad_png})
    records = ArrayRecordImages(str(out), RESOLUTION)
    before = skipping.total_skipped()
    with caplog.at_level(logging.WARNING):
        items = [records[i] for i in range(NUM)]
    np.testing.assert_array_equal(items[1]["image"], items[2]["image"])  # falls back to the next readable record
    np.testing.assert_array_equal(items[4]["image"], items[5]["image"])
    assert records.num_skipped == 2 and skipping.total_skipped() == before + 2
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"{out}#1" in messages and f"{out}#4" in messages and "unreadable record" in messages


def test_damaged_chunk_costs_only_its_records(tmp_path):
    out = tmp_path / "faces"
    _prepare(out)
    shard = out / json.loads((out / array_records.METADATA_FILE).read_text())["shards"][0]["file"]
    intact = [item["image"] for item in map(ArrayRecordImages(str(out), RESOLUTION).read, range(NUM))]
    data = bytearray(shard.read_bytes())
    written = data.find(bytes(256)) // 2  # inside the records (before the zero padding and the footer's index)
    data[written: written + 32] = bytes(b ^ 0xFF for b in data[written: written + 32])
    shard.write_bytes(bytes(data))
    records = ArrayRecordImages(str(out), RESOLUTION)
    read = [records.read(i) for i in range(NUM)]
    assert 1 <= sum(item is None for item in read) < NUM and records.num_skipped == sum(item is None for item in read)
    for item, expected in zip(read, intact):
        if item is not None:
            np.testing.assert_array_equal(item["image"], expected)


@pytest.mark.slow
def test_arrayrecord_round_trip_train_detect_evaluate_landmarks(procedural_records, tmp_path):
    """Prepare (fixture), train the GAN on the shards, train the detector with the landmark metric on
    them, then `lkgan evaluate --metrics landmarks` on the run's labelled ArrayRecord data."""
    workdir = tmp_path / "run"
    data = ["--config.data.source=arrayrecord", f"--config.data.path={procedural_records}"]
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", *data, "--config.train.steps=2"]) == 0
    assert json.loads((workdir / "config.json").read_text())["data"]["source"] == "arrayrecord"
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2] and np.isfinite(rows[0]["d_loss"])
    assert main(["detect", "--workdir", str(workdir), "--config.detect.eval_every=4"]) == 0
    detector_rows = [json.loads(line) for line in (workdir / "detector" / "metrics.jsonl").read_text().splitlines()]
    assert any("landmarks/error_iod_pct" in row for row in detector_rows)
    out = tmp_path / "landmarks.json"
    assert main(["evaluate", "--workdir", str(workdir), "--metrics", "landmarks", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["landmarks/source"] == f"arrayrecord:{procedural_records}"
    assert result["landmarks/num_landmarks"] == 10 and result["landmarks/num_train"] + result["landmarks/num_test"] == NUM
    assert np.isfinite(result["landmarks/error_iod_pct"]) and result["landmarks/error_iod_pct"] > 0


def test_arrayrecord_pipeline_batches_and_landmark_splits(procedural_records):
    config = pipeline_config(source="arrayrecord", path=str(procedural_records))
    batch = next(iter(pipeline.make_train_dataset(config, 4, seed=0)))
    assert set(batch) == {"image"} and batch["image"].shape == (4, RESOLUTION, RESOLUTION, 3)
    from lkgan_jax.evaluation.landmarks import load_labelled_splits

    train, test = load_labelled_splits(f"arrayrecord:{procedural_records}", RESOLUTION, 100, 3, 0.2, seed=0)
    assert len(test) == 2 and len(train) == NUM - 2 and train.landmarks.shape[1:] == (10, 2)


@pytest.mark.parametrize("case", ["missing dir", "no metadata", "format version", "no path", "unlabelled"])
def test_bad_arrayrecord_input_gives_one_line_error(procedural_records, tmp_path, capsys, case):
    run = ["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", "--config.data.source=arrayrecord"]
    if case == "missing dir":
        message = _one_line_error(capsys, [*run, f"--config.data.path={tmp_path / 'nope'}"])
        assert f"data.path='{tmp_path / 'nope'}' is not an existing directory" in message
    elif case == "no metadata":
        (tmp_path / "empty").mkdir()
        message = _one_line_error(capsys, [*run, f"--config.data.path={tmp_path / 'empty'}"])
        assert f"{tmp_path / 'empty'}: no metadata.json" in message
    elif case == "format version":
        copy = tmp_path / "copy"
        copy.mkdir()
        metadata = json.loads((procedural_records / "metadata.json").read_text())
        (copy / "metadata.json").write_text(json.dumps({**metadata, "format_version": 99}))
        message = _one_line_error(capsys, [*run, f"--config.data.path={copy}"])
        assert "metadata.json: format version 99; this lkgan_jax reads version 1" in message
    elif case == "no path":
        assert "data.source=arrayrecord needs data.path" in _one_line_error(capsys, run)
    else:
        folder = tmp_path / "plain"
        export.export_procedural(folder, num=2, resolution=RESOLUTION)
        (folder / export.LANDMARKS_CSV).unlink()
        (folder / export.ATTRIBUTES_CSV).unlink()
        assert main(["prepare", "folder", "--path", str(folder), "--out", str(tmp_path / "plain_records"), "--resolution", "32"]) == 0
        assert ArrayRecordImages(str(tmp_path / "plain_records"), RESOLUTION).keys == ("image",)
        with pytest.raises(ValueError, match="has no landmarks"):
            from lkgan_jax.evaluation.landmarks import check_labelled

            check_labelled(ImageSource.parse(f"arrayrecord:{tmp_path / 'plain_records'}"))


@pytest.mark.parametrize("argv, message", [
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "2", "--format", "arrayrecord", "--shards", "3"],
     "--shards must be between 1 and the number of images (2), got 3"),
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "2", "--format", "arrayrecord", "--shards", "0"], "--shards must be positive, got 0"),
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "2", "--resolution", "0"], "--resolution must be positive, got 0"),
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "2", "--resolution", "7"], "--resolution must be at least 8, got 7"),
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "2", "--seed", "-1"], "--seed must be non-negative, got -1"),
    (["prepare", "folder", "--path", "{tmp}", "--out", "{tmp}/r"], "holds no usable .png/.jpg/.jpeg images"),
    (["prepare", "folder", "--path", "{tmp}/nope", "--out", "{tmp}/r"], "--path {tmp}/nope is not an existing directory"),
    (["prepare", "procedural", "--out", "{tmp}/r", "--num", "4", "--shards", "2"], "--shards splits ArrayRecord files; it needs --format arrayrecord"),
])
def test_bad_prepare_flags_give_one_line_errors(tmp_path, capsys, argv, message):
    assert message.format(tmp=tmp_path) in _one_line_error(capsys, [a.format(tmp=tmp_path) for a in argv])
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------------------------------------------- TFDS


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tiny TFDS dataset 'tinyfaces' (array_record files; splits train of 12 and test of 4 faces,
    image feature 'face'), built without TensorFlow."""
    pytest.importorskip("tensorflow_datasets")
    from lkgan_jax.data.tfds_source import write_tfds_dataset

    data_dir = tmp_path_factory.mktemp("tfds")
    faces = ProceduralFaces(seed=0, resolution=RESOLUTION)
    splits = {"train": (faces[i]["image"] for i in range(12)), "test": (faces[i]["image"] for i in range(12, 16))}
    write_tfds_dataset(data_dir, "tinyfaces", splits, RESOLUTION, image_key="face")
    return data_dir


TFDS_FLAGS = ["--config.data.source=tfds", "--config.data.tfds_name=tinyfaces", "--config.data.image_key=face"]


def test_tfds_source_reads_the_written_images_through_tfds_data_source(tfds_dir):
    source = ImageSource.from_data_config(pipeline_config(source="tfds", tfds_name="tinyfaces", tfds_split="test",
                                                          image_key="face", tfds_dir=str(tfds_dir)))
    images = source.open(RESOLUTION)
    faces = ProceduralFaces(seed=0, resolution=RESOLUTION)
    assert len(images) == 4 and str(source) == "tfds:tinyfaces:test"
    for i in range(4):
        np.testing.assert_array_equal(images[i]["image"], faces[12 + i]["image"])
    assert source.open(16)[0]["image"].shape == (16, 16, 3)


@pytest.mark.slow
def test_train_on_tfds_dataset(tfds_dir, tmp_path):
    workdir = tmp_path / "run"
    assert main(["train", "--workdir", str(workdir), f"--config={TINY}", *TFDS_FLAGS, "--config.data.tfds_split=train",
                 f"--config.data.tfds_dir={tfds_dir}", "--config.train.steps=2"]) == 0
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [2] and np.isfinite(rows[0]["d_loss"])


@pytest.mark.parametrize("flags, message", [
    (["--config.data.tfds_name=nosuch"], "TFDS dataset 'nosuch' (data.tfds_name) not found in {dir} (data.tfds_dir)"),
    (["--config.data.tfds_split=validation"], "TFDS dataset 'tinyfaces' has no split 'validation' (data.tfds_split); its splits: train, test"),
    (["--config.data.image_key=image"], "TFDS dataset 'tinyfaces' has no feature 'image' (data.image_key); its image features: face"),
    (["--config.data.tfds_name="], "data.source=tfds needs data.tfds_name"),
])
def test_bad_tfds_input_gives_one_line_error(tfds_dir, tmp_path, capsys, flags, message):
    argv = ["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", *TFDS_FLAGS, f"--config.data.tfds_dir={tfds_dir}", *flags]
    assert message.format(dir=tfds_dir) in _one_line_error(capsys, argv)


def test_missing_tensorflow_datasets_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)  # import fails as if not installed
    argv = ["train", "--workdir", str(tmp_path / "run"), f"--config={TINY}", *TFDS_FLAGS]
    assert "pip install 'lkgan_jax[tfds]'" in _one_line_error(capsys, argv)
