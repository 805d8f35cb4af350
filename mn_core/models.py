"""The MangaNinja networks: which files each one is built from, and how.

Sizes always come from the configs in the checkpoint folder (or, for files that ship without a config, from the
tensor shapes), never from constants, so tiny test checkpoints load through exactly the same code as the real ones.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from torch import nn

from . import layout
from .annotator import LineartGenerator
from .loading import CheckpointError, Source, TensorFile, empty_weights, load_module, read_json
from .pointnet import PointNet
from .sampling import DDIMSchedule

log = logging.getLogger("mn_core.models")

# The reference UNet has no output head; upstream ignores these keys when they appear in its files.
REFERENCE_UNET_IGNORED = ("conv_norm_out.", "conv_out.")


@dataclass
class ModelFiles:
    """Every file the pipeline reads. ``None`` marks an optional file that is absent.

    The official layout provides all of them. ComfyUI users may already have some networks as single files in
    ComfyUI's own folders; those come in as overrides: ``clip_vision`` (a CLIP ViT-L/14 vision tower with its
    projection), ``clip_text`` (the matching text tower, e.g. SD1.5's clip_l, only used for the null token),
    ``vae`` and ``controlnet_base`` (diffusers or original single-file key names). Configs that such files lack
    are read from their weights' shapes.
    """

    scheduler_config: Path
    unet_config: Path
    controlnet_config: Path
    annotator: Path
    denoising_unet: Path
    reference_unet: Path
    controlnet: Path
    point_net: Path
    vae: Path
    vae_config: Path | None = None
    clip: Path | None = None
    clip_config: Path | None = None
    clip_vision: Path | None = None
    clip_text: Path | None = None
    unet_base: Path | None = None
    controlnet_base: Path | None = None

    @classmethod
    def from_folder(cls, root: str | Path, overrides: dict[str, str | Path] | None = None) -> ModelFiles:
        """The files of the official layout under ``root`` (plus overrides); raises CheckpointError listing what
        is missing, with where each file comes from."""
        root = Path(root)
        overrides = {k: Path(v) for k, v in (overrides or {}).items() if v is not None}
        unknown = set(overrides) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown model file roles: {sorted(unknown)}")
        for role, path in overrides.items():
            if not path.is_file():
                raise CheckpointError(f"{path}: file not found (given for {role})")
        found = {f.name: overrides.get(f.name) or (layout.find(root, f.name) if f.name in layout.BY_ROLE else None)
                 for f in fields(cls)}
        optional = {r for r, lf in layout.BY_ROLE.items() if lf.base_only}
        if found["clip_vision"] is not None and found["clip_text"] is not None:
            optional |= {"clip", "clip_config"}
        if "vae" in overrides:
            optional.add("vae_config")
        missing = [layout.BY_ROLE[r] for r in layout.BY_ROLE if found.get(r) is None and r not in optional]
        if missing:
            lines = "\n  ".join(f"{root / m.path}   (from https://huggingface.co/{m.repo}, file {m.repo_file})"
                                for m in missing)
            raise CheckpointError(f"{len(missing)} model file(s) missing under {root}:\n  {lines}\n"
                                  "Download them (python -m mn_core download --models DIR, or the --download option) "
                                  "or copy them there.")
        from .download import check_sizes

        damaged = check_sizes(root)  # a downloaded file cut short or overwritten since (one stat per file)
        if damaged:
            raise CheckpointError("\n".join(damaged))
        return cls(**found)


@dataclass
class ClipFiles:
    """Just the CLIP files (what :func:`load_clip_vision` reads), e.g. for the CLIP image-similarity metric."""

    clip: Path | None
    clip_config: Path | None = None
    clip_vision: Path | None = None


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
    return without_output_head(unet) if reference else unet


def without_output_head(unet: nn.Module) -> nn.Module:
    """The reference UNet: a UNet whose output head is removed (its keys are REFERENCE_UNET_IGNORED)."""
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
    sources = [Source(TensorFile(files.controlnet))]
    if files.controlnet_base is not None:
        sources.append(_maybe_original(TensorFile(files.controlnet_base), net, "controlnet", config))
    return load_module(net, sources, what="ControlNet", dtype=dtype, device=device)


def _maybe_original(file: TensorFile, module: nn.Module, kind: str, config: dict) -> Source:
    """A Source for a file in diffusers names, or in the original single-file names (converted)."""
    from . import convert

    keys = file.keys()
    if kind == "vae" and convert.is_ldm_vae(keys):
        names = convert.ldm_names(module.state_dict(keep_vars=True).keys(), "vae", config)
        inverse = {v: k for k, v in names.items()}
        return Source(file, rename=lambda k: inverse.get(k, k), convert=convert.vae_tensor_to_diffusers,
                      allow_any_extra=True)
    if kind == "controlnet" and convert.is_ldm_controlnet(keys):
        names = convert.ldm_names(module.state_dict(keep_vars=True).keys(), "controlnet", config)
        inverse = {v: k for k, v in names.items()}
        prefix = "control_model." if any(k.startswith("control_model.") for k in keys) else ""
        return Source(file, prefix=prefix, rename=lambda k: inverse.get(k, k))
    return Source(file)


def _shapes(file: TensorFile) -> dict[str, tuple[int, ...]]:
    return {k: file.shape(k) for k in file.keys()}


def infer_vae_config(file: TensorFile) -> dict:
    """An AutoencoderKL config from a VAE file's shapes (diffusers or original names)."""
    from . import convert

    shapes = _shapes(file)
    if convert.is_ldm_vae(shapes):
        levels = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down."))
        widths = [shapes[f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)]
        layers = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down.0.block.")})
    else:
        levels = 1 + max(int(k.split(".")[2]) for k in shapes if k.startswith("encoder.down_blocks."))
        widths = [shapes[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"][0] for i in range(levels)]
        layers = len({k.split(".")[4] for k in shapes if k.startswith("encoder.down_blocks.0.resnets.")})
    try:
        latent = shapes["quant_conv.weight"][0] // 2
        cfg = {"block_out_channels": widths, "layers_per_block": layers, "latent_channels": latent,
               "in_channels": shapes["encoder.conv_in.weight"][1], "out_channels": shapes["decoder.conv_out.weight"][0],
               "down_block_types": ["DownEncoderBlock2D"] * levels, "up_block_types": ["UpDecoderBlock2D"] * levels,
               "norm_num_groups": 32, "act_fn": "silu", "sample_size": 512}
    except KeyError as e:
        raise CheckpointError(f"{file.path}: not a VAE checkpoint (no {e})") from None
    return cfg


def load_vae(files: ModelFiles, *, dtype: torch.dtype, device="cpu") -> nn.Module:
    file = TensorFile(files.vae)
    config = read_json(files.vae_config) if files.vae_config is not None else infer_vae_config(file)
    vae = build_vae(config)
    return load_module(vae, [_maybe_original(file, vae, "vae", config)], what="VAE", dtype=dtype, device=device)


def _tower_prefix(file: TensorFile, marker: str) -> str | None:
    """The prefix in front of ``marker`` (e.g. 'text_model.embeddings.token_embedding.weight') in this file."""
    for k in file.keys():
        if k.endswith(marker):
            return k[: -len(marker)]
    return None


def _count_layers(shapes, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"encoder\.layers\.(\d+)\.")
    return len({m.group(1) for k in shapes if (m := pattern.match(k))})


def _clip_config(files: ModelFiles):
    from transformers import CLIPConfig

    raw = read_json(files.clip_config)
    if raw.get("model_type") != "clip":
        raise CheckpointError(f"{files.clip_config}: expected a full CLIP config (model_type 'clip'), "
                              f"found model_type {raw.get('model_type')!r}")
    return CLIPConfig.from_dict(raw)


def _vision_config(files: ModelFiles, file: TensorFile, prefix: str):
    """From the layout's CLIP config, or (single vision file) from the shapes, with CLIP's 64-wide heads."""
    from transformers import CLIPVisionConfig

    if files.clip_config is not None:
        config = _clip_config(files)
        vision = config.vision_config
        vision.projection_dim = config.projection_dim
        return vision
    shapes = _shapes(file)
    p = prefix + "vision_model."
    hidden, _, patch, _ = shapes[p + "embeddings.patch_embedding.weight"]
    positions = shapes[p + "embeddings.position_embedding.weight"][0]
    projection = shapes.get(prefix + "visual_projection.weight")
    if projection is None:
        raise CheckpointError(f"{file.path}: a CLIP vision model without 'visual_projection' (MangaNinja uses the "
                              "projected image embedding: choose a CLIP ViT-L/14 file *with projection*)")
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=shapes[p + "encoder.layers.0.mlp.fc1.weight"][0],
                            num_hidden_layers=_count_layers(shapes, p), num_attention_heads=max(1, hidden // 64),
                            patch_size=patch, image_size=patch * round((positions - 1) ** 0.5),
                            projection_dim=projection[0], hidden_act="quick_gelu", layer_norm_eps=1e-5)


def _text_config(files: ModelFiles, file: TensorFile, prefix: str):
    from transformers import CLIPTextConfig

    if files.clip_config is not None and files.clip_text is None:
        return _clip_config(files).text_config
    shapes = _shapes(file)
    p = prefix + "text_model."
    vocab, hidden = shapes[p + "embeddings.token_embedding.weight"]
    if vocab != 49408:
        raise CheckpointError(f"{file.path}: text model vocabulary {vocab}; expected CLIP's 49408 tokens")
    return CLIPTextConfig(vocab_size=vocab, hidden_size=hidden, num_attention_heads=max(1, hidden // 64),
                          intermediate_size=shapes[p + "encoder.layers.0.mlp.fc1.weight"][0],
                          num_hidden_layers=_count_layers(shapes, p),
                          max_position_embeddings=shapes[p + "embeddings.position_embedding.weight"][0],
                          hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=49406, eos_token_id=49407)


def _tower(files: ModelFiles, override: Path | None, marker: str, what: str) -> tuple[TensorFile, str]:
    path = override or files.clip
    file = TensorFile(path)
    prefix = _tower_prefix(file, marker)
    if prefix is None:
        raise CheckpointError(f"{path}: no {what} in this file (no key ending in '{marker}')")
    return file, prefix


def _tower_source(file: TensorFile, module: nn.Module, prefix: str, tower: str) -> Source:
    """Newer transformers drop the tower prefix (``text_model.``) from a tower's own state dict keys."""
    keys = module.state_dict(keep_vars=True).keys()
    strip = prefix if any(k.startswith(tower) for k in keys) else prefix + tower
    return Source(file, prefix=strip, allow_any_extra=True)


def load_clip_vision(files: ModelFiles | ClipFiles, *, dtype: torch.dtype, device="cpu") -> nn.Module:
    """CLIPVisionModelWithProjection: its ``image_embeds`` (projected CLS token) are MangaNinja's context."""
    file, prefix = _tower(files, files.clip_vision, "vision_model.embeddings.patch_embedding.weight",
                          "CLIP vision model")
    model = build_clip_vision(_vision_config(files, file, prefix))
    # vision_model.* and visual_projection.* both sit under the file's prefix.
    return load_module(model, [Source(file, prefix=prefix, allow_any_extra=True)], what="CLIP vision model",
                       dtype=dtype, device=device)


def compute_null_context(files: ModelFiles) -> torch.Tensor:
    """The unconditional context: the CLIP text model's output at the BOS position for the empty prompt.

    The empty prompt tokenises to [BOS, EOS] (49406, 49407 for CLIP), so no tokenizer files are needed. The text
    model is built, used once in float32 on the CPU, and dropped.
    """
    file, prefix = _tower(files, files.clip_text, "text_model.embeddings.token_embedding.weight", "CLIP text model")
    config = _text_config(files, file, prefix)
    model = build_clip_text(config)
    load_module(model, [_tower_source(file, model, prefix, "text_model.")], what="CLIP text model",
                dtype=torch.float32)
    ids = torch.tensor([[config.bos_token_id, config.eos_token_id]])
    with torch.inference_mode():
        hidden = model(input_ids=ids).last_hidden_state
    return hidden[:, 0, :].reshape(1, 1, -1).clone()


def load_point_net(files: ModelFiles, *, unet_channels: tuple[int, ...], dtype: torch.dtype, device="cpu") -> PointNet:
    file = TensorFile(files.point_net)
    shapes = _shapes(file)
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
        config = LineartGenerator.config_from_shapes(_shapes(file))
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
