#!/usr/bin/env python
"""The official MangaNinja pipeline and ours, side by side in one session: interleaved runs, ratios per phase.

    python benchmarks/side_by_side.py --official ~/src/MangaNinjia            # 256 px, 3 steps, 3 pairs, CPU fp32

``--official`` is a clone of https://github.com/ali-vilab/MangaNinjia (imported unmodified, never copied here).
The script creates a virtual environment for it (``benchmarks/.cache/official-venv``) with its pinned libraries
(diffusers 0.27.2, transformers 4.44.1, huggingface-hub 0.24.6, accelerate 0.31.0, ``numpy<2``), layered over
this environment's torch, so both sides run the same torch build. Both sides read the same seeded random weights of
full SD1.5 shapes (``benchmarks/.cache/sd15-random``, written once by bench.py's code), the official side the way
its ``infer.py`` loads them (``from_pretrained`` + ``torch.load``, into ordinary memory), ours with
``MangaNinja.from_folder`` in its default mode. Both get the same reference, the same colour frame (line art
extracted by each side's annotator), the same five point pairs and the same guidance (9 and 15, ``scripts/infer.sh``).

A *round* is one fresh process of the official code, then one fresh process of ours; each process loads the models
and makes ``--calls`` full pipeline calls (reference, line art, all steps, decode). Only one process runs at a time,
so neither side's memory or threads disturb the other. Call 1 of a process is *cold* (first use of every kernel and,
for memory-mapped weights, first touch of their pages); later calls are *warm*. Rounds alternate, so drift of the
machine's speed (it can reach 40 % within an hour on a shared VM) hits both sides alike, and each ratio divides
numbers measured minutes apart: ``ours / official`` per round and call index, then the median over the pairs.

Phases (the same boundaries on both sides):
  once per image   everything before the first ControlNet call: CLIP, VAE encode, reference UNet, annotator,
                   point maps, reader/bank set-up (ours: the call's wall time less its steps and its decode, so
                   loading, eviction and image conversions count too)
  per step         ControlNet + denoising UNet over the guidance rows + DDIM update (median over the steps)
  VAE decode       the decoder call
  end to end       the whole call
  peak RSS         the process's peak resident memory during the call (VmHWM, reset just before it)
  load + call 1    model loading plus the cold call: what a user waits for the first image

The table goes to stdout and every call's record to ``--results`` (JSON lines) with machine, date and commit.
``--ours-flags`` runs ours in another mode (``precision=bf16``, ``compile`` or any ``key=value`` of from_folder);
with ``--baseline ours-fp32`` the other side is ours in its default mode instead of the official code, and the
PSNR of each call's image against it is printed too (the opt-in modes are not bit-identical):

    python benchmarks/side_by_side.py --baseline ours-fp32 --ours-flags precision=bf16 --pairs 1 --calls 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
OFFICIAL_PINS = ("diffusers==0.27.2", "transformers==4.44.1", "huggingface-hub==0.24.6", "accelerate==0.31.0",
                 "omegaconf==2.3.0", "einops==0.8.0", "safetensors", "opencv-python-headless==4.10.0.84",
                 "scipy==1.14.1", "numpy<2", "matplotlib")
PHASES = (("once_s", "once per image"), ("step_s", "per step"), ("decode_s", "VAE decode"), ("e2e_s", "end to end"),
          ("peak_rss_gb", "peak RSS"))
GOALS = {"once_s": 0.7, "step_s": 0.85, "decode_s": 1.0, "e2e_s": 0.8, "peak_rss_gb": 0.6}
NETS = ("clip_vision", "vae_encode", "reference_unet", "annotator", "controlnet", "unet", "decode")
MARK = "SIDE_BY_SIDE "


# ----------------------------------------------------------------------------------------------------- shared probes

def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # Linux: VmHWM := VmRSS
        f.write("5")


def _busy_cpu_s() -> float:
    """CPU seconds all processes spent busy since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Call:
    """Wall time, peak RSS and the CPU other processes used during one pipeline call."""

    def __enter__(self):
        _reset_peak()
        self.busy, self.own, self.t0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        other = (_busy_cpu_s() - self.busy) - (_own_cpu_s() - self.own)
        self.other_cores = max(0.0, other) / self.wall
        self.peak_rss_gb = (_status_kib("VmHWM") or 0) / 1024**2 * 1.073741824  # KiB -> GB (10^9)
        return False


def _inputs(spec: dict):
    from PIL import Image

    d = Path(spec["inputs"])
    points = json.loads((d / "points.json").read_text())
    return Image.open(d / "reference.png").convert("RGB"), Image.open(d / "frame.png").convert("RGB"), points


# ----------------------------------------------------------------------------------------------- the official side

def official_worker(spec: dict) -> None:
    """Runs in the official venv: loads as infer.py does, then times ``spec['calls']`` pipeline calls."""
    import functools

    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, spec["official"])
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    from inference.manganinjia_pipeline import MangaNinjiaPipeline
    from src.annotator.lineart import BatchLineartDetector
    from src.models.refunet_2d_condition import RefUNet2DConditionModel
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.point_network import PointNet

    m = Path(spec["models"])
    sd, clip, cn = m / "StableDiffusion", m / "models/clip-vit-large-patch14", m / "models/control_v11p_sd15_lineart"
    tok = spec["tokenizer"]
    t_load = time.perf_counter()
    pre = BatchLineartDetector(str(m / "models/Annotators"))
    pre.to("cpu", dtype=torch.float32)
    sched = DDIMScheduler.from_pretrained(str(sd), subfolder="scheduler")
    vae = AutoencoderKL.from_pretrained(str(sd), subfolder="vae")
    kw = dict(subfolder="unet", in_channels=4, low_cpu_mem_usage=False, ignore_mismatched_sizes=True)
    den = UNet2DConditionModel.from_pretrained(str(sd), **kw)
    ref = RefUNet2DConditionModel.from_pretrained(str(sd), **kw)
    parts = {}
    for slot in ("refnet", "controlnet"):  # infer.py builds one tokenizer/text/vision triple per slot
        parts[slot] = (CLIPTokenizer.from_pretrained(tok), CLIPTextModel.from_pretrained(str(clip)),
                       CLIPVisionModelWithProjection.from_pretrained(str(clip)))
    control = ControlNetModel.from_pretrained(str(cn), in_channels=4, low_cpu_mem_usage=False,
                                              ignore_mismatched_sizes=True)
    point_net = PointNet()
    unmatched = {}
    for name, module in (("controlnet", control), ("point_net", point_net), ("reference_unet", ref),
                         ("denoising_unet", den)):
        # infer.py: load_state_dict(torch.load(...), strict=False); the keys left unmatched are reported.
        state = torch.load(str(m / "MangaNinjia" / f"{name}.pth"), map_location="cpu", weights_only=True)
        r = module.load_state_dict(state, strict=False)
        unmatched[name] = {"missing": len(r.missing_keys), "unexpected": len(r.unexpected_keys)}
        del state
    pipe = MangaNinjiaPipeline(
        reference_unet=ref, controlnet=control, denoising_unet=den, vae=vae,
        refnet_tokenizer=parts["refnet"][0], refnet_text_encoder=parts["refnet"][1],
        refnet_image_encoder=parts["refnet"][2], controlnet_tokenizer=parts["controlnet"][0],
        controlnet_text_encoder=parts["controlnet"][1], controlnet_image_encoder=parts["controlnet"][2],
        scheduler=sched, point_net=point_net).to(torch.device("cpu"))
    load_s = time.perf_counter() - t_load

    events: list[tuple[str, float, float]] = []

    def timed(name, fn):
        @functools.wraps(fn)
        def run(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            events.append((name, t0, time.perf_counter()))
            return out
        return run

    for name, module in (("clip_vision", pipe.refnet_image_encoder), ("clip_vision", pipe.controlnet_image_encoder),
                         ("reference_unet", pipe.reference_unet), ("controlnet", pipe.controlnet),
                         ("unet", pipe.denoising_unet)):
        module.forward = timed(name, module.forward)
    pipe.vae.encode = timed("vae_encode", pipe.vae.encode)
    pipe.vae.decode = timed("decode", pipe.vae.decode)
    pipe.scheduler.step = timed("scheduler", pipe.scheduler.step)

    class Annotator:  # a pass-through, timed
        __call__ = staticmethod(timed("annotator", pre.__call__))

    reference, frame, points = _inputs(spec)
    size = spec["size"]

    def point_map(which):
        a = np.zeros((size, size), dtype=np.uint8)
        for i, pair in enumerate(points, start=1):
            x, y = (int(round(v)) for v in pair[which])
            a[max(0, y - 8):y + 9, max(0, x - 8):x + 9] = i  # 17 x 17 squares, as the gradio app draws them
        return torch.from_numpy(a)[None, None]

    for call in range(1, spec["calls"] + 1):
        events.clear()
        torch.manual_seed(spec["seed"])
        with torch.no_grad(), Call() as c:
            out = pipe(False, reference, frame, frame, denosing_steps=spec["steps"], processing_res=size,
                       match_input_res=True, batch_size=1, show_progress_bar=False,
                       guidance_scale_ref=spec["guidance_ref"], guidance_scale_point=spec["guidance_point"],
                       preprocessor=Annotator(), generator=None, point_ref=point_map(0), point_main=point_map(1))
        t_first = min(t0 for n, t0, _ in events if n == "controlnet")
        starts = [t0 for n, t0, _ in events if n == "controlnet"]
        ends = [t1 for n, _, t1 in events if n == "scheduler"]
        nets = {}
        for n, t0, t1 in events:
            if n != "scheduler":
                nets[n] = nets.get(n, 0.0) + (t1 - t0)
        for n in ("controlnet", "unet"):
            nets[n] /= spec["steps"]
        img = np.asarray(out.img_pil.convert("RGB"))
        _emit({"side": "official", "call": call, "load_s": load_s, "e2e_s": c.wall, "once_s": t_first - c.t0,
               "steps_s": [b - a for a, b in zip(starts, ends)], "decode_s": nets.get("decode"),
               "peak_rss_gb": c.peak_rss_gb, "other_cores": c.other_cores, "nets_s": nets,
               "output_mean": float(img.mean()), "output_shape": list(img.shape), "unmatched_keys": unmatched,
               "versions": _versions()})


# ------------------------------------------------------------------------------------------------------- our side

def ours_worker(spec: dict) -> None:
    """Runs in this venv: MangaNinja.from_folder in the mode the flags give, then ``spec['calls']`` calls."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    sys.path.insert(0, str(ROOT))
    from mn_core.observers import Timings
    from mn_core.pipeline import MangaNinja
    from mn_core.points import Points

    flags = spec["ours"]
    t_load = time.perf_counter()
    mn = MangaNinja.from_folder(spec["models"], device="cpu", precision=flags.get("precision", "fp32"),
                                compile=flags.get("compile", False), **flags.get("options", {}))
    load_s = time.perf_counter() - t_load
    reference, frame, points = _inputs(spec)
    pts = Points(tuple((tuple(r), tuple(line)) for r, line in points))
    size = spec["size"]
    for call in range(1, spec["calls"] + 1):
        t = Timings()
        with torch.inference_mode(), Call() as c:
            ref = mn.encode_reference(reference, size=size, seed=spec["seed"], observers=[t])
            lineart = mn.extract_lineart(frame, size=size, observers=[t])
            result = mn.colorize(ref, lineart, points=pts, steps=spec["steps"], seed=spec["seed"] + 1,
                                 guidance_ref=spec["guidance_ref"], guidance_point=spec["guidance_point"],
                                 observers=[t])
        tot = t.totals
        # Wall time outside the steps and the decoder: the sections plus the owner's loading/eviction and the
        # image conversions (the official side's "call start -> first ControlNet" has no such gaps to leave out).
        once = c.wall - sum(t.laps["step"]) - tot["decode"]
        nets = {k: tot.get(k) for k in ("clip_vision", "vae_encode", "reference_unet", "decode")}
        nets["annotator"] = tot["extract_lineart"]
        nets["controlnet"] = tot["controlnet"] / spec["steps"]
        nets["unet"] = tot["unet"] / spec["steps"]
        img = np.asarray(result.processed_image.convert("RGB"))
        _emit({"side": "ours", "call": call, "load_s": load_s, "e2e_s": c.wall, "once_s": once,
               "steps_s": t.laps["step"], "decode_s": tot["decode"], "peak_rss_gb": c.peak_rss_gb,
               "other_cores": c.other_cores, "nets_s": nets, "output_mean": float(img.mean()),
               "output_shape": list(img.shape), "output": _save_output(spec, img, call), "versions": _versions()})


def _save_output(spec, img, call) -> str | None:
    if not spec.get("save_outputs"):
        return None
    import numpy as np

    path = Path(spec["save_outputs"]) / f"call{call}.npy"
    np.save(path, img)
    return str(path)


def _versions() -> dict:
    import diffusers
    import torch
    import transformers

    return {"torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "threads": torch.get_num_threads()}


def _emit(record: dict) -> None:
    print(MARK + json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------------- the driver

def official_python(venv: Path) -> Path:
    """The official code's interpreter: a venv layered over this one (same torch) with its pinned libraries."""
    import sysconfig

    python = venv / "bin" / "python"
    base = sysconfig.get_paths()["purelib"]
    marker = venv / ".mn_pins"
    want = json.dumps({"base": base, "pins": OFFICIAL_PINS})
    if marker.is_file() and marker.read_text() == want:
        return python
    print(f"creating {venv} with {' '.join(OFFICIAL_PINS)} (about a minute)", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_mn_base_venv.pth").write_text(base + "\n")  # appended to sys.path: the pins come first
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--disable-pip-version-check", *OFFICIAL_PINS], check=True)
    marker.write_text(want)
    return python


def write_tokenizer(folder: Path) -> Path:
    """A CLIP tokenizer that knows only the two special tokens, at the real ids (49406, 49407): the official
    pipeline tokenises only the empty prompt, which becomes [BOS, EOS] padded with EOS to 77, exactly as with the
    full vocabulary (the random-weights folder has no tokenizer files; ours needs none)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({"<|startoftext|>": 49406, "<|endoftext|>": 49407}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "do_lower_case": True}))
    return folder


def write_inputs(folder: Path, size: int, n_points: int, seed: int) -> Path:
    """The reference and the colour frame (bench.py's, square), and point pairs inside both."""
    import random

    sys.path.insert(0, str(HERE))
    from inputs import make_frame, make_reference

    folder.mkdir(parents=True, exist_ok=True)
    make_reference(size).resize((size, size)).save(folder / "reference.png")
    make_frame(size, 0, True).resize((size, size)).save(folder / "frame.png")
    rng = random.Random(seed)
    pairs = [[[rng.randint(16, size - 16), rng.randint(16, size - 16)],
              [rng.randint(16, size - 16), rng.randint(16, size - 16)]] for _ in range(n_points)]
    (folder / "points.json").write_text(json.dumps(pairs))
    return folder


def run_worker(python: Path, side: str, spec: dict, log) -> list[dict]:
    cmd = [str(python), str(Path(__file__).resolve()), "--worker", side, "--spec", json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(CACHE / "side_by_side" / "hf-home"), "TRANSFORMERS_VERBOSITY": "error"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE))
    records = [json.loads(line[len(MARK):]) for line in proc.stdout.splitlines() if line.startswith(MARK)]
    log.write(proc.stderr)
    if proc.returncode or len(records) != spec["calls"]:
        raise SystemExit(f"the {side} worker failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return records


def value(rec: dict, key: str) -> float:
    if key == "step_s":
        return statistics.median(rec["steps_s"])
    return rec[key]


def pair_ratios(rounds: list[dict], key: str, warm: bool, baseline: str = "official", side: str = "ours"):
    """Per round and call index, ours / official; the list of ratios (warm: calls 2.., cold: call 1)."""
    out = []
    for r in rounds:
        for a, b in zip(r[baseline], r[side]):
            if (a["call"] > 1) == warm:
                out.append(value(b, key) / value(a, key))
    return out


def summarise(rounds: list[dict], side: str = "ours", baseline: str = "official", write=print,
              labels: tuple[str, str] | None = None) -> dict:
    """The tables: ``rounds[i][baseline]`` and ``rounds[i][side]`` are call records; ``labels`` names the two sides
    in the output (default: the keys). The goals apply only when the baseline is the official code."""
    shown_base, shown_side = labels or (baseline, side)
    official = shown_base == "official"
    table = {}
    for warm in (True, False):
        kind = "warm" if warm else "cold"
        write(f"\n{kind} vs {kind} ({'calls 2..' if warm else 'call 1 of each process'}), "
              f"{len(rounds)} round(s): median of the pairwise ratios {shown_side} / {shown_base}")
        write(f"{'phase':<16} {shown_base + ' s':>12} {shown_side + ' s':>10} {'ratio':>7} {'range':>13} "
              f"{'goal':>6}")
        for key, label in PHASES + ((("load_plus_first_s", "load + call 1"),) if not warm else ()):
            if key == "load_plus_first_s":
                for r in rounds:
                    for s in (baseline, side):
                        r[s][0]["load_plus_first_s"] = r[s][0]["load_s"] + r[s][0]["e2e_s"]
            a = [value(c, key) for r in rounds for c in r[baseline] if (c["call"] > 1) == warm]
            b = [value(c, key) for r in rounds for c in r[side] if (c["call"] > 1) == warm]
            ratios = pair_ratios(rounds, key, warm, baseline, side)
            if not ratios:
                continue
            med = statistics.median(ratios)
            goal = GOALS.get(key) if warm and official else None
            unit = " GB" if key == "peak_rss_gb" else ""
            mark = "" if goal is None else ("  met" if med <= goal else "  NOT met")
            write(f"{label:<16} {statistics.median(a):>9.2f}{unit:<3} {statistics.median(b):>7.2f}{unit:<3} "
                  f"{med:>6.2f}x {min(ratios):>5.2f}-{max(ratios):<5.2f}x "
                  f"{'' if goal is None else f'<={goal}':>6}{mark}")
            table[f"{kind}_{key}"] = {"baseline": statistics.median(a), "ours": statistics.median(b),
                                      "ratio": med, "ratios": ratios, "goal": goal}
        nets = [n for n in NETS if all(n in c["nets_s"] and c["nets_s"][n] for r in rounds
                                       for c in r[baseline] + r[side])]
        if nets:
            write("  networks (s; controlnet and unet per step):")
            for n in nets:
                ratios = [b["nets_s"][n] / a["nets_s"][n] for r in rounds for a, b in zip(r[baseline], r[side])
                          if (a["call"] > 1) == warm]
                a = statistics.median(c["nets_s"][n] for r in rounds for c in r[baseline] if (c["call"] > 1) == warm)
                b = statistics.median(c["nets_s"][n] for r in rounds for c in r[side] if (c["call"] > 1) == warm)
                write(f"  {n:<14} {a:>9.2f}    {b:>7.2f}    {statistics.median(ratios):>6.2f}x")
    others = [c["other_cores"] for r in rounds for s in (baseline, side) for c in r[s]]
    write(f"\nother processes kept {statistics.median(others):.2f} cores busy (median; max {max(others):.2f})")
    return table


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["mem_gb"] = round(int(f.readline().split()[1]) / 1e6, 1)
    except (OSError, StopIteration):
        pass
    return info


def commit() -> str | None:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_ours_flags(text: str) -> dict:
    """``--ours-flags`` (MangaNinja.from_folder options): precision=bf16, compile, or any key=value of from_folder."""
    out: dict = {"options": {}}
    for item in shlex.split(text.replace(",", " ")):
        key, _, val = item.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if key == "precision":
            out["precision"] = val
        elif key == "compile":
            out["compile"] = True
        else:
            out["options"][key] = {"true": True, "false": False}.get(val.lower(), val) if val else True
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", type=Path, help="a clone of ali-vilab/MangaNinjia")
    ap.add_argument("--venv", type=Path, default=CACHE / "official-venv", help="the official code's venv")
    ap.add_argument("--models", type=Path, default=CACHE / "sd15-random",
                    help="weights in the official layout (default: random SD1.5 shapes, written once)")
    ap.add_argument("--pairs", type=int, default=3, help="rounds of (official, ours) processes (default 3)")
    ap.add_argument("--calls", type=int, default=3, help="pipeline calls per process; call 1 is cold (default 3)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--points", type=int, default=5)
    ap.add_argument("--ours-flags", default="", help="ours in another mode, e.g. precision=bf16 or compile")
    ap.add_argument("--baseline", choices=("official", "ours-fp32"), default="official",
                    help="ours-fp32: compare --ours-flags with ours in its default mode instead of the official "
                         "code (for the opt-in modes; also prints the PSNR of the outputs)")
    ap.add_argument("--results", type=Path, default=HERE / "side_by_side.jsonl")
    ap.add_argument("--worker", choices=("official", "ours"), help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        (official_worker if args.worker == "official" else ours_worker)(json.loads(args.spec))
        return 0
    if args.baseline == "official" and args.official is None:
        ap.error("--official: give the path of a clone of https://github.com/ali-vilab/MangaNinjia "
                 "(or --baseline ours-fp32 to time ours against itself)")
    if args.official is not None and not (args.official / "inference" / "manganinjia_pipeline.py").is_file():
        ap.error(f"--official {args.official}: no inference/manganinjia_pipeline.py there; "
                 "give the root of a clone of https://github.com/ali-vilab/MangaNinjia")

    sys.path.insert(0, str(HERE))
    from inputs import ensure_random_models

    if args.models == CACHE / "sd15-random":
        ensure_random_models(args.models, 0)
    python = official_python(args.venv) if args.baseline == "official" else Path(sys.executable)
    work = CACHE / "side_by_side"
    spec = {"models": str(args.models), "inputs": str(write_inputs(work / "inputs", args.size, args.points,
                                                                    args.seed)),
            "tokenizer": str(write_tokenizer(work / "tokenizer")), "official": str(args.official),
            "calls": args.calls, "size": args.size, "steps": args.steps, "threads": args.threads,
            "seed": args.seed, "guidance_ref": 9.0, "guidance_point": 15.0}
    ours = {**spec, "ours": parse_ours_flags(args.ours_flags)}
    baseline_name = args.baseline if args.baseline == "official" else "ours fp32"
    side_name = "ours" + (f" ({args.ours_flags})" if args.ours_flags else "")
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    rounds = []
    outputs = work / "outputs"  # this run's images only: a file left by an earlier run must not be compared
    shutil.rmtree(outputs, ignore_errors=True)
    with open(work / "workers.log", "a") as log:
        for i in range(args.pairs):
            r = {}
            if args.baseline == "official":
                r["official"] = run_worker(python, "official", spec, log)
            else:
                out = outputs / "baseline" / f"round{i + 1}"
                out.mkdir(parents=True)
                r["official"] = run_worker(python, "ours", {**spec, "ours": {}, "save_outputs": str(out)}, log)
            out = outputs / "side" / f"round{i + 1}"
            out.mkdir(parents=True)
            r["ours"] = run_worker(Path(sys.executable), "ours", {**ours, "save_outputs": str(out)}, log)
            for side, shown in (("official", baseline_name), ("ours", side_name)):
                c = r[side]
                print(f"round {i + 1} {shown:<9}: load {c[0]['load_s']:.1f} s; calls " +
                      ", ".join(f"{x['e2e_s']:.1f} s (step {value(x, 'step_s'):.2f}, peak {x['peak_rss_gb']:.1f} GB)"
                                for x in c), flush=True)
            rounds.append(r)
    meta = {"date": started, "machine": machine(), "commit": commit(), "argv": sys.argv[1:],
            "baseline": baseline_name, "side": side_name}
    print(f"\n{side_name} vs {baseline_name}: {args.size} px, {args.steps} steps, CPU fp32 baseline, "
          f"{args.threads} threads; {meta['machine'].get('cpu', '')}; commit {meta['commit']}; {started}")
    table = summarise(rounds, baseline="official", labels=(baseline_name, side_name))
    if args.baseline != "official":
        table["psnr_db"] = psnr_report(rounds)
    with open(args.results, "a") as f:
        f.write(json.dumps({**meta, "table": table, "rounds": rounds}) + "\n")
    return 0


def psnr_report(rounds: list[dict], write=print) -> list[float]:
    """PSNR (dB, 8-bit) of each call's image of the side against the baseline's image of the same round and call."""
    import math

    import numpy as np

    out = []
    for r in rounds:
        for a, b in zip(r["official"], r["ours"]):
            base = np.load(a["output"]).astype(np.float64)
            side = np.load(b["output"]).astype(np.float64)
            mse = float(np.mean((base - side) ** 2))
            out.append(math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse))
    write(f"PSNR against ours in fp32 (same weights, inputs, seeds): {', '.join(f'{x:.1f} dB' for x in out)}")
    return out


if __name__ == "__main__":
    sys.exit(main())
