// MangaNinja Point Editor: click matching points on the reference and the line art.
//
// The points live in the node's `points` STRING widget (hidden, but serialised into saved workflows, copies and
// API prompts) as JSON in ORIGINAL image pixels (x = column, y = row, integers):
//   {"reference_size": [W, H], "lineart_size": [W, H], "pairs": [{"reference": [x, y], "lineart": [x, y]}, ...]}
// The editor only reads and writes that value; nothing is kept in the server.
//
// Images: the connected inputs' previews (an upstream LoadImage's file, or any upstream node's `imgs`), else the
// raw images this node sent back in its last run (ui `mn_sources`).
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
// and, read-only for tests: pairs, pending ({side, xy} of a half pair), layout, runSources, status (text element).

import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const NODE_TYPE = "MangaNinjaPointEditor";
const MAX_PAIRS = 24; // mn_core.points.MAX_PAIRS
// Same list and order as nodes/points.py PALETTE: pair k uses PALETTE[(k - 1) % 24].
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
                 "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1", "#000075",
                 "#a9a9a9", "#ffe119", "#ff6f61", "#2f4f4f", "#7fffd4", "#ff1493"];
const SIDES = ["reference", "lineart"];
const LABELS = { reference: "Reference", lineart: "Line art" };
const COORDINATE_INPUTS = ["reference_coordinates", "lineart_coordinates"];
const POINT_RADIUS = 6; // CSS px
const HIT_RADIUS = 10;
const LABEL_HEIGHT = 18;
const PAD = 6;

function chainCallback(object, name, callback) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    callback.apply(this, args);
    return result;
  };
}

// Hide a widget but keep it serialised: the new frontend reads `hidden` and `options.hidden`, the 2024 one the
// "hidden" type (which also hides a DOM textarea) and computeSize.
function hideWidget(widget) {
  // The 2024 frontend treats every multiline text widget as a dynamic prompt unless told otherwise and replaces
  // "{a|b}" by a random choice when queueing, which strips the braces of our JSON: opt out, and drop the
  // serializeValue its Comfy.DynamicPrompts extension already attached to this widget instance.
  widget.dynamicPrompts = false;
  if (Object.prototype.hasOwnProperty.call(widget, "serializeValue")) delete widget.serializeValue;
  widget.hidden = true;
  widget.options = widget.options ?? {};
  widget.options.hidden = true;
  widget.type = "hidden";
  widget.computeSize = () => [0, -4];
  if (widget.element) widget.element.style.display = "none";
}

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
  const out = { reference_size: null, lineart_size: null, pairs: [] };
  if (obj && !Array.isArray(obj) && typeof obj === "object") {
    if (isSize(obj.reference_size)) out.reference_size = [...obj.reference_size];
    if (isSize(obj.lineart_size)) out.lineart_size = [...obj.lineart_size];
    obj = obj.pairs ?? [];
  }
  if (!Array.isArray(obj)) return null;
  for (const item of obj) {
    const [r, l] = Array.isArray(item) ? item : [item?.reference, item?.lineart];
    if (!isXY(r) || !isXY(l)) return null;
    out.pairs.push({ reference: [...r], lineart: [...l] });
  }
  return out;
}

function viewURL({ filename, subfolder = "", type = "input" }) {
  const params = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${params}`);
}

// URL of the image feeding `inputName`, from the upstream node: a LoadImage file, else the node's preview.
function upstreamImageURL(node, inputName) {
  const slot = node.findInputSlot(inputName);
  if (slot < 0 || node.inputs[slot].link == null) return null;
  let origin = node.getInputNode(slot);
  for (let i = 0; origin?.type === "Reroute" && i < 32; i++) origin = origin.getInputNode(0); // legacy reroutes
  if (!origin) return null;
  const file = origin.widgets?.find((w) => w.name === "image")?.value;
  if (/^LoadImage/.test(origin.comfyClass ?? origin.type ?? "") && typeof file === "string" && file) {
    const [, path, type] = file.match(/^(.*?)(?: \[(input|output|temp)\])?$/);
    const cut = path.lastIndexOf("/");
    return viewURL({ filename: path.slice(cut + 1), subfolder: cut < 0 ? "" : path.slice(0, cut),
                     type: type ?? "input" });
  }
  const imgs = origin.imgs;
  return imgs?.length ? imgs[Math.min(origin.imageIndex ?? 0, imgs.length - 1)]?.src ?? null : null;
}

const sameXY = (a, b) => Math.floor(a[0]) === Math.floor(b[0]) && Math.floor(a[1]) === Math.floor(b[1]);

class PointEditor {
  constructor(node) {
    this.node = node;
    this.widget = node.widgets.find((w) => w.name === "points");
    hideWidget(this.widget);
    this.pairs = []; // [{reference: [x, y], lineart: [x, y]}] in original image pixels
    this.storedSizes = { reference: null, lineart: null }; // sizes recorded in the widget value
    this.pending = null; // {side, xy}: the first half of the next pair
    this.history = []; // undo snapshots
    this.images = { reference: { url: null, img: null }, lineart: { url: null, img: null } };
    this.runSources = { reference: null, lineart: null }; // from the last execution's ui.mn_sources
    this.runPoints = null; // points the last execution used (shown when coordinate inputs are connected)
    this.layout = {};
    this.drag = null;
    this.notice = null;
    this.lastText = null;
    this.buildDOM();
    this.domWidget = node.addDOMWidget("point_editor", "mn_point_editor", this.element, {
      serialize: false, hideOnZoom: false, getMinHeight: () => 220, onDraw: () => this.sync(),
    });
    this.domWidget.serialize = false; // not in widgets_values (new frontend); options.serialize: not in prompts
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.box);
    this.timer = setInterval(() => this.sync(), 400); // also covers renderers that do not call onDraw
    node.setSize([Math.max(node.size[0], 560), Math.max(node.size[1], 420)]);
    this.sync();
  }

  buildDOM() {
    // The frontends set the widget element's own `display` (to hide it), so the flex layout lives one level down.
    this.element = document.createElement("div");
    this.element.className = "mn-point-editor";
    Object.assign(this.element.style, { width: "100%", height: "100%", boxSizing: "border-box" });
    const column = document.createElement("div");
    Object.assign(column.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%",
                                  height: "100%", position: "relative" });
    this.element.append(column);
    const bar = document.createElement("div");
    Object.assign(bar.style, { display: "flex", alignItems: "center", gap: "6px", font: "12px sans-serif",
                               color: "var(--input-text, #ddd)", minHeight: "22px" });
    const button = (label, title, action) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.title = title;
      b.className = `mn-${label.toLowerCase()}`;
      Object.assign(b.style, { font: "12px sans-serif", padding: "1px 8px", cursor: "pointer",
                               background: "var(--comfy-input-bg, #333)", color: "var(--input-text, #ddd)",
                               border: "1px solid var(--border-color, #555)", borderRadius: "4px" });
      b.addEventListener("pointerdown", (e) => e.stopPropagation());
      b.addEventListener("click", (e) => { e.stopPropagation(); action(); });
      bar.append(b);
    };
    button("Undo", "Undo the last change (Ctrl+Z while the editor has focus)", () => this.undo());
    button("Clear", "Remove all pairs", () => this.clear());
    this.status = document.createElement("span");
    Object.assign(this.status.style, { overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" });
    bar.append(this.status);
    // The canvas is absolutely positioned in a flexible box so that its bitmap size never feeds back into layout.
    this.box = document.createElement("div");
    Object.assign(this.box.style, { flex: "1 1 0", minHeight: "0", position: "relative" });
    this.canvas = document.createElement("canvas");
    Object.assign(this.canvas.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%",
                                       touchAction: "none", cursor: "crosshair", borderRadius: "4px" });
    this.box.append(this.canvas);
    // Keyboard focus goes to a read-only <input>: both frontends leave Ctrl+Z in inputs alone, so the editor's
    // undo does not also undo the whole graph.
    this.keys = document.createElement("input");
    this.keys.readOnly = true;
    this.keys.setAttribute("aria-label", "MangaNinja point editor (Ctrl+Z: undo, Escape: cancel the open pair)");
    Object.assign(this.keys.style, { position: "absolute", width: "1px", height: "1px", opacity: "0",
                                     pointerEvents: "none", left: "0", top: "0" });
    column.append(bar, this.box, this.keys);

    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointercancel", (e) => this.onPointerUp(e, true));
    this.canvas.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    this.keys.addEventListener("keydown", (e) => this.onKeyDown(e));
  }

  // ---- state <-> widget -------------------------------------------------------------------------------------
  loadFromWidget() {
    const text = String(this.widget.value ?? "");
    this.lastText = text;
    this.notice = null;
    const parsed = parsePoints(text);
    this.invalid = parsed === null;
    this.pairs = parsed?.pairs ?? [];
    this.storedSizes = { reference: parsed?.reference_size ?? null, lineart: parsed?.lineart_size ?? null };
    this.pending = null;
    this.history = [];
    this.draw();
  }

  commit() {
    const out = {};
    if (this.pairs.length) {
      for (const side of SIDES) {
        const size = this.imageSize(side) ?? this.storedSizes[side];
        if (size) out[`${side}_size`] = size;
        this.storedSizes[side] = size;
      }
    }
    out.pairs = this.pairs.map((p) => ({ reference: [...p.reference], lineart: [...p.lineart] }));
    const text = JSON.stringify(out);
    this.lastText = text;
    this.notice = null; // a message lasts until the next change (or 4 s)
    this.invalid = false;
    this.widget.value = text;
    this.node.setDirtyCanvas?.(true, true);
    this.draw();
  }

  snapshot() {
    return JSON.stringify({ pairs: this.pairs, pending: this.pending });
  }

  remember() {
    this.history.push(this.snapshot());
    if (this.history.length > 200) this.history.shift();
  }

  undo() {
    if (!this.history.length) return this.flash("Nothing to undo.");
    ({ pairs: this.pairs, pending: this.pending } = JSON.parse(this.history.pop()));
    this.commit();
  }

  clear() {
    if (!this.pairs.length && !this.pending) return;
    this.remember();
    this.pairs = [];
    this.pending = null;
    this.commit();
  }

  getPoints() {
    return parsePoints(String(this.widget.value ?? ""));
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
    this.runPoints = message?.mn_points?.[0] ? parsePoints(message.mn_points[0]) : null;
    this.sync();
  }

  // Picks up changes made elsewhere: a loaded/pasted workflow, a new upstream image, a (dis)connected input.
  sync() {
    if (String(this.widget.value ?? "") !== this.lastText) this.loadFromWidget();
    for (const side of SIDES) {
      const url = upstreamImageURL(this.node, side) ?? this.runSources[side];
      if (url !== this.images[side].url) this.loadImage(side, url);
    }
  }

  loadImage(side, url) {
    const entry = { url, img: null, error: false };
    this.images[side] = entry;
    if (url) {
      const img = new Image();
      img.onload = () => { if (this.images[side] === entry) { entry.img = img; this.draw(); } };
      img.onerror = () => { if (this.images[side] === entry) { entry.error = true; this.draw(); } };
      img.src = url;
    }
    this.draw();
  }

  imageSize(side) {
    const img = this.images[side].img;
    return img ? [img.naturalWidth, img.naturalHeight] : null;
  }

  mismatch() {
    for (const side of SIDES) {
      const [stored, actual] = [this.storedSizes[side], this.imageSize(side)];
      if (this.pairs.length && stored && actual && (stored[0] !== actual[0] || stored[1] !== actual[1])) {
        return `The points were placed on a ${stored[0]}x${stored[1]} ${LABELS[side].toLowerCase()}, but this one ` +
               `is ${actual[0]}x${actual[1]}: Clear to place them again.`;
      }
    }
    return null;
  }

  isReady() {
    return SIDES.every((side) => this.layout[side]);
  }

  // ---- geometry -------------------------------------------------------------------------------------------------
  computeLayout(width, height) {
    this.layout = {};
    SIDES.forEach((side, i) => {
      const size = this.imageSize(side);
      if (!size) return;
      const box = { x: i * width / 2 + PAD, y: LABEL_HEIGHT, w: width / 2 - 2 * PAD, h: height - LABEL_HEIGHT - PAD };
      const s = Math.min(box.w / size[0], box.h / size[1]);
      if (!(s > 0)) return;
      this.layout[side] = { s, w: size[0], h: size[1], ox: box.x + (box.w - size[0] * s) / 2,
                            oy: box.y + (box.h - size[1] * s) / 2 };
    });
  }

  // client px per canvas CSS px (the canvas zoom scales the widget with a CSS transform)
  clientScale() {
    const rect = this.canvas.getBoundingClientRect();
    return { rect, kx: rect.width / (this.canvas.clientWidth || 1), ky: rect.height / (this.canvas.clientHeight || 1) };
  }

  toCanvas(side, xy) { // centre of the pixel, like nodes/points.py draw_points
    const L = this.layout[side];
    return [L.ox + (Math.floor(xy[0]) + 0.5) * L.s, L.oy + (Math.floor(xy[1]) + 0.5) * L.s];
  }

  imageToClient(side, x, y) {
    if (!this.layout[side]) return null;
    const { rect, kx, ky } = this.clientScale();
    const [cx, cy] = this.toCanvas(side, [x, y]);
    return { x: rect.left + cx * kx, y: rect.top + cy * ky };
  }

  clientToImage(clientX, clientY, side = null) {
    const { rect, kx, ky } = this.clientScale();
    const lx = (clientX - rect.left) / kx;
    const ly = (clientY - rect.top) / ky;
    side = side ?? (lx < this.canvas.clientWidth / 2 ? "reference" : "lineart");
    const L = this.layout[side];
    if (!L) return null;
    const fx = (lx - L.ox) / L.s;
    const fy = (ly - L.oy) / L.s;
    const clamp = (v, n) => Math.min(Math.max(Math.floor(v), 0), n - 1);
    return { side, x: clamp(fx, L.w), y: clamp(fy, L.h), inside: fx >= 0 && fy >= 0 && fx < L.w && fy < L.h,
             canvas: [lx, ly] };
  }

  hitTest(clientX, clientY) {
    const { rect, kx, ky } = this.clientScale();
    const lx = (clientX - rect.left) / kx;
    const ly = (clientY - rect.top) / ky;
    let best = null;
    const consider = (side, xy, index) => {
      if (!this.layout[side]) return;
      const [px, py] = this.toCanvas(side, xy);
      const d = Math.hypot(px - lx, py - ly);
      if (d <= HIT_RADIUS && (!best || d < best.d)) best = { side, index, d };
    };
    this.pairs.forEach((pair, k) => SIDES.forEach((side) => consider(side, pair[side], k)));
    if (this.pending) consider(this.pending.side, this.pending.xy, -1);
    return best;
  }

  pointAt(hit) {
    return hit.index < 0 ? this.pending.xy : this.pairs[hit.index][hit.side];
  }

  usedBy(side, xy, except = null) { // index of another pair using this pixel on `side`, else -1
    return this.pairs.findIndex((p, k) => k !== except && sameXY(p[side], xy));
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
      this.pairs.push({ [side]: xy, [other]: this.pending.xy });
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

  flash(text) {
    this.notice = { text, until: Date.now() + 4000 };
    this.updateStatus();
    setTimeout(() => this.updateStatus(), 4100);
    return false;
  }

  // ---- drawing ----------------------------------------------------------------------------------------------------
  updateStatus() {
    const n = this.pairs.length;
    let text;
    if (this.notice && Date.now() < this.notice.until) text = this.notice.text;
    else if (this.externalPoints()) text = "Points come from the connected coordinate inputs (read-only).";
    else if (this.invalid) text = "The points value is not valid JSON; Clear to start again.";
    else if (!this.isReady()) text = "Connect the reference and the line art (or run the workflow once).";
    else text = this.mismatch() ?? (this.pending
      ? `Pair ${n + 1}: now click the ${this.pending.side === "reference" ? "line art" : "reference"}.`
      : n >= MAX_PAIRS ? `${n}/${MAX_PAIRS} pairs (the maximum).`
        : `${n}/${MAX_PAIRS} pairs. Click the reference, then the line art; drag to move; right-click deletes.`);
    this.status.textContent = text;
    this.status.title = text;
    this.element.dataset.mnReady = this.isReady() ? "1" : "0";
    this.element.dataset.mnPairs = String(n);
  }

  draw() {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    const dpr = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * dpr) || this.canvas.height !== Math.round(height * dpr)) {
      this.canvas.width = Math.round(width * dpr);
      this.canvas.height = Math.round(height * dpr);
    }
    this.computeLayout(width, height);
    const ctx = this.canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1e1e1e";
    ctx.fillRect(0, 0, width, height);
    ctx.font = "12px sans-serif";
    ctx.textBaseline = "middle";
    SIDES.forEach((side, i) => {
      ctx.fillStyle = "#bbb";
      ctx.textAlign = "left";
      ctx.fillText(LABELS[side], i * width / 2 + PAD, LABEL_HEIGHT / 2);
      const L = this.layout[side];
      if (!L) {
        ctx.textAlign = "center";
        ctx.fillStyle = "#888";
        const entry = this.images[side];
        const why = entry.error ? "could not load the image" : entry.url ? "loading…" : "no image yet";
        ctx.fillText(why, (i + 0.5) * width / 2, height / 2);
        return;
      }
      ctx.imageSmoothingEnabled = L.s < 1;
      ctx.drawImage(this.images[side].img, L.ox, L.oy, L.w * L.s, L.h * L.s);
    });
    const shown = this.externalPoints() ? this.runPoints?.pairs ?? [] : this.pairs;
    shown.forEach((pair, k) => SIDES.forEach((side) => this.drawPoint(ctx, side, pair[side], k + 1, false)));
    if (this.pending && !this.externalPoints()) {
      this.drawPoint(ctx, this.pending.side, this.pending.xy, this.pairs.length + 1, true);
    }
    this.updateStatus();
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
    clearInterval(this.timer);
    this.resizeObserver.disconnect();
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
    chainCallback(proto, "onConfigure", function () { this.mnPointEditor?.loadFromWidget(); });
    chainCallback(proto, "onExecuted", function (message) { this.mnPointEditor?.onExecuted(message); });
    chainCallback(proto, "onConnectionsChange", function () { this.mnPointEditor?.sync(); });
    chainCallback(proto, "onRemoved", function () { this.mnPointEditor?.destroy(); });
  },
});
