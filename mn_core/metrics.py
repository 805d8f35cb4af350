"""Image metrics of the colorization papers, computed by well-kept libraries, on RGB images as uint8 arrays.

Every function takes ``(H, W, 3)`` uint8 arrays (a prediction and its target of the same size). Definitions:

=============  ====  ==========================================================================================
name           best  definition (library)
=============  ====  ==========================================================================================
psnr           high  10 log10(1 / MSE) over all pixels and channels, values in [0, 1] (scikit-image); ``inf``
                     for identical images
ssim           high  mean SSIM of Wang et al. 2004: Gaussian window sigma 1.5 (11 px), K1 0.01, K2 0.03, per
                     channel then averaged, the 5 px border excluded (scikit-image; torchmetrics 1.9 gives
                     the same map but averages it with the border)
ms_ssim        high  multi-scale SSIM, 5 scales with the standard weights (torchmetrics); images must be larger
                     than 160 px on each side
lpips          low   LPIPS with AlexNet features (torchmetrics; network downloaded, see metric_nets)
fid            low   Frechet Inception Distance between the set of predictions and the set of targets, 2048-d
                     pool features of the FID Inception (torchmetrics + torch-fidelity): one number per set
clip           high  cosine similarity of the CLIP ViT-L/14 image embeddings (projected CLS token) of the
                     prediction and the target; ``clip_ref``: prediction and reference
dino           high  the same with DINOv2 ViT-B/14 (pooled CLS token); ``dino_ref``: prediction and reference
point_mse      low   the MangaNinja paper's point-patch colour error: for each point pair, the mean squared
                     difference (RGB in [0, 1]) between prediction and target over the 3x3 patch centred on the
                     pair's line-art point (clipped at the borders), averaged over the pairs
temporal       low   for an ordered sequence: mean |(p[t] - p[t-1]) - (g[t] - g[t-1])| over pixels and channels
                     (RGB in [0, 1]), i.e. how much the prediction's change from the previous frame differs from
                     the target's change; one value per frame from the second on, and their mean
=============  ====  ==========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from .points import Points

PER_IMAGE = ("psnr", "ssim", "ms_ssim", "lpips", "clip", "dino", "point_mse")
PER_SET = ("fid",)
PER_SEQUENCE = ("temporal",)
NAMES = PER_IMAGE + PER_SET + PER_SEQUENCE
DEFAULT = ("psnr", "ssim", "ms_ssim")
NETWORKS = ("lpips", "fid", "clip", "dino")  # metrics that need a downloaded network
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "lpips": False, "fid": False, "clip": True,
                    "clip_ref": True, "dino": True, "dino_ref": True, "point_mse": False, "temporal": False}
MS_SSIM_MIN_SIDE = 161  # (11 - 1) * 2 ** 4 + 1: the 11 px window must fit at the coarsest of the 5 scales


class MetricError(ValueError):
    """Inputs a metric cannot use; the message names the metric and the input."""


def parse_names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"psnr,ssim"`` / a list / ``"all"`` / ``None`` (the default set) -> checked metric names, in table order."""
    if text is None:
        return DEFAULT
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items == ["all"]:
        return NAMES
    unknown = [t for t in items if t not in NAMES]
    if unknown:
        raise MetricError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(NAMES)} or 'all'")
    if not items:
        raise MetricError(f"no metric given; choose from {', '.join(NAMES)} or 'all'")
    return tuple(n for n in NAMES if n in items)


def _need(module: str, package: str, metric: str):
    """Import ``module``, or a one-line error naming the metric and the package to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MetricError(f"metric '{metric}' needs the Python package {package}: pip install {package}") from None


def _float(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float32) / 255.0


def _tensor(*arrays: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) arrays -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div_(255.0)


def check_pair(pred: np.ndarray, target: np.ndarray, what: str = "prediction and target") -> None:
    for name, a in (("prediction", pred), ("target", target)):
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise MetricError(f"{name}: expected an RGB uint8 image (H, W, 3), got {a.dtype} {a.shape}")
    if pred.shape != target.shape:
        raise MetricError(f"{what} differ in size: {pred.shape[1]}x{pred.shape[0]} vs "
                          f"{target.shape[1]}x{target.shape[0]}; give images of the same size (evaluate --resize "
                          "resizes predictions to their targets)")


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    peak_signal_noise_ratio = _need("skimage.metrics", "scikit-image", "psnr").peak_signal_noise_ratio
    if np.array_equal(pred, target):
        return math.inf
    return float(peak_signal_noise_ratio(_float(target), _float(pred), data_range=1.0))


def ssim(pred: np.ndarray, target: np.ndarray) -> float:
    structural_similarity = _need("skimage.metrics", "scikit-image", "ssim").structural_similarity
    if min(pred.shape[:2]) < 11:
        raise MetricError(f"ssim: images of {pred.shape[1]}x{pred.shape[0]} are smaller than its 11 px window")
    # float32 in: scikit-image then works in float32 (uint8 would make it float64, ~1.6x slower).
    return float(structural_similarity(_float(target), _float(pred), data_range=1.0, channel_axis=2,
                                       gaussian_weights=True, sigma=1.5, use_sample_covariance=False))


def ms_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    ms = _need("torchmetrics.functional.image", "torchmetrics", "ms_ssim")
    if min(pred.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise MetricError(f"ms_ssim: images of {pred.shape[1]}x{pred.shape[0]} are too small (each side must be "
                          f"at least {MS_SSIM_MIN_SIDE} px for 5 scales); leave ms_ssim out for small images")
    x = _tensor(pred, target)
    return float(ms.multiscale_structural_similarity_index_measure(x[:1], x[1:], data_range=1.0))


def point_mse(pred: np.ndarray, target: np.ndarray, points: Points) -> float | None:
    """The paper's 3x3 point-patch colour error; None without pairs. Line-art coordinates are scaled to the image
    when the points declare another ``lineart_size``."""
    if not len(points):
        return None
    h, w = pred.shape[:2]
    sx, sy = 1.0, 1.0
    if points.lineart_size is not None:
        sx, sy = w / points.lineart_size[0], h / points.lineart_size[1]
    p, t = _float(pred), _float(target)
    errors = []
    for _, (x, y) in points.pairs:
        cx, cy = min(int(x * sx), w - 1), min(int(y * sy), h - 1)
        if cx < 0 or cy < 0:
            raise MetricError(f"point_mse: line-art point ({x}, {y}) lies outside the {w}x{h} image")
        rows, cols = slice(max(cy - 1, 0), cy + 2), slice(max(cx - 1, 0), cx + 2)
        errors.append(float(np.mean((p[rows, cols] - t[rows, cols]) ** 2)))
    return float(np.mean(errors))


def temporal(preds: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> list[float]:
    """Per frame from the second on: mean |(p[t] - p[t-1]) - (g[t] - g[t-1])| (RGB in [0, 1])."""
    if len(preds) != len(targets):
        raise MetricError(f"temporal: {len(preds)} predicted frames but {len(targets)} target frames")
    out = []
    for t in range(1, len(preds)):
        dp = _float(preds[t]) - _float(preds[t - 1])
        dg = _float(targets[t]) - _float(targets[t - 1])
        if dp.shape != dg.shape:
            raise MetricError(f"temporal: frame {t} differs in size from frame {t - 1}")
        out.append(float(np.mean(np.abs(dp - dg))))
    return out


class Networks:
    """The network metrics, each built on first use (see :mod:`mn_core.metric_nets` for where they come from).

    Not thread-safe: call it from one thread.
    """

    def __init__(self, root=None, *, device="cpu", download: bool = True, clip_also=()):
        self.root, self.device, self.download, self.clip_also = root, torch.device(device), download, tuple(clip_also)
        self._fid = None
        self._fid_count = 0

    @torch.inference_mode()
    def lpips(self, pred: np.ndarray, target: np.ndarray) -> float:
        from . import metric_nets

        metric = metric_nets.lpips(self.root, device=self.device, download=self.download)
        x = _tensor(pred, target).to(self.device)
        value = metric(x[:1], x[1:])
        metric.reset()
        return float(value.reshape(-1)[0])

    @torch.inference_mode()
    def embedding(self, kind: str, image: np.ndarray) -> torch.Tensor:
        """The unit-length image embedding of ``kind`` ('clip' or 'dino')."""
        from PIL import Image

        from . import metric_nets

        pil = Image.fromarray(image)
        if kind == "clip":
            from .images import clip_input

            model = metric_nets.clip(self.root, device=self.device, download=self.download, also=self.clip_also)
            emb = model(pixel_values=clip_input(pil).to(self.device)).image_embeds
        elif kind == "dino":
            model, processor = metric_nets.dino(self.root, device=self.device, download=self.download)
            inputs = processor(images=pil, return_tensors="pt")
            emb = model(pixel_values=inputs["pixel_values"].to(self.device)).pooler_output
        else:
            raise MetricError(f"unknown embedding {kind!r}")
        emb = emb.float().reshape(-1)
        return emb / emb.norm().clamp_min(1e-12)

    def similarity(self, kind: str, a: np.ndarray, b: np.ndarray) -> float:
        return float(torch.dot(self.embedding(kind, a), self.embedding(kind, b)))

    @torch.inference_mode()
    def fid_update(self, pred: np.ndarray, target: np.ndarray) -> None:
        from . import metric_nets

        if self._fid is None:
            self._fid = metric_nets.fid(self.root, device=self.device, download=self.download)
        x = _tensor(pred, target).to(self.device)
        self._fid.update(x[1:], real=True)
        self._fid.update(x[:1], real=False)
        self._fid_count += 1

    @torch.inference_mode()
    def fid_compute(self) -> float | None:
        """FID of everything given to :meth:`fid_update` (None with fewer than 2 pairs), then start over."""
        if self._fid is None or self._fid_count < 2:
            self._fid, self._fid_count = None, 0
            return None
        value = float(self._fid.compute())
        self._fid, self._fid_count = None, 0
        return value


def score_pair(pred: np.ndarray, target: np.ndarray, names: Sequence[str], *, nets: Networks | None = None,
               reference: np.ndarray | None = None, points: Points | None = None) -> dict[str, float | None]:
    """The per-image metrics of ``names`` for one pair (network ones through ``nets``); FID is fed, not computed."""
    check_pair(pred, target)
    out: dict[str, float | None] = {}
    for name in names:
        if name == "psnr":
            out["psnr"] = psnr(pred, target)
        elif name == "ssim":
            out["ssim"] = ssim(pred, target)
        elif name == "ms_ssim":
            out["ms_ssim"] = ms_ssim(pred, target)
        elif name == "point_mse":
            out["point_mse"] = point_mse(pred, target, points) if points is not None else None
        elif name in ("lpips", "clip", "dino", "fid"):
            if nets is None:
                raise MetricError(f"{name}: needs its network (pass nets=Networks(...))")
            if name == "lpips":
                out["lpips"] = nets.lpips(pred, target)
            elif name == "fid":
                nets.fid_update(pred, target)
            else:
                out[name] = nets.similarity(name, pred, target)
                if reference is not None:
                    out[f"{name}_ref"] = nets.similarity(name, pred, reference)
    return out


def cheap(names: Sequence[str]) -> tuple[str, ...]:
    """The metrics of ``names`` that need no network (safe to compute in worker threads)."""
    return tuple(n for n in names if n in PER_IMAGE and n not in NETWORKS)


def mean(values: Sequence[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return float(np.mean(got)) if got else None
