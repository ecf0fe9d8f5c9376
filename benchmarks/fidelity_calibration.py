"""Calibration of the fidelity scores on degraded real faces; prints one JSON object.

  python benchmarks/fidelity_calibration.py [--num 2000] [--resolution 32] [--judge-weights PATH]

The "generated" images are the real test-split faces 0 … N − 1 (the floor's own set), degraded:
``real`` (unchanged: every score equals its floor), ``blur2`` and ``blur4`` (area-averaged down by 2 or
4, bilinear back up with half-pixel centres), and ``noise0.05`` / ``noise0.1`` (independent Gaussian
noise of that σ in [-1, 1] units, clipped). Each is scored against N real train faces with
``judged.fidelity_scores`` under the default config's eval section, as ``lkgan evaluate judge`` scores
a folder: judge_fd, judge_attributes, judge_precision, judge_recall and SWD per level.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lkgan_jax.config_loading import load_config  # noqa: E402
from lkgan_jax.conventions import float_to_uint8, uint8_to_float  # noqa: E402
from lkgan_jax.evaluation import judged  # noqa: E402
from lkgan_jax.judge.weights import load_judge, shipped_judge_path  # noqa: E402


def blurred(images: np.ndarray, factor: int) -> np.ndarray:
    """uint8 (N, R, R, 3) → area-averaged down by ``factor``, bilinear (half-pixel centres) back up."""
    n, r, _, c = images.shape
    small = uint8_to_float(images).reshape(n, r // factor, factor, r // factor, factor, c).mean(axis=(2, 4))
    return float_to_uint8(jax.image.resize(small, (n, r, r, c), method="bilinear"))


def noisy(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """uint8 images plus N(0, σ²) noise in [-1, 1] units, clipped."""
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape).astype(np.float32)
    return float_to_uint8(uint8_to_float(images) + noise)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000, help="faces per set")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--judge-weights", default=None, help="default: the judge shipped with lkgan_jax")
    args = parser.parse_args()

    config = load_config("configs/default.py")
    e, seed = config.eval, config.data.seed
    judge = load_judge(args.judge_weights or shipped_judge_path())

    def judged_set(images: np.ndarray) -> judged.JudgedImages:
        return judged.judge_images(judge, judged.array_batches(images, e.batch_size), len(images), e.batch_size)

    train, test = (np.concatenate(list(judged.face_batches(seed, split, args.resolution, args.num, e.batch_size)))
                   for split in ("train", "test"))
    real = judged_set(train)
    sets = {"real": test, "blur2": blurred(test, 2), "blur4": blurred(test, 4),
            "noise0.05": noisy(test, 0.05), "noise0.1": noisy(test, 0.1)}
    results = {}
    for name, images in sets.items():
        start = time.perf_counter()
        results[name] = {**judged.fidelity_scores(judged_set(images), real, e), "seconds": round(time.perf_counter() - start, 2)}
    print(json.dumps({"num": args.num, "resolution": args.resolution, "judge_sha256": judge.sha256, "sets": results}, indent=1))


if __name__ == "__main__":
    main()
