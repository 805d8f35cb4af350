"""The one observer hook: what the pipeline tells whoever watches it (progress bars, cancel, timings, traces).

In the spirit of diffusers' ``callback_on_step_end``, but for the whole pipeline. An observer subclasses
:class:`Observer` and overrides what it needs; pass it as ``observers=[...]`` to
:meth:`~mn_core.pipeline.MangaNinja.encode_reference`, :meth:`~mn_core.pipeline.MangaNinja.extract_lineart` or
:meth:`~mn_core.pipeline.MangaNinja.colorize`. Raising from any hook cancels the run (ComfyUI's interrupt does).

Events:

- ``on_step_end(step, steps, latents)``: after each DDIM step (1-based ``step``).
- ``on_phase(phase, networks)``: the owner has placed a phase's networks (``networks``: name -> module), e.g. to
  attach torch forward hooks.
- ``on_section(name, seconds)``: only for observers with ``wants_timings`` (True: every section; or a set of
  section names); the pipeline then synchronises the device around those sections, so the seconds are the
  device's. Sections: ``encode_reference`` (containing
  ``clip_vision``, ``vae_encode``, ``reference_unet``), ``extract_lineart``, ``colorize_prepare``, ``step`` (one
  per step; containing ``controlnet`` and ``unet``), ``decode``. Nobody asking for timings means no device sync.
- ``on_value(name, value)``: only for observers with ``wants_values``; intermediate tensors copied to the CPU
  (the parity trace, :class:`Trace`). Nobody asking means nothing is copied.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager

import torch

from .placement import synchronize


class Observer:
    """Base class; every hook is optional."""

    wants_timings = False
    wants_values = False

    def on_step_end(self, step: int, steps: int, latents: torch.Tensor) -> None:
        pass

    def on_phase(self, phase: str, networks: dict) -> None:
        pass

    def on_section(self, name: str, seconds: float) -> None:
        pass

    def on_value(self, name: str, value) -> None:
        pass


class Hooks:
    """The pipeline's side of the hook: dispatches events to a run's observers, cheaply when there are none."""

    def __init__(self, observers: Iterable[Observer] | None, device: torch.device):
        self.observers = tuple(observers or ())
        for o in self.observers:
            if not isinstance(o, Observer):
                raise TypeError(f"observers must be mn_core.observers.Observer instances, got {type(o).__name__}")
        self.device = device
        self.timed = tuple(o for o in self.observers if o.wants_timings)
        self._wanted: dict[str, tuple[Observer, ...]] = {}
        self.valued = tuple(o for o in self.observers if o.wants_values)
        self._lap = 0.0

    def _timed_for(self, name: str) -> tuple[Observer, ...]:
        if name not in self._wanted:
            self._wanted[name] = tuple(o for o in self.timed if o.wants_timings is True or name in o.wants_timings)
        return self._wanted[name]

    @contextmanager
    def section(self, name: str):
        watchers = self._timed_for(name) if self.timed else ()
        if not watchers:
            yield
            return
        t0 = synchronize(self.device)
        yield
        seconds = synchronize(self.device) - t0
        for o in watchers:
            o.on_section(name, seconds)

    def start_laps(self) -> None:
        """Per-step sections: each lap runs from the previous lap's end (or from here) to :meth:`step_end`."""
        if self.timed and self._timed_for("step"):
            self._lap = synchronize(self.device)

    def step_end(self, step: int, steps: int, latents: torch.Tensor) -> None:
        watchers = self._timed_for("step") if self.timed else ()
        if watchers:
            now = synchronize(self.device)
            for o in watchers:
                o.on_section("step", now - self._lap)
            self._lap = now
        self.value("latents", lambda: latents.cpu())
        for o in self.observers:
            o.on_step_end(step, steps, latents)

    def phase(self, phase: str, networks: dict) -> None:
        for o in self.observers:
            o.on_phase(phase, networks)

    def value(self, name: str, make) -> None:
        """``make``: the value, or a function computing it (called only when an observer wants values)."""
        if self.valued:
            value = make() if callable(make) else make
            for o in self.valued:
                o.on_value(name, value)


class Progress(Observer):
    """Calls ``update(step, steps)`` after every step: progress bars and cancel checks."""

    def __init__(self, update):
        self.update = update

    def on_step_end(self, step, steps, latents):
        self.update(step, steps)


class Timings(Observer):
    """Seconds per section: ``totals[name]`` (summed), ``counts[name]``, and ``laps[name]`` (each occurrence)."""

    def __init__(self, sections=None):
        self.wants_timings = True if sections is None else frozenset(sections)
        self.laps: dict[str, list[float]] = {}

    def on_section(self, name, seconds):
        self.laps.setdefault(name, []).append(seconds)

    @property
    def totals(self) -> dict[str, float]:
        return {k: sum(v) for k, v in self.laps.items()}

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.laps.items()}

    def last(self, name: str) -> float:
        return self.laps[name][-1]


class Trace(Observer):
    """Every intermediate value (the parity report compares them with the official code's).

    ``values[name]`` holds the latest value; names in :attr:`PER_STEP` collect a list instead: ``latents`` (the
    initial latents, then after each step) and ``eps`` (each step's ε per guidance row).
    """

    wants_values = True
    PER_STEP = ("latents", "eps")

    def __init__(self):
        self.values: dict[str, object] = {name: [] for name in self.PER_STEP}

    def on_value(self, name, value):
        if name in self.PER_STEP:
            self.values[name].append(value)
        else:
            self.values[name] = value

    def __getitem__(self, name: str):
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values
