"""Latency of one edit + render (move a keypoint, or a learned attribute edit; eval mode), per config and batch size.

  python benchmarks/edit_latency.py [--configs configs/paper_64.py,configs/paper_128.py,configs/paper_256.py]
                                    [--batch-sizes 1,64] [--iters 20] [--workdir RUN [--editor NAME]] [--config.a.b=v ...]

Prints one JSON object with one entry per (config, batch size): compile time, median and p90
milliseconds per call of the jitted edit + render (on the device), the same including the uint8
conversion and the copy to the host (what an interactive editor waits for), and ms per image.
Generator weights are random (latency does not depend on them) unless ``--workdir`` names a run, whose
config then replaces ``--configs``. Each timed call moves the keypoint to a new place (or asks for a
new attribute change), so no work repeats. With ``--editor NAME`` (a trained editor of the run, `lkgan
edit-train`) the edit is ``editor.apply(latent, δ)`` with every attribute changed, and each entry also
times the edit alone, without rendering (``edit_only_ms_per_call``).
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
from lkgan_jax.latent_editing.inference import load_editor  # noqa: E402
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


def measure(model: TrainedGenerator, batch: int, iters: int, editor=None) -> dict:
    """Timings of a move of part ``MOVED_PART`` + render, or of ``editor`` (a ``TrainedEditor``) + render."""
    generator = model.generator
    latent = model.latent_from_seeds(np.arange(batch))
    rng = np.random.default_rng(0)
    if editor is None:
        inputs = rng.uniform(-0.5, 0.5, (iters + 1, 2)).astype(np.float32)  # the keypoint's new place

        def edit(latent, to):
            return ops.move(latent, MOVED_PART, to=to)
    else:
        limit = editor.config.delta_max
        inputs = rng.uniform(-limit, limit, (iters + 1, batch, len(editor.attribute_names))).astype(np.float32)
        edit = editor.apply

    def edit_and_render(variables, latent, value):
        images = render(generator, variables, edit(latent, value))
        return jnp.clip(jnp.round((images + 1.0) * 127.5), 0, 255).astype(jnp.uint8)

    def timed(program, finish) -> tuple[float, list[float], object]:
        """(compile seconds, per-call ms, the compiled program); one loop per quantity, so none warms another."""
        start = time.perf_counter()
        compiled = jax.jit(program).lower(model.variables, latent, inputs[0]).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(model.variables, latent, inputs[0]))  # warm-up
        times = []
        for value in inputs[1:]:
            start = time.perf_counter()
            finish(compiled(model.variables, latent, value))
            times.append(1e3 * (time.perf_counter() - start))
        return compile_s, times, compiled

    compile_s, device_ms, compiled = timed(edit_and_render, jax.block_until_ready)
    host_ms = timed(edit_and_render, np.asarray)[1]
    row = {
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
    if editor is not None:
        edit_ms = timed(lambda variables, latent, value: edit(latent, value), jax.block_until_ready)[1]
        row["edit_only_ms_per_call"] = round(float(np.median(edit_ms)), 4)
        row["edit_only_ms_per_call_p90"] = round(float(np.percentile(edit_ms, 90)), 4)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated config files")
    parser.add_argument("--batch-sizes", default="1,64", help="comma-separated batch sizes")
    parser.add_argument("--iters", type=int, default=20, help="timed calls per measurement")
    parser.add_argument("--workdir", default=None, help="time a trained run's generator instead")
    parser.add_argument("--editor", default=None, help="time this trained attribute editor of --workdir instead of a move")
    args, overrides = parser.parse_known_args()
    if args.editor and not args.workdir:
        parser.error("--editor needs --workdir (the run the editor was trained on)")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    editor = None
    if args.workdir:
        models = {args.workdir: load_generator(args.workdir)}
        if args.editor:
            editor = load_editor(args.workdir, args.editor, models[args.workdir])
    else:
        models = {name: random_generator(load_config(name, overrides)) for name in args.configs.split(",")}
    results = []
    for name, model in models.items():
        for batch in batch_sizes:
            results.append({"config": name, **measure(model, batch, args.iters, editor)})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "edit_latency",
        "edit": f"editor {args.editor!r}: every attribute changed" if editor else f"move part {MOVED_PART}",
        "timed": "edit + render (eval mode) + uint8",
        "overrides": overrides,
        "iters": args.iters,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "host": platform.node(),
        "results": results,
    }))


if __name__ == "__main__":
    main()
