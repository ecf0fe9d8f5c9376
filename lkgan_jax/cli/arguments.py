"""Command-line arguments shared by the subcommands that read a trained run."""

from __future__ import annotations

import argparse


def add_run_arguments(parser: argparse.ArgumentParser, workdir_required: bool = True) -> None:
    """``--workdir RUN`` and ``--step N`` (the generator checkpoint; default: the latest)."""
    parser.add_argument("--workdir", required=workdir_required, help="training work dir")
    parser.add_argument("--step", type=int, default=None, help="generator checkpoint step (default: latest)")
