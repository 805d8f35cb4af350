"""Which network belongs to which phase: the one table that the pipeline, both module owners and the benchmarks read.

A phase is a stretch of work that needs a set of networks on the compute device:

=========  ============================================================  =====================================
phase      networks                                                      when
=========  ============================================================  =====================================
reference  CLIP vision tower, VAE (whole; its encoder is needed), the     once per reference image
           reference UNet
sampling   PointNet, ControlNet, denoising UNet                          every DDIM step of every line art
decode     VAE (only its decoder half)                                   once per line art
lineart    the sk_model annotator                                        extracting line art from an image
=========  ============================================================  =====================================

"Large" networks (the two UNets, the ControlNet, CLIP) are what a one-phase owner keeps to one phase at a time.
The VAE is split: its encoder half belongs to the reference phase only and leaves with it; its decoder half is
shared (decoding follows every sampling run), so the VAE as a whole never leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REFERENCE, SAMPLING, DECODE, LINEART = "reference", "sampling", "decode", "lineart"

VAE_ENCODER = ("encoder", "quant_conv")
VAE_DECODER = ("decoder", "post_quant_conv")


@dataclass(frozen=True)
class Network:
    name: str
    phases: tuple[str, ...]
    large: bool = False
    # phase -> the only sub-modules that phase needs on the device (a phase not listed needs the whole network)
    parts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the sub-modules that leave when the network is evicted; empty: the whole network leaves
    leaves: tuple[str, ...] = ()


NETWORKS: tuple[Network, ...] = (
    Network("clip_vision", (REFERENCE,), large=True),
    Network("vae", (REFERENCE, DECODE), parts={DECODE: VAE_DECODER}, leaves=VAE_ENCODER),
    Network("reference_unet", (REFERENCE,), large=True),
    Network("point_net", (SAMPLING,)),
    Network("controlnet", (SAMPLING,), large=True),
    Network("denoising_unet", (SAMPLING,), large=True),
    Network("annotator", (LINEART,)),
)

BY_NAME: dict[str, Network] = {n.name: n for n in NETWORKS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
PHASES: dict[str, tuple[str, ...]] = {
    phase: tuple(n.name for n in NETWORKS if phase in n.phases) for phase in (REFERENCE, SAMPLING, DECODE, LINEART)
}
LARGE: tuple[str, ...] = tuple(n.name for n in NETWORKS if n.large)


def networks(phase: str) -> tuple[str, ...]:
    """The networks a phase needs, e.g. ``networks("sampling")``."""
    try:
        return PHASES[phase]
    except KeyError:
        raise ValueError(f"unknown phase {phase!r}; the phases are {', '.join(PHASES)}") from None
