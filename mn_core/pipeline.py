"""MangaNinja inference: encode a reference once, colour any number of line arts with it (the algorithm only).

Data flow (the official algorithm, SPEC §4): reference image -> fit to the processing square -> CLIP image token +
VAE posterior sample -> reference UNet at timestep 0 -> attention bank. Line art -> fit -> (extract) -> cleanup ->
ControlNet condition (:mod:`mn_core.lineart`). Points -> point maps -> PointNet tokens. DDIM with three-way
guidance, VAE decode, truncate to 8 bits, and back through the fit to the line art's own size.

Who holds the networks where is the owner's business (:mod:`mn_core.placement`, phases in :mod:`mn_core.phases`);
how a pipeline is built is :mod:`mn_core.assembly`'s; whoever wants progress, timings or intermediate values
passes observers (:mod:`mn_core.observers`).

Random numbers are drawn on the CPU in float32, in this order when one generator is shared: (1) the reference's VAE
posterior noise, shape (1, 4, h, w), in :meth:`MangaNinja.encode_reference`; (2) the initial latents, shape
(1, 4, h, w), in :meth:`MangaNinja.colorize`. Both can be injected instead.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import annotator, lineart as lineart_prep, phases
from .attention import BankRecorder, ReferenceReader, round_bank
from .choices import MULTI_REFERENCE_MODES
from .denoise import Denoiser, StepInputs, controlnet_residuals
from .images import Fit, check_size, clip_input, compose, tile_regions, to_model_input, to_pil, to_uint8
from .lineart import Lineart
from .observers import Hooks, Observer
from .placement import ModuleOwner, activation_bytes
from .points import NO_POINTS, PointMaps, Points, point_maps
from .sampling import DDIMSchedule, needed_rows, sample

log = logging.getLogger("mn_core")

LATENT_SCALE = 0.18215  # hard-coded by the official pipeline (not read from the VAE config)


@dataclass
class Reference:
    """One or several reference images encoded once; reusable for any number of line arts (on any device).

    The images were encoded as S processing squares (one square per image in ``bank`` mode; all images tiled into
    one square in ``tile`` mode, or just one image). ``sources[k]`` = (square, fit) says where reference image k
    lies, for mapping its points. A coloured previous frame joins as one more square that no point names
    (:meth:`with_extra_square`).
    """

    size: int
    fit: Fit                               # the first reference image's fit
    image: Image.Image                     # the first encoded square (processing size)
    context: torch.Tensor                  # CLIP image token (1, 1, D)
    latents: torch.Tensor                  # latents the bank was recorded from (S, 4, h, w), float32
    bank: dict[str, torch.Tensor]          # per transformer block: (S, L, C), already in reader precision
    seed: int | None = None
    sources: tuple[tuple[int, Fit], ...] = ()
    mode: str = "tile"

    def __post_init__(self):
        if not self.sources:
            self.sources = ((0, self.fit),)

    @property
    def squares(self) -> int:
        return self.latents.shape[0]

    def to(self, device) -> Reference:
        return replace(self, context=self.context.to(device), latents=self.latents.to(device),
                       bank={k: v.to(device) for k, v in self.bank.items()})

    def with_extra_square(self, other: Reference) -> Reference:
        """This reference plus ``other``'s squares as more bank entries (its CLIP token and points are not used:
        the context stays this reference's)."""
        if other.size != self.size:
            raise ValueError(f"cannot combine references encoded at {self.size}px and {other.size}px")
        return replace(self, latents=torch.cat([self.latents, other.latents.to(self.latents.device)]),
                       bank={k: torch.cat([v, other.bank[k].to(v.device)]) for k, v in self.bank.items()})


@dataclass
class ColorizeResult:
    image: Image.Image              # coloured, at the line art's original size
    lineart: Image.Image            # the line art used (white on black), at the line art's original size
    seed: int | None
    processed_image: Image.Image    # coloured, at the processing size (what the official code outputs)
    latents: torch.Tensor           # final latents (1, 4, h, w), float32


def _noise(shape, generator: torch.Generator | None, noise: torch.Tensor | None, what: str) -> torch.Tensor:
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"{what}: injected noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
        return noise.float()
    return torch.randn(shape, generator=generator, dtype=torch.float32, device="cpu")


def _generator(seed: int | None, generator: torch.Generator | None) -> tuple[torch.Generator, int | None]:
    if generator is not None:
        return generator, seed
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    return torch.Generator("cpu").manual_seed(int(seed)), seed


Observers = Iterable[Observer] | None


class MangaNinja:
    """The MangaNinja pipeline over a module owner. Build it with :meth:`from_folder` (standalone) or
    :func:`mn_core.assembly.assemble`."""

    def __init__(self, modules: ModuleOwner, *, null_context: torch.Tensor, schedule: DDIMSchedule,
                 dtype: torch.dtype, sequential_rows: bool = False, compile: bool = False,
                 unet_levels: tuple[int, int, int] | None = None):
        self.modules = modules
        self.unet_levels = unet_levels  # from the checkpoint's UNet config: see min_size()
        self.null_context = null_context.float().cpu()
        self.schedule = schedule
        self.dtype = dtype
        self.sequential_rows = sequential_rows
        self.compile = compile  # torch.compile the per-step networks (first use compiles: slow once, then faster)
        self._compiled: dict[str, tuple[nn.Module | None, Callable]] = {}

    @property
    def device(self) -> torch.device:
        return self.modules.device

    @classmethod
    def from_folder(cls, root: str | Path, *, device="auto", precision="auto", download: bool = False,
                    progress=None, one_phase: bool = True, lazy: bool = False, sequential_rows: bool = False,
                    compile: bool = False, channels_last: bool | Collection[str] | None = None) -> MangaNinja:
        """Load the official checkpoint folder.

        ``one_phase`` (default) holds only the current phase's large networks on the device (GPU) or in memory
        (CPU), see :class:`~mn_core.placement.LocalModules`; off, everything stays resident (faster when
        alternating references). ``lazy`` loads each network when first needed; ``sequential_rows`` runs the
        guidance rows one by one (about a third of the activation memory, identical results); ``compile`` applies
        torch.compile to the per-step networks; ``channels_last`` stores the convolution weights of all networks
        (``True``), none (``False``) or the named ones channels-last; the default is all on CUDA (the layout cuDNN
        prefers) and only the VAE on the CPU (:data:`mn_core.assembly.CPU_CHANNELS_LAST`).
        """
        from .assembly import from_folder  # the assembly builds this class

        return from_folder(root, device=device, precision=precision, download=download, progress=progress,
                           one_phase=one_phase, lazy=lazy, sequential_rows=sequential_rows, compile=compile,
                           channels_last=channels_last)

    # ----------------------------------------------------------------------------------------------------------

    def _module(self, name: str) -> nn.Module:
        return self.modules.get(name)

    def _prepare(self, phase: str, hooks: Hooks, memory_required: int = 0) -> None:
        self.modules.prepare(phase, memory_required=memory_required)
        if hooks.observers:
            hooks.phase(phase, {name: self._module(name) for name in phases.networks(phase)})

    def _step_functions(self):
        """The denoising UNet and the ControlNet residual function, compiled when asked."""
        unet = self._module("denoising_unet")
        if not self.compile:
            return unet, controlnet_residuals
        cached = self._compiled.get("denoising_unet")
        if cached is None or cached[0] is not unet:
            cached = (unet, torch.compile(unet, dynamic=False))
            self._compiled["denoising_unet"] = cached
        if "controlnet_residuals" not in self._compiled:
            self._compiled["controlnet_residuals"] = (None, torch.compile(controlnet_residuals, dynamic=False))
        return cached[1], self._compiled["controlnet_residuals"][1]

    def latent_factor(self) -> int:
        vae = self._module("vae")
        return 2 ** (len(vae.config.block_out_channels) - 1)

    def min_size(self) -> int:
        """The smallest processing size these checkpoints take: at the UNet's deepest level every normalisation
        group must hold more than one value (from the checkpoint's configs; 64 for SD1.5's)."""
        if self.unet_levels is None:
            return 64
        levels, channels, groups = self.unet_levels
        factor = self.latent_factor() * 2 ** (levels - 1)
        size = 64
        while (size // factor) ** 2 * max(1, channels // groups) < 2:
            size += 64
        return size

    def check_size(self, size: int) -> None:
        """A processing size these checkpoints can take, or a ValueError that says which to use."""
        check_size(size)
        smallest = self.min_size()
        if size < smallest:
            raise ValueError(f"processing size {size} is too small for these checkpoints (their UNet's deepest "
                             f"layer would hold one value per normalisation group); use {smallest} or more (a "
                             f"multiple of 64)")

    @torch.inference_mode()
    def encode_reference(self, image, *, size: int = 512, fit: str = "letterbox", seed: int | None = None,
                         generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                         observers: Observers = None) -> Reference:
        """Encode a reference image once: CLIP token, VAE posterior sample (noise draw 1), reference bank."""
        return self.encode_references([image], size=size, fit=fit, seed=seed, generator=generator, noise=noise,
                                      observers=observers)

    @torch.inference_mode()
    def encode_references(self, images, *, mode: str = "tile", size: int = 512, fit: str = "letterbox",
                          seed: int | None = None, generator: torch.Generator | None = None,
                          noise: torch.Tensor | None = None, observers: Observers = None) -> Reference:
        """Encode one or several references once.

        ``mode="tile"``: the images are laid out in one processing square (each fitted into its tile, see
        :func:`~mn_core.images.tile_regions`) and encoded as ONE reference, the input distribution the model was
        trained on, at a lower resolution per image. ``mode="bank"``: each image is encoded alone at the
        processing size and their attention banks are concatenated along the token axis in every reader block;
        the CLIP context is the mean of the images' projected CLIP embeddings (the model reads one token; the
        mean keeps it in the training distribution's shape, while the banks carry each image's colours). With one
        image both modes are exactly :meth:`encode_reference`. Noise draw 1 is one (1, 4, h, w) draw per encoded
        square, in order; injected ``noise`` is (S, 4, h, w).
        """
        self.check_size(size)
        if mode not in MULTI_REFERENCE_MODES:
            raise ValueError(f"mode must be {' or '.join(MULTI_REFERENCE_MODES)}, got {mode!r}")
        images = list(images)
        if not images:
            raise ValueError("no reference image given: connect at least one")
        pils = [to_pil(img, what=f"reference {k + 1}" if len(images) > 1 else "reference").convert("RGB")
                for k, img in enumerate(images)]
        if len(pils) == 1:
            fits = [Fit(fit, pils[0].size, size)]
        elif mode == "tile":
            fits = [Fit(fit, p.size, size, region) for p, region in zip(pils, tile_regions(len(pils), size))]
        else:
            fits = [Fit(fit, p.size, size) for p in pils]
        squares = [compose(pils, fits)] if mode == "tile" or len(pils) == 1 else [
            f.apply(p, fill=255) for p, f in zip(pils, fits)]
        sources = tuple((0 if len(squares) == 1 else k, f) for k, f in enumerate(fits))
        if noise is None:
            generator, seed = _generator(seed, generator)
        elif noise.shape[0] != len(squares):
            raise ValueError(f"reference posterior noise: {noise.shape[0]} draws given for {len(squares)} squares")
        hooks = Hooks(observers, self.device)
        self._prepare(phases.REFERENCE, hooks, activation_bytes(size, 1, self.dtype))
        encoded = [self._encode_square(square, generator, None if noise is None else noise[k:k + 1], hooks)
                   for k, square in enumerate(squares)]
        self.modules.release(phases.REFERENCE)  # the reference networks are not needed until the next reference
        contexts = [e[0] for e in encoded]
        context = contexts[0] if len(contexts) == 1 else torch.stack(contexts).mean(0)
        latents = torch.cat([e[1] for e in encoded])
        bank = {k: torch.cat([e[2][k] for e in encoded]) for k in encoded[0][2]}
        return Reference(size=size, fit=fits[0], image=squares[0], context=context, latents=latents, bank=bank,
                         seed=seed, sources=sources, mode=mode)

    def _encode_square(self, processed: Image.Image, generator, noise, hooks: Hooks):
        """One processing square: CLIP token (1, 1, D), posterior latents (1, 4, h, w), bank {path: (1, L, C)}."""
        device, dtype = self.device, self.dtype
        with hooks.section("encode_reference"):
            with hooks.section("clip_vision"):
                clip = self._module("clip_vision")
                pixels = clip_input(processed, size=clip.config.image_size)
                context = clip(pixel_values=pixels.to(device, dtype)).image_embeds[:, None, :]
            with hooks.section("vae_encode"):
                vae = self._module("vae")
                posterior = vae.encode(to_model_input(processed).to(device, dtype)).latent_dist
                eps = _noise(posterior.mean.shape, generator, noise, "reference posterior noise").to(device)
                latents = (posterior.mean.float() + posterior.std.float() * eps) * LATENT_SCALE
            with hooks.section("reference_unet"):
                ref_unet = self._module("reference_unet")
                recorder: BankRecorder = ref_unet.mn_bank_recorder
                with recorder.recording() as raw_bank:
                    ref_unet(latents.to(dtype), 0, encoder_hidden_states=context)
                bank = {k: round_bank(v, dtype) for k, v in raw_bank.items()}
        hooks.value("clip_pixel_values", pixels)
        hooks.value("clip_image_embed", lambda: context.float().cpu())
        hooks.value("ref_posterior_mean", lambda: posterior.mean.float().cpu())
        hooks.value("ref_posterior_std", lambda: posterior.std.float().cpu())
        hooks.value("ref_latents", lambda: latents.float().cpu())
        hooks.value("ref_bank", lambda: {k: v.float().cpu() for k, v in raw_bank.items()})
        return context, latents, bank

    @torch.inference_mode()
    def extract_lineart(self, image, *, size: int = 512, fit: str = "letterbox", cleanup: bool = True,
                        binarize: float | None = None, observers: Observers = None) -> Lineart:
        """Line art from a colour or grey image, by the sk_model annotator (at the processing size). For a drawing
        that already is line art, :func:`mn_core.lineart.from_drawing` needs no network."""
        self.check_size(size)
        pil = to_pil(image, what="line art source").convert("RGB")
        fitting = Fit(fit, pil.size, size)
        hooks = Hooks(observers, self.device)
        self._prepare(phases.LINEART, hooks)
        with hooks.section("extract_lineart"):
            values = annotator.extract(self._module("annotator"), to_model_input(fitting.apply(pil, fill=255)))
        hooks.value("annotator_lineart_raw", lambda: values.cpu())
        return lineart_prep.finish(values.cpu(), fitting, cleanup=cleanup, binarize=binarize)

    # ----------------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def colorize(self, reference: Reference, lineart, *, points: Points | PointMaps | None = None, steps: int = 50,
                 guidance_ref: float = 9.0, guidance_point: float = 15.0, seed: int | None = None,
                 generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                 polarity: str = "auto", observers: Observers = None) -> ColorizeResult:
        """Colour one line art with an encoded reference.

        ``lineart``: a :class:`~mn_core.lineart.Lineart` (from :meth:`extract_lineart` /
        :func:`mn_core.lineart.from_drawing`), used as it is, or a drawing (any image type; see ``polarity``).
        ``points``: matched pairs in original-image pixels (or ready point maps). ``noise`` injects the initial
        latents (noise draw 2). ``observers`` see every step (raise from one to cancel), see
        :mod:`mn_core.observers`. Several frames: :mod:`mn_core.sequence`.
        """
        lineart = self.prepared_lineart(reference, lineart, polarity)
        maps = self.point_maps(reference, lineart, points)
        if noise is None:
            generator, seed = _generator(seed, generator)
        h = reference.size // self.latent_factor()
        z = _noise((1, 4, h, h), generator, noise, "initial latents")
        return self.colorize_batch(reference, [lineart], [maps], z, steps=steps, guidance_ref=guidance_ref,
                                   guidance_point=guidance_point, seeds=[seed], observers=observers)[0]

    def prepared_lineart(self, reference: Reference, lineart, polarity: str = "auto") -> Lineart:
        if not isinstance(lineart, Lineart):
            lineart = lineart_prep.from_drawing(lineart, size=reference.size, fit=reference.fit.mode,
                                                polarity=polarity)
        if lineart.size != reference.size:
            raise ValueError(f"line art was prepared at {lineart.size}px but the reference at {reference.size}px")
        return lineart

    @staticmethod
    def point_maps(reference: Reference, lineart: Lineart, points: Points | PointMaps | None) -> PointMaps:
        maps = points if isinstance(points, PointMaps) else point_maps(points or NO_POINTS, list(reference.sources),
                                                                       lineart.fit, squares=reference.squares)
        if maps.reference.shape[-1] != reference.size:
            raise ValueError(f"point maps are {maps.reference.shape[-1]}px, the processing size is {reference.size}")
        if maps.reference.shape[0] != reference.squares:
            raise ValueError(f"{maps.reference.shape[0]} reference point maps for {reference.squares} squares")
        return maps

    @torch.inference_mode()
    def colorize_batch(self, reference: Reference, linearts: list[Lineart], maps: list[PointMaps], z: torch.Tensor,
                       *, steps: int, guidance_ref: float, guidance_point: float, seeds: list[int | None],
                       observers: Observers = None) -> list[ColorizeResult]:
        """Colour F prepared line arts together (one network call per step for all of them; the reference bank is
        shared, not copied per frame). ``maps``: one per frame, with the same reference maps; ``z``: the
        initial latents (F, 4, h, w). Each frame's result equals colouring it alone (within float tolerance)."""
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        for name, g in (("guidance_ref", guidance_ref), ("guidance_point", guidance_point)):
            if not np.isfinite(g):
                raise ValueError(f"{name} must be a finite number, got {g!r}")
        if not (len(linearts) == len(maps) == z.shape[0] == len(seeds)):
            raise ValueError(f"{len(linearts)} line arts, {len(maps)} point maps, {z.shape[0]} latents and "
                             f"{len(seeds)} seeds: one of each per frame")
        if any(not torch.equal(m.reference, maps[0].reference) for m in maps[1:]):
            raise ValueError("frames coloured together must share their reference points")
        rows = needed_rows(guidance_ref, guidance_point)
        frames = len(linearts)
        hooks = Hooks(observers, self.device)
        self._prepare(phases.SAMPLING, hooks, activation_bytes(
            reference.size, frames * (1 if self.sequential_rows else len(rows)), self.dtype))
        device, dtype = self.device, self.dtype
        with hooks.section("colorize_prepare"):
            ref = reference.to(device)
            point_net = self._module("point_net")
            ref_tokens = point_net(maps[0].reference.to(device, dtype))
            line_maps = maps[0].lineart if frames == 1 else torch.cat([m.lineart for m in maps])
            target_tokens = point_net(line_maps.to(device, dtype))
            values = linearts[0].values if frames == 1 else torch.cat([a.values for a in linearts])
            cond = lineart_prep.to_condition(values).to(device, dtype)
            controlnet = self._module("controlnet")
            unet = self._module("denoising_unet")
            inputs = StepInputs(rows=rows, null_context=self.null_context.to(device, dtype),
                                image_context=ref.context.to(dtype),
                                cond_embedding=controlnet.controlnet_cond_embedding(cond))
            reader: ReferenceReader = unet.mn_reader
            step_unet, step_controlnet = self._step_functions()
            denoiser = Denoiser(controlnet, step_unet, reader, inputs, dtype, sequential_rows=self.sequential_rows,
                                residuals=step_controlnet, hooks=hooks)
        hooks.value("lineart_cond", lambda: cond.float().cpu())
        hooks.value("point_emb_ref", lambda: [t.float().cpu() for t in ref_tokens])
        hooks.value("point_emb_target", lambda: [t.float().cpu() for t in target_tokens])
        hooks.value("latents", lambda: z.clone())
        hooks.start_laps()
        with reader.bound(ref.bank, ref_tokens, target_tokens, inputs.rows, frames=frames):
            z = sample(denoiser, z.to(device), self.schedule, steps, guidance_ref, guidance_point, hooks.step_end)
        decoded = self.decode(z, observers=hooks.observers)
        results = []
        for k, lineart in enumerate(linearts):
            processed = Image.fromarray(to_uint8(decoded[k:k + 1]))
            results.append(ColorizeResult(image=lineart.fit.restore(processed), lineart=lineart.restored(),
                                          seed=seeds[k], processed_image=processed, latents=z[k:k + 1].cpu()))
        return results

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, *, observers: Observers = None) -> torch.Tensor:
        """Latents -> image in [-1, 1] (clamped). Decodes in the VAE's precision and, should that overflow
        (float16), again in float32."""
        hooks = Hooks(observers, self.device)
        with hooks.section("decode"):
            self._prepare(phases.DECODE, hooks)
            vae = self._module("vae")
            z = (latents.float() / LATENT_SCALE).to(self.device)
            out = vae.decode(z.to(vae.dtype)).sample
            if not torch.isfinite(out).all():
                log.warning("VAE decode overflowed in %s; decoding again in float32", vae.dtype)
                out = _decode_float32(vae, z)
        hooks.value("decoded_image_raw", lambda: out.float().cpu())
        decoded = out.float().clamp(-1.0, 1.0)
        hooks.value("decoded_image", lambda: decoded.cpu())
        return decoded


def _decode_float32(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Decode with a temporary float32 copy of the decoder (the managed VAE itself is left as it is)."""
    post_quant_conv = copy.deepcopy(vae.post_quant_conv).float() if vae.post_quant_conv is not None else None
    decoder = copy.deepcopy(vae.decoder).float()
    h = post_quant_conv(z) if post_quant_conv is not None else z
    return decoder(h)
