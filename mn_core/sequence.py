"""Colouring an ordered list of frames (a shot) with one encoded reference.

Every frame's initial noise comes from (seed, frame index) alone, so any frame can be recomputed by itself and a
result never depends on how independent frames are batched or ordered; ``same_noise`` gives every frame the noise
of frame 0 (less flicker on still parts). With ``previous_frame``, frame i is coloured with the keyframe
reference(s) AND the coloured frame i-1 as one more bank square (the way MangaNinja was trained: pairs of video
frames); frame 0 uses the keyframe only. The previous frame adds no CLIP context (the keyframe's stays, so colour
identity cannot drift through it) and no points name it. Independent frames are sampled ``batch`` at a time in
one network call per step. Points may differ per frame (:class:`~mn_core.points.FramePoints`, e.g. suggested
for each frame); such frames are sampled one at a time (the reference pass depends on the points).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from PIL import Image

from .lineart import Lineart
from .pipeline import ColorizeResult, MangaNinja, Observers, Reference
from .points import FramePoints, PointMaps, Points, for_frame


def frame_seed(seed: int, index: int, stream: int = 0) -> int:
    """The seed of frame ``index`` of a run seeded ``seed`` (stream 0: initial latents; 1: the previous frame's
    reference noise), independent of every other frame. Frame 0's latents use ``seed`` itself, so a single image
    gets exactly what :meth:`MangaNinja.colorize` gives with that seed."""
    if index == 0 and stream == 0:
        return int(seed)
    return int(np.random.SeedSequence([int(seed), int(index), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def frame_noise(mn: MangaNinja, reference: Reference, seed: int, index: int, same_noise: bool) -> torch.Tensor:
    h = reference.size // mn.latent_factor()
    g = torch.Generator("cpu").manual_seed(frame_seed(seed, 0 if same_noise else index))
    return torch.randn((1, 4, h, h), generator=g, dtype=torch.float32)


def colorize_frame(mn: MangaNinja, reference: Reference, lineart, index: int, *, previous: Image.Image | None = None,
                   points: Points | FramePoints | None = None, steps: int = 50, guidance_ref: float = 9.0,
                   guidance_point: float = 15.0, seed: int = 0, same_noise: bool = False, polarity: str = "auto",
                   observers: Observers = None) -> ColorizeResult:
    """Frame ``index`` alone: exactly what :func:`colorize_sequence` gives for it (``previous``: the coloured
    frame ``index - 1`` in previous-frame mode, None for frame 0 or independent frames)."""
    lineart = mn.prepared_lineart(reference, lineart, polarity)
    points = for_frame(points, index)
    ref = reference
    if previous is not None:
        prev = mn.encode_reference(previous, size=reference.size, fit=lineart.fit.mode,
                                   seed=frame_seed(seed, index, 1), observers=observers)
        ref = reference.with_extra_square(prev)
    maps = mn.point_maps(ref, lineart, points)
    return mn.colorize_batch(ref, [lineart], [maps], frame_noise(mn, reference, seed, index, same_noise),
                             steps=steps, guidance_ref=guidance_ref, guidance_point=guidance_point, seeds=[seed],
                             observers=observers)[0]


def colorize_sequence(mn: MangaNinja, reference: Reference, frames: Iterable, *, points: Points | FramePoints | None = None,
                      steps: int = 50, guidance_ref: float = 9.0, guidance_point: float = 15.0, seed: int = 0,
                      same_noise: bool = False, previous_frame: bool = False, batch: int = 1, polarity: str = "auto",
                      observers: Observers = None) -> Iterator[ColorizeResult]:
    """Colour ``frames`` (line arts: images or prepared :class:`~mn_core.lineart.Lineart`) in order, yielding each
    result as soon as it is done. ``batch`` frames share each network call (independent frames only)."""
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if previous_frame and batch > 1:
        raise ValueError("in previous-frame mode each frame needs the one before it: use batch 1")
    options = dict(steps=steps, guidance_ref=guidance_ref, guidance_point=guidance_point)
    if previous_frame:
        previous = None
        for index, art in enumerate(frames):
            result = colorize_frame(mn, reference, art, index, previous=previous, points=points, seed=seed,
                                    same_noise=same_noise, polarity=polarity, observers=observers, **options)
            previous = result.image
            yield result
        return
    pending: list[tuple[int, Lineart]] = []
    for index, art in enumerate(frames):
        pending.append((index, mn.prepared_lineart(reference, art, polarity)))
        if len(pending) == batch:
            yield from _batch(mn, reference, pending, points, seed, same_noise, observers, options)
            pending = []
    if pending:
        yield from _batch(mn, reference, pending, points, seed, same_noise, observers, options)


def colorize_frames(mn: MangaNinja, reference: Reference, indexed: list[tuple[int, object]], *,
                    points: Points | FramePoints | None = None, steps: int = 50, guidance_ref: float = 9.0,
                    guidance_point: float = 15.0, seed: int = 0, same_noise: bool = False, polarity: str = "auto",
                    observers: Observers = None) -> list[ColorizeResult]:
    """Independent frames ``(index, line art)`` in one network call per step: exactly what
    :func:`colorize_sequence` gives for them when batched the same way."""
    pending = [(index, mn.prepared_lineart(reference, art, polarity)) for index, art in indexed]
    return _batch(mn, reference, pending, points, seed, same_noise, observers,
                  dict(steps=steps, guidance_ref=guidance_ref, guidance_point=guidance_point))


def _batch(mn, reference, pending, points, seed, same_noise, observers, options) -> list[ColorizeResult]:
    if isinstance(points, FramePoints) and len(pending) > 1:  # the reference pass differs per frame: one by one
        return [r for item in pending
                for r in _batch(mn, reference, [item], points, seed, same_noise, observers, options)]
    if isinstance(points, FramePoints):
        points = points.for_frame(pending[0][0])
    linearts = [art for _, art in pending]
    maps: list[PointMaps] = [mn.point_maps(reference, art, points) for art in linearts]
    z = torch.cat([frame_noise(mn, reference, seed, index, same_noise) for index, _ in pending])
    return mn.colorize_batch(reference, linearts, maps, z, seeds=[seed] * len(pending), observers=observers,
                             **options)
