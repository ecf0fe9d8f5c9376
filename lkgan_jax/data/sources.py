"""Which images a run reads: one ``ImageSource`` for training data, real FID images and landmark sets.

The same two kinds serve every consumer, written the same way everywhere:

    procedural      the embedded procedural faces (docs/design.md §5)
    folder:PATH     an image folder (PNG/JPEG, optional landmarks.csv; docs/design.md §6)

``ImageSource.parse("folder:/data/faces")`` reads the command-line form (``--real``);
``ImageSource.from_data_config(config.data)`` the config form (``data.source``, ``data.path``), so a
run evaluated during training compares against the very images it trains on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lkgan_jax.data.image_folder import ImageFolder
from lkgan_jax.data.procedural import ProceduralFaces

PROCEDURAL = "procedural"
FOLDER = "folder"
KINDS = (PROCEDURAL, FOLDER)


@dataclasses.dataclass(frozen=True)
class ImageSource:
    """``kind`` is ``procedural`` or ``folder``; ``path`` is the folder (empty for procedural)."""

    kind: str
    path: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Unknown data source {self.kind!r}; valid choices: {', '.join(KINDS)}.")
        if self.kind == FOLDER and not self.path:
            raise ValueError("an image folder source needs a path (folder:PATH, or data.path)")

    @classmethod
    def parse(cls, text: str) -> "ImageSource":
        """``procedural`` or ``folder:PATH``."""
        if text == PROCEDURAL:
            return cls(PROCEDURAL)
        if text.startswith(f"{FOLDER}:"):
            return cls(FOLDER, text.removeprefix(f"{FOLDER}:"))
        raise ValueError(f"unknown image source {text!r}; use procedural or folder:PATH")

    @classmethod
    def from_data_config(cls, data_config: Any) -> "ImageSource":
        """From ``data.source`` and ``data.path``."""
        return cls(data_config.source, data_config.path if data_config.source == FOLDER else "")

    def __str__(self) -> str:
        return PROCEDURAL if self.kind == PROCEDURAL else f"{FOLDER}:{self.path}"

    def open(self, resolution: int, data_seed: int = 0, split: str = "train", size: int | None = None,
             require_landmarks: bool = False) -> ProceduralFaces | ImageFolder:
        """The random-access dataset (``len``, ``[i]`` → dict with ``image`` uint8 (R, R, 3), ...).

        ``split``, ``size`` and ``data_seed`` select procedural faces; a folder has one split.
        """
        if self.kind == PROCEDURAL:
            return ProceduralFaces(seed=data_seed, split=split, resolution=resolution, size=size)
        return ImageFolder(self.path, resolution, require_landmarks=require_landmarks)
