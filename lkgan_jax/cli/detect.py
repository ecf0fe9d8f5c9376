"""``lkgan detect``: trains the keypoint detector on a run's generated (image, keypoints) pairs.

  lkgan detect --workdir RUN [--step N] [--config=configs/NAME.py] [--config.detect.steps=N ...]

The ``detect`` and ``eval`` sections come from ``--config`` when given, else from the run's own config.
Outputs go to ``RUN/detector/`` (``RUN/NAME/`` with ``--config.detect.name=NAME``, e.g. a second detector
of another seed for evaluating editors) (see ``lkgan_jax.detection.train``); running it again resumes. With
``detect.eval_every > 0`` the landmark metric runs during training against the run's data source.
In a multi-process job (``LKGAN_DISTRIBUTED=1``, as for ``lkgan train``) every process runs the same
command; only process 0 writes the detector's config, metrics and this summary line.
"""

from __future__ import annotations

import argparse
import time

from lkgan_jax.cli.arguments import add_run_arguments
from lkgan_jax.cli.distributed import maybe_initialize_distributed
from lkgan_jax.config_loading import config_for_run
from lkgan_jax.utils.metric_writer import format_duration
from lkgan_jax.workdir import read_config


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("detect", help="train the keypoint detector on the run's generated pairs")
    add_run_arguments(parser)
    parser.add_argument("--config", default=None, help="config file for the detect section (default: the run's)")
    parser.set_defaults(run=run, takes_overrides=True)


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    import jax

    from lkgan_jax.detection.inference import detector_dir
    from lkgan_jax.workdir import DETECTOR_DIR
    from lkgan_jax.detection.train import train_detector

    config = config_for_run(read_config(args.workdir), ("detect", "eval"), args.config, overrides)
    maybe_initialize_distributed()
    start = time.perf_counter()
    state = train_detector(args.workdir, config, args.step)
    if jax.process_index() == 0:
        print(f"detector at step {int(state.step)} after {format_duration(time.perf_counter() - start)}; saved in {detector_dir(args.workdir, config.detect.get('name', DETECTOR_DIR))}")
