"""The one assembly: a :class:`~mn_core.pipeline.MangaNinja` from a checkpoint and a module owner.

A :class:`Checkpoint` says how to build each network (strictly from the official folder's files, or with random
weights in memory for benchmarks, see :func:`mn_core.synthetic.random_checkpoint`), plus the null context and the
DDIM schedule. :func:`assemble` finishes every network the same way (evaluation mode, MangaNinja's attention
processors, optionally channels-last) and hands the loaders to an owner factory: the standalone
:class:`~mn_core.placement.LocalModules` (:func:`from_folder`) or ComfyUI's model manager (``nodes/load.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import models, phases
from .attention import BankRecorder, ReferenceReader, install_cross_attention
from .denoise import check_controlnet_supported
from .placement import LocalModules, ModuleOwner, resolve_device, resolve_precision
from .sampling import DDIMSchedule

Loaders = dict[str, Callable[[], nn.Module]]

# Which networks store their convolution weights channels-last by default. On CUDA all of them (the layout cuDNN
# prefers). On the CPU only the VAE: its convolutions at full resolution run about 9 % faster so (encode and decode,
# measured with diffusers 0.27.2 and 0.42.1 alike, benchmarks/RESULTS.md), at the cost of a copy of its weights in
# ordinary memory (0.33 GB for SD1.5; the VAE never leaves memory on the CPU anyway). The UNets and the ControlNet
# stay in their files' layout on the CPU, so their memory-mapped pages can go back to the kernel between phases.
CPU_CHANNELS_LAST = frozenset({"vae"})


def channels_last_networks(channels_last: bool | Collection[str] | None, device) -> frozenset[str]:
    """The names of the networks to store channels-last: ``None`` is the default for ``device`` (all on CUDA,
    :data:`CPU_CHANNELS_LAST` elsewhere), ``True``/``False`` all or none, or the names themselves."""
    if channels_last is None:
        return frozenset(phases.NAMES) if torch.device(device).type == "cuda" else CPU_CHANNELS_LAST
    if isinstance(channels_last, bool):
        return frozenset(phases.NAMES) if channels_last else frozenset()
    names = frozenset(channels_last)
    unknown = names - set(phases.NAMES)
    if unknown:
        raise ValueError(f"channels_last names unknown networks {sorted(unknown)}; the networks are "
                         f"{', '.join(phases.NAMES)}")
    return names


@dataclass
class Checkpoint:
    """How to build every network (``loaders``, one per name of :data:`mn_core.phases.NAMES`), the unconditional
    context (1, 1, D) and the schedule."""

    loaders: Loaders
    null_context: torch.Tensor
    schedule: DDIMSchedule
    unet_levels: tuple[int, int, int] | None = None  # see unet_levels(): what decides the smallest size

    @classmethod
    def from_files(cls, files: models.ModelFiles, dtype: torch.dtype, device="cpu") -> Checkpoint:
        """Strict loading from the official files (sizes from their configs); ``device`` is where weights land."""
        unet = models.read_json(files.unet_config)
        unet_channels = tuple(unet["block_out_channels"])
        loaders = {
            "reference_unet": lambda: models.load_unet(files, reference=True, dtype=dtype, device=device),
            "denoising_unet": lambda: models.load_unet(files, reference=False, dtype=dtype, device=device),
            "controlnet": lambda: models.load_controlnet(files, dtype=dtype, device=device),
            "vae": lambda: models.load_vae(files, dtype=dtype, device=device),
            "clip_vision": lambda: models.load_clip_vision(files, dtype=dtype, device=device),
            "point_net": lambda: models.load_point_net(files, unet_channels=unet_channels, dtype=dtype,
                                                       device=device),
            "annotator": lambda: models.load_annotator(files, device=device),
        }
        levels = unet_levels(unet_channels, int(unet.get("norm_num_groups", 32)))
        return cls(loaders, models.compute_null_context(files), models.load_schedule(files), levels)


def unet_levels(channels: tuple[int, ...], groups: int) -> tuple[int, int, int]:
    """(levels, fewest channels at the deepest resolution, norm groups): the deepest level's first block reads the
    level above's channels there, so both count."""
    return len(channels), min(channels[-2:]), groups


def finish_network(name: str, module: nn.Module, *, channels_last: bool = False) -> nn.Module:
    """A freshly built network made ready for MangaNinja: inference mode, attention processors installed."""
    module = module.eval().requires_grad_(False)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if name == "reference_unet":
        module.mn_bank_recorder = BankRecorder(module)
        install_cross_attention(module)
    elif name == "denoising_unet":
        module.mn_reader = ReferenceReader(module)
        install_cross_attention(module)
    elif name == "controlnet":
        check_controlnet_supported(module)
        install_cross_attention(module)
    return module


def assemble(checkpoint: Checkpoint, make_owner: Callable[[Loaders], ModuleOwner], *, dtype: torch.dtype,
             channels_last: bool | Collection[str] = False, sequential_rows: bool = False, compile: bool = False):
    """Build the pipeline: ``make_owner`` receives the finished loaders and returns the owner of the networks.
    ``channels_last``: all networks, none, or the names of those to store channels-last (see
    :func:`channels_last_networks`)."""
    from .pipeline import MangaNinja

    missing = set(phases.NAMES) - set(checkpoint.loaders)
    if missing:
        raise ValueError(f"checkpoint lacks loaders for {sorted(missing)}")
    layout = channels_last_networks(channels_last, "cpu")
    loaders = {name: (lambda name=name, load=load: finish_network(name, load(), channels_last=name in layout))
               for name, load in checkpoint.loaders.items()}
    owner = make_owner(loaders)
    if not isinstance(owner, ModuleOwner):
        raise TypeError(f"{type(owner).__name__} does not implement mn_core.placement.ModuleOwner")
    return MangaNinja(owner, null_context=checkpoint.null_context, schedule=checkpoint.schedule, dtype=dtype,
                      sequential_rows=sequential_rows, compile=compile, unet_levels=checkpoint.unet_levels)


def from_folder(root: str | Path, *, device="auto", precision="auto", download: bool = False, progress=None,
                one_phase: bool = True, lazy: bool = False, sequential_rows: bool = False, compile: bool = False,
                channels_last: bool | Collection[str] | None = None):
    """The standalone pipeline from the official checkpoint folder (see :meth:`MangaNinja.from_folder`)."""
    if download:
        models.ensure_models(root, progress=progress)
    files = models.ModelFiles.from_folder(root)
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)

    def owner(loaders: Loaders) -> LocalModules:
        local = LocalModules(loaders, dev, one_phase=one_phase)
        if not lazy:
            local.load_all()
        return local

    checkpoint = Checkpoint.from_files(files, dtype, device="cpu" if one_phase else dev)
    return assemble(checkpoint, owner, dtype=dtype, channels_last=channels_last_networks(channels_last, dev),
                    sequential_rows=sequential_rows, compile=compile)
