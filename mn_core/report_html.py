"""The HTML report of an evaluation: the mean table, one matplotlib plot per metric, the per-image table and a
contact sheet (reference | prediction | target | difference) of the images, worst first.

Written as ``report.html`` plus a ``report_files/`` folder (the plots as PNG, the sheet rows as JPEG); open it in a
browser. The difference column is ``|prediction - target|`` per channel, times 4, so small errors show.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics as M

SHEET_ROWS = 100     # images in the contact sheet (the worst ones when there are more)
SHEET_HEIGHT = 160   # px per sheet row
DIFF_GAIN = 4
BARS_UP_TO = 60      # per-image bar chart up to this many images, else a histogram


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:80] or "image"


def _fmt(v) -> str:
    from .evaluate import fmt

    return fmt(v, none="–")


def _plot(report, col: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = [(r["name"], r[col]) for r in report.images if r.get(col) is not None and math.isfinite(r[col])]
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    values = [v for _, v in rows]
    if len(rows) <= BARS_UP_TO:
        ax.bar(range(len(rows)), values, color="#4a7ebb")
        ax.set_xticks(range(len(rows)), [n for n, _ in rows], rotation=60, ha="right", fontsize=7)
        ax.set_xlabel("image")
    else:
        ax.hist(values, bins=40, color="#4a7ebb")
        ax.set_xlabel(col)
        ax.set_ylabel("images")
    mean = report.mean.get(col)
    if mean is not None and math.isfinite(mean):
        if len(rows) <= BARS_UP_TO:
            ax.axhline(mean, color="#c0392b", lw=1, label=f"mean {mean:.4g}")
        else:
            ax.axvline(mean, color="#c0392b", lw=1, label=f"mean {mean:.4g}")
        ax.legend(loc="best", fontsize=8)
    better = "higher is better" if M.HIGHER_IS_BETTER[col] else "lower is better"
    ax.set_title(f"{col} per image ({better})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _thumb(arr: np.ndarray, height: int) -> Image.Image:
    img = Image.fromarray(arr)
    w = max(1, round(img.width * height / img.height))
    return img.resize((w, height), Image.BILINEAR)


def _sheet_row(item, path: Path) -> None:
    from .evaluate import load_rgb, resized_to

    pred, target = load_rgb(item.pred, "prediction"), load_rgb(item.target, "target")
    if pred.shape != target.shape:
        pred = resized_to(pred, target)
    diff = np.clip(np.abs(pred.astype(np.int16) - target.astype(np.int16)) * DIFF_GAIN, 0, 255).astype(np.uint8)
    parts = [pred, target, diff]
    if item.reference is not None:
        parts.insert(0, load_rgb(item.reference, "reference"))
    thumbs = [_thumb(p, SHEET_HEIGHT) for p in parts]
    gap = 6
    row = Image.new("RGB", (sum(t.width for t in thumbs) + gap * (len(thumbs) - 1), SHEET_HEIGHT), (255, 255, 255))
    x = 0
    for t in thumbs:
        row.paste(t, (x, 0))
        x += t.width + gap
    row.save(path, quality=88)


def _worst_first(report, items):
    by_name = {i.name: i for i in items}
    key_col = next((c for c in ("psnr", "ssim", "lpips", "point_mse") if any(r.get(c) is not None
                                                                              for r in report.images)), None)
    rows = list(report.images)
    if key_col is not None:
        sign = 1 if M.HIGHER_IS_BETTER[key_col] else -1
        rows.sort(key=lambda r: sign * (r[key_col] if r.get(key_col) is not None else math.inf))
    return [(r, by_name[r["name"]]) for r in rows[:SHEET_ROWS] if r["name"] in by_name], key_col


def write_html(report, path: Path, items) -> Path:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        from .evaluate import EvaluateError

        raise EvaluateError("the HTML report needs matplotlib: pip install matplotlib (or pass --no-html); "
                            "report.json and report.csv are written") from None
    files = path.with_name(path.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)
    cols = report.columns()
    e = html.escape
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>MangaNinja evaluation</title><style>",
           "body{font-family:sans-serif;margin:24px;color:#222} table{border-collapse:collapse;margin:8px 0}",
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child,th:first-child"
           "{text-align:left} img{max-width:100%} .sheet div{margin:8px 0}</style></head><body>",
           "<h1>Evaluation report</h1>"]
    info = ", ".join(f"{e(str(k))}: {e(str(v))}" for k, v in report.info.items())
    out.append(f"<p>{info}</p>")
    head = "".join(f"<th>{e(c)} {'↑' if M.HIGHER_IS_BETTER[c] else '↓'}</th>" for c in cols)
    out.append("<h2>Mean</h2><table id='mean'><tr><th>images</th>" + head + "</tr>")
    out.append(f"<tr><td>{len(report.images)}</td>" + "".join(f"<td>{_fmt(report.mean.get(c))}</td>" for c in cols)
               + "</tr></table>")
    out.append("<h2>Per image</h2>")
    for c in cols:
        if c == "fid" or not any(r.get(c) is not None for r in report.images):
            continue
        plot = files / f"plot_{_safe(c)}.png"
        _plot(report, c, plot)
        out.append(f"<img class='plot' alt='{e(c)} per image' src='{e(files.name)}/{e(plot.name)}'>")
    out.append("<table id='images'><tr><th>name</th>" + head + "</tr>")
    for r in report.images:
        out.append(f"<tr><td>{e(r['name'])}</td>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>")
    out.append("</table>")
    rows, key_col = _worst_first(report, items)
    order = f", worst {key_col} first" if key_col else ""
    shown = f" ({len(rows)} of {len(report.images)})" if len(rows) < len(report.images) else ""
    columns = ("reference | " if any(i.reference is not None for _, i in rows) else "") + \
        f"prediction | target | difference x{DIFF_GAIN}"
    out.append(f"<h2>Contact sheet{shown}</h2><p>{e(columns)}{e(order)}</p><div class='sheet'>")
    for k, (r, item) in enumerate(rows):
        sheet = files / f"sheet_{k:04d}_{_safe(item.name)}.jpg"
        _sheet_row(item, sheet)
        label = f"{item.name}" + (f" — {key_col} {_fmt(r.get(key_col))}" if key_col else "")
        out.append(f"<div><p>{e(label)}</p><img alt='{e(item.name)}' src='{e(files.name)}/{e(sheet.name)}'></div>")
    out.append("</div></body></html>")
    path.write_text("\n".join(out), encoding="utf-8")
    return path
