// MangaNinja Colorization Metrics: show the table of the last run on the node (the node's ui `text`).
//
// The table goes in a read-only <pre class="mn-metrics-report"> inside a DOM widget named "report", added on the
// first run and updated on every run. It is not serialised: the numbers belong to a run, not to the workflow.
// Classic mode sizes DOM widgets by options.getMinHeight/getHeight; Nodes 2.0 (Vue) mode by the content's height.
import { app } from "../../scripts/app.js";
import { chainCallback } from "./editor_canvas.js";

const NODE_TYPE = "MangaNinjaColorizationMetrics";
const LINE_HEIGHT = 14;

function reportWidget(node) {
  let widget = node.widgets?.find((w) => w.name === "report");
  if (widget) return widget;
  const element = document.createElement("div");
  Object.assign(element.style, { width: "100%", boxSizing: "border-box" });
  const pre = document.createElement("pre");
  pre.className = "mn-metrics-report";
  Object.assign(pre.style, {
    margin: "0", padding: "6px 8px", font: `11px/${LINE_HEIGHT}px monospace`, whiteSpace: "pre", overflow: "auto",
    background: "rgba(0, 0, 0, 0.25)", color: "var(--input-text, #ddd)", borderRadius: "4px", userSelect: "text",
  });
  element.append(pre);
  widget = node.addDOMWidget("report", "mn_metrics_report", element, {
    serialize: false, hideOnZoom: false, hideInPanel: true,
    getMinHeight: () => widget.mnHeight ?? LINE_HEIGHT * 2, getHeight: () => widget.mnHeight ?? LINE_HEIGHT * 2,
  });
  widget.serialize = false;
  widget.mnPre = pre;
  return widget;
}

function showReport(node, text) {
  const widget = reportWidget(node);
  widget.mnPre.textContent = text;
  widget.mnText = text;
  widget.mnHeight = text.split("\n").length * LINE_HEIGHT + 16;
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], 460), Math.max(node.size[1], size[1])]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "MangaNinja.ColorizationMetrics",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    chainCallback(nodeType.prototype, "onExecuted", function (message) {
      const text = message?.text;
      if (text) showReport(this, Array.isArray(text) ? text.join("\n") : String(text));
    });
  },
});
