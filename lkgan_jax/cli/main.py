"""The ``lkgan`` command line (docs/design.md §11).

  lkgan train --workdir DIR [--config=configs/NAME.py[:variant]] [--config.a.b=value ...]
  lkgan generate --workdir RUN [--step N] --num N --seed S --out DIR [--keypoints]
  lkgan edit --workdir RUN [--step N] --seed S --ops OPS.json --out DIR
  lkgan studio --workdir RUN [--step N] [--port P] [--host 127.0.0.1] [--export-dir DIR]
  lkgan detect --workdir RUN [--step N] [--config=configs/NAME.py] [--config.detect.steps=N]
  lkgan edit-train --workdir RUN --config.edit.judge_weights=JUDGE.msgpack [--config.edit.editor=mapper|matrix]
  lkgan evaluate --workdir RUN --metrics landmarks,... [--real procedural|folder:PATH|arrayrecord:PATH] --out FILE.json
  lkgan evaluate --workdir RUN --metrics landmarks --protocol mafl|celeba_wild|cub|cub_001|cub_002|cub_003|taichi|h36m
                 --data OUT --out FILE.json
  lkgan prepare procedural --out DIR --num N --resolution R [--seed S] [--split train|test]
                           [--format folder|arrayrecord] [--shards N]
  lkgan prepare folder --path IMAGES --out DIR [--resolution R] [--format arrayrecord] [--shards N]
  lkgan prepare celeba|celeba_wild|cub|taichi|h36m_simplified --root DIR --out OUT [--resolution R] [--shards N]
                [--remove-background (h36m_simplified)]
"""

from __future__ import annotations

import argparse
import logging as std_logging
import os
import sys

from absl import flags, logging

from lkgan_jax.cli import detect, edit, edit_train, evaluate, generate, judge, studio
from lkgan_jax.cli.arguments import OneLineErrorParser, check_positive
from lkgan_jax.cli.distributed import maybe_initialize_distributed

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 143  # SIGTERM after the checkpoint was saved: what schedulers expect of a terminated job


# Orbax warns about every read-only CheckpointManager, which is how runs are read for generation.
_EXPECTED_WARNINGS = ("directory is read only",)


class _OwnInfoOnly(std_logging.Filter):
    """Keeps INFO records of lkgan_jax; other libraries (Orbax, Grain) only from WARNING up."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        if f"{os.sep}lkgan_jax{os.sep}" in record.pathname:
            return True
        return record.levelno >= std_logging.WARNING and not any(w in record.getMessage() for w in _EXPECTED_WARNINGS)


def _configure_logging() -> None:
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(_OwnInfoOnly())


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
    from lkgan_jax.config_loading import load_config
    from lkgan_jax.utils.files import check_output_directory

    config = load_config(args.config, overrides)
    check_output_directory(args.workdir, "--workdir")
    maybe_initialize_distributed()
    if config.get("system", "latentkeypointgan") == "keypointgan":
        from lkgan_jax.keypointgan.train import train_keypointgan

        train_keypointgan(config, args.workdir)
    else:
        from lkgan_jax.train.loop import train_and_evaluate

        train_and_evaluate(config, args.workdir)


def _prepare(args: argparse.Namespace, overrides: list[str]) -> None:
    _reject_overrides(overrides)
    from lkgan_jax.data import array_records
    from lkgan_jax.data.export import export_procedural
    from lkgan_jax.utils.files import check_output_directory

    _check_prepare_arguments(args)
    check_output_directory(args.out, "--out")  # the exporters create it once their input is read
    if args.format == "folder":
        out = export_procedural(args.out, args.num, args.resolution, seed=args.seed, split=args.split)
        print(f"wrote {args.num} images with landmarks.csv and attributes.csv to {out}")
        return
    skipped = 0
    if args.source == "procedural":
        metadata = array_records.prepare_procedural(args.out, args.num, args.resolution, args.seed, args.split, args.shards)
    else:
        metadata, skipped = array_records.prepare_folder(args.path, args.out, args.resolution, args.shards)
    labels = " and ".join(k for k in metadata["keys"] if k != "image")
    print(f"wrote {metadata['count']} records ({args.resolution} px{', with ' + labels if labels else ''}) in "
          f"{len(metadata['shards'])} ArrayRecord shard(s) to {args.out}"
          + (f"; skipped {skipped} unreadable image(s)" if skipped else ""))


def _prepare_benchmark(args: argparse.Namespace, overrides: list[str]) -> None:
    """``lkgan prepare <benchmark>``: the data set's splits as ArrayRecord sets plus OUT/manifest.json."""
    _reject_overrides(overrides)
    from lkgan_jax.data import benchmarks
    from lkgan_jax.utils.files import check_output_directory

    check_positive(args, "resolution", "shards")
    if not os.path.isdir(args.root):
        raise ValueError(f"--root {args.root} is not an existing directory")
    check_output_directory(args.out, "--out")  # created once the annotation files have been read and checked
    options = {"remove_background": args.remove_background} if args.source == "h36m_simplified" else {}
    manifest = benchmarks.prepare(args.source, args.root, args.out, args.resolution, args.shards, **options)
    counts = ", ".join(f"{name} {entry['count']}" for name, entry in manifest["splits"].items())
    print(f"wrote {manifest['dataset']} at {manifest['resolution']} px to {args.out}: {counts} (see manifest.json)")


def _check_prepare_arguments(args: argparse.Namespace) -> None:
    """One-line errors for ``lkgan prepare`` flags, before the output folder is created."""
    from lkgan_jax.data.procedural import MIN_RESOLUTION

    check_positive(args, *(("num",) if args.source == "procedural" else ()), "resolution", "shards")
    if args.format == "folder" and args.shards != 1:
        raise ValueError("--shards splits ArrayRecord files; it needs --format arrayrecord")
    if args.source == "procedural":
        if args.seed < 0:
            raise ValueError(f"--seed must be non-negative, got {args.seed}")
        if args.resolution < MIN_RESOLUTION:
            raise ValueError(f"--resolution must be at least {MIN_RESOLUTION}, got {args.resolution}")
        if args.shards > args.num:
            raise ValueError(f"--shards must be between 1 and the number of images ({args.num}), got {args.shards}")
    if args.source == "folder" and not os.path.isdir(args.path):
        raise ValueError(f"--path {args.path} is not an existing directory")


def _reject_overrides(overrides: list[str]) -> None:
    if overrides:
        raise ValueError(f"unrecognized arguments: {' '.join(overrides)}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="lkgan", description="Controllable image generation through latent keypoints.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train LatentKeypointGAN or KeypointGAN (resumes from the latest checkpoint)")
    train.add_argument("--workdir", required=True, help="output directory (config, checkpoints, metrics, samples)")
    train.add_argument("--config", default="configs/default.py", help="config file, optionally with :variant")
    train.set_defaults(run=_train, takes_overrides=True)

    generate.add_parser(commands)
    edit.add_parser(commands)
    edit_train.add_parser(commands)
    studio.add_parser(commands)
    detect.add_parser(commands)
    evaluate.add_parser(commands)
    judge.add_parser(commands)

    prepare = commands.add_parser("prepare", help="export datasets")
    prepare_sources = prepare.add_subparsers(dest="source", required=True)
    procedural = prepare_sources.add_parser(
        "procedural", help="export procedural faces as an image folder (default) or ArrayRecord shards")
    procedural.add_argument("--out", required=True)
    procedural.add_argument("--num", type=int, required=True)
    procedural.add_argument("--resolution", type=int, default=64)
    procedural.add_argument("--seed", type=int, default=0)
    procedural.add_argument("--split", choices=("train", "test"), default="train")
    procedural.add_argument("--format", choices=("folder", "arrayrecord"), default="folder",
                            help="folder: PNGs + CSVs; arrayrecord: shards for data.source=arrayrecord")
    procedural.add_argument("--shards", type=int, default=1, help="ArrayRecord files to split the records over")
    procedural.set_defaults(run=_prepare, takes_overrides=False)
    folder = prepare_sources.add_parser(
        "folder", help="convert an image folder (with landmarks.csv/attributes.csv) into ArrayRecord shards")
    folder.add_argument("--path", required=True, help="the image folder")
    folder.add_argument("--out", required=True)
    folder.add_argument("--resolution", type=int, default=64, help="images are centre-cropped and resized to this side")
    folder.add_argument("--format", choices=("arrayrecord",), default="arrayrecord")
    folder.add_argument("--shards", type=int, default=1, help="ArrayRecord files to split the records over")
    folder.set_defaults(run=_prepare, takes_overrides=False)
    from lkgan_jax.data.benchmarks import BENCHMARKS

    for name, benchmark in BENCHMARKS.items():
        source = prepare_sources.add_parser(name, help=benchmark.help)
        source.add_argument("--root", required=True, help="the data set as distributed; files are found by name below it")
        source.add_argument("--out", required=True, help="OUT/<split>/ ArrayRecord sets and OUT/manifest.json")
        source.add_argument("--resolution", type=int, default=None,
                            help=f"side of the stored images (default: the benchmark's {benchmark.default_resolution})")
        source.add_argument("--shards", type=int, default=1, help="ArrayRecord files per split (at most its size)")
        if name == "h36m_simplified":
            source.add_argument("--remove-background", action="store_true",
                                help="multiply frames by their foreground masks (KeypointGAN's protocol)")
        source.set_defaults(run=_prepare_benchmark, takes_overrides=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if not args.takes_overrides and rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    except SystemExit as stop:  # a usage error (code 2, one line) or --help (code 0)
        return stop.code if isinstance(stop.code, int) else EXIT_BAD_INPUT
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()  # Grain workers read absl flags
    _configure_logging()
    from lkgan_jax.utils.compilation import enable_persistent_cache

    enable_persistent_cache()

    from lkgan_jax.checkpoint import CheckpointMismatchError, silence_abandoned_reads
    from lkgan_jax.train.harness import Preempted, TrainingDivergedError

    silence_abandoned_reads()  # a damaged checkpoint's message stays one line

    try:
        args.run(args, rest)
    except TrainingDivergedError as error:
        print(f"lkgan: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, FileNotFoundError, CheckpointMismatchError) as error:
        print(f"lkgan: error: {str(error).splitlines()[0] if str(error) else type(error).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (PermissionError, NotADirectoryError, IsADirectoryError) as error:  # a path that cannot be written
        print(f"lkgan: error: cannot use {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Preempted as stop:
        print(f"lkgan: {stop}; run the same command again to resume", file=sys.stderr)
        return EXIT_PREEMPTED
    except KeyboardInterrupt:
        print("lkgan: interrupted (the latest checkpoint was saved)", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
