"""Command-line arguments shared by the subcommands, and the checks of their values.

Every check raises a one-line ``ValueError`` that names the flag (``--num``), which ``lkgan`` prints as
``lkgan: error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class OneLineErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one ``lkgan: error: ...`` line and exit code 2 (no usage text)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("lkgan").strip()
        self.exit(2, f"lkgan: error: {command + ': ' if command else ''}{message}\n")


def add_run_arguments(parser: argparse.ArgumentParser, workdir_required: bool = True) -> None:
    """``--workdir RUN`` and ``--step N`` (the generator checkpoint; default: the latest)."""
    parser.add_argument("--workdir", required=workdir_required, help="training work dir")
    parser.add_argument("--step", type=int, default=None, help="generator checkpoint step (default: latest)")


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """Each of ``args.<name>`` that is set (not None) must be a positive integer; the flag is ``--name-with-dashes``."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive, got {value}")


def check_seed_range(first: int, count: int = 1, flag: str = "--seed") -> None:
    """Seeds ``first`` .. ``first + count - 1`` must lie in the seed range of ``check_seeds`` (0 .. 2³² − 1)."""
    from lkgan_jax.models.sampling import MAX_SEED

    if first < 0 or first + count - 1 > MAX_SEED:
        seeds = "seeds" if count == 1 else f"seeds {first}..{first + count - 1}"
        raise ValueError(f"{flag} {first}: {seeds} must lie in 0..{MAX_SEED}")
