"""A headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``).

Standard library only: messages are JSON, each ended by a NUL byte, written to the browser's fd 3 and
read from its fd 4. Used by the studio's browser test and to take the screenshot in docs/.

    with Browser.launch() as browser:
        browser.open("http://127.0.0.1:8765/")
        browser.evaluate("document.title")
        browser.mouse("mousePressed", 10, 20)      # real input events: pointerdown/move/up follow
        png = browser.screenshot()
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import contextlib
import tempfile
import threading
import time
from typing import Any, Iterator

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable, or None."""
    for name in (os.environ.get("LKGAN_CHROMIUM", ""), *EXECUTABLES):
        path = shutil.which(name) if name else None
        if path:
            return path
    return None


def _above_nine(fd: int) -> int:
    """``fd`` moved to a number above 9, so that putting the pipe on fds 3 and 4 in the child clobbers nothing."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class BrowserError(RuntimeError):
    """The browser answered a command with an error, died, or did not answer in time."""


class Browser:
    """One headless browser with one page (a flattened DevTools session on its target)."""

    def __init__(self, process: subprocess.Popen, to_browser: int, from_browser: int, profile: tempfile.TemporaryDirectory):
        self.process, self._out, self._in, self._profile = process, to_browser, from_browser, profile
        self._buffer, self._next_id, self.session = b"", 0, None

    @classmethod
    def launch(cls, executable: str | None = None, width: int = 1280, height: int = 1000) -> "Browser":
        executable = executable or find_chromium()
        if executable is None:
            raise BrowserError("no Chromium found")
        profile = tempfile.TemporaryDirectory(prefix="lkgan-chromium-")
        commands_read, commands_write = os.pipe()
        events_read, events_write = os.pipe()
        commands_read, events_write = _above_nine(commands_read), _above_nine(events_write)
        arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--mute-audio", "--hide-scrollbars",
            f"--user-data-dir={profile.name}", f"--window-size={width},{height}", "--remote-debugging-pipe", "about:blank",
        ]
        # The browser expects the pipe on fds 3 (commands) and 4 (answers): the shell puts them there.
        script = f'exec "$0" "$@" 3<&{commands_read} 4>&{events_write} {commands_read}<&- {events_write}>&-'
        process = subprocess.Popen(
            ["bash", "-c", script, executable, *arguments],
            pass_fds=(commands_read, events_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(commands_read)
        os.close(events_write)
        browser = cls(process, commands_write, events_read, profile)
        try:
            target = browser.command("Target.createTarget", url="about:blank")["targetId"]
            browser.session = browser.command("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            browser.command("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            browser.close()
            raise
        return browser

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def command(self, method: str, timeout: float = 60.0, **params: Any) -> dict:
        """Sends one DevTools command (to the page once attached) and returns its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            answer = self._read(deadline)
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message')}")
                return answer.get("result", {})

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("the browser did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise BrowserError("the browser closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        self.command("Page.enable")
        self.command("Page.navigate", url=url)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.command("Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:60]}: {result['exceptionDetails'].get('exception', {}).get('description', result['exceptionDetails'])}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 120.0) -> Any:
        """Polls a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.05)
        raise BrowserError(f"timed out waiting for {expression}")

    def mouse(self, kind: str, x: float, y: float, pressed: bool = True) -> None:
        """One real mouse event (``mousePressed``, ``mouseMoved``, ``mouseReleased``) at page pixels (x, y)."""
        self.command(
            "Input.dispatchMouseEvent", type=kind, x=float(x), y=float(y), button="left",
            buttons=1 if pressed and kind != "mouseReleased" else 0, clickCount=1 if kind != "mouseMoved" else 0,
        )

    def click(self, x: float, y: float) -> None:
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def screenshot(self) -> bytes:
        """PNG bytes of the page as laid out now."""
        return base64.b64decode(self.command("Page.captureScreenshot", format="png")["data"])


@contextlib.contextmanager
def serving(server: Any) -> Iterator[Any]:
    """Runs ``server.serve_forever`` in a daemon thread for the ``with`` block, then shuts it down."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
