"""A paper benchmark's landmark protocol on a prepared data set (``lkgan evaluate --metrics landmarks --protocol P --data OUT``).

``OUT`` is what ``lkgan prepare <dataset>`` wrote (``lkgan_jax.data.benchmarks``): ``OUT/manifest.json``
and one ArrayRecord set per split. :func:`check_benchmark` checks that ``OUT`` holds the protocol's data
set and both of its splits (one-line errors, before any model is loaded). :func:`benchmark_landmark_metrics`
reads the protocol's regression and test splits (``lkgan_jax.evaluation.protocols``) at the detector's
input resolution (the reader resizes when the prepared resolution differs), detects keypoints on every
image in fixed-shape batches (in a multi-process job each process a share: ``parallel.map_rows``), then
runs :func:`~lkgan_jax.evaluation.protocols.protocol_error` and the mean-landmark baseline
(:func:`~lkgan_jax.evaluation.protocols.mean_landmark_error`) whole on every process.

Keys (``P`` the protocol's name):

  landmarks/protocol                  P
  landmarks/P/error                   the headline number, in landmarks/P/units
  landmarks/P/per_landmark            one value per ground-truth landmark (null where never visible at test)
  landmarks/P/num_train, num_test     images of the regression and test splits (readable ones)
  landmarks/P/num_visible_test        visible (test image, landmark) entries
  landmarks/P/unfitted_landmarks      landmarks visible in no regression image (zero weights, as the authors')
  landmarks/P/error_without_swap, num_swapped_test, train_swap_rounds, num_swapped_train,
  num_outliers_dropped                h36m only (the left/right swap and the outlier rule)
  landmarks/P/mean_landmarks/error, .../per_landmark (and .../error_without_swap, .../num_swapped_test)
                                      every test image predicted as the mean regression-train landmarks
  landmarks/P/dataset, data, regression_split, test_split, prepared_resolution, input_resolution,
  error_resolution, num_unreadable    provenance
  landmarks/num_keypoints             K of the detector
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np
from absl import logging

from lkgan_jax import parallel
from lkgan_jax.conventions import uint8_to_float
from lkgan_jax.data.benchmarks.common import MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION
from lkgan_jax.evaluation.protocols import Protocol, get_protocol, mean_landmark_error, protocol_error
from lkgan_jax.utils import files

# protocol_error's keys that the metrics name elsewhere (landmarks/protocol) or not at all for the baseline
_BASELINE_SKIPPED = ("protocol", "units", "num_train", "num_test", "num_visible_test", "unfitted_landmarks")


def check_benchmark(data_dir: str, protocol: str | Protocol) -> tuple[Protocol, dict[str, Any]]:
    """(protocol, manifest) when ``data_dir`` is a prepared set of the protocol's data set with both of its
    splits; else a one-line ``ValueError`` naming ``--data`` and what to run."""
    p = get_protocol(protocol)
    prepare = f"`lkgan prepare {p.dataset} --root DIR --out {data_dir}`"
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data {data_dir} is not an existing directory; write it with {prepare}")
    path = os.path.join(data_dir, MANIFEST_FILE)
    if not os.path.isfile(path):
        raise ValueError(f"--data {data_dir} has no {MANIFEST_FILE}; write it with {prepare}")
    manifest = files.read_format_json(path, MANIFEST_FORMAT, MANIFEST_VERSION, "a benchmark manifest", f"write it with {prepare}")
    dataset = manifest.get("dataset")
    if dataset != p.dataset:
        raise ValueError(f"--data {data_dir} holds {dataset!r} (`lkgan prepare {dataset}`), but --protocol {p.name} "
                         f"needs {p.dataset!r}: {prepare}")
    splits = manifest.get("splits", {})
    for role, name in (("regression", p.regression_split), ("test", p.test_split)):
        if name not in splits:
            raise ValueError(f"--data {data_dir}: the {role} split {name!r} of --protocol {p.name} is missing from "
                             f"{MANIFEST_FILE} (it lists {', '.join(splits) or 'none'}); prepare the data set again")
        if not os.path.isdir(os.path.join(data_dir, splits[name].get("directory", name))):
            raise ValueError(f"--data {data_dir}: the {role} split directory {splits[name].get('directory', name)!r} "
                             f"of --protocol {p.name} is missing; prepare the data set again")
    if manifest.get("num_landmarks") != p.num_landmarks:
        raise ValueError(f"{path}: {manifest.get('num_landmarks')} landmarks, but --protocol {p.name} scores {p.num_landmarks}")
    return p, manifest


def detect_split(
    path: str, resolution: int, keypoints_of: Callable[[np.ndarray], Any], batch_size: int
) -> dict[str, np.ndarray]:
    """Keypoints and labels of every record of the ArrayRecord set ``path``, read at ``resolution``.

    ``keypoints_of(images (B, R, R, 3) float in [-1, 1]) -> (B, K, 2)``. Returns float32 ``keypoints``
    (N, K, 2), ``landmarks`` (N, L, 2) (normalised, NaN where unknown), ``visibility`` (N, L) (0 where
    the set says so or the landmark is NaN; 1 elsewhere) and ``readable`` (N,) (0 for a corrupt record,
    whose other rows are placeholders).
    """
    from lkgan_jax.data.array_records import ArrayRecordImages

    source = ArrayRecordImages(path, resolution, require_landmarks=True)
    num_landmarks = int(source.metadata["num_landmarks"])

    def rows(indices: np.ndarray) -> dict[str, np.ndarray]:
        items = [source.read(int(i)) for i in indices]
        blank = {"image": np.zeros((resolution, resolution, 3), np.uint8),
                 "landmarks": np.full((num_landmarks, 2), np.nan, np.float32)}
        images = np.stack([(item or blank)["image"] for item in items])
        landmarks = np.stack([(item or blank)["landmarks"] for item in items]).astype(np.float32)
        visibility = np.stack([np.asarray((item or {}).get("visibility", np.ones(num_landmarks)), np.float32) for item in items])
        visibility = visibility * np.all(np.isfinite(landmarks), axis=-1)
        keypoints = np.asarray(keypoints_of(uint8_to_float(images)), np.float32)
        readable = np.array([item is not None for item in items], np.float32)
        return {"keypoints": keypoints, "landmarks": landmarks, "visibility": visibility, "readable": readable}

    return parallel.map_rows(rows, len(source), batch_size)


def benchmark_landmark_metrics(
    keypoints_of: Callable[[np.ndarray], Any], protocol: str | Protocol, data_dir: str, resolution: int, batch_size: int
) -> dict[str, Any]:
    """The module docstring's ``landmarks/...`` metrics of a detector (``keypoints_of``, as for
    :func:`detect_split`) under ``protocol`` on the prepared set ``data_dir``, whose images are read at
    ``resolution``."""
    p, manifest = check_benchmark(data_dir, protocol)
    splits, unreadable = {}, 0
    for name in (p.regression_split, p.test_split):
        rows = detect_split(os.path.join(data_dir, manifest["splits"][name].get("directory", name)), resolution,
                            keypoints_of, batch_size)
        keep = rows["readable"] > 0
        if not keep.all():
            logging.warning("--data %s: %d unreadable record(s) of split %s left out of --protocol %s",
                            data_dir, int((~keep).sum()), name, p.name)
        unreadable += int((~keep).sum())
        splits[name] = {key: value[keep] for key, value in rows.items()}
    train, test = splits[p.regression_split], splits[p.test_split]
    result = protocol_error(p, train["keypoints"], train["landmarks"], train["visibility"],
                            test["keypoints"], test["landmarks"], test["visibility"])
    baseline = mean_landmark_error(p, train["landmarks"], train["visibility"], test["landmarks"], test["visibility"])
    prefix = f"landmarks/{p.name}/"
    metrics: dict[str, Any] = {"landmarks/protocol": p.name}
    metrics.update({prefix + key: value for key, value in result.items() if key != "protocol"})
    metrics.update({f"{prefix}mean_landmarks/{key}": value for key, value in baseline.items() if key not in _BASELINE_SKIPPED})
    metrics.update({
        prefix + "dataset": p.dataset,
        prefix + "data": str(data_dir),
        prefix + "regression_split": p.regression_split,
        prefix + "test_split": p.test_split,
        prefix + "prepared_resolution": manifest.get("resolution"),
        prefix + "input_resolution": int(resolution),
        prefix + "error_resolution": p.resolution,
        prefix + "num_unreadable": unreadable,
        "landmarks/num_keypoints": int(train["keypoints"].shape[1]),
    })
    return metrics
