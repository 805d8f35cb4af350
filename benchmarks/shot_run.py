"""A shot coloured unattended: ``python benchmarks/shot_run.py`` (1,000 frames on tiny random weights, CPU).

Three runs of ``python -m mn_core sequence`` (the command a studio types), each a fresh process:

1. the whole shot, uninterrupted: throughput from frame 10 to the last frame against the single-image rate (one frame
   coloured by :func:`mn_core.sequence.colorize_frame` in this process, warm, same settings, timed before and after
   the shot: the median of both), and the runner's RSS
   (sampled every 0.5 s; its highest sample over the first tenth after frame 10, over the last tenth and per
   tenth: RSS swings within a frame, so like is compared with like), and its peak (the contact sheet and MP4 are
   made after the last frame, one frame at a time);
2. the same shot in another folder, SIGKILLed at half way and started again at once: the time from the kill to
   the first newly written frame, and that the finished folder equals run 1's byte for byte;
3. with ``--ray local`` (when Ray is installed and ``--ray`` is given): the same figures on Ray actors.

``--models DIR --size 512 --steps 20 --device cuda`` runs it at full size on a GPU.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def make_frames(folder: Path, count: int) -> None:
    from PIL import Image, ImageChops, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    line = Image.new("L", (128, 128), 255)
    d = ImageDraw.Draw(line)
    d.ellipse((20, 10, 90, 80), outline=0, width=3)
    d.rectangle((35, 78, 75, 124), outline=0, width=3)
    for k in range(count):
        ImageChops.offset(line, (k % 40) - 20, 0).save(folder / f"f{k:05d}.png")


def make_reference(path: Path) -> None:
    from PIL import Image, ImageDraw

    ref = Image.new("RGB", (128, 128), "white")
    d = ImageDraw.Draw(ref)
    d.ellipse((20, 10, 90, 80), fill=(230, 90, 60), outline=(20, 20, 20), width=3)
    d.rectangle((35, 78, 75, 124), fill=(40, 80, 200), outline=(20, 20, 20), width=3)
    ref.save(path)


def finished(out: Path) -> int:
    try:
        return len(json.loads((out / "manifest.json").read_text())["frames"])
    except (OSError, ValueError, KeyError):
        return 0


class SingleImage:
    """One frame, warm, in this process: the rate the runner is compared with. Timed before and after the
    uninterrupted run (this machine's speed drifts), the median of both blocks is the reference."""

    def __init__(self, args, frames: Path, ref: Path):
        from PIL import Image

        from mn_core.pipeline import MangaNinja

        self.args = args
        self.mn = MangaNinja.from_folder(args.models, device=args.device, precision=args.precision)
        self.encoded = self.mn.encode_references([Image.open(ref)], size=args.size, seed=0)
        self.art = Image.open(frames / "f00001.png")
        self.times: list[float] = []
        self.time(1)  # warm

    def time(self, runs: int) -> list[float]:
        from mn_core.sequence import colorize_frame

        out = []
        for _ in range(runs):
            t0 = time.perf_counter()
            colorize_frame(self.mn, self.encoded, self.art, 1, steps=self.args.steps)
            out.append(time.perf_counter() - t0)
        return out


def watch(cmd: list[str], out: Path, total: int, kill_at: int | None = None) -> dict:
    """Run ``cmd``; sample its RSS and the finished count every 0.5 s; optionally SIGKILL it at ``kill_at``."""
    import psutil

    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: a full pipe would stop the runner (its progress bar)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log, text=True)
    ps = psutil.Process(proc.pid)
    samples = []  # (time, finished, rss)
    t10 = None
    killed_at = None
    while proc.poll() is None:
        try:
            rss = ps.memory_info().rss
        except psutil.Error:
            break
        n = finished(out)
        now = time.perf_counter()
        samples.append((now, n, rss))
        if t10 is None and n >= 10:
            t10 = (now, n)
        if kill_at is not None and n >= kill_at:
            proc.send_signal(signal.SIGKILL)
            killed_at = now
            break
        time.sleep(0.5)
    proc.wait()
    end = time.perf_counter()
    log.seek(0)
    err = log.read()
    log.close()
    if kill_at is None and proc.returncode != 0:
        raise SystemExit(f"run failed: {err[-2000:]}")
    return {"samples": samples, "t10": t10, "end": end, "killed_at": killed_at, "returncode": proc.returncode}


def run_figures(run: dict, total: int, steps: int, single_s: float) -> dict:
    (t10, n10) = run["t10"]
    t_last = next((t for t, n, _r in run["samples"] if n >= total), run["end"])  # the last frame written
    rate = (total - n10) / (t_last - t10)
    rss = [(n, r) for _t, n, r in run["samples"]]
    # RSS swings within a frame (activations come and go), so like is compared with like: the highest sample
    # over the first tenth after frame 10 and over the last tenth of the frames (then the contact sheet / MP4
    # are made: reported apart), and per tenth of the shot
    tenth = max(1, total // 10)

    def peak(lo, hi):  # a short shot may have no sample in a tenth: then the first one after it
        got = [r for n, r in rss if lo <= n < hi] or [r for n, r in rss if n >= lo][:1] or [rss[-1][1]]
        return max(got) / 2**20

    first, last = peak(10, 10 + tenth), peak(total - tenth, total)
    outputs = [r for n, r in rss if n >= total] or [0]
    return {"frames_per_s": rate, "steps_per_s": rate * steps, "single_steps_per_s": steps / single_s,
            "ratio": rate * single_s, "rss_first_tenth_mb": first, "rss_last_tenth_mb": last,
            "rss_growth_mb": last - first, "rss_peak_mb": max(r for _n, r in rss) / 2**20,
            "rss_outputs_mb": max(outputs) / 2**20,
            "rss_by_tenth_mb": [round(peak(k * tenth, (k + 1) * tenth), 1) for k in range(10)]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--models", type=Path, help="a model folder (default: tiny random weights)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--single-runs", type=int, default=10, help="single-image runs before and after the shot")
    p.add_argument("--ray", action="store_true", help="also run on a local Ray instance (2 workers)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mn-shot-") as tmp:
        tmp = Path(tmp)
        if args.models is None:
            from mn_core import synthetic

            args.models = synthetic.write_layout(tmp / "models", synthetic.TINY, seed=0)
        make_frames(tmp / "frames", args.frames)
        make_reference(tmp / "ref.png")
        single = SingleImage(args, tmp / "frames", tmp / "ref.png")
        before = single.time(args.single_runs)

        def cmd(out, *extra):
            return [sys.executable, "-m", "mn_core", "sequence", "--models", str(args.models), "--reference",
                    str(tmp / "ref.png"), "--frames", str(tmp / "frames"), "--out", str(out), "--steps",
                    str(args.steps), "--size", str(args.size), "--device", args.device, "--precision",
                    args.precision, *extra]

        whole = watch(cmd(tmp / "whole"), tmp / "whole", args.frames)
        after = single.time(args.single_runs)
        single_s = statistics.median(before + after)
        results = {"frames": args.frames, "steps": args.steps, "size": args.size, "single_frame_s": single_s,
                   "single_before_s": statistics.median(before), "single_after_s": statistics.median(after)}
        results["uninterrupted"] = run_figures(whole, args.frames, args.steps, single_s)
        killed = watch(cmd(tmp / "killed"), tmp / "killed", args.frames, kill_at=args.frames // 2)
        resumed = watch(cmd(tmp / "killed"), tmp / "killed", args.frames)
        kill_n = killed["samples"][-1][1]
        first_new = next(t for t, n, _r in resumed["samples"] if n > kill_n)
        same = all((tmp / "whole" / f.name).read_bytes() == f.read_bytes() for f in (tmp / "killed").iterdir())
        results["kill"] = {"killed_after_frames": kill_n, "kill_to_first_new_frame_s": first_new - killed["killed_at"],
                           "identical_to_uninterrupted": same and len(list((tmp / "killed").iterdir()))
                           == len(list((tmp / "whole").iterdir()))}
        if args.ray:
            ray_run = watch(cmd(tmp / "ray", "--ray", "local", "--ray-workers", "2"), tmp / "ray", args.frames)
            results["ray"] = run_figures(ray_run, args.frames, args.steps, single_s)
    u, k = results["uninterrupted"], results["kill"]
    print(f"{args.frames} frames, {args.size} px, {args.steps} steps, {args.device} {args.precision}")
    print(f"single image (warm, in process): {single_s:.3f} s per frame = {u['single_steps_per_s']:.2f} steps/s "
          f"(median of {args.single_runs} runs before the shot, {results['single_before_s']:.3f} s, and "
          f"{args.single_runs} after it, {results['single_after_s']:.3f} s)")
    for name in ("uninterrupted", "ray"):
        if name in results:
            r = results[name]
            print(f"{name:>13}: {r['frames_per_s']:.2f} frames/s = {r['steps_per_s']:.2f} steps/s, "
                  f"{r['ratio']:.2f}x the single-image rate; highest RSS {r['rss_first_tenth_mb']:.0f} MB over "
                  f"frames 10-{10 + args.frames // 10}, {r['rss_last_tenth_mb']:.0f} MB over the last tenth "
                  f"(growth {r['rss_growth_mb']:+.0f} MB); peak {r['rss_peak_mb']:.0f} MB, "
                  f"{r['rss_outputs_mb']:.0f} MB making the contact sheet")
            print(f"{'':>13}  highest RSS per tenth of the shot (MB): {r['rss_by_tenth_mb']}")
    print(f"SIGKILL after {k['killed_after_frames']} frames -> first new frame {k['kill_to_first_new_frame_s']:.1f} s "
          f"later; finished folder identical to the uninterrupted run: {k['identical_to_uninterrupted']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
