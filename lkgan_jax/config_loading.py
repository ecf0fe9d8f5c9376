"""Loads ``ml_collections`` config files with ``path[:variant]`` and ``--config.a.b=value`` overrides."""

from __future__ import annotations

import pathlib
import sys

import ml_collections
from absl import flags
from ml_collections import config_flags

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = "configs/default.py"


def resolve_config_path(spec: str) -> str:
    """'configs/x.py[:variant]' relative to the working directory, else to the repository root."""
    path, _, variant = spec.partition(":")
    candidate = pathlib.Path(path)
    if not candidate.exists() and (REPO_ROOT / path).exists():
        candidate = REPO_ROOT / path
    if not candidate.exists():
        raise FileNotFoundError(f"config file not found: {path}")
    return str(candidate) + (f":{variant}" if variant else "")


def load_config(spec: str = DEFAULT_CONFIG, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Loads ``spec`` and applies ``overrides`` like ``['--config.train.steps=10']``; typos are errors."""
    resolved = resolve_config_path(spec)
    root = str(pathlib.Path(resolved.partition(":")[0]).resolve().parents[1])
    if root not in sys.path:  # lets config files import each other as ``configs.x``
        sys.path.insert(0, root)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ValueError(f"unexpected arguments {bad}; config overrides look like --config.train.steps=100")
    argv = ["lkgan", *overrides]
    flag_values = flags.FlagValues()
    try:
        # config_flags finds the override flags in ``sys_argv`` when the config flag is defined.
        config_flags.DEFINE_config_file("config", resolved, flag_values=flag_values, lock_config=True, sys_argv=argv)
        flag_values(argv)
    except (flags.Error, KeyError, AttributeError, TypeError) as error:
        raise ValueError(f"bad config override: {_innermost_message(error)}") from None
    return flag_values.config


def _innermost_message(error: BaseException) -> str:
    """One line from ml_collections' nested KeyError/AttributeError messages."""
    message: object = error
    while isinstance(message, BaseException) and message.args:
        message = message.args[0]
    return " ".join(str(message).split())
