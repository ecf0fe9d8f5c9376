"""Which images a run reads: one ``ImageSource`` for training data, real FID images and landmark sets.

The same kinds serve every consumer, written the same way everywhere:

    procedural        the embedded procedural faces (docs/design.md §5)
    folder:PATH       an image folder (PNG/JPEG, optional landmarks.csv; docs/design.md §6)
    arrayrecord:PATH  ArrayRecord shards written by ``lkgan prepare ... --format arrayrecord``
    tfds              a prepared TFDS dataset (config form only: data.tfds_name, data.tfds_split,
                      data.image_key, data.tfds_dir)

``ImageSource.parse("folder:/data/faces")`` reads the command-line form (``--real``);
``ImageSource.from_data_config(config.data)`` the config form (``data.source``, ``data.path``, ...), so
a run evaluated during training compares against the very images it trains on. Its one-line errors
name the config field.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from lkgan_jax.data.procedural import ProceduralFaces

PROCEDURAL = "procedural"
FOLDER = "folder"
ARRAYRECORD = "arrayrecord"
TFDS = "tfds"
KINDS = (PROCEDURAL, FOLDER, ARRAYRECORD, TFDS)
PATH_KINDS = (FOLDER, ARRAYRECORD)  # written KIND:PATH
DEFAULT_TFDS_SPLIT = "train"
DEFAULT_IMAGE_KEY = "image"
UNLABELLED_TFDS = "a TFDS source carries no landmarks; use procedural, folder:PATH or arrayrecord:PATH"


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """``kind`` (``KINDS``); ``path``: the folder or ArrayRecord directory, or TFDS's data dir (may be empty).

    ``tfds_name``, ``tfds_split`` and ``image_key`` select a TFDS dataset's split and image feature.
    """

    kind: str
    path: str = ""
    tfds_name: str = ""
    tfds_split: str = DEFAULT_TFDS_SPLIT
    image_key: str = DEFAULT_IMAGE_KEY

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown data source {self.kind!r}; valid choices: {', '.join(KINDS)}.")
        if self.kind in PATH_KINDS and not self.path:
            raise ValueError(f"a {self.kind} source needs a path ({self.kind}:PATH, or data.path)")
        if self.kind == TFDS and not self.tfds_name:
            raise ValueError("data.source=tfds needs data.tfds_name, the TFDS dataset's name")

    @classmethod
    def parse(cls, text: str) -> "ImageSource":
        """``procedural``, ``folder:PATH`` or ``arrayrecord:PATH``."""
        if text == PROCEDURAL:
            return cls(PROCEDURAL)
        for kind in PATH_KINDS:
            if text.startswith(f"{kind}:"):
                return cls(kind, text.removeprefix(f"{kind}:"))
        raise ValueError(f"unknown image source {text!r}; use procedural, folder:PATH or arrayrecord:PATH")

    @classmethod
    def from_data_config(cls, data_config: Any) -> "ImageSource":
        """From ``data.source`` and ``data.path`` (or ``data.tfds_*``, ``data.image_key``); errors name the field."""
        kind = data_config.source
        if kind not in KINDS:
            raise ValueError(f"Unknown data source {kind!r}; valid choices: {', '.join(KINDS)}.")
        if kind in PATH_KINDS:
            if not data_config.path:
                raise ValueError(f"data.source={kind} needs data.path, the {'image folder' if kind == FOLDER else 'ArrayRecord directory'}")
            if not os.path.isdir(data_config.path):
                raise ValueError(f"data.path={data_config.path!r} is not an existing directory")
            return cls(kind, data_config.path)
        if kind == TFDS:
            return cls(TFDS, data_config.get("tfds_dir", ""), data_config.get("tfds_name", ""),
                       data_config.get("tfds_split", DEFAULT_TFDS_SPLIT), data_config.get("image_key", DEFAULT_IMAGE_KEY))
        return cls(kind)

    def __str__(self) -> str:
        if self.kind == TFDS:
            return f"{TFDS}:{self.tfds_name}:{self.tfds_split}"
        return PROCEDURAL if self.kind == PROCEDURAL else f"{self.kind}:{self.path}"

    def open(self, resolution: int, data_seed: int = 0, split: str = "train", size: int | None = None,
             require_landmarks: bool = False) -> Any:
        """The random-access dataset (``len``, ``[i]`` → dict with ``image`` uint8 (R, R, 3), ...).

        ``split``, ``size`` and ``data_seed`` select procedural faces; a stored set has one split (a
        TFDS source's is ``tfds_split``). Stored sets also have ``read(i)`` (None for a corrupt item).
        """
        if self.kind == PROCEDURAL:
            return ProceduralFaces(seed=data_seed, split=split, resolution=resolution, size=size)
        if self.kind == FOLDER:
            from lkgan_jax.data.image_folder import ImageFolder

            return ImageFolder(self.path, resolution, require_landmarks=require_landmarks)
        if self.kind == ARRAYRECORD:
            from lkgan_jax.data.array_records import ArrayRecordImages

            return ArrayRecordImages(self.path, resolution, require_landmarks=require_landmarks)
        if require_landmarks:
            raise ValueError(f"{self}: {UNLABELLED_TFDS}")
        from lkgan_jax.data.tfds_source import TfdsImages

        return TfdsImages(self.tfds_name, self.tfds_split, self.image_key, self.path, resolution)
