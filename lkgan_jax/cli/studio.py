"""``lkgan studio``: edit generated images in the browser by dragging their keypoints (docs/studio.md).

  lkgan studio --workdir RUN [--step N] [--port P] [--host 127.0.0.1] [--export-dir DIR] [--seed S]

Serves a local page (``lkgan_jax.studio``) on http://HOST:PORT/ until Ctrl-C. Exports are written
only below ``--export-dir`` (default ``RUN/studio_exports``).
"""

from __future__ import annotations

import argparse
import pathlib

import jax

from lkgan_jax.cli.arguments import add_run_arguments, check_seed_range
from lkgan_jax.models.sampling import check_seeds
from lkgan_jax.pretrained import load_generator
from lkgan_jax.utils import files

EXPORT_DIR = "studio_exports"
DEFAULT_PORT = 8765


def render_dtype(platform: str) -> str | None:
    """The studio's compute dtype on ``platform``: float32 on a CPU, where bfloat16 is emulated and slower;
    elsewhere None (the run's ``model.dtype``)."""
    return "float32" if platform == "cpu" else None


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("studio", help="edit generated images in the browser by dragging their keypoints")
    add_run_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--export-dir", default=None, help=f"the only folder the studio writes to (default RUN/{EXPORT_DIR})")
    parser.add_argument("--seed", type=int, default=0, help="the image a new page starts from")
    parser.set_defaults(run=run, takes_overrides=False)


def build_server(
    workdir: str | pathlib.Path,
    step: int | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    export_dir: str | pathlib.Path | None = None,
    seed: int = 0,
):
    """Loads the run's EMA generator, binds the studio to ``host:port`` and compiles its renders -> a ``StudioServer``.

    The caller runs ``serve_forever()`` and finally ``server_close()``. One-line ``ValueError`` /
    ``FileNotFoundError`` for a bad run, step, port, seed or export folder.
    """
    from lkgan_jax.editing.replay import RunEditors
    from lkgan_jax.studio.engine import Engine
    from lkgan_jax.studio.server import StudioServer

    if not 0 <= port <= 65535:
        raise ValueError(f"--port must lie in 0..65535, got {port}")
    check_seed_range(seed)
    seed = int(check_seeds([seed])[0])
    workdir = pathlib.Path(workdir)
    export_dir = files.check_output_directory(workdir / EXPORT_DIR if export_dir is None else export_dir, "--export-dir")
    model = load_generator(workdir, step, dtype=render_dtype(jax.default_backend()))
    engine = Engine(model, RunEditors(workdir, model))
    server = StudioServer((host, port), engine, export_dir, model.step, workdir.absolute().name, seed)
    try:
        engine.warm_up(seed)
    except BaseException:
        server.server_close()
        raise
    return server


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    del overrides
    server = build_server(args.workdir, args.step, args.host, args.port, args.export_dir, args.seed)
    engine = server.engine
    print(
        f"lkgan studio: {args.workdir} (step {server.step}, {engine.resolution} px, {engine.num_parts} parts) at {server.url}\n"
        f"  exports go to {server.export_dir}; Ctrl-C stops",
        flush=True,
    )
    if server.allowed_hosts is None:
        print(f"  warning: listening on {args.host}, so other machines can reach the studio", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("lkgan studio: stopped", flush=True)
    finally:
        server.server_close()
