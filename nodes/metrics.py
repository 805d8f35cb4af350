"""Colorization Metrics: score coloured images against targets (PSNR, SSIM, ... as in mn_core.metrics).

The numbers are shown on the node (js/metrics.js shows the node's ui ``text``) and given out as a STRING table and
as the mean PSNR and SSIM. Metrics with networks (lpips, clip, dino, fid) fetch them on first use into
``models/manganinja/metrics`` (see mn_core/metric_nets.py).
"""

from __future__ import annotations

import os

from ..mn_core import evaluate as mn_evaluate
from ..mn_core import metrics as mn_metrics
from ..mn_core.points import Points
from . import bridge

DEFAULT_METRICS = ", ".join(mn_metrics.DEFAULT)


class ColorizationMetrics:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "the coloured image(s)"}),
                "target": ("IMAGE", {"tooltip": "the ground truth: one image, or one per image"}),
                "metrics": ("STRING", {"default": DEFAULT_METRICS, "multiline": False,
                                       "tooltip": "comma-separated: " + ", ".join(mn_metrics.NAMES) + ", or all"}),
                "sequence": ("BOOLEAN", {"default": False,
                                         "tooltip": "the batch is the frames of one shot: adds 'temporal'"}),
            },
            "optional": {
                "reference": ("IMAGE", {"tooltip": "clip/dino are also scored against it (clip_ref, dino_ref)"}),
                "points": ("MANGANINJA_POINTS", {"tooltip": "adds point_mse (the paper's 3x3 point-patch error)"}),
            },
        }

    RETURN_TYPES = ("STRING", "FLOAT", "FLOAT")
    RETURN_NAMES = ("report", "psnr", "ssim")
    OUTPUT_TOOLTIPS = ("the table shown on the node", "mean PSNR (0 when not computed)",
                       "mean SSIM (0 when not computed)")
    FUNCTION = "measure"
    OUTPUT_NODE = True  # it shows its numbers: it runs even when nothing uses its outputs
    CATEGORY = "MangaNinja"
    DESCRIPTION = "PSNR, SSIM, MS-SSIM, LPIPS, FID, CLIP/DINO similarity, point-patch and temporal error."

    def measure(self, image, target, metrics, sequence, reference=None, points=None):
        if points is not None:
            bridge.expect(points, Points, "Colorization Metrics", "points", "Point Editor or Suggest Points")
        try:
            names = list(mn_metrics.parse_names(metrics))
        except ValueError as e:
            raise ValueError(f"Colorization Metrics: `metrics`: {e}") from None
        if points is not None and len(points) and "point_mse" not in names:
            names.append("point_mse")
        if sequence and "temporal" not in names:
            names.append("temporal")
        nets = None
        if any(n in mn_metrics.NETWORKS for n in names):
            nets = mn_metrics.Networks(os.path.join(bridge.model_roots()[0], "metrics"),
                                       device=bridge.compute_device())
        progress = bridge.Progress(len(bridge.image_batch(image, "image")))
        report = mn_evaluate.score_images(bridge.image_batch(image, "image"), bridge.image_batch(target, "target"),
                                          names, nets=nets, references=reference, points=points,
                                          sequence=sequence, progress=lambda done, total: progress.update(1))
        text = mn_evaluate.table(report, per_image=64)
        mean = report.mean
        return {"ui": {"text": [text]},
                "result": (text, float(mean.get("psnr") or 0.0), float(mean.get("ssim") or 0.0))}
