"""Latency of one edit + render (move a keypoint, render in eval mode), per config and batch size.

  python benchmarks/edit_latency.py [--configs configs/paper_64.py,configs/paper_128.py,configs/paper_256.py]
                                    [--batch-sizes 1,64] [--iters 20] [--workdir RUN] [--config.a.b=v ...]

Prints one JSON object with one entry per (config, batch size): compile time, median and p90
milliseconds per call of the jitted edit + render (on the device), the same including the uint8
conversion and the copy to the host (what an interactive editor waits for), and ms per image.
Generator weights are random (latency does not depend on them) unless ``--workdir`` names a run, whose
config then replaces ``--configs``. Each timed call moves the keypoint to a new place, so no work repeats.
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from lkgan_jax.config_loading import load_config  # noqa: E402
from lkgan_jax.editing import ops  # noqa: E402
from lkgan_jax.models.factory import make_generator  # noqa: E402
from lkgan_jax.models.latent import sample_noise  # noqa: E402
from lkgan_jax.models.sampling import TrainedGenerator, render  # noqa: E402
from lkgan_jax.pretrained import load_generator  # noqa: E402

DEFAULT_CONFIGS = "configs/paper_64.py,configs/paper_128.py,configs/paper_256.py"
MOVED_PART = 0


def random_generator(config) -> TrainedGenerator:
    """A generator of ``config`` with random weights (BN statistics at their initial values)."""
    generator = make_generator(config.model)
    variables = jax.jit(generator.init)(jax.random.key(0), *sample_noise(jax.random.key(1), 1, generator.z_dim))
    return TrainedGenerator(generator, dict(variables), config, step=0)


def measure(model: TrainedGenerator, batch: int, iters: int) -> dict:
    generator = model.generator

    @jax.jit
    def edit_and_render(variables, latent, to):
        edited = ops.move(latent, MOVED_PART, to=to)
        images = render(generator, variables, edited)
        return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

    latent = model.latent_from_seeds(np.arange(batch))
    targets = np.random.default_rng(0).uniform(-0.5, 0.5, (iters + 1, 2)).astype(np.float32)
    start = time.perf_counter()
    compiled = edit_and_render.lower(model.variables, latent, targets[0]).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(model.variables, latent, targets[0]))  # warm-up
    def timed(finish) -> list[float]:  # one loop per quantity, so neither warms the other up
        times = []
        for to in targets[1:]:
            start = time.perf_counter()
            finish(compiled(model.variables, latent, to))
            times.append(1e3 * (time.perf_counter() - start))
        return times

    device_ms = timed(jax.block_until_ready)
    host_ms = timed(np.asarray)
    return {
        "resolution": model.resolution,
        "batch_size": batch,
        "dtype": model.config.model.dtype,
        "compile_s": round(compile_s, 3),
        "ms_per_call": round(float(np.median(device_ms)), 3),
        "ms_per_call_p90": round(float(np.percentile(device_ms, 90)), 3),
        "ms_per_call_to_host": round(float(np.median(host_ms)), 3),
        "ms_per_image": round(float(np.median(device_ms)) / batch, 4),
        "flops_per_call": float(compiled.cost_analysis().get("flops", 0.0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated config files")
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--workdir", default=None, help="time a trained run's generator instead")
    args, overrides = parser.parse_known_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.workdir:
        models = {args.workdir: load_generator(args.workdir)}
    else:
        models = {name: random_generator(load_config(name, overrides)) for name in args.configs.split(",")}
    results = []
    for name, model in models.items():
        for batch in batch_sizes:
            results.append({"config": name, **measure(model, batch, args.iters)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "edit_latency",
        "edit": f"move part {MOVED_PART} + render (eval mode) + uint8",
        "overrides": overrides,
        "iters": args.iters,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "host": platform.node(),
        "results": results,
    }))


if __name__ == "__main__":
    main()
