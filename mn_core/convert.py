"""Original (LDM / ControlNet-v1.1) key names -> diffusers key names, for files users already have in ComfyUI.

ComfyUI's ``vae`` and ``controlnet`` folders usually hold the original single-file checkpoints
(``encoder.down.0.block.0...``, ``input_blocks.1.1...``), while MangaNinja builds diffusers modules. The mapping
is written as diffusers key -> original key for every key of the module being loaded; loading then goes through
the same strict key check as any other file.
"""

from __future__ import annotations

import re

import torch

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def is_ldm_vae(keys) -> bool:
    return any(k.startswith("encoder.down.") for k in keys)


def is_ldm_controlnet(keys) -> bool:
    return any(k.startswith(("input_hint_block.", "control_model.input_hint_block.")) for k in keys)


def _vae_resnet(part: str) -> str:
    name, _, rest = part.partition(".")
    return f"{_VAE_RESNET.get(name, name)}.{rest}"


def vae_key_to_ldm(key: str, num_levels: int) -> str:
    """diffusers AutoencoderKL key -> original LDM key."""
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", key)
    if m:
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(\w+)", key)
    if m:
        return f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{m[3]}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key)
    if m:
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key)
    if m:
        return f"decoder.up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(\w+)", key)
    if m:
        return f"decoder.up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(\w+)", key)
    if m:
        return f"{m[1]}.norm_out.{m[2]}"
    return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def controlnet_key_to_ldm(key: str, layers_per_block: int) -> str:
    """diffusers ControlNetModel key -> ControlNet-v1.1 key (without the optional ``control_model.`` prefix)."""
    m = re.fullmatch(r"time_embedding\.linear_(\d)\.(\w+)", key)
    if m:
        return f"time_embed.{(int(m[1]) - 1) * 2}.{m[2]}"
    m = re.fullmatch(r"conv_in\.(\w+)", key)
    if m:
        return f"input_blocks.0.0.{m[1]}"
    m = re.fullmatch(r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(\w+)", key)
    if m:
        index = 0 if m[1] == "conv_in" else (2 * (int(m[2]) + 1) if m[2] is not None else None)
        if index is None:  # conv_out follows the blocks; its index is found by the caller from the block count
            return f"input_hint_block.@out.{m[3]}"
        return f"input_hint_block.{index}.{m[3]}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key)
    if m:
        n = 1 + int(m[1]) * (layers_per_block + 1) + int(m[3])
        if m[2] == "attentions":
            return f"input_blocks.{n}.1.{m[4]}"
        name, _, rest = m[4].partition(".")
        return f"input_blocks.{n}.0.{_RESNET[name]}.{rest}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(\w+)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (layers_per_block + 1)}.0.op.{m[2]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d)\.(\w+)\.(.+)", key)
    if m:
        return f"middle_block.{2 * int(m[1])}.{_RESNET[m[2]]}.{m[3]}"
    m = re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key)
    if m:
        return f"middle_block.1.{m[1]}"
    m = re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(\w+)", key)
    if m:
        return f"zero_convs.{m[1]}.0.{m[2]}"
    m = re.fullmatch(r"controlnet_mid_block\.(\w+)", key)
    if m:
        return f"middle_block_out.0.{m[1]}"
    raise KeyError(f"no ControlNet-v1.1 name known for {key}")


def ldm_names(module_keys, kind: str, config: dict) -> dict[str, str]:
    """diffusers key -> original key, for every key of the module."""
    if kind == "vae":
        levels = len(config["block_out_channels"])
        return {k: vae_key_to_ldm(k, levels) for k in module_keys}
    layers = config.get("layers_per_block", 2)
    out = {k: controlnet_key_to_ldm(k, layers) for k in module_keys}
    blocks = sum(1 for k in module_keys if re.fullmatch(r"controlnet_cond_embedding\.blocks\.\d+\.weight", k))
    return {k: v.replace("@out", str(2 * (blocks + 1))) for k, v in out.items()}


def vae_tensor_to_diffusers(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """The original VAE's attention projections are 1x1 convolutions; diffusers uses linear layers."""
    if ".mid_block.attentions.0." in key and key.endswith("weight") and tensor.ndim == 4:
        return tensor[:, :, 0, 0]
    return tensor
