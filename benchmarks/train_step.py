"""Benchmark of the jitted LatentKeypointGAN train step; prints one JSON object.

  python benchmarks/train_step.py --config=configs/gpu_128.py [--config.train.batch_size=64] [--steps 20]

Synthetic batches already on the device (the step alone is measured; see data_throughput.py for the
input pipeline). The lazy schedule is timed as in training: the penalty step every
``train.reg_every`` steps. FLOPs come from XLA's cost analysis of both executables, memory from
XLA's memory analysis (and the device's allocator peak where it reports one).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from lkgan_jax.config_loading import load_config  # noqa: E402
from lkgan_jax.train.loop import build_trainer, is_penalty_step  # noqa: E402
from lkgan_jax.utils.compilation import compile_all  # noqa: E402

# Dense peak FLOP/s by device kind and compute dtype (vendor data sheets, no sparsity).
PEAK_FLOPS = {
    ("NVIDIA H100 80GB HBM3", "bfloat16"): 989e12,
    ("NVIDIA H100 80GB HBM3", "float32"): 67e12,
    ("NVIDIA H200", "bfloat16"): 989e12,
    ("NVIDIA H200", "float32"): 67e12,
    ("NVIDIA A100-SXM4-80GB", "bfloat16"): 312e12,
    ("NVIDIA A100-SXM4-80GB", "float32"): 19.5e12,
}


def _peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def _run(compiled: dict, state, batch, reg_every: int, steps: int):
    """``steps`` steps on the lazy-penalty schedule (the penalty variant every ``reg_every``)."""
    for i in range(steps):
        state, metrics = compiled[is_penalty_step(i, reg_every)](state, batch)
    jax.block_until_ready(metrics)
    return state


def measure_train_step(config, steps: int, compile_only: bool = False) -> dict:
    """Compiles and times ``config``'s train step on synthetic device batches → the result fields below."""
    trainer = build_trainer(config)
    t = config.train
    devices = jax.devices()
    with jax.set_mesh(trainer.mesh):
        state = trainer.initial_state()
        shape = (t.batch_size, config.data.resolution, config.data.resolution, 3)
        batch = {"image": jax.device_put(jax.random.uniform(jax.random.key(1), shape, minval=-1, maxval=1), trainer.batch_sharding)}
        start = time.perf_counter()
        fast = config.train.fast_compile
        compiled = compile_all({reg: trainer.train_step.lower(state, batch, reg) for reg in (False, True)}, fast)
        compile_s = time.perf_counter() - start
        timed = seconds = None
        if not compile_only:
            state = _run(compiled, state, batch, t.reg_every, t.reg_every)  # warm-up: both executables
            timed = max(steps, t.reg_every)
            start = time.perf_counter()
            state = _run(compiled, state, batch, t.reg_every, timed)
            seconds = time.perf_counter() - start

    flops = {reg: float(c.cost_analysis().get("flops", 0.0)) for reg, c in compiled.items()}
    flops_per_step = (flops[True] + (t.reg_every - 1) * flops[False]) / t.reg_every
    steps_per_s = timed / seconds if seconds else None
    achieved = flops_per_step * steps_per_s if steps_per_s else None
    kind = devices[0].device_kind
    peak = PEAK_FLOPS.get((kind, config.model.dtype))
    stats = devices[0].memory_stats() or {}
    return {
        "resolution": config.data.resolution,
        "batch_size": t.batch_size,
        "dtype": config.model.dtype,
        "device_kind": kind,
        "device_count": len(devices),
        "platform": devices[0].platform,
        "host": platform.node(),
        "compile_s": round(compile_s, 3),
        "steps_timed": timed,
        "steps_per_s": steps_per_s,
        "images_per_s": steps_per_s * t.batch_size if steps_per_s else None,
        "flops_per_step": flops_per_step,
        "flops_per_step_with_penalty": flops[True],
        "achieved_flops_per_s": achieved,
        "flop_utilization": achieved / (peak * len(devices)) if (peak and achieved) else None,
        "peak_bytes": max(_peak_bytes(c) for c in compiled.values()),
        "device_peak_bytes_in_use": stats.get("peak_bytes_in_use"),
        "params_g": sum(x.size for x in jax.tree.leaves(state.g_params)),
        "params_d": sum(x.size for x in jax.tree.leaves(state.d_params)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.py")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after warm-up")
    parser.add_argument("--compile-only", action="store_true", help="report compile time, FLOPs and memory only")
    args, overrides = parser.parse_known_args()
    config = load_config(args.config, overrides)
    result = {"benchmark": "train_step", "config": args.config, "overrides": overrides,
              **measure_train_step(config, args.steps, args.compile_only)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
