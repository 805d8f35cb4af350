#!/usr/bin/env python
"""Frames per second when independent frames share network calls (mn_core.sequence, ``batch``).

Colours the same F frames with one reference, ``--frames-per-call`` 1 and then B (interleaved over ``--repeats``
rounds, warm: one untimed warm-up run first), and prints frames/s, the speed-up and the peak memory of each (RSS
sampled in the background on the CPU; torch.cuda.max_memory_allocated on CUDA), plus the largest difference of
the batched frames from the frame-by-frame ones. Appends one JSON line to benchmarks/results.jsonl.

    python benchmarks/frames.py --tiny                      # seconds
    python benchmarks/frames.py --random-in-memory --size 256 --steps 2 --frames 4 --frames-per-call 4 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inputs import make_frame, make_reference  # noqa: E402
from measure import RssSampler  # noqa: E402
from mn_core import MangaNinja, lineart_from_drawing, synthetic  # noqa: E402
from mn_core.placement import resolve_device, resolve_precision  # noqa: E402
from mn_core.sequence import colorize_sequence  # noqa: E402
from report import append_record, device_name, make_record  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    w = ap.add_mutually_exclusive_group()
    w.add_argument("--tiny", action="store_true", help="tiny random networks (128 px): runs in seconds")
    w.add_argument("--random-in-memory", action="store_true", help="full-size SD1.5-shaped random networks")
    w.add_argument("--models", type=Path, help="an official-layout models folder")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--size", type=int, help="processing size (default 256; 128 with --tiny)")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--frames-per-call", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds of (batch 1, batch B)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--results", type=Path, default=HERE / "results.jsonl")
    ap.add_argument("--no-save", action="store_true")
    return ap


def timed_run(mn, ref, frames, args, batch, sampler, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    results = list(colorize_sequence(mn, ref, frames, steps=args.steps, seed=0, batch=batch))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t1 = time.perf_counter()
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else sampler.peak(t0, t1)
    return t1 - t0, peak, results


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    size = args.size or (128 if args.tiny else 256)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_precision(args.precision, device)
    tmp = None
    if args.random_in_memory:
        mn = synthetic.random_pipeline(synthetic.SD15, device=device, dtype=dtype)
        kind = "sd15-random-in-memory"
    else:
        if args.models is None:
            tmp = tempfile.TemporaryDirectory(prefix="mn-frames-")
            models, kind = synthetic.write_layout(Path(tmp.name), synthetic.TINY), "tiny-random"
        else:
            models, kind = args.models, "folder"
        mn = MangaNinja.from_folder(models, device=device, precision=args.precision, one_phase=False)
    sampler = RssSampler().start()
    try:
        ref = mn.encode_reference(make_reference(size), size=size, seed=0)
        frames = [lineart_from_drawing(make_frame(size, i, False), size=size) for i in range(args.frames)]
        timed_run(mn, ref, frames[:args.frames_per_call], args, args.frames_per_call, sampler, device)  # warm-up
        runs: dict[int, list[tuple[float, int]]] = {1: [], args.frames_per_call: []}
        outputs = {}
        for _ in range(args.repeats):
            for batch in runs:
                seconds, peak, results = timed_run(mn, ref, frames, args, batch, sampler, device)
                runs[batch].append((seconds, peak))
                outputs[batch] = results
    finally:
        sampler.stop()
        if tmp is not None:
            tmp.cleanup()
    diff = max(float(np.abs(np.asarray(a.processed_image, np.int16) - np.asarray(b.processed_image, np.int16)).max())
               for a, b in zip(outputs[1], outputs[args.frames_per_call]))
    latent_diff = max(float((a.latents - b.latents).abs().max())
                      for a, b in zip(outputs[1], outputs[args.frames_per_call]))
    numbers = {f"batch_{b}": {"seconds": [s for s, _ in v], "frames_per_s": args.frames / statistics.median(
        [s for s, _ in v]), "peak_memory_bytes": max(p for _, p in v)} for b, v in runs.items()}
    speedup = numbers[f"batch_{args.frames_per_call}"]["frames_per_s"] / numbers["batch_1"]["frames_per_s"]
    mem = "peak CUDA allocated" if device.type == "cuda" else "peak RSS"
    print(f"\nframes/s: {device_name(device)} ({device.type}), {torch.get_num_threads()} threads, {dtype}, {size} px, "
          f"{args.steps} steps, {args.frames} frames, {kind} weights, median of {args.repeats} interleaved rounds")
    print(f"{'frames per call':>16}{'frames/s':>11}{mem + ' (GB)':>26}")
    for b, v in runs.items():
        n = numbers[f"batch_{b}"]
        print(f"{b:>16}{n['frames_per_s']:>11.3f}{n['peak_memory_bytes'] / 1e9:>26.2f}")
    print(f"speed-up {speedup:.2f}x; batched vs frame by frame: latents max |diff| {latent_diff:.2e}, "
          f"8-bit images max diff {diff:.0f} level(s)")
    params = {**{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "size": size,
              "models_kind": kind}
    record = make_record(device, params, {**numbers, "speedup": speedup, "max_latent_diff": latent_diff,
                                          "max_image_diff": diff}, benchmark="frames")
    if not args.no_save:
        append_record(args.results, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
