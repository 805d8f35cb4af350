"""Evaluation over folders: pair predictions with targets by name, score them, and write the reports.

``python -m mn_core evaluate --pred DIR --target DIR --out report.json`` pairs ``DIR/<name>.<ext>`` files by name
(without extension), computes the metrics of :mod:`mn_core.metrics` and writes, beside ``report.json``:
``report.csv`` (one row per image, then the mean) and ``report.html`` (tables, per-image plots and a contact sheet,
:mod:`mn_core.report_html`). ``report.json`` is ``{"images": [{"name": ..., "psnr": ..., ...}], "mean": {...},
"metrics": [...], ...}``; a value that cannot be computed (e.g. ``point_mse`` without points) is ``null``; an
infinite PSNR (identical images) is the string ``"inf"``.

``--benchmark`` runs the papers' protocol first: for each ``(reference, target)`` pair of ``--pairs DIR``
(``DIR/reference/<name>.*``, ``DIR/target/<name>.*``, optional ``DIR/points/<name>.json``), the line art is
extracted from the target with the sk_model annotator, coloured by MangaNinja from the reference, written to
``<out folder>/predictions/<name>.png``, and scored against the target. Predictions already written with the same
options are kept (an interrupted benchmark goes on where it stopped).

Loading and the metrics without networks run in a thread pool (scikit-image and PIL release the GIL); the
network metrics run in the calling thread.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import metrics as M
from .images import open_image
from .points import parse

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class EvaluateError(ValueError):
    """Folders or files that cannot be evaluated; the message names the input and how to fix it."""


@dataclass
class Item:
    name: str
    pred: Path
    target: Path
    reference: Path | None = None
    points: Path | None = None


@dataclass
class Report:
    names: tuple[str, ...]                       # the metrics asked for
    images: list[dict] = field(default_factory=list)
    mean: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def columns(self) -> list[str]:
        cols = [c for c in M.HIGHER_IS_BETTER if any(c in row for row in self.images) or c in self.mean]
        return cols

    def to_json(self) -> dict:
        return {"images": [_clean(r) for r in self.images], "mean": _clean(self.mean), "metrics": list(self.names),
                "columns": self.columns(), **self.info}


def _clean(row: dict) -> dict:
    return {k: ("inf" if isinstance(v, float) and math.isinf(v) else v) for k, v in row.items()}


# --- pairing ---------------------------------------------------------------------------------------------------------


def image_files(folder: Path, what: str) -> dict[str, Path]:
    """``name -> file`` for the images in ``folder``; an error for a missing folder or two files of one name."""
    if not folder.is_dir():
        raise EvaluateError(f"{what} {folder}: no such folder")
    out: dict[str, Path] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            if f.stem in out:
                raise EvaluateError(f"{what} {folder}: {out[f.stem].name} and {f.name} have the same name; files "
                                    "are paired by name without extension, keep one")
            out[f.stem] = f
    if not out:
        raise EvaluateError(f"{what} {folder}: no image files here ({', '.join(IMAGE_SUFFIXES)})")
    return out


def _unmatched(names, folder: Path, what: str) -> str:
    names = sorted(names)
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{len(names)} file(s) have no {what} in {folder}: {shown} (files are paired by name without extension)"


def pair_folders(pred: Path, target: Path, reference: Path | None = None, points: Path | None = None) -> list[Item]:
    preds, targets = image_files(pred, "--pred"), image_files(target, "--target")
    if set(preds) - set(targets):
        raise EvaluateError(_unmatched(set(preds) - set(targets), target, "target"))
    if set(targets) - set(preds):
        raise EvaluateError(_unmatched(set(targets) - set(preds), pred, "prediction"))
    refs = image_files(reference, "--reference") if reference is not None else {}
    if reference is not None and set(preds) - set(refs):
        raise EvaluateError(_unmatched(set(preds) - set(refs), reference, "reference"))
    if points is not None and not points.is_dir():
        raise EvaluateError(f"--points {points}: no such folder")
    items = []
    for name in sorted(preds):
        pts = points / f"{name}.json" if points is not None else None
        items.append(Item(name, preds[name], targets[name], refs.get(name),
                          pts if pts is not None and pts.is_file() else None))
    return items


# --- scoring ---------------------------------------------------------------------------------------------------------


def load_rgb(path: Path, what: str) -> np.ndarray:
    from .images import ImageError, to_pil

    try:
        with open_image(path, what=f"{what} {path}") as img:
            return np.asarray(to_pil(img, what=f"{what} {path}").convert("RGB"))
    except (OSError, ImageError) as e:
        message = str(e) if isinstance(e, ImageError) else f"{what} {path}: not a readable image ({e})"
        raise EvaluateError(message) from None


def resized_to(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``pred`` resized (bicubic) to ``target``'s size."""
    return np.asarray(Image.fromarray(pred).resize((target.shape[1], target.shape[0]), Image.BICUBIC))


def _load_item(item: Item, resize: bool):
    pred, target = load_rgb(item.pred, "prediction"), load_rgb(item.target, "target")
    if pred.shape != target.shape:
        if not resize:
            raise EvaluateError(f"{item.name}: prediction {item.pred.name} is {pred.shape[1]}x{pred.shape[0]} but "
                                f"target {item.target.name} is {target.shape[1]}x{target.shape[0]}; pass --resize "
                                "to resize predictions to their target's size")
        pred = resized_to(pred, target)
    reference = load_rgb(item.reference, "reference") if item.reference is not None else None
    points = None
    if item.points is not None:
        try:
            points = parse(item.points.read_text(encoding="utf-8"))
        except ValueError as e:
            raise EvaluateError(f"points {item.points}: {e}") from None
    return pred, target, reference, points


def _cheap_scores(item: Item, names, resize: bool):
    pred, target, reference, points = _load_item(item, resize)
    try:
        scores = M.score_pair(pred, target, M.cheap(names), points=points)
    except M.MetricError as e:
        raise EvaluateError(f"{item.name}: {e}") from None
    return pred, target, reference, points, scores


def evaluate_items(items: list[Item], names, *, nets: M.Networks | None = None, resize: bool = False,
                   sequence: bool = False, workers: int | None = None, progress=None) -> Report:
    """Score every item of a folder pairing. ``sequence``: the items are frames in name order (adds ``temporal``).

    Reading and the metrics without networks run in ``workers`` threads, a few images ahead of the calling thread.
    """
    names = tuple(names)
    workers = workers or min(8, os.cpu_count() or 1)

    def stream():
        with ThreadPoolExecutor(workers) as pool:
            pending = []
            it = iter(items)
            for item in it:  # bounded look-ahead: at most 2 * workers images in memory at once
                pending.append((item, pool.submit(_cheap_scores, item, names, resize)))
                if len(pending) >= 2 * workers:
                    break
            while pending:
                item, fut = pending.pop(0)
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_cheap_scores, nxt, names, resize)))
                yield (item.name, *fut.result())

    return score_stream(stream(), names, nets=nets, sequence=sequence, total=len(items), progress=progress)


def score_stream(stream, names, *, nets: M.Networks | None = None, sequence: bool = False, total: int = 0,
                 progress=None) -> Report:
    """The report of ``(name, pred, target, reference, points, scores already computed)`` tuples: the remaining
    per-image metrics, then ``temporal`` over the sequence, the means and FID. ``progress(done, total)``."""
    names = tuple(names)
    if "temporal" in names and not sequence:
        raise EvaluateError("metric 'temporal' needs a sequence (--sequence: the files are frames of one shot, "
                            "in name order)")
    if any(n in M.NETWORKS for n in names) and nets is None:
        nets = M.Networks()
    report = Report(names)
    frames_p, frames_t = [], []
    for name, pred, target, reference, points, scores in stream:
        rest = tuple(n for n in names if n not in scores and n not in M.PER_SEQUENCE)
        try:
            scores = {**scores, **M.score_pair(pred, target, rest, nets=nets, reference=reference, points=points)}
        except M.MetricError as e:
            raise EvaluateError(f"{name}: {e}") from None
        report.images.append({"name": name, **{k: scores[k] for k in M.HIGHER_IS_BETTER if k in scores}})
        if "temporal" in names:
            frames_p.append(pred)
            frames_t.append(target)
        if progress is not None:
            progress(len(report.images), total)
    if frames_p:
        try:
            values = M.temporal(frames_p, frames_t)
        except M.MetricError as e:
            raise EvaluateError(str(e)) from None
        for row, value in zip(report.images, [None, *values]):
            row["temporal"] = value
    cols = [c for c in M.HIGHER_IS_BETTER if any(c in r for r in report.images)]
    report.mean = {c: M.mean([r.get(c) for r in report.images]) for c in cols}
    if "fid" in names:
        report.mean["fid"] = nets.fid_compute()
    report.info["count"] = len(report.images)
    return report


# --- writing ---------------------------------------------------------------------------------------------------------

ARROW = {True: "↑", False: "↓"}


def fmt(v, none: str = "-") -> str:
    """A metric value for a table: 4 decimals (2 from 100 on), ``inf``, or ``none`` for a missing value."""
    if v is None:
        return none
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.2f}"


def table(report: Report, *, label: str = "mean", per_image: int = 20) -> str:
    """A plain-text table: up to ``per_image`` image rows, then the mean row (the papers' table line)."""
    cols = report.columns()
    head = ["name"] + [f"{c} {ARROW[M.HIGHER_IS_BETTER[c]]}" for c in cols]
    rows = [[r["name"]] + [fmt(r.get(c)) for c in cols] for r in report.images[:per_image]]
    if len(report.images) > per_image:
        rows.append([f"... {len(report.images) - per_image} more"] + [""] * len(cols))
    rows.append([f"{label} ({len(report.images)})"] + [fmt(report.mean.get(c)) for c in cols])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [line(head), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows[:-1]]
    if len(rows) > 1:
        out.append("  ".join("-" * w for w in widths))
    out.append(line(rows[-1]))
    return "\n".join(out)


def write_reports(report: Report, out: Path, items: list[Item], *, html: bool = True) -> list[Path]:
    """report.json, report.csv and (``html``) report.html + report_files/ beside ``out``; returns the paths."""
    if out.suffix.lower() != ".json":
        raise EvaluateError(f"--out {out}: give a .json file name (the CSV and HTML reports go beside it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    written.append(out)
    cols = report.columns()
    csv_path = out.with_suffix(".csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["name", *cols])
        for r in report.images + [{"name": "mean", **report.mean}]:
            w.writerow([r["name"]] + ["" if r.get(c) is None else _clean({c: r[c]})[c] for c in cols])
    written.append(csv_path)
    if html:
        from .report_html import write_html

        written.append(write_html(report, out.with_suffix(".html"), items))
    return written


def _console_progress():
    def progress(done, total):
        if done == total or done % 50 == 0:
            print(f"evaluated {done}/{total}", file=sys.stderr)
    return progress


# --- the papers' protocol ------------------------------------------------------------------------------------------


def benchmark_items(pairs: Path) -> list[tuple[str, Path, Path, Path | None]]:
    """(name, reference, target, points or None) of a pairs folder: reference/, target/, optional points/."""
    refs = image_files(pairs / "reference", "--pairs reference/")
    targets = image_files(pairs / "target", "--pairs target/")
    if set(targets) - set(refs):
        raise EvaluateError(_unmatched(set(targets) - set(refs), pairs / "reference", "reference"))
    if set(refs) - set(targets):
        raise EvaluateError(_unmatched(set(refs) - set(targets), pairs / "target", "target"))
    points = pairs / "points"
    return [(n, refs[n], targets[n], points / f"{n}.json" if (points / f"{n}.json").is_file() else None)
            for n in sorted(targets)]


def run_benchmark(mn, pairs: Path, out_dir: Path, options: dict, *, progress=None) -> list[Item]:
    """Colour every pair's target line art (extracted from the target) from its reference; returns the items to
    score. ``options``: size, fit, steps, guidance_ref, guidance_point, seed. Each prediction is written as soon as
    it is done; ones already written with the same options are kept."""
    import torch

    from .observers import Progress

    todo = benchmark_items(pairs)
    pred_dir = out_dir / "predictions"
    pred_dir.mkdir(parents=True, exist_ok=True)
    stamp = pred_dir / "options.json"
    wanted = json.dumps(options, sort_keys=True)
    if stamp.is_file() and stamp.read_text(encoding="utf-8") != wanted:
        raise EvaluateError(f"{pred_dir} holds predictions made with other options ({stamp.read_text()}); "
                            "use another --out folder, or delete the predictions to redo them")
    stamp.write_text(wanted, encoding="utf-8")
    items = []
    for k, (name, ref_path, target_path, points_path) in enumerate(todo):
        dest = pred_dir / f"{name}.png"
        if not dest.is_file():
            reference = open_image(ref_path, what=f"reference {ref_path}")
            target = open_image(target_path, what=f"target {target_path}")
            points = parse(points_path.read_text(encoding="utf-8")) if points_path is not None else None
            generator = torch.Generator("cpu").manual_seed(options["seed"])
            ref = mn.encode_reference(reference, size=options["size"], fit=options["fit"], generator=generator,
                                      seed=options["seed"])
            lineart = mn.extract_lineart(target, size=options["size"], fit=options["fit"])
            observers = [Progress(progress)] if progress is not None else None
            result = mn.colorize(ref, lineart, points=points, steps=options["steps"],
                                 guidance_ref=options["guidance_ref"], guidance_point=options["guidance_point"],
                                 generator=generator, seed=options["seed"], observers=observers)
            tmp = dest.with_name(dest.stem + ".tmp.png")
            result.image.save(tmp)
            os.replace(tmp, dest)
        items.append(Item(name, dest, target_path, ref_path, points_path))
    return items


def score_images(preds, targets, names, *, nets: M.Networks | None = None, references=None, points=None,
                 sequence: bool = False, progress=None) -> Report:
    """The report of image batches (ComfyUI IMAGE tensors, numpy arrays or lists of PIL images). ``targets``
    (and ``references``) hold one image for all, or one per prediction; ``points`` apply to every image."""
    from .images import ImageError, to_pil

    def arrays(batch, what):
        if batch is None:
            return None
        items = list(batch) if not isinstance(batch, Image.Image) else [batch]
        try:
            return [np.asarray(to_pil(x, what=f"{what} {k + 1}").convert("RGB")) for k, x in enumerate(items)]
        except ImageError as e:
            raise EvaluateError(str(e)) from None

    p, t, r = arrays(preds, "image"), arrays(targets, "target"), arrays(references, "reference")
    for what, batch in (("target", t), ("reference", r)):
        if batch is not None and len(batch) not in (1, len(p)):
            raise EvaluateError(f"{what}: {len(batch)} images for {len(p)} predictions; give one, or one per "
                                "prediction")
    pick = lambda batch, k: None if batch is None else batch[k if len(batch) > 1 else 0]  # noqa: E731
    stream = ((f"{k + 1}", p[k], pick(t, k), pick(r, k), points, {}) for k in range(len(p)))
    return score_stream(stream, names, nets=nets, sequence=sequence, total=len(p), progress=progress)
