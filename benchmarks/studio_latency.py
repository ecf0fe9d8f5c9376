"""Latency of an edit in ``lkgan studio``, from request to image received, through its HTTP API (batch 1).

  python benchmarks/studio_latency.py [--configs configs/default.py,configs/paper_64.py,configs/paper_128.py]
                                      [--edits 40] [--workdir RUN] [--workdir-root DIR] [--config.a.b=v ...]

For each config a work dir with a freshly initialised checkpoint is written under ``--workdir-root``
(default: a temporary folder) exactly as ``lkgan train`` would save step 0 (random weights: latency does
not depend on them); ``--workdir`` times a trained run instead. A studio server (``build_server``, as
``lkgan studio`` runs it) listens on an ephemeral localhost port in this process, and one client on a
keep-alive connection, as a browser tab, drags part 0 along a circle: ``--edits`` previews (``move``,
``"preview": true``, each to a new position), then ``--edits // 4`` commits. One JSON object is printed:

  latency_ms_median / _p90     request sent -> answer read and its PNG decoded (previews)
  commit_ms_median             the same for commits (a move kept in the history)
  server_ms_median             handler time in the server (parse, edit, render, PNG, JSON)
  server_render_ms_median      the engine's render: the jitted render and its uint8 copy on the host
  render_ms_median / _p90      the jitted render alone (``model.render`` + block_until_ready), no server
  fps                          1000 / latency_ms_median: drag frames per second
  meets_target                 latency_ms_median <= the issue's target for that config (30 ms default, 100 ms paper_64)
  render_gflop                 the render's FLOPs (XLA's cost analysis of the compiled render, batch 1)
  flop_bound_ms                render_gflop at this machine's float32 matmul rate (``machine_peak.py``): the
                               fastest the render could be
  render_over_bound            render_ms_median / flop_bound_ms
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import math
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lkgan_jax import checkpoint  # noqa: E402
from lkgan_jax.cli.studio import build_server  # noqa: E402
from lkgan_jax.config_loading import load_config  # noqa: E402
from lkgan_jax.train.loop import build_trainer  # noqa: E402
from lkgan_jax.models.sampling import render  # noqa: E402
from lkgan_jax.workdir import CHECKPOINT_DIR, write_config  # noqa: E402
from machine_peak import matmul_gflop_per_s  # noqa: E402

DEFAULT_CONFIGS = "configs/default.py,configs/paper_64.py,configs/paper_128.py"
TARGET_MS = {"configs/default.py": 30.0, "configs/paper_64.py": 100.0}
SEED = 0
MOVED_PART = 0


def fresh_run(config, workdir: pathlib.Path) -> pathlib.Path:
    """A work dir holding ``config`` and its initial training state as the step-0 checkpoint (the training format)."""
    trainer = build_trainer(config, jax.local_devices()[:1])
    state = trainer.initial_state()
    workdir.mkdir(parents=True, exist_ok=True)
    write_config(workdir, config, resuming=False)
    manager = checkpoint.make_manager(workdir / CHECKPOINT_DIR, max_to_keep=1)
    try:
        checkpoint.save(manager, 0, state, None)
        manager.wait_until_finished()
    finally:
        manager.close()
    return workdir


def _percentiles(values: list[float]) -> tuple[float, float]:
    return round(float(np.median(values)), 3), round(float(np.percentile(values, 90)), 3)


def render_only(model, iters: int) -> list[float]:
    """Milliseconds of the jitted render of a batch-1 latent, each to a new keypoint position."""
    latent = model.latent_from_seeds([SEED])
    jax.block_until_ready(model.render(latent))
    times = []
    for i in range(iters):
        moved = latent.replace(keypoints=latent.keypoints.at[0, MOVED_PART].set(np.float32([0.3 * math.cos(i), 0.3 * math.sin(i)])))
        jax.block_until_ready(moved.keypoints)
        start = time.perf_counter()
        jax.block_until_ready(model.render(moved))
        times.append(1e3 * (time.perf_counter() - start))
    return times


def flop_bound(model, render_ms: float, peak_gflop_per_s: float) -> dict:
    """The render's FLOPs (batch 1) and the time they take at ``peak_gflop_per_s``, against ``render_ms``."""
    latent = model.latent_from_seeds([SEED])
    gflop = float(render.lower(model.generator, model.variables, latent).compile().cost_analysis().get("flops", 0.0)) / 1e9
    bound_ms = 1e3 * gflop / peak_gflop_per_s
    return {"render_gflop": round(gflop, 4), "flop_bound_ms": round(bound_ms, 3), "render_over_bound": round(render_ms / bound_ms, 2)}


def drive(server, edits: int) -> dict:
    """Times ``edits`` preview drags and ``edits // 4`` commits over one keep-alive connection."""
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=600)

    def post(path: str, body: dict) -> tuple[dict, float]:
        start = time.perf_counter()
        connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status} {answer}")
        np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"].split(",", 1)[1]))))  # as the page decodes it
        return answer, 1e3 * (time.perf_counter() - start)

    session = post("/api/session", {"seed": SEED})[0]["session"]

    def move(i: int, preview: bool) -> tuple[dict, float]:
        angle = 2 * math.pi * i / max(edits, 1)
        op = {"op": "move", "part": MOVED_PART, "to": [round(0.4 * math.cos(angle), 4), round(0.4 * math.sin(angle), 4)]}
        return post("/api/edit", {"session": session, "op": op, "preview": preview})

    for i in range(3):  # warm-up (eager op kernels, connection)
        move(-1 - i, True)
    latency, server_ms, server_render = [], [], []
    for i in range(edits):
        answer, ms = move(i, True)
        latency.append(ms)
        server_ms.append(answer["timing"]["server_ms"])
        server_render.append(answer["timing"]["render_ms"])
    commits = [move(i, False)[1] for i in range(max(1, edits // 4))]
    connection.close()
    median, p90 = _percentiles(latency)
    return {
        "latency_ms_median": median,
        "latency_ms_p90": p90,
        "fps": round(1e3 / median, 1),
        "commit_ms_median": _percentiles(commits)[0],
        "server_ms_median": _percentiles(server_ms)[0],
        "server_render_ms_median": _percentiles(server_render)[0],
    }


def measure(name: str, workdir: pathlib.Path, edits: int, export_root: pathlib.Path, peak_gflop_per_s: float) -> dict:
    start = time.perf_counter()
    server = build_server(workdir, port=0, export_dir=export_root / "exports", seed=SEED)
    warm_up_s = time.perf_counter() - start
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        model = server.engine.model
        with server.engine.lock:  # nothing else renders meanwhile
            render_median, render_p90 = _percentiles(render_only(model, edits))
        result = drive(server, edits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    row = {
        "config": name,
        "resolution": model.resolution,
        "num_parts": model.num_parts,
        "dtype": model.config.model.dtype,
        "g_channels": list(model.config.model.g_channels),
        "edits": edits,
        **result,
        "render_ms_median": render_median,
        "render_ms_p90": render_p90,
        **flop_bound(model, render_median, peak_gflop_per_s),
        "overhead_ms_median": round(result["latency_ms_median"] - result["server_render_ms_median"], 3),
        "load_and_warm_up_s": round(warm_up_s, 2),
    }
    if name in TARGET_MS:
        row["target_ms"] = TARGET_MS[name]
        row["meets_target"] = result["latency_ms_median"] <= TARGET_MS[name]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated config files")
    parser.add_argument("--edits", type=int, default=40, help="timed preview edits per config")
    parser.add_argument("--workdir", default=None, help="time a trained run instead of fresh checkpoints")
    parser.add_argument("--workdir-root", default=None, help="where the fresh runs go (default: a temporary folder)")
    args, overrides = parser.parse_known_args()
    if args.edits < 1:
        parser.error("--edits must be positive")
    load_before = os.getloadavg()
    peak = matmul_gflop_per_s(repeats=3, iters=2)
    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir_root) as root:
        root = pathlib.Path(root)
        if args.workdir:
            runs = {args.workdir: pathlib.Path(args.workdir)}
        else:
            runs = {name: root / pathlib.Path(name).stem for name in args.configs.split(",")}
        for name, workdir in runs.items():
            if not args.workdir:
                start = time.perf_counter()
                fresh_run(load_config(name, overrides), workdir)
                print(f"{name}: fresh checkpoint in {time.perf_counter() - start:.1f}s", file=sys.stderr, flush=True)
            results.append(measure(name, workdir, args.edits, root / f"{workdir.name}_studio", peak["gflop_per_s"]))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)  # progress
    device = jax.devices()[0]
    print(json.dumps({
        "benchmark": "studio_latency",
        "edit": f"drag part {MOVED_PART} (move preview) through the HTTP API, batch 1",
        "overrides": overrides,
        "device_kind": device.device_kind,
        "platform": device.platform,
        "cpu_count": os.cpu_count(),
        "peak_matmul": peak,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "host": platform.node(),
        "results": results,
    }))


if __name__ == "__main__":
    main()
