"""Input robustness: 16-bit images, landmark CSVs that training does not need, overrides on a saved run."""

import json

import ml_collections
import numpy as np
import pytest
from PIL import Image

from lkgan_jax.config_loading import config_for_run, load_config
from lkgan_jax.data.export import export_procedural
from lkgan_jax.data.image_folder import ImageFolder, decode_rgb
from lkgan_jax.workdir import CONFIG_FILE, read_config


def test_sixteen_bit_grayscale_png_keeps_its_grey(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 6), 32896, np.uint16)).save(path)  # mid-grey in 16 bits
    assert Image.open(path).mode.startswith("I")
    np.testing.assert_array_equal(np.asarray(decode_rgb(str(path))), np.full((4, 6, 3), 128, np.uint8))


def test_unreadable_landmarks_csv_does_not_block_training_but_does_block_evaluation(tmp_path):
    folder = export_procedural(tmp_path / "faces", 3, 16)
    (folder / "landmarks.csv").write_text("name,a,b\nimages/000000.png,1,2\n")
    training = ImageFolder(str(folder), 16)
    assert len(training) == 3 and not training.has_landmarks and set(training[0]) == {"image"}
    with pytest.raises(ValueError, match="bad header"):
        ImageFolder(str(folder), 16, require_landmarks=True)


@pytest.mark.parametrize("first_column", ["file", "image", "path", "filename"])
def test_landmarks_csv_accepts_common_first_column_names(tmp_path, first_column):
    folder = export_procedural(tmp_path / "faces", 2, 16)
    csv = (folder / "landmarks.csv").read_text().splitlines()
    (folder / "landmarks.csv").write_text("\n".join([first_column + csv[0][len("filename"):], *csv[1:]]) + "\n")
    assert ImageFolder(str(folder), 16, require_landmarks=True).num_landmarks == 10


def test_tuple_fields_of_a_saved_run_can_be_overridden(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(json.dumps(load_config("configs/tiny.py").to_dict()))
    saved = read_config(tmp_path)
    assert saved.eval.eye_landmarks == (0, 1) and isinstance(saved.model.g_channels, tuple)
    config = config_for_run(saved, ("eval",), None, ["--config.eval.eye_landmarks=(2,3)", "--config.model.g_channels=(8,8)"])
    assert config.eval.eye_landmarks == (2, 3) and config.model.g_channels == (8, 8)


def test_resume_refuses_a_config_that_differs_in_a_fixed_field(tmp_path):
    from lkgan_jax.checkpoint import CheckpointMismatchError
    from lkgan_jax.workdir import write_config

    config = load_config("configs/keypointgan_tiny.py").to_dict()
    config["perceptual"]["used"] = "random_vgg19"
    write_config(tmp_path, ml_collections.ConfigDict(config), resuming=False)
    config["perceptual"]["used"], config["train"]["steps"] = "pyramid", 99
    changed = ml_collections.ConfigDict(config)
    with pytest.raises(CheckpointMismatchError, match=r"differs in perceptual\.used\)"):
        write_config(tmp_path, changed, resuming=True, fixed=("model", "perceptual.used"))
    write_config(tmp_path, changed, resuming=True)  # only model fixed: train and perceptual may change
