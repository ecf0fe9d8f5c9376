"""`lkgan studio`: the HTTP API end to end on a short `configs/tiny.py` run, its 4xx answers, session
isolation, the export folder, and exports that `lkgan edit` replays to the same pixels."""

import base64
import http.client
import io
import json
import os
import pathlib
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from lkgan_jax.cli.main import EXIT_BAD_INPUT, main
from lkgan_jax.cli.studio import build_server
from lkgan_jax.editing.replay import render_uint8
from lkgan_jax.models.latent import latent_from_numpy
from lkgan_jax.studio import session as session_module
from lkgan_jax.studio.session import MAX_EXTRA_PARTS, MAX_FRAMES
from lkgan_jax.utils import visualize
from studio_browser import serving

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[1]

EDITS = [  # every op, as the page sends them (the interpolations as sliders: alpha, 2 frames)
    {"op": "move", "part": 2, "to": [0.1, -0.2]},
    {"op": "swap_parts", "parts": 0, "from_seed": 7},
    {"op": "remove", "part": 3},
    {"op": "add", "like": 2, "at": [0.3, -0.2]},
    {"op": "scale_part", "part": 1, "scale": 1.5},
    {"op": "transform", "scale": 1.1, "rotate_deg": 10, "translate": [0.05, 0.0]},
    {"op": "swap_background", "from_seed": 9},
    {"op": "interpolate", "to_seed": 5, "what": "positions", "parts": [0, 1, 2], "alpha": 0.4, "steps": 2},
    {"op": "interpolate", "to_seed": 6, "what": "background", "alpha": 0.7, "steps": 2},
]


class Client:
    """A keep-alive HTTP client, as a browser tab is."""

    def __init__(self, server):
        self.host, self.port = server.server_address[:2]
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=120)

    def request(self, method, path, body=b"", headers=None):
        headers = {"Content-Type": "application/json", **(headers or {})}
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            return response.status, json.loads(data)
        return response.status, data

    def post(self, path, value):
        return self.request("POST", path, json.dumps(value).encode())

    def ok(self, path, value):
        status, answer = self.post(path, value)
        assert status == 200, answer
        return answer


def _decode(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def studio(tiny_run, tmp_path_factory):
    workdir, _ = tiny_run
    export_dir = tmp_path_factory.mktemp("studio") / "exports"
    with serving(build_server(workdir, export_dir=export_dir, seed=3)) as server:
        yield server


@pytest.fixture
def client(studio):
    client = Client(studio)
    yield client
    client.connection.close()


def test_page_session_and_images_match_the_generator(studio, client):
    status, page = client.request("GET", "/")
    assert status == 200 and b"lkgan studio" in page and b"/api/edit" in page
    answer = client.ok("/api/session", {})
    info, state = answer["info"], answer["state"]
    assert info["resolution"] == 32 and info["num_parts"] == 4 and info["max_parts"] == 4 + MAX_EXTRA_PARTS
    assert info["palette"] == visualize.part_colors(4 + MAX_EXTRA_PARTS).tolist()  # the sample grids' colours
    assert state["seed"] == 3 and state["ops"] == [] and not state["can_undo"] and len(state["keypoints"]) == 4
    model = studio.engine.model
    latent = model.latent_from_seeds([3])
    np.testing.assert_array_equal(_decode(answer["image"]), render_uint8(model, latent)[0])
    np.testing.assert_allclose(state["keypoints"], np.asarray(latent.keypoints[0]), atol=1e-6)
    assert answer["timing"]["render_ms"] > 0 and answer["timing"]["server_ms"] >= answer["timing"]["render_ms"]
    thumbnails = client.ok("/api/thumbnails", {"seeds": [3, 4]})["thumbnails"]
    assert [t["seed"] for t in thumbnails] == [3, 4]
    # Thumbnails render in padded batches of THUMBNAIL_BATCH, another compiled program than batch 1, whose
    # float results may round to the neighbouring uint8 value.
    difference = np.abs(_decode(thumbnails[0]["image"]).astype(int) - _decode(answer["image"]).astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01, (difference.max(), difference.mean())


def test_previews_commits_replace_undo_and_redo(client):
    session = client.ok("/api/session", {"seed": 11})
    sid, start = session["session"], _decode(session["image"])
    preview = client.ok("/api/edit", {"session": sid, "op": {"op": "move", "part": 0, "to": [0.5, 0.5]}, "preview": True})
    assert preview["preview"] and preview["state"]["keypoints"][0] == [0.5, 0.5] and "ops" not in preview["state"]
    moved = client.ok("/api/edit", {"session": sid, "op": {"op": "move", "part": 0, "to": [0.5, 0.5]}})
    np.testing.assert_array_equal(_decode(moved["image"]), _decode(preview["image"]))  # a preview shows what a commit gives
    assert not np.array_equal(_decode(moved["image"]), start)
    assert moved["state"]["ops"] == [{"op": "move", "part": 0, "to": [0.5, 0.5]}] and moved["state"]["can_undo"]
    slider = {"op": "transform", "rotate_deg": 20}
    client.ok("/api/edit", {"session": sid, "op": slider})
    replaced = client.ok("/api/edit", {"session": sid, "op": {**slider, "rotate_deg": 5}, "replace": True})
    assert [op["op"] for op in replaced["state"]["ops"]] == ["move", "transform"] and replaced["state"]["ops"][1]["rotate_deg"] == 5
    undone = client.ok("/api/undo", {"session": sid})
    assert undone["state"]["ops"] == moved["state"]["ops"] and undone["state"]["can_redo"]
    np.testing.assert_array_equal(_decode(undone["image"]), _decode(moved["image"]))
    assert client.ok("/api/redo", {"session": sid})["state"]["ops"] == replaced["state"]["ops"]
    client.ok("/api/undo", {"session": sid})
    client.ok("/api/undo", {"session": sid})
    np.testing.assert_array_equal(_decode(client.ok("/api/redo", {"session": sid})["image"]), _decode(moved["image"]))
    branched = client.ok("/api/edit", {"session": sid, "op": {"op": "remove", "part": 1}})
    assert [op["op"] for op in branched["state"]["ops"]] == ["move", "remove"] and not branched["state"]["can_redo"]
    restarted = client.ok("/api/seed", {"session": sid, "seed": 12})
    assert restarted["state"]["seed"] == 12 and restarted["state"]["ops"] == [] and not restarted["state"]["can_undo"]


def test_export_replays_through_lkgan_edit_to_the_same_pixels(tiny_run, studio, client, tmp_path):
    workdir = str(tiny_run[0])
    sid = client.ok("/api/session", {"seed": 3})["session"]
    for entry in EDITS:
        answer = client.ok("/api/edit", {"session": sid, "op": entry})
    assert answer["state"]["num_parts"] == 5 and answer["state"]["mask"] == [True, True, True, False, True]
    shown = _decode(answer["image"])
    exported = client.ok("/api/export", {"session": sid, "name": "every_op"})
    directory = pathlib.Path(exported["directory"])
    assert directory == studio.export_dir.resolve() / "every_op" and exported["ops"] == len(EDITS)
    assert sorted(p.name for p in directory.iterdir()) == ["image.png", "keypoints.png", "latent.npz", "ops.json"]
    np.testing.assert_array_equal(_png(directory / "image.png"), shown)
    assert _png(directory / "keypoints.png").shape == (128, 128, 3)
    assert len(json.loads((directory / "ops.json").read_text())) == len(EDITS)
    status, downloaded = client.request("GET", f"/api/download?session={sid}&file=ops.json")
    assert status == 200 and downloaded == json.loads((directory / "ops.json").read_text())

    edit_out = tmp_path / "edit"
    args = ["edit", "--workdir", workdir, "--seed", "3", "--ops", str(directory / "ops.json"), "--out", str(edit_out)]
    assert main(args) == 0
    final = edit_out / f"{len(EDITS):02d}_interpolate.png"
    assert final.read_bytes() == (directory / "image.png").read_bytes()  # byte for byte
    with np.load(edit_out / "latent.npz") as a, np.load(directory / "latent.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])

    # latent.npz is what `lkgan edit --latents` reads: one more op from there
    (tmp_path / "more.json").write_text(json.dumps([{"op": "move", "part": 4, "offset": [0.0, 0.1]}]))
    again = tmp_path / "again"
    args = ["edit", "--workdir", workdir, "--seed", "3", "--latents", str(directory / "latent.npz"),
            "--ops", str(tmp_path / "more.json"), "--out", str(again)]
    assert main(args) == 0
    np.testing.assert_array_equal(_png(again / "00_input.png"), shown)
    with np.load(again / "latent.npz") as arrays:
        assert latent_from_numpy(arrays).num_parts == 5 and list(arrays["seeds"]) == [3]


def test_sessions_do_not_share_state(client, studio):
    other = Client(studio)
    a = client.ok("/api/session", {"seed": 20})
    b = other.ok("/api/session", {"seed": 20})
    assert a["session"] != b["session"]
    client.ok("/api/edit", {"session": a["session"], "op": {"op": "remove", "part": 0}})
    status, answer = other.post("/api/undo", {"session": b["session"]})
    assert status == 409 and answer["error"] == "nothing to undo"
    b_state = other.ok("/api/seed", {"session": b["session"], "seed": 20})["state"]
    assert b_state["mask"] == [True] * 4 and b_state["ops"] == []

    results = {}

    def drag(name, session, client_):
        for i in range(6):
            client_.ok("/api/edit", {"session": session, "op": {"op": "move", "part": 1, "to": [0.1 * i, 0.0]}, "preview": True})
        results[name] = client_.ok("/api/edit", {"session": session, "op": {"op": "move", "part": 1, "to": [0.5 if name == "a" else -0.5, 0.0]}})

    threads = [threading.Thread(target=drag, args=("a", a["session"], Client(studio))),
               threading.Thread(target=drag, args=("b", b["session"], Client(studio)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"]["state"]["keypoints"][1] == [0.5, 0.0] and results["b"]["state"]["keypoints"][1] == [-0.5, 0.0]
    assert [op["op"] for op in results["a"]["state"]["ops"]] == ["remove", "move"]
    assert [op["op"] for op in results["b"]["state"]["ops"]] == ["move"]
    other.connection.close()


def _raw(studio, request: bytes) -> tuple[int, dict]:
    """Sends raw bytes (requests http.client will not make) and reads one answer."""
    with socket.create_connection(studio.server_address[:2], timeout=60) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


BAD_EDITS = [
    ({"op": {"op": "explode"}}, 400, "request op 1 ('explode'): unknown op"),
    ({"op": {"op": "move", "part": 12, "to": [0, 0]}}, 400, "part 12 out of range for a latent with 4 parts"),
    ({"op": {"op": "remove", "part": -1}}, 400, "part -1 out of range"),
    ({"op": {"op": "move", "part": 0}}, 400, 'give exactly one of "to"'),
    ({"op": {"op": "interpolate", "to_seed": 1, "steps": 1000}}, 400, f"more than the studio renders ({MAX_FRAMES})"),
    ({"op": {"op": "swap_parts", "parts": [0], "from_seed": 2**32}}, 400, "from_seed must be an integer seed"),
    ({"op": "move"}, 400, 'expected an object with an "op" field'),
    ({}, 400, 'missing field "op"'),
    ({"op": {"op": "remove", "part": 0}, "preview": "yes"}, 400, '"preview" must be true or false'),
    ({"op": {"op": "remove", "part": 0}, "colour": 1}, 400, 'unknown field "colour"'),
    ({"op": {"op": "remove", "part": 0}, "replace": True}, 409, "nothing to replace"),
]


@pytest.mark.parametrize("body, status, message", BAD_EDITS)
def test_bad_edits_get_a_4xx_with_one_line(client, body, status, message):
    sid = client.ok("/api/session", {"seed": 1})["session"]
    got, answer = client.post("/api/edit", {"session": sid, **body})
    assert got == status and message in answer["error"] and "\n" not in answer["error"]
    assert client.post("/api/undo", {"session": sid})[0] == 409  # nothing was kept


@pytest.mark.parametrize(
    "method, path, body, headers, status, message",
    [
        ("POST", "/api/edit", b'{"session": "x", "op": ', {}, 400, "malformed JSON (line 1"),
        ("POST", "/api/edit", b"[1, 2]", {}, 400, "must be a JSON object"),
        ("POST", "/api/edit", b"\xff\xfe", {}, 400, "malformed JSON"),
        ("POST", "/api/edit", b'{"session": "nope", "op": {"op": "remove", "part": 0}}', {}, 404, "unknown session"),
        ("POST", "/api/undo", b"{}", {}, 404, "unknown session"),
        ("POST", "/api/edit", b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type must be application/json"),
        ("POST", "/api/thumbnails", json.dumps({"seeds": list(range(33))}).encode(), {}, 400, "at most 32 per request"),
        ("POST", "/api/thumbnails", b'{"seeds": [1, -4]}', {}, 400, "integer seeds"),
        ("POST", "/api/thumbnails", b'{"seeds": []}', {}, 400, "non-empty list"),
        ("POST", "/api/session", b'{"seed": "seven"}', {}, 400, "integer seeds"),
        ("POST", "/api/session", b'{"seed": 4294967296}', {}, 400, "integer seeds"),
        ("POST", "/api/nothing", b"{}", {}, 404, "no such endpoint"),
        ("GET", "/api/edit", b"", {}, 405, "takes POST"),
        ("GET", "/../../etc/passwd", b"", {}, 404, "no such page"),
        ("PUT", "/api/edit", b"{}", {}, 405, "method PUT not allowed"),
        ("GET", "/", b"", {"Host": "evil.example:80"}, 403, "unexpected Host header"),
        ("GET", "/api/download?session=x&file=../config.json", b"", {}, 404, "file must be one of"),
        ("GET", "/api/download?session=x&file=ops.json", b"", {}, 404, "unknown session"),
    ],
)
def test_bad_requests_get_a_4xx_with_one_line(client, method, path, body, headers, status, message):
    got, answer = client.request(method, path, body, headers)
    assert got == status and message in answer["error"] and "\n" not in answer["error"]
    assert client.request("GET", "/")[0] == 200  # still serving, on the same connection or a new one


def test_oversized_chunked_and_unsized_bodies(studio, client):
    head = f"POST /api/edit HTTP/1.1\r\nHost: 127.0.0.1:{studio.server_address[1]}\r\nContent-Type: application/json\r\n"
    status, answer = _raw(studio, (head + "Content-Length: 1000000000\r\n\r\n{").encode())
    assert status == 413 and "larger than" in answer["error"]
    status, answer = _raw(studio, (head + "\r\n").encode())
    assert status == 411 and "missing Content-Length" in answer["error"]
    status, answer = _raw(studio, (head + "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n0\r\n\r\n").encode())
    assert status == 411 and "chunked" in answer["error"]
    status, answer = _raw(studio, (head + "Content-Length: -5\r\n\r\n").encode())
    assert status == 400 and "bad Content-Length" in answer["error"]
    assert client.request("GET", "/")[0] == 200


def test_added_parts_are_limited(client, monkeypatch):
    monkeypatch.setattr(session_module, "MAX_EXTRA_PARTS", 2)  # each new K compiles a render: keep the test short
    sid = client.ok("/api/session", {"seed": 2})["session"]
    for _ in range(2):
        client.ok("/api/edit", {"session": sid, "op": {"op": "add", "like": 0, "at": [0.0, 0.0]}})
    status, answer = client.post("/api/edit", {"session": sid, "op": {"op": "add", "like": 0, "at": [0.0, 0.0]}, "preview": True})
    assert status == 400 and "at most 6 parts" in answer["error"]


def test_exports_stay_in_the_export_folder(studio, client, tmp_path):
    sid = client.ok("/api/session", {"seed": 4})["session"]
    root = studio.export_dir.resolve()
    for name in ["../escape", "a/b", "..", ".hidden", "", "x" * 65, "/tmp/abs", "a\\b", 7]:
        status, answer = client.post("/api/export", {"session": sid, "name": name})
        assert status == 400 and "export name" in answer["error"], name
    outside = tmp_path / "outside"
    outside.mkdir()
    root.mkdir(parents=True, exist_ok=True)
    os.symlink(outside, root / "link")
    os.symlink(tmp_path / "missing", root / "dangling")
    for name in ("link", "dangling"):
        status, answer = client.post("/api/export", {"session": sid, "name": name})
        assert status == 409 and "already exists" in answer["error"]
    assert list(outside.iterdir()) == [] and not (tmp_path / "missing").exists()
    first = client.ok("/api/export", {"session": sid})
    second = client.ok("/api/export", {"session": sid})
    assert (first["name"], second["name"]) == ("seed4_001", "seed4_002")
    status, answer = client.post("/api/export", {"session": sid, "name": "seed4_001"})
    assert status == 409
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root) or path.is_symlink()


def test_cli_one_line_errors(tiny_run, tmp_path, capsys):
    workdir, _ = tiny_run
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = str(blocker.getsockname()[1])
    (tmp_path / "file").write_text("")
    cases = [
        (["--workdir", str(tmp_path / "missing")], "not a training work dir"),
        (["--workdir", str(workdir), "--port", "70000"], "--port must lie in 0..65535"),
        (["--workdir", str(workdir), "--seed", "-1"], "--seed -1: seeds must lie in"),
        (["--workdir", str(workdir), "--seed", str(2**32)], f"--seed {2**32}: seeds must lie in 0..{2**32 - 1}"),
        (["--workdir", str(workdir), "--port", "http"], "studio: argument --port: invalid int value: 'http'"),
        (["--workdir", str(workdir), "--step", "3"], "no checkpoint at step 3"),
        (["--workdir", str(workdir), "--export-dir", str(tmp_path / "file")], "--export-dir"),
        (["--workdir", str(workdir), "--port", busy], f"cannot listen on 127.0.0.1:{busy}"),
    ]
    try:
        for args, message in cases:
            assert main(["studio", *args]) == EXIT_BAD_INPUT
            err = capsys.readouterr().err.strip()
            assert message in err and len(err.splitlines()) == 1, err
    finally:
        blocker.close()


def test_cli_serves_and_prints_the_url(tiny_run, tmp_path):
    workdir, _ = tiny_run
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    process = subprocess.Popen(  # a relative --workdir, as in the docs
        [sys.executable, "-m", "lkgan_jax.cli.main", "studio", "--workdir", workdir.name, "--port", "0", "--export-dir", str(tmp_path / "x")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=workdir.parent, env=env,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("lkgan studio: ") and " at http://127.0.0.1:" in line, line
        url = line.split(" at ", 1)[1].strip()
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not (tmp_path / "x").exists()  # nothing written until something is exported


def test_studio_latency_benchmark_prints_json(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "studio_latency.py"), "--configs", "configs/tiny.py", "--edits", "4",
         "--workdir-root", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    (row,) = out["results"]
    assert row["config"] == "configs/tiny.py" and row["resolution"] == 32 and row["edits"] == 4
    for key in ("latency_ms_median", "latency_ms_p90", "render_ms_median", "server_render_ms_median"):
        assert row[key] > 0, key
    assert row["latency_ms_median"] >= row["server_render_ms_median"]
    assert out["peak_matmul"]["gflop_per_s"] > 0 and row["render_gflop"] > 0
    assert row["flop_bound_ms"] == pytest.approx(1e3 * row["render_gflop"] / out["peak_matmul"]["gflop_per_s"], rel=1e-2, abs=1e-3)



def test_studio_renders_in_float32_on_a_cpu_whatever_the_run_dtype(tiny_run, tmp_path):
    """A bfloat16 run (bfloat16 is emulated on CPUs) is served in float32 on a CPU, and as configured elsewhere."""
    import shutil

    import jax.numpy as jnp

    from lkgan_jax.cli.studio import render_dtype
    from lkgan_jax.pretrained import load_generator

    workdir, _ = tiny_run
    copy = tmp_path / "bf16_run"
    shutil.copytree(workdir, copy)
    config = json.loads((copy / "config.json").read_text())
    config["model"]["dtype"] = "bfloat16"
    (copy / "config.json").write_text(json.dumps(config))
    assert render_dtype("cpu") == "float32" and render_dtype("gpu") is None and render_dtype("tpu") is None
    assert load_generator(copy).generator.dtype == jnp.bfloat16
    with serving(build_server(copy, export_dir=tmp_path / "exports")) as server:
        assert server.engine.model.generator.dtype == jnp.float32
