"""``lkgan edit``: applies a recipe of edit operations (``lkgan_jax.editing.recipe``) to one image.

  lkgan edit --workdir RUN [--step N] --seed S --ops OPS.json --out DIR [--latents FILE]

Starts from the image of seed S (or from its row in ``FILE``, a ``latents.npz`` written by
``lkgan generate`` and possibly modified) and writes to DIR:

  00_input.png, 01_<op>.png, ...   the image after each op (native resolution)
  strip.png                        one column per op: with keypoints, without, and the change from the
                                   previous column (visualize.change_map; dark = changed)
  NN_interpolate.gif               the frames of every interpolation (swinging back and forth)
  latent.npz                       the edited latent (``seeds``, ``step`` and the ``Latent`` fields, as
                                   ``latents.npz`` of ``lkgan generate``: ``--latents`` reads it back)
"""

from __future__ import annotations

import argparse
import pathlib
import zipfile

import jax
import numpy as np

from lkgan_jax.cli.arguments import add_run_arguments, check_seed_range
from lkgan_jax.editing.recipe import parse_recipe
from lkgan_jax.editing.replay import RunEditors, last_frame, latent_record, run_recipe
from lkgan_jax.models.latent import Latent, latent_from_numpy
from lkgan_jax.models.sampling import check_seeds
from lkgan_jax.pretrained import load_generator
from lkgan_jax.utils import files, visualize

STRIP_FILE = "strip.png"
LATENT_FILE = "latent.npz"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("edit", help="edit the image of a seed through its latent keypoints (OPS.json)")
    add_run_arguments(parser)
    parser.add_argument("--seed", type=int, required=True, help="the image to edit")
    parser.add_argument("--ops", required=True, help="JSON list of operations (see lkgan_jax/editing/recipe.py)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--latents", default=None, help="start from the seed's row of this latents.npz")
    parser.set_defaults(run=run, takes_overrides=False)


def load_start_latent(path: str, seed: int) -> Latent:
    """The row of ``seed`` in a ``latents.npz`` of ``lkgan generate`` (batch 1)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--latents {path} is not a .npz file (expected latents.npz of `lkgan generate` or latent.npz of `lkgan edit`)")
    try:
        with np.load(path) as arrays:
            seeds = np.asarray(arrays["seeds"]) if "seeds" in arrays else None
            latent = latent_from_numpy(arrays)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read latents from {path}: {error}") from None
    rows = np.flatnonzero(seeds == seed) if seeds is not None else []
    if len(rows) == 0:
        raise ValueError(f"{path} holds no latent of seed {seed}")
    return jax.tree.map(lambda x: x[rows[:1]], latent)


def save_outputs(
    out: pathlib.Path, results: list[tuple[str, str, Latent, np.ndarray]], resolution: int, seed: int, step: int
) -> list[pathlib.Path]:
    """Writes the per-op images, strip, GIFs and final latent (of ``seed``, checkpoint ``step``); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    written, drawn_tiles, plain_tiles, change_tiles = [], [], [], []
    upscale = visualize.readable_upscale_factor(resolution)
    previous = results[0][3][-1]
    for i, (name, caption, frames, images) in enumerate(results):
        path = out / f"{i:02d}_{name}.png"
        visualize.save_png(str(path), images[-1])
        written.append(path)
        big = visualize.upscale_nearest(images, upscale)
        if len(images) > 1:
            gif = out / f"{i:02d}_{name}.gif"
            visualize.save_gif(str(gif), big)
            written.append(gif)
        drawn = visualize.draw_keypoints(big[-1:], np.asarray(frames.keypoints[-1:]), np.asarray(frames.mask[-1:]))[0]
        drawn_tiles.append(visualize.add_caption(drawn, caption if i == 0 else f"{i} {caption}"))
        plain_tiles.append(visualize.add_caption(big[-1], "without keypoints" if i == 0 else ""))
        change = visualize.upscale_nearest(visualize.change_map(previous, images[-1]), upscale)
        change_tiles.append(visualize.add_caption(change, f"change x{visualize.CHANGE_GAIN:g} (dark)" if i == 0 else f"{i} vs {i - 1}"))
        previous = images[-1]
    tiles = np.stack(drawn_tiles + plain_tiles + change_tiles)
    visualize.save_png(str(out / STRIP_FILE), visualize.make_grid(tiles, ncols=len(results)))
    files.save_npz(out / LATENT_FILE, **latent_record(last_frame(results[-1][2]), seed, step))
    return written + [out / STRIP_FILE, out / LATENT_FILE]


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    del overrides
    ops_path = pathlib.Path(args.ops)
    if not ops_path.is_file():
        raise FileNotFoundError(f"ops file not found: {ops_path}")
    check_seed_range(args.seed)
    seed = int(check_seeds([args.seed])[0])
    files.check_output_directory(args.out, "--out")
    model = load_generator(args.workdir, args.step)
    start = load_start_latent(args.latents, seed) if args.latents else model.latent_from_seeds(check_seeds([seed]))
    operations = parse_recipe(ops_path.read_text(), start.num_parts, model.num_parts, source=ops_path.name)
    results = run_recipe(model, start, operations, editors=RunEditors(args.workdir, model))
    written = save_outputs(pathlib.Path(args.out), results, model.resolution, seed, model.step)
    print(f"applied {len(operations)} ops to seed {seed} (step {model.step}); wrote {len(written)} files to {args.out}")

