#!/usr/bin/env python
"""MangaNinja inference benchmark (run outside pytest).

Builds full-size SD1.5-shaped networks with random weights (no download; written once into a cache folder) or
loads a given models folder, then measures, for one size / step count / precision / batch:

* model build/load time (``from_folder`` wall time plus lazy loads; the one-off import of diffusers/transformers
  is measured separately, as ``import_s``),
* reference encode, line-art preparation, colorize "prepare" (PointNet, ControlNet conditioning embedding),
  and their sum "once per image",
* per-step time (median; the first step separately: it also projects the reference bank), decode time,
* end-to-end time (reference encode through the last decode, model build excluded),
* peak memory: RSS on the CPU (VmHWM, and a background sampler for the peak within each phase);
  ``torch.cuda.max_memory_allocated`` (reset per phase) on CUDA.

Every phase also records how many cores other processes kept busy meanwhile (``other_cpu_cores``): on a shared
machine CPU timings are only comparable when that is near 0 (``--wait-quiet`` waits for a quiet machine).
``--warmup`` runs the pipeline once before measuring (GPU kernel selection); ``--breakdown`` times the networks
inside the steps; ``--profile`` writes torch.profiler's operator table of the first colorize call.

It prints a table and appends one JSON line (machine, versions, threads, git commit, parameters, numbers) to
``benchmarks/results.jsonl``. ``--compare-precisions`` also prints the PSNR of the fp16 and bf16 outputs against
the fp32 output on the same weights and inputs. (Ratios against the official code come from running it side by
side, not from numbers remembered from another machine; see benchmarks/RESULTS.md.)

The code: measure.py (memory, CUDA peaks, the step-marking and breakdown observers), inputs.py (images,
random weights), run.py (one run, the precision check), report.py (environment, table, JSON).

    python benchmarks/bench.py --tiny                          # seconds; what tests/benchmarks/test_bench.py runs
    python benchmarks/bench.py --threads 2                     # 256 px, 2 steps, fp32, random SD1.5 weights
    python benchmarks/bench.py --threads 2 --low-memory --breakdown
    python benchmarks/bench.py --tiny --compare-precisions     # PSNR of fp16/bf16 vs fp32
    python benchmarks/bench.py --models checkpoints --device cuda --precision fp16 --size 512 --steps 20 --batch 4 \
        --warmup --offload off
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, HERE):  # mn_core, and the benchmark's sibling modules
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import torch  # noqa: E402

from inputs import ensure_random_models, prefault  # noqa: E402
from measure import Breakdown, Memory, RssSampler, _proc_status, current_rss, peak_rss, reset_peak_rss  # noqa: E402
from measure import wait_until_quiet  # noqa: E402
from mn_core import synthetic  # noqa: E402
from mn_core.choices import FIT_MODES, PRECISIONS  # noqa: E402
from mn_core.loading import module_bytes  # noqa: E402
from mn_core.pipeline import MangaNinja  # noqa: E402
from mn_core.placement import resolve_device, resolve_precision  # noqa: E402
from report import append_record, make_record, print_table  # noqa: E402
from run import compare_precisions, run_pipeline  # noqa: E402

DEFAULT_CACHE = HERE / ".cache" / "sd15-random"
DEFAULT_RESULTS = HERE / "results.jsonl"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[-1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    w = ap.add_argument_group("weights")
    w.add_argument("--models", type=Path, metavar="DIR", help="a models folder in the official layout "
                   "(default: random SD1.5-shaped weights in --cache)")
    w.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="where the random full-size weights are written once "
                        f"(default {DEFAULT_CACHE.relative_to(ROOT)})")
    w.add_argument("--weights-seed", type=int, default=0, help="seed of the random weights (default 0)")
    w.add_argument("--random-in-memory", action="store_true",
                   help="full-size networks built directly on the device with their default random init (no files; "
                        "for GPUs, where writing the ~10 GB cache would dominate)")
    w.add_argument("--tiny", action="store_true",
                   help="tiny random networks in a temporary folder, 128 px, 2 steps: runs in seconds")
    r = ap.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    r.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="default fp32 (auto: fp16 on GPUs, fp32 on the CPU)")
    r.add_argument("--size", type=int, help="processing size, a multiple of 64 (default 256; 128 with --tiny)")
    r.add_argument("--steps", type=int, default=2, help="DDIM steps (default 2)")
    r.add_argument("--batch", type=int, default=1,
                   help="line-art frames coloured with the same reference, one colorize call each (default 1)")
    r.add_argument("--lineart", choices=("extract", "drawing"), default="extract",
                   help="extract: run the annotator on a colour frame (default); drawing: use a black-on-white drawing")
    r.add_argument("--fit", choices=FIT_MODES, default="letterbox")
    r.add_argument("--guidance-ref", type=float, default=9.0)
    r.add_argument("--guidance-point", type=float, default=15.0)
    r.add_argument("--seed", type=int, default=0, help="seed of the reference noise; frame i uses seed+1+i")
    m = ap.add_argument_group("modes")
    m.add_argument("--low-memory", action="store_true",
                   help="sequential_rows (what the CLI's --low-memory does)")
    m.add_argument("--lazy", action="store_true", help="load each network when first needed")
    m.add_argument("--compile", action="store_true", help="torch.compile the per-step networks (compiles during "
                   "the first colorize; use with --warmup to time the compiled steps)")
    m.add_argument("--offload", choices=("auto", "on", "off"), default="auto",  # mn_core's one_phase
                   help="keep networks on the CPU between phases (auto: on for GPUs, as from_folder)")
    m.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    m.add_argument("--prefault", action="store_true",
                   help="read every weight during the build (fp32 .pth weights are memory-mapped and otherwise "
                        "read from disk on first use, inside encode/the first step)")
    m.add_argument("--warmup", action="store_true",
                   help="run the pipeline once (1 step, untimed) before measuring: kernel selection, caches")
    m.add_argument("--channels-last", action="store_true",
                   help="force channels_last weights for every network (mn_core's default: all on CUDA, only the "
                        "VAE on the CPU, where the UNets' memory-mapped weights would be copied for no gain)")
    m.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long until other processes leave the CPU idle")
    o = ap.add_argument_group("output")
    o.add_argument("--compare-precisions", action="store_true",
                   help="also print the PSNR of fp16 and bf16 output vs fp32 output (same weights and inputs)")
    o.add_argument("--breakdown", action="store_true",
                   help="time ControlNet / UNet / attention / VAE decoder inside the steps (adds synchronisation)")
    o.add_argument("--rss-trace", type=Path, metavar="FILE.csv", help="write the sampled RSS over time")
    o.add_argument("--profile", type=Path, metavar="FILE.txt",
                   help="run the first colorize call under torch.profiler and write its operator table (slows it)")
    o.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                   help=f"JSON lines file to append to (default {DEFAULT_RESULTS.relative_to(ROOT)})")
    o.add_argument("--no-save", action="store_true", help="do not append to the results file")
    o.add_argument("--note", default="", help="free text stored with the result")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.size is None:
        args.size = 128 if args.tiny else 256
    if args.size < 64 or args.size % 64:
        raise SystemExit(f"--size must be a multiple of 64, got {args.size}")
    if args.steps < 1 or args.batch < 1:
        raise SystemExit("--steps and --batch must be at least 1")
    if sum(map(bool, (args.tiny, args.models, args.random_in_memory))) > 1:
        raise SystemExit("--tiny, --models and --random-in-memory are exclusive")
    if args.random_in_memory and args.compare_precisions:
        raise SystemExit("--compare-precisions needs the same weights in every precision: use --cache or --models")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.offload_flag = {"auto": None, "on": True, "off": False}[args.offload]
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.init()

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    # mn_core imports diffusers/transformers lazily, inside the first build: do it here, outside the timings.
    t0 = time.perf_counter()
    import diffusers  # noqa: F401
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel  # noqa: F401
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection  # noqa: F401
    import_s = time.perf_counter() - t0

    sampler = RssSampler().start()
    t_origin = time.perf_counter()
    memory = Memory(device, sampler)
    tmp = None
    written_s = None
    try:
        if args.random_in_memory:
            models, kind = None, "sd15-random-in-memory"
        elif args.tiny:
            tmp = tempfile.TemporaryDirectory(prefix="mn-bench-tiny-")
            models = synthetic.write_layout(Path(tmp.name), synthetic.TINY, seed=args.weights_seed)
            kind = "tiny-random"
        elif args.models:
            models = args.models
            kind = "folder"
        else:
            models, written_s = ensure_random_models(args.cache, args.weights_seed)
            kind = "sd15-random"

        gc.collect()
        peak_reset = reset_peak_rss()
        rss_before_build = current_rss()
        if args.wait_quiet:
            waited = wait_until_quiet(args.wait_quiet)
            print(f"waited {waited:.0f} s for a quiet machine" if waited is not None else
                  f"the machine stayed busy for {args.wait_quiet:.0f} s; running anyway", file=sys.stderr)
        with memory.phase("build"):
            t0 = time.perf_counter()
            if args.random_in_memory:
                mn = synthetic.random_pipeline(synthetic.SD15, device=device,
                                               dtype=resolve_precision(args.precision, device),
                                               seed=args.weights_seed, channels_last=args.channels_last or None,
                                               one_phase=args.offload_flag is not False and device.type != "cpu",
                                               sequential_rows=args.low_memory, compile=args.compile)
            else:
                mn = MangaNinja.from_folder(models, device=device, precision=args.precision, lazy=args.lazy,
                                            sequential_rows=args.low_memory,
                                            one_phase=args.offload_flag is not False,
                                            compile=args.compile, channels_last=args.channels_last or None)
            if args.prefault:
                prefault(mn)
            build_wall = time.perf_counter() - t0
        build_loads = dict(getattr(mn.modules, "load_seconds", {}))
        weights_bytes = {name: module_bytes(m) for name, m in mn.modules.modules.items()}
        peak_after_build = peak_rss()
        cuda_after_build = memory.phases["build"].get("cuda_max_allocated_bytes")
        precision = {v: k for k, v in {"fp32": torch.float32, "fp16": torch.float16,
                                       "bf16": torch.bfloat16}.items()}[mn.dtype]

        warmup_s = None
        if args.warmup:
            t0 = time.perf_counter()
            warm_args = argparse.Namespace(**{**vars(args), "batch": 1, "steps": 1, "profile": None})
            run_pipeline(mn, warm_args, Memory(device, sampler), sampler)
            warmup_s = time.perf_counter() - t0
            gc.collect()

        breakdown = Breakdown(memory) if args.breakdown else None
        numbers, results = run_pipeline(mn, args, memory, sampler, breakdown)
        if breakdown is not None:
            breakdown.remove()
            numbers["breakdown"] = {"totals": breakdown.totals, "counts": breakdown.counts}
        status = _proc_status()
        numbers.update(
            model_load_s=build_wall + sum(getattr(mn.modules, "load_seconds", {}).values()),
            model_build_wall_s=build_wall,
            import_s=import_s,
            warmup_s=warmup_s,
            model_load_seconds=dict(getattr(mn.modules, "load_seconds", {})),
            model_loads_in_build=build_loads,
            weights_bytes_after_build=weights_bytes,
            rss_before_build_bytes=rss_before_build,
            peak_rss_reset_before_build=peak_reset,
            peak_rss_after_build_bytes=peak_after_build,
            peak_rss_bytes=peak_rss(),
            rss_end_bytes=status.get("VmRSS"),
            rss_end_anon_bytes=status.get("RssAnon"),
            rss_end_file_bytes=status.get("RssFile"),
            phases=memory.phases,
            random_weights_written_s=written_s,
        )
        if device.type == "cuda":
            numbers["cuda_peak_after_build_bytes"] = cuda_after_build
            numbers["cuda_peak_bytes"] = memory.cuda_peak_overall

        if args.compare_precisions:
            have = {precision: results[0].processed_image}
            del mn, results, breakdown
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            numbers["precision"] = compare_precisions(models, args, device, have)
    finally:
        sampler.stop()
        if args.rss_trace:
            sampler.write_csv(args.rss_trace, t_origin)
        if tmp is not None:
            tmp.cleanup()

    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("offload_flag",)}
    params.update(models_kind=kind, precision_resolved=precision, device_resolved=str(device))
    record = make_record(device, params, numbers,
                         load_average_1min_before=load_before[0] if load_before else None)
    print_table(record)
    if not args.no_save:
        append_record(args.results, record)
    return 0



if __name__ == "__main__":
    sys.exit(main())
