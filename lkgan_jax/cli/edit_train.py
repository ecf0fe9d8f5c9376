"""``lkgan edit-train``: trains a learned attribute editor on a run's frozen generator.

  lkgan edit-train --workdir RUN [--config=configs/NAME.py] --config.edit.judge_weights=judge.msgpack
                   [--config.edit.editor=mapper|matrix] [--config.edit.name=NAME] [--config.edit.steps=N ...]

The ``edit`` section comes from ``--config`` when given, else from the run's own config (or the default).
The run needs a trained detector (`lkgan detect`). Outputs go to ``RUN/editors/NAME/`` (see
``lkgan_jax.latent_editing.train``); running it again resumes.
"""

from __future__ import annotations

import argparse
import time

from lkgan_jax.config_loading import config_for_run
from lkgan_jax.utils.metric_writer import format_duration
from lkgan_jax.workdir import read_config


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("edit-train", help="train a learned attribute editor (mapper or direction matrix) on a run")
    parser.add_argument("--workdir", required=True, help="the run's work dir (with a trained detector)")
    parser.add_argument("--config", default=None, help="config file for the edit section (default: the run's)")
    parser.set_defaults(run=run, takes_overrides=True)


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    from lkgan_jax.latent_editing.train import editor_dir, train_editor

    config = config_for_run(read_config(args.workdir), ("edit",), args.config, overrides)
    start = time.perf_counter()
    state = train_editor(args.workdir, config)
    directory = editor_dir(args.workdir, config.edit.name)
    print(f"editor at step {int(state.step)} after {format_duration(time.perf_counter() - start)}; saved in {directory}")
