"""One benchmark run: encode a reference, colour the frames, collect per-phase numbers; the precision check."""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mn_core import lineart_from_drawing
from mn_core.pipeline import MangaNinja

from inputs import make_frame, make_reference
from measure import Breakdown, Memory, RssSampler, StepMarks
from mn_core.observers import Timings

# The sections the table reports; finer ones (controlnet, unet) are synchronised only with --breakdown.
SECTIONS = ("encode_reference", "colorize_prepare", "step", "decode")


def run_pipeline(mn: MangaNinja, args, memory: Memory, sampler: RssSampler, breakdown: Breakdown | None = None):
    """Encode one reference and colour ``args.batch`` frames; returns (numbers, list of results)."""
    reference_image = make_reference(args.size)
    extract = args.lineart == "extract"
    frames = [make_frame(args.size, i, extract) for i in range(args.batch)]
    loads_before = dict(getattr(mn.modules, "load_seconds", {}))

    watchers = [breakdown] if breakdown is not None else []
    t_begin = memory.sync()
    with memory.phase("encode_reference"):
        t0 = time.perf_counter()
        timings = Timings(SECTIONS)
        ref = mn.encode_reference(reference_image, size=args.size, fit=args.fit, seed=args.seed,
                                  observers=[timings, *watchers])
        encode_wall = time.perf_counter() - t0
    reference_encode_s = timings.last("encode_reference")

    per_frame = []
    results = []
    excluded = 0.0  # profiler bookkeeping, not part of the pipeline's time
    for i, frame in enumerate(frames):
        with memory.phase("lineart"):
            t0 = time.perf_counter()
            if extract:
                lineart = mn.extract_lineart(frame, size=args.size, fit=args.fit, observers=watchers)
            else:
                lineart = lineart_from_drawing(frame, size=args.size, fit=args.fit)
            lineart_s = time.perf_counter() - t0

        step_marks = StepMarks(memory)
        timings = Timings(SECTIONS)
        profiler = start_profiler(mn.device) if args.profile and i == 0 else None
        memory.reset_cuda()
        t0 = memory.sync()
        result = mn.colorize(ref, lineart, steps=args.steps, seed=args.seed + 1 + i,
                             guidance_ref=args.guidance_ref, guidance_point=args.guidance_point,
                             observers=[timings, step_marks, *watchers])
        t1 = memory.sync()
        if profiler is not None:
            t_p = time.perf_counter()
            stop_profiler(profiler, mn.device, args.profile)
            excluded += time.perf_counter() - t_p
        marks, cuda_marks = step_marks.times, step_marks.cuda
        prepare_s, steps_s, decode_s = timings.last("colorize_prepare"), timings.laps["step"], timings.last("decode")
        steps_start = marks[0] - steps_s[0]
        cuda_decode = memory.cuda_peaks()
        memory.record("colorize_prepare", t0, steps_start)
        memory.record("steps", steps_start, marks[-1], cuda_marks[0] if cuda_marks else None)
        memory.record("decode", marks[-1], t1, cuda_decode)
        colorize_wall = t1 - t0
        accounted = prepare_s + sum(steps_s) + decode_s
        step_bounds = [steps_start, *marks]
        per_frame.append({"lineart_s": lineart_s, "prepare_s": prepare_s, "steps_s": list(steps_s),
                          "steps_other_cpu_cores": [sampler.other_cpu(a, b) for a, b in zip(step_bounds, marks)],
                          "decode_s": decode_s, "colorize_wall_s": colorize_wall,
                          "colorize_overhead_s": colorize_wall - accounted})
        results.append(result)
    t_end = memory.sync()
    other_cpu = sampler.other_cpu(t_begin, t_end)

    loads_after = dict(getattr(mn.modules, "load_seconds", {}))
    lazy_loads = {k: v - loads_before.get(k, 0.0) for k, v in loads_after.items()
                  if v - loads_before.get(k, 0.0) > 0}
    all_steps = [s for f in per_frame for s in f["steps_s"]]
    later_steps = [s for f in per_frame for s in f["steps_s"][1:]]
    first = per_frame[0]
    numbers = {
        "reference_encode_s": reference_encode_s,
        "reference_encode_wall_s": encode_wall,
        "lineart_s": first["lineart_s"],
        "prepare_s": first["prepare_s"],
        "once_per_image_s": reference_encode_s + first["lineart_s"] + first["prepare_s"],
        "step_first_s": first["steps_s"][0],
        "step_median_s": statistics.median(all_steps),
        "step_later_median_s": statistics.median(later_steps) if later_steps else None,
        "decode_s": statistics.median(f["decode_s"] for f in per_frame),
        "e2e_s": t_end - t_begin - excluded,
        "e2e_per_frame_s": (t_end - t_begin - excluded) / args.batch,
        "other_cpu_cores_during_run": other_cpu,
        "lazy_load_during_run_s": sum(lazy_loads.values()),
        "lazy_loads_during_run": lazy_loads,
        "frames": per_frame,
    }
    return numbers, results


def start_profiler(device: torch.device):
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = profile(activities=activities, record_shapes=False)
    prof.__enter__()
    return prof


def stop_profiler(prof, device: torch.device, path: Path) -> None:
    """Write the operator table of the first colorize call (sorted by self time) to ``path``."""
    prof.__exit__(None, None, None)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    try:
        table = prof.key_averages().table(sort_by=key, row_limit=40, max_name_column_width=60)
    except (AttributeError, KeyError):  # older torch: the CUDA column had another name
        table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=60)
    path.write_text(table)
    print(f"profile of the first colorize call written to {path}", file=sys.stderr)


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def compare_precisions(models: Path, args, device: torch.device, have: dict[str, Image.Image]) -> dict:
    """PSNR of the fp16 and bf16 outputs (first frame) against the fp32 output, same weights, inputs and seeds."""
    reference_image = make_reference(args.size)
    extract = args.lineart == "extract"
    frame = make_frame(args.size, 0, extract)
    outputs = dict(have)
    seconds = {}
    for precision in ("fp32", "fp16", "bf16"):
        if precision in outputs:
            continue
        print(f"compare-precisions: running {precision} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        mn = MangaNinja.from_folder(models, device=device, precision=precision, lazy=args.lazy,
                                    sequential_rows=args.low_memory, one_phase=args.offload_flag is not False)
        ref = mn.encode_reference(reference_image, size=args.size, fit=args.fit, seed=args.seed)
        lineart = (mn.extract_lineart(frame, size=args.size, fit=args.fit) if extract
                   else lineart_from_drawing(frame, size=args.size, fit=args.fit))
        outputs[precision] = mn.colorize(ref, lineart, steps=args.steps, seed=args.seed + 1,
                                         guidance_ref=args.guidance_ref,
                                         guidance_point=args.guidance_point).processed_image
        seconds[precision] = time.perf_counter() - t0
        del mn, ref, lineart
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    out = {f"psnr_{p}_vs_fp32_db": psnr(outputs[p], outputs["fp32"]) for p in ("fp16", "bf16")}
    out["compare_run_seconds"] = seconds
    return out


