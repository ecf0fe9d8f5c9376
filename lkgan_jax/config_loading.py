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
    check_config_file(candidate)
    return str(candidate) + (f":{variant}" if variant else "")


def check_config_file(path: pathlib.Path) -> None:
    """One-line errors for a config file that does not compile or never binds a top-level ``get_config``.

    The file is compiled, not ``ast.parse``d: CPython 3.11's AST-to-object conversion can fail
    spuriously ("AST constructor recursion depth mismatch") while another thread compiles.
    """
    try:
        code = compile(path.read_text(), str(path), "exec", dont_inherit=True)
    except SyntaxError as error:
        raise ValueError(f"config file {path} has a syntax error at line {error.lineno}: {error.msg}") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"config file {path} cannot be read ({error})") from None
    if "get_config" not in code.co_names:  # the module-level names it binds or reads
        raise ValueError(f"config file {path} defines no get_config() function")


def load_config(spec: str = DEFAULT_CONFIG, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """Loads ``spec`` and applies ``overrides`` like ``['--config.train.steps=10']``; typos are errors."""
    resolved = resolve_config_path(spec)
    root = str(pathlib.Path(resolved.partition(":")[0]).resolve().parents[1])
    if root not in sys.path:  # lets config files import each other as ``configs.x``
        sys.path.insert(0, root)
    return _parse_overrides(overrides, lambda fv, argv: config_flags.DEFINE_config_file(
        "config", resolved, flag_values=fv, lock_config=True, sys_argv=argv), spec)


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str] | tuple[str, ...] = ()) -> ml_collections.ConfigDict:
    """A copy of ``config`` (e.g. read back from a work dir's config.json) with ``--config.a.b=v`` overrides."""
    return _parse_overrides(overrides, lambda fv, argv: config_flags.DEFINE_config_dict(
        "config", ml_collections.ConfigDict(config.to_dict()), flag_values=fv, lock_config=True, sys_argv=argv), "")


def _parse_overrides(overrides, define, spec: str) -> ml_collections.ConfigDict:
    """Defines the config flag with ``define`` and parses ``overrides``; ``spec`` names the config file in errors."""
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ValueError(f"unexpected arguments {bad}; config overrides look like --config.train.steps=100")
    argv = ["lkgan", *overrides]
    flag_values = flags.FlagValues()
    try:
        # config_flags finds the override flags in ``sys_argv`` when the config flag is defined.
        define(flag_values, argv)
        flag_values(argv)
    except (flags.Error, KeyError, AttributeError, TypeError) as error:
        raised = _raised_by_get_config(error)
        if raised is not None:  # the config file's own error, e.g. an unknown variant
            raise ValueError(f"config {spec}: {raised}") from None
        raise ValueError(f"bad config override: {_innermost_message(error)}") from None
    return flag_values.config


def _raised_by_get_config(error: BaseException) -> str | None:
    """The message of the exception that ``get_config`` raised, which ml_collections wraps with its
    traceback text; None when ``error`` did not come from ``get_config``."""
    text = str(error)
    if "Error whilst parsing config file" not in text or "Traceback" not in text:
        return None
    last = [line for line in text.splitlines() if line.strip()][-1].strip()  # "ValueError: message"
    name, separator, message = last.partition(": ")
    return message if separator and name.isidentifier() else last


def _innermost_message(error: BaseException) -> str:
    """One line from ml_collections' nested KeyError/AttributeError messages."""
    message: object = error
    while isinstance(message, BaseException) and message.args:
        message = message.args[0]
    return " ".join(str(message).split())


def config_for_run(
    run_config: ml_collections.ConfigDict, sections: tuple[str, ...], spec: str | None, overrides: list[str] | tuple[str, ...] = ()
) -> ml_collections.ConfigDict:
    """A trained run's config with its ``sections`` (e.g. ``detect``, ``eval``) settled, overrides applied.

    Sections come from ``spec`` when one is given, else from the run's own config; a section or field
    the run's config lacks (a run from before it existed) comes from the default config.
    """
    config = ml_collections.ConfigDict(run_config.to_dict())
    source = load_config(spec) if spec else None
    default = load_config(DEFAULT_CONFIG)
    for name in sections:
        if source is not None:
            config[name] = source[name]
        elif name not in config:
            config[name] = default[name]
        else:
            for field, value in default[name].items():
                if field not in config[name]:
                    config[name][field] = value
    return apply_overrides(config, overrides)
