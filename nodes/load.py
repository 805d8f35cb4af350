"""Load MangaNinja: the official checkpoint folder under models/manganinja, optionally downloaded on first run."""

from __future__ import annotations

from pathlib import Path

from ..mn_core import choices, models
from ..mn_core.assembly import Checkpoint, assemble, channels_last_networks
from ..mn_core.pipeline import MangaNinja
from ..mn_core.placement import PRECISIONS
from . import bridge

AUTO = "auto"


def _choices(folder: str) -> list[str]:
    return [AUTO] + bridge.standard_files(folder)


def _pick_standard(folder: str, choice: str, auto_names: tuple[str, ...]) -> Path | None:
    """The file chosen in a standard ComfyUI folder; with "auto", one whose name matches ``auto_names``."""
    if choice != AUTO:
        path = bridge.standard_path(folder, choice)
        if path is None:
            raise FileNotFoundError(f"{choice} not found in the ComfyUI '{folder}' folder")
        return Path(path)
    for name in bridge.standard_files(folder):
        if any(a in Path(name).name.lower() for a in auto_names):
            return Path(bridge.standard_path(folder, name))
    return None


def _checkpoints() -> list[str]:
    """``auto`` (the layout in models/manganinja itself) and each subfolder of it that holds a layout of its own
    (a ``MangaNinjia`` folder), e.g. a fine-tuned MangaNinja beside the official one."""
    names = set()
    for root in bridge.model_roots():
        try:
            names.update(p.name for p in Path(root).iterdir() if (p / "MangaNinjia").is_dir())
        except OSError:
            continue
    return [AUTO] + sorted(names)


def _checkpoint_root(checkpoint: str) -> Path:
    if checkpoint in (None, AUTO):
        return _root()
    roots = [Path(r) for r in bridge.model_roots()]
    for r in roots:
        if (r / checkpoint / "MangaNinjia").is_dir():
            return r / checkpoint
    raise FileNotFoundError(
        f"checkpoint: no folder {checkpoint!r} with a MangaNinjia/ layout under {', '.join(map(str, roots))}; "
        f"choose one of {_checkpoints()} (a checkpoint is a subfolder of models/manganinja in the official layout)")


class LoadMangaNinja:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "precision": (list(choices.PRECISIONS), {
                    "default": "auto", "tooltip": "auto follows ComfyUI's choice for this GPU and its --fp16-unet/"
                                                  "--bf16-unet/--force-fp32 flags; fp32 reproduces the official "
                                                  "numbers"}),
                "download": ("BOOLEAN", {
                    "default": False, "tooltip": "download missing files from Hugging Face into models/manganinja "
                                                 "(only when this node runs)"}),
            },
            "optional": {
                "clip_vision": (_choices("clip_vision"), {
                    "default": AUTO, "tooltip": "CLIP ViT-L/14 *with projection*; auto uses models/manganinja's "
                                                "clip-vit-large-patch14"}),
                "vae": (_choices("vae"), {
                    "default": AUTO, "tooltip": "auto uses the SD1.5 VAE of models/manganinja (the one MangaNinja was "
                                                "trained with)"}),
                "controlnet": (_choices("controlnet"), {
                    "default": AUTO, "tooltip": "the control_v11p_sd15_lineart base, read only if MangaNinja's "
                                                "controlnet.pth lacks keys; auto finds it in models/controlnet"}),
                "checkpoint": (_checkpoints(), {
                    "default": AUTO, "tooltip": "auto: the official layout in models/manganinja; or a subfolder of "
                                                "it holding another MangaNinja in the same layout (a fine-tune)"}),
            },
        }

    RETURN_TYPES = ("MANGANINJA_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    CATEGORY = "MangaNinja"
    DESCRIPTION = "Loads MangaNinja (official checkpoint layout in models/manganinja) into ComfyUI's model manager."

    def load(self, precision, download, clip_vision=AUTO, vae=AUTO, controlnet=AUTO, checkpoint=AUTO):
        return (load_pipeline(precision, download, clip_vision, vae, controlnet, checkpoint),)


def model_files(root: Path, clip_vision=AUTO, vae=AUTO, controlnet=AUTO) -> models.ModelFiles:
    overrides = {}
    if clip_vision != AUTO:
        overrides["clip_vision"] = _pick_standard("clip_vision", clip_vision, ())
    if vae != AUTO:
        overrides["vae"] = _pick_standard("vae", vae, ())
    if models.layout.find(root, "controlnet_base") is None:
        picked = _pick_standard("controlnet", controlnet, ("control_v11p_sd15_lineart",))
        if picked is not None:
            overrides["controlnet_base"] = picked
    if overrides.get("clip_vision") is not None and models.layout.find(root, "clip") is None:
        text = _pick_standard("text_encoders", AUTO, ("clip_l",))
        if text is not None:
            overrides["clip_text"] = text
    return models.ModelFiles.from_folder(root, overrides)


def _root() -> Path:
    roots = [Path(r) for r in bridge.model_roots()]
    for r in roots:
        if (r / "MangaNinjia").is_dir():
            return r
    return roots[0]


def load_pipeline(precision: str, download: bool, clip_vision=AUTO, vae=AUTO, controlnet=AUTO,
                  checkpoint=AUTO) -> MangaNinja:
    root = _checkpoint_root(checkpoint)
    if download:
        bar = bridge.Progress(100)
        models.ensure_models(root, progress=lambda role, done, total: bar.set(int(100 * done / max(total, 1)), 100))
    files = model_files(root, clip_vision, vae, controlnet)
    device = bridge.compute_device()
    dtype = bridge.auto_precision(device) if precision == "auto" else PRECISIONS[precision]
    return assemble(Checkpoint.from_files(files, dtype, device="cpu"),
                    lambda loaders: bridge.make_owner({name: load() for name, load in loaders.items()}, device),
                    dtype=dtype, channels_last=channels_last_networks(None, device))
