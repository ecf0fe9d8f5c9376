"""``lkgan generate``: the images of seeds S .. S+N−1 from a trained run.

  lkgan generate --workdir RUN [--step N] --num N --seed S --out DIR [--keypoints] [--batch-size B]

Writes ``DIR/seed_XXXXXX.png`` (native resolution), ``DIR/grid.png`` (upscaled for viewing; keypoints
drawn with ``--keypoints``, which also writes ``DIR/keypoints/seed_XXXXXX.png`` overlays) and
``DIR/latents.npz`` (``seeds``, ``step`` and the ``Latent`` fields, one row per image), so that any
image can be edited later (``lkgan edit --seed S``, or ``--latents DIR/latents.npz`` after changing it).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from lkgan_jax.cli.arguments import add_run_arguments, check_positive, check_seed_range
from lkgan_jax.conventions import float_to_uint8
from lkgan_jax.models.latent import Latent, latent_to_numpy
from lkgan_jax.models.sampling import TrainedGenerator, check_seeds
from lkgan_jax.pretrained import load_generator
from lkgan_jax.utils import files, visualize
from lkgan_jax.utils.batching import padded_batches

LATENTS_FILE = "latents.npz"
GRID_FILE = "grid.png"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("generate", help="render the images of a range of seeds from a trained run")
    add_run_arguments(parser)
    parser.add_argument("--num", type=int, default=16, help="number of images (seeds S .. S+N-1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed S")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--keypoints", action="store_true", help="draw keypoints on the grid and write overlays")
    parser.add_argument("--batch-size", type=int, default=64, help="images rendered per call")
    parser.set_defaults(run=run, takes_overrides=False)


def seed_file(seed: int) -> str:
    return f"seed_{seed:06d}.png"


def generate(model: TrainedGenerator, seeds: np.ndarray, batch_size: int) -> tuple[np.ndarray, Latent]:
    """Renders ``seeds`` (N,) in batches of ``batch_size`` -> uint8 images (N, R, R, 3), latents (N, ...).

    The last batch is padded to the full batch shape, so one compiled program serves every batch.
    """
    seeds = check_seeds(seeds)
    images, latents = [], []
    for indices, count in padded_batches(len(seeds), batch_size):
        latent = model.latent_from_seeds(seeds[indices])
        images.append(float_to_uint8(model.render(latent))[:count])
        latents.append(jax.tree.map(lambda x, n=count: np.asarray(x[:n]), latent))
    return np.concatenate(images), jax.tree.map(lambda *x: jnp.asarray(np.concatenate(x)), *latents)


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    del overrides
    check_positive(args, "num", "batch_size")
    check_seed_range(args.seed, args.num)
    seeds = check_seeds(np.arange(args.seed, args.seed + args.num, dtype=np.int64))
    files.check_output_directory(args.out, "--out")  # before the model is loaded and anything rendered
    model = load_generator(args.workdir, args.step)
    images, latent = generate(model, seeds, min(args.batch_size, args.num))
    out = files.output_directory(args.out, "--out")
    for seed, image in zip(seeds, images):
        visualize.save_png(str(out / seed_file(int(seed))), image)
    upscaled = visualize.upscale_nearest(images, visualize.readable_upscale_factor(model.resolution))
    if args.keypoints:
        upscaled = visualize.draw_keypoints(upscaled, np.asarray(latent.keypoints), np.asarray(latent.mask))
        for seed, overlay in zip(seeds, upscaled):
            visualize.save_png(str(out / "keypoints" / seed_file(int(seed))), overlay)
    visualize.save_png(str(out / GRID_FILE), visualize.make_grid(upscaled))
    files.save_npz(out / LATENTS_FILE, seeds=seeds, step=np.asarray(model.step), **latent_to_numpy(latent))
    print(f"wrote {len(seeds)} images of seeds {seeds[0]}..{seeds[-1]} (step {model.step}), {GRID_FILE} and {LATENTS_FILE} to {out}")
