"""The official MangaNinja checkpoint folder and where each of its files comes from.

The official code reads one folder (``checkpoints/`` in its README)::

    StableDiffusion/{scheduler,unet,vae}/...        SD1.5 in diffusers format
    models/clip-vit-large-patch14/...               CLIP ViT-L/14 (vision tower + the text tower for the null token)
    models/control_v11p_sd15_lineart/...            the line-art ControlNet the MangaNinja ControlNet starts from
    models/Annotators/sk_model.pth                  the informative-drawings line extractor
    MangaNinjia/{denoising_unet,reference_unet,controlnet,point_net}.pth   the MangaNinja weights

Every weight file may also be given as ``.safetensors`` (or ``.bin`` where diffusers/transformers use that name).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SD15_REPO = "stable-diffusion-v1-5/stable-diffusion-v1-5"
CLIP_REPO = "openai/clip-vit-large-patch14"
CONTROLNET_REPO = "lllyasviel/control_v11p_sd15_lineart"
ANNOTATOR_REPO = "lllyasviel/Annotators"
MANGANINJA_REPO = "Johanan0528/MangaNinjia"


@dataclass(frozen=True)
class LayoutFile:
    """One file of the layout.

    ``path`` is where it lives in the checkpoint folder; ``alternatives`` are other accepted names at the same place.
    ``repo``/``repo_file`` say where the hub serves it: downloading puts ``repo_file`` under ``local_dir``, which
    gives exactly ``path``. ``base_only`` marks the SD1.5/ControlNet base weights, which are needed only when a
    MangaNinja overlay does not hold every key of its module.
    """

    role: str
    path: str
    repo: str
    repo_file: str
    local_dir: str
    alternatives: tuple[str, ...] = ()
    approx_bytes: int = 0  # 4 bytes per fp32 parameter of the module (from the key manifests)
    base_only: bool = False

    def candidates(self) -> tuple[str, ...]:
        return (self.path, *self.alternatives)

    def find(self, root: str | Path) -> Path | None:
        """The existing file for this role under ``root``, or None."""
        root = Path(root)
        for rel in self.candidates():
            p = root / rel
            if p.is_file():
                return p
        return None


def _f(role, local_dir, repo, repo_file, alternatives=(), approx_bytes=0, base_only=False):
    path = f"{local_dir}/{repo_file}"
    alts = tuple(f"{local_dir}/{a}" for a in alternatives)
    return LayoutFile(role, path, repo, repo_file, local_dir, alts, approx_bytes, base_only)


_SD = "StableDiffusion"
_CLIP = "models/clip-vit-large-patch14"
_CN = "models/control_v11p_sd15_lineart"
_MN = "MangaNinjia"

FILES: tuple[LayoutFile, ...] = (
    _f("scheduler_config", _SD, SD15_REPO, "scheduler/scheduler_config.json"),
    _f("unet_config", _SD, SD15_REPO, "unet/config.json"),
    _f("unet_base", _SD, SD15_REPO, "unet/diffusion_pytorch_model.safetensors",
       ("unet/diffusion_pytorch_model.bin",), 3_438_083_856, base_only=True),
    _f("vae_config", _SD, SD15_REPO, "vae/config.json"),
    _f("vae", _SD, SD15_REPO, "vae/diffusion_pytorch_model.safetensors",
       ("vae/diffusion_pytorch_model.bin",), 334_615_452),
    _f("clip_config", _CLIP, CLIP_REPO, "config.json"),
    _f("clip", _CLIP, CLIP_REPO, "model.safetensors", ("pytorch_model.bin",), 1_708_106_756),
    _f("controlnet_config", _CN, CONTROLNET_REPO, "config.json"),
    _f("controlnet_base", _CN, CONTROLNET_REPO, "diffusion_pytorch_model.safetensors",
       ("diffusion_pytorch_model.bin",), 1_445_116_480, base_only=True),
    _f("annotator", "models/Annotators", ANNOTATOR_REPO, "sk_model.pth", ("sk_model.safetensors",), 17_163_780),
    _f("denoising_unet", _MN, MANGANINJA_REPO, "denoising_unet.pth", ("denoising_unet.safetensors",),
       3_438_083_856),
    _f("reference_unet", _MN, MANGANINJA_REPO, "reference_unet.pth", ("reference_unet.safetensors",),
       3_438_035_200),
    _f("controlnet", _MN, MANGANINJA_REPO, "controlnet.pth", ("controlnet.safetensors",), 1_445_116_480),
    _f("point_net", _MN, MANGANINJA_REPO, "point_net.pth", ("point_net.safetensors",), 103_247_360),
)

BY_ROLE: dict[str, LayoutFile] = {f.role: f for f in FILES}

# Which overlay each base weight file completes.
BASE_FOR_OVERLAY = {"denoising_unet": "unet_base", "reference_unet": "unet_base", "controlnet": "controlnet_base"}


def find(root: str | Path, role: str) -> Path | None:
    return BY_ROLE[role].find(root)


def missing(root: str | Path, roles=None) -> list[LayoutFile]:
    """Layout files (of ``roles``, default all but the base-only weights) that are not present under ``root``."""
    wanted = [f for f in FILES if (f.role in roles if roles is not None else not f.base_only)]
    return [f for f in wanted if f.find(root) is None]
