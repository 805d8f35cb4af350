// A canvas editor inside a ComfyUI node, showing the images of some of its inputs side by side: the reusable base
// of js/point_editor.js (which holds the point-pair logic).
//
// This module only exports; ComfyUI also loads it as an extension module, so it must have no side effects.
//
//   EditorCanvas        DOM (toolbar + status line + canvas + a focus target for keys), the DOM widget, sizing,
//                       one image panel per input ("panels"), image <-> canvas <-> client coordinates, pointer and
//                       key event plumbing, drawing of the panels, notices.
//   refresh()           re-reads the images of the upstream nodes. Nothing polls: it runs on graph and widget
//                       events, which the subclass and its extension wire up (connections, configure, execution),
//                       plus the ones wired here: the upstream node's `image` widget value (or its callback) and
//                       `imgs` previews changing, the api "executed" event of an upstream node, and the widget's
//                       draw callback.
//
// Subclasses override drawOverlay(ctx), statusText() and the on* event methods.

import { api } from "../../scripts/api.js";

const LABEL_HEIGHT = 18;
// Toolbar controls (buttons, the selector) look like the frontend's inputs.
const CONTROL_STYLE = { font: "12px sans-serif", background: "var(--comfy-input-bg, #333)",
                        color: "var(--input-text, #ddd)", border: "1px solid var(--border-color, #555)",
                        borderRadius: "4px" };
const PAD = 6;
const NOTICE_MS = 4000;

export function chainCallback(object, name, callback) {
  const original = object[name];
  object[name] = function (...args) {
    const result = original?.apply(this, args);
    callback.apply(this, args);
    return result;
  };
}

// Hide a widget but keep it serialised: the new frontend reads `hidden` and `options.hidden`, the 2024 one the
// "hidden" type (which also hides a DOM textarea) and computeSize.
export function hideWidget(widget) {
  // The 2024 frontend treats every multiline text widget as a dynamic prompt unless told otherwise and replaces
  // "{a|b}" by a random choice when queueing, which strips the braces of a JSON value: opt out, and drop the
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

// ---- property watching ------------------------------------------------------------------------------------------
// watchProperty(object, key, listener) calls listener(value) after each assignment to object[key] and returns the
// function that stops it (or null when the property cannot be watched). The property becomes an own accessor that
// passes reads and writes on to what was there before (its getter/setter, or the stored value), so other code sees
// no difference; it stays in place when the last listener goes, as a pass-through.
const HOOKS = Symbol("mnPropertyHooks");

function installHook(object, key) {
  const own = Object.getOwnPropertyDescriptor(object, key);
  if (own && !own.configurable) return null;
  let base = own;
  for (let p = Object.getPrototypeOf(object); !base && p; p = Object.getPrototypeOf(p)) {
    base = Object.getOwnPropertyDescriptor(p, key);
  }
  const accessor = !!(base && (base.get || base.set));
  let stored = base && !accessor ? base.value : undefined;
  const listeners = new Set();
  Object.defineProperty(object, key, {
    configurable: true,
    enumerable: own ? own.enumerable : !accessor, // an inherited accessor was not an own key: keep it out of keys()
    get() { return accessor ? base.get?.call(this) : stored; },
    set(value) {
      if (accessor) base.set?.call(this, value);
      else stored = value;
      for (const listener of [...listeners]) {
        try {
          listener(value);
        } catch (error) {
          console.error("[MangaNinja] property listener failed", error);
        }
      }
    },
  });
  return listeners;
}

export function watchProperty(object, key, listener) {
  if (!object || (typeof object !== "object" && typeof object !== "function")) return null;
  if (!Object.prototype.hasOwnProperty.call(object, HOOKS)) {
    if (!Object.isExtensible(object)) return null;
    Object.defineProperty(object, HOOKS, { value: {}, enumerable: false });
  }
  const hooks = object[HOOKS];
  hooks[key] = hooks[key] ?? installHook(object, key);
  if (!hooks[key]) return null;
  hooks[key].add(listener);
  return () => hooks[key].delete(listener);
}

// Calls listener(value) after each change of a widget's value; returns the function that stops it, or null.
export function watchWidgetValue(widget, listener) {
  const stop = watchProperty(widget, "value", listener);
  if (stop) return stop;
  // The current frontends' DOM widgets (a multiline STRING) have a non-configurable `value` accessor that writes
  // through options.setValue.
  const options = widget?.options;
  if (options && typeof options.setValue === "function" && Object.isExtensible(options)) {
    return chainFunction(options, "setValue", listener);
  }
  // The 2024 frontend's image upload widget has a non-configurable `value` accessor that stores into `_real_value`.
  const own = widget && Object.getOwnPropertyDescriptor(widget, "value");
  return own?.set ? watchProperty(widget, "_real_value", listener) : null;
}

// Calls listener(...) after the widget's callback, which the frontends call after a change made in the UI (a combo
// menu, an upload; frontend 1.32.9's file combo keeps its value where nothing else can see it changing).
export function watchWidgetCallback(widget, listener) {
  return widget && Object.isExtensible(widget) ? chainFunction(widget, "callback", listener) : null;
}

function chainFunction(object, name, listener) {
  const original = object[name];
  const chained = function (...args) {
    const result = original?.apply(this, args);
    try {
      listener(...args);
    } catch (error) {
      console.error(`[MangaNinja] ${name} listener failed`, error);
    }
    return result;
  };
  object[name] = chained;
  return () => { if (object[name] === chained) object[name] = original; };
}

// ---- upstream images --------------------------------------------------------------------------------------------
export function viewURL({ filename, subfolder = "", type = "input" }) {
  const params = new URLSearchParams({ filename, subfolder, type });
  return api.apiURL(`/view?${params}`);
}

// The node feeding `inputName`, through legacy reroutes; null when not connected.
export function upstreamNode(node, inputName) {
  if (!inputName) return null;
  const slot = node.findInputSlot(inputName);
  if (slot < 0 || node.inputs[slot].link == null) return null;
  let origin = node.getInputNode(slot);
  for (let i = 0; origin?.type === "Reroute" && i < 32; i++) origin = origin.getInputNode(0);
  return origin ?? null;
}

// URL of the image feeding `inputName`, from the upstream node: a LoadImage file, else the node's preview.
export function upstreamImageURL(node, inputName) {
  const origin = upstreamNode(node, inputName);
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

export class EditorCanvas {
  // panels: [{key, label, input}] shown left to right; input: the input whose image the panel shows (default key).
  constructor(node, { widgetName, widgetType, className, ariaLabel, panels, minHeight = 220 }) {
    this.node = node;
    this.panels = panels.map((p) => ({ input: p.key, ...p }));
    this.images = Object.fromEntries(this.panels.map((p) => [p.key, { url: null, img: null }]));
    this.layout = {}; // key -> {s, w, h, ox, oy}: the image's scale and offset in canvas CSS px
    this.notice = null;
    this.watched = new Map(); // upstream node -> [stop functions]
    this.buildDOM(className, ariaLabel);
    // hideInPanel: the properties panel (frontend 1.5x) would list the editor as an empty row.
    this.domWidget = node.addDOMWidget(widgetName, widgetType, this.element, {
      serialize: false, hideOnZoom: false, hideInPanel: true, getMinHeight: () => minHeight,
      onDraw: () => this.refresh(),
    });
    this.domWidget.serialize = false; // not in widgets_values (new frontend); options.serialize: not in prompts
    this.resizeObserver = new ResizeObserver(() => this.draw());
    this.resizeObserver.observe(this.box);
    this.onApiExecuted = ({ detail }) => {
      const id = String(detail?.display_node ?? detail?.node);
      if ([...this.watched.keys()].some((n) => String(n.id) === id)) this.refresh();
    };
    api.addEventListener("executed", this.onApiExecuted);
  }

  buildDOM(className, ariaLabel) {
    // The frontends set the widget element's own `display` (to hide it), so the flex layout lives one level down.
    this.element = document.createElement("div");
    // widget-expands: in Nodes 2.0 (Vue) mode the frontends let a widget row holding this class take the node's
    // free height; without it the row is as high as its content, which is 0 for a canvas sized by its box.
    this.element.className = `${className} widget-expands`;
    Object.assign(this.element.style, { width: "100%", height: "100%", boxSizing: "border-box" });
    const column = document.createElement("div");
    Object.assign(column.style, { display: "flex", flexDirection: "column", gap: "4px", width: "100%",
                                  height: "100%", position: "relative" });
    this.element.append(column);
    this.bar = document.createElement("div");
    Object.assign(this.bar.style, { display: "flex", alignItems: "center", gap: "6px", font: "12px sans-serif",
                                    color: "var(--input-text, #ddd)", minHeight: "22px" });
    this.status = document.createElement("span");
    Object.assign(this.status.style, { overflow: "hidden", textOverflow: "ellipsis", whiteSpace: "nowrap" });
    this.bar.append(this.status);
    // The canvas is absolutely positioned in a flexible box so that its bitmap size never feeds back into layout.
    this.box = document.createElement("div");
    Object.assign(this.box.style, { flex: "1 1 0", minHeight: "0", position: "relative" });
    this.canvas = document.createElement("canvas");
    Object.assign(this.canvas.style, { position: "absolute", left: "0", top: "0", width: "100%", height: "100%",
                                       touchAction: "none", cursor: "crosshair", borderRadius: "4px" });
    this.box.append(this.canvas);
    // Keyboard focus goes to a read-only <input>: both frontends leave Ctrl+Z in inputs alone, so an editor's
    // undo does not also undo the whole graph.
    this.keys = document.createElement("input");
    this.keys.readOnly = true;
    this.keys.setAttribute("aria-label", ariaLabel);
    Object.assign(this.keys.style, { position: "absolute", width: "1px", height: "1px", opacity: "0",
                                     pointerEvents: "none", left: "0", top: "0" });
    column.append(this.bar, this.box, this.keys);

    this.canvas.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.onPointerMove(e));
    this.canvas.addEventListener("pointerup", (e) => this.onPointerUp(e));
    this.canvas.addEventListener("pointercancel", (e) => this.onPointerUp(e, true));
    this.canvas.addEventListener("contextmenu", (e) => this.onContextMenu(e));
    this.keys.addEventListener("keydown", (e) => this.onKeyDown(e));
  }

  // A toolbar button (class mn-<label>), placed before the status text.
  addButton(label, title, action) {
    const b = document.createElement("button");
    b.textContent = label;
    b.title = title;
    b.className = `mn-${label.toLowerCase()}`;
    Object.assign(b.style, CONTROL_STYLE, { padding: "1px 8px", cursor: "pointer" });
    b.addEventListener("pointerdown", (e) => e.stopPropagation());
    b.addEventListener("click", (e) => { e.stopPropagation(); action(); });
    this.bar.insertBefore(b, this.status);
    return b;
  }

  // A toolbar <select> (class `className`, hidden until shown), placed before the status text; onChange(value).
  addSelect(className, title, onChange) {
    const s = document.createElement("select");
    s.className = className;
    s.title = title;
    Object.assign(s.style, CONTROL_STYLE, { display: "none" });
    for (const name of ["pointerdown", "keydown"]) s.addEventListener(name, (e) => e.stopPropagation());
    s.addEventListener("change", () => onChange(s.value));
    this.bar.insertBefore(s, this.status);
    return s;
  }

  // ---- events (overridden) ----------------------------------------------------------------------------------
  onPointerDown(e) {}
  onPointerMove(e) {}
  onPointerUp(e, cancelled = false) {}
  onContextMenu(e) { e.preventDefault(); }
  onKeyDown(e) {}

  // ---- images -------------------------------------------------------------------------------------------------
  // The image a panel shows when its input gives none (overridden: e.g. the images of the last run).
  fallbackImageURL(key) { return null; }

  refresh() {
    for (const panel of this.panels) {
      const url = upstreamImageURL(this.node, panel.input) ?? this.fallbackImageURL(panel.key);
      if (url !== this.images[panel.key].url) this.loadImage(panel.key, url);
    }
    this.watchUpstream();
  }

  // Follow the upstream nodes' image widget and previews; drop the nodes that no longer feed a panel.
  watchUpstream() {
    const origins = new Set(this.panels.map((p) => upstreamNode(this.node, p.input)).filter(Boolean));
    for (const [origin, stops] of this.watched) {
      if (!origins.has(origin)) {
        stops.forEach((stop) => stop());
        this.watched.delete(origin);
      }
    }
    for (const origin of origins) {
      if (this.watched.has(origin)) continue;
      const changed = () => this.refresh();
      const widget = origin.widgets?.find((w) => w.name === "image");
      this.watched.set(origin, [widget && watchWidgetValue(widget, changed), watchWidgetCallback(widget, changed),
                                watchProperty(origin, "imgs", changed)].filter(Boolean));
    }
  }

  loadImage(key, url) {
    const entry = { url, img: null, error: false };
    this.images[key] = entry;
    if (url) {
      const img = new Image();
      img.onload = () => { if (this.images[key] === entry) { entry.img = img; this.draw(); } };
      img.onerror = () => { if (this.images[key] === entry) { entry.error = true; this.draw(); } };
      img.src = url;
    }
    this.draw();
  }

  imageSize(key) {
    const img = this.images[key].img;
    return img ? [img.naturalWidth, img.naturalHeight] : null;
  }

  isReady() {
    return this.panels.every((p) => this.layout[p.key]);
  }

  // ---- geometry -------------------------------------------------------------------------------------------------
  computeLayout(width, height) {
    this.layout = {};
    const n = this.panels.length;
    this.panels.forEach(({ key }, i) => {
      const size = this.imageSize(key);
      if (!size) return;
      const box = { x: i * width / n + PAD, y: LABEL_HEIGHT, w: width / n - 2 * PAD, h: height - LABEL_HEIGHT - PAD };
      const s = Math.min(box.w / size[0], box.h / size[1]);
      if (!(s > 0)) return;
      this.layout[key] = { s, w: size[0], h: size[1], ox: box.x + (box.w - size[0] * s) / 2,
                           oy: box.y + (box.h - size[1] * s) / 2 };
    });
  }

  // client px per canvas CSS px (the canvas zoom scales the widget with a CSS transform)
  clientScale() {
    const rect = this.canvas.getBoundingClientRect();
    return { rect, kx: rect.width / (this.canvas.clientWidth || 1), ky: rect.height / (this.canvas.clientHeight || 1) };
  }

  clientToCanvas(clientX, clientY) {
    const { rect, kx, ky } = this.clientScale();
    return [(clientX - rect.left) / kx, (clientY - rect.top) / ky];
  }

  toCanvas(key, xy) { // centre of the image pixel, like nodes/points.py draw_points
    const L = this.layout[key];
    return [L.ox + (Math.floor(xy[0]) + 0.5) * L.s, L.oy + (Math.floor(xy[1]) + 0.5) * L.s];
  }

  imageToClient(key, x, y) {
    if (!this.layout[key]) return null;
    const { rect, kx, ky } = this.clientScale();
    const [cx, cy] = this.toCanvas(key, [x, y]);
    return { x: rect.left + cx * kx, y: rect.top + cy * ky };
  }

  // The image pixel under a client position, in the panel under it (or in panel `key`, clamped to its image).
  clientToImage(clientX, clientY, key = null) {
    const [lx, ly] = this.clientToCanvas(clientX, clientY);
    if (key === null) {
      const n = this.panels.length;
      const i = this.panels.findIndex((p, k) => lx < (k + 1) * this.canvas.clientWidth / n);
      key = this.panels[i < 0 ? n - 1 : i].key;
    }
    const L = this.layout[key];
    if (!L) return null;
    const fx = (lx - L.ox) / L.s;
    const fy = (ly - L.oy) / L.s;
    const clamp = (v, n) => Math.min(Math.max(Math.floor(v), 0), n - 1);
    return { side: key, x: clamp(fx, L.w), y: clamp(fy, L.h), inside: fx >= 0 && fy >= 0 && fx < L.w && fy < L.h,
             canvas: [lx, ly] };
  }

  // ---- notices and status ---------------------------------------------------------------------------------------
  // A message in the status line until the next change (the subclass clears `notice`) or for 4 s; returns false.
  flash(text) {
    this.notice = { text, until: Date.now() + NOTICE_MS };
    this.updateStatus();
    setTimeout(() => this.updateStatus(), NOTICE_MS + 100);
    return false;
  }

  statusText() { return ""; }

  updateStatus() {
    const text = this.notice && Date.now() < this.notice.until ? this.notice.text : this.statusText();
    this.status.textContent = text;
    this.status.title = text;
    this.element.dataset.mnReady = this.isReady() ? "1" : "0";
  }

  // ---- drawing ----------------------------------------------------------------------------------------------------
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
    const n = this.panels.length;
    this.panels.forEach(({ key, label }, i) => {
      ctx.fillStyle = "#bbb";
      ctx.textAlign = "left";
      ctx.fillText(label, i * width / n + PAD, LABEL_HEIGHT / 2);
      const L = this.layout[key];
      if (!L) {
        ctx.textAlign = "center";
        ctx.fillStyle = "#888";
        const entry = this.images[key];
        const why = entry.error ? "could not load the image" : entry.url ? "loading…" : "no image yet";
        ctx.fillText(why, (i + 0.5) * width / n, height / 2);
        return;
      }
      ctx.imageSmoothingEnabled = L.s < 1;
      ctx.drawImage(this.images[key].img, L.ox, L.oy, L.w * L.s, L.h * L.s);
    });
    this.drawOverlay(ctx);
    this.updateStatus();
  }

  drawOverlay(ctx) {}

  destroy() {
    this.resizeObserver.disconnect();
    api.removeEventListener("executed", this.onApiExecuted);
    for (const stops of this.watched.values()) stops.forEach((stop) => stop());
    this.watched.clear();
  }
}
