"""Where the networks live: devices, precision, and the module owner.

The pipeline never moves a network itself. It asks its *owner* (the :class:`ModuleOwner` protocol) to bring a phase's
networks to the compute device right before the phase (``prepare``), fetches them by name (``get``), and says when
a phase is done (``release``). Phases and their networks come from :mod:`mn_core.phases`. Two owners exist:
:class:`LocalModules` here (standalone use) and ``nodes.bridge.ComfyModules`` (ComfyUI's model manager).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from . import pages, phases
from .choices import PRECISIONS as PRECISION_CHOICES

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DEVICE_CHOICES_HELP = "auto, cpu, cuda, cuda:N or mps"


@runtime_checkable
class ModuleOwner(Protocol):
    """Who owns the networks of a :class:`~mn_core.pipeline.MangaNinja`.

    ``device``: where the pipeline computes. ``prepare(phase, memory_required)``: the phase's networks (see
    :data:`mn_core.phases.PHASES`) are on ``device`` when it returns, with about ``memory_required`` bytes free for
    activations. ``get(name)``: the network, ready to call (an owner may load it now). ``release(phase)``: the phase
    is over; its networks may leave (an owner may also ignore this and evict only when memory is needed).
    """

    device: torch.device

    def prepare(self, phase: str, memory_required: int = 0) -> None: ...

    def get(self, name: str) -> nn.Module: ...

    def release(self, phase: str) -> None: ...


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be {DEVICE_CHOICES_HELP}, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but MPS is not available here")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    return PRECISIONS[precision]


def activation_bytes(size: int, rows: int, dtype: torch.dtype) -> int:
    """A rough upper bound of one denoising step's activation memory at ``size`` px with ``rows`` guidance rows
    (SD1.5 widths; the self-attention keys/values are twice the usual length: target + bank). Used to ask a model
    manager for room before sampling."""
    latent_area = (size // 8) ** 2
    per_row = latent_area * 320 * 12 * 4  # the widest level's activations, about a dozen live tensors, fp32 bytes
    return int(rows * per_row * torch.finfo(dtype).bits / 32) + (size * size * 128 * 4)  # + VAE decode working set


def synchronize(device: torch.device) -> float:
    """A wall-clock reading after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter()


def _move_parts(module: nn.Module, parts: tuple[str, ...], device) -> None:
    for part in parts:
        if getattr(module, part, None) is not None:
            getattr(module, part).to(device)


class LocalModules:
    """The standalone :class:`ModuleOwner` (ComfyUI supplies its own, backed by its model manager).

    ``loaders`` maps network names to functions that load them (memory-mapped from the files where the precision
    allows, so loading is cheap); ``modules`` are networks already loaded. ``prepare`` brings a phase's networks to
    the compute device, loading them first if needed. With ``one_phase`` only one phase's large networks are held
    at a time: preparing a phase with large networks evicts the others' large networks, and ``release`` evicts a
    finished phase's at once (the reference networks right after a reference is encoded), so colouring many frames
    with one reference moves nothing. Evicting moves a network to the CPU when computing on a GPU, and drops it when
    computing on the CPU: a network whose weights are all memory-mapped keeps its object and gives its resident pages
    back (:mod:`mn_core.pages`), any other is dropped and reloaded from its file when needed again; a split network
    (the VAE) only moves its ``leaves``.
    """

    def __init__(self, loaders: dict[str, Callable[[], nn.Module]], device: torch.device, *, one_phase: bool = True,
                 modules: dict[str, nn.Module] | None = None):
        self.loaders = loaders
        self.device = device
        self.one_phase = one_phase
        self.modules: dict[str, nn.Module] = dict(modules or {})
        self.load_seconds: dict[str, float] = {}

    def _load(self, name: str) -> nn.Module:
        if name not in self.modules:
            t0 = time.perf_counter()
            self.modules[name] = self.loaders[name]()
            self.load_seconds[name] = self.load_seconds.get(name, 0.0) + time.perf_counter() - t0
        return self.modules[name]

    def load_all(self) -> None:
        for name in self.loaders:
            self._load(name)

    def _evict(self, names) -> None:
        dropped = False
        for name in names:
            if name not in self.modules:
                continue
            net = phases.BY_NAME[name]
            if net.leaves:  # shared: only these parts leave (on the CPU they stay where they are)
                _move_parts(self.modules[name], net.leaves, "cpu")
            elif self.device.type == "cpu" and name in self.loaders:
                # Memory-mapped weights: their pages go back to the kernel and the network stays, ready to fault
                # them in again. Anything else is dropped and reloaded from its file when needed.
                if pages.release(self.modules[name]) is None:
                    del self.modules[name]
                    dropped = True
            else:
                self.modules[name].to("cpu")
        if dropped:
            gc.collect()  # the attention processors make reference cycles: free the weights now

    def prepare(self, phase: str, memory_required: int = 0) -> None:
        names = phases.networks(phase)
        if self.one_phase and any(n in phases.LARGE for n in names):
            self._evict([n for n in self.modules if n in phases.LARGE and n not in names])
        for name in names:
            self._place(name, phase)

    def _place(self, name: str, phase: str) -> None:
        module = self._load(name)
        net = phases.BY_NAME[name]
        parts = net.parts.get(phase)
        if parts is not None and self.one_phase:  # this phase needs only some parts: the others stay off
            _move_parts(module, net.leaves, "cpu")
            _move_parts(module, parts, self.device)
        else:
            module.to(self.device)

    def release(self, phase: str) -> None:
        """A phase is done: with ``one_phase`` its large networks (and split networks' leaves) go at once."""
        if self.one_phase:
            net = phases.BY_NAME
            self._evict([n for n in phases.networks(phase) if net[n].large or net[n].leaves])

    def get(self, name: str) -> nn.Module:
        if name not in self.modules:  # evicted or lazy: load it (placed as for its last phase)
            self._place(name, phases.BY_NAME[name].phases[-1])
        return self.modules[name]
