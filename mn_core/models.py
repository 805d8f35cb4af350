"""The MangaNinja networks: which files each one is built from, and how.

Sizes always come from the configs in the checkpoint folder (or, for files that ship without a config, from the
tensor shapes), never from constants, so tiny test checkpoints load through exactly the same code as the real ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from . import layout
from .lineart import LineartGenerator
from .loading import CheckpointError, Source, TensorFile, empty_weights, load_module, read_json
from .pointnet import PointNet
from .sampling import DDIMSchedule

log = logging.getLogger("mn_core.models")

# The reference UNet has no output head; upstream ignores these keys when they appear in its files.
REFERENCE_UNET_IGNORED = ("conv_norm_out.", "conv_out.")


@dataclass
class ModelFiles:
    """Every file the pipeline reads. ``None`` marks an optional file that is absent."""

    scheduler_config: Path
    unet_config: Path
    vae_config: Path
    vae: Path
    clip_config: Path
    clip: Path
    controlnet_config: Path
    annotator: Path
    denoising_unet: Path
    reference_unet: Path
    controlnet: Path
    point_net: Path
    unet_base: Path | None = None
    controlnet_base: Path | None = None

    @classmethod
    def from_folder(cls, root: str | Path) -> ModelFiles:
        """The files of the official layout under ``root``; raises CheckpointError listing what is missing."""
        root = Path(root)
        if not root.is_dir():
            raise CheckpointError(f"{root}: models folder not found")
        found, missing = {}, []
        for f in fields(cls):
            path = layout.find(root, f.name)
            if path is None and not layout.BY_ROLE[f.name].base_only:
                missing.append(layout.BY_ROLE[f.name])
            found[f.name] = path
        if missing:
            lines = "\n  ".join(f"{root / m.path}   (from https://huggingface.co/{m.repo}, file {m.repo_file})"
                                for m in missing)
            raise CheckpointError(f"{len(missing)} model file(s) missing under {root}:\n  {lines}\n"
                                  "Download them (python -m mn_core download --models DIR, or the --download option) "
                                  "or copy them there.")
        return cls(**found)


# ---------------------------------------------------------------------------------------------------------------


def _diffusers_module(cls, config: dict, what: str) -> nn.Module:
    try:
        with empty_weights():
            return cls.from_config(config)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot build the {what} from its config: {type(e).__name__}: {e}") from e


def _overlay_and_base(overlay: Path, base: Path | None, *, allow_extra=()) -> list[Source]:
    sources = [Source(TensorFile(overlay), allow_extra=allow_extra)]
    if base is not None:
        sources.append(Source(TensorFile(base), allow_extra=allow_extra))
    return sources


def build_unet(config: dict, *, reference: bool) -> nn.Module:
    """An empty (meta) UNet. The reference UNet is the same network without its output head: its forward pass
    is stopped after the last transformer block, and upstream never creates the head."""
    from diffusers import UNet2DConditionModel

    unet = _diffusers_module(UNet2DConditionModel, config, "reference UNet" if reference else "denoising UNet")
    if reference:
        unet.conv_norm_out = None
        unet.conv_out = nn.Identity()
    return unet


def build_controlnet(config: dict) -> nn.Module:
    from diffusers import ControlNetModel

    return _diffusers_module(ControlNetModel, config, "ControlNet")


def build_vae(config: dict) -> nn.Module:
    from diffusers import AutoencoderKL

    return _diffusers_module(AutoencoderKL, config, "VAE")


def build_clip_vision(vision_config) -> nn.Module:
    from transformers import CLIPVisionModelWithProjection

    with empty_weights():
        return CLIPVisionModelWithProjection(vision_config)


def build_clip_text(text_config) -> nn.Module:
    from transformers import CLIPTextModel

    with empty_weights():
        return CLIPTextModel(text_config)


def load_unet(files: ModelFiles, *, reference: bool, dtype: torch.dtype, device="cpu") -> nn.Module:
    """Denoising UNet, or the reference UNet (the same network without its output head)."""
    what = "reference UNet" if reference else "denoising UNet"
    unet = build_unet(read_json(files.unet_config), reference=reference)
    overlay = files.reference_unet if reference else files.denoising_unet
    allow = REFERENCE_UNET_IGNORED if reference else ()
    return load_module(unet, _overlay_and_base(overlay, files.unet_base, allow_extra=allow), what=what, dtype=dtype,
                       device=device)


def load_controlnet(files: ModelFiles, *, dtype: torch.dtype, device="cpu") -> nn.Module:
    config = read_json(files.controlnet_config)
    order = config.get("controlnet_conditioning_channel_order", "rgb")
    if order != "rgb":
        raise CheckpointError(f"{files.controlnet_config}: channel order {order!r}; the line-art ControlNet uses 'rgb'")
    net = build_controlnet(config)
    return load_module(net, _overlay_and_base(files.controlnet, files.controlnet_base), what="ControlNet",
                       dtype=dtype, device=device)


def load_vae(files: ModelFiles, *, dtype: torch.dtype, device="cpu") -> nn.Module:
    vae = build_vae(read_json(files.vae_config))
    return load_module(vae, [Source(TensorFile(files.vae))], what="VAE", dtype=dtype, device=device)


def _clip_config(files: ModelFiles):
    from transformers import CLIPConfig

    raw = read_json(files.clip_config)
    if raw.get("model_type") != "clip":
        raise CheckpointError(f"{files.clip_config}: expected a full CLIP config (model_type 'clip'), "
                              f"found model_type {raw.get('model_type')!r}")
    return CLIPConfig.from_dict(raw)


def _tower_source(file: TensorFile, module: nn.Module, prefix: str) -> Source:
    """The CLIP file holds both towers; newer transformers drop the tower prefix from a tower's own keys."""
    keys = module.state_dict(keep_vars=True).keys()
    strip = "" if any(k.startswith(prefix) for k in keys) else prefix
    return Source(file, prefix=strip, allow_any_extra=True)


def load_clip_vision(files: ModelFiles, *, dtype: torch.dtype, device="cpu") -> nn.Module:
    """CLIPVisionModelWithProjection: its ``image_embeds`` (projected CLS token) are MangaNinja's context."""
    config = _clip_config(files)
    vision = config.vision_config
    vision.projection_dim = config.projection_dim
    model = build_clip_vision(vision)
    return load_module(model, [_tower_source(TensorFile(files.clip), model, "vision_model.")],
                       what="CLIP vision model", dtype=dtype, device=device)


def compute_null_context(files: ModelFiles) -> torch.Tensor:
    """The unconditional context: the CLIP text model's output at the BOS position for the empty prompt.

    The empty prompt tokenises to [BOS, EOS] (49406, 49407 for CLIP), so no tokenizer files are needed. The text
    model is built, used once in float32 on the CPU, and dropped.
    """
    config = _clip_config(files).text_config
    model = build_clip_text(config)
    load_module(model, [_tower_source(TensorFile(files.clip), model, "text_model.")], what="CLIP text model",
                dtype=torch.float32)
    ids = torch.tensor([[config.bos_token_id, config.eos_token_id]])
    with torch.inference_mode():
        hidden = model(input_ids=ids).last_hidden_state
    return hidden[:, 0, :].reshape(1, 1, -1).clone()


def load_point_net(files: ModelFiles, *, unet_channels: tuple[int, ...], dtype: torch.dtype, device="cpu") -> PointNet:
    file = TensorFile(files.point_net)
    shapes = {k: file.shape(k) for k in file.keys()}
    try:
        stages = PointNet.stages_from_shapes(shapes)
    except ValueError as e:
        raise CheckpointError(f"{files.point_net}: not a MangaNinja PointNet ({e})") from e
    widths = tuple(c for c, _ in stages)
    if widths != tuple(unet_channels):
        raise CheckpointError(f"{files.point_net}: PointNet stage widths {widths} do not match the UNet's "
                              f"block_out_channels {tuple(unet_channels)}")
    with empty_weights():
        net = PointNet(stages)
    return load_module(net, [Source(file)], what="PointNet", dtype=dtype, device=device)


def load_annotator(files: ModelFiles, device="cpu") -> LineartGenerator:
    """The line extractor, always float32 (its output is thresholded)."""
    file = TensorFile(files.annotator)
    try:
        config = LineartGenerator.config_from_shapes({k: file.shape(k) for k in file.keys()})
    except ValueError as e:
        raise CheckpointError(f"{files.annotator}: {e}") from e
    with empty_weights():
        net = LineartGenerator(**config)
    return load_module(net, [Source(file)], what="line-art annotator", dtype=torch.float32, device=device)


def load_schedule(files: ModelFiles) -> DDIMSchedule:
    try:
        return DDIMSchedule.from_config(read_json(files.scheduler_config))
    except ValueError as e:
        raise CheckpointError(f"{files.scheduler_config}: {e}") from e


def _expected_keys(role: str, root: Path) -> set[str]:
    if role == "controlnet":
        net = build_controlnet(read_json(layout.find(root, "controlnet_config")))
    else:
        net = build_unet(read_json(layout.find(root, "unet_config")), reference=role == "reference_unet")
    return set(net.state_dict(keep_vars=True))


def base_files_needed(root: str | Path) -> list[str]:
    """Base-weight roles that some present MangaNinja overlay needs (its file lacks keys of its module).

    If the overlays are complete state dicts, the 3.4 GB SD1.5 UNet and the 1.4 GB line-art ControlNet
    weights are never read, so they need not be downloaded.
    """
    root = Path(root)
    needed = []
    for overlay, base in layout.BASE_FOR_OVERLAY.items():
        path = layout.find(root, overlay)
        if path is None or base in needed:
            continue
        have = set(TensorFile(path).keys())
        if _expected_keys(overlay, root) - have:
            needed.append(base)
    return needed


def ensure_models(root: str | Path, *, progress=None, endpoint: str | None = None) -> None:
    """Download whatever the official layout under ``root`` is missing (base weights only if an overlay needs them)."""
    from .download import download

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    download(root, progress=progress, endpoint=endpoint)
    bases = base_files_needed(root)
    if bases:
        log.info("MangaNinja overlays are partial; fetching base weights: %s", ", ".join(bases))
        download(root, bases, progress=progress, endpoint=endpoint)
