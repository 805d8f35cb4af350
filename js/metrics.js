// MangaNinja Colorization Metrics: show the table of the last run on the node (the node's ui `text`).
//
// A read-only multiline text widget named "report" is added on first use and updated on every run; it is not
// serialised (the numbers belong to a run, not to the workflow).
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";
import { chainCallback } from "./editor_canvas.js";

const NODE_TYPE = "MangaNinjaColorizationMetrics";

function showReport(node, text) {
  let widget = node.widgets?.find((w) => w.name === "report");
  if (!widget) {
    widget = ComfyWidgets.STRING(node, "report", ["STRING", { multiline: true }], app).widget;
    widget.serialize = false;
    widget.options = { ...(widget.options || {}), serialize: false };
    const el = widget.inputEl || widget.element;
    if (el) {
      el.readOnly = true;
      el.classList?.add("mn-metrics-report");
      el.style.fontFamily = "monospace";
      el.style.fontSize = "11px";
    }
  }
  widget.value = text;
  const el = widget.inputEl || widget.element;
  if (el && "value" in el) el.value = text;
  const size = node.computeSize?.();
  if (size) node.setSize?.([Math.max(node.size[0], 420), Math.max(node.size[1], size[1])]);
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
