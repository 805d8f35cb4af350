"""The networks some metrics need: where they come from, the folder they live in, fetching them on first use.

=========  =================================================  ==================================================
metric     network                                            source (file under the metric-networks folder)
=========  =================================================  ==================================================
lpips      AlexNet (torchvision ImageNet weights) + LPIPS     torchvision's URL ->
           linear layers (shipped inside torchmetrics)        ``torch_hub/checkpoints/alexnet-owt-7be5be79.pth``
fid        FID Inception-v3 (the 2015 TF graph, converted)    torch-fidelity's URL ->
                                                              ``inception/weights-inception-2015-12-05-....pth``
clip       CLIP ViT-L/14 vision tower + projection            hub ``openai/clip-vit-large-patch14`` (config.json,
                                                              model.safetensors) -> ``models/clip-vit-large-patch14``
dino       DINOv2 ViT-B/14                                    hub ``facebook/dinov2-base`` -> ``dinov2-base/``
=========  =================================================  ==================================================

The URLs are read from the libraries that define the weights (torchvision, torch-fidelity), not written here. The
CLIP files sit at the same place as in the model layout, so a MangaNinja checkpoint folder serves as a metric
folder for CLIP too (``evaluate --models DIR`` looks there first).

**The folder**: the ``root`` argument, else ``$MN_METRICS_HOME``, else ``~/.cache/manganinja/metrics``; in ComfyUI
``models/manganinja/metrics``. A missing file is downloaded on first use, with a progress bar on stderr: hub files
through :func:`mn_core.download.download` (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE`` as for the models),
URL files with ``torch.hub.download_url_to_file`` (temporary file beside the destination, moved into place when
complete). ``$MN_METRICS_MIRROR`` (a base URL) replaces the scheme and host of the URL files, for a local mirror.
With ``download=False``, offline, or when the transfer fails, a :class:`MetricNetError` says in one line which
file is needed, where to put it and where it comes from.

Pickled weight files are opened with ``torch.load(weights_only=True)`` before any library reads them, so a file
that holds anything but tensors is refused (the libraries themselves load these files without that guard).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import torch

from . import layout
from .layout import LayoutFile

DEFAULT_HOME = Path("~/.cache/manganinja/metrics")
DINO_REPO = "facebook/dinov2-base"
_LOCK = threading.RLock()  # building LPIPS sets torch.hub's folder for a moment; downloads one at a time
_CACHE: dict[tuple, object] = {}


class MetricNetError(RuntimeError):
    """A metric's network is missing and could not be fetched; the message is one line and says how to fix it."""


def home(root: str | Path | None = None) -> Path:
    """The metric-networks folder: ``root``, else ``$MN_METRICS_HOME``, else ``~/.cache/manganinja/metrics``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MN_METRICS_HOME")
    return Path(env).expanduser() if env else DEFAULT_HOME.expanduser()


@dataclass(frozen=True)
class UrlFile:
    """A weight file served at a plain URL."""

    metric: str
    what: str
    url: str
    folder: str
    approx_mb: int

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.url.rsplit('/', 1)[-1]}"

    def source_url(self) -> str:
        mirror = os.environ.get("MN_METRICS_MIRROR")
        if not mirror:
            return self.url
        parts = urlsplit(self.url)
        return mirror.rstrip("/") + parts.path


def alexnet_file() -> UrlFile:
    from torchvision.models import AlexNet_Weights

    return UrlFile("lpips", "the AlexNet weights of LPIPS", AlexNet_Weights.IMAGENET1K_V1.url, "torch_hub/checkpoints",
                   233)


def inception_file() -> UrlFile:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ImportError:
        raise MetricNetError("metric 'fid' needs torch-fidelity: pip install torch-fidelity") from None

    return UrlFile("fid", "the FID Inception-v3 weights", URL_INCEPTION_V3, "inception", 91)


CLIP_FILES = (layout.BY_ROLE["clip_config"], layout.BY_ROLE["clip"])
DINO_FILES = tuple(LayoutFile(f"dino_{name.split('.')[0]}", f"dinov2-base/{name}", DINO_REPO, name, "dinov2-base",
                              approx_bytes=size)
                   for name, size in (("config.json", 0), ("preprocessor_config.json", 0),
                                      ("model.safetensors", 346_345_912)))


# --- fetching --------------------------------------------------------------------------------------------------------


def _offline() -> bool:
    from .download import offline_mode

    return offline_mode()


def ensure_url_file(f: UrlFile, root: Path, *, download: bool = True) -> Path:
    dest = root / f.path
    if dest.is_file():
        return dest
    url = f.source_url()
    fix = f"put the file at {dest} (from {url})"
    if not download:
        raise MetricNetError(f"metric '{f.metric}' needs {f.what} at {dest}, which is missing; downloads are off: "
                             f"{fix}, or allow the download")
    if _offline():
        raise MetricNetError(f"metric '{f.metric}' needs {f.what} at {dest}, and downloads are disabled "
                             f"(HF_HUB_OFFLINE): {fix}")
    with _LOCK:
        if dest.is_file():
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        import sys

        print(f"downloading {f.what} for metric '{f.metric}' (about {f.approx_mb} MB): {url} -> {dest}",
              file=sys.stderr)
        try:
            torch.hub.download_url_to_file(url, str(dest), progress=True)
        except Exception as e:  # urllib errors, disk errors
            message = " ".join(str(e).split()) or type(e).__name__
            raise MetricNetError(f"metric '{f.metric}': downloading {f.what} from {url} failed ({message}); "
                                 f"check the network (or $MN_METRICS_MIRROR), or {fix}") from e
    return dest


def ensure_hub_files(metric: str, files: tuple[LayoutFile, ...], root: Path, *, download: bool = True,
                     also: tuple[Path, ...] = ()) -> Path:
    """The folder holding ``files`` (the first of ``also`` + ``root`` that has all of them), fetching into
    ``root`` if none does."""
    for base in (*also, root):
        if all(lf.find(base) is not None for lf in files):
            return base
    missing = [lf for lf in files if lf.find(root) is None]
    where = ", ".join(str(root / lf.path) for lf in missing)
    repo = files[0].repo
    if not download:
        raise MetricNetError(f"metric '{metric}' needs {where} (from https://huggingface.co/{repo}); downloads "
                             "are off: copy the files there, or allow the download")
    from .download import DownloadError, download as hub_download

    def progress(role, done, total):
        if done == total and total:
            import sys

            print(f"metric '{metric}': {role} ({done / 1e6:.1f} MB)", file=sys.stderr)

    with _LOCK:
        try:
            hub_download(root, missing, progress=progress)
        except DownloadError as e:
            message = " ".join(str(e).split())
            raise MetricNetError(f"metric '{metric}' needs {where}: {message}") from e
    return root


def check_tensors_only(path: Path, what: str) -> None:
    """Refuse a pickled weight file that holds anything but tensors (before a library loads it unguarded)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        message = " ".join(str(e).split())[:300]
        raise MetricNetError(f"{path} ({what}) is not a plain file of weights ({message}); delete it so it is "
                             "downloaded again") from e
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MetricNetError(f"{path} ({what}) is not a state dict of tensors; delete it so it is downloaded again")


# --- the networks ------------------------------------------------------------------------------------------------


def _cached(key: tuple, build):
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def lpips(root: str | Path | None = None, *, device="cpu", download: bool = True):
    """torchmetrics' LPIPS (AlexNet), taking images in [0, 1]; returns a per-image score with ``reduction='none'``."""
    root = home(root)
    f = alexnet_file()
    path = ensure_url_file(f, root, download=download)

    def build():
        check_tensors_only(path, f.what)
        try:
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
        except ImportError:
            raise MetricNetError("metric 'lpips' needs torchmetrics: pip install torchmetrics") from None

        with _LOCK:  # torchvision finds the weights in torch.hub's folder: point it at ours while building
            previous = torch.hub.get_dir()
            torch.hub.set_dir(str(root / "torch_hub"))
            try:
                metric = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True, reduction="none")
            finally:
                torch.hub.set_dir(previous)
        return metric.to(device).eval()

    return _cached(("lpips", str(root), str(device)), build)


def fid(root: str | Path | None = None, *, device="cpu", download: bool = True):
    """A fresh torchmetrics FrechetInceptionDistance (2048 features, images in [0, 1])."""
    root = home(root)
    f = inception_file()
    path = ensure_url_file(f, root, download=download)
    check_tensors_only(path, f.what)
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance

        metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(path))
    except ImportError as e:
        raise MetricNetError(f"metric 'fid' needs torchmetrics and torch-fidelity: pip install torchmetrics "
                             f"torch-fidelity ({e})") from e
    return metric.to(device)


def clip(root: str | Path | None = None, *, device="cpu", download: bool = True, also: tuple[Path, ...] = ()):
    """CLIPVisionModelWithProjection (fp32, eval), loaded by the pipeline's own CLIP loader."""
    root = home(root)
    base = ensure_hub_files("clip", CLIP_FILES, root, download=download, also=also)

    def build():
        from .models import ClipFiles, load_clip_vision

        files = ClipFiles(clip=CLIP_FILES[1].find(base), clip_config=CLIP_FILES[0].find(base))
        return load_clip_vision(files, dtype=torch.float32, device=device).eval()

    return _cached(("clip", str(base), str(device)), build)


def dino(root: str | Path | None = None, *, device="cpu", download: bool = True):
    """(DINOv2 model, its image processor) from transformers."""
    root = home(root)
    base = ensure_hub_files("dino", DINO_FILES, root, download=download)
    folder = base / DINO_FILES[0].local_dir

    def build():
        from transformers import AutoImageProcessor, AutoModel

        model, info = AutoModel.from_pretrained(folder, output_loading_info=True)
        absent = list(info.get("missing_keys") or []) + [str(k) for k in info.get("mismatched_keys") or []]
        if absent:
            raise MetricNetError(f"{folder}: the DINOv2 weights lack {len(absent)} of the model's tensors "
                                 f"(e.g. {absent[0]}); delete the folder so it is downloaded again")
        return model.float().to(device).eval(), AutoImageProcessor.from_pretrained(folder)

    return _cached(("dino", str(base), str(device)), build)
