"""Random-weight checkpoints in the official folder layout, for tests and benchmarks (no download needed).

``write_layout(root, TINY)`` makes a complete folder with tiny networks in seconds; ``SD15`` has the real SD1.5 /
CLIP ViT-L/14 / line-art ControlNet shapes (about 10 GB in float32) for benchmarks. The weights are drawn from
seeded normal distributions with fan-in scaling (no zero-initialised layers, so every network influences the
output), and each network gets its own draw, like the official fixtures.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import layout

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
    "trained_betas": None, "clip_sample": False,
}


@dataclass(frozen=True)
class Preset:
    unet_channels: tuple[int, ...]
    cross_attention_dim: int
    attention_head_dim: int
    vae_channels: tuple[int, ...]
    text: dict = field(default_factory=dict)
    vision: dict = field(default_factory=dict)
    annotator_widths: tuple[int, int, int] = (64, 128, 256)
    conditioning_channels: tuple[int, ...] = (16, 32, 96, 256)


TINY = Preset(unet_channels=(32, 32, 32, 64), cross_attention_dim=16, attention_head_dim=8,
              vae_channels=(32, 32, 32, 64),
              text=dict(hidden_size=16, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2),
              vision=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                          patch_size=32, image_size=224),
              annotator_widths=(8, 16, 32))

SD15 = Preset(unet_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
              vae_channels=(128, 256, 512, 512),
              text=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12),
              vision=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=24,
                          patch_size=14, image_size=224))


def unet_config(p: Preset) -> dict:
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": p.attention_head_dim,
        "block_out_channels": list(p.unet_channels), "center_input_sample": False,
        "cross_attention_dim": p.cross_attention_dim,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "downsample_padding": 1,
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
        "sample_size": 64, "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    }


def controlnet_config(p: Preset) -> dict:
    cfg = {k: v for k, v in unet_config(p).items()
           if k not in ("up_block_types", "out_channels", "sample_size", "center_input_sample")}
    cfg.update({"_class_name": "ControlNetModel", "conditioning_embedding_out_channels": list(p.conditioning_channels),
                "controlnet_conditioning_channel_order": "rgb", "class_embed_type": None, "num_class_embeds": None,
                "only_cross_attention": False, "projection_class_embeddings_input_dim": None,
                "resnet_time_scale_shift": "default", "upcast_attention": False, "use_linear_projection": False})
    return cfg


def vae_config(p: Preset) -> dict:
    n = len(p.vae_channels)
    return {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": list(p.vae_channels),
            "down_block_types": ["DownEncoderBlock2D"] * n, "in_channels": 3, "latent_channels": 4,
            "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
            "scaling_factor": 0.18215, "up_block_types": ["UpDecoderBlock2D"] * n}


def clip_config(p: Preset) -> dict:
    text = {"hidden_act": "quick_gelu", "max_position_embeddings": 77, "vocab_size": 49408, "bos_token_id": 49406,
            "eos_token_id": 49407, "pad_token_id": 1, "layer_norm_eps": 1e-05, "projection_dim": p.cross_attention_dim,
            "model_type": "clip_text_model", **p.text}
    vision = {"hidden_act": "quick_gelu", "layer_norm_eps": 1e-05, "num_channels": 3,
              "projection_dim": p.cross_attention_dim, "model_type": "clip_vision_model", **p.vision}
    return {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": p.cross_attention_dim,
            "logit_scale_init_value": 2.6592, "text_config": text, "vision_config": vision}


def randomize(module: nn.Module, seed: int, gains: dict[str, float] | None = None) -> nn.Module:
    """Seeded normal weights: 1 +- 0.1 N for norm scales, 0.02 N for biases, N/sqrt(fan_in) otherwise."""
    g = torch.Generator().manual_seed(seed)
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d, nn.BatchNorm2d)
    norm_params = {f"{n}.{pn}" for n, m in module.named_modules() if isinstance(m, norm_types)
                   for pn, _ in m.named_parameters(recurse=False)}
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in norm_params and name.endswith("weight"):
                value = 1 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("bias") or p.ndim == 1:
                value = 0.02 * torch.randn(p.shape, generator=g)
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                value = torch.randn(p.shape, generator=g) / math.sqrt(max(1, fan_in))
            for suffix, gain in (gains or {}).items():
                if name.startswith(suffix):
                    value = value * gain
            p.copy_(value)
    return module


def _save(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in state.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path), metadata={"format": "pt"})  # as the hub's files: transformers 4.44 needs it
    else:
        torch.save(state, str(path))


def _write_json(obj: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2))


def write_layout(root: str | Path, preset: Preset = TINY, *, seed: int = 0, overlay_format: str = "pth",
                 drop_overlay_keys: dict[str, list[str]] | None = None) -> Path:
    """Write a complete official-layout folder of random weights under ``root``; returns ``root``.

    ``drop_overlay_keys`` removes keys from MangaNinja overlays (role -> key prefixes), to exercise the base weights.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPModel

    from .annotator import LineartGenerator
    from .pointnet import PointNet

    root = Path(root)
    paths = {f.role: root / f.path for f in layout.FILES}
    ext = {"pth": ".pth", "safetensors": ".safetensors"}[overlay_format]

    def overlay_path(role):
        return paths[role].with_suffix(ext)

    def overlay(role, state):
        for prefix in (drop_overlay_keys or {}).get(role, []):
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        _save(state, overlay_path(role))

    _write_json(SCHEDULER_CONFIG, paths["scheduler_config"])
    ucfg = unet_config(preset)
    _write_json(ucfg, paths["unet_config"])
    unet = UNet2DConditionModel.from_config(ucfg)
    _save(randomize(unet, seed + 1).state_dict(), paths["unet_base"])
    overlay("denoising_unet", randomize(unet, seed + 2).state_dict())
    ref = {k: v for k, v in randomize(unet, seed + 3).state_dict().items()
           if not k.startswith(("conv_norm_out.", "conv_out."))}
    overlay("reference_unet", ref)
    del unet

    ccfg = controlnet_config(preset)
    _write_json(ccfg, paths["controlnet_config"])
    cn = ControlNetModel.from_config(ccfg)
    _save(randomize(cn, seed + 4).state_dict(), paths["controlnet_base"])
    # The line art must matter: strengthen the conditioning embedding's output, as the official fixtures do.
    overlay("controlnet", randomize(cn, seed + 5, {"controlnet_cond_embedding.conv_out": 8.0}).state_dict())
    del cn

    vcfg = vae_config(preset)
    _write_json(vcfg, paths["vae_config"])
    _save(randomize(AutoencoderKL.from_config(vcfg), seed + 6, {"decoder.conv_out": 0.6}).state_dict(), paths["vae"])

    clip_cfg = clip_config(preset)
    _write_json(clip_cfg, paths["clip_config"])
    clip = CLIPModel(CLIPConfig.from_dict(clip_cfg))
    _save(randomize(clip, seed + 7).state_dict(), paths["clip"])
    del clip

    pn = PointNet([(c, 3 if i == 0 else 1) for i, c in enumerate(preset.unet_channels)])
    overlay("point_net", randomize(pn, seed + 8, {"": 2.5}).state_dict())

    ann = LineartGenerator(widths=preset.annotator_widths)
    _save(randomize(ann, seed + 9, {"model4.1": 6.0}).state_dict(), paths["annotator"])
    return root


def random_checkpoint(preset: Preset = SD15, *, device="cuda", dtype=torch.float16, seed: int = 0):
    """A :class:`~mn_core.assembly.Checkpoint` whose networks are built in memory, directly on ``device`` in
    ``dtype`` (the annotator in float32), with the networks' default random initialisation: no files, for GPU
    benchmarks where writing ~10 GB of weights would dominate. Build them in the order given (one seeded draw)."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPConfig, CLIPVisionModelWithProjection

    from .annotator import LineartGenerator
    from .assembly import Checkpoint, unet_levels
    from .models import without_output_head
    from .pointnet import PointNet
    from .sampling import DDIMSchedule

    device = torch.device(device)
    torch.manual_seed(seed)
    clip = CLIPConfig.from_dict(clip_config(preset))
    vision = clip.vision_config
    vision.projection_dim = clip.projection_dim
    builders = {
        "reference_unet": lambda: without_output_head(UNet2DConditionModel.from_config(unet_config(preset))),
        "denoising_unet": lambda: UNet2DConditionModel.from_config(unet_config(preset)),
        "controlnet": lambda: ControlNetModel.from_config(controlnet_config(preset)),
        "vae": lambda: AutoencoderKL.from_config(vae_config(preset)),
        "clip_vision": lambda: CLIPVisionModelWithProjection(vision),
        "point_net": lambda: PointNet([(c, 3 if i == 0 else 1) for i, c in enumerate(preset.unet_channels)]),
        "annotator": lambda: LineartGenerator(widths=preset.annotator_widths),
    }

    def in_place(name, build):
        def load():
            default = torch.get_default_dtype()
            torch.set_default_dtype(torch.float32 if name == "annotator" else dtype)  # weights made in their dtype
            try:
                with device:
                    return build()
            finally:
                torch.set_default_dtype(default)
        return load

    null = torch.randn(1, 1, preset.cross_attention_dim, generator=torch.Generator().manual_seed(seed))
    return Checkpoint({name: in_place(name, build) for name, build in builders.items()}, null,
                      DDIMSchedule.from_config(SCHEDULER_CONFIG),
                      unet_levels(tuple(preset.unet_channels), 32))


def random_pipeline(preset: Preset = SD15, *, device="cuda", dtype=torch.float16, seed: int = 0,
                    channels_last=None, one_phase: bool = False, **options):
    """A MangaNinja pipeline on :func:`random_checkpoint`'s networks, all built at once (none can be reloaded).

    ``one_phase`` then keeps only one phase's large networks on the device, as ``from_folder`` does.
    ``options`` go to :func:`mn_core.assembly.assemble` (``sequential_rows``, ``compile``)."""
    from . import phases
    from .assembly import assemble, channels_last_networks
    from .placement import LocalModules

    device = torch.device(device)
    checkpoint = random_checkpoint(preset, device=device, dtype=dtype, seed=seed)

    def owner(loaders):
        modules = {name: load() for name, load in loaders.items()}
        if one_phase:
            for name in phases.LARGE:
                modules[name].to("cpu")
        return LocalModules({}, device, one_phase=one_phase, modules=modules)

    return assemble(checkpoint, owner, dtype=dtype, channels_last=channels_last_networks(channels_last, device),
                    **options)
