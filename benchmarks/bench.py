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
the fp32 output on the same weights and inputs; ``--anchor`` prints the official code's numbers beside ours.

    python benchmarks/bench.py --tiny                          # seconds; what tests/benchmarks/test_bench.py runs
    python benchmarks/bench.py --threads 2                     # 256 px, 2 steps, fp32, random SD1.5 weights
    python benchmarks/bench.py --threads 2 --low-memory --anchor
    python benchmarks/bench.py --tiny --compare-precisions     # PSNR of fp16/bf16 vs fp32
    python benchmarks/bench.py --models checkpoints --device cuda --precision fp16 --size 512 --steps 20 --batch 4 \
        --warmup --offload off
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from mn_core import synthetic  # noqa: E402
from mn_core.loading import module_bytes  # noqa: E402
from mn_core.pipeline import MangaNinja, resolve_device  # noqa: E402

DEFAULT_CACHE = HERE / ".cache" / "sd15-random"
DEFAULT_RESULTS = HERE / "results.jsonl"
MARKER = ".complete.json"
GB = 1e9

# The official code on 2 CPU cores, fp32 (2 steps). None: not measured.
ANCHORS = {
    256: {"e2e_s": 41.8, "once_per_image_s": 14.4, "step_median_s": 10.6, "decode_s": 6.3,
          "peak_rss_bytes": 12.9e9, "peak_rss_after_build_bytes": 12.4e9},
    512: {"e2e_s": 173.0, "once_per_image_s": None, "step_median_s": 48.6, "decode_s": None,
          "peak_rss_bytes": 14.1e9, "peak_rss_after_build_bytes": None},
}
ANCHOR_STEPS = 2
ANCHOR_THREADS = 2


# --------------------------------------------------------------------------------------------------------------
# Memory


def _proc_status() -> dict[str, int]:
    """Memory fields of /proc/self/status in bytes (Linux); empty elsewhere."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                parts = rest.split()
                if len(parts) == 2 and parts[1] == "kB":
                    out[key] = int(parts[0]) * 1024
    except OSError:
        pass
    return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs), so that what happened before
    (writing random weights, imports) does not count as the benchmark's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        try:
            import psutil

            return psutil.Process().memory_info().rss
        except Exception:  # noqa: BLE001
            return 0


def peak_rss() -> int:
    """Peak RSS of the process so far (VmHWM; ru_maxrss where /proc is absent)."""
    hwm = _proc_status().get("VmHWM")
    if hwm:
        return hwm
    try:
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    except Exception:  # noqa: BLE001
        return 0


def _system_busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


class RssSampler:
    """Samples the process RSS (and the CPU time used by other processes) in a background thread.

    :meth:`peak` gives the maximum RSS between two times; :meth:`other_cpu` how many cores other processes kept
    busy on average meanwhile (a busy machine skews CPU timings).
    """

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.cpu: list[tuple[float, float, float]] = []  # (time, system busy s, own process CPU s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            now = time.perf_counter()
            self.samples.append((now, current_rss()))
            if n % 10 == 0:
                self._cpu_sample()
            n += 1
            self._stop.wait(self.interval)

    def _cpu_sample(self):
        busy = _system_busy_seconds()
        if busy is not None:
            self.cpu.append((time.perf_counter(), busy, time.process_time()))

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._cpu_sample()

    def peak(self, t0: float, t1: float) -> int:
        values = [rss for t, rss in self.samples if t0 <= t <= t1]
        return max(values, default=current_rss())

    def other_cpu(self, t0: float, t1: float) -> float | None:
        """Average number of cores other processes kept busy between t0 and t1 (about 0.1 s resolution)."""
        inside = [c for c in self.cpu if t0 - 0.06 <= c[0] <= t1 + 0.06]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.05:
            return None
        (ta, ba, oa), (tb, bb, ob) = inside[0], inside[-1]
        return max(0.0, ((bb - ba) - (ob - oa)) / (tb - ta))

    def write_csv(self, path: Path, t_origin: float) -> None:
        with open(path, "w") as f:
            f.write("seconds,rss_bytes\n")
            for t, rss in self.samples:
                f.write(f"{t - t_origin:.3f},{rss}\n")


class Memory:
    """Per-phase peaks: RSS (always) and, on CUDA, max_memory_allocated / max_memory_reserved (reset per phase)."""

    def __init__(self, device: torch.device, sampler: RssSampler):
        self.device = device
        self.sampler = sampler
        self.cuda = device.type == "cuda"
        self.phases: dict[str, dict] = {}
        self.cuda_peak_overall = 0

    def sync(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        elif self.device.type == "mps":
            torch.mps.synchronize()
        return time.perf_counter()

    def reset_cuda(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def cuda_peaks(self) -> dict:
        if not self.cuda:
            return {}
        alloc = torch.cuda.max_memory_allocated(self.device)
        self.cuda_peak_overall = max(self.cuda_peak_overall, alloc)
        return {"cuda_max_allocated_bytes": alloc,
                "cuda_max_reserved_bytes": torch.cuda.max_memory_reserved(self.device)}

    def record(self, name: str, t0: float, t1: float, cuda: dict | None = None) -> None:
        entry = {"peak_rss_bytes": self.sampler.peak(t0, t1), "seconds": t1 - t0,
                 "other_cpu_cores": self.sampler.other_cpu(t0, t1)}
        entry.update(cuda or {})
        if name in self.phases:  # the same phase for several frames: keep the worst
            old = self.phases[name]
            entry = {k: (old["seconds"] + v if k == "seconds" else
                         v if old.get(k) is None else old[k] if v is None else max(old[k], v))
                     for k, v in entry.items()}
        self.phases[name] = entry

    @contextlib.contextmanager
    def phase(self, name: str):
        self.reset_cuda()
        t0 = self.sync()
        yield
        t1 = self.sync()
        self.record(name, t0, t1, self.cuda_peaks())


def wait_until_quiet(limit: float, threshold: float = 0.15, quiet_for: float = 6.0) -> float | None:
    """Wait (up to ``limit`` seconds) until other processes use under ``threshold`` cores for ``quiet_for``
    seconds; returns the seconds waited, or None if the machine stayed busy."""
    t0 = time.perf_counter()
    quiet_since = None
    while time.perf_counter() - t0 < limit:
        a, ta = _system_busy_seconds(), time.perf_counter()
        if a is None:
            return 0.0
        time.sleep(1.0)
        busy = (_system_busy_seconds() - a) / (time.perf_counter() - ta)
        now = time.perf_counter()
        if busy < threshold:
            quiet_since = quiet_since or now - 1.0
            if now - quiet_since >= quiet_for:
                return now - t0
        else:
            quiet_since = None
    return None


def prefault(mn: MangaNinja) -> int:
    """Read every weight once, so that memory-mapped (lazily read) weights are resident; returns bytes touched."""
    total = 0
    with torch.inference_mode():
        for module in mn.modules.modules.values():
            for t in module.state_dict().values():
                if t.device.type == "cpu" and t.numel():
                    t.reshape(-1)[:: max(1, 4096 // t.element_size())].sum()  # one element per page
                total += t.numel() * t.element_size()
    return total


# --------------------------------------------------------------------------------------------------------------
# Inputs


def make_reference(size: int) -> Image.Image:
    """A coloured 'character' on white (deterministic), slightly non-square."""
    w, h = size + size // 4, size
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    s = size / 128
    d.ellipse((40 * s, 8 * s, 112 * s, 76 * s), fill=(236, 196, 160), outline=(20, 20, 20), width=max(1, int(2 * s)))
    d.pieslice((36 * s, 2 * s, 116 * s, 60 * s), 180, 360, fill=(60, 40, 120), outline=(20, 20, 20))
    d.rectangle((52 * s, 74 * s, 100 * s, 124 * s), fill=(200, 40, 50), outline=(20, 20, 20), width=max(1, int(2 * s)))
    d.ellipse((60 * s, 34 * s, 68 * s, 42 * s), fill=(30, 120, 200))
    d.ellipse((84 * s, 34 * s, 92 * s, 42 * s), fill=(30, 120, 200))
    return img


def make_frame(size: int, index: int, extract: bool) -> Image.Image:
    """Frame ``index`` of the line-art batch: the character shifted a little; black lines on white (or a colour
    image with outlines, for the annotator)."""
    w, h = size, size + size // 8
    s = size / 128
    dx = (index % 5 - 2) * 3 * s
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    width = max(1, int(1.5 * s))
    fill = (lambda c: c) if extract else (lambda c: None)
    d.ellipse((30 * s + dx, 12 * s, 98 * s + dx, 80 * s), fill=fill((230, 190, 150)), outline=(0, 0, 0), width=width)
    d.arc((26 * s + dx, 6 * s, 102 * s + dx, 62 * s), 180, 360, fill=(0, 0, 0), width=width)
    d.rectangle((40 * s + dx, 78 * s, 88 * s + dx, 136 * s), fill=fill((180, 60, 60)), outline=(0, 0, 0), width=width)
    d.line((44 * s + dx, 100 * s, 84 * s + dx, 100 * s), fill=(0, 0, 0), width=width)
    return img if extract else img.convert("L")


# --------------------------------------------------------------------------------------------------------------
# Weights


def ensure_random_models(cache: Path, seed: int) -> tuple[Path, float | None]:
    """The random SD1.5-shaped folder in ``cache``, written first if absent; returns (folder, seconds written)."""
    marker = cache / MARKER
    want = {"preset": "SD15", "seed": seed}
    if marker.is_file():
        try:
            have = json.loads(marker.read_text())
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want:
            return cache, None
        print(f"{cache} holds other random weights ({have}); rewriting", file=sys.stderr)
        marker.unlink()
    print(f"writing random SD1.5-shaped weights (seed {seed}, ~15 GB) to {cache}; this takes a few minutes, "
          "once", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    # In a child process, so that its memory does not count towards (or linger in) this process's RSS.
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from mn_core import synthetic; "
            "synthetic.write_layout(sys.argv[2], synthetic.SD15, seed=int(sys.argv[3]))")
    subprocess.run([sys.executable, "-c", code, str(ROOT), str(cache), str(seed)], check=True)
    seconds = time.perf_counter() - t0
    marker.write_text(json.dumps({**want, "seconds": round(seconds, 1)}))
    return cache, seconds


# --------------------------------------------------------------------------------------------------------------
# Optional instrumentation: where a step's time goes


class Breakdown:
    """Synchronised timers around the networks: ControlNet residuals, the denoising UNet and, inside it, the
    reference self-attention (attn1), cross-attention (attn2) and feed-forward layers; PointNet, the ControlNet
    conditioning embedding, CLIP, the VAE encoder/decoder and the annotator. Adds a little overhead."""

    # (module name, attribute path or "", key)
    WHOLE = (("clip_vision", "", "clip_vision"), ("vae", "encoder", "vae_encoder"), ("vae", "decoder", "vae_decoder"),
             ("point_net", "", "point_net"), ("controlnet", "controlnet_cond_embedding", "controlnet_cond_embedding"),
             ("annotator", "", "annotator"))

    def __init__(self, mn: MangaNinja, memory: Memory):
        self.mn = mn
        self.memory = memory
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._handles = []
        self._undo = []
        self._hooked: set[int] = set()

    def _add(self, key, seconds):
        self.totals[key] = self.totals.get(key, 0.0) + seconds
        self.counts[key] = self.counts.get(key, 0) + 1

    def _hook(self, module, key):
        if id(module) in self._hooked:
            return
        self._hooked.add(id(module))
        start = []

        def pre(_m, _args):
            start.append(self.memory.sync())

        def post(_m, _args, _out):
            self._add(key, self.memory.sync() - start.pop())

        self._handles.append(module.register_forward_pre_hook(pre))
        self._handles.append(module.register_forward_hook(post))

    def install(self) -> None:
        from mn_core import denoise

        original = denoise.controlnet_residuals

        def timed(*args, **kwargs):
            t0 = self.memory.sync()
            out = original(*args, **kwargs)
            self._add("controlnet", self.memory.sync() - t0)
            return out

        denoise.controlnet_residuals = timed
        self._undo.append(lambda: setattr(denoise, "controlnet_residuals", original))
        owner = self.mn.modules
        prepare = owner.prepare

        def prepare_and_hook(*args, **kwargs):  # lazily loaded networks get hooked as they appear
            prepare(*args, **kwargs)
            self.attach_modules()

        owner.prepare = prepare_and_hook
        self._undo.append(lambda: owner.__dict__.pop("prepare", None))
        self.attach_modules()

    def attach_modules(self) -> None:
        from mn_core.attention import transformer_blocks

        mods = self.mn.modules.modules
        for name, attr, key in self.WHOLE:
            m = mods.get(name)
            if m is not None:
                self._hook(m.get_submodule(attr) if attr else m, key)
        unet = mods.get("denoising_unet")
        if unet is not None:
            self._hook(unet, "unet")
            for block in transformer_blocks(unet).values():
                self._hook(block.attn1, "unet_attn1_reference")
                if block.attn2 is not None:
                    self._hook(block.attn2, "unet_attn2_cross")
                self._hook(block.ff, "unet_feed_forward")
        # The reference UNet stops its forward pass by an exception (no forward hook fires): time it from outside.
        ref = mods.get("reference_unet")
        if ref is not None and id(ref) not in self._hooked:
            self._hooked.add(id(ref))
            original = ref.forward

            def forward(*args, **kwargs):
                t0 = self.memory.sync()
                try:
                    return original(*args, **kwargs)
                finally:
                    self._add("reference_unet", self.memory.sync() - t0)

            ref.forward = forward
            self._undo.append(lambda ref=ref: ref.__dict__.pop("forward", None))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for undo in self._undo:
            undo()


# --------------------------------------------------------------------------------------------------------------
# One benchmark run


def run_pipeline(mn: MangaNinja, args, memory: Memory, sampler: RssSampler, breakdown: Breakdown | None = None):
    """Encode one reference and colour ``args.batch`` frames; returns (numbers, list of results)."""
    reference_image = make_reference(args.size)
    extract = args.lineart == "extract"
    frames = [make_frame(args.size, i, extract) for i in range(args.batch)]
    loads_before = dict(getattr(mn.modules, "load_seconds", {}))

    t_begin = memory.sync()
    with memory.phase("encode_reference"):
        t0 = time.perf_counter()
        ref = mn.encode_reference(reference_image, size=args.size, fit=args.fit, seed=args.seed)
        encode_wall = time.perf_counter() - t0

    per_frame = []
    results = []
    excluded = 0.0  # profiler bookkeeping, not part of the pipeline's time
    for i, frame in enumerate(frames):
        with memory.phase("lineart"):
            t0 = time.perf_counter()
            if extract:
                lineart = mn.extract_lineart(frame, size=args.size, fit=args.fit)
            else:
                lineart = mn.lineart_from_drawing(frame, size=args.size, fit=args.fit)
            lineart_s = time.perf_counter() - t0

        marks = []
        cuda_marks = []

        def on_step(step, steps):
            marks.append(time.perf_counter())  # colorize synchronised just before calling us
            if step == steps and memory.cuda:
                cuda_marks.append(memory.cuda_peaks())  # prepare + steps
                memory.reset_cuda()  # what follows is the decode

        profiler = start_profiler(mn.device) if args.profile and i == 0 else None
        memory.reset_cuda()
        t0 = memory.sync()
        result = mn.colorize(ref, lineart, steps=args.steps, seed=args.seed + 1 + i, callback=on_step,
                             guidance_ref=args.guidance_ref, guidance_point=args.guidance_point)
        t1 = memory.sync()
        if profiler is not None:
            t_p = time.perf_counter()
            stop_profiler(profiler, mn.device, args.profile)
            excluded += time.perf_counter() - t_p
        timings = result.timings
        steps_start = marks[0] - timings["steps"][0]
        cuda_decode = memory.cuda_peaks()
        memory.record("colorize_prepare", t0, steps_start)
        memory.record("steps", steps_start, marks[-1], cuda_marks[0] if cuda_marks else None)
        memory.record("decode", marks[-1], t1, cuda_decode)
        colorize_wall = t1 - t0
        accounted = timings["prepare"] + sum(timings["steps"]) + timings["decode"]
        step_bounds = [steps_start, *marks]
        per_frame.append({"lineart_s": lineart_s, "prepare_s": timings["prepare"], "steps_s": list(timings["steps"]),
                          "steps_other_cpu_cores": [sampler.other_cpu(a, b) for a, b in zip(step_bounds, marks)],
                          "decode_s": timings["decode"], "colorize_wall_s": colorize_wall,
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
        "reference_encode_s": ref.seconds,
        "reference_encode_wall_s": encode_wall,
        "lineart_s": first["lineart_s"],
        "prepare_s": first["prepare_s"],
        "once_per_image_s": ref.seconds + first["lineart_s"] + first["prepare_s"],
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
                   else mn.lineart_from_drawing(frame, size=args.size, fit=args.fit))
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


# --------------------------------------------------------------------------------------------------------------
# Environment


def git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=20,
                              check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True, timeout=20, check=True).stdout.strip()
        return head + ("-dirty" if status else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = _proc_meminfo_total()
    return {"platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "cpu_model": cpu or platform.processor() or None, "cores": os.cpu_count(),
            "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "ram_bytes": ram}


def _proc_meminfo_total() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return psutil.virtual_memory().total
    except Exception:  # noqa: BLE001
        return None


def versions() -> dict:
    import diffusers
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "numpy": np.__version__}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return machine_info()["cpu_model"] or "cpu"
    return device.type


# --------------------------------------------------------------------------------------------------------------
# Output


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "GB":
        return f"{value / GB:.2f}"
    if unit == "dB":
        return "inf" if math.isinf(value) else f"{value:.1f}"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def print_table(record: dict, anchor: dict | None, anchor_note: str | None) -> None:
    p, r = record["params"], record["results"]
    mem_label = "peak CUDA allocated" if record["device"]["type"] == "cuda" else "peak RSS"
    print()
    print(f"MangaNinja benchmark: {record['device']['name']} ({record['device']['type']}), "
          f"{record['threads']} threads, {p['precision_resolved']}, {p['size']} px, {p['steps']} steps, "
          f"batch {p['batch']}, {p['models_kind']} weights"
          + (", low-memory" if p["low_memory"] else "") + (", lazy" if p["lazy"] else "")
          + (", prefault" if p["prefault"] else "") + (", warmup" if p["warmup"] else "")
          + (", channels_last" if p["channels_last"] else "")
          + (f", offload {p['offload']}" if p["offload"] != "auto" else ""))
    rows = [
        ("model build/load (s)", r["model_load_s"], "s", None),
        ("reference encode (s)", r["reference_encode_s"], "s", None),
        ("line art (s)", r["lineart_s"], "s", None),
        ("colorize prepare (s)", r["prepare_s"], "s", None),
        ("once per image (s)", r["once_per_image_s"], "s", "once_per_image_s"),
        ("first step (s)", r["step_first_s"], "s", None),
        ("per step, median (s)", r["step_median_s"], "s", "step_median_s"),
        ("decode (s)", r["decode_s"], "s", "decode_s"),
        ("end to end (s)", r["e2e_s"], "s", "e2e_s"),
        ("peak RSS after build (GB)", r["peak_rss_after_build_bytes"], "GB", "peak_rss_after_build_bytes"),
        ("peak RSS overall (GB)", r["peak_rss_bytes"], "GB", "peak_rss_bytes"),
    ]
    if record["device"]["type"] == "cuda":
        rows += [("peak CUDA alloc after build (GB)", r["cuda_peak_after_build_bytes"], "GB", None),
                 ("peak CUDA alloc overall (GB)", r["cuda_peak_bytes"], "GB", None)]
    if p["batch"] > 1:
        rows.insert(9, ("end to end per frame (s)", r["e2e_per_frame_s"], "s", None))
    header = f"{'':34}{'ours':>10}"
    if anchor is not None:
        header += f"{'official':>10}{'ours/off.':>11}"
    print(header)
    for label, value, unit, key in rows:
        line = f"{label:34}{_fmt(value, unit):>10}"
        if anchor is not None:
            a = anchor.get(key) if key else None
            ratio = (value / a) if (a and value is not None) else None
            line += f"{_fmt(a, unit):>10}{(f'{ratio:.2f}x' if ratio is not None else '-'):>11}"
        print(line)
    if anchor_note:
        print(f"  ({anchor_note})")
    weights = sum(r["weights_bytes_after_build"].values())
    grown = r["peak_rss_after_build_bytes"] - r["rss_before_build_bytes"]
    if record["device"]["type"] == "cpu" and grown < weights / 2:
        print(f"  (the {weights / GB:.1f} GB of weights built are memory-mapped and read from disk on first use, "
              "so the RSS after the build is low and encode/the first step include that reading; --prefault "
              "reads them during the build)")
    print(f"\nper phase ({mem_label}, GB; seconds):"
          + (" (steps: prepare + steps; colorize_prepare: RSS only)" if record["device"]["type"] == "cuda" else ""))
    for name, ph in r["phases"].items():
        if record["device"]["type"] == "cuda":
            cuda = ph.get("cuda_max_allocated_bytes")
            mem_text = f"{cuda / GB:8.2f} GB" if cuda is not None else f"{'-':>8}   "
            extra = f"  (RSS {ph['peak_rss_bytes'] / GB:.2f})"
        else:
            mem_text, extra = f"{ph['peak_rss_bytes'] / GB:8.2f} GB", ""
        other = ph.get("other_cpu_cores")
        other = f"   other processes {other:.2f} cores" if other is not None and other >= 0.05 else ""
        print(f"  {name:20}{mem_text}{extra}  {ph['seconds']:9.3f} s{other}")
    if r.get("lazy_load_during_run_s"):
        print(f"  lazy loads inside the run: {r['lazy_load_during_run_s']:.2f} s "
              f"({', '.join(f'{k} {v:.1f}' for k, v in r['lazy_loads_during_run'].items())}), included in end to end")
    overhead = sum(f["colorize_overhead_s"] for f in r["frames"])
    if overhead > 0.05:
        print(f"  colorize time outside prepare/steps/decode (module moves, loads): {overhead:.2f} s")
    if "breakdown" in r:
        t = r["breakdown"]["totals"]
        n = p["steps"] * p["batch"]
        print("\nwhere the time goes (synchronised timers):")
        print("  per step:")
        for key in ("controlnet", "unet", "unet_attn1_reference", "unet_attn2_cross", "unet_feed_forward"):
            if key in t:
                print(f"    {key:28}{t[key] / n:9.3f} s")
        print("  per frame:")
        for key in ("annotator", "point_net", "controlnet_cond_embedding", "vae_decoder"):
            if key in t:
                print(f"    {key:28}{t[key] / p['batch']:9.3f} s")
        print("  per reference:")
        for key in ("clip_vision", "vae_encoder", "reference_unet"):
            if key in t:
                print(f"    {key:28}{t[key]:9.3f} s")
    if "precision" in r:
        pr = r["precision"]
        print(f"\nPSNR vs fp32 (same weights, inputs, seeds): fp16 {_fmt(pr['psnr_fp16_vs_fp32_db'], 'dB')} dB, "
              f"bf16 {_fmt(pr['psnr_bf16_vs_fp32_db'], 'dB')} dB")
    other = r.get("other_cpu_cores_during_run")
    busy = other is not None and other >= 0.25 and record["device"]["type"] == "cpu"
    print(f"\ncommit {record['git_commit']}; torch {record['versions']['torch']}; other processes kept "
          f"{'?' if other is None else f'{other:.2f}'} cores busy during the run"
          + (" (CPU timings are skewed)" if busy else ""))


def anchor_for(args, device: torch.device, precision: str) -> tuple[dict | None, str | None]:
    """The official numbers to print beside ours (with ratios) when the configuration matches, else None."""
    if not args.anchor:
        return None, None
    a = ANCHORS.get(args.size)
    if device.type != "cpu" or precision != "fp32" or a is None:
        sizes = " and ".join(f"{s} px" for s in ANCHORS)
        print(f"\n(--anchor: the official numbers exist for CPU fp32 at {sizes}, {ANCHOR_STEPS} steps, "
              f"{ANCHOR_THREADS} threads; this run is {device.type} {precision} {args.size} px, so no ratios)")
        return None, None
    a = dict(a)
    notes = []
    if args.steps != ANCHOR_STEPS or args.batch != 1:
        a["e2e_s"] = None
        notes.append(f"official end to end is for {ANCHOR_STEPS} steps, batch 1")
    if torch.get_num_threads() != ANCHOR_THREADS:
        notes.append(f"official numbers used {ANCHOR_THREADS} threads, this run {torch.get_num_threads()}")
    return a, "; ".join(notes) or None


# --------------------------------------------------------------------------------------------------------------


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
    r.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="fp32",
                   help="default fp32 (auto: fp16 on GPUs, fp32 on the CPU)")
    r.add_argument("--size", type=int, help="processing size, a multiple of 64 (default 256; 128 with --tiny)")
    r.add_argument("--steps", type=int, default=2, help="DDIM steps (default 2, like the official anchor)")
    r.add_argument("--batch", type=int, default=1,
                   help="line-art frames coloured with the same reference, one colorize call each (default 1)")
    r.add_argument("--lineart", choices=("extract", "drawing"), default="extract",
                   help="extract: run the annotator on a colour frame (default); drawing: use a black-on-white drawing")
    r.add_argument("--fit", choices=("letterbox", "stretch"), default="letterbox")
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
                   help="force channels_last weights (mn_core's default: on for CUDA, off for the CPU, where it "
                        "copies the memory-mapped weights and gains nothing)")
    m.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long until other processes leave the CPU idle")
    o = ap.add_argument_group("output")
    o.add_argument("--compare-precisions", action="store_true",
                   help="also print the PSNR of fp16 and bf16 output vs fp32 output (same weights and inputs)")
    o.add_argument("--anchor", action="store_true", help="print the official code's numbers (CPU, fp32, 2 cores) "
                   "beside ours, with ratios where size and precision match")
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
                from mn_core.pipeline import resolve_precision

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

        breakdown = None
        if args.breakdown:
            breakdown = Breakdown(mn, memory)
            breakdown.install()
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
    record = {
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "device": {"type": device.type, "name": device_name(device)},
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "load_average_1min_before": load_before[0] if load_before else None,
        "git_commit": git_commit(),
        "params": params,
        "results": numbers,
    }
    anchor, note = anchor_for(args, device, precision)
    print_table(record, anchor, note)
    if not args.no_save:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a") as f:
            f.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")
        print(f"appended to {args.results}")
    return 0


def _jsonable(o):
    """Plain JSON: infinities (identical images' PSNR) become the string "inf", numpy scalars Python numbers."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.floating, np.integer)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return "inf" if o > 0 else "-inf" if o < 0 else None
    return o


if __name__ == "__main__":
    sys.exit(main())
