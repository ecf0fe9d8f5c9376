"""This machine's attainable FLOP rate: a large jitted float32 matmul, the yardstick for FLOP utilisation on CPUs.

  python benchmarks/machine_peak.py [--size 2048] [--repeats 5]

Vendor peaks exist for accelerators (train_step.py's table); a CPU's attainable rate depends on its
vector units, threads and memory, so it is measured: the median GFLOP/s of ``repeats`` timed batches of
one (size × size) @ (size × size) product (2·size³ FLOPs each), after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp


def matmul_gflop_per_s(size: int = 2048, repeats: int = 5, iters: int = 5) -> dict:
    """→ {"size", "dtype", "ms" (one product, median), "gflop_per_s"} for a float32 (size × size) matmul."""
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    product = jax.jit(jnp.matmul)
    jax.block_until_ready(product(a, a))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            out = product(a, a)
        jax.block_until_ready(out)
        seconds.append((time.perf_counter() - start) / iters)
    s = statistics.median(seconds)
    return {"size": size, "dtype": "float32", "ms": 1e3 * s, "gflop_per_s": 2 * size**3 / s / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "machine_peak", "device_kind": jax.devices()[0].device_kind,
                      **matmul_gflop_per_s(args.size, args.repeats)}))


if __name__ == "__main__":
    main()
