"""One denoising step's network work: the line-art ControlNet and the denoising UNet over the guidance rows.

The official code runs both networks on a batch of three rows (uncond, ref, point). The rows differ only in their
context (null token for uncond, the CLIP image token otherwise) and, inside the UNet, in the reference attention.
The ControlNet has no reference attention, so its ref and point rows are identical: it runs once per distinct
context and its residuals are shared. Its conditioning embedding of the line art does not change between steps
and is computed once per line art.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .observers import Hooks


def check_controlnet_supported(controlnet: nn.Module) -> None:
    cfg = controlnet.config
    unsupported = [name for name in ("class_embed_type", "addition_embed_type", "encoder_hid_dim_type")
                   if cfg.get(name) is not None]
    if cfg.get("global_pool_conditions"):
        unsupported.append("global_pool_conditions")
    if unsupported:
        raise NotImplementedError(f"ControlNet config uses {unsupported}, which the line-art ControlNet does not")


def controlnet_residuals(controlnet: nn.Module, sample: torch.Tensor, timestep, context: torch.Tensor,
                         cond_embedding: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """diffusers' ControlNetModel.forward (conditioning_scale 1, no guess mode) with a precomputed
    ``controlnet_cond_embedding(cond)``. ``timestep``: an int or a one-element int64 tensor."""
    if not torch.is_tensor(timestep):
        timestep = torch.tensor([timestep], dtype=torch.int64, device=sample.device)
    timesteps = timestep.reshape(1).expand(sample.shape[0])
    emb = controlnet.time_embedding(controlnet.time_proj(timesteps).to(dtype=sample.dtype))
    h = controlnet.conv_in(sample) + cond_embedding
    residuals = [h]
    for block in controlnet.down_blocks:
        if getattr(block, "has_cross_attention", False):
            h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
        else:
            h, res = block(hidden_states=h, temb=emb)
        residuals.extend(res)
    if getattr(controlnet.mid_block, "has_cross_attention", False):
        h = controlnet.mid_block(h, emb, encoder_hidden_states=context)
    else:
        h = controlnet.mid_block(h, emb)
    down = [zero_conv(r) for r, zero_conv in zip(residuals, controlnet.controlnet_down_blocks)]
    return down, controlnet.controlnet_mid_block(h)


@dataclass
class StepInputs:
    """What stays fixed for a whole sampling run of one line art (or of F frames sampled together)."""

    rows: tuple[str, ...]            # UNet rows, an ordered subset of ("uncond", "ref", "point")
    null_context: torch.Tensor       # (1, 1, D) model dtype, on the device
    image_context: torch.Tensor      # (1, 1, D)
    cond_embedding: torch.Tensor     # ControlNet conditioning embedding of each frame's line art, (F, C, h, w)


class Denoiser:
    """ε for each needed guidance row at one timestep.

    With ``sequential_rows`` the UNet runs one row at a time (a third of the activation memory, same numbers);
    the ControlNet residuals are still computed once per step.
    """

    def __init__(self, controlnet: nn.Module, unet, reader, inputs: StepInputs, dtype: torch.dtype,
                 sequential_rows: bool = False, residuals=controlnet_residuals, hooks=None):
        self.controlnet = controlnet
        self.unet = unet  # the module, or a compiled wrapper of it
        self.residuals = residuals  # controlnet_residuals, or a compiled version of it
        self.reader = reader
        self.inputs = inputs
        self.dtype = dtype
        self.sequential_rows = sequential_rows
        self.hooks = hooks if hooks is not None else Hooks((), torch.device("cpu"))

    def __call__(self, z: torch.Tensor, t: int) -> dict[str, torch.Tensor]:
        """``z``: (F, 4, h, w), one latent per frame; returns each row's ε, (F, 4, h, w) float32."""
        rows = self.inputs.rows
        x = z.to(self.dtype)
        frames = x.shape[0]
        t = torch.tensor([t], dtype=torch.int64, device=x.device)  # a tensor, so a compiled step is reused
        null, image = self.inputs.null_context, self.inputs.image_context
        # ControlNet: one row per distinct context (each for every frame).
        cn_contexts = (["null"] if "uncond" in rows else []) + (["image"] if any(r != "uncond" for r in rows) else [])
        cn_ctx = torch.cat([_repeat(null if c == "null" else image, frames) for c in cn_contexts])
        n = len(cn_contexts)
        with self.hooks.section("controlnet"):
            down, mid = self.residuals(self.controlnet, _repeat(x, n), t, cn_ctx,
                                       _repeat(self.inputs.cond_embedding, n))
        groups = [(r,) for r in rows] if self.sequential_rows else [rows]
        eps = {}
        for group in groups:
            index = torch.cat([torch.arange(frames, device=x.device)
                               + frames * cn_contexts.index("null" if r == "uncond" else "image") for r in group])
            ctx = torch.cat([_repeat(null if r == "uncond" else image, frames) for r in group])
            self.reader.set_rows(group)
            with self.hooks.section("unet"):
                out = self.unet(_repeat(x, len(group)), t, encoder_hidden_states=ctx,
                                down_block_additional_residuals=[d.index_select(0, index) for d in down],
                                mid_block_additional_residual=mid.index_select(0, index)).sample
            eps.update(zip(group, out.float().split(frames)))
        self.hooks.value("eps", lambda: {k: v.cpu() for k, v in eps.items()})
        return eps


def _repeat(x: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` copies along the batch axis: a broadcast view for one item, a concatenation for several."""
    return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 else torch.cat([x] * n)
