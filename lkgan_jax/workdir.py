"""The layout of a training work dir (docs/design.md §11), shared by training and everything that reads a run.

    WORKDIR/config.json      resolved config (rewritten on resume; the model section must not change)
    WORKDIR/checkpoints/     Orbax checkpoints of TrainState + data-iterator position
    WORKDIR/metrics.jsonl    one JSON object per logged step and per evaluation during training
    WORKDIR/events.out.tfevents.*  TensorBoard scalars and sample grids
    WORKDIR/samples/         step_XXXXXXX.png grids from the EMA generator (eval mode, keypoints drawn)
    WORKDIR/plugins/profile/ jax.profiler traces (``train.profile_steps``)
    WORKDIR/detector/        the keypoint detector trained on the generator (config.json, checkpoints/,
                             metrics.jsonl, events), written by ``lkgan detect``
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
DETECTOR_DIR = "detector"
RUN_SECTIONS = ("model", "data")  # the config sections every training run writes
# Fixed-section fields added after runs were saved, and the value the code reads when a saved config lacks
# them (``models/factory.py``): a resumed run whose config.json predates one of them is unchanged by it
# while the new config keeps that value.
ABSENT_AS = {
    "model.part_footprint": "gaussian",
    "model.footprint_points": 4,
    "model.part_mask_gating": False,
    "model.keypoint_layout_encoding": 0,
    "model.g_norm_groups": 0,
}


def read_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The resolved config a run wrote; a one-line error when ``workdir`` is not a training work dir.

    A work dir is one whose ``config.json`` holds the ``RUN_SECTIONS`` (a detector's or editor's folder does not).
    """
    path = pathlib.Path(workdir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} is not a training work dir (no {CONFIG_FILE})")
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    missing = [name for name in RUN_SECTIONS if not isinstance(saved, dict) or name not in saved]
    if missing:
        raise ValueError(f"{workdir} is not a training work dir ({CONFIG_FILE} has no {' or '.join(missing)} section)")
    return ml_collections.ConfigDict(_lists_to_tuples(saved))


def _lists_to_tuples(value):
    """JSON has no tuples: config fields that were tuples come back as lists, which overrides reject."""
    if isinstance(value, dict):
        return {k: _lists_to_tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(v) for v in value)
    return value


def write_config(
    workdir: pathlib.Path, config: ml_collections.ConfigDict, resuming: bool, fixed: tuple[str, ...] = ("model",)
) -> None:
    """Writes config.json; on resume, refuses a config that differs from the saved one in ``fixed``.

    ``fixed`` names sections or fields (``model``, ``perceptual.used``) that the checkpoints depend on;
    the one-line ``CheckpointMismatchError`` lists the fields that differ.
    """
    from lkgan_jax.checkpoint import CheckpointMismatchError
    from lkgan_jax.utils import files

    path = pathlib.Path(workdir) / CONFIG_FILE
    new = json.loads(config.to_json())
    if resuming and path.exists():
        old = json.loads(path.read_text())
        changed = [field for name in fixed for field in _changed_fields(old, new, name)]
        if changed:
            raise CheckpointMismatchError(
                f"{workdir} holds checkpoints of another model config (differs in {', '.join(changed)}); use a new --workdir"
            )
    if jax.process_index() == 0:
        files.write_json(path, new)


def _changed_fields(old: dict, new: dict, name: str) -> list[str]:
    """The dotted names under ``name`` whose values differ between two config dicts."""
    for key in name.split("."):
        old, new = (old.get(key) if isinstance(old, dict) else None), (new.get(key) if isinstance(new, dict) else None)
    if isinstance(old, dict) and isinstance(new, dict):
        return sorted(f"{name}.{k}" for k in set(old) | set(new) if old.get(k, ABSENT_AS.get(f"{name}.{k}")) != new.get(k))
    return [name] if old != new else []
