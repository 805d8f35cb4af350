"""Strict loading: every key filled exactly once, helpful errors, lazy low-precision loads, weights-only pickles."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from support import ROOT
from mn_core import MangaNinja, models, synthetic
from mn_core.loading import CheckpointError, Source, TensorFile, load_module


def copy_layout(src, dst):
    shutil.copytree(src, dst)
    return dst


def files(root):
    return models.ModelFiles.from_folder(root)


def test_missing_file_error_names_every_missing_path(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    (root / "MangaNinjia" / "point_net.pth").unlink()
    (root / "models" / "clip-vit-large-patch14" / "config.json").unlink()
    with pytest.raises(CheckpointError) as e:
        files(root)
    msg = str(e.value)
    assert "2 model file(s) missing" in msg
    assert "MangaNinjia/point_net.pth" in msg and "Johanan0528/MangaNinjia" in msg
    assert "clip-vit-large-patch14/config.json" in msg


def test_base_weights_are_optional_when_overlays_are_complete(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    (root / "StableDiffusion/unet/diffusion_pytorch_model.safetensors").unlink()
    (root / "models/control_v11p_sd15_lineart/diffusion_pytorch_model.safetensors").unlink()
    f = files(root)
    assert f.unet_base is None and f.controlnet_base is None
    assert models.base_files_needed(root) == []
    models.load_unet(f, reference=False, dtype=torch.float32)
    models.load_controlnet(f, dtype=torch.float32)


def test_partial_overlay_is_completed_from_the_base(tmp_path):
    root = synthetic.write_layout(tmp_path / "m", synthetic.TINY,
                                  drop_overlay_keys={"denoising_unet": ["conv_in."], "controlnet": ["conv_in."]})
    assert set(models.base_files_needed(root)) == {"unet_base", "controlnet_base"}
    f = files(root)
    unet = models.load_unet(f, reference=False, dtype=torch.float32)
    base = TensorFile(f.unet_base)
    overlay = TensorFile(f.denoising_unet)
    assert torch.equal(unet.conv_in.weight, base.get("conv_in.weight"))  # from the base
    assert torch.equal(unet.conv_out.weight, overlay.get("conv_out.weight"))  # from the overlay, not the base
    assert not torch.equal(overlay.get("conv_out.weight"), base.get("conv_out.weight"))

    (root / "StableDiffusion/unet/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError) as e:
        models.load_unet(files(root), reference=False, dtype=torch.float32)
    msg = str(e.value)
    assert "denoising_unet.pth" in msg and "2 of 684 key(s) of the denoising UNet are missing" in msg
    assert "conv_in.bias" in msg and "conv_in.weight" in msg


def _rewrite(path, fn):
    sd = torch.load(path, weights_only=True)
    torch.save(fn(sd), path)


def test_unexpected_keys_name_the_file(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    path = root / "MangaNinjia/controlnet.pth"
    _rewrite(path, lambda sd: {**sd, "not_a_layer.weight": torch.zeros(1), "also.bad": torch.zeros(2)})
    with pytest.raises(CheckpointError) as e:
        models.load_controlnet(files(root), dtype=torch.float32)
    msg = str(e.value)
    assert str(path) in msg and "2 unexpected key(s) for the ControlNet" in msg
    assert "also.bad" in msg and "not_a_layer.weight" in msg


def test_prefixed_checkpoint_is_diagnosed(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    path = root / "MangaNinjia/denoising_unet.pth"
    _rewrite(path, lambda sd: {"module." + k: v for k, v in sd.items()})
    with pytest.raises(CheckpointError) as e:
        models.load_unet(files(root), reference=False, dtype=torch.float32)
    assert "start with 'module.'" in str(e.value)


def test_wrong_shapes_are_reported(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    _rewrite(root / "MangaNinjia/denoising_unet.pth", lambda sd: {**sd, "conv_in.weight": torch.zeros(7, 4, 3, 3)})
    with pytest.raises(CheckpointError, match=r"wrong shape.*conv_in.weight \(7, 4, 3, 3\)"):
        models.load_unet(files(root), reference=False, dtype=torch.float32)


def test_reference_unet_ignores_an_output_head(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    base = TensorFile(root / "StableDiffusion/unet/diffusion_pytorch_model.safetensors")
    head = {k: base.get(k) for k in base.keys() if k.startswith(("conv_norm_out.", "conv_out."))}
    assert len(head) == 4
    _rewrite(root / "MangaNinjia/reference_unet.pth", lambda sd: {**sd, **head})
    unet = models.load_unet(files(root), reference=True, dtype=torch.float32)
    assert "conv_out.weight" not in unet.state_dict()
    # ... but the denoising UNet must have its head.
    _rewrite(root / "MangaNinjia/denoising_unet.pth", lambda sd: {k: v for k, v in sd.items()
                                                                  if not k.startswith("conv_out.")})
    (root / "StableDiffusion/unet/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="conv_out.weight"):
        models.load_unet(files(root), reference=False, dtype=torch.float32)


def test_pickles_are_loaded_weights_only(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        TensorFile(path)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, nested)
    with pytest.raises(CheckpointError, match="nested dicts under \\['state_dict'\\]"):
        TensorFile(nested)


def test_every_file_may_be_safetensors(tiny_models, tmp_path, sample_images):
    from safetensors.torch import save_file

    root = copy_layout(tiny_models, tmp_path / "m")
    for pth in list(root.rglob("*.pth")):
        sd = torch.load(pth, weights_only=True)
        save_file({k: v.contiguous() for k, v in sd.items()}, str(pth.with_suffix(".safetensors")))
        pth.unlink()
    assert not list(root.rglob("*.pth"))
    a = MangaNinja.from_folder(tiny_models, precision="fp32")
    b = MangaNinja.from_folder(root, precision="fp32")
    outs = []
    for mn in (a, b):
        ref = mn.encode_reference(sample_images["reference"], size=128, seed=1)
        lineart = mn.extract_lineart(sample_images["reference"], size=128)
        outs.append(mn.colorize(ref, lineart, steps=2, seed=1).latents)
    assert torch.equal(outs[0], outs[1])


def test_lower_precision_loads_straight_into_that_dtype(tiny_models):
    f = files(tiny_models)
    for dtype in (torch.float16, torch.bfloat16):
        unet = models.load_unet(f, reference=False, dtype=dtype)
        assert {p.dtype for p in unet.parameters()} == {dtype}
        ref = TensorFile(f.denoising_unet).get("conv_in.weight").to(dtype)
        assert torch.equal(unet.conv_in.weight, ref)
    assert {p.dtype for p in models.load_annotator(f).parameters()} == {torch.float32}


MEMORY_PROBE = textwrap.dedent("""
    import sys, threading, time, torch
    sys.path.insert(0, {root!r})
    from mn_core import models

    def anon():
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    f = models.ModelFiles.from_folder({models_dir!r})
    models.load_unet(f, reference=False, dtype=torch.float32)  # warm up imports and allocator
    import gc; gc.collect()
    base = anon(); peak = [base]; done = [False]
    def watch():
        while not done[0]:
            peak[0] = max(peak[0], anon()); time.sleep(0.0005)
    t = threading.Thread(target=watch); t.start()
    unet = models.load_unet(f, reference=False, dtype=torch.{dtype})
    done[0] = True; t.join()
    size = sum(p.numel() for p in unet.parameters())
    print(size * 4, peak[0] - base)
""")


@pytest.mark.parametrize("overlay_format", ["pth", "safetensors"])
def test_fp16_load_makes_no_full_float32_copy(tmp_path, overlay_format):
    preset = synthetic.Preset(unet_channels=(64, 128, 256, 256), cross_attention_dim=32, attention_head_dim=8,
                              vae_channels=(32, 32, 32, 64), text=synthetic.TINY.text, vision=synthetic.TINY.vision,
                              annotator_widths=(8, 16, 32))
    root = synthetic.write_layout(tmp_path / "m", preset, overlay_format=overlay_format)
    (root / "StableDiffusion/unet/diffusion_pytorch_model.safetensors").unlink()
    script = MEMORY_PROBE.format(root=str(ROOT), models_dir=str(root), dtype="float16")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    fp32_bytes, growth = map(int, out.stdout.split())
    assert fp32_bytes > 100e6
    # The float16 model itself is half of fp32_bytes; a full float32 copy would push growth past fp32_bytes.
    assert growth < 0.75 * fp32_bytes, (growth, fp32_bytes)


def test_point_net_channels_must_match_the_unet(tiny_models, tmp_path):
    root = copy_layout(tiny_models, tmp_path / "m")
    cfg = json.loads((root / "StableDiffusion/unet/config.json").read_text())
    with pytest.raises(CheckpointError, match="do not match the UNet"):
        models.load_point_net(files(root), unet_channels=(32, 32, 64, 64), dtype=torch.float32)
    assert tuple(cfg["block_out_channels"]) == (32, 32, 32, 64)


def test_load_module_rejects_unknown_extras_but_allows_listed_ones():
    lin = torch.nn.Linear(2, 2)

    class FakeFile:
        path = "fake.pth"

        def __init__(self, sd):
            self.sd = sd

        def keys(self):
            return list(self.sd)

        def shape(self, k):
            return tuple(self.sd[k].shape)

        def get(self, k):
            return self.sd[k]

    sd = {"weight": torch.ones(2, 2), "bias": torch.zeros(2), "head.w": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="1 unexpected key"):
        load_module(torch.nn.Linear(2, 2), [Source(FakeFile(sd))], what="layer", dtype=None)
    out = load_module(lin, [Source(FakeFile(sd), allow_extra=("head.",))], what="layer", dtype=None)
    assert np.allclose(out.weight.numpy(), 1)
