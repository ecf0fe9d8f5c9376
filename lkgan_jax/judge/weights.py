"""The judge's weight file (``judge.msgpack``): write it after training, load it to evaluate.

One msgpack file (flax.serialization) holds the network's variables, its ``judge`` config section, the
attribute standardisation and the held-out scores, so the evaluator needs nothing else.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pathlib
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from lkgan_jax.judge.model import Judge, JudgeOutput, make_judge
from lkgan_jax.utils import files

FORMAT = "lkgan_jax judge"
# The judge shipped with the package: `lkgan judge train` with configs/default.py (docs/design.md §7.7).
SHIPPED_FILE = "procedural_faces_judge.msgpack"
SHIPPED_SHA256 = "c631e8ac533db6294cd27ba272621aeda57a3a0802681765d101c7a98a915afa"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainedJudge:
    """A judge with its variables; ``outputs(images in [-1, 1])`` → ``JudgeOutput`` in eval mode."""

    judge: Judge
    variables: Any
    config: ml_collections.ConfigDict  # the judge section it was trained with
    attribute_mean: np.ndarray  # (A,)
    attribute_std: np.ndarray  # (A,)
    heldout: dict[str, float]  # its scores on the held-out real faces
    sha256: str = ""

    def outputs(self, images: jax.Array) -> JudgeOutput:
        return float_judge_outputs(self.judge, self.variables, images)

    def attributes(self, standardised: np.ndarray) -> np.ndarray:
        """Standardised attribute predictions → attribute units."""
        return standardised * self.attribute_std + self.attribute_mean


@functools.partial(jax.jit, static_argnums=0)
def float_judge_outputs(judge: Judge, variables: Any, images: jax.Array) -> JudgeOutput:
    """The judge in eval mode on float images (B, R, R, 3) in [-1, 1] (``evaluation.judged`` takes uint8)."""
    return judge.apply(variables, images, train=False)


def save_judge(path: str | pathlib.Path, trained: TrainedJudge) -> None:
    """Writes ``trained`` to ``path`` atomically."""
    content = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(trained.config.to_dict()),
        "num_landmarks": trained.judge.num_landmarks,
        "num_attributes": trained.judge.num_attributes,
        "attribute_mean": np.asarray(trained.attribute_mean, np.float32),
        "attribute_std": np.asarray(trained.attribute_std, np.float32),
        "heldout": json.dumps(trained.heldout),
        "variables": jax.device_get(trained.variables),
    }
    data = flax.serialization.msgpack_serialize(content)
    files.write_atomically(path, lambda f: f.write(data))


def shipped_judge_path() -> pathlib.Path:
    """The judge weights shipped inside the package (the default of ``eval.judge_weights``)."""
    return pathlib.Path(__file__).with_name(SHIPPED_FILE)


def load_judge(path: str | pathlib.Path) -> TrainedJudge:
    """The judge saved at ``path``; a one-line ``ValueError`` for a file that is not one."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no judge weights at {path}; train them with `lkgan judge train`")
    data = path.read_bytes()
    try:
        content = flax.serialization.msgpack_restore(data)
        valid = isinstance(content, dict) and content.get("format") == FORMAT
    except Exception:  # msgpack raises several types on foreign bytes
        valid = False
    if not valid:
        raise ValueError(f"{path} is not a judge weight file (written by `lkgan judge train`)")
    if content["version"] != VERSION:
        raise ValueError(f"{path} has judge format version {content['version']}; this lkgan_jax reads {VERSION}")
    config = ml_collections.ConfigDict(json.loads(content["config"]))
    judge = make_judge(config, int(content["num_landmarks"]), int(content["num_attributes"]))
    return TrainedJudge(
        judge,
        content["variables"],
        config,
        np.asarray(content["attribute_mean"]),
        np.asarray(content["attribute_std"]),
        json.loads(content["heldout"]),
        sha256=hashlib.sha256(data).hexdigest(),
    )
