"""A prepared TFDS dataset as a random-access source, read without TensorFlow (docs/design.md §6).

``TfdsImages(name, split, image_key, data_dir, resolution)`` opens ``tfds.data_source``'s reader of a
dataset prepared in TFDS's ``array_record`` file format (the only one with random access) and
serves ``dict(image=uint8 (R, R, 3))``: the feature ``image_key`` converted to RGB, centre-cropped and
resized like an image-folder file. Records that fail to decode are skipped and counted
(``lkgan_jax.data.skipping``). tensorflow-datasets is the optional extra ``lkgan_jax[tfds]``.

``write_tfds_dataset`` writes a small dataset in that layout from encoded images with TFDS's own
feature and serialisation code, which needs no TensorFlow (TFDS's builders do: they encode images
with it). Tests and benchmarks use it; a real dataset is prepared once with TFDS itself.
"""

from __future__ import annotations

import io
import os
from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image

from lkgan_jax.data.image_folder import image_item
from lkgan_jax.data.skipping import SkipsUnreadable
from lkgan_jax.utils.files import files_sha256

INSTALL_HINT = "pip install 'lkgan_jax[tfds]'"


def import_tfds() -> Any:
    """The ``tensorflow_datasets`` module, or a one-line ValueError saying how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(f"data.source=tfds needs tensorflow-datasets, which is not installed: {INSTALL_HINT}") from None
    return tfds


class TfdsImages(SkipsUnreadable):
    """Random-access source over one split of a prepared TFDS dataset (module docstring).

    One-line ValueErrors name what was expected: the dataset (``data.tfds_name`` in ``data.tfds_dir``),
    the split (``data.tfds_split``) or the image feature (``data.image_key``).
    """

    unreadable_kind = "record"

    def __init__(self, name: str, split: str, image_key: str, data_dir: str, resolution: int):
        tfds = import_tfds()
        where = data_dir or "TFDS's default data directory"
        try:
            builder = tfds.builder(name, data_dir=data_dir or None)
        except tfds.core.registered.DatasetNotFoundError:
            raise ValueError(f"TFDS dataset {name!r} (data.tfds_name) not found in {where} (data.tfds_dir): "
                             f"expected NAME/VERSION/dataset_info.json there") from None
        if not builder.is_prepared():
            raise ValueError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir} (data.tfds_dir): prepare it "
                             "with file_format='array_record' where TensorFlow is installed")
        file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
        if file_format != "array_record":
            raise ValueError(f"TFDS dataset {name!r} in {builder.data_dir} is stored as {file_format}; "
                             "random access needs file_format='array_record'")
        features = builder.info.features
        if image_key not in features:
            images = [key for key, feature in features.items() if isinstance(feature, tfds.features.Image)]
            raise ValueError(f"TFDS dataset {name!r} has no feature {image_key!r} (data.image_key); "
                             f"its image features: {', '.join(images) or 'none'}")
        if not isinstance(features[image_key], tfds.features.Image):
            raise ValueError(f"TFDS dataset {name!r}: feature {image_key!r} (data.image_key) is a "
                             f"{type(features[image_key]).__name__}, not an Image")
        try:
            self._records = builder.as_data_source(split=split)
        except (ValueError, KeyError) as error:
            raise ValueError(f"TFDS dataset {name!r} has no split {split!r} (data.tfds_split); "
                             f"its splits: {', '.join(builder.info.splits.keys())} ({str(error).splitlines()[0]})") from None
        self._init_skipping(f"tfds:{name}:{split}")
        self.name, self.split, self.image_key, self.resolution = name, split, image_key, resolution
        self.dataset_dir = os.fspath(builder.data_dir)
        self._split_files = sorted(f for f in os.listdir(self.dataset_dir) if f.startswith(f"{name.split('/')[0]}-"))
        if len(self._records) == 0:
            raise ValueError(f"TFDS dataset {name!r}, split {split!r} (data.tfds_split) holds no examples")

    def __len__(self) -> int:
        return len(self._records)

    def content_sha256(self) -> str:
        """SHA-256 over dataset_info.json, features.json and every data file of the dataset, plus split and key."""
        names = [f for f in ("dataset_info.json", "features.json") if os.path.isfile(os.path.join(self.dataset_dir, f))]
        return files_sha256(self.dataset_dir, names + self._split_files) + f":{self.split}:{self.image_key}"

    def _describe(self, index: int) -> str:
        return f"{self.root}#{index}"

    def _decode(self, index: int) -> Image.Image:
        pixels = np.asarray(self._records[index][self.image_key])
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        return Image.fromarray(pixels).convert("RGB")

    def _make_item(self, index: int, image: Image.Image) -> dict[str, np.ndarray]:
        return image_item(image, self.resolution)


def write_tfds_dataset(data_dir: str | os.PathLike, name: str, splits: Mapping[str, Iterable[np.ndarray]],
                       resolution: int, image_key: str = "image", version: str = "1.0.0") -> str:
    """Writes uint8 (R, R, 3) images as ``data_dir/name/version`` in TFDS's array_record layout → that directory.

    One shard per split, feature ``image_key`` a PNG-encoded ``tfds.features.Image``; readable with
    ``tfds.data_source(name, split=..., data_dir=data_dir)``.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    tfds = import_tfds()
    from tensorflow_datasets.core import dataset_info, example_serializer, naming
    from tensorflow_datasets.core import splits as splits_lib

    features = tfds.features.FeaturesDict({image_key: tfds.features.Image(shape=(resolution, resolution, 3), encoding_format="png")})
    root = os.path.join(os.fspath(data_dir), name, version)
    os.makedirs(root, exist_ok=True)
    serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
    split_infos = []
    for split, images in splits.items():
        template = naming.ShardedFileTemplate(data_dir=root, dataset_name=name, split=split, filetype_suffix="array_record")
        writer = ArrayRecordWriter(os.fspath(template.sharded_filepath(shard_index=0, num_shards=1)), "group_size:1")
        count = num_bytes = 0
        try:
            for image in images:
                encoded = io.BytesIO()
                Image.fromarray(np.asarray(image, np.uint8)).save(encoded, format="PNG")
                record = serializer.serialize_example(features.encode_example({image_key: encoded.getvalue()}))
                writer.write(record)
                count, num_bytes = count + 1, num_bytes + len(record)
        finally:
            writer.close()
        split_infos.append(splits_lib.SplitInfo(name=split, shard_lengths=[count], num_bytes=num_bytes, filename_template=template))
    info = dataset_info.DatasetInfo(builder=dataset_info.DatasetIdentity(name=name, version=version, data_dir=root, module_name=""),
                                    features=features)
    info.set_splits(splits_lib.SplitDict(split_infos))
    info.set_file_format("array_record")
    info.write_to_directory(root)
    return root
