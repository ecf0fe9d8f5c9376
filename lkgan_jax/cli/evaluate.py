"""``lkgan evaluate``: metrics of a trained run (or of two image folders) as one JSON object.

  lkgan evaluate --workdir RUN [--step N] --metrics landmarks[,...] [--real procedural|folder:PATH]
                 [--num-samples N] [--config=configs/NAME.py] [--config.eval.x=v ...] --out FILE.json

The JSON (written atomically) holds the metric values under names like ``landmarks/error_iod_pct``
plus provenance: ``step``, ``workdir``, ``metrics``, ``real``, versions, device and ``seconds/<metric>``.
The ``eval`` config section comes from ``--config`` when given, else from the run's own config.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import Any, Callable

from lkgan_jax.config_loading import config_for_run
from lkgan_jax.utils import files
from lkgan_jax.workdir import read_config


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="compute metrics of a trained run and write them as JSON")
    parser.add_argument("--workdir", required=True, help="training work dir")
    parser.add_argument("--step", type=int, default=None, help="generator checkpoint step (default: latest)")
    parser.add_argument("--metrics", required=True, help=f"comma-separated: {', '.join(METRICS)}")
    parser.add_argument("--real", default="procedural", help="labelled/real images: procedural or folder:PATH")
    parser.add_argument("--config", default=None, help="config file for the eval section (default: the run's)")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.set_defaults(run=run, takes_overrides=True)


def _landmarks(context: dict[str, Any]) -> dict[str, Any]:
    from lkgan_jax.evaluation.landmarks import landmark_metrics

    config = context["config"]
    return landmark_metrics(context["workdir"], context["real"], config.eval, data_seed=config.data.seed)


METRICS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "landmarks": _landmarks,
}


def provenance() -> dict[str, Any]:
    """Versions and device of this process."""
    import flax
    import jax
    import numpy as np

    import lkgan_jax

    device = jax.devices()[0]
    return {
        "versions": {"lkgan_jax": lkgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__},
        "device": {"kind": device.device_kind, "platform": device.platform, "count": jax.device_count()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def parse_metric_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if not names or unknown:
        raise ValueError(f"unknown metric {unknown[0] if unknown else '(none given)'}; choose from {', '.join(METRICS)}")
    return names


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    names = parse_metric_names(args.metrics)
    config = config_for_run(read_config(args.workdir), ("eval",), args.config, overrides)
    context = {"workdir": args.workdir, "step": args.step, "real": args.real, "config": config}
    result: dict[str, Any] = {"workdir": str(args.workdir), "metrics": names, "real": args.real}
    for name in names:
        start = time.perf_counter()
        result.update(METRICS[name](context))
        result[f"seconds/{name}"] = round(time.perf_counter() - start, 3)
    result.update(provenance())
    files.write_atomically(args.out, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}))
