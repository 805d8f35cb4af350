"""How long PSNR + SSIM take over many image pairs on this machine, through ``python -m mn_core evaluate``.

    python benchmarks/metrics_speed.py [--pairs 1000] [--size 512] [--workers N] [--keep DIR]

Writes ``--pairs`` target/prediction PNG pairs (smooth colour fields with lines and noise, the prediction a
perturbed copy) to a temporary folder, then times the evaluate command end to end (a fresh process: imports,
reading and decoding every PNG, the metrics, report.json + report.csv; no HTML) and, in this process, the scoring
alone. Prints the numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(folder: Path, count: int, size: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (folder / "target").mkdir(parents=True, exist_ok=True)
    (folder / "pred").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for k in range(count):
        a, b, c = rng.random(3) * 6
        base = np.stack([np.sin(a * xx + b * yy), np.cos(b * xx - c * yy), np.sin(c * (xx + yy))], -1)
        target = ((base * 0.5 + 0.5) * 255).astype(np.uint8)
        target[rng.integers(0, size, 20)] = 20  # some dark lines
        pred = np.clip(target.astype(np.int16) + rng.integers(-12, 13, target.shape), 0, 255).astype(np.uint8)
        Image.fromarray(target).save(folder / "target" / f"{k:05d}.png", compress_level=1)
        Image.fromarray(pred).save(folder / "pred" / f"{k:05d}.png", compress_level=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--keep", type=Path, help="use (and keep) this folder for the images")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="mn-metrics-speed-"))
    if not (folder / "pred").is_dir() or len(list((folder / "pred").iterdir())) != args.pairs:
        t = time.perf_counter()
        make_pairs(folder, args.pairs, args.size)
        print(f"wrote {args.pairs} pairs of {args.size}x{args.size} PNGs in {time.perf_counter() - t:.1f} s")

    cmd = [sys.executable, "-m", "mn_core", "evaluate", "--pred", str(folder / "pred"), "--target",
           str(folder / "target"), "--metrics", "psnr,ssim", "--no-html", "--out", str(folder / "out" / "r.json")]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end_to_end = time.perf_counter() - t
    mean = json.loads((folder / "out" / "r.json").read_text())["mean"]

    sys.path.insert(0, str(ROOT))
    from mn_core import evaluate as E

    items = E.pair_folders(folder / "pred", folder / "target")
    t = time.perf_counter()
    E.evaluate_items(items, ("psnr", "ssim"), workers=args.workers)
    in_process = time.perf_counter() - t
    print(f"machine: {os.cpu_count()} CPUs; {args.pairs} pairs of {args.size}x{args.size}, PSNR + SSIM")
    print(f"evaluate command end to end: {end_to_end:.1f} s ({args.pairs / end_to_end:.1f} pairs/s)")
    print(f"scoring in process (read + decode + metrics): {in_process:.1f} s")
    print(f"mean psnr {mean['psnr']:.3f} ssim {mean['ssim']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
