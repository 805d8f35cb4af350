"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for the ComfyUI frontend tests.

Never runs ``playwright install``: the browser is the distribution's. Missing pieces make the test FAIL with the
commands that install them (CI installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("MN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
INSTALL_HINT = ("Install with: apt-get install -y chromium && pip install playwright "
                "(do NOT run `playwright install`: the test uses /usr/bin/chromium; MN_CHROMIUM overrides the path)")


def require_playwright():
    """The sync_playwright entry point, or a test failure saying how to install what is missing."""
    missing = []
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
        missing.append("the Python package `playwright`")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM}")
    if missing:
        pytest.fail(f"browser test needs {' and '.join(missing)}. {INSTALL_HINT}", pytrace=False)
    return sync_playwright


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


# ---- in-page JavaScript ---------------------------------------------------------------------------------------------
# `window.app` is set by both the 2024 frontend (index.html) and the current one; the shim /scripts/app.js exists in
# both too, but window.app avoids a second module instance if the page was served under a prefix.

JS_APP_READY = """(nodeType) => !!(window.app && window.app.graph && window.LiteGraph
    && LiteGraph.registered_node_types[nodeType]
    && (app.extensions || []).some((e) => e.name === 'MangaNinja.PointEditor'))"""

# Builds a graph from {id: {type, pos, size, widgets: {name: value}}} and [[from_id, from_slot, to_id, input_name]],
# with the frontend's LiteGraph API (widget values set BY NAME, so no positional widgets_values guessing), and
# returns app.graph.serialize(): a genuine UI-format workflow of this frontend.
JS_BUILD_WORKFLOW = """({nodes, links}) => {
    app.graph.clear();
    const made = {};
    for (const [id, spec] of Object.entries(nodes)) {
        const node = LiteGraph.createNode(spec.type);
        if (!node) throw new Error('cannot create ' + spec.type);
        node.id = Number(id);
        app.graph.add(node);
        node.pos = spec.pos;
        if (spec.size) node.setSize(spec.size);
        for (const [name, value] of Object.entries(spec.widgets || {})) {
            const w = node.widgets.find((w) => w.name === name);
            if (!w) throw new Error(spec.type + ' has no widget ' + name);
            w.value = value;
        }
        made[id] = node;
    }
    for (const [from, slot, to, input] of links) {
        const target = made[to];
        const index = target.findInputSlot(input);
        if (index < 0) throw new Error(target.type + ' has no input ' + input);
        if (!made[from].connect(slot, target, index)) throw new Error('cannot link ' + [from, slot, to, input]);
    }
    return app.graph.serialize();
}"""

JS_EDITOR_STATE = """(id) => {
    const node = app.graph.getNodeById(Number(id));
    const ed = node && node.mnPointEditor;
    if (!ed) return null;
    const w = node.widgets.find((w) => w.name === 'points');
    return {ready: ed.isReady(), value: String(w.value), points: ed.getPoints(),
            sizes: {reference: ed.imageSize('reference'), lineart: ed.imageSize('lineart')},
            status: ed.status.textContent, pending: ed.pending,
            hidden: {hidden: !!w.hidden, options_hidden: !!(w.options && w.options.hidden), type: w.type,
                     element_shown: !!(w.element && w.element.offsetParent)},
            canvas: [ed.canvas.clientWidth, ed.canvas.clientHeight],
            layout: ed.layout};
}"""

JS_IMAGE_TO_CLIENT = """([id, side, x, y]) =>
    app.graph.getNodeById(Number(id)).mnPointEditor.imageToClient(side, x, y)"""


def wait_for(page, js: str, arg: Any = None, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll a JS predicate in the page until it returns a truthy value (returned)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = page.evaluate(js, arg)
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value {json.dumps(last)[:2000]}")


def editor_state(page, node_id: int) -> dict:
    return page.evaluate(JS_EDITOR_STATE, node_id)


def wait_editor_ready(page, node_id: int, timeout: float = 30.0) -> dict:
    """Wait until both images are shown and the widget stopped moving; returns editor_state()."""
    wait_for(page, f"(id) => {{ const s = ({JS_EDITOR_STATE})(id); return s && s.ready ? s : null; }}",
             node_id, timeout, f"the point editor of node {node_id} to show both images")
    wait_editor_settled(page, node_id)
    return editor_state(page, node_id)


JS_RECT_AFTER_FRAMES = """async (id) => {
    for (let i = 0; i < 3; i++) await new Promise((resolve) => requestAnimationFrame(resolve));
    const r = app.graph.getNodeById(Number(id)).mnPointEditor.canvas.getBoundingClientRect();
    return [r.left, r.top, r.width, r.height];
}"""


def wait_editor_settled(page, node_id: int, timeout: float = 10.0) -> None:
    """Wait until the widget stopped moving: the frontends place DOM widgets on the next canvas frames."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        rect = page.evaluate(JS_RECT_AFTER_FRAMES, node_id)
        if rect == last and rect[2] > 0:
            return
        last = rect
    raise AssertionError(f"the point editor of node {node_id} kept moving for {timeout}s ({last})")


def client_xy(page, node_id: int, side: str, x: int, y: int) -> tuple[float, float]:
    """Client (viewport) coordinates of the centre of image pixel (x, y), from the widget's own mapping."""
    pos = page.evaluate(JS_IMAGE_TO_CLIENT, [node_id, side, x, y])
    assert pos, f"{side} image not laid out"
    return pos["x"], pos["y"]


def pen_click(page, x: float, y: float) -> None:
    """A pen tap (pointerType "pen"), which Playwright has no API for: CDP Input.dispatchMouseEvent."""
    cdp = page.context.new_cdp_session(page)
    try:
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            cdp.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                                  "buttons": 1 if kind == "mousePressed" else 0,
                                                  "clickCount": 1, "pointerType": "pen"})
    finally:
        cdp.detach()


def save_screenshot(page, path: Path, copies: list[Path] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    for copy in copies:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)
    return path
