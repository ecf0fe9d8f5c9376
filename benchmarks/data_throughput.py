"""Throughput of the procedural faces renderer on one CPU core (docs/design.md §5: >= 1,000 images/s at 64 px).

Times ``render_face`` called in a loop, as the data pipeline calls it, after a short warm-up, and
prints one JSON object on stdout::

    python benchmarks/data_throughput.py --resolution 64 --num 2000
"""

from __future__ import annotations

import os

# One core: keep BLAS from spreading small matrix products over threads (set before NumPy loads).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

try:
    from lkgan_jax.data.procedural import render_face
except ImportError:  # run from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from lkgan_jax.data.procedural import render_face

WARMUP_IMAGES = 50


def pin_to_one_core() -> None:
    """Restrict this process to the first core it may use (where the OS supports it)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def measure(resolution: int, num: int, seed: int) -> dict:
    for index in range(WARMUP_IMAGES):
        render_face(seed, index, resolution)
    start = time.perf_counter()
    for index in range(WARMUP_IMAGES, WARMUP_IMAGES + num):
        render_face(seed, index, resolution)
    seconds = time.perf_counter() - start
    return {
        "benchmark": "data_throughput",
        "resolution": resolution,
        "num_images": num,
        "seconds": round(seconds, 4),
        "images_per_s": round(num / seconds, 1),
        "cpu": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=64, help="image side in pixels")
    parser.add_argument("--num", type=int, default=2000, help="images to time (after the warm-up)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    args = parser.parse_args()
    if args.num <= 0:
        parser.error("--num must be positive")
    pin_to_one_core()
    print(json.dumps(measure(args.resolution, args.num, args.seed)))


if __name__ == "__main__":
    main()
