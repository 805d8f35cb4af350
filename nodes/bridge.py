"""The bridge to ComfyUI: the small part of it the nodes use, with plain-PyTorch stand-ins when ComfyUI is not there.

ComfyUI owns device placement: every network is wrapped in a ``ModelPatcher`` and brought to the GPU with
``load_models_gpu`` right before use; ComfyUI evicts it again when something else needs the memory. Nothing here
moves a managed module itself. Without ComfyUI (standalone use of the node classes) the same calls fall back to
mn_core's plain device placement.
"""

from __future__ import annotations

import inspect
import logging
import os

import torch
from torch import nn

from ..mn_core import phases
from ..mn_core.observers import Observer
from ..mn_core.placement import LocalModules, resolve_device

log = logging.getLogger("MangaNinja")

try:  # ComfyUI's modules exist only inside a ComfyUI process (or a test that put ComfyUI on sys.path).
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils
    import folder_paths
except ImportError:  # standalone
    mm = None
    folder_paths = None

MODEL_FOLDER = "manganinja"


def have_comfy() -> bool:
    return mm is not None


# --------------------------------------------------------------------------------------------------------------
# Model folders


def register_model_folder() -> None:
    """Register models/manganinja (merged with any extra_model_paths.yaml entry already present)."""
    if folder_paths is None:
        return
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    entry = folder_paths.folder_names_and_paths.get(MODEL_FOLDER)
    if entry is None:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = ([default], set())
    elif default not in entry[0]:
        entry[0].append(default)


def model_roots() -> list[str]:
    if folder_paths is None:
        return [os.environ.get("MANGANINJA_MODELS", os.path.join(os.getcwd(), "models", MODEL_FOLDER))]
    return list(folder_paths.get_folder_paths(MODEL_FOLDER))


def standard_files(folder: str) -> list[str]:
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_filename_list(folder))
    except KeyError:
        return []


def standard_path(folder: str, name: str) -> str | None:
    return folder_paths.get_full_path(folder, name) if folder_paths is not None else None


# --------------------------------------------------------------------------------------------------------------
# Devices and precision


def compute_device() -> torch.device:
    if mm is not None:
        return mm.get_torch_device()
    return resolve_device("auto")


def intermediate_device() -> torch.device:
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def auto_precision(device: torch.device) -> torch.dtype:
    """ComfyUI's choice for a diffusion model on this device (honours --fp16-unet, --bf16-unet, --force-fp32 ...)."""
    supported = [torch.float16, torch.bfloat16, torch.float32]
    if mm is None:
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    dtype = mm.unet_dtype(device=device, supported_dtypes=supported)
    if dtype not in supported:  # fp8 storage flags: MangaNinja computes in a float type
        dtype = torch.float16
    cast = mm.unet_manual_cast(dtype, device, supported)  # not None: the device cannot compute in `dtype`
    return cast if cast is not None else dtype


# --------------------------------------------------------------------------------------------------------------
# Module ownership


class Managed(nn.Module):
    """What a ModelPatcher owns: one network plus a plain ``device`` attribute (ComfyUI assigns it, and diffusers
    and transformers models expose ``device`` as a read-only property)."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net = net
        self.device = device

    def get_dtype(self):
        return next(self.net.parameters()).dtype


def _load_models_gpu(patchers, memory_required: int) -> None:
    params = inspect.signature(mm.load_models_gpu).parameters
    kwargs = {"memory_required": memory_required}
    if "force_full_load" in params:  # plain torch layers cannot be partially loaded (no comfy.ops casting)
        kwargs["force_full_load"] = True
    mm.load_models_gpu(patchers, **kwargs)


def _managed(name: str, module: nn.Module, device: torch.device) -> Managed:
    # A named subclass, so ComfyUI's log says "Requested to load MangaNinja_denoising_unet".
    cls = type(f"MangaNinja_{name}", (Managed,), {})
    return cls(module, device)


class ComfyModules:
    """mn_core's :class:`~mn_core.placement.ModuleOwner` backed by ComfyUI's model manager: a phase's networks
    (from :mod:`mn_core.phases`) are loaded with ``load_models_gpu``; ComfyUI decides what to evict."""

    def __init__(self, modules: dict[str, nn.Module], load_device: torch.device, offload_device: torch.device):
        self.device = load_device
        self.patchers = {
            name: comfy.model_patcher.ModelPatcher(_managed(name, module, offload_device), load_device=load_device,
                                                   offload_device=offload_device)
            for name, module in modules.items()
        }

    def prepare(self, phase: str, memory_required: int = 0) -> None:
        _load_models_gpu([self.patchers[n] for n in phases.networks(phase)], memory_required)

    def get(self, name: str) -> nn.Module:
        return self.patchers[name].model.net

    def release(self, phase: str) -> None:
        """Nothing: ComfyUI's model manager evicts models when it needs their memory."""


def make_owner(modules: dict[str, nn.Module], device: torch.device):
    if mm is None:
        return LocalModules({}, device, one_phase=device.type != "cpu", modules=modules)
    return ComfyModules(modules, device, mm.unet_offload_device())


# --------------------------------------------------------------------------------------------------------------
# Progress and cancel


class Progress(Observer):
    """ComfyUI's progress bar as an mn_core observer: one tick per denoising step, and ComfyUI's cancel obeyed
    (raising between steps); a no-op standalone."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total) if mm is not None else None

    def update(self, n: int = 1) -> None:
        if mm is not None:
            mm.throw_exception_if_processing_interrupted()
        if self.bar is not None:
            self.bar.update(n)

    def on_step_end(self, step, steps, latents) -> None:
        self.update(1)

    def set(self, value: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update_absolute(value, total)


# --------------------------------------------------------------------------------------------------------------
# IMAGE tensors (B, H, W, C) float in [0, 1]


def expect(value, kind, node: str, name: str, source: str):
    """``value`` if it is a ``kind`` (a class or tuple); else a ValueError naming the input and what feeds it.
    ComfyUI checks only its own types: an API prompt can hand a custom-type input any JSON value."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # by name too: a script (or a test) may hand over the same class from a second import of mn_core
    if not (isinstance(value, kinds) or type(value).__name__ in {k.__name__ for k in kinds}):
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ValueError(f"{node}: `{name}` must be connected to {source}; got {type(value).__name__} {shown}")
    return value


def image_batch(images: torch.Tensor, what: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what}: expected an IMAGE batch (B, H, W, C), got {shape}")
    return images


def to_image_tensor(pil_images) -> torch.Tensor:
    """PIL images (same size) -> IMAGE batch on ComfyUI's intermediate device."""
    import numpy as np

    arrays = [np.asarray(p.convert("RGB"), dtype=np.float32) / 255.0 for p in pil_images]
    return torch.from_numpy(np.stack(arrays)).to(intermediate_device())


def save_preview(pil_image, prefix: str) -> dict:
    """Save to ComfyUI's temp folder; returns the {filename, subfolder, type} entry a node's ui uses."""
    import random
    import string

    if folder_paths is None:
        return {}
    directory = folder_paths.get_temp_directory()
    os.makedirs(directory, exist_ok=True)
    suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(8))
    filename = f"{prefix}_{suffix}.png"
    pil_image.save(os.path.join(directory, filename), compress_level=1)
    return {"filename": filename, "subfolder": "", "type": "temp"}
