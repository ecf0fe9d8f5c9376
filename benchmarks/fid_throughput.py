"""Throughput of FID feature extraction (pre-processing + FID Inception), optionally vs pytorch-fid.

  python benchmarks/fid_throughput.py [--resolutions 64,256] [--batch-size 32] [--num 256]
                                      [--inception-weights PATH [--allow-unverified] | --random-weights]
                                      [--protocol pytorch_fid] [--no-torch]

For each input resolution: random uint8 images (num, R, R, 3); ``compile_and_first_batch_s`` is the
first call of the jitted function (compile + one batch); ``images_per_s`` is the steady state of
``FeatureExtractor.extract`` over all ``num`` images (host → device, padding of the last batch,
features back to the host). Without ``--inception-weights`` the weights are random (throughput does
not depend on them; the JSON says ``random_weights: true``).

If ``torch`` and ``pytorch_fid`` import (through ``lkgan_jax.evaluation.torch_reference``'s torchvision
shim), pytorch-fid's InceptionV3 (resize + 2x − 1 inside, eval mode, no_grad) runs on the same images
with the same weights file (random weights are saved by torch and read back by our torch-free reader),
after a one-batch warm-up: ``torch_images_per_s``, ``speedup_vs_pytorch_fid`` and the features'
``max_rel_diff_vs_pytorch_fid`` (max |Δ| / max |ref|) are reported. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
import warnings

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from lkgan_jax.evaluation import inception, inception_weights  # noqa: E402
from lkgan_jax.evaluation.features import FeatureExtractor  # noqa: E402
from lkgan_jax.evaluation.preprocess import DEFAULT_PROTOCOL, PROTOCOLS  # noqa: E402


def _torch_reference(weights_path: str | None, torch_home: pathlib.Path):
    """(torch_reference module, weights file for both sides) or (None, weights_path) without torch."""
    try:
        from lkgan_jax.evaluation import torch_reference

        torch_reference.import_pytorch_fid()
    except Exception as error:  # ImportError, or a broken torch/torchvision install
        print(f"pytorch-fid reference unavailable ({type(error).__name__}: {error})", file=sys.stderr)
        return None, weights_path
    if weights_path is None:
        return torch_reference, str(torch_reference.save_random_weights(torch_home, seed=0))
    target = torch_home / "hub" / "checkpoints" / inception_weights.WEIGHTS_FILENAME
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.abspath(weights_path), target)
    return torch_reference, weights_path


def measure(extractor: FeatureExtractor, resolution: int, num: int, torch_ref, torch_model) -> dict:
    images = np.random.default_rng(resolution).integers(0, 256, (num, resolution, resolution, 3), dtype=np.uint8)
    first_batch = images[: extractor.batch_size]
    if len(first_batch) < extractor.batch_size:
        first_batch = np.concatenate([first_batch, images[: extractor.batch_size - len(first_batch)]])
    start = time.perf_counter()
    jax.block_until_ready(extractor(first_batch))
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    ours = extractor.extract(images)
    seconds = time.perf_counter() - start
    result = {
        "resolution": resolution,
        "num_images": num,
        "compile_and_first_batch_s": round(first_s, 3),
        "seconds": round(seconds, 3),
        "images_per_s": round(num / seconds, 2),
    }
    if torch_model is not None:
        torch_ref.torch_features(torch_model, images[: extractor.batch_size], extractor.batch_size)  # warm-up
        start = time.perf_counter()
        ref = torch_ref.torch_features(torch_model, images, extractor.batch_size)["2048"]
        torch_seconds = time.perf_counter() - start
        result.update(
            torch_seconds=round(torch_seconds, 3),
            torch_images_per_s=round(num / torch_seconds, 2),
            speedup_vs_pytorch_fid=round(torch_seconds / seconds, 3),
            max_rel_diff_vs_pytorch_fid=float(np.abs(ours - ref).max() / np.abs(ref).max()),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", default="64,256", help="comma-separated input sides in pixels")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num", type=int, default=256, help="images per resolution")
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=PROTOCOLS)
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--inception-weights", default=None, help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    weights.add_argument("--random-weights", action="store_true", help="random weights (the default without a file)")
    parser.add_argument("--allow-unverified", action="store_true", help="accept a weights file with another hash")
    parser.add_argument("--no-torch", action="store_true", help="skip the pytorch-fid comparison")
    args = parser.parse_args()
    resolutions = [int(r) for r in args.resolutions.split(",")]

    with tempfile.TemporaryDirectory() as torch_home:
        torch_ref, weights_path = (None, args.inception_weights) if args.no_torch else \
            _torch_reference(args.inception_weights, pathlib.Path(torch_home))
        random_weights = args.inception_weights is None
        if weights_path is None:
            params, sha = inception.random_params(seed=0), None
        else:
            with warnings.catch_warnings():
                if random_weights:  # our own random file: its hash is of course not pytorch-fid's
                    warnings.simplefilter("ignore")
                params, sha = inception_weights.load_inception_params(
                    weights_path, allow_unverified=random_weights or args.allow_unverified)
        extractor = FeatureExtractor(params=params, protocol=args.protocol, batch_size=args.batch_size)
        torch_model, torch_info = None, {"torch_version": None, "torch_threads": None}
        if torch_ref is not None:
            import torch

            torch_model = torch_ref.pytorch_fid_model(torch_home)
            torch_info = {"torch_version": torch.__version__, "torch_threads": torch.get_num_threads()}
        results = []
        for resolution in resolutions:
            results.append(measure(extractor, resolution, args.num, torch_ref, torch_model))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress

    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "fid_throughput",
        "protocol": args.protocol,
        "batch_size": args.batch_size,
        "random_weights": random_weights,
        "weights_sha256": None if random_weights else sha,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        **torch_info,
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "results": results,
    }))


if __name__ == "__main__":
    main()
