"""The Point Editor widget (js/point_editor.js) in a real browser against a real ComfyUI server.

Headless Debian Chromium driven by Playwright (see browser_helpers: missing pieces FAIL with install commands).
Every stack of support.stacks.BROWSER_STACKS: the 2024 ComfyUI with its frontend, and ComfyUI 0.3.75 with the
frontends 1.58.1 and 1.32.9, each in classic and Nodes 2.0 (Vue) mode; this pack linked and tiny random weights.
One test walks the whole user flow, because each step builds on the previous one:

1. build the graph with the frontend's LiteGraph API, serialise it and load it with app.loadGraphData();
2. click three pairs at known image pixels (client positions come from the widget's own mapping, so they include
   the node's display scaling) by mouse, pen and touch; drag a point; right-click a pair away; Ctrl+Z; the Undo
   button; Escape; the same at another canvas zoom; the editor follows a new upstream image, a removed link, a
   value set from outside, and refuses a 25th pair;
3. the hidden `points` widget holds exactly the expected pixels; it survives serialise -> loadGraphData, a copy/paste
   of the node and app.graphToPrompt();
4. queue from the page; /history shows the Colorize Sampler received exactly these points;
5. a screenshot is kept in tmp_path and copied to test-output/point_editor.png.

Exactness: both test images are shown ENLARGED (scale > 1: 160x120 and 96x140 in a ~700x430 widget), so a click
at a pixel's centre rounded to whole client pixels stays inside that image pixel; the expected values are the
exact integers, no tolerance.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from support import ROOT, browser_helpers as bh, comfyui_harness as ch
from support.stacks import BROWSER_STACKS, Stack, selected

PACK = "comfyui-manganinja"
REF_SIZE, LINE_SIZE = (160, 120), (96, 140)
OTHER_SIZE = (200, 100)  # another reference, to check that the editor follows the upstream image
PE, SAMPLER = 5, 6  # node ids

def js_palette() -> list[str]:
    """The pair colours of js/point_editor.js."""
    m = re.search(r"const PALETTE = \[([^\]]*)\]", (ROOT / "js" / "point_editor.js").read_text())
    assert m, "no PALETTE in js/point_editor.js"
    return re.findall(r'"(#[0-9a-fA-F]{6})"', m.group(1))


PALETTE = js_palette()

# LoadImage x2 -> Point Editor -> Colorize Sampler -> Preview Image, with the model/reference nodes beside.
NODES = {
    1: {"type": "MangaNinjaLoader", "pos": [1090, 30], "widgets": {"precision": "fp32", "download": False}},
    2: {"type": "LoadImage", "pos": [10, 30], "widgets": {"image": "mn_ref.png"}},
    3: {"type": "LoadImage", "pos": [10, 400], "widgets": {"image": "mn_line.png"}},
    4: {"type": "MangaNinjaReferenceEncode", "pos": [1090, 250],
        "widgets": {"size": 256}},
    PE: {"type": "MangaNinjaPointEditor", "pos": [340, 30], "size": [720, 620]},
    SAMPLER: {"type": "MangaNinjaColorizeSampler", "pos": [1090, 450],
              "widgets": {"steps": 1, "seed": 7, "control_after_generate": "fixed"}},
    7: {"type": "PreviewImage", "pos": [340, 690]},
}
LINKS = [  # from id, output slot, to id, input name
    [1, 0, 4, "model"], [2, 0, 4, "reference"],
    [2, 0, PE, "reference"], [3, 0, PE, "lineart"],
    [1, 0, SAMPLER, "model"], [4, 0, SAMPLER, "reference"], [3, 0, SAMPLER, "lineart"], [PE, 0, SAMPLER, "points"],
    [SAMPLER, 0, 7, "images"],
]

# (reference pixel, line-art pixel), x = column, y = row of the ORIGINAL images
CLICKED = [((20, 30), (10, 15)), ((100, 60), (50, 100)), ((150, 110), (90, 130))]
DRAG = ("lineart", (50, 100), (60, 40))  # pair 2's line-art point
FINAL = [((100, 60), (60, 40)), ((150, 110), (90, 130))]  # after the drag and deleting pair 1


def expected(pairs) -> dict:
    return {"reference_size": list(REF_SIZE), "lineart_size": list(LINE_SIZE),
            "pairs": [{"reference": list(r), "lineart": list(l)} for r, l in pairs]}


def numeric(points_json: str) -> dict:
    """The Python side's normalised JSON (floats) in the widget's integer form, for exact comparison."""
    obj = json.loads(points_json)
    as_int = lambda v: [int(n) if float(n).is_integer() else n for n in v]  # noqa: E731
    return {"reference_size": obj.get("reference_size"), "lineart_size": obj.get("lineart_size"),
            "pairs": [{"reference": as_int(p["reference"]), "lineart": as_int(p["lineart"])} for p in obj["pairs"]]}


def make_images() -> dict[str, bytes]:
    ref = Image.new("RGB", REF_SIZE, (250, 250, 245))
    d = ImageDraw.Draw(ref)
    d.ellipse((40, 10, 120, 90), fill=(230, 90, 60), outline=(20, 20, 20), width=3)
    d.rectangle((60, 80, 100, 118), fill=(40, 80, 200), outline=(20, 20, 20), width=3)
    line = Image.new("L", LINE_SIZE, 255)
    d = ImageDraw.Draw(line)
    d.ellipse((10, 10, 86, 80), outline=0, width=3)
    d.rectangle((28, 78, 68, 136), outline=0, width=3)
    other = Image.new("RGB", OTHER_SIZE, (90, 160, 90))
    out = {"mn_sugg_ref.png": suggest_case().reference, "mn_sugg_line.png": suggest_case().lineart}
    out = {name: _png(image) for name, image in out.items()}
    dim = ref.point(lambda v: int(v * 0.8))  # the reference, darker: a "prediction" for the metrics node
    for name, image in (("mn_ref.png", ref), ("mn_line.png", line), ("mn_other.png", other), ("mn_dim.png", dim)):
        buf = io.BytesIO()
        image.save(buf, "PNG")
        out[name] = buf.getvalue()
    return out


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def suggest_case():
    """A drawing and its warped line art (mn_core.warp_cases) at 240 px: shown enlarged, so clicks are exact."""
    from mn_core.warp_cases import make_case

    return make_case("character", 6, size=240)


@pytest.fixture(scope="module", params=selected(BROWSER_STACKS), ids=lambda s: s.id)
def server(request, tmp_path_factory):
    from mn_core import synthetic

    bh.require_playwright()  # fail early (before starting ComfyUI) if the browser pieces are missing

    stack = request.param
    base = tmp_path_factory.mktemp(f"browser-{stack.id}")
    models = base / "models"
    synthetic.write_layout(models / "manganinja", synthetic.TINY, seed=0)
    with ch.comfyui_server(base, packs={PACK: ROOT}, models_dir=models, stack=stack) as srv:
        # the current frontends greet first-time users with dialogs, and 1.32.9 shows a minimap over the graph's
        # lower right corner (where the test clicks); the 2024 frontend ignores this file
        settings = srv.instance_dir / "user" / "default" / "comfy.settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps({"Comfy.TutorialCompleted": True, "Comfy.Validation.Workflows": False,
                                        "Comfy.Minimap.Visible": False, **stack.settings()}))
        for name, data in make_images().items():
            srv.client.upload_image(data, name=name)
        yield srv
        assert not srv.tracebacks(), "\n\n".join(srv.tracebacks())


def test_point_editor_in_browser(server, tmp_path):
    in_browser(server, tmp_path, f"point_editor-{server.stack.id}", run_flow)


def in_browser(server, tmp_path, name, flow):
    """Open the app in Chromium and run ``flow(page, server, tmp_path)``; page errors that concern us fail the test,
    and a screenshot goes to tmp_path and test-output/<name>.png."""
    sync_playwright = bh.require_playwright()
    t0 = time.monotonic()
    errors: list[str] = []  # uncaught page errors and console errors that concern us
    startup_errors: list[str] = []  # the frontend's own, before the app was ready (1.27.10 has one)
    ready = False

    def on_page_error(e):
        text = f"pageerror: {e.stack or e}"
        (errors if ready or PACK in text or "point_editor" in text else startup_errors).append(text)

    with sync_playwright() as pw:
        browser = bh.launch(pw)
        try:
            context = browser.new_context(viewport={"width": 1480, "height": 980}, has_touch=True)
            page = context.new_page()
            page.on("pageerror", on_page_error)
            page.on("console", lambda m: m.type == "error" and ("point_editor" in m.text or "[MangaNinja]" in m.text)
                    and errors.append(m.text))
            page.goto(server.base_url)
            bh.wait_for(page, bh.JS_APP_READY, "MangaNinjaPointEditor", 60, "the ComfyUI app and our extension")
            ready = True
            flow(page, server, tmp_path)
        finally:
            shot = tmp_path / f"{name}.png"
            if "page" in locals():
                bh.save_screenshot(page, shot, [ROOT / "test-output" / f"{name}.png"])
            browser.close()
    if startup_errors:
        print("frontend errors during startup (not ours):", *startup_errors, sep="\n")
    assert not errors, "\n".join(errors)
    print(f"browser flow {name} on {server.stack.label}: {time.monotonic() - t0:.1f}s")


def run_flow(page, server, tmp_path):
    # 1. the workflow, loaded through the frontend ------------------------------------------------------------------
    workflow = page.evaluate(bh.JS_BUILD_WORKFLOW, {"nodes": {str(k): v for k, v in NODES.items()}, "links": LINKS})
    (tmp_path / "workflow.json").write_text(json.dumps(workflow, indent=1))
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    widgets = page.evaluate("""() => Object.fromEntries(app.graph._nodes.map((n) => [n.id,
        Object.fromEntries((n.widgets || []).filter((w) => w.name).map((w) => [w.name, w.value]))]))""")
    for nid, spec in NODES.items():
        for name, value in spec.get("widgets", {}).items():
            assert widgets[str(nid)][name] == value, (nid, name, widgets[str(nid)])
    page.evaluate("() => { app.canvas.ds.scale = 1; app.canvas.ds.offset = [10, 70]; app.graph.setDirtyCanvas(true); }")

    state = bh.wait_editor_ready(page, PE)
    assert_fills_node(page)
    if server.stack.properties_panel:
        assert_properties_panel(page)
    assert state["sizes"] == {"reference": list(REF_SIZE), "lineart": list(LINE_SIZE)}
    assert state["hidden"]["hidden"] and state["hidden"]["options_hidden"], state["hidden"]
    assert not state["hidden"]["element_shown"], "the points textarea is visible"
    for side, size in (("reference", REF_SIZE), ("lineart", LINE_SIZE)):
        scale = state["layout"][side]["s"]
        assert scale > 1, f"{side} must be shown enlarged for pixel-exact clicks (scale {scale})"
        assert (round(size[0] * scale), round(size[1] * scale)) != size

    def at(side, xy):
        return bh.client_xy(page, PE, side, *xy)

    def points():
        return json.loads(bh.editor_state(page, PE)["value"])

    # 2. click three pairs (mouse, pen, touch), drag, delete, undo ------------------------------------------------
    page.evaluate("""(id) => { const seen = window.mnPointerTypes = [];
        app.graph.getNodeById(id).mnPointEditor.canvas.addEventListener('pointerdown', (e) => seen.push(e.pointerType));
        }""", PE)
    for k, (ref, line) in enumerate(CLICKED):  # mouse, pen, touch
        tap = (page.mouse.click, lambda x, y: bh.pen_click(page, x, y), page.touchscreen.tap)[k]
        tap(*at("reference", ref))
        pending = bh.editor_state(page, PE)["pending"]
        assert pending == {"side": "reference", "xy": list(ref)}, pending
        tap(*at("lineart", line))
    assert points() == expected(CLICKED)
    assert page.evaluate("() => window.mnPointerTypes") == ["mouse", "mouse", "pen", "pen", "touch", "touch"]

    side, start, end = DRAG
    page.mouse.move(*at(side, start))
    page.mouse.down()
    x1, y1 = at(side, end)
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    dragged = [CLICKED[0], (CLICKED[1][0], end), CLICKED[2]]
    assert points() == expected(dragged)

    page.mouse.click(*at("reference", CLICKED[0][0]), button="right")
    assert points() == expected(FINAL)
    n_nodes = page.evaluate("() => app.graph._nodes.length")
    page.keyboard.press("Control+z")  # the editor has focus: undoes the delete, not a graph change
    assert points() == expected(dragged)
    assert page.evaluate("() => app.graph._nodes.length") == n_nodes
    page.mouse.click(*at("reference", CLICKED[0][0]), button="right")
    assert points() == expected(FINAL)

    page.mouse.click(*at("reference", (5, 5)))  # a half pair, then the Undo button removes it
    assert bh.editor_state(page, PE)["pending"] == {"side": "reference", "xy": [5, 5]}
    page.locator(".mn-point-editor .mn-undo").first.click()
    state = bh.editor_state(page, PE)
    assert state["pending"] is None and points() == expected(FINAL), state

    # canvas zoom: the widget is CSS-scaled with the graph, the mapping follows (and Escape drops a half pair)
    page.evaluate("() => { app.canvas.ds.scale = 0.75; app.graph.setDirtyCanvas(true, true); }")
    bh.wait_editor_settled(page, PE)
    assert abs(page.evaluate("(id) => app.graph.getNodeById(id).mnPointEditor.clientScale().kx", PE) - 0.75) < 1e-6
    page.mouse.click(*at("lineart", (33, 77)))
    assert bh.editor_state(page, PE)["pending"] == {"side": "lineart", "xy": [33, 77]}
    page.keyboard.press("Escape")
    assert bh.editor_state(page, PE)["pending"] is None and points() == expected(FINAL)
    page.evaluate("() => { app.canvas.ds.scale = 1; app.graph.setDirtyCanvas(true, true); }")
    bh.wait_editor_settled(page, PE)

    # the drawing follows the data: each remaining pair's disc centre has its palette colour on both images
    assert_disc_colours(page, FINAL)

    # 3. save/reload, copy/paste, API export ------------------------------------------------------------------------
    saved = page.evaluate("() => app.graph.serialize()")
    node = next(n for n in saved["nodes"] if n["id"] == PE)
    assert json.loads(node["widgets_values"][0]) == expected(FINAL)
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", saved)
    state = bh.wait_editor_ready(page, PE)
    assert json.loads(state["value"]) == expected(FINAL) and state["points"]["pairs"] == expected(FINAL)["pairs"]
    assert_disc_colours(page, FINAL)

    pasted = page.evaluate("""async (id) => {  // the canvas's copy/paste (what Ctrl+C / Ctrl+V do)
        const before = new Set(app.graph._nodes.map((n) => n.id));
        app.canvas.selectNode(app.graph.getNodeById(id));
        app.canvas.copyToClipboard();
        await app.canvas.pasteFromClipboard();
        const copies = app.graph._nodes.filter((n) => !before.has(n.id));
        const out = copies.map((n) => ({type: n.type, value: n.widgets.find((w) => w.name === 'points').value,
                                        editor: n.mnPointEditor.getPoints()}));
        for (const n of copies) app.graph.remove(n);
        return out; }""", PE)
    assert len(pasted) == 1 and pasted[0]["type"] == "MangaNinjaPointEditor", pasted
    assert json.loads(pasted[0]["value"]) == expected(FINAL), pasted
    assert pasted[0]["editor"]["pairs"] == expected(FINAL)["pairs"], pasted

    prompt = page.evaluate("async () => (await app.graphToPrompt()).output")
    (tmp_path / "prompt.json").write_text(json.dumps(prompt, indent=1))
    assert json.loads(prompt[str(PE)]["inputs"]["points"]) == expected(FINAL)
    assert prompt[str(SAMPLER)]["inputs"]["points"] == [str(PE), 0]
    assert "point_editor" not in prompt[str(PE)]["inputs"]

    # the editor follows its inputs: another upstream image (and it refuses edits on it), a removed link
    # as the combo menu does: the value, then the widget's callback
    set_image = """([id, name]) => { const w = app.graph.getNodeById(id).widgets.find((w) => w.name === 'image');
        w.value = name; w.callback?.(w.value); }"""
    size_is = """([id, side, size]) =>
        JSON.stringify(app.graph.getNodeById(id).mnPointEditor.imageSize(side)) === JSON.stringify(size)"""
    page.evaluate(set_image, [2, "mn_other.png"])
    bh.wait_for(page, size_is, [PE, "reference", list(OTHER_SIZE)], 15, "the other reference")
    assert "placed on a 160x120 reference" in bh.editor_state(page, PE)["status"]
    page.mouse.click(*at("reference", (150, 90)))
    state = bh.editor_state(page, PE)
    assert state["pending"] is None and json.loads(state["value"]) == expected(FINAL)
    page.evaluate(set_image, [2, "mn_ref.png"])
    bh.wait_for(page, size_is, [PE, "reference", list(REF_SIZE)], 15, "the reference again")
    page.evaluate("(id) => { const n = app.graph.getNodeById(id); n.disconnectInput(n.findInputSlot('lineart')); }", PE)
    bh.wait_for(page, size_is, [PE, "lineart", None], 15, "the line art to go with its link")
    page.evaluate("""(id) => { const n = app.graph.getNodeById(id);
        app.graph.getNodeById(3).connect(0, n, n.findInputSlot('lineart')); }""", PE)
    bh.wait_editor_ready(page, PE)

    # refresh is event-driven (no polling timer): an upstream node that is not a LoadImage shows its `imgs`
    # preview as soon as it is set, and the editor stops watching nodes that no longer feed it
    js_source = "\n".join(p.read_text() for p in sorted((ROOT / "js").glob("*.js")))
    assert "setInterval" not in js_source
    watched = "(id) => [...app.graph.getNodeById(id).mnPointEditor.watched.keys()].map((n) => Number(n.id)).sort()"
    assert page.evaluate(watched, PE) == [2, 3]
    inv = page.evaluate("""([id, url]) => { const pe = app.graph.getNodeById(id);
        const inv = LiteGraph.createNode('ImageInvert'); app.graph.add(inv); inv.pos = [10, 800];
        app.graph.getNodeById(2).connect(0, inv, 0); inv.connect(0, pe, pe.findInputSlot('reference'));
        const img = new Image(); img.src = url; inv.imgs = [img]; return Number(inv.id); }""",
                        [PE, server.base_url + "/view?filename=mn_other.png&type=input&subfolder="])
    bh.wait_for(page, size_is, [PE, "reference", list(OTHER_SIZE)], 15, "the preview of a non-LoadImage node")
    assert page.evaluate(watched, PE) == sorted([3, inv])
    page.evaluate("""([id, inv]) => { const pe = app.graph.getNodeById(id);
        app.graph.getNodeById(2).connect(0, pe, pe.findInputSlot('reference'));
        app.graph.remove(app.graph.getNodeById(inv)); }""", [PE, inv])
    bh.wait_editor_ready(page, PE)
    assert page.evaluate(watched, PE) == [2, 3]
    assert bh.editor_state(page, PE)["sizes"] == {"reference": list(REF_SIZE), "lineart": list(LINE_SIZE)}

    # a value set from outside (24 pairs) is redrawn, and a 25th pair is refused with a message
    full = {"pairs": [{"reference": [4 * k, 3], "lineart": [3, 4 * k]} for k in range(24)]}
    page.evaluate("([id, v]) => { app.graph.getNodeById(id).widgets.find((w) => w.name === 'points').value = v; }",
                  [PE, json.dumps(full)])
    bh.wait_for(page, "(id) => app.graph.getNodeById(id).mnPointEditor.pairs.length === 24", PE, 5, "24 pairs")
    page.mouse.click(*at("reference", (150, 100)))
    state = bh.editor_state(page, PE)
    assert "All 24 pairs are used" in state["status"] and state["pending"] is None, state["status"]
    page.evaluate("([id, v]) => { app.graph.getNodeById(id).widgets.find((w) => w.name === 'points').value = v; }",
                  [PE, json.dumps(expected(FINAL))])
    bh.wait_for(page, "(id) => app.graph.getNodeById(id).mnPointEditor.pairs.length === 2", PE, 5, "2 pairs")

    # 4. queue from the page; the sampler reports the points it used --------------------------------------------
    bh.wait_editor_settled(page, PE)
    before_run = assert_fills_node(page)
    before = set(server.client.history())
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    entry = wait_for_new_history(server.client, before, timeout=240)
    assert ch.history_status(entry) == "success", ch.history_messages(entry)
    used = entry["outputs"][str(SAMPLER)]["mn_points"][0]
    assert numeric(used) == expected(FINAL), used
    assert numeric(entry["outputs"][str(PE)]["mn_points"][0]) == expected(FINAL)

    # the editor now also knows the raw images of the run (ui mn_sources)
    bh.wait_for(page, """(id) => { const e = app.graph.getNodeById(id).mnPointEditor;
        return e.runSources.reference && e.runSources.lineart; }""", PE, 30, "mn_sources from the run")
    bh.wait_editor_ready(page, PE)
    time.sleep(0.5)
    bh.wait_editor_settled(page, PE)
    after_run = assert_fills_node(page)
    assert all(abs(a - b) <= 2 for a, b in zip(after_run, before_run)), f"the editor changed size in the run: " \
        f"{before_run} -> {after_run}"
    time.sleep(0.5)  # let the previews of the run draw before the screenshot


# Two references: LoadImage 8 feeds reference_2 of the Point Editor and of Reference Encode (bank mode).
OTHER = 8
NODES_2 = {**NODES, 4: {**NODES[4], "widgets": {"size": 256, "combine": "bank"}},
           OTHER: {"type": "LoadImage", "pos": [10, 770], "widgets": {"image": "mn_other.png"}}}
LINKS_2 = LINKS + [[OTHER, 0, 4, "reference_2"], [OTHER, 0, PE, "reference_2"]]
ON_FIRST = ((20, 30), (10, 15))
ON_SECOND = ((150, 90), (50, 100))  # on the 200x100 second reference
EXPECTED_2 = {"reference_size": [list(REF_SIZE), list(OTHER_SIZE)], "lineart_size": list(LINE_SIZE),
              "pairs": [{"reference": list(ON_FIRST[0]), "lineart": list(ON_FIRST[1])},
                        {"reference": list(ON_SECOND[0]), "lineart": list(ON_SECOND[1]), "reference_index": 1}]}


def test_reference_selector_in_browser(server, tmp_path):
    in_browser(server, tmp_path, f"point_editor_references-{server.stack.id}", selector_flow)


def selector_flow(page, server, tmp_path):
    """The selector picks the reference a new pair belongs to; the JSON names it; the sampler gets it."""
    workflow = page.evaluate(bh.JS_BUILD_WORKFLOW, {"nodes": {str(k): v for k, v in NODES_2.items()},
                                                    "links": LINKS_2})
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.evaluate("() => { app.canvas.ds.scale = 1; app.canvas.ds.offset = [10, 70]; app.graph.setDirtyCanvas(true); }")
    state = bh.wait_editor_ready(page, PE)
    assert state["sizes"]["reference"] == list(REF_SIZE)
    select = page.locator(".mn-point-editor .mn-reference-select")
    assert select.is_visible()
    assert select.locator("option").all_text_contents() == ["Reference 1", "Reference 2"]
    size_is = """([id, size]) =>
        JSON.stringify(app.graph.getNodeById(id).mnPointEditor.imageSize('reference')) === JSON.stringify(size)"""

    def at(side, xy):
        return bh.client_xy(page, PE, side, *xy)

    def choose(k, size):
        select.select_option(str(k))
        bh.wait_for(page, size_is, [PE, list(size)], 15, f"reference {k + 1} on the left")
        bh.wait_editor_settled(page, PE)
        assert bh.editor_state(page, PE)["layout"]["reference"]["s"] > 1  # pixel-exact clicks

    def points():
        return json.loads(bh.editor_state(page, PE)["value"])

    page.mouse.click(*at("reference", ON_FIRST[0]))
    page.mouse.click(*at("lineart", ON_FIRST[1]))
    assert points() == expected([ON_FIRST])  # one reference named: the JSON of a single reference
    choose(1, OTHER_SIZE)
    assert "Reference 2" in page.evaluate("(id) => app.graph.getNodeById(id).mnPointEditor.panels[0].label", PE)
    page.mouse.click(*at("reference", ON_SECOND[0]))  # a half pair on reference 2 ...
    assert bh.editor_state(page, PE)["pending"] == {"side": "reference", "xy": list(ON_SECOND[0])}
    choose(0, REF_SIZE)  # ... is dropped when another reference is chosen
    assert bh.editor_state(page, PE)["pending"] is None
    choose(1, OTHER_SIZE)
    page.mouse.click(*at("reference", ON_SECOND[0]))
    page.mouse.click(*at("lineart", ON_SECOND[1]))
    assert points() == EXPECTED_2
    # pair 1's reference point is not on reference 2: a right-click at its place there deletes nothing
    page.mouse.click(*at("reference", ON_FIRST[0]), button="right")
    assert points() == EXPECTED_2
    # drawing: reference 2 shows pair 2 only; the line art shows both, pair 1 fainter
    shown = disc_colours(page, [("reference", ON_SECOND[0]), ("reference", ON_FIRST[0]),
                                ("lineart", ON_SECOND[1]), ("lineart", ON_FIRST[1])])
    assert shown[0] == PALETTE[1] and shown[1] != PALETTE[0] and shown[2] == PALETTE[1], shown
    assert shown[3] != PALETTE[0], f"pair 1 of reference 1 should be drawn faint on the line art: {shown}"
    choose(0, REF_SIZE)
    assert disc_colours(page, [("reference", ON_FIRST[0]), ("lineart", ON_FIRST[1])]) == [PALETTE[0]] * 2

    # saved and loaded again: the same value and both references offered
    saved = page.evaluate("() => app.graph.serialize()")
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", saved)
    state = bh.wait_editor_ready(page, PE)
    assert json.loads(state["value"]) == EXPECTED_2 and state["points"]["pairs"] == EXPECTED_2["pairs"]
    assert select.locator("option").all_text_contents() == ["Reference 1", "Reference 2"]

    # queued from the page: bank mode with two references, the sampler received reference_index 1
    before = set(server.client.history())
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    entry = wait_for_new_history(server.client, before, timeout=240)
    assert ch.history_status(entry) == "success", ch.history_messages(entry)
    used = json.loads(entry["outputs"][str(SAMPLER)]["mn_points"][0])
    assert used["reference_size"] == EXPECTED_2["reference_size"]
    assert [p.get("reference_index", 0) for p in used["pairs"]] == [0, 1]
    assert [[int(v) for v in p["reference"]] for p in used["pairs"]] == [list(ON_FIRST[0]), list(ON_SECOND[0])]
    bh.wait_for(page, "(id) => app.graph.getNodeById(id).mnPointEditor.runReferences.length === 2", PE, 30,
                "the run's two references (ui mn_reference_sources)")


METRICS = 3
NODES_METRICS = {
    1: {"type": "LoadImage", "pos": [10, 30], "widgets": {"image": "mn_dim.png"}},
    2: {"type": "LoadImage", "pos": [10, 400], "widgets": {"image": "mn_ref.png"}},
    METRICS: {"type": "MangaNinjaColorizationMetrics", "pos": [360, 30], "widgets": {"metrics": "psnr, ssim"}},
}
LINKS_METRICS = [[1, 0, METRICS, "image"], [2, 0, METRICS, "target"]]

JS_REPORT_SHOWN = """(id) => {
    const node = app.graph.getNodeById(id);
    const w = node && node.widgets && node.widgets.find((w) => w.name === 'report');
    if (!w || !String(w.mnText).includes('mean (1)')) return null;
    // what the user sees: the table on the page, whole (nothing to scroll inside its box)
    const box = [...document.querySelectorAll('pre.mn-metrics-report')].find((p) => p.textContent === w.mnText);
    if (!box || box.offsetParent === null || box.scrollHeight > box.clientHeight + 2) return null;
    const r = box.getBoundingClientRect();
    if (r.width <= 200) return null;  // still being laid out (the DOM widget is sized after the run's redraw)
    return {value: box.textContent, width: r.width, height: r.height,
            saved: app.graph.serialize().nodes.find((n) => n.id === id).widgets_values};
}"""


# LoadImage x2 -> Point Editor: the Suggest and Palette buttons
NODES_S = {2: {"type": "LoadImage", "pos": [10, 30], "widgets": {"image": "mn_sugg_ref.png"}},
           3: {"type": "LoadImage", "pos": [10, 400], "widgets": {"image": "mn_sugg_line.png"}},
           PE: {"type": "MangaNinjaPointEditor", "pos": [340, 30], "size": [760, 600]}}
LINKS_S = [[2, 0, PE, "reference"], [3, 0, PE, "lineart"]]


def test_suggest_and_palette_in_browser(server, tmp_path):
    in_browser(server, tmp_path, f"point_editor_suggest-{server.stack.id}", suggest_flow)


def suggest_flow(page, server, tmp_path):
    """Suggest: the route's pairs appear dashed and outside the value; a click accepts one, a drag accepts it where
    dropped, a right-click drops one (undoable), Accept takes the rest. Palette: the reference's colours as
    swatches; one dragged (and one clicked) onto the line art becomes a pair with the colour's reference point."""
    from mn_core.palette import palette
    from mn_core.suggest import suggest_points

    case = suggest_case()
    want = suggest_points(case.reference, case.lineart, 12)
    assert len(want) >= 8
    workflow = page.evaluate(bh.JS_BUILD_WORKFLOW, {"nodes": {str(k): v for k, v in NODES_S.items()},
                                                    "links": LINKS_S})
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    page.evaluate("() => { app.canvas.ds.scale = 1; app.canvas.ds.offset = [10, 70]; app.graph.setDirtyCanvas(true); }")
    state = bh.wait_editor_ready(page, PE)
    assert state["layout"]["lineart"]["s"] > 1 and state["layout"]["reference"]["s"] > 1

    def at(side, xy):
        return bh.client_xy(page, PE, side, *xy)

    def pairs():
        return [(tuple(p["reference"]), tuple(p["lineart"])) for p in json.loads(bh.editor_state(page, PE)["value"])
                .get("pairs", [])]

    def suggested():
        return [(tuple(p["reference"]), tuple(p["lineart"])) for p in page.evaluate(
            "(id) => app.graph.getNodeById(id).mnPointEditor.suggested", PE)]

    editor = page.locator(".mn-point-editor").first
    page.locator(".mn-point-editor .mn-suggest").first.click()
    bh.wait_for(page, "(id) => app.graph.getNodeById(id).mnPointEditor.suggested.length > 0", PE, 60,
                "the suggested pairs")
    expect = [(tuple(int(v) for v in r), tuple(int(v) for v in q)) for r, q in want.pairs]
    assert suggested() == expect and pairs() == []  # shown, not in the value yet
    assert editor.get_attribute("data-mn-suggested") == str(len(expect))
    assert "suggested (dashed)" in bh.editor_state(page, PE)["status"]
    # drawn apart from pairs: nothing filled at the centre (the image shows through), the cyan ring around it
    ring = page.evaluate("""([id, xy]) => {
        const e = app.graph.getNodeById(id).mnPointEditor;
        e.draw();
        const ctx = e.canvas.getContext('2d');
        const dpr = e.canvas.width / e.canvas.clientWidth;
        const [x, y] = e.toCanvas('lineart', xy);
        const px = (dx, dy) => Array.from(ctx.getImageData(Math.floor((x + dx) * dpr), Math.floor((y + dy) * dpr),
                                                           1, 1).data.slice(0, 3));
        const ringAt = [[6, 0], [-6, 0], [0, 6], [0, -6], [4.2, 4.2], [-4.2, 4.2], [4.2, -4.2], [-4.2, -4.2]]
            .map(([dx, dy]) => px(dx, dy));
        return {centre: px(0, 0), ring: ringAt};
    }""", [PE, list(expect[0][1])])
    line_px = case.lineart.getpixel(expect[0][1])
    assert max(abs(c - line_px) for c in ring["centre"]) <= 40, ring  # the line art's own grey
    assert any(r[0] < 80 and r[1] > 180 and r[2] > 200 for r in ring["ring"]), ring  # #00e5ff

    page.mouse.click(*at("lineart", expect[0][1]))  # a click accepts
    assert pairs() == expect[:1] and suggested() == expect[1:]
    moved = next((x, y) for x, y in ((expect[1][1][0] + 9, expect[1][1][1] + 3), (expect[1][1][0] - 9,
                                                                                   expect[1][1][1] - 3))
                 if 0 <= x < 240 and 0 <= y < 240)
    page.mouse.move(*at("lineart", expect[1][1]))
    page.mouse.down()
    page.mouse.move(*at("lineart", moved), steps=8)
    page.mouse.up()
    assert pairs() == [expect[0], (expect[1][0], moved)] and suggested() == expect[2:]
    page.mouse.click(*at("lineart", expect[2][1]), button="right")  # dropped
    assert suggested() == expect[3:] and len(pairs()) == 2
    page.keyboard.press("Control+z")
    assert suggested() == expect[2:]
    page.locator(".mn-point-editor .mn-accept").first.click()
    accepted = [expect[0], (expect[1][0], moved)] + expect[2:]
    assert pairs() == accepted and suggested() == []

    # the palette strip
    page.locator(".mn-point-editor .mn-palette").first.click()
    bh.wait_for(page, "(id) => (app.graph.getNodeById(id).mnPointEditor.palette?.swatches || []).length", PE, 60,
                "the palette")
    colours = palette(case.reference)
    swatches = page.locator(".mn-point-editor .mn-palette-strip .mn-swatch")
    assert swatches.count() == len(colours)
    shown = page.evaluate("(id) => app.graph.getNodeById(id).mnPointEditor.palette.swatches", PE)
    assert shown == [c.to_json() for c in colours]
    bh.wait_editor_settled(page, PE)  # the strip took room: the canvas moved
    used_line = {q for _, q in accepted}
    free = [(x, y) for x, y in ((30, 200), (200, 200), (120, 20), (20, 20)) if (x, y) not in used_line][:3]
    used_ref = {r for r, _ in accepted}

    def next_point(k):
        return next(tuple(p) for p in colours[k].points if tuple(p) not in used_ref)

    for target in free[:2]:  # drag swatch 0 twice: its next reference point each time
        box = swatches.nth(0).bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(*at("lineart", target), steps=10)
        page.mouse.up()
        ref = next_point(0)
        accepted.append((ref, target))
        used_ref.add(ref)
        assert pairs() == accepted
    swatches.nth(1).click()  # a click arms the swatch, a click on the line art places it
    assert page.evaluate("(id) => app.graph.getNodeById(id).mnPointEditor.armed", PE) == 1
    page.mouse.click(*at("lineart", free[2]))
    accepted.append((next_point(1), free[2]))
    assert pairs() == accepted
    assert page.evaluate("(id) => app.graph.getNodeById(id).mnPointEditor.armed", PE) is None


def test_metrics_report_on_node(server, tmp_path):
    in_browser(server, tmp_path, f"metrics-{server.stack.id}", metrics_flow)


def metrics_flow(page, server, tmp_path):
    """Queued from the page, the Colorization Metrics node shows its table on the node; the table is not saved."""
    from mn_core import metrics as M

    workflow = page.evaluate(bh.JS_BUILD_WORKFLOW, {"nodes": {str(k): v for k, v in NODES_METRICS.items()},
                                                    "links": LINKS_METRICS})
    page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
    before = set(server.client.history())
    page.evaluate("async () => { await app.queuePrompt(0, 1); }")
    entry = wait_for_new_history(server.client, before, timeout=120)
    assert ch.history_status(entry) == "success", ch.history_messages(entry)
    text = entry["outputs"][str(METRICS)]["text"][0]
    shown = bh.wait_for(page, JS_REPORT_SHOWN, METRICS, 30, "the metrics table on the node")
    assert shown["value"] == text and shown["width"] > 200
    images = make_images()
    dim, ref = (np.asarray(Image.open(io.BytesIO(images[n])).convert("RGB")) for n in ("mn_dim.png", "mn_ref.png"))
    row = next(line for line in text.splitlines() if line.startswith("mean (1)")).split()
    assert float(row[2]) == pytest.approx(M.psnr(dim, ref), abs=1e-4)
    assert float(row[3]) == pytest.approx(M.ssim(dim, ref), abs=1e-4)
    assert text not in json.dumps(shown["saved"])  # the numbers belong to the run, not to the workflow


THUMBNAIL_STACK = Stack("0.3.75", "1.58.1")  # the template browser of today's ComfyUI
WORKFLOWS = ROOT / "workflows"
SAMPLES = ROOT / "docs" / "samples"  # the inputs the shipped workflows load (docs/figures.py)
THUMBNAIL_WIDTH = 640


@pytest.mark.parametrize("server", selected([THUMBNAIL_STACK]), indirect=True, ids=lambda s: s.id)
def test_template_thumbnails(server, tmp_path):
    """Each shipped workflow is in the template browser with a thumbnail: the committed <name>.jpg beside it, a
    cropped screenshot of the workflow loaded in the frontend. A fresh one is rendered here (test-output/
    thumbnails/); MN_UPDATE_THUMBNAILS=1 writes them into workflows/."""
    names = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    listed = server.client.get_json("/workflow_templates")
    assert sorted(listed.get(PACK, [])) == names, listed
    for sample in [*SAMPLES.glob("*.png"), *SAMPLES.glob("*.mp4")]:
        server.client.upload_image(sample.read_bytes(), name=sample.name)
    fresh = tmp_path / "thumbnails"
    in_browser(server, tmp_path, "thumbnails", lambda page, srv, tmp: render_thumbnails(page, names, fresh))
    (ROOT / "test-output" / "thumbnails").mkdir(parents=True, exist_ok=True)
    for name in names:
        shot = Image.open(fresh / f"{name}.jpg")
        shutil.copyfile(fresh / f"{name}.jpg", ROOT / "test-output" / "thumbnails" / f"{name}.jpg")
        if os.environ.get("MN_UPDATE_THUMBNAILS") == "1":
            shutil.copyfile(fresh / f"{name}.jpg", WORKFLOWS / f"{name}.jpg")
        committed = Image.open(WORKFLOWS / f"{name}.jpg")
        assert committed.format == "JPEG" and committed.width == THUMBNAIL_WIDTH, (name, committed.size)
        # the committed one shows this graph: the same shape as a fresh render (MN_UPDATE_THUMBNAILS=1 redraws)
        assert abs(committed.height - shot.height) <= 0.1 * shot.height, (name, committed.size, shot.size)
        served = server.client.get(f"/api/workflow_templates/{PACK}/{name}.jpg")
        assert served == (WORKFLOWS / f"{name}.jpg").read_bytes()


JS_FIT_GRAPH = """([left, top, right, bottom]) => {  // fit every node into the canvas minus these margins
    const nodes = app.graph._nodes, title = LiteGraph.NODE_TITLE_HEIGHT || 30;
    const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1] - title));
    const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
    const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    const rect = app.canvas.canvas.getBoundingClientRect();
    const w = rect.width - left - right, h = rect.height - top - bottom;
    const scale = Math.min(w / (x1 - x0), h / (y1 - y0), 1);
    const px = left + (w - (x1 - x0) * scale) / 2, py = top + (h - (y1 - y0) * scale) / 2;
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [px / scale - x0, py / scale - y0];
    app.graph.setDirtyCanvas(true, true);
    return {x: rect.left + px, y: rect.top + py, width: (x1 - x0) * scale, height: (y1 - y0) * scale};
}"""


def render_thumbnails(page, names, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        workflow = json.loads((WORKFLOWS / f"{name}.json").read_text())
        page.evaluate("async (wf) => { await app.loadGraphData(wf); }", workflow)
        time.sleep(1.0)  # the LoadImage previews
        clip = page.evaluate(JS_FIT_GRAPH, [90, 110, 40, 90])
        time.sleep(0.5)
        png = page.screenshot(clip={k: round(v) for k, v in clip.items()})
        image = Image.open(io.BytesIO(png)).convert("RGB")
        height = round(image.height * THUMBNAIL_WIDTH / image.width)
        image.resize((THUMBNAIL_WIDTH, height), Image.LANCZOS).save(folder / f"{name}.jpg", quality=82,
                                                                   optimize=True)


def test_every_workflow_has_a_thumbnail():
    """The template browser shows <name>.jpg beside <name>.json (made by test_template_thumbnails)."""
    for workflow in WORKFLOWS.glob("*.json"):
        thumbnail = workflow.with_suffix(".jpg")
        assert thumbnail.is_file(), f"{thumbnail} is missing: MN_UPDATE_THUMBNAILS=1 pytest tests/browser -k thumb"
        assert Image.open(thumbnail).format == "JPEG"


def assert_fills_node(page) -> list[float]:
    """The editor's canvas takes the node's width and most of its free height (Nodes 2.0 included), and the editor
    is kept out of the properties panel; returns [canvas width, canvas height] in CSS px."""
    m = page.evaluate("""(id) => { const n = app.graph.getNodeById(id); const e = n.mnPointEditor;
        const c = e.canvas.getBoundingClientRect(); const k = app.canvas.ds.scale;
        return {canvas: [c.width / k, c.height / k], node: [n.size[0], n.size[1]],
                hideInPanel: e.domWidget.options?.hideInPanel}; }""", PE)
    (cw, chh), (nw, nh) = m["canvas"], m["node"]
    assert cw >= 0.85 * nw, f"the editor is {cw:.0f} px wide in a {nw:.0f} px node: {m}"
    # the node's own parts (title, 7 input slots, the toolbar) take at most ~45 % of its 620 px
    assert chh >= 0.55 * nh, f"the editor is {chh:.0f} px high in a {nh:.0f} px node: {m}"
    assert m["hideInPanel"] is True
    return [cw, chh]


JS_PANEL_TEXT = """async (id) => {  // the properties panel's text with node `id` selected
    app.canvas.deselectAll?.();
    app.canvas.selectNode(app.graph.getNodeById(id));
    for (let i = 0; i < 50; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        const panel = document.querySelector('[data-testid="properties-panel"]');
        if (panel && panel.innerText.includes(app.graph.getNodeById(id).title)) return panel.innerText;
    }
    return null;
}"""


def assert_properties_panel(page) -> None:
    """The properties panel lists the sampler's widgets (it works) and no row for the editor's DOM widget."""
    page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', true); }")
    try:
        sampler = page.evaluate(JS_PANEL_TEXT, SAMPLER)
        assert sampler and "guidance_point" in sampler, f"the properties panel did not list the sampler: {sampler}"
        editor = page.evaluate(JS_PANEL_TEXT, PE)
        assert editor is not None, "the properties panel did not show the Point Editor"
        assert "point_editor" not in editor and "points" not in editor.split("\n"), editor
    finally:
        page.evaluate("async () => { await app.extensionManager.setting.set('Comfy.RightSidePanel.IsOpen', false);"
                      " app.canvas.deselectAll?.(); }")
        bh.wait_editor_settled(page, PE)


def disc_colours(page, points) -> list[str]:
    """The colour drawn at the centre of each (side, image pixel) of the Point Editor's canvas."""
    return page.evaluate("""([id, points]) => {
        const e = app.graph.getNodeById(id).mnPointEditor;
        e.draw();
        const ctx = e.canvas.getContext('2d');
        const dpr = e.canvas.width / e.canvas.clientWidth;
        const hex = (d) => '#' + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, '0')).join('');
        return points.map(([side, xy]) => {
            const [x, y] = e.toCanvas(side, xy);
            return hex(ctx.getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data);
        });
    }""", [PE, [[side, list(xy)] for side, xy in points]])


def assert_disc_colours(page, pairs):
    shown = disc_colours(page, [(side, pair[i]) for pair in pairs for i, side in enumerate(("reference", "lineart"))])
    assert shown == [PALETTE[k] for k in range(len(pairs)) for _ in range(2)], shown


def wait_for_new_history(client, before: set, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for prompt_id, entry in client.history().items():
            if prompt_id not in before and ch.history_status(entry):
                return entry
        time.sleep(0.2)
    raise AssertionError(f"no finished prompt in /history after {timeout}s; queue={client.queue()}")


def test_js_constants_match_python():
    """js/point_editor.js: 24 distinct pair colours, and mn_core's pair limit."""
    from mn_core.points import MAX_PAIRS

    assert len(PALETTE) == MAX_PAIRS == len(set(PALETTE))
    js = (ROOT / "js" / "point_editor.js").read_text()
    assert int(re.search(r"const MAX_PAIRS = (\d+);", js).group(1)) == MAX_PAIRS
