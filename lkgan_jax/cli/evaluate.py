"""``lkgan evaluate``: metrics of a trained run, FID of two image folders, or the judge's fidelity scores of
generated images, as one JSON object.

  lkgan evaluate --workdir RUN [--step N] --metrics fid,kid,fid_interp,cpd,locality,landmarks,judge,editing
                 [--real procedural|folder:PATH|arrayrecord:PATH] [--num-samples N] [--num-real N]
                 [--cpd-pairs N] [--locality-pairs N] [--editors NAME,...]
                 [--inception-weights PATH] [--protocol pytorch_fid|tf_legacy] [--judge-weights PATH]
                 [--config=configs/NAME.py] [--config.eval.x=v ...] --out FILE.json
  lkgan evaluate --workdir RUN --metrics landmarks --protocol mafl|celeba_wild|cub|cub_00N|taichi|h36m --data OUT
                 [--config.eval.batch_size=N] --out FILE.json
  lkgan evaluate fid --real DIR --fake DIR --inception-weights PATH --out FILE.json
  lkgan evaluate judge --fake DIR|FILE.npz [--judge-weights PATH] [--num-samples N]
                 [--config=configs/NAME.py] [--config.eval.x=v ...] --out FILE.json

The JSON (written atomically) holds the metric values under names like ``fid``, ``kid_mean``,
``fid_interp/parts``, ``cpd``, ``cpd_matrix``, ``locality/swap_ratio_r0.15``, ``landmarks/error_iod_pct``,
plus provenance:
``step``, ``num_samples``, ``num_real``, ``protocol``, ``inception_sha256``, versions, device and
``seconds/<metric>``. The ``eval`` config section comes from ``--config`` when given, else from the
run's own config. FID-type metrics need pytorch-fid's weight file (a local path; no downloads).

``editing`` measures the run's learned attribute editors (``lkgan edit-train``; all of them, or
``--editors``) and two baselines with a second judge (``--judge-weights``) and a second detector
(``eval.editing_detector``), and writes a picture beside the JSON (``OUT.editing.png``; see
``lkgan_jax.latent_editing.evaluate``).

``judge`` mode scores images made elsewhere as ``--metrics judge`` scores a run's
(``lkgan_jax.evaluation.judged``): ``--fake`` is an image folder or an ``.npz`` file holding one uint8
array (N, R, R, 3) (of several, the one named ``images``); the images must be square RGB of one side R,
a power of two ≥ 16. The N images (the first ``--num-samples`` of them) are scored against N real
train-split procedural faces rendered at R (``data.seed`` of the config), and each score's floor is
that of N real test-split faces. The JSON holds ``judge_fd``, ``judge_attributes``, ``judge_precision``,
``judge_recall``, ``swd_<side>``, ``swd_mean``, each also as ``<name>_floor``, and ``mode``, ``fake``,
``num_samples``, ``resolution``, ``data_seed``, ``judge_sha256`` and ``seconds/judge``. The ``eval``
section comes from ``--config`` (default ``configs/default.py``); the judge from ``--judge-weights``,
else ``eval.judge_weights``, else the judge shipped with lkgan_jax.

A benchmark's landmark protocol, ``--protocol mafl|celeba_wild|cub|cub_001|cub_002|cub_003|taichi|h36m
--data OUT``, scores ``landmarks`` on the splits of ``OUT`` that ``lkgan prepare celeba|celeba_wild|cub|taichi|h36m_simplified``
wrote, with that benchmark's exact regression and error (``lkgan_jax.evaluation.protocols``), through
the run's detector (``RUN/detector`` of ``lkgan detect``) or, for a KeypointGAN run, its own Φ and η
(flips corrected by the offline η). Keys ``landmarks/<protocol>/...`` (``lkgan_jax.evaluation.benchmark``),
with the mean-landmark baseline under the same protocol. ``--protocol`` takes either kind of name: a FID
image protocol (``pytorch_fid``, the default, or ``tf_legacy``) or a landmark protocol; the other metrics of
the same command use the default FID protocol.

In a multi-process job (``LKGAN_DISTRIBUTED=1``, as for ``lkgan train``) every process runs the same
command: each computes its share of the samples, all get the same numbers, and only process 0 writes
the JSON (``lkgan_jax.evaluation.run_metrics``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import time
import zipfile
from typing import Any

import numpy as np
from absl import logging

from lkgan_jax.cli.arguments import add_run_arguments, check_positive
from lkgan_jax.cli.distributed import maybe_initialize_distributed
from lkgan_jax.config_loading import DEFAULT_CONFIG, config_for_run, load_config
from lkgan_jax.data.folder_batches import iterate_folder_batches
from lkgan_jax.data.sources import PROCEDURAL, ImageSource
from lkgan_jax.detection.inference import load_detector_run
from lkgan_jax.evaluation.features import FeatureExtractor
from lkgan_jax.evaluation.fid import frechet_distance
from lkgan_jax.evaluation.kid import kernel_inception_distance
from lkgan_jax.evaluation.landmarks import check_labelled
from lkgan_jax.evaluation.preprocess import DEFAULT_PROTOCOL, PROTOCOLS as FID_PROTOCOLS
from lkgan_jax.evaluation.protocols import PROTOCOLS as LANDMARK_PROTOCOLS
from lkgan_jax.evaluation import judged
from lkgan_jax.keypointgan.evaluate import is_keypointgan_run
from lkgan_jax.evaluation.run_metrics import METRICS, EvalSetup, RunEvaluation, evaluate, parse_metric_names, take_rows
from lkgan_jax.pretrained import load_generator
from lkgan_jax.utils import files
from lkgan_jax.workdir import read_config

EDITING = "editing"  # the learned editors' metric: computed here, outside the generator metric registry
FID_BATCH_SIZE = 50  # the default --batch-size of `lkgan evaluate fid`
RUN_ONLY_FLAGS = ("workdir", "step", "metrics", "editors", "num_samples", "num_real", "judge_weights", "cpd_pairs",
                  "locality_pairs", "cpd_groups", "cpd_background", "config", "data")  # flags that `evaluate fid` does not take
# flags that `evaluate judge` does not take (--protocol: when not the default)
NOT_JUDGE_FLAGS = ("workdir", "step", "metrics", "editors", "real", "num_real", "inception_weights", "allow_unverified_weights",
                   "cpd_pairs", "locality_pairs", "cpd_groups", "cpd_background", "batch_size", "data")
MIN_JUDGE_SIDE = 16  # the smallest side of `evaluate judge` images (SWD's coarsest pyramid level)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("evaluate", help="compute metrics of a trained run (or FID of two folders) as JSON")
    parser.add_argument("mode", nargs="?", choices=["fid", "judge"],
                        help="'fid': FID and KID of two image folders; 'judge': the judge's fidelity scores of --fake")
    add_run_arguments(parser, workdir_required=False)
    parser.add_argument("--metrics", help=f"comma-separated: {', '.join((*METRICS, EDITING))}")
    parser.add_argument("--editors", default=None, help="editing: comma-separated editor names (default: every trained editor)")
    parser.add_argument("--real", default=None, help="real images: procedural, folder:PATH or arrayrecord:PATH (default: the run's data; a folder with `fid`)")
    parser.add_argument("--fake", default=None,
                        help="generated images: a folder (with `fid` or `judge`) or an .npz of uint8 (N, R, R, 3) (with `judge`)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="generated images per FID (default: eval.num_samples); with `judge`: the first N of --fake (default: all)")
    parser.add_argument("--num-real", type=int, default=None, help="real images (default: eval.num_real)")
    parser.add_argument("--inception-weights", default=None,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (default: eval.inception_weights)")
    parser.add_argument("--judge-weights", default=None, help="judge.msgpack of `lkgan judge train` (default: eval.judge_weights)")
    parser.add_argument("--allow-unverified-weights", action="store_true", help="accept another weight file (tests)")
    parser.add_argument("--protocol", default=None,
                        help=f"FID image protocol ({' | '.join(FID_PROTOCOLS)}; default {DEFAULT_PROTOCOL}), or with "
                             f"--metrics landmarks --data OUT a benchmark's landmark protocol ({' | '.join(LANDMARK_PROTOCOLS)})")
    parser.add_argument("--data", default=None,
                        help="with a landmark --protocol: the directory that `lkgan prepare <dataset> --out OUT` wrote")
    parser.add_argument("--cpd-pairs", type=int, default=None, help="CPD pairs (default: eval.cpd_pairs)")
    parser.add_argument("--locality-pairs", type=int, default=None, help="locality pairs (default: eval.locality_pairs)")
    parser.add_argument("--cpd-groups", default=None, help="CPD part groups like '0,1;2;3' (default: one per part)")
    parser.add_argument("--cpd-background", action="store_true", help="CPD: the background is one more group")
    parser.add_argument("--batch-size", type=int, default=None, help=f"Inception batch size (with `fid`; default {FID_BATCH_SIZE})")
    parser.add_argument("--config", default=None, help="config file for the eval section (default: the run's)")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.set_defaults(run=run, takes_overrides=True)


def provenance() -> dict[str, Any]:
    """Versions and device of this process."""
    import flax
    import jax
    import numpy as np

    import lkgan_jax

    device = jax.devices()[0]
    return {
        "versions": {"lkgan_jax": lkgan_jax.__version__, "jax": jax.__version__, "flax": flax.__version__, "numpy": np.__version__},
        "device": {"kind": device.device_kind, "platform": device.platform, "count": jax.device_count(),
                   "processes": jax.process_count()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace, overrides: list[str]) -> None:
    import jax

    _resolve_protocol(args)
    files.check_output_file(args.out, "--out")  # before any metric is computed
    modes = {"fid": _folders_fid, "judge": _judged_fakes}
    if args.mode == "judge":
        _check_judge_flags(args)  # before a multi-process job is joined
    maybe_initialize_distributed()
    result = modes.get(args.mode, _run_metrics)(args, overrides)
    result.update(provenance())
    if jax.process_index() == 0:
        files.write_json(args.out, result)
        print(json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}))


def _resolve_protocol(args: argparse.Namespace) -> None:
    """Splits ``--protocol`` into ``args.protocol`` (the FID image protocol) and ``args.landmark_protocol``
    (a benchmark's, or None); a one-line error for a name of neither kind."""
    args.landmark_protocol = None
    if args.protocol is None:
        args.protocol = DEFAULT_PROTOCOL
    elif args.protocol in LANDMARK_PROTOCOLS:
        args.landmark_protocol, args.protocol = args.protocol, DEFAULT_PROTOCOL
    elif args.protocol not in FID_PROTOCOLS:
        raise ValueError(f"unknown --protocol {args.protocol!r}; landmark protocols (with --metrics landmarks --data OUT): "
                         f"{', '.join(LANDMARK_PROTOCOLS)}; FID image protocols: {', '.join(FID_PROTOCOLS)}")


def _check_benchmark_flags(args: argparse.Namespace, requested: tuple[str, ...]) -> Any:
    """The landmark protocol of ``--protocol P --data OUT`` once OUT is checked (``check_benchmark``), or None."""
    from lkgan_jax.evaluation.benchmark import check_benchmark

    p = args.landmark_protocol
    if p is None:
        if args.data:
            raise ValueError(f"--data is for a landmark --protocol ({', '.join(LANDMARK_PROTOCOLS)}) with --metrics landmarks")
        return None
    dataset = LANDMARK_PROTOCOLS[p].dataset
    if not args.data:
        raise ValueError(f"--protocol {p} needs --data OUT, the directory that `lkgan prepare {dataset} --root DIR --out OUT` wrote")
    if "landmarks" not in requested:
        raise ValueError(f"--protocol {p} is a landmark protocol; it needs --metrics landmarks")
    if args.real and tuple(requested) == ("landmarks",):
        raise ValueError(f"--real is not read by --protocol {p}: its images are the splits of --data {args.data}")
    return check_benchmark(args.data, p)[0]


def _run_metrics(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    if not args.workdir or not args.metrics:
        raise ValueError("lkgan evaluate needs --workdir and --metrics (or the `fid` mode with --real and --fake, "
                         "or the `judge` mode with --fake)")
    if args.fake:
        raise ValueError("--fake is only for `lkgan evaluate fid --real DIR --fake DIR` and `lkgan evaluate judge --fake PATH`")
    requested = parse_metric_names(args.metrics, extra=(EDITING,))
    names = tuple(n for n in requested if n != EDITING)
    if args.editors and EDITING not in requested:
        raise ValueError("--editors is for --metrics editing")
    if args.batch_size is not None:
        raise ValueError("--batch-size is only for `lkgan evaluate fid`; a run's metrics take --config.eval.batch_size")
    check_positive(args, "num_samples", "num_real", "cpd_pairs", "locality_pairs")
    protocol = _check_benchmark_flags(args, requested)  # before any model or run config is read
    if args.step is not None and names == ("landmarks",):
        raise ValueError("--step picks the generator, but landmarks scores the run's detector (trained at its own generator step)")
    sections = ("eval", "edit") if EDITING in requested else ("eval",)  # edit: the baselines' δ range and training judge
    config = config_for_run(read_config(args.workdir), sections, args.config, overrides)
    if is_keypointgan_run(config):
        return _keypointgan_metrics(args, config, requested, protocol)
    if args.judge_weights:
        config.eval.judge_weights = args.judge_weights
    generator_names = names if protocol is None else tuple(n for n in names if n != "landmarks")
    result: dict[str, Any] = {"workdir": str(args.workdir), "metrics": list(requested)}
    if generator_names or EDITING in requested:
        real = ImageSource.parse(args.real) if args.real else ImageSource.from_data_config(config.data)
        setup = EvalSetup(
            config, real, generator_names, num_samples=args.num_samples, num_real=args.num_real,
            inception_weights=args.inception_weights, allow_unverified_weights=args.allow_unverified_weights,
            protocol=args.protocol, cpd_groups=args.cpd_groups, cpd_background=args.cpd_background, cpd_pairs=args.cpd_pairs,
            locality_pairs=args.locality_pairs,
        )
        run = RunEvaluation(
            setup,
            load_generator=lambda: load_generator(args.workdir, args.step),
            load_detector=lambda: load_detector_run(args.workdir),
            workdir=args.workdir,
        )
        result.update({"real": str(real), **evaluate(run, generator_names)})
    if protocol is not None:
        result.update(_benchmark_landmarks(args, config, protocol))
    if EDITING in requested:
        result.update(_editing_metrics(args, config, setup))
    return result


def _benchmark_landmarks(args: argparse.Namespace, config: Any, protocol: Any) -> dict[str, Any]:
    """``landmarks`` under a benchmark's protocol through the run's detector (``lkgan detect``)."""
    from lkgan_jax.detection.inference import load_detector
    from lkgan_jax.evaluation.benchmark import benchmark_landmark_metrics
    from lkgan_jax.models.factory import generator_resolution

    start = time.perf_counter()
    detector, _, generator_step = load_detector(args.workdir)  # a one-line error naming `lkgan detect` when absent
    resolution = generator_resolution(config.model)  # the detector was trained on the generator's images
    metrics = benchmark_landmark_metrics(detector.detect, protocol, args.data, resolution, config.eval.batch_size)
    return {**metrics, "landmarks/detector_step": detector.step, "landmarks/generator_step": generator_step,
            "seconds/landmarks": round(time.perf_counter() - start, 3)}


def _editing_metrics(args: argparse.Namespace, config: Any, setup: EvalSetup) -> dict[str, Any]:
    """The ``editing`` metrics (computed whole on every process) and their picture, ``OUT.editing.png``."""
    import jax

    from lkgan_jax.latent_editing.evaluate import evaluate_run_editing
    from lkgan_jax.utils import visualize

    start = time.perf_counter()
    extractor = real_features = None
    if setup.inception_weights or config.eval.get("inception_weights"):
        extractor = setup.extractor
        real_features = setup.real_statistics(load_generator(args.workdir, args.step).resolution).features
    editors = [n.strip() for n in args.editors.split(",") if n.strip()] if args.editors else None
    metrics, picture = evaluate_run_editing(args.workdir, config, editors, extractor, real_features)
    path = str(args.out).removesuffix(".json") + ".editing.png"
    if jax.process_index() == 0:
        visualize.save_png(path, picture)
    return {**metrics, "editing/picture": path, "seconds/editing": round(time.perf_counter() - start, 3)}


def _keypointgan_metrics(args: argparse.Namespace, config: Any, names: tuple[str, ...], protocol: Any = None) -> dict[str, Any]:
    """A KeypointGAN run has a detector and no generator: only ``landmarks`` applies (under a benchmark's
    ``protocol`` when given: Φ and η detect directly, flips corrected by the offline η)."""
    from lkgan_jax.keypointgan.evaluate import keypointgan_landmark_metrics, load_keypointgan
    from lkgan_jax.keypointgan.prior import load_prior_poses

    if tuple(names) != ("landmarks",):
        raise ValueError(f"a KeypointGAN run has only the landmarks metric, not {', '.join(n for n in names if n != 'landmarks')}")
    if protocol is not None:
        from lkgan_jax.evaluation.benchmark import benchmark_landmark_metrics

        start = time.perf_counter()
        model = load_keypointgan(args.workdir, args.step)
        metrics = benchmark_landmark_metrics(model.corrected_keypoints, protocol, args.data, model.kg.resolution,
                                             config.eval.batch_size)
        return {"workdir": str(args.workdir), "metrics": ["landmarks"], "step": model.step, **metrics,
                "landmarks/detector_step": model.step, "perceptual": model.config.get("perceptual", {}).get("used", ""),
                "seconds/landmarks": round(time.perf_counter() - start, 3)}
    real = ImageSource.parse(args.real) if args.real else ImageSource.from_data_config(config.data)
    check_labelled(real)
    start = time.perf_counter()
    model = load_keypointgan(args.workdir, args.step)
    prior_mean = load_prior_poses(config.prior, config.data, config.model.num_points).mean(axis=0)
    metrics = keypointgan_landmark_metrics(model, real, config.eval, config.data.seed, prior_mean)
    return {"workdir": str(args.workdir), "metrics": ["landmarks"], "real": str(real), "step": model.step, **metrics,
            "seconds/landmarks": round(time.perf_counter() - start, 3)}


def _folders_fid(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    if not args.real or not args.fake:
        raise ValueError("lkgan evaluate fid needs --real DIR and --fake DIR")
    given = [f"--{name.replace('_', '-')}" for name in RUN_ONLY_FLAGS if getattr(args, name) not in (None, False)]
    if given or overrides:
        raise ValueError(f"lkgan evaluate fid takes --real, --fake, --inception-weights, --protocol, --batch-size, --out, "
                         f"not {', '.join(given + overrides[:1])}")
    if args.landmark_protocol:
        raise ValueError(f"--protocol {args.landmark_protocol} is a landmark protocol (for --metrics landmarks --data OUT); "
                         f"`lkgan evaluate fid` takes {' or '.join(FID_PROTOCOLS)}")
    check_positive(args, "batch_size")
    batch_size = FID_BATCH_SIZE if args.batch_size is None else args.batch_size
    start = time.perf_counter()
    extractor = FeatureExtractor(
        args.inception_weights, protocol=args.protocol, batch_size=batch_size, allow_unverified=args.allow_unverified_weights
    )
    timings = {"seconds/load_weights": round(time.perf_counter() - start, 3)}
    stats = {}
    for name, path in (("real", args.real), ("fake", args.fake)):
        start = time.perf_counter()
        batches = iterate_folder_batches(path, batch_size)  # every process reads; each extracts a share
        stats[name] = extractor.sharded_statistics(functools.partial(take_rows, batches), len(batches))
        timings[f"seconds/{name}_features"] = round(time.perf_counter() - start, 3)
    kid_mean, kid_std = kernel_inception_distance(stats["fake"].features, stats["real"].features)
    return {
        "fid": frechet_distance(stats["fake"], stats["real"]),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "real": str(args.real),
        "fake": str(args.fake),
        "num_real": stats["real"].num,
        "num_samples": stats["fake"].num,
        "protocol": args.protocol,
        "inception_sha256": extractor.weights_sha256,
        **timings,
    }


def _check_judge_flags(args: argparse.Namespace) -> None:
    """One-line errors for the flags of ``lkgan evaluate judge`` (before anything is read)."""
    if not args.fake:
        raise ValueError("lkgan evaluate judge needs --fake DIR or --fake FILE.npz")
    given = [f"--{name.replace('_', '-')}" for name in NOT_JUDGE_FLAGS if getattr(args, name) not in (None, False)]
    if args.protocol != DEFAULT_PROTOCOL or args.landmark_protocol:
        given.append("--protocol")
    if given:
        raise ValueError(f"lkgan evaluate judge takes --fake, --judge-weights, --num-samples, --config, --config.eval.x=v, "
                         f"--out, not {', '.join(given)}")
    check_positive(args, "num_samples")


def _judged_fakes(args: argparse.Namespace, overrides: list[str]) -> dict[str, Any]:
    """``lkgan evaluate judge``: the fidelity scores of ``--fake`` against real procedural faces."""
    config = load_config(args.config or DEFAULT_CONFIG, overrides)
    if args.judge_weights:
        config.eval.judge_weights = args.judge_weights
    start = time.perf_counter()
    images = read_fake_images(args.fake, args.num_samples)
    num, side = len(images), images.shape[1]
    if num <= config.eval.judge_neighbours:
        given = f"--num-samples {num}" if args.num_samples else f"--fake {args.fake} holds {num}"
        raise ValueError(f"judge_precision and judge_recall need more than eval.judge_neighbours = "
                         f"{config.eval.judge_neighbours} images; {given}")
    config.eval.judge_num_samples = num  # the real train and test sets: as many faces as there are fakes
    setup = EvalSetup(config, ImageSource(PROCEDURAL), ("judge",))  # checks the eval section
    batch_size = config.eval.batch_size
    generated = judged.judge_images(setup.judge, judged.array_batches(images, batch_size), num, batch_size)
    report = judged.fidelity_report(generated, setup.judge_real_images(side, "train"), setup.judge_floor(side), config.eval)
    return {
        "mode": "judge",
        **report,
        "fake": str(args.fake),
        "num_samples": num,
        "resolution": side,
        "data_seed": config.data.seed,
        "judge_sha256": setup.judge.sha256,
        "seconds/judge": round(time.perf_counter() - start, 3),
    }


def read_fake_images(path: str, num: int | None = None) -> np.ndarray:
    """The uint8 images (N, R, R, 3) of an image folder or ``.npz`` file (its first ``num`` when given).

    One-line ``ValueError``s (naming ``--fake``) for a missing path, an ``.npz`` that holds no single
    uint8 (N, R, R, 3) array (nor one named ``images``), non-square images, a side R that is not a power
    of two ≥ 16, no images, or fewer images than ``num``.
    """
    if os.path.isdir(path):
        batches = iterate_folder_batches(path, FID_BATCH_SIZE, max_images=num)
        images = list(batches)
        if batches.num_skipped:
            logging.warning("--fake %s: skipped %d unreadable image(s)", path, batches.num_skipped)
        if not images:
            raise ValueError(f"--fake {path}: no readable images")
        images = np.concatenate(images)
    elif os.path.isfile(path):
        images = _npz_images(path)
    else:
        raise ValueError(f"--fake {path} does not exist (an image folder or an .npz file)")
    if len(images) == 0:
        raise ValueError(f"--fake {path} holds zero images")
    side = images.shape[1]
    if images.shape[2] != side:
        raise ValueError(f"--fake {path}: images must be square, got {images.shape[1]}x{images.shape[2]} (HxW)")
    if side < MIN_JUDGE_SIDE or side & (side - 1):
        raise ValueError(f"--fake {path}: the image side must be a power of two >= {MIN_JUDGE_SIDE}, got {side}")
    if num is not None:
        if len(images) < num:
            raise ValueError(f"--num-samples {num} is more than the {len(images)} images of --fake {path}")
        images = images[:num]
    return images


def _npz_images(path: str) -> np.ndarray:
    """The uint8 array (N, R, R, 3) of an ``.npz`` file: its only array, else the one named ``images``."""
    try:
        archive = np.load(path, allow_pickle=False)
    except OSError as error:
        raise ValueError(f"--fake {path} cannot be read ({error.strerror or type(error).__name__})") from None
    except (ValueError, EOFError, zipfile.BadZipFile):  # numpy's messages for foreign bytes speak of pickles
        raise ValueError(f"--fake {path} is neither an image folder nor an .npz file") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"--fake {path} is a single .npy array, not an .npz file (save it with np.savez)")
    with archive:
        keys = list(archive.keys())
        if len(keys) == 1:
            key = keys[0]
        elif "images" in keys:
            key = "images"
        else:
            raise ValueError(f"--fake {path} holds the arrays {', '.join(keys) or '(none)'}: "
                             f"one array, or one named 'images', is needed")
        try:
            images = archive[key]
        except ValueError as error:  # an object array needs pickles, which are refused
            raise ValueError(f"--fake {path}: array {key!r} cannot be read ({error})") from None
    if images.dtype != np.uint8:
        raise ValueError(f"--fake {path}: array {key!r} must be uint8 (0..255), got {images.dtype}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"--fake {path}: array {key!r} must have shape (N, R, R, 3), got {images.shape}")
    return images
