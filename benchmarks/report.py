"""Reporting: the machine, versions and commit; the printed table; plain-JSON records."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9


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


def _fmt(value, unit) -> str:
    if value is None:
        return "-"
    if unit == "GB":
        return f"{value / GB:.2f}"
    if unit == "dB":
        return "inf" if math.isinf(value) else f"{value:.1f}"
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def print_table(record: dict) -> None:
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
        ("model build/load (s)", r["model_load_s"], "s"),
        ("reference encode (s)", r["reference_encode_s"], "s"),
        ("line art (s)", r["lineart_s"], "s"),
        ("colorize prepare (s)", r["prepare_s"], "s"),
        ("once per image (s)", r["once_per_image_s"], "s"),
        ("first step (s)", r["step_first_s"], "s"),
        ("per step, median (s)", r["step_median_s"], "s"),
        ("decode (s)", r["decode_s"], "s"),
        ("end to end (s)", r["e2e_s"], "s"),
        ("peak RSS after build (GB)", r["peak_rss_after_build_bytes"], "GB"),
        ("peak RSS overall (GB)", r["peak_rss_bytes"], "GB"),
    ]
    if record["device"]["type"] == "cuda":
        rows += [("peak CUDA alloc after build (GB)", r["cuda_peak_after_build_bytes"], "GB"),
                 ("peak CUDA alloc overall (GB)", r["cuda_peak_bytes"], "GB")]
    if p["batch"] > 1:
        rows.insert(9, ("end to end per frame (s)", r["e2e_per_frame_s"], "s"))
    print(f"{'':34}{'ours':>10}")
    for label, value, unit in rows:
        print(f"{label:34}{_fmt(value, unit):>10}")
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


def make_record(device: torch.device, params: dict, results: dict, **extra) -> dict:
    """One results line: when, on what (machine, device, versions, threads, commit), with what, and the numbers."""
    import datetime

    return {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **extra,
            "machine": machine_info(), "device": {"type": device.type, "name": device_name(device)},
            "versions": versions(), "threads": torch.get_num_threads(), "git_commit": git_commit(),
            "params": params, "results": results}


def append_record(path: Path, record: dict) -> None:
    """Append ``record`` to a JSON-lines file (plain JSON, see :func:`_jsonable`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(_jsonable(record), allow_nan=False) + "\n")
    print(f"appended to {path}")
