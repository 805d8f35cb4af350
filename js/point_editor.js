// MangaNinja Point Editor: click matching points on the reference and the line art.
//
// The points live in the node's `points` STRING widget (hidden, but serialised into saved workflows, copies and
// API prompts) as JSON in ORIGINAL image pixels (x = column, y = row, integers):
//   {"reference_size": [W, H], "lineart_size": [W, H], "pairs": [{"reference": [x, y], "lineart": [x, y]}, ...]}
// The editor only reads and writes that value; nothing is kept in the server.
//
// Several references (inputs reference_2..4, or a batch on `reference`; numbered as Reference Encode numbers them):
// a selector in the toolbar picks the reference shown on the left; new pairs belong to it and are written with
// "reference_index": k (0-based, only when k > 0), and "reference_size" becomes a list with one [W, H] (or null) per
// reference once a pair names a reference after the first. The left panel shows the pairs of the selected reference
// only; the line art shows every pair (those of other references fainter). The references offered are the
// connected inputs (one image each), or, when the last run reported a different number (a batch on an input), the
// images of that run.
//
// Images: the connected inputs' previews (an upstream LoadImage's file, or any upstream node's `imgs`), else the
// raw images this node sent back in its last run (ui `mn_sources`). js/editor_canvas.js (the canvas, image panels,
// geometry and event plumbing) follows them; this file holds the point pairs, their undo and drawing.
//
// Nothing polls. The editor refreshes (re-reads the `points` value, then the images) when: the node's connections
// change, it is configured (loaded, pasted) and the graph around it is, it executed (ui `mn_sources`), its `points`
// value is set, an upstream node's `image` widget or `imgs` previews change or it executed (api "executed"), and
// when the frontend draws the widget.
//
// Suggest (toolbar): the pack's route POST /manganinja/suggest (nodes/routes.py) gets the two images shown and
// answers suggested pairs (mn_core.suggest). They are drawn as dashed cyan rings and are NOT in the `points` value
// until accepted: a click on one accepts it, dragging it accepts it where it is dropped, a right-click drops it, and
// the Accept button takes all (up to the maximum). Undo covers all of this. Palette (toolbar): POST
// /manganinja/palette answers the reference's main colours (mn_core.palette), shown as a strip of swatches; drag a
// swatch onto a line-art region (or click it, then the region) to add the pair "this region gets that colour": the
// swatch's next unused reference point -> the line-art pixel.
//
// Debug/test hook: `node.mnPointEditor` (this file's PointEditor) with
//   getPoints()                    -> the parsed JSON object of the widget value
//   isReady()                      -> both images are loaded and laid out
//   imageSize(side)                -> [W, H] natural size of "reference" / "lineart" (null if not loaded)
//   imageToClient(side, x, y)      -> {x, y} client (viewport) coordinates of the CENTRE of image pixel (x, y),
//                                     including the node's display scaling and the canvas zoom
//   clientToImage(clientX, clientY) -> {side, x, y, inside} the image pixel under a client position (or null)
//   clientScale()                  -> {rect, kx, ky}: client px per canvas CSS px (the canvas zoom)
//   element / canvas               -> the widget's DOM elements (element has data-mn-ready / data-mn-pairs)
// and, read-only for tests: pairs, pending ({side, xy} of a half pair), layout, runSources, status (text element),
// suggested (pairs not accepted yet), palette (swatches of the reference shown), armed (the swatch clicked last).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";
import { EditorCanvas, chainCallback, hideWidget, viewURL, watchWidgetValue } from "./editor_canvas.js";

const NODE_TYPE = "MangaNinjaPointEditor";
const MAX_PAIRS = 24; // mn_core.points.MAX_PAIRS
// Pair k is drawn in PALETTE[(k - 1) % 24].
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
                 "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075",
                 "#a9a9a9", "#ffe119", "#ff6f61", "#2f4f4f", "#7fffd4", "#ff1493"];
const SIDES = ["reference", "lineart"];
const LABELS = { reference: "Reference", lineart: "Line art" };
const COORDINATE_INPUTS = ["reference_coordinates", "lineart_coordinates"];
const REFERENCE_INPUTS = ["reference", "reference_2", "reference_3", "reference_4"]; // nodes/reference.py order
const OTHER_REFERENCE_ALPHA = 0.4; // line-art points of pairs on another reference
const SUGGESTED_COLOUR = "#00e5ff"; // the dashed ring of a suggested pair
const POINT_RADIUS = 6; // CSS px
const HIT_RADIUS = 10;

const isXY = (v) => Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === "number" && Number.isFinite(n));
const isSize = (v) => isXY(v) && v.every((n) => Number.isInteger(n) && n > 0);

// Lenient reader of the points JSON (same shapes as mn_core.points.parse); null if it cannot be read.
function parsePoints(text) {
  let obj;
  try {
    obj = typeof text === "string" ? (text.trim() ? JSON.parse(text) : {}) : text ?? {};
  } catch {
    return null;
  }
  const out = { reference_size: null, lineart_size: null, pairs: [] }; // reference_size: one entry per reference
  if (obj && !Array.isArray(obj) && typeof obj === "object") {
    if (isSize(obj.reference_size)) out.reference_size = [[...obj.reference_size]];
    else if (Array.isArray(obj.reference_size)) {
      if (!obj.reference_size.every((v) => v === null || isSize(v))) return null;
      out.reference_size = obj.reference_size.map((v) => (v ? [...v] : null));
    }
    if (isSize(obj.lineart_size)) out.lineart_size = [...obj.lineart_size];
    obj = obj.pairs ?? [];
  }
  if (!Array.isArray(obj)) return null;
  for (const item of obj) {
    const [r, l] = Array.isArray(item) ? item : [item?.reference, item?.lineart];
    const index = Array.isArray(item) ? 0 : item?.reference_index ?? 0;
    if (!isXY(r) || !isXY(l) || !Number.isInteger(index) || index < 0) return null;
    out.pairs.push({ reference: [...r], lineart: [...l], reference_index: index });
  }
  return out;
}

// Pairs as the JSON writes them: reference_index only when it is not 0.
const jsonPairs = (pairs) => pairs.map((p) => ({ reference: [...p.reference], lineart: [...p.lineart],
                                                 ...(p.reference_index ? { reference_index: p.reference_index } : {}) }));

const sameXY = (a, b) => Math.floor(a[0]) === Math.floor(b[0]) && Math.floor(a[1]) === Math.floor(b[1]);

class PointEditor extends EditorCanvas {
  constructor(node) {
    const widget = node.widgets.find((w) => w.name === "points");
    hideWidget(widget);
    super(node, {
      widgetName: "point_editor", widgetType: "mn_point_editor", className: "mn-point-editor",
      ariaLabel: "MangaNinja point editor (Ctrl+Z: undo, Escape: cancel the open pair)",
      panels: SIDES.map((side) => ({ key: side, label: LABELS[side] })),
    });
    this.widget = widget;
    this.pairs = []; // [{reference: [x, y], lineart: [x, y], reference_index: k}] in original image pixels
    this.storedSizes = { reference: [], lineart: null }; // sizes recorded in the widget value (one per reference)
    this.selected = 0; // the reference shown on the left, which new pairs belong to
    this.runReferences = []; // URLs of every reference of the last run (ui mn_reference_sources)
    this.pending = null; // {side, xy}: the first half of the next pair
    this.history = []; // undo snapshots
    this.runSources = { reference: null, lineart: null }; // from the last execution's ui.mn_sources
    this.runPoints = null; // points the last execution used (shown when coordinate inputs are connected)
    this.drag = null;
    this.lastText = null;
    this.suggested = []; // [{reference, lineart, reference_index, confidence}]: suggestions not accepted yet
    this.palette = null; // {url, swatches: [{colour, hex, share, points}]} of the reference shown
    this.armed = null; // index of the swatch clicked, waiting for a click on the line art
    this.busy = false;
    this.addButton("Undo", "Undo the last change (Ctrl+Z while the editor has focus)", () => this.undo());
    this.addButton("Clear", "Remove all pairs and suggestions", () => this.clear());
    this.addButton("Suggest", "Suggest matching pairs automatically (shown dashed until accepted)",
                   () => this.suggest());
    this.addButton("Accept", "Accept every suggested pair", () => this.acceptAll());
    this.addButton("Palette", "Show the reference's main colours: drag one onto a line-art region",
                   () => this.loadPalette());
    this.strip = document.createElement("div");
    this.strip.className = "mn-palette-strip";
    Object.assign(this.strip.style, { display: "none", gap: "3px", minHeight: "18px", flexWrap: "wrap" });
    this.bar.after(this.strip);
    this.selector = this.addSelect("mn-reference-select", "The reference shown on the left: new pairs belong to it",
                                   (value) => this.selectReference(Number(value)));
    // a value set from outside (a script, another extension); our own commits are recognised by lastText
    this.unwatchValue = watchWidgetValue(widget, () => this.refresh());
    node.setSize([Math.max(node.size[0], 560), Math.max(node.size[1], 420)]);
    this.refresh();
  }

  // ---- state <-> widget -------------------------------------------------------------------------------------
  loadFromWidget() {
    const text = String(this.widget.value ?? "");
    this.lastText = text;
    this.notice = null;
    const parsed = parsePoints(text);
    this.invalid = parsed === null;
    this.pairs = parsed?.pairs ?? [];
    this.storedSizes = { reference: parsed?.reference_size ?? [], lineart: parsed?.lineart_size ?? null };
    this.pending = null;
    this.history = [];
    this.draw();
  }

  commit() {
    const out = {};
    if (this.pairs.length) {
      const count = Math.max(...this.pairs.map((p) => p.reference_index)) + 1;
      const sizes = Array.from({ length: Math.max(count, this.storedSizes.reference.length) }, (_, k) =>
        (k === this.selected ? this.imageSize("reference") : null) ?? this.storedSizes.reference[k] ?? null);
      this.storedSizes.reference = sizes;
      if (count > 1) out.reference_size = sizes.slice(0, count);
      else if (sizes[0]) out.reference_size = sizes[0];
      const line = this.imageSize("lineart") ?? this.storedSizes.lineart;
      if (line) out.lineart_size = line;
      this.storedSizes.lineart = line;
    }
    out.pairs = jsonPairs(this.pairs);
    const text = JSON.stringify(out);
    this.lastText = text;
    this.notice = null; // a message lasts until the next change (or 4 s)
    this.invalid = false;
    this.widget.value = text;
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  snapshot() {
    return JSON.stringify({ pairs: this.pairs, pending: this.pending, suggested: this.suggested });
  }

  remember() {
    this.history.push(this.snapshot());
    if (this.history.length > 200) this.history.shift();
  }

  undo() {
    if (!this.history.length) return this.flash("Nothing to undo.");
    const state = JSON.parse(this.history.pop());
    ({ pairs: this.pairs, pending: this.pending } = state);
    this.suggested = state.suggested ?? [];
    this.commit();
  }

  clear() {
    if (!this.pairs.length && !this.pending && !this.suggested.length) return;
    this.remember();
    this.pairs = [];
    this.pending = null;
    this.suggested = [];
    this.commit();
  }

  // ---- suggestions and palette (nodes/routes.py) --------------------------------------------------------------
  async imageBlob(side) {
    const img = this.images[side].img;
    if (!img) throw new Error(`the ${LABELS[side].toLowerCase()} is not loaded yet`);
    const response = await fetch(img.src);
    if (!response.ok) throw new Error(`could not read the ${LABELS[side].toLowerCase()} (${response.status})`);
    return response.blob();
  }

  async post(route, fields) {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) {
      if (value instanceof Blob) form.append(name, value, `${name}.png`);
      else form.append(name, String(value));
    }
    const response = await api.fetchApi(route, { method: "POST", body: form });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error ?? `${route} answered ${response.status}`);
    return body;
  }

  async suggest() {
    if (this.busy || this.editable() !== true) return;
    if (!this.isReady()) return this.flash("Connect the reference and the line art first.");
    this.busy = true;
    this.flash("Suggesting pairs…");
    try {
      const free = MAX_PAIRS - this.pairs.length;
      if (free <= 0) return this.flash(`All ${MAX_PAIRS} pairs are used already.`);
      const found = await this.post("/manganinja/suggest", {
        reference: await this.imageBlob("reference"), lineart: await this.imageBlob("lineart"),
        max_pairs: Math.min(12, free) });
      const fresh = (found.pairs ?? []).map((p) => ({ reference: [...p.reference], lineart: [...p.lineart],
                                                     reference_index: this.selected, confidence: p.confidence }))
        .filter((p) => this.usedBy("reference", p.reference) < 0 && this.usedBy("lineart", p.lineart) < 0);
      this.remember();
      this.suggested = fresh;
      this.notice = null;
      this.draw();
      if (!fresh.length) this.flash("No reliable pairs found: place them by hand.");
    } catch (e) {
      this.flash(`Suggest failed: ${e.message}`);
    } finally {
      this.busy = false;
    }
  }

  accept(k, xy = null) { // suggestion k becomes a pair (at line-art pixel xy when it was dragged)
    const s = this.suggested[k];
    const pair = { reference: [...s.reference], lineart: xy ? [...xy] : [...s.lineart],
                   reference_index: s.reference_index };
    if (this.pairs.length >= MAX_PAIRS) return this.flash(`All ${MAX_PAIRS} pairs are used (the maximum).`);
    const clash = Math.max(this.usedBy("lineart", pair.lineart), this.usedBy("reference", pair.reference));
    if (clash >= 0) return this.flash(`Pair ${clash + 1} already uses that pixel.`);
    this.pairs.push(pair);
    this.suggested.splice(k, 1);
    return true;
  }

  acceptAll() {
    if (!this.suggested.length) return this.flash("No suggested pairs: press Suggest first.");
    if (this.editable() !== true) return;
    this.remember();
    while (this.suggested.length && this.pairs.length < MAX_PAIRS) {
      if (this.accept(0) !== true) this.suggested.splice(0, 1);
    }
    this.suggested = [];
    this.commit();
  }

  async loadPalette() {
    if (this.busy) return;
    if (!this.images.reference.img) return this.flash("Connect the reference first.");
    this.busy = true;
    try {
      const url = this.images.reference.url;
      const found = await this.post("/manganinja/palette", { reference: await this.imageBlob("reference") });
      this.palette = { url, swatches: found.palette ?? [] };
      this.armed = null;
      this.buildStrip();
    } catch (e) {
      this.flash(`Palette failed: ${e.message}`);
    } finally {
      this.busy = false;
    }
  }

  buildStrip() {
    const swatches = this.palette?.swatches ?? [];
    this.strip.replaceChildren(...swatches.map((s, k) => {
      const b = document.createElement("div");
      b.className = "mn-swatch";
      b.dataset.index = String(k);
      b.title = `${s.hex} (${(100 * s.share).toFixed(1)} % of the reference): drag onto a line-art region`;
      Object.assign(b.style, { width: "22px", height: "18px", background: s.hex, borderRadius: "3px",
                               border: "2px solid #222", cursor: "grab", touchAction: "none" });
      b.addEventListener("pointerdown", (e) => {
        e.stopPropagation();
        e.preventDefault();
        b.setPointerCapture?.(e.pointerId);
        this.swatchDrag = { index: k, pointerId: e.pointerId, x: e.clientX, y: e.clientY };
      });
      b.addEventListener("pointerup", (e) => {
        const drag = this.swatchDrag;
        this.swatchDrag = null;
        if (!drag || drag.pointerId !== e.pointerId) return;
        e.stopPropagation();
        const pos = this.clientToImage(e.clientX, e.clientY);
        const moved = Math.hypot(e.clientX - drag.x, e.clientY - drag.y) > 4;
        if (!moved) { // a click: arm the swatch for the next click on the line art
          this.armed = this.armed === k ? null : k;
          return this.buildStripStyle();
        }
        if (pos?.side === "lineart" && pos.inside) this.addHint(k, [pos.x, pos.y]);
      });
      return b;
    }));
    this.strip.style.display = swatches.length ? "flex" : "none";
    this.buildStripStyle();
  }

  buildStripStyle() {
    for (const b of this.strip.children) {
      b.style.border = Number(b.dataset.index) === this.armed ? "2px solid white" : "2px solid #222";
    }
    this.draw();
  }

  addHint(k, xy) { // "this line-art pixel gets swatch k's colour": the swatch's next free reference point
    if (this.editable() !== true) return;
    const swatch = this.palette.swatches[k];
    const ref = swatch.points.find((p) => this.usedBy("reference", p) < 0);
    if (!ref) return this.flash(`Every reference point of ${swatch.hex} is used; pick another colour.`);
    if (this.usedBy("lineart", xy) >= 0) return this.flash("A pair already uses that line-art pixel.");
    if (this.pairs.length >= MAX_PAIRS) return this.flash(`All ${MAX_PAIRS} pairs are used (the maximum).`);
    this.remember();
    this.pairs.push({ reference: [...ref], lineart: [...xy], reference_index: this.selected });
    this.armed = null;
    this.buildStripStyle();
    this.commit();
  }

  getPoints() { // the widget value, read as the editor reads it (sizes: one per reference)
    const parsed = parsePoints(String(this.widget.value ?? ""));
    return parsed && { ...parsed, pairs: jsonPairs(parsed.pairs) };
  }

  // ---- inputs -------------------------------------------------------------------------------------------------
  externalPoints() {
    return COORDINATE_INPUTS.some((name) => this.node.inputs?.find((i) => i.name === name)?.link != null);
  }

  onExecuted(message) {
    const sources = message?.mn_sources;
    if (Array.isArray(sources) && sources.length === 2) {
      this.runSources = { reference: viewURL(sources[0]), lineart: viewURL(sources[1]) };
    }
    const references = message?.mn_reference_sources;
    this.runReferences = Array.isArray(references) ? references.map(viewURL) : [];
    this.runPoints = message?.mn_points?.[0] ? parsePoints(message.mn_points[0]) : null;
    this.refresh();
  }

  fallbackImageURL(side) {
    if (side === "reference") return this.referenceChoices()[this.selected]?.url ?? null;
    return this.runSources[side];
  }

  // ---- several references -------------------------------------------------------------------------------------
  // [{input} or {url}] in Reference Encode's order, at least one per reference the pairs name.
  referenceChoices() {
    const connected = REFERENCE_INPUTS.filter((name) => this.node.inputs?.find((i) => i.name === name)?.link != null);
    let choices = connected.map((input, k) => ({ input, url: k === 0 ? this.runSources.reference : null }));
    if (this.runReferences.length && this.runReferences.length !== connected.length) {
      choices = this.runReferences.map((url) => ({ url })); // a batch on an input: the run's images
    }
    const named = Math.max(0, ...this.pairs.map((p) => p.reference_index + 1));
    while (choices.length < Math.max(1, named)) choices.push({ missing: true });
    return choices;
  }

  selectReference(k) {
    if (k === this.selected) return;
    if (this.pending?.side === "reference") { // a half pair on the other reference
      this.remember();
      this.pending = null;
    }
    this.selected = k;
    this.palette = null; // it was the other reference's
    this.armed = null;
    this.buildStrip();
    this.refresh();
  }

  // The selector and the left panel follow the references there are.
  syncReferences() {
    const choices = this.referenceChoices();
    if (this.selected >= choices.length) this.selected = 0;
    const several = choices.length > 1;
    const labels = choices.map((c, k) => `Reference ${k + 1}${c.missing ? " (not connected)" : ""}`);
    if (this.selector.options.length !== choices.length ||
        labels.some((label, k) => this.selector.options[k].textContent !== label)) {
      this.selector.replaceChildren(...labels.map((label, k) => new Option(label, String(k))));
    }
    this.selector.value = String(this.selected);
    this.selector.style.display = several ? "" : "none";
    const panel = this.panels.find((p) => p.key === "reference");
    panel.input = choices[this.selected]?.input ?? null;
    panel.label = several ? labels[this.selected] : LABELS.reference;
  }

  // Picks up changes made elsewhere: a loaded/pasted workflow or a value set from outside, then the images.
  refresh() {
    if (!this.widget) return; // during the base constructor
    if (String(this.widget.value ?? "") !== this.lastText) this.loadFromWidget();
    this.syncReferences();
    super.refresh();
  }

  onSelected(pair) { // the pair's reference is the one shown
    return pair.reference_index === this.selected;
  }

  mismatch() {
    for (const side of SIDES) {
      const mine = side === "reference" ? this.pairs.filter((p) => this.onSelected(p)) : this.pairs;
      const stored = side === "reference" ? this.storedSizes.reference[this.selected] : this.storedSizes.lineart;
      const actual = this.imageSize(side);
      if (mine.length && stored && actual && (stored[0] !== actual[0] || stored[1] !== actual[1])) {
        const what = side === "reference" ? this.panels[0].label.toLowerCase() : LABELS[side].toLowerCase();
        return `The points were placed on a ${stored[0]}x${stored[1]} ${what}, but this one ` +
               `is ${actual[0]}x${actual[1]}: Clear to place them again.`;
      }
    }
    return null;
  }

  // ---- hit testing ----------------------------------------------------------------------------------------------
  hitTest(clientX, clientY) {
    const [lx, ly] = this.clientToCanvas(clientX, clientY);
    let best = null;
    const consider = (side, xy, index) => {
      if (!this.layout[side]) return;
      const [px, py] = this.toCanvas(side, xy);
      const d = Math.hypot(px - lx, py - ly);
      if (d <= HIT_RADIUS && (!best || d < best.d)) best = { side, index, d };
    };
    this.pairs.forEach((pair, k) => SIDES.forEach((side) => {
      if (side === "lineart" || this.onSelected(pair)) consider(side, pair[side], k);
    }));
    if (this.pending) consider(this.pending.side, this.pending.xy, -1);
    const before = best;
    this.suggested.forEach((pair, k) => SIDES.forEach((side) => {
      if (side === "lineart" || this.onSelected(pair)) consider(side, pair[side], k);
    }));
    if (best !== before) best.suggested = true;
    return best;
  }

  pointAt(hit) {
    if (hit.suggested) return this.suggested[hit.index][hit.side];
    return hit.index < 0 ? this.pending.xy : this.pairs[hit.index][hit.side];
  }

  usedBy(side, xy, except = null) { // index of another pair using this pixel on `side` (same reference), else -1
    return this.pairs.findIndex((p, k) => k !== except && (side === "lineart" || this.onSelected(p)) &&
                                          sameXY(p[side], xy));
  }

  // ---- interaction ----------------------------------------------------------------------------------------------
  editable() {
    if (this.externalPoints()) return this.flash("Points come from the connected coordinate inputs (read-only).");
    const problem = this.mismatch();
    if (problem) return this.flash(problem);
    return true;
  }

  onPointerDown(e) {
    e.stopPropagation();
    e.preventDefault(); // no text selection / focus change (the compatibility mousedown is not sent)
    this.keys.focus({ preventScroll: true });
    if (e.button !== 0) return; // right button: see onContextMenu
    if (this.editable() !== true) return;
    const hit = this.hitTest(e.clientX, e.clientY);
    if (hit) {
      this.drag = { ...hit, pointerId: e.pointerId, before: this.snapshot(), start: [...this.pointAt(hit)] };
      this.canvas.setPointerCapture?.(e.pointerId);
      return;
    }
    const pos = this.clientToImage(e.clientX, e.clientY);
    if (this.armed !== null && pos?.side === "lineart" && pos.inside) return this.addHint(this.armed, [pos.x, pos.y]);
    if (pos?.inside) this.addPoint(pos.side, [pos.x, pos.y]);
  }

  onPointerMove(e) {
    if (!this.drag || e.pointerId !== this.drag.pointerId) return;
    e.stopPropagation();
    e.preventDefault();
    const pos = this.clientToImage(e.clientX, e.clientY, this.drag.side);
    if (!pos) return;
    const xy = this.pointAt(this.drag);
    [xy[0], xy[1]] = [pos.x, pos.y];
    this.draw();
  }

  onPointerUp(e, cancelled = false) {
    if (!this.drag || e.pointerId !== this.drag.pointerId) return;
    e.stopPropagation();
    const drag = this.drag;
    this.drag = null;
    this.canvas.releasePointerCapture?.(e.pointerId);
    const xy = this.pointAt(drag);
    if (drag.suggested) { // a click accepts the suggestion, a drag accepts it where it was dropped
      const moved = [...xy];
      [xy[0], xy[1]] = drag.start;
      if (cancelled) return this.draw();
      const snapshot = drag.before;
      const k = drag.index;
      const at = { reference: [...this.suggested[k].reference], lineart: [...this.suggested[k].lineart] };
      at[drag.side] = moved;
      this.suggested[k] = { ...this.suggested[k], ...at };
      if (this.accept(k) !== true) {
        this.suggested[k] = JSON.parse(snapshot).suggested[k];
        return this.draw();
      }
      this.history.push(snapshot);
      return this.commit();
    }
    if (xy[0] === drag.start[0] && xy[1] === drag.start[1]) return this.draw();
    const clash = drag.index >= 0 ? this.usedBy(drag.side, xy, drag.index) : this.usedBy(drag.side, xy);
    if (cancelled || clash >= 0) {
      [xy[0], xy[1]] = drag.start;
      if (clash >= 0) this.flash(`Pair ${clash + 1} already uses that ${LABELS[drag.side].toLowerCase()} pixel.`);
      return this.draw();
    }
    this.history.push(drag.before);
    this.commit();
  }

  addPoint(side, xy) {
    const other = side === "reference" ? "lineart" : "reference";
    const clash = this.usedBy(side, xy);
    if (clash >= 0) return this.flash(`Pair ${clash + 1} already uses that ${LABELS[side].toLowerCase()} pixel.`);
    if (this.pending && this.pending.side === other) {
      this.remember();
      this.pairs.push({ [side]: xy, [other]: this.pending.xy, reference_index: this.selected });
      this.pending = null;
      return this.commit();
    }
    if (this.pairs.length >= MAX_PAIRS) {
      return this.flash(`All ${MAX_PAIRS} pairs are used (MangaNinja's maximum): right-click a pair to delete it.`);
    }
    this.remember();
    this.pending = { side, xy };
    this.draw();
  }

  onContextMenu(e) {
    e.preventDefault();
    e.stopPropagation();
    const hit = this.hitTest(e.clientX, e.clientY);
    if (!hit || this.editable() !== true) return;
    this.remember();
    if (hit.suggested) {
      this.suggested.splice(hit.index, 1);
      return this.draw();
    }
    if (hit.index < 0) this.pending = null;
    else this.pairs.splice(hit.index, 1); // later pairs are renumbered by their position
    this.commit();
  }

  onKeyDown(e) { // other keys (Ctrl+Enter, ...) go on to the frontend's shortcuts
    if ((e.ctrlKey || e.metaKey) && !e.shiftKey && !e.altKey && e.key.toLowerCase() === "z") {
      e.preventDefault();
      e.stopPropagation();
      this.undo();
    } else if (e.key === "Escape" && this.pending) {
      e.stopPropagation();
      this.remember();
      this.pending = null;
      this.draw();
    }
  }

  // ---- drawing ----------------------------------------------------------------------------------------------------
  statusText() {
    const n = this.pairs.length;
    if (this.externalPoints()) return "Points come from the connected coordinate inputs (read-only).";
    if (this.invalid) return "The points value is not valid JSON; Clear to start again.";
    if (!this.isReady()) return "Connect the reference and the line art (or run the workflow once).";
    if (this.suggested.length && !this.pending) {
      return `${n}/${MAX_PAIRS} pairs, ${this.suggested.length} suggested (dashed): click one to accept it, drag to ` +
             "move, right-click to drop; Accept takes all.";
    }
    if (this.armed !== null) return "Now click the line-art region that gets this colour.";
    return this.mismatch() ?? (this.pending
      ? `Pair ${n + 1}: now click the ${this.pending.side === "reference" ? "line art"
        : this.panels[0].label.toLowerCase()}.`
      : n >= MAX_PAIRS ? `${n}/${MAX_PAIRS} pairs (the maximum).`
        : `${n}/${MAX_PAIRS} pairs. Click the reference, then the line art; drag to move; right-click deletes.`);
  }

  updateStatus() {
    super.updateStatus();
    this.element.dataset.mnPairs = String(this.pairs?.length ?? 0);
    this.element.dataset.mnSuggested = String(this.suggested?.length ?? 0);
    this.element.dataset.mnSwatches = String(this.palette?.swatches?.length ?? 0);
  }

  drawOverlay(ctx) {
    if (!this.widget) return; // during the base constructor
    const shown = this.externalPoints() ? this.runPoints?.pairs ?? [] : this.pairs;
    shown.forEach((pair, k) => {
      const here = this.onSelected(pair);
      if (here) this.drawPoint(ctx, "reference", pair.reference, k + 1, false);
      ctx.globalAlpha = here ? 1 : OTHER_REFERENCE_ALPHA;
      this.drawPoint(ctx, "lineart", pair.lineart, k + 1, false);
      ctx.globalAlpha = 1;
    });
    if (this.pending && !this.externalPoints()) {
      this.drawPoint(ctx, this.pending.side, this.pending.xy, this.pairs.length + 1, true);
    }
    if (!this.externalPoints()) {
      this.suggested.forEach((pair) => {
        if (this.onSelected(pair)) this.drawSuggested(ctx, "reference", pair.reference);
        this.drawSuggested(ctx, "lineart", pair.lineart);
      });
    }
  }

  drawSuggested(ctx, side, xy) { // a dashed cyan ring over a dark one, nothing filled: not a pair yet
    if (!this.layout[side]) return;
    const [x, y] = this.toCanvas(side, xy);
    ctx.beginPath();
    ctx.arc(x, y, POINT_RADIUS, 0, 2 * Math.PI);
    ctx.lineWidth = 4;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.6)";
    ctx.stroke();
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = SUGGESTED_COLOUR;
    ctx.stroke();
    ctx.setLineDash([]);
  }

  drawPoint(ctx, side, xy, number, pending) {
    if (!this.layout[side]) return;
    const [x, y] = this.toCanvas(side, xy);
    const colour = PALETTE[(number - 1) % PALETTE.length];
    ctx.beginPath();
    ctx.arc(x, y, POINT_RADIUS, 0, 2 * Math.PI);
    ctx.setLineDash(pending ? [3, 2] : []);
    if (!pending) {
      ctx.fillStyle = colour;
      ctx.fill();
    }
    ctx.lineWidth = 2;
    ctx.strokeStyle = pending ? colour : "white";
    ctx.stroke();
    ctx.setLineDash([]);
    ctx.font = "bold 12px sans-serif";
    ctx.textAlign = "left";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "black";
    ctx.strokeText(String(number), x + POINT_RADIUS + 2, y - POINT_RADIUS);
    ctx.fillStyle = colour;
    ctx.fillText(String(number), x + POINT_RADIUS + 2, y - POINT_RADIUS);
  }

  destroy() {
    this.unwatchValue?.();
    super.destroy();
  }
}

app.registerExtension({
  name: "MangaNinja.PointEditor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    const proto = nodeType.prototype;
    chainCallback(proto, "onNodeCreated", function () {
      if (this.widgets?.some((w) => w.name === "points")) this.mnPointEditor = new PointEditor(this);
      else console.error(`[MangaNinja] ${NODE_TYPE} has no "points" widget; the point editor is disabled`);
    });
    chainCallback(proto, "onConfigure", function () {
      this.mnPointEditor?.loadFromWidget();
      this.mnPointEditor?.refresh();
    });
    // the upstream nodes may be configured after this one: look again once the whole graph is
    chainCallback(proto, "onAfterGraphConfigured", function () { this.mnPointEditor?.refresh(); });
    chainCallback(proto, "onExecuted", function (message) { this.mnPointEditor?.onExecuted(message); });
    chainCallback(proto, "onConnectionsChange", function () { this.mnPointEditor?.refresh(); });
    chainCallback(proto, "onRemoved", function () { this.mnPointEditor?.destroy(); });
  },
});
