"""Suggested points measured: ``python benchmarks/points_bench.py [--official PATH]``.

1. The warp benchmark (:mod:`mn_core.warp_cases`): the project's own character drawings and scikit-image's photos
   (public domain / CC0) as references; their line drawings under known affine + elastic warps as line art. For
   each case: the pairs suggested (``max_pairs`` 12), the share whose reference point lies within 12 px (at 512 px)
   of the true position of its line-art point, the median error, and the time of :func:`suggest_points` (warm).
   Goal: precision >= 0.9 with >= 8 pairs per image, under 1 s.
2. ``--official PATH``: the official repository's annotated case (a checkout of ali-vilab/MangaNinjia; its files
   are CC BY-NC and are read from there, never copied here): test_cases/hz0.png and hz1.png with the human pairs
   in hz01_0.npy / hz01_1.npy (label k marks pair k in both). hz1 is a colour image, so it is read with
   ``extract``. Reported: the error of each suggested pair against the human pairs' smooth warp (a thin-plate
   spline through the 14 pairs, line art -> reference) and the share within 12 / 24 px; both directions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOLERANCE = 12.0  # px at 512


def score(points, truth_of) -> dict:
    ref = np.array([r for r, _ in points.pairs], np.float64).reshape(-1, 2)
    line = np.array([q for _, q in points.pairs], np.float64).reshape(-1, 2)
    err = np.linalg.norm(truth_of(line + 0.5) - (ref + 0.5), axis=1) if len(ref) else np.zeros(0)
    return {"pairs": int(len(ref)), "correct": int((err <= TOLERANCE).sum()),
            "precision": float((err <= TOLERANCE).mean()) if len(err) else 0.0,
            "median_error_px": float(np.median(err)) if len(err) else float("nan"),
            "errors": [round(float(e), 2) for e in err]}


def timed(fn, runs: int):
    fn()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def warp_benchmark(args) -> dict:
    from mn_core.suggest import suggest_points
    from mn_core.warp_cases import PHOTOS, benchmark_cases

    rows = []
    for case in benchmark_cases(args.characters, PHOTOS if args.photos else ()):
        points, seconds = timed(lambda: suggest_points(case.reference, case.lineart, args.max_pairs), args.runs)
        rows.append({"case": case.name, **score(points, case.truth), "seconds": seconds})
    pairs = sum(r["pairs"] for r in rows)
    return {"rows": rows, "precision": sum(r["correct"] for r in rows) / max(1, pairs),
            "min_pairs": min(r["pairs"] for r in rows), "mean_pairs": pairs / len(rows),
            "median_seconds": statistics.median(r["seconds"] for r in rows),
            "max_seconds": max(r["seconds"] for r in rows)}


def human_pairs(official: Path):
    """The official case's pairs: centroid of label k in each map (512 px maps of the 512 px images)."""
    maps = [np.load(official / "test_cases" / name) for name in ("hz01_0.npy", "hz01_1.npy")]
    labels = sorted(set(np.unique(maps[0])) & set(np.unique(maps[1])) - {0})
    out = []
    for k in labels:
        pts = []
        for m in maps:
            ys, xs = np.nonzero(m == k)
            pts.append((xs.mean() + 0.5, ys.mean() + 0.5))
        out.append(pts)
    return np.array(out)  # (K, 2 images, 2)


def raw_matches(reference, colour_lineart):
    """The suggester's SIFT matches before any geometric check (mn_core.suggest.candidate_matches)."""
    from mn_core import suggest as S

    return S.candidate_matches(reference, colour_lineart, extract=True)


def official_case(args) -> dict:
    from PIL import Image
    from scipy.interpolate import RBFInterpolator

    from mn_core.suggest import suggest_points

    root = args.official
    images = [Image.open(root / "test_cases" / n).convert("RGB") for n in ("hz0.png", "hz1.png")]
    human = human_pairs(root)
    out = {"human_pairs": int(len(human))}
    for a, b in ((0, 1), (1, 0)):  # reference a, line art b (the official script runs both)
        warp = RBFInterpolator(human[:, b], human[:, a], kernel="thin_plate_spline")
        points, seconds = timed(lambda: suggest_points(images[a], images[b], args.max_pairs, extract=True),
                                args.runs)
        s = score(points, warp)
        s["within_24px"] = float(np.mean(np.array(s["errors"]) <= 24)) if s["errors"] else 0.0
        # why: the raw SIFT matches before verification, scored the same way (at 512 px, as these images are)
        ref_xy, line_xy, _ = raw_matches(images[a], images[b])
        raw = np.linalg.norm(warp(line_xy) - ref_xy, axis=1) if len(ref_xy) else np.zeros(0)
        s["raw_matches"], s["raw_within_12px"] = int(len(raw)), int((raw <= TOLERANCE).sum())
        out[f"hz{a}->hz{b}"] = {**s, "seconds": seconds}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--characters", type=int, default=8)
    p.add_argument("--no-photos", dest="photos", action="store_false")
    p.add_argument("--max-pairs", type=int, default=12)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--official", type=Path, help="a checkout of the official MangaNinjia repository")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    results = {"warps": warp_benchmark(args)}
    w = results["warps"]
    print(f"{'case':16s} {'pairs':>5s} {'prec@12':>8s} {'median err':>10s} {'time':>7s}")
    for r in w["rows"]:
        print(f"{r['case']:16s} {r['pairs']:5d} {r['precision']:8.3f} {r['median_error_px']:9.1f}px "
              f"{r['seconds']:6.3f}s")
    print(f"{'all':16s} {w['mean_pairs']:5.1f} {w['precision']:8.3f} {'':>10s} {w['median_seconds']:6.3f}s "
          f"(min pairs {w['min_pairs']}, slowest {w['max_seconds']:.3f} s)")
    if args.official is not None:
        results["official"] = o = official_case(args)
        for key in ("hz0->hz1", "hz1->hz0"):
            r = o[key]
            print(f"official {key}: {r['pairs']} pairs, {r['precision']:.2f} within 12 px and "
                  f"{r['within_24px']:.2f} within 24 px of the {o['human_pairs']} human pairs' warp, median "
                  f"{r['median_error_px']:.1f} px, {r['seconds']:.3f} s; of the {r['raw_matches']} raw SIFT "
                  f"matches before verification, {r['raw_within_12px']} lie within 12 px")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
