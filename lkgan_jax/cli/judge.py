"""``lkgan judge train``: trains the judge of image fidelity on real procedural faces.

  lkgan judge train --workdir DIR [--config=configs/NAME.py] [--config.judge.steps=N ...]

Writes ``DIR/judge.msgpack`` (give it to the evaluator as ``--judge-weights`` or
``eval.judge_weights``) and prints its held-out scores; running it again resumes.
"""

from __future__ import annotations

import argparse
import json
import time

from lkgan_jax.utils.metric_writer import format_duration


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("judge", help="train the judge that scores generated procedural faces")
    actions = parser.add_subparsers(dest="judge_action", required=True)
    train = actions.add_parser("train", help="train (or resume) the judge on real procedural faces")
    train.add_argument("--workdir", required=True, help="output directory (checkpoints, metrics, judge.msgpack)")
    train.add_argument("--config", default="configs/default.py", help="config file with the judge section")
    train.set_defaults(run=run, takes_overrides=True)


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    from lkgan_jax.config_loading import load_config
    from lkgan_jax.judge.train import JUDGE_FILE, train_judge
    from lkgan_jax.utils.files import check_output_directory

    config = load_config(args.config, overrides)
    check_output_directory(args.workdir, "--workdir")
    start = time.perf_counter()
    trained = train_judge(args.workdir, config)
    print(json.dumps(trained.heldout))
    print(f"judge trained in {format_duration(time.perf_counter() - start)}; saved as {args.workdir}/{JUDGE_FILE}")
