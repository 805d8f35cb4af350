"""End-to-end behaviour of the public API on tiny weights: reuse, seeds and noise order, inputs, geometry."""

import numpy as np
import pytest
import torch
from PIL import Image

from mn_core import MangaNinja, Points, PointsError, lineart_from_drawing
from mn_core.observers import Observer, Timings


def test_reference_is_encoded_once_and_reused(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    a = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=1)
    b = tiny.colorize(ref, sample_images["white_on_black"].rotate(90, expand=True), steps=2, seed=1)
    again = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=1)
    assert torch.equal(a.latents, again.latents)  # the reference is not modified by use
    assert not torch.equal(a.latents, b.latents)
    fresh = tiny.colorize(tiny.encode_reference(sample_images["reference"], size=128, seed=0),
                          sample_images["black_on_white"], steps=2, seed=1)
    assert torch.equal(a.latents, fresh.latents)


def test_one_generator_draws_reference_noise_then_initial_latents(tiny, sample_images):
    g = torch.Generator().manual_seed(123)
    ref = tiny.encode_reference(sample_images["reference"], size=128, generator=g)
    out = tiny.colorize(ref, sample_images["black_on_white"], steps=2, generator=g)
    g2 = torch.Generator().manual_seed(123)
    ref_noise = torch.randn(1, 4, 16, 16, generator=g2)
    init = torch.randn(1, 4, 16, 16, generator=g2)
    ref2 = tiny.encode_reference(sample_images["reference"], size=128, noise=ref_noise)
    out2 = tiny.colorize(ref2, sample_images["black_on_white"], steps=2, noise=init)
    assert torch.equal(out.latents, out2.latents)


def test_seed_reproduces_and_is_reported(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    a = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=42)
    b = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=42)
    c = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=43)
    assert a.seed == 42 and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    d = tiny.colorize(ref, sample_images["black_on_white"], steps=2)
    assert isinstance(d.seed, int)


def test_output_is_at_the_line_art_size_and_carries_the_line_art(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    for fit in ("letterbox", "stretch"):
        lineart = lineart_from_drawing(sample_images["black_on_white"], size=128, fit=fit)
        out = tiny.colorize(ref, lineart, steps=1, seed=0)
        assert out.image.size == (96, 140) and out.image.mode == "RGB"
        assert out.lineart.size == (96, 140) and out.processed_image.size == (128, 128)
        assert np.asarray(out.image).std() > 1


def test_polarity_is_detected(tiny, sample_images):
    a = lineart_from_drawing(sample_images["black_on_white"], size=128)
    b = lineart_from_drawing(sample_images["white_on_black"], size=128)
    # Same line art either way (resampling before vs after the inversion may differ by one 8-bit level).
    assert torch.allclose(a.values, b.values, rtol=0, atol=1.01 / 255)
    assert a.values.max() == 1 and a.values.mean() < 0.2  # lines high on a dark background
    forced = lineart_from_drawing(sample_images["black_on_white"], size=128, polarity="white_on_black")
    assert forced.values.mean() > 0.5
    with pytest.raises(ValueError, match="polarity"):
        lineart_from_drawing(sample_images["black_on_white"], size=128, polarity="sideways")


def test_cleanup_and_binarize(sample_images):
    grey = Image.fromarray(np.full((64, 64), 200, np.uint8))  # faint grey strokes everywhere: 55/255 after inversion
    art = lineart_from_drawing(grey, size=64, polarity="black_on_white")
    assert art.values.max() == 0  # 0.216 <= 0.24: removed
    kept = lineart_from_drawing(grey, size=64, polarity="black_on_white", cleanup=False)
    assert torch.allclose(kept.values, torch.full_like(kept.values, 55 / 255))
    binary = lineart_from_drawing(grey, size=64, polarity="black_on_white", binarize=0.1)
    assert set(binary.values.unique().tolist()) == {1.0}


def test_letterbox_padding_has_no_lines(tiny, sample_images):
    art = tiny.extract_lineart(sample_images["reference"], size=128, fit="letterbox")  # 160x120 -> bands top/bottom
    _, top, _, h = art.fit.box
    assert top > 0 and art.values[..., :top, :].max() == 0 and art.values[..., top + h:, :].max() == 0


def test_rgba_reference_is_composited_on_white(tiny, sample_images):
    rgb = sample_images["reference"]
    rgba = rgb.convert("RGBA")
    a = np.asarray(rgba).copy()
    white = (a[..., :3] == 255).all(-1)
    a[white, 3] = 0  # make the white background transparent (and its colour black)
    a[white, :3] = 0
    r1 = tiny.encode_reference(rgb, size=128, seed=0)
    r2 = tiny.encode_reference(Image.fromarray(a, "RGBA"), size=128, seed=0)
    assert torch.equal(r1.latents, r2.latents)


def test_points_change_the_result_and_bad_points_are_refused(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    pts = Points((((80, 50), (48, 45)), ((80, 100), (48, 110))))
    a = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=0)
    b = tiny.colorize(ref, sample_images["black_on_white"], points=pts, steps=2, seed=0)
    assert not torch.equal(a.latents, b.latents)
    with pytest.raises(PointsError, match="outside the 96x140 line art"):
        tiny.colorize(ref, sample_images["black_on_white"], points=Points((((1, 1), (96, 1)),)), steps=1)


@pytest.mark.parametrize("guidance_ref", [1.0, 0.5, 0.0])
def test_guidance_ref_at_or_below_one_does_not_crash(tiny, sample_images, guidance_ref):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    out = tiny.colorize(ref, sample_images["black_on_white"], steps=2, guidance_ref=guidance_ref, seed=0)
    assert torch.isfinite(out.latents).all()


def test_bad_arguments_fail_early(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    with pytest.raises(ValueError, match="multiple of 64"):
        tiny.encode_reference(sample_images["reference"], size=100)
    with pytest.raises(ValueError, match="steps"):
        tiny.colorize(ref, sample_images["black_on_white"], steps=0)
    with pytest.raises(ValueError, match="prepared at 192px"):
        tiny.colorize(ref, lineart_from_drawing(sample_images["black_on_white"], size=192), steps=1)
    with pytest.raises(ValueError, match="injected noise has shape"):
        tiny.colorize(ref, sample_images["black_on_white"], steps=1, noise=torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="finite"):
        tiny.colorize(ref, sample_images["black_on_white"], steps=1, guidance_point=float("nan"))


def test_memory_options_leave_the_output_unchanged(tiny, tiny_models, sample_images, monkeypatch):
    from mn_core import pages, placement

    released = []
    real_release = pages.release
    monkeypatch.setattr(placement.pages, "release", lambda m: released.append(m) or real_release(m))

    def evicted(mn, name):  # dropped, or kept with its memory-mapped pages handed back to the kernel
        return name not in mn.modules.modules or any(m is mn.modules.modules[name] for m in released)

    g = dict(size=128, seed=3)
    base_ref = tiny.encode_reference(sample_images["reference"], **g)
    base = tiny.colorize(base_ref, sample_images["black_on_white"], steps=2, seed=3)
    lean = MangaNinja.from_folder(tiny_models, precision="fp32", lazy=True, sequential_rows=True)
    assert "reference_unet" not in lean.modules.modules  # lazy: nothing loaded yet
    ref = lean.encode_reference(sample_images["reference"], **g)
    # One phase at a time on the CPU: the reference networks leave as soon as the reference is encoded.
    assert evicted(lean, "reference_unet") and evicted(lean, "clip_vision")
    assert "reference_unet" in lean.modules.modules  # its weights are all memory-mapped: kept, pages released
    out = lean.colorize(ref, sample_images["black_on_white"], steps=2, seed=3)
    assert "denoising_unet" in lean.modules.modules and not evicted(lean, "denoising_unet")
    assert torch.allclose(out.latents, base.latents, rtol=0, atol=1e-4)
    again = lean.encode_reference(sample_images["reference"], **g)  # pages faulted in again from the files
    assert torch.equal(again.latents, ref.latents)
    assert evicted(lean, "denoising_unet")
    out_again = lean.colorize(again, sample_images["black_on_white"], steps=2, seed=3)
    assert torch.equal(out_again.latents, out.latents)
    everything = MangaNinja.from_folder(tiny_models, precision="fp32", one_phase=False)
    everything.encode_reference(sample_images["reference"], **g)
    everything.colorize(ref, sample_images["black_on_white"], steps=1, seed=3)
    assert set(everything.modules.modules) >= {"reference_unet", "denoising_unet", "controlnet", "clip_vision"}


def test_channels_last_vae_on_the_cpu_matches_the_plain_layout(tiny, tiny_models, sample_images):
    """The CPU default stores the VAE channels-last (faster convolutions) and nothing else: the same maths, as close
    to float64 as the plain layout, so the pipeline's result matches the plain layout's to float32 rounding."""
    import copy

    def layout(mn, name):
        convs = [m.weight for m in mn.modules.get(name).modules()
                 if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]  # a 1x1 kernel fits both layouts
        assert convs
        return {w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs}

    def relative(a, b):
        return ((a.double() - b.double()).abs().max() / b.abs().max()).item()

    assert layout(tiny, "vae") == {True}
    assert layout(tiny, "denoising_unet") == layout(tiny, "controlnet") == {False}
    plain = MangaNinja.from_folder(tiny_models, precision="fp32", channels_last=False)
    assert layout(plain, "vae") == {False}

    # The VAE itself, both layouts against a float64 copy: float32 rounding (about 2e-6 here), no other error.
    exact = copy.deepcopy(plain.modules.get("vae")).double()
    x, z = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1, \
        torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want_e, want_d = exact.encode(x.double()).latent_dist.mean, exact.decode(z.double()).sample
        for mn in (tiny, plain):
            vae = mn.modules.get("vae")
            assert relative(vae.encode(x).latent_dist.mean, want_e) < 1e-5
            assert relative(vae.decode(z).sample, want_d) < 1e-5

    # The whole pipeline: the reference's sampled latents and two steps agree to rounding, the image to one level.
    g = dict(size=128, seed=3)
    ref, plain_ref = (mn.encode_reference(sample_images["reference"], **g) for mn in (tiny, plain))
    assert relative(ref.latents, plain_ref.latents) < 1e-3
    out, plain_out = (mn.colorize(r, sample_images["black_on_white"], steps=2, seed=3)
                      for mn, r in ((tiny, ref), (plain, plain_ref)))
    assert relative(out.latents, plain_out.latents) < 1e-3
    a, b = (np.asarray(o.processed_image, dtype=np.int16) for o in (out, plain_out))
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01

    some = MangaNinja.from_folder(tiny_models, precision="fp32", channels_last=["controlnet"])
    assert layout(some, "controlnet") == {True} and layout(some, "vae") == {False}
    with pytest.raises(ValueError, match="channels_last names unknown networks \\['unet'\\]"):
        MangaNinja.from_folder(tiny_models, precision="fp32", channels_last=["unet"])


def test_released_pages_come_back_from_the_file_and_anonymous_memory_is_never_advised(tmp_path):
    from mn_core import pages

    path = tmp_path / "w.pth"
    torch.save({"weight": torch.arange(4 << 20, dtype=torch.float32).reshape(1024, -1)}, path)  # 16 MB
    mapped = torch.nn.Linear(4096, 1024, bias=False)
    mapped.weight.data = torch.load(path, weights_only=True, mmap=True)["weight"]
    expected = mapped.weight.clone()
    float(mapped.weight.sum())  # touch every page

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    before = rss()
    advised = pages.release(mapped)
    assert advised is not None and advised >= 16 << 20
    assert rss() < before - (12 << 20)
    assert torch.equal(mapped.weight, expected)  # read again from the file
    anonymous = torch.nn.Linear(64, 64)
    weight = anonymous.weight.clone()
    assert pages.release(anonymous) is None
    assert torch.equal(anonymous.weight, weight)


def test_timings_are_reported(tiny, sample_images):
    timings = Timings()
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0, observers=[timings])
    out = tiny.colorize(ref, sample_images["black_on_white"], steps=3, seed=0, observers=[timings])
    t = timings.laps
    assert t["encode_reference"][0] > 0 and len(t["step"]) == 3 and t["decode"][0] > 0
    assert len(t["controlnet"]) == 3 and len(t["unet"]) == 3 and t["colorize_prepare"][0] > 0
    for part in ("clip_vision", "vae_encode", "reference_unet"):
        assert 0 < t[part][0] <= t["encode_reference"][0]
    assert sum(t["controlnet"]) + sum(t["unet"]) <= sum(t["step"])
    plain = tiny.colorize(ref, sample_images["black_on_white"], steps=3, seed=0)
    assert torch.equal(plain.latents, out.latents)  # watching changes nothing


def test_observers_see_every_step_and_can_cancel(tiny, sample_images, monkeypatch):
    """Without an observer that asks for timings, nothing synchronises the device."""
    from mn_core import observers

    syncs = []
    real = observers.synchronize
    monkeypatch.setattr(observers, "synchronize", lambda device: syncs.append(device) or real(device))
    seen = []

    class Watch(Observer):
        def on_step_end(self, step, steps, latents):
            seen.append((step, steps, tuple(latents.shape)))

        def on_phase(self, phase, networks):
            seen.append((phase, sorted(networks)))

    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0, observers=[Watch()])
    tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=0, observers=[Watch()])
    assert seen == [("reference", ["clip_vision", "reference_unet", "vae"]),
                    ("sampling", ["controlnet", "denoising_unet", "point_net"]),
                    (1, 2, (1, 4, 16, 16)), (2, 2, (1, 4, 16, 16)), ("decode", ["vae"])]
    assert syncs == []

    class Cancel(Observer):
        def on_step_end(self, step, steps, latents):
            if step == 1:
                raise KeyboardInterrupt("cancelled")

    with pytest.raises(KeyboardInterrupt):
        tiny.colorize(ref, sample_images["black_on_white"], steps=5, seed=0, observers=[Cancel()])
    with pytest.raises(TypeError, match="Observer"):
        tiny.colorize(ref, sample_images["black_on_white"], steps=1, seed=0, observers=[print])
    again = tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=0)  # nothing left bound
    assert again.image.size == sample_images["black_on_white"].size


def test_fp16_decode_overflow_falls_back_to_fp32(tiny_models):
    mn = MangaNinja.from_folder(tiny_models, precision="fp16", device="cpu")
    vae = mn.modules.get("vae")
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(1e5)  # activations overflow float16 (> 65504)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    raw16 = vae.decode((z / 0.18215).half()).sample
    assert not torch.isfinite(raw16).all()
    out = mn.decode(z)
    assert torch.isfinite(out).all() and out.dtype == torch.float32


def test_gpu_placement_keeps_one_phase_on_the_device():
    """Standalone offload: encoding moves the sampling networks out once; frames and decodes move nothing."""
    from torch import nn

    from mn_core import phases
    from mn_core.placement import LocalModules, ModuleOwner

    moves = []

    class Recording(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def to(self, *args, **kwargs):
            moves.append((self.name, str(args[0])))
            return self

    class RecordingVAE(Recording):
        def __init__(self):
            super().__init__("vae")
            self.encoder, self.quant_conv = Recording("vae.encoder"), Recording("vae.quant_conv")
            self.decoder, self.post_quant_conv = Recording("vae.decoder"), Recording("vae.post_quant_conv")

    names = ("reference_unet", "denoising_unet", "controlnet", "clip_vision", "point_net", "annotator")
    modules = {n: Recording(n) for n in names}
    modules["vae"] = RecordingVAE()
    owner = LocalModules({}, torch.device("cuda"), one_phase=True, modules=modules)
    assert isinstance(owner, ModuleOwner)
    owner.prepare(phases.REFERENCE)
    assert ("denoising_unet", "cpu") in moves and ("controlnet", "cpu") in moves
    assert ("reference_unet", "cuda") in moves and ("clip_vision", "cuda") in moves and ("vae", "cuda") in moves
    moves.clear()
    owner.release(phases.REFERENCE)  # as soon as the reference is encoded
    assert {("reference_unet", "cpu"), ("clip_vision", "cpu"), ("vae.encoder", "cpu")} <= set(moves)
    assert ("vae", "cpu") not in moves and ("vae.decoder", "cpu") not in moves
    moves.clear()
    owner.prepare(phases.SAMPLING)
    assert ("denoising_unet", "cuda") in moves and ("controlnet", "cuda") in moves
    moves.clear()
    owner.prepare(phases.DECODE)  # decoding: only the VAE's decoder comes; nothing large is evicted
    owner.prepare(phases.LINEART)
    assert ("vae.encoder", "cpu") in moves and ("vae.decoder", "cuda") in moves
    assert not any(name in phases.LARGE for name, _ in moves)
