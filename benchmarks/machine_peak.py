"""This machine's attainable FLOP rate: a large jitted float32 matmul, the yardstick for FLOP utilisation on CPUs.

  python benchmarks/machine_peak.py [--size 2048] [--repeats 5]

Vendor peaks exist for accelerators (train_step.py's table); a CPU's attainable rate depends on its
vector units, threads and memory, so it is measured: the median GFLOP/s of ``repeats`` timed batches of
one (size × size) @ (size × size) product (2·size³ FLOPs each), after a warm-up call. ``timed``, which
times it, is the timing helper the other benchmarks share.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from lkgan_jax.utils.compilation import compile_lowered  # noqa: E402


def timed(fn, *args, iters: int, repeats: int) -> dict:
    """``fn`` jitted and compiled as in training, one warm-up call, then ``repeats`` × ``iters`` timed calls →
    {"ms" (one call, the median of the repeats' means), "gflop" (XLA's cost analysis), "gflop_per_s"}."""
    compiled = compile_lowered(jax.jit(fn).lower(*args), fast=False)
    jax.block_until_ready(compiled(*args))
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            out = compiled(*args)
        jax.block_until_ready(out)
        means.append((time.perf_counter() - start) / iters)
    ms = 1e3 * statistics.median(means)
    gflop = float(compiled.cost_analysis().get("flops", 0.0)) / 1e9
    return {"ms": ms, "gflop": gflop, "gflop_per_s": gflop / ms * 1e3}


def matmul_gflop_per_s(size: int = 2048, repeats: int = 5, iters: int = 5) -> dict:
    """→ {"size", "dtype", "ms" (one product, median), "gflop_per_s"} for a float32 (size × size) matmul."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    ms = timed(jnp.matmul, a, a, iters=iters, repeats=repeats)["ms"]
    return {"size": size, "dtype": "float32", "ms": ms, "gflop_per_s": 2 * size**3 / ms / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "machine_peak", "device_kind": jax.devices()[0].device_kind,
                      **matmul_gflop_per_s(args.size, args.repeats)}))


if __name__ == "__main__":
    main()
