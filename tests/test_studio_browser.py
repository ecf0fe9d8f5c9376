"""`lkgan studio` in a real headless Chromium (DevTools protocol on a pipe, no extra package): drag a
keypoint with real pointer events, export and replay through `lkgan edit`, swap a part, undo, and the
4xx answers shown by the page. Skipped when no Chromium is installed (Debian: `apt-get install chromium`)."""

import base64
import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from lkgan_jax.cli.main import main
from lkgan_jax.cli.studio import build_server
from lkgan_jax.conventions import normalized_to_pixel

from studio_browser import Browser, find_chromium, serving

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found for the browser test (apt-get install chromium, or set LKGAN_CHROMIUM)"),
]

IDLE = "(() => { const s = window.studio; return s && s.S.state && !s.net.busy && s.net.queue.length === 0; })()"


@pytest.fixture(scope="module")
def studio(tiny_run, tmp_path_factory):
    with serving(build_server(tiny_run[0], export_dir=tmp_path_factory.mktemp("browser") / "exports", seed=5)) as server:
        yield server


def _image(browser: Browser) -> np.ndarray:
    url = browser.evaluate("document.getElementById('view').src")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def _centre(browser: Browser, selector: str) -> tuple[float, float]:
    box = browser.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }})()")
    return box[0] + box[2] / 2, box[1] + box[3] / 2


def _state(browser: Browser, condition: str) -> dict:
    return browser.wait_for(f"(() => {{ const s = window.studio; return {IDLE} && ({condition}) && s.S.state; }})()")


def test_drag_export_swap_undo_and_errors_in_a_browser(tiny_run, studio, tmp_path):
    with Browser.launch(CHROMIUM) as browser:
        browser.open(studio.url)
        start = _state(browser, "s.net.shown >= 1")
        before = _image(browser)
        resolution = studio.engine.resolution

        # drag keypoint 0 with real pointer events to a spot 0.5 to the right and 0.3 down (clipped to the image)
        x0, y0 = start["keypoints"][0]
        goal = [float(np.clip(x0 + 0.5, -0.9, 0.9)), float(np.clip(y0 + 0.3, -0.9, 0.9))]
        left, top, size = browser.evaluate("(() => { const r = document.getElementById('overlay').getBoundingClientRect(); return [r.x, r.y, r.width]; })()")

        def page_point(q):  # the page's own mapping: pixel centres at -1 + 2 i / (R - 1)
            return [origin + (normalized_to_pixel(v, resolution) + 0.5) * size / resolution for origin, v in zip((left, top), q)]

        path = [page_point([x0 + t * (goal[0] - x0), y0 + t * (goal[1] - y0)]) for t in np.linspace(0, 1, 10)]
        browser.mouse("mousePressed", *path[0])
        for number, point in enumerate(path[1:4], start=2):  # slowly: every position is rendered and shown
            browser.mouse("mouseMoved", *point)
            browser.wait_for(f"window.studio.net.shown >= {number} && !window.studio.net.busy")
        with studio.engine.lock:  # a slow server: one preview in flight, newer positions wait and supersede each other
            browser.mouse("mouseMoved", *path[4])
            browser.wait_for("window.studio.net.busy")
            for point in path[5:]:
                time.sleep(0.04)  # more than a frame: moves are not merged into one pointer event
                browser.mouse("mouseMoved", *point)
            browser.mouse("mouseReleased", *path[-1])  # the drop commits; the preview in flight is now stale
        state = _state(browser, "s.S.state.ops.length === 1")
        (move,) = state["ops"]
        assert move["op"] == "move" and move["part"] == 0
        np.testing.assert_allclose(move["to"], goal, atol=2.5 / size * 2)  # within a screen pixel or two
        net = browser.evaluate("(({shown, superseded, dropped}) => ({shown, superseded, dropped}))(window.studio.net)")
        assert net == {"shown": 5, "superseded": len(path[5:]), "dropped": 1}  # start, 3 previews, the commit
        after = _image(browser)
        column, row = (int(round(float(normalized_to_pixel(v, resolution)))) for v in move["to"])
        near = np.abs(after.astype(int) - before.astype(int))[max(row - 3, 0) : row + 4, max(column - 3, 0) : column + 4]
        assert near.max() > 0  # the image changed where the keypoint went

        # export from the page, then `lkgan edit` replays ops.json to the same pixels
        browser.evaluate("document.getElementById('exportname').value = 'from_browser'")
        browser.click(*_centre(browser, "#export"))
        browser.wait_for("document.getElementById('exported').textContent.includes('from_browser')")
        exported = studio.export_dir.resolve() / "from_browser"
        out = tmp_path / "edit"
        args = ["edit", "--workdir", str(tiny_run[0]), "--seed", "5", "--ops", str(exported / "ops.json"), "--out", str(out)]
        assert main(args) == 0
        np.testing.assert_array_equal(np.asarray(Image.open(out / "01_move.png").convert("RGB")), after)

        # select part 1 by clicking its keypoint, swap its appearance from the source seed, undo
        browser.click(*_centre(browser, 'circle.kp[data-part="1"]'))
        browser.wait_for("window.studio.S.selected === 1")
        browser.click(*_centre(browser, "#swap"))
        state = _state(browser, "s.S.state.ops.length === 2")
        assert state["ops"][1] == {"op": "swap_parts", "parts": 1, "from_seed": 6}
        browser.click(*_centre(browser, "#undo"))
        state = _state(browser, "s.S.state.ops.length === 1")
        assert state["can_redo"]
        np.testing.assert_array_equal(_image(browser), after)

        # 4xx answers: through the page's own request queue (shown to the user) and as raw requests
        browser.evaluate("window.studio.S.session && (enqueue('/api/edit', {session: window.studio.S.session, op: {op: 'explode'}}), true)")
        browser.wait_for("document.getElementById('error').textContent.includes('unknown op')")
        statuses = browser.evaluate("""Promise.all([
            fetch('/api/edit', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"session": '}),
            fetch('/api/edit', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                body: JSON.stringify({session: window.studio.S.session, op: {op: 'remove', part: 40}})}),
            fetch('/api/thumbnails', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                      body: JSON.stringify({seeds: [...Array(100).keys()]})}),
        ].map(async (pending) => { const r = await pending; return [r.status, (await r.json()).error]; }))""")
        assert [s for s, _ in statuses] == [400, 400, 400]
        assert "malformed JSON" in statuses[0][1] and "out of range" in statuses[1][1] and "at most 32" in statuses[2][1]
        browser.click(*_centre(browser, "#redo"))  # still serving
        assert _state(browser, "s.S.state.ops.length === 2")["ops"][1]["op"] == "swap_parts"
        screenshot = browser.screenshot()
    assert screenshot.startswith(b"\x89PNG")
    (tmp_path / "studio.png").write_bytes(screenshot)
