"""The studio's HTTP server: one static page and a JSON API over ``http.server.ThreadingHTTPServer``.

Every POST takes a JSON object (``Content-Type: application/json``, at most ``MAX_BODY_BYTES``) and
answers a JSON object; errors are a 4xx (5xx: a bug) with ``{"error": "<one line>"}``, and the server
keeps serving. Requests of one session run one at a time; renders of all sessions are serialised by
the engine. Images travel as PNG data URLs (``data:image/png;base64,...``).

  GET  /                         the page
  POST /api/session   {seed?}                          -> {session, info, state, image, timing}
  POST /api/edit      {session, op, preview?, replace?} -> {state, image, timing}   op: an ops.json entry
  POST /api/undo      {session}                        -> {state, image, timing}
  POST /api/redo      {session}                        -> {state, image, timing}
  POST /api/seed      {session, seed}                  -> {state, image, timing}   starts over
  POST /api/thumbnails {seeds: [...]}                  -> {thumbnails: [{seed, image}]}
  POST /api/export    {session, name?}                 -> {directory, name, files, ops}
  GET  /api/download?session=ID&file=NAME              one export file (image.png, keypoints.png, latent.npz, ops.json)

``state`` is ``{seed, num_parts, keypoints [[x, y]] in [-1, 1], mask, ops, can_undo, can_redo}``;
``timing`` is ``{render_ms, server_ms}`` (render: the jitted render and its copy to uint8 on the host).
"""

from __future__ import annotations

import base64
import http.server
import importlib.resources
import ipaddress
import json
import pathlib
import socket
import sys
import time
import urllib.parse
from typing import Any, Callable

from absl import logging

from lkgan_jax.models.sampling import MAX_SEED
from lkgan_jax.studio import exports
from lkgan_jax.studio.engine import Engine, png_bytes
from lkgan_jax.studio.session import MAX_EXTRA_PARTS, Session, Sessions, StudioError
from lkgan_jax.utils import visualize

MAX_BODY_BYTES = 64 * 1024
MAX_THUMBNAILS = 32
PAGE = "index.html"
LOCAL_HOST_NAMES = ("localhost", "127.0.0.1", "::1")


class StudioServer(http.server.ThreadingHTTPServer):
    """Serves one ``Engine`` to many pages; exports go to ``export_dir`` only."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], engine: Engine, export_dir: str | pathlib.Path, step: int, run_name: str, default_seed: int = 0
    ):
        self.page = importlib.resources.files("lkgan_jax.studio").joinpath("static", PAGE).read_bytes()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        try:
            super().__init__(address, StudioHandler)
        except OSError as error:
            raise ValueError(f"cannot listen on {address[0]}:{address[1]} ({error.strerror or error})") from None
        self.engine, self.export_dir, self.step, self.run_name = engine, pathlib.Path(export_dir), step, run_name
        self.default_seed = default_seed
        self.sessions = Sessions(engine)
        self.allowed_hosts = _allowed_hosts(address[0], self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A page that went away mid-answer is routine; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            logging.debug("studio: connection from %s lost", client_address)
        else:
            logging.exception("studio: error while serving %s", client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/"

    def info(self) -> dict[str, Any]:
        """What the page needs to know about the run once."""
        engine = self.engine
        most = engine.num_parts + MAX_EXTRA_PARTS
        return {
            "run": self.run_name,
            "step": self.step,
            "resolution": engine.resolution,
            "num_parts": engine.num_parts,
            "max_parts": most,
            "palette": visualize.part_colors(most).tolist(),
            "max_seed": MAX_SEED,
            "export_dir": str(self.export_dir),
        }


def _allowed_hosts(host: str, port: int) -> set[str] | None:
    """Host headers a loopback server answers (against DNS rebinding); None (any) for other addresses."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    names = {f"[{n}]" if ":" in n else n for n in (*LOCAL_HOST_NAMES, host)}
    return names | {f"{n}:{port}" for n in names}


class StudioHandler(http.server.BaseHTTPRequestHandler):
    """Routes the requests of ``StudioServer``; each answer is JSON (or the page, or an export file)."""

    server: StudioServer
    protocol_version = "HTTP/1.1"  # keep-alive: a dragging page reuses one connection
    server_version = "lkgan-studio"
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall per answer)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def do_PUT(self) -> None:
        self._handle(self._not_allowed)

    do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_PUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        logging.debug("studio: " + format, *args)

    # ----------------------------------------------------------------------------- plumbing

    def _handle(self, route: Callable[[], None]) -> None:
        self._started, self._body_read = time.perf_counter(), False
        try:
            self._check_host()
            route()
        except StudioError as error:
            self._error(error.status, str(error))
        except Exception as error:  # a bug: answer, log, keep serving
            logging.exception("studio: %s %s failed", self.command, self.path)
            self._error(500, f"internal error ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")

    def _check_host(self) -> None:
        allowed = self.server.allowed_hosts
        if allowed is not None and self.headers.get("Host", "") not in allowed:
            raise StudioError(f"unexpected Host header {self.headers.get('Host', '')!r}; open the studio at {self.server.url}", 403)

    def _not_allowed(self) -> None:
        raise StudioError(f"method {self.command} not allowed", 405)

    def _error(self, status: int, message: str) -> None:
        message = " ".join(message.split())  # one line
        if not self._body_read and ("Content-Length" in self.headers or "Transfer-Encoding" in self.headers):
            self.close_connection = True  # an unread body would be taken for the next request
        if status >= 500:
            logging.error("studio: %d %s: %s", status, self.path, message)
        else:
            logging.info("studio: %d %s: %s", status, self.path.split("?")[0], message)
        self._send(status, json.dumps({"error": message}).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: dict[str, Any]) -> None:
        self._send(200, json.dumps(value).encode(), "application/json")

    def _body(self) -> dict[str, Any]:
        """The request's JSON object; 4xx for a missing, oversized, non-JSON or non-object body."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise StudioError("chunked request bodies are not accepted; send Content-Length", 411)
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise StudioError("missing Content-Length", 411)
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            self.close_connection = True
            raise StudioError(f"bad Content-Length {length[:40]!r}", 400)
        if size > MAX_BODY_BYTES:
            self.close_connection = True  # the body is left unread
            raise StudioError(f"request body of {size} bytes is larger than {MAX_BODY_BYTES}", 413)
        data = self.rfile.read(size)
        self._body_read = True
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise StudioError(f"Content-Type must be application/json, got {content_type or 'none'!r}", 415)
        try:
            body = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            where = f" (line {error.lineno} column {error.colno}: {error.msg})" if isinstance(error, json.JSONDecodeError) else ""
            raise StudioError(f"malformed JSON{where}") from None
        if not isinstance(body, dict):
            raise StudioError("the request body must be a JSON object")
        return body

    # ----------------------------------------------------------------------------- routes

    def _get(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path in ("/", "/" + PAGE):
            self._send(200, self.server.page, "text/html; charset=utf-8")
        elif url.path == "/api/download":
            self._download(urllib.parse.parse_qs(url.query))
        elif url.path.startswith("/api/"):
            raise StudioError(f"{url.path} takes POST", 405)
        else:
            raise StudioError(f"no such page: {url.path[:100]}", 404)

    def _post(self) -> None:
        routes = {
            "/api/session": self._new_session,
            "/api/edit": self._edit,
            "/api/undo": lambda body: self._history(body, Session.undo),
            "/api/redo": lambda body: self._history(body, Session.redo),
            "/api/seed": self._seed,
            "/api/thumbnails": self._thumbnails,
            "/api/export": self._export,
        }
        path = urllib.parse.urlsplit(self.path).path
        if path not in routes:
            raise StudioError(f"no such endpoint: {path[:100]}", 404)
        routes[path](self._body())

    def _new_session(self, body: dict[str, Any]) -> None:
        _only(body, "seed")
        seed = _seed(body.get("seed", self.server.default_seed), "seed")
        session = self.server.sessions.create(seed)
        with session.lock:
            self._json({"session": session.id, "info": self.server.info(), **self._view(session)})

    def _edit(self, body: dict[str, Any]) -> None:
        _only(body, "session", "op", "preview", "replace")
        if "op" not in body:
            raise StudioError('missing field "op" (an ops.json entry, e.g. {"op": "move", "part": 0, "to": [0.1, 0.2]})')
        preview, replace = _flag(body, "preview"), _flag(body, "replace")
        session = self.server.sessions.get(body.get("session"))
        with session.lock:
            if preview:
                image, seconds, latent = session.preview(body["op"], replace)
                self._json({"state": session.state(latent), "preview": True, **self._image(image, seconds)})
            else:
                session.commit(body["op"], replace)
                self._json(self._view(session))

    def _history(self, body: dict[str, Any], move: Callable[[Session], None]) -> None:
        _only(body, "session")
        session = self.server.sessions.get(body.get("session"))
        with session.lock:
            move(session)
            self._json(self._view(session))

    def _seed(self, body: dict[str, Any]) -> None:
        _only(body, "session", "seed")
        if "seed" not in body:
            raise StudioError('missing field "seed"')
        seed = _seed(body["seed"], "seed")
        session = self.server.sessions.get(body.get("session"))
        with session.lock:
            session.start(seed)
            self._json(self._view(session))

    def _thumbnails(self, body: dict[str, Any]) -> None:
        _only(body, "seeds")
        seeds = body.get("seeds")
        if not isinstance(seeds, list) or not seeds:
            raise StudioError('"seeds" must be a non-empty list of seeds')
        if len(seeds) > MAX_THUMBNAILS:
            raise StudioError(f"{len(seeds)} thumbnails asked for; at most {MAX_THUMBNAILS} per request")
        seeds = [_seed(s, "seeds") for s in seeds]
        pictures = self.server.engine.thumbnails(seeds)
        self._json({"thumbnails": [{"seed": s, "image": _data_url(pictures[s])} for s in seeds]})

    def _export(self, body: dict[str, Any]) -> None:
        _only(body, "session", "name")
        session = self.server.sessions.get(body.get("session"))
        export_dir = self.server.export_dir
        with session.lock:
            name = exports.check_name(body["name"]) if body.get("name") is not None else exports.automatic_name(export_dir, session.seed)
            contents = exports.export_contents(session, self.server.step)
            directory = exports.write_export(export_dir, name, contents)
            self._json({"directory": str(directory), "name": name, "files": sorted(contents), "ops": len(session.operations)})

    def _download(self, query: dict[str, list[str]]) -> None:
        file_name = (query.get("file") or [""])[0]
        if file_name not in exports.EXPORT_FILES:
            raise StudioError(f"file must be one of {', '.join(exports.EXPORT_FILES)}", 404)
        session = self.server.sessions.get((query.get("session") or [None])[0])
        with session.lock:
            data = exports.export_contents(session, self.server.step)[file_name]
        content_type = {".png": "image/png", ".json": "application/json", ".npz": "application/octet-stream"}[pathlib.Path(file_name).suffix]
        self._send(200, data, content_type, {"Content-Disposition": f'attachment; filename="seed{session.seed}_{file_name}"'})

    # ----------------------------------------------------------------------------- answers

    def _view(self, session: Session) -> dict[str, Any]:
        return {"state": session.state(), **self._image(session.image, session.render_seconds)}

    def _image(self, image: Any, render_seconds: float) -> dict[str, Any]:
        url = _data_url(png_bytes(image))
        return {"image": url, "timing": {"render_ms": round(1e3 * render_seconds, 3), "server_ms": round(1e3 * (time.perf_counter() - self._started), 3)}}


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _only(body: dict[str, Any], *fields: str) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise StudioError(f"unknown field {', '.join(json.dumps(u) for u in unknown)}; expected {', '.join(fields)}")


def _flag(body: dict[str, Any], field: str) -> bool:
    value = body.get(field, False)
    if not isinstance(value, bool):
        raise StudioError(f'"{field}" must be true or false, got {json.dumps(value)[:40]}')
    return value


def _seed(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise StudioError(f'"{field}" must hold integer seeds in 0..{MAX_SEED}, got {json.dumps(value)[:40]}')
    return value
