"""MangaNinja inference: load once, encode a reference once, colour any number of line arts with it.

Data flow (the official algorithm, SPEC §4): reference image -> fit to the processing square -> CLIP image token +
VAE posterior sample -> reference UNet at timestep 0 -> attention bank. Line art -> fit -> (extract) -> cleanup ->
ControlNet condition. Points -> point maps -> PointNet tokens. DDIM with three-way guidance, VAE decode, truncate
to 8 bits, and back through the fit to the line art's own size.

Random numbers are drawn on the CPU in float32, in this order when one generator is shared: (1) the reference's VAE
posterior noise, shape (1, 4, h, w), in :meth:`MangaNinja.encode_reference`; (2) the initial latents, shape
(frames, 4, h, w), in :meth:`MangaNinja.colorize`. Both can be injected instead.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from . import lineart as lineart_ops
from . import models
from .attention import BankRecorder, ReferenceReader, install_cross_attention, round_bank
from .denoise import Denoiser, StepInputs, check_controlnet_supported
from .images import Fit, clip_input, to_model_input, to_pil, to_uint8
from .points import NO_POINTS, PointMaps, Points, point_maps
from .sampling import DDIMSchedule, needed_rows, sample

log = logging.getLogger("mn_core")

LATENT_SCALE = 0.18215  # hard-coded by the official pipeline (not read from the VAE config)
REFERENCE_MODELS = ("clip_vision", "vae", "reference_unet")
SAMPLING_MODELS = ("point_net", "controlnet", "denoising_unet")
MODULE_NAMES = ("reference_unet", "denoising_unet", "controlnet", "vae", "clip_vision", "point_net", "annotator")
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------------------------------------------
# Devices, precision, and who owns the modules


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
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but PyTorch sees no CUDA GPU here")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} asked for, but MPS is not available here")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    return PRECISIONS[precision]


def prepare_module(name: str, module: nn.Module) -> nn.Module:
    """Install MangaNinja's attention processors on a freshly loaded network."""
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


def module_loaders(files: models.ModelFiles, dtype: torch.dtype, device="cpu") -> dict[str, Callable[[], nn.Module]]:
    """One function per network that loads it (strictly) and installs its processors."""
    unet_channels = tuple(models.read_json(files.unet_config)["block_out_channels"])
    raw = {
        "reference_unet": lambda: models.load_unet(files, reference=True, dtype=dtype, device=device),
        "denoising_unet": lambda: models.load_unet(files, reference=False, dtype=dtype, device=device),
        "controlnet": lambda: models.load_controlnet(files, dtype=dtype, device=device),
        "vae": lambda: models.load_vae(files, dtype=dtype, device=device),
        "clip_vision": lambda: models.load_clip_vision(files, dtype=dtype, device=device),
        "point_net": lambda: models.load_point_net(files, unet_channels=unet_channels, dtype=dtype, device=device),
        "annotator": lambda: models.load_annotator(files, device=device),
    }
    return {name: (lambda name=name, f=f: prepare_module(name, f())) for name, f in raw.items()}


def activation_bytes(size: int, rows: int, dtype: torch.dtype) -> int:
    """A rough upper bound of one denoising step's activation memory at ``size`` px with ``rows`` guidance rows
    (SD1.5 widths; the self-attention keys/values are twice the usual length: target + bank). Used to ask a model
    manager for room before sampling."""
    latent_area = (size // 8) ** 2
    per_row = latent_area * 320 * 12 * 4  # the widest level's activations, about a dozen live tensors, fp32 bytes
    return int(rows * per_row * torch.finfo(dtype).bits / 32) + (size * size * 128 * 4)  # + VAE decode working set


class LocalModules:
    """Standalone module owner (ComfyUI supplies its own, backed by its model manager).

    ``prepare`` brings the networks a phase needs to the compute device, loading them first if needed (weights are
    memory-mapped from the files where the precision allows, so loading is cheap). With ``one_phase`` only one
    phase's large networks are held at a time: preparing the reference phase (reference UNet, CLIP) evicts the
    sampling phase's (denoising UNet, ControlNet) and the other way round. Evicting moves a network to the CPU when
    computing on a GPU, and drops it when computing on the CPU (it is reloaded from its file when needed again).
    ``release`` evicts a finished phase's networks at once (the reference networks right after a reference is
    encoded). So colouring many frames with one reference moves nothing. The small shared networks (PointNet,
    annotator, the VAE's decoder) stay; the VAE's encoder belongs to the reference phase.
    """

    LARGE = ("reference_unet", "clip_vision", "denoising_unet", "controlnet")

    def __init__(self, loaders: dict[str, Callable[[], nn.Module]], device: torch.device, *, one_phase: bool = True,
                 modules: dict[str, nn.Module] | None = None):
        self.loaders = loaders
        self.device = device
        self.one_phase = one_phase
        self.modules: dict[str, nn.Module] = dict(modules or {})
        self.load_seconds: dict[str, float] = {}

    @staticmethod
    def _move_parts(module: nn.Module, parts: tuple[str, ...], device) -> None:
        for part in parts:
            if getattr(module, part, None) is not None:
                getattr(module, part).to(device)

    VAE_ENCODER = ("encoder", "quant_conv")
    VAE_DECODER = ("decoder", "post_quant_conv")

    def _evict(self, names) -> None:
        dropped = False
        for name in names:
            if name not in self.modules:
                continue
            if name == "vae":  # shared: only its encoder leaves the GPU (on the CPU it stays as it is)
                self._move_parts(self.modules[name], self.VAE_ENCODER, "cpu")
            elif self.device.type == "cpu" and name in self.loaders:
                del self.modules[name]
                dropped = True
            else:
                self.modules[name].to("cpu")
        if dropped:
            gc.collect()  # the attention processors make reference cycles: free the weights now

    def prepare(self, names, memory_required: int = 0) -> None:
        if self.one_phase and any(name in self.LARGE for name in names):
            self._evict([n for n in self.modules if n in self.LARGE and n not in names])
        for name in names:
            if name not in self.modules:
                t0 = time.perf_counter()
                self.modules[name] = self.loaders[name]()
                self.load_seconds[name] = self.load_seconds.get(name, 0.0) + time.perf_counter() - t0
            module = self.modules[name]
            if name == "vae" and self.one_phase and "reference_unet" not in names:
                # Outside the reference phase only the decoder is needed: the encoder stays off the device.
                self._move_parts(module, self.VAE_ENCODER, "cpu")
                self._move_parts(module, self.VAE_DECODER, self.device)
            else:
                module.to(self.device)

    def release(self, names) -> None:
        """A phase is done: with ``one_phase`` its large networks (and the VAE's encoder) leave at once."""
        if self.one_phase:
            self._evict([n for n in names if n in self.LARGE or n == "vae"])

    def get(self, name: str) -> nn.Module:
        if name not in self.modules:  # evicted or lazy: load it first
            self.prepare((name,))
        return self.modules[name]


# --------------------------------------------------------------------------------------------------------------
# Values passed between the steps


@dataclass
class Reference:
    """A reference image encoded once; reusable for any number of line arts (on any device)."""

    size: int
    fit: Fit
    image: Image.Image                     # the fitted reference (processing size)
    context: torch.Tensor                  # CLIP image token (1, 1, D)
    latents: torch.Tensor                  # reference latents the bank was recorded from (1, 4, h, w), float32
    bank: dict[str, torch.Tensor]          # per transformer block: (1, L, C), already in reader precision
    seed: int | None = None
    seconds: float = 0.0                   # time spent encoding (excluding any model loading)

    def to(self, device) -> Reference:
        return replace(self, context=self.context.to(device), latents=self.latents.to(device),
                       bank={k: v.to(device) for k, v in self.bank.items()})


@dataclass
class Lineart:
    """Line art at the processing size: lines ~1 on 0, after the 0.24 cleanup."""

    values: torch.Tensor  # (1, 1, N, N) float32
    fit: Fit

    @property
    def size(self) -> int:
        return self.fit.size

    def image(self) -> Image.Image:
        """White-on-black 8-bit image at the processing size (as the official code saves it)."""
        return Image.fromarray(lineart_ops.to_uint8_image(self.values))

    def restored(self) -> Image.Image:
        """The same, brought back to the source image's size."""
        return self.fit.restore(self.image())


@dataclass
class ColorizeResult:
    image: Image.Image              # coloured, at the line art's original size
    lineart: Image.Image            # the line art used (white on black), at the line art's original size
    seed: int | None
    processed_image: Image.Image    # coloured, at the processing size (what the official code outputs)
    latents: torch.Tensor           # final latents (1, 4, h, w), float32
    trace: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)  # seconds: "prepare", "steps" (list), "decode"


# --------------------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> float:
    """A wall-clock reading after the device has finished its queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    return time.perf_counter()


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


class MangaNinja:
    """The MangaNinja pipeline. Build it with :meth:`from_folder` (standalone) or from already-loaded modules."""

    def __init__(self, modules, *, null_context: torch.Tensor, schedule: DDIMSchedule, dtype: torch.dtype,
                 sequential_rows: bool = False, compile: bool = False):
        self.modules = modules  # LocalModules, or ComfyUI's equivalent
        self.null_context = null_context.float().cpu()
        self.schedule = schedule
        self.dtype = dtype
        self.sequential_rows = sequential_rows
        self.compile = compile  # torch.compile the per-step networks (first use compiles: slow once, then faster)
        self._compiled: dict[str, tuple[nn.Module, Callable]] = {}

    @property
    def device(self) -> torch.device:
        return self.modules.device

    @classmethod
    def from_folder(cls, root: str | Path, *, device="auto", precision="auto", download: bool = False,
                    progress=None, one_phase: bool = True,
                    lazy: bool = False, sequential_rows: bool = False, compile: bool = False,
                    channels_last: bool | None = None) -> MangaNinja:
        """Load the official checkpoint folder.

        ``one_phase`` (default) holds only the current phase's large networks on the device (GPU) or in memory
        (CPU), see :class:`LocalModules`; off, everything stays resident (faster when alternating references).
        ``lazy`` loads each network when first needed; ``sequential_rows``
        runs the guidance rows one by one (about a third of the activation memory, identical results);
        ``compile`` applies torch.compile to the per-step networks; ``channels_last`` (default: on for CUDA) stores
        the convolution weights in the layout cuDNN prefers.
        """
        if download:
            models.ensure_models(root, progress=progress)
        files = models.ModelFiles.from_folder(root)
        dev = resolve_device(device)
        dtype = resolve_precision(precision, dev)
        loaders = module_loaders(files, dtype, device="cpu" if one_phase else dev)
        if channels_last is None:
            channels_last = dev.type == "cuda"
        if channels_last:
            loaders = {name: (lambda f=f: f().to(memory_format=torch.channels_last)) for name, f in loaders.items()}
        owner = LocalModules(loaders, dev, one_phase=one_phase)
        if not lazy:
            for name in MODULE_NAMES:
                owner.modules[name] = loaders[name]()
        null = models.compute_null_context(files)
        return cls(owner, null_context=null, schedule=models.load_schedule(files), dtype=dtype,
                   sequential_rows=sequential_rows, compile=compile)

    # ----------------------------------------------------------------------------------------------------------

    def _module(self, name: str) -> nn.Module:
        return self.modules.get(name)

    def _step_functions(self):
        """The denoising UNet and the ControlNet residual function, compiled when asked."""
        from .denoise import controlnet_residuals

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

    @staticmethod
    def check_size(size: int) -> None:
        if not isinstance(size, int) or size < 64 or size % 64:
            raise ValueError(f"processing size must be a multiple of 64 (at least 64), got {size!r}")

    @torch.inference_mode()
    def encode_reference(self, image, *, size: int = 512, fit: str = "letterbox", seed: int | None = None,
                         generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                         trace: dict | None = None) -> Reference:
        """Encode a reference image once: CLIP token, VAE posterior sample (noise draw 1), reference bank."""
        self.check_size(size)
        pil = to_pil(image, what="reference").convert("RGB")
        fitting = Fit(fit, pil.size, size)
        processed = fitting.apply(pil, fill=255)
        if noise is None:
            generator, seed = _generator(seed, generator)
        self.modules.prepare(REFERENCE_MODELS, memory_required=activation_bytes(size, 1, self.dtype))
        device, dtype = self.device, self.dtype
        t0 = _sync(device)
        clip = self._module("clip_vision")
        pixels = clip_input(processed, size=clip.config.image_size)
        context = clip(pixel_values=pixels.to(device, dtype)).image_embeds[:, None, :]
        vae = self._module("vae")
        posterior = vae.encode(to_model_input(processed).to(device, dtype)).latent_dist
        eps = _noise(posterior.mean.shape, generator, noise, "reference posterior noise").to(device)
        latents = (posterior.mean.float() + posterior.std.float() * eps) * LATENT_SCALE
        ref_unet = self._module("reference_unet")
        recorder: BankRecorder = ref_unet.mn_bank_recorder
        with recorder.recording() as raw_bank:
            ref_unet(latents.to(dtype), 0, encoder_hidden_states=context)
        bank = {k: round_bank(v, dtype) for k, v in raw_bank.items()}
        if trace is not None:
            trace.update(clip_pixel_values=pixels, clip_image_embed=context.float().cpu(),
                         ref_posterior_mean=posterior.mean.float().cpu(), ref_posterior_std=posterior.std.float().cpu(),
                         ref_latents=latents.float().cpu(), ref_bank={k: v.float().cpu() for k, v in raw_bank.items()})
        seconds = _sync(device) - t0
        self.modules.release(REFERENCE_MODELS)  # the reference networks are not needed until the next reference
        return Reference(size=size, fit=fitting, image=processed, context=context, latents=latents, bank=bank,
                         seed=seed, seconds=seconds)

    @torch.inference_mode()
    def extract_lineart(self, image, *, size: int = 512, fit: str = "letterbox", cleanup: bool = True,
                        binarize: float | None = None, trace: dict | None = None) -> Lineart:
        """Line art from a colour or grey image, by the sk_model annotator (at the processing size)."""
        self.check_size(size)
        pil = to_pil(image, what="line art source").convert("RGB")
        fitting = Fit(fit, pil.size, size)
        self.modules.prepare(("annotator",))
        values = lineart_ops.extract(self._module("annotator"), to_model_input(fitting.apply(pil, fill=255)))
        if trace is not None:
            trace["annotator_lineart_raw"] = values.cpu()
        return self._finish_lineart(values.cpu(), fitting, cleanup, binarize)

    @staticmethod
    @torch.inference_mode()
    def lineart_from_drawing(image, *, size: int = 512, fit: str = "letterbox", polarity: str = "auto",
                             cleanup: bool = True, binarize: float | None = None) -> Lineart:
        """Line art from a drawing: white on black is used as is (as upstream), black on white is inverted.
        Needs no network (a static method).

        ``polarity``: "auto" (dark background -> white on black), "white_on_black" or "black_on_white".
        """
        MangaNinja.check_size(size)
        pil = to_pil(image, what="line art")
        if pil.mode != "RGB":
            pil = pil.convert("RGB")
        if polarity == "auto":
            invert = lineart_ops.is_dark_on_light(np.asarray(pil.convert("L")))
        elif polarity in ("white_on_black", "black_on_white"):
            invert = polarity == "black_on_white"
        else:
            raise ValueError(f"polarity must be auto, white_on_black or black_on_white, got {polarity!r}")
        fitting = Fit(fit, pil.size, size)
        gray = np.asarray(fitting.apply(pil, fill=255 if invert else 0).convert("L"))
        return MangaNinja._finish_lineart(lineart_ops.from_gray(gray, invert), fitting, cleanup, binarize)

    @staticmethod
    def _finish_lineart(values, fitting: Fit, cleanup: bool, binarize: float | None) -> Lineart:
        values = values.float() * fitting.content_mask() if fitting.mode == "letterbox" else values.float()
        if binarize is not None:
            values = lineart_ops.binarize(values, binarize)
        if cleanup:
            values = lineart_ops.cleanup(values)
        return Lineart(values=values, fit=fitting)

    # ----------------------------------------------------------------------------------------------------------

    @torch.inference_mode()
    def colorize(self, reference: Reference, lineart, *, points: Points | PointMaps | None = None, steps: int = 50,
                 guidance_ref: float = 9.0, guidance_point: float = 15.0, seed: int | None = None,
                 generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
                 polarity: str = "auto", callback: Callable[[int, int], None] | None = None,
                 trace: dict | None = None) -> ColorizeResult:
        """Colour one line art with an encoded reference.

        ``lineart``: a :class:`Lineart` (from :meth:`extract_lineart` / :meth:`lineart_from_drawing`) or a drawing
        (any image type; see ``polarity``). ``points``: matched pairs in original-image pixels (or ready point
        maps). ``noise`` injects the initial latents (noise draw 2). ``callback(step, steps)`` runs after every step
        (raise from it to cancel).
        """
        if not isinstance(lineart, Lineart):
            lineart = self.lineart_from_drawing(lineart, size=reference.size, fit=reference.fit.mode,
                                                polarity=polarity)
        if lineart.size != reference.size:
            raise ValueError(f"line art was prepared at {lineart.size}px but the reference at {reference.size}px")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        for name, g in (("guidance_ref", guidance_ref), ("guidance_point", guidance_point)):
            if not np.isfinite(g):
                raise ValueError(f"{name} must be a finite number, got {g!r}")
        maps = points if isinstance(points, PointMaps) else point_maps(points or NO_POINTS, reference.fit, lineart.fit)
        if maps.reference.shape[-1] != reference.size:
            raise ValueError(f"point maps are {maps.reference.shape[-1]}px, the processing size is {reference.size}")
        h = reference.size // self.latent_factor()
        if noise is None:
            generator, seed = _generator(seed, generator)
        z = _noise((1, 4, h, h), generator, noise, "initial latents")

        rows = needed_rows(guidance_ref, guidance_point)
        self.modules.prepare(SAMPLING_MODELS, memory_required=activation_bytes(
            reference.size, 1 if self.sequential_rows else len(rows), self.dtype))
        device, dtype = self.device, self.dtype
        timings = {"steps": []}
        t0 = _sync(device)
        ref = reference.to(device)
        point_net = self._module("point_net")
        ref_tokens = point_net(maps.reference.to(device, dtype))
        target_tokens = point_net(maps.lineart.to(device, dtype))
        cond = lineart_ops.to_condition(lineart.values).to(device, dtype)
        controlnet = self._module("controlnet")
        unet = self._module("denoising_unet")
        inputs = StepInputs(rows=rows,
                            null_context=self.null_context.to(device, dtype), image_context=ref.context.to(dtype),
                            cond_embedding=controlnet.controlnet_cond_embedding(cond))
        reader: ReferenceReader = unet.mn_reader
        step_unet, step_controlnet = self._step_functions()
        denoiser = Denoiser(controlnet, step_unet, reader, inputs, dtype, sequential_rows=self.sequential_rows,
                            residuals=step_controlnet)
        if trace is not None:
            trace.update(lineart_cond=cond.float().cpu(), point_emb_ref=[t.float().cpu() for t in ref_tokens],
                         point_emb_target=[t.float().cpu() for t in target_tokens], eps_per_step=[],
                         latents_per_step=[z.clone()])
            plain = denoiser

            def denoiser(x, t):  # noqa: F811 - records each step's rows
                eps = plain(x, t)
                trace["eps_per_step"].append({k: v.cpu() for k, v in eps.items()})
                return eps

        timings["prepare"] = _sync(device) - t0
        t_last = time.perf_counter()

        def on_step(i, n, latents):
            nonlocal t_last
            now = _sync(device)
            timings["steps"].append(now - t_last)
            t_last = now
            if trace is not None:
                trace["latents_per_step"].append(latents.cpu())
            if callback is not None:
                callback(i, n)

        with reader.bound(ref.bank, ref_tokens, target_tokens, inputs.rows):
            z = sample(denoiser, z.to(device), self.schedule, steps, guidance_ref, guidance_point, on_step)
        t_decode = time.perf_counter()
        decoded = self.decode(z, trace)
        timings["decode"] = _sync(device) - t_decode
        if trace is not None:
            trace["decoded_image"] = decoded.cpu()
        processed = Image.fromarray(to_uint8(decoded))
        return ColorizeResult(image=lineart.fit.restore(processed), lineart=lineart.restored(), seed=seed,
                              processed_image=processed, latents=z.cpu(), trace=trace if trace is not None else {},
                              timings=timings)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, trace: dict | None = None) -> torch.Tensor:
        """Latents -> image in [-1, 1] (clamped). Decodes in the VAE's precision and, should that overflow
        (float16), again in float32."""
        self.modules.prepare(("vae",))
        vae = self._module("vae")
        z = (latents.float() / LATENT_SCALE).to(self.device)
        out = vae.decode(z.to(vae.dtype)).sample
        if not torch.isfinite(out).all():
            log.warning("VAE decode overflowed in %s; decoding again in float32", vae.dtype)
            out = _decode_float32(vae, z)
        if trace is not None:
            trace["decoded_image_raw"] = out.float().cpu()
        return out.float().clamp(-1.0, 1.0)


def _decode_float32(vae: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Decode with a temporary float32 copy of the decoder (the managed VAE itself is left as it is)."""
    import copy

    post_quant_conv = copy.deepcopy(vae.post_quant_conv).float() if vae.post_quant_conv is not None else None
    decoder = copy.deepcopy(vae.decoder).float()
    h = post_quant_conv(z) if post_quant_conv is not None else z
    return decoder(h)
