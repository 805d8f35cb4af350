"""Finishing speed and memory at print resolution: ``python benchmarks/finish_speed.py`` (default 4000x6000).

A drawn page (mn_core.synthetic_page) and a stand-in for the model's output (its true colours with its lines drawn
in, at 512 px on the long side) are written once; then each mode runs in a fresh process, which loads them, finishes
the page ``--repeat`` times and writes the layers once. Printed: the median finishing time; the peak RSS of the
whole process while finishing (VmHWM, reset once the inputs are loaded) and its RSS before (imports and images);
the PSD and PNG-layer writing times; the colour error against the page's true colours (max channel difference > 24
on pixels clear of lines), next to the plain bicubic resize the pack used before. Numbers are for this machine,
this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from measure import current_rss, peak_rss, reset_peak_rss  # noqa: E402

MODES = {"smooth": {}, "flat": {"flat": True}, "flat+shading+prior": {"flat": True, "shade": True, "prior": True}}


def make_inputs(folder: Path, width: int, height: int) -> None:
    import numpy as np
    from PIL import Image

    from mn_core.synthetic_page import draw_page

    page = draw_page(width, height, seed=0)
    page.lines.save(folder / "lines.png")
    page.tones.save(folder / "tones.png")
    page.colour.save(folder / "truth.png")
    g = np.asarray(page.lines).astype(np.float32)[..., None] / 255
    full = Image.fromarray((np.asarray(page.colour) * g).astype(np.uint8))
    scale = 512 / max(width, height)
    full.resize((round(width * scale), round(height * scale)), Image.BICUBIC).save(folder / "colour.png")
    page.colour.resize((max(1, width // 40), max(1, height // 40))).save(folder / "prior.png")


def worker(folder: Path, mode: str, repeat: int) -> dict:
    import numpy as np
    from PIL import Image

    from mn_core import finish, layers

    Image.MAX_IMAGE_PIXELS = None  # our own page
    opts = MODES[mode]
    images = {}
    for name in ("lines", "colour", "tones", "prior", "truth"):
        images[name] = Image.open(folder / f"{name}.png")
        images[name].load()
    truth = images.pop("truth")
    before = current_rss() / 2**20  # the process with its imports (torch) and the images loaded
    reset_peak_rss()
    kwargs = {"flat": opts.get("flat", False), "keep_shading": images["tones"] if opts.get("shade") else None,
              "prior": images["prior"] if opts.get("prior") else None}
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = finish.finish_page(images["colour"], images["lines"], **kwargs)
        times.append(time.perf_counter() - t0)
    peak = peak_rss() / 2**20
    t0 = time.perf_counter()
    layers.write_psd(done, folder / f"{mode}.psd")
    psd_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    layers.write_png_layers(done, folder / f"{mode}_layers", "page")
    png_s = time.perf_counter() - t0
    clear = np.asarray(images["lines"].convert("L")) >= finish.SOFT_LEVEL
    true = np.asarray(truth.convert("RGB")).astype(np.int16)

    def bad(image) -> float:
        err = np.abs(np.asarray(image.convert("RGB")).astype(np.int16) - true).max(-1)[clear]
        return float((err > 24).mean())

    out = {"mode": mode, "size": list(done.image.size), "finish_s": statistics.median(times), "runs_s": times,
           "rss_before_mb": before, "peak_rss_mb": peak, "psd_s": psd_s, "png_layers_s": png_s,
           "psd_mb": (folder / f"{mode}.psd").stat().st_size / 1e6,
           "bad_pixels": None if opts.get("shade") or opts.get("prior") else bad(done.colour)}  # colours changed
    if mode == "smooth":
        out["bad_pixels_resized"] = bad(images["colour"].resize(done.image.size, Image.BICUBIC))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=4000)
    p.add_argument("--height", type=int, default=6000)
    p.add_argument("--repeat", type=int, default=3, help="finishing runs per mode (median reported)")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", nargs=2, metavar=("FOLDER", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(Path(args.worker[0]), args.worker[1], args.repeat)))
        return 0
    with tempfile.TemporaryDirectory(prefix="mn-finish-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_inputs(folder, args.width, args.height)
        print(f"page {args.width}x{args.height} drawn in {time.perf_counter() - t0:.1f} s (not timed below)")
        results = []
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--worker", str(folder), mode, "--repeat",
                                  str(args.repeat)], capture_output=True, text=True, check=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'mode':<20} {'finish s':>9} {'peak RSS MB':>12} {'RSS before':>11} {'PSD s':>6} {'PSD MB':>7} "
          f"{'PNG s':>6} {'bad px':>8}")
    for r in results:
        print(f"{r['mode']:<20} {r['finish_s']:>9.2f} {r['peak_rss_mb']:>12.0f} {r['rss_before_mb']:>11.0f} "
              f"{r['psd_s']:>6.2f} {r['psd_mb']:>7.1f} {r['png_layers_s']:>6.2f} "
              + (f"{100 * r['bad_pixels']:>7.3f}%" if r["bad_pixels"] is not None else f"{'-':>8}"))
    smooth = results[0]
    print(f"bad px = clear pixels more than 24 levels off the true colour; the plain bicubic resize: "
          f"{100 * smooth['bad_pixels_resized']:.3f}%")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
