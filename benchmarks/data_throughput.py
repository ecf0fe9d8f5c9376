"""Input throughput: can the data pipeline feed the train step? Prints one JSON object.

  python benchmarks/data_throughput.py [--sources procedural,folder,arrayrecord,tfds] [--workers 1,2,4]
      [--resolutions 64,128] [--num 512] [--batches 20] [--step-steps 3] [--step-config 64=configs/paper_64.py]

For each resolution R:

- ``procedural_render``: ``render_face`` in a loop on one core (docs/design.md §5: >= 1,000 images/s
  at 64 px), the procedural source's cost per image;
- ``pipeline``: images/s of the training pipeline (``data.pipeline.make_train_dataset``: Grain,
  shuffle, decode, float conversion, batches of the step config's ``train.batch_size``) for every
  source and Grain worker count, after ``--warmup-batches`` and the config's ``data.prefetch`` more
  (so the read-ahead buffer does not count). The stored sources hold ``--num``
  procedural faces at R, written for the run: an image folder of PNGs, ArrayRecord shards
  (``--shards``) and a TFDS dataset in its array_record format (skipped, with a note, without
  tensorflow-datasets);
- ``train_step``: the step's images/s on synthetic device batches (``train_step.py``) with the
  config of that resolution (``--step-config R=PATH``; defaults: 32 → default.py, 64 → paper_64.py,
  128 → paper_128.py, 256 → paper_256.py), so a reader sees whether input can starve the step.
"""

from __future__ import annotations

import os

# One core for the render loop: keep BLAS from spreading small matrix products over threads (set before NumPy loads).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(REPO))

from lkgan_jax.data.procedural import render_face  # noqa: E402

SOURCES = ("procedural", "folder", "arrayrecord", "tfds")
STEP_CONFIGS = {32: "configs/default.py", 64: "configs/paper_64.py", 128: "configs/paper_128.py", 256: "configs/paper_256.py"}
WARMUP_IMAGES = 50


@contextlib.contextmanager
def one_core():
    """Restricts this process to the first core it may use (where the OS supports it), then restores."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def render_throughput(resolution: int, num: int, seed: int = 0) -> dict:
    """Procedural faces per second, rendered one by one on one core."""
    with one_core():
        for index in range(WARMUP_IMAGES):
            render_face(seed, index, resolution)
        start = time.perf_counter()
        for index in range(WARMUP_IMAGES, WARMUP_IMAGES + num):
            render_face(seed, index, resolution)
        seconds = time.perf_counter() - start
    return {"resolution": resolution, "num_images": num, "seconds": round(seconds, 4), "images_per_s": round(num / seconds, 1)}


def write_sources(directory: Path, sources: list[str], resolution: int, num: int, shards: int) -> tuple[dict, dict]:
    """The stored sources' data fields (``data.*`` overrides) for ``num`` faces at ``resolution`` → (fields, notes)."""
    from lkgan_jax.data import array_records, export
    from lkgan_jax.data.procedural import ProceduralFaces

    fields, notes = {}, {}
    if "procedural" in sources:
        fields["procedural"] = {"source": "procedural"}
    if "folder" in sources:
        export.export_procedural(directory / "folder", num, resolution)
        fields["folder"] = {"source": "folder", "path": str(directory / "folder")}
    if "arrayrecord" in sources:
        array_records.prepare_procedural(directory / "arrayrecord", num, resolution, seed=0, split="train", shards=shards)
        fields["arrayrecord"] = {"source": "arrayrecord", "path": str(directory / "arrayrecord")}
    if "tfds" in sources:
        try:
            from lkgan_jax.data.tfds_source import import_tfds, write_tfds_dataset

            import_tfds()
        except ValueError as error:
            notes["tfds"] = str(error)
        else:
            faces = ProceduralFaces(seed=0, resolution=resolution, size=num)
            write_tfds_dataset(directory / "tfds", "faces", {"train": (faces[i]["image"] for i in range(num))}, resolution)
            fields["tfds"] = {"source": "tfds", "tfds_name": "faces", "tfds_split": "train", "tfds_dir": str(directory / "tfds")}
    return fields, notes


def pipeline_throughput(data_config, batch_size: int, warmup_batches: int, batches: int) -> float:
    """Images/s of ``make_train_dataset`` batches after ``warmup_batches`` plus ``data.prefetch`` more
    (worker start-up, and the batches read ahead meanwhile, excluded)."""
    from lkgan_jax.data import pipeline

    iterator = pipeline.make_train_dataset(data_config, batch_size, seed=0)
    try:
        for _ in range(warmup_batches + data_config.prefetch):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * batch_size / (time.perf_counter() - start)
    finally:
        iterator.close()


def parse_ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise SystemExit(f"data_throughput.py: error: {flag} takes comma-separated non-negative integers, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"comma-separated: {', '.join(SOURCES)}")
    parser.add_argument("--workers", default="1,2,4", help="Grain worker processes to try (0: read in the main process)")
    parser.add_argument("--resolutions", default="64,128", help="image sides in pixels")
    parser.add_argument("--num", type=int, default=512, help="faces per stored source, and rendered per render timing")
    parser.add_argument("--shards", type=int, default=4, help="ArrayRecord shards")
    parser.add_argument("--warmup-batches", type=int, default=3)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per pipeline measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="pipeline batch size (default: the step config's)")
    parser.add_argument("--step-steps", type=int, default=3, help="timed train steps (0: no step timing)")
    parser.add_argument("--step-config", action="append", default=[], help="R=PATH[:variant], the step config at R")
    args, step_overrides = parser.parse_known_args()
    sources = [s for s in args.sources.split(",") if s]
    if not sources or set(sources) - set(SOURCES):
        parser.error(f"--sources takes a comma-separated subset of {', '.join(SOURCES)}, got {args.sources!r}")
    workers, resolutions = parse_ints(args.workers, "--workers"), parse_ints(args.resolutions, "--resolutions")
    if args.num <= 0 or args.batches <= 0 or not 1 <= args.shards <= args.num:
        parser.error("--num and --batches must be positive and --shards between 1 and --num")
    step_configs = dict(STEP_CONFIGS)
    for entry in args.step_config:
        resolution, _, path = entry.partition("=")
        if not resolution.isdigit() or not path:
            parser.error(f"--step-config takes R=PATH, got {entry!r}")
        step_configs[int(resolution)] = path

    from absl import flags

    flags.FLAGS.mark_as_parsed()  # Grain workers read absl flags
    from lkgan_jax.config_loading import load_config

    result = {"benchmark": "data_throughput", "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "num_images": args.num, "procedural_render": [], "pipeline": [], "train_step": [], "notes": {}}
    for resolution in resolutions:
        if resolution not in step_configs:
            parser.error(f"no step config for {resolution} px; give --step-config {resolution}=PATH")
        config = load_config(step_configs[resolution], step_overrides)
        if config.data.resolution != resolution:
            parser.error(f"{step_configs[resolution]} trains at {config.data.resolution} px, not {resolution}; give --step-config {resolution}=PATH")
        batch_size = args.batch_size or config.train.batch_size
        result["procedural_render"].append(render_throughput(resolution, args.num))
        with tempfile.TemporaryDirectory() as directory:
            fields, notes = write_sources(Path(directory), sources, resolution, args.num, args.shards)
            result["notes"].update(notes)
            for source, data_fields in fields.items():
                for count in workers:
                    data = config.data.copy_and_resolve_references()
                    data.update({**data_fields, "num_workers": count, "random_flip": False})
                    images_per_s = pipeline_throughput(data, batch_size, args.warmup_batches, args.batches)
                    result["pipeline"].append({"source": source, "resolution": resolution, "workers": count,
                                               "batch_size": batch_size, "images_per_s": round(images_per_s, 1)})
        if args.step_steps > 0:
            from train_step import measure_train_step

            step = measure_train_step(config, args.step_steps)
            result["train_step"].append({"resolution": resolution, "config": step_configs[resolution], "overrides": step_overrides,
                                         **{k: step[k] for k in ("batch_size", "dtype", "device_kind", "device_count",
                                                                 "compile_s", "steps_per_s", "images_per_s")}})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
