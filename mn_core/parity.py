"""Parity against the official code: run one fixture case and compare every recorded array.

A case folder (see the fixtures README) holds the inputs, the two noise draws the official run used, and what it
produced. The noise is injected, so the comparison is deterministic. The arrays with a tolerance in ``case.json``
decide PASS/FAIL; the debugging intermediates are printed for information.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .points import maps_from_arrays, parse, point_maps

GATED = ("lineart_cond", "clip_image_embed", "null_text_embed", "eps_uncond", "eps_ref", "eps_point",
         "final_latents", "decoded_image")


@dataclass
class Row:
    name: str
    max_abs: float
    tolerance: float | None  # None: informational
    detail: str = ""
    other_rules_ok: bool = True  # e.g. the PNG rule's share of differing values

    @property
    def ok(self) -> bool:
        return self.tolerance is None or (self.max_abs <= self.tolerance and self.other_rules_ok)


@dataclass
class Report:
    case: str
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.ok for r in self.rows)

    def lines(self) -> list[str]:
        out = [f"case {self.case}"]
        for r in self.rows:
            status = "info" if r.tolerance is None else ("ok" if r.ok else "FAIL")
            tol = "-" if r.tolerance is None else f"{r.tolerance:.1e}"
            out.append(f"  {r.name:<28} max|err| {r.max_abs:.3e}  tol {tol:<8} {status:<4} {r.detail}".rstrip())
        out.append(f"  time {self.seconds:.1f} s")
        out.append("PASS" if self.passed else "FAIL")
        return out


def _err(actual, expected) -> float:
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise ValueError(f"shape {a.shape} != expected {e.shape}")
    return float(np.abs(a - e).max()) if a.size else 0.0


def _png_row(name: str, actual: Image.Image, expected_path: Path, rule: dict) -> Row:
    a = np.asarray(actual).astype(np.int16)
    e = np.asarray(Image.open(expected_path)).astype(np.int16)
    if a.shape != e.shape:
        return Row(name, float("inf"), 0.0, f"shape {a.shape} != {e.shape}")
    diff = np.abs(a - e)
    frac = float((diff > 0).mean())
    detail = f"{frac * 100:.4f}% of values differ (allowed {rule['max_fraction_differing'] * 100:g}%)"
    return Row(name, float(diff.max()), float(rule["max_abs_diff"]), detail,
               other_rules_ok=frac <= rule["max_fraction_differing"])


def run_case(case_dir: str | Path, *, device: str = "cpu") -> Report:
    from .lineart import from_drawing
    from .observers import Trace
    from .pipeline import MangaNinja

    case_dir = Path(case_dir)
    case = json.loads((case_dir / "case.json").read_text())
    call = case["call"]
    tolerances = case["tolerances"]
    exp = case_dir / "expected"
    report = Report(case.get("name", case_dir.name))
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    t0 = time.perf_counter()
    mn = MangaNinja.from_folder((case_dir / case["weights_dir"]).resolve(), device=device, precision="fp32")
    size = int(call["processing_res"])
    reference = Image.open(case_dir / "inputs" / "reference.png")
    target = Image.open(case_dir / "inputs" / "target.png")
    if reference.size != (size, size) or target.size != (size, size):
        raise ValueError("parity cases must be square images at processing_res (the official resize is a no-op)")
    ref_noise = torch.from_numpy(np.load(case_dir / "noise" / "ref_posterior_noise.npy"))
    init_noise = torch.from_numpy(np.load(case_dir / "noise" / "initial_latents.npy"))
    trace = Trace()
    ref = mn.encode_reference(reference, size=size, fit="stretch", noise=ref_noise, observers=[trace])
    if call["is_lineart"]:
        lineart = from_drawing(target, size=size, fit="stretch", polarity="white_on_black")
    else:
        lineart = mn.extract_lineart(target, size=size, fit="stretch", observers=[trace])
    maps = maps_from_arrays(np.load(case_dir / "inputs" / "point_ref.npy"),
                            np.load(case_dir / "inputs" / "point_target.npy"))
    result = mn.colorize(ref, lineart, points=maps, steps=int(call["denoising_steps"]),
                         guidance_ref=float(call["guidance_scale_ref"]),
                         guidance_point=float(call["guidance_scale_point"]), noise=init_noise, observers=[trace])
    report.seconds = time.perf_counter() - t0

    eps0 = trace["eps"][0]
    actual = {
        "lineart_cond": trace["lineart_cond"],
        "clip_image_embed": trace["clip_image_embed"],
        "null_text_embed": mn.null_context,
        "eps_uncond": eps0.get("uncond"),
        "eps_ref": eps0.get("ref"),
        "eps_point": eps0.get("point"),
        "final_latents": result.latents,
        "decoded_image": trace["decoded_image"],
    }
    for name in GATED:
        expected = np.load(exp / f"{name}.npy")
        if actual[name] is None:
            report.rows.append(Row(name, float("inf"), tolerances[name]["atol"], "row not computed"))
            continue
        report.rows.append(Row(name, _err(actual[name], expected), tolerances[name]["atol"]))
    report.rows.append(_png_row("output.png", result.processed_image, exp / "output.png", tolerances["output_png"]))
    report.rows.append(_png_row("lineart.png", lineart.image(), exp / "lineart.png", tolerances["output_png"]))

    # Points: the case's pair list, mapped by our own code, must give the stored maps exactly.
    if case.get("points"):
        pts = parse({"pairs": [{"reference": [p["ref_rc"][1], p["ref_rc"][0]],
                                "lineart": [p["target_rc"][1], p["target_rc"][0]]} for p in case["points"]]})
        ours = point_maps(pts, ref.fit, lineart.fit)
        mismatch = _err(ours.reference, maps.reference) + _err(ours.lineart, maps.lineart)
        report.rows.append(Row("point maps from JSON", mismatch, 0.0))

    extra = exp / "extra"
    info = {
        "clip_pixel_values": trace["clip_pixel_values"],
        "ref_latents": trace["ref_latents"],
        "decoded_image_raw": trace["decoded_image_raw"],
    }
    for k, tokens in (("ref", trace["point_emb_ref"]), ("target", trace["point_emb_target"])):
        for i, t in enumerate(tokens):
            info[f"point_emb_{k}_{i}"] = t
    if (extra / "latents_per_step.npy").exists():
        info["latents_per_step"] = torch.stack(trace["latents"])
    if (extra / "eps_per_step.npy").exists():
        info["eps_per_step"] = torch.stack([torch.cat([e[r] for r in ("uncond", "ref", "point")])
                                            for e in trace["eps"]])
    if "annotator_lineart_raw" in trace and (extra / "annotator_lineart_raw.npy").exists():
        info["annotator_lineart_raw"] = trace["annotator_lineart_raw"]
    for name, value in info.items():
        path = extra / f"{name}.npy"
        if path.exists():
            report.rows.append(Row(name, _err(value, np.load(path)), None))
    if (extra / "ref_bank.npz").exists():
        stored = np.load(extra / "ref_bank.npz")
        worst = max(_err(trace["ref_bank"][k], stored[k]) for k in stored.files)
        report.rows.append(Row("ref_bank (before fp16)", worst, None))
    return report


def find_cases(root: str | Path) -> list[Path]:
    root = Path(root)
    if (root / "case.json").exists():
        return [root]
    return sorted(p.parent for p in root.glob("cases/*/case.json")) or sorted(p.parent for p in root.glob("*/case.json"))
