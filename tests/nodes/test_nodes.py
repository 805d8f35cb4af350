"""Node unit tests, in-process, against the real comfy modules of the 2024 ComfyUI (no stubs).

The pack is imported the way ComfyUI imports it: its folder as a package (relative imports). Model management is
observed, not replaced: calls to load_models_gpu are recorded and passed through.
"""

from __future__ import annotations

import importlib.util
import json
import math
import logging
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from support import ROOT, comfyui_setup

PACK = "comfyui_manganinja_under_test"


@pytest.fixture(scope="module")
def comfy_env(tmp_path_factory):
    source = comfyui_setup.ensure_comfyui("2024", quiet=True)
    sys.path.insert(0, str(source))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # this machine has no GPU; ComfyUI would otherwise ask CUDA
    import comfy.model_management as mm
    import folder_paths

    # previews and outputs go to this test's folders, never into the shared ComfyUI checkout
    folder_paths.set_temp_directory(str(tmp_path_factory.mktemp("comfy-temp")))
    folder_paths.set_output_directory(str(tmp_path_factory.mktemp("comfy-output")))

    return {"mm": mm, "folder_paths": folder_paths}


@pytest.fixture(scope="module")
def pack(comfy_env):
    if PACK in sys.modules:  # imported once per session (another test module uses these fixtures too): a second
        return sys.modules[PACK]  # import would find its submodules cached and not bind them to the new package
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def models_dir(comfy_env, tiny_models, tmp_path_factory):
    """ComfyUI model folders: models/manganinja holds the tiny layout; the standard folders are empty."""
    fp = comfy_env["folder_paths"]
    base = tmp_path_factory.mktemp("comfy-models")
    shutil.copytree(tiny_models, base / "manganinja")
    saved = {k: (list(v[0]), set(v[1])) for k, v in fp.folder_names_and_paths.items()}
    fp.folder_names_and_paths["manganinja"] = ([str(base / "manganinja")], set())
    for name in ("clip_vision", "vae", "controlnet", "text_encoders"):
        (base / name).mkdir()
        fp.folder_names_and_paths[name] = ([str(base / name)], set(fp.supported_pt_extensions))
    fp.set_temp_directory(str(base / "temp")) if hasattr(fp, "set_temp_directory") else None
    fp.temp_directory = str(base / "temp")
    yield base
    fp.folder_names_and_paths.clear()
    fp.folder_names_and_paths.update(saved)


@pytest.fixture
def load_calls(comfy_env, monkeypatch):
    mm = comfy_env["mm"]
    calls = []
    real = mm.load_models_gpu

    def spy(models, memory_required=0, **kwargs):
        calls.append(([type(m.model).__name__ for m in models], memory_required, kwargs))
        return real(models, memory_required=memory_required, **kwargs)

    monkeypatch.setattr(mm, "load_models_gpu", spy)
    return calls


@pytest.fixture(scope="module")
def model(pack, models_dir):
    return pack.nodes.load.LoadMangaNinja().load("fp32", False)[0]


def image_tensor(pil):
    return torch.from_numpy(np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0)[None]


def test_mappings_and_display_names(pack):
    names = pack.NODE_DISPLAY_NAME_MAPPINGS
    assert set(names.values()) == {"Load MangaNinja", "Extract Lineart", "Point Editor", "Reference Encode",
                                   "Colorize Sampler", "Colorization Metrics", "Finish Page (full resolution)",
                                   "Save Layers (PSD)", "Suggest Points"}
    assert pack.WEB_DIRECTORY == "./js"
    for cls in pack.NODE_CLASS_MAPPINGS.values():
        assert cls.CATEGORY == "MangaNinja" and callable(getattr(cls, cls.FUNCTION))
        assert isinstance(cls.INPUT_TYPES(), dict)


def test_colorization_metrics_node(pack, sample_images):
    from mn_core import metrics as M
    from mn_core.points import parse

    node = pack.NODE_CLASS_MAPPINGS["MangaNinjaColorizationMetrics"]()
    target = sample_images["reference"]
    dim = target.point(lambda v: int(v * 0.9))
    images = torch.cat([image_tensor(target), image_tensor(dim)])
    points = parse('{"pairs": [{"reference": [1, 1], "lineart": [80, 50]}]}')
    out = node.measure(images, image_tensor(target), "psnr, ssim", False, points=points)
    text, psnr, ssim = out["result"]
    assert out["ui"]["text"] == [text] and text.splitlines()[0].split()[1:] == ["psnr", "↑", "ssim", "↑",
                                                                                 "point_mse", "↓"]
    ref, other = np.asarray(target.convert("RGB")), np.asarray(dim.convert("RGB"))
    assert psnr == pytest.approx(np.mean([M.psnr(ref, ref), M.psnr(other, ref)])) == math.inf
    assert ssim == pytest.approx((1.0 + M.ssim(other, ref)) / 2)
    row2 = next(line for line in text.splitlines() if line.startswith("2 ")).split()
    assert float(row2[1]) == pytest.approx(M.psnr(other, ref), abs=1e-4)
    assert float(row2[3]) == pytest.approx(M.point_mse(other, ref, points), abs=1e-4)
    with pytest.raises(ValueError, match="1: prediction and target differ in size: 160x120 vs 80x60"):
        node.measure(images, image_tensor(target.resize((80, 60))), "psnr", False)


def test_finish_page_and_save_layers_nodes(pack, comfy_env):
    from psd_tools import PSDImage

    from mn_core import finish as F
    from mn_core.synthetic_page import draw_page

    page = draw_page(300, 420, seed=4)
    g = np.asarray(page.lines).astype(np.float32)[..., None] / 255
    small = Image.fromarray((np.asarray(page.colour) * g).astype(np.uint8)).resize((91, 128), Image.BICUBIC)
    colour = small.resize(page.lines.size, Image.BICUBIC)  # a sampler's IMAGE: already at the line art's size
    node = pack.NODE_CLASS_MAPPINGS["MangaNinjaFinishPage"]()
    two = torch.cat([image_tensor(colour), image_tensor(colour)])
    image, flats, lines, alpha, layers = node.finish(two, image_tensor(page.lines), "auto", True, 8, 128, 0.8,
                                                     page=image_tensor(page.tones))
    assert image.shape == flats.shape == lines.shape == (2, 420, 300, 3) and alpha.shape == (2, 420, 300)
    direct = F.finish_page(colour, page.lines, flat=True, colour_size=128, keep_shading=page.tones)
    got = (image[0].numpy() * 255).round().astype(np.uint8)
    assert np.array_equal(got, np.asarray(direct.image))
    assert torch.allclose(alpha[0], torch.from_numpy(255 - np.asarray(page.lines)).float() / 255, atol=1e-6)
    with pytest.raises(ValueError, match=r"Finish Page \(full resolution\): `image` is an empty batch"):
        node.finish(two[:0], image_tensor(page.lines), "auto", False, 8, 128, 0.8)
    with pytest.raises(ValueError, match="Finish Page: lineart has 3 images for 2 coloured frames"):
        node.finish(two, torch.cat([image_tensor(page.lines)] * 3), "auto", False, 8, 128, 0.8)
    saver = pack.NODE_CLASS_MAPPINGS["MangaNinjaSaveLayers"]()
    ui = saver.save(layers, "pages/test_page", True)["ui"]
    out_dir = Path(comfy_env["folder_paths"].get_output_directory()) / "pages"
    assert [i["filename"] for i in ui["images"]] == ["test_page_00001_.png", "test_page_00002_.png"]
    assert ui["images"][0]["subfolder"] == "pages" and ui["images"][0]["type"] == "output"
    psd = PSDImage.open(out_dir / "test_page_00001_.psd")
    assert [layer.name for layer in psd][-1] == "Lines" and psd.size == (300, 420)
    assert np.array_equal(np.asarray(psd.topil().convert("RGB")), got)
    assert (out_dir / "test_page_00002__lines.png").is_file()


def test_model_folder_is_registered_and_merged(comfy_env, pack):
    fp = comfy_env["folder_paths"]
    saved = fp.folder_names_and_paths.pop("manganinja", None)
    try:
        pack.nodes.bridge.register_model_folder()
        paths, exts = fp.folder_names_and_paths["manganinja"]
        assert paths == [str(ROOT.parent / "x")] or paths[-1].endswith("models/manganinja")
        fp.folder_names_and_paths["manganinja"] = (["/from/extra_model_paths"], set())
        pack.nodes.bridge.register_model_folder()  # keeps the user's path, appends the default
        assert fp.folder_names_and_paths["manganinja"][0][0] == "/from/extra_model_paths"
        assert fp.folder_names_and_paths["manganinja"][0][1].endswith("models/manganinja")
    finally:
        if saved is not None:
            fp.folder_names_and_paths["manganinja"] = saved


def test_loader_hands_every_network_to_model_patchers(model, comfy_env):
    import comfy.model_patcher

    owner = model.modules
    assert type(owner).__name__ == "ComfyModules"
    assert set(owner.patchers) == {"reference_unet", "denoising_unet", "controlnet", "vae", "clip_vision",
                                   "point_net", "annotator"}
    for name, patcher in owner.patchers.items():
        assert isinstance(patcher, comfy.model_patcher.ModelPatcher)
        assert type(patcher.model).__name__ == f"MangaNinja_{name}"
        assert patcher.load_device == comfy_env["mm"].get_torch_device()
        assert patcher.model_size() > 0
    assert model.dtype == torch.float32


def test_reference_and_sampler_go_through_load_models_gpu(pack, model, sample_images, load_calls, comfy_env):
    ref = pack.nodes.reference.ReferenceEncode().encode(model, image_tensor(sample_images["reference"]), 256,
                                                        "letterbox", 0)[0]
    assert [c[0] for c in load_calls] == [["MangaNinja_clip_vision", "MangaNinja_vae", "MangaNinja_reference_unet"]]
    assert load_calls[0][1] > 0  # an activation estimate is passed
    assert ref.context.device == comfy_env["mm"].intermediate_device()
    load_calls.clear()
    frames = torch.cat([image_tensor(sample_images["black_on_white"]), image_tensor(sample_images["white_on_black"])])
    out = pack.nodes.sampler.ColorizeSampler().sample(model, ref, 2, 5, 9.0, 15.0, "letterbox", "auto", lineart=frames)
    names = [c[0] for c in load_calls]
    assert ["MangaNinja_point_net", "MangaNinja_controlnet", "MangaNinja_denoising_unet"] in names
    assert all("MangaNinja_reference_unet" not in n for n in names)  # only needed while encoding a reference
    image, lineart = out["result"]
    assert image.shape == (2, 140, 96, 3) and lineart.shape == (2, 140, 96, 3)
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert image.device == comfy_env["mm"].intermediate_device()
    # Frame 0 of a batch equals the same frame alone with the same seed.
    single = pack.nodes.sampler.ColorizeSampler().sample(model, ref, 2, 5, 9.0, 15.0, "letterbox",
                                                         "auto", lineart=frames[:1])["result"][0]
    assert torch.equal(single[0], image[0])
    # Both polarities were read as the same line art (the frames differ only in drawing polarity).
    assert (lineart[0] - lineart[1]).abs().mean() < 0.002
    assert not torch.equal(image[0], image[1])  # each frame has its own noise draw


def test_progress_bar_advances_per_step_and_cancel_stops(pack, model, sample_images, comfy_env):
    import comfy.utils

    mm = comfy_env["mm"]
    ref = pack.nodes.reference.ReferenceEncode().encode(model, image_tensor(sample_images["reference"]), 256,
                                                        "letterbox", 0)[0]
    frames = image_tensor(sample_images["black_on_white"])
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview: seen.append((value, total)))
    try:
        pack.nodes.sampler.ColorizeSampler().sample(model, ref, 3, 0, 9.0, 15.0, "letterbox", "auto", lineart=frames)
        assert seen == [(1, 3), (2, 3), (3, 3)]
        seen.clear()

        def cancel_after_first(value, total, preview):
            seen.append(value)
            if value == 1:
                mm.interrupt_current_processing(True)

        comfy.utils.set_progress_bar_global_hook(cancel_after_first)
        with pytest.raises(mm.InterruptProcessingException):
            pack.nodes.sampler.ColorizeSampler().sample(model, ref, 20, 0, 9.0, 15.0, "letterbox", "auto", lineart=frames)
        assert seen == [1]  # stopped within one step
        assert model.modules.get("denoising_unet").mn_reader.context is None  # nothing left bound
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        mm.interrupt_current_processing(False)
    out = pack.nodes.sampler.ColorizeSampler().sample(model, ref, 2, 0, 9.0, 15.0, "letterbox", "auto", lineart=frames)
    assert out["result"][0].shape == (1, 140, 96, 3)  # the next run works


def test_auto_precision_follows_comfyui(pack, comfy_env, monkeypatch):
    mm = comfy_env["mm"]
    cpu = torch.device("cpu")
    assert pack.nodes.bridge.auto_precision(cpu) == torch.float32  # CPU
    monkeypatch.setattr(mm, "unet_dtype", lambda **kw: torch.bfloat16)  # e.g. --bf16-unet
    monkeypatch.setattr(mm, "unet_manual_cast", lambda dtype, device, supported=None: None)
    assert pack.nodes.bridge.auto_precision(cpu) == torch.bfloat16
    monkeypatch.setattr(mm, "unet_dtype", lambda **kw: torch.float8_e4m3fn)  # fp8 storage flags: compute fp16
    assert pack.nodes.bridge.auto_precision(cpu) == torch.float16
    monkeypatch.setattr(mm, "unet_manual_cast", lambda dtype, device, supported=None: torch.float32)
    assert pack.nodes.bridge.auto_precision(cpu) == torch.float32  # the device cannot compute in fp16


def test_missing_files_error_lists_them(pack, comfy_env, tmp_path):
    fp = comfy_env["folder_paths"]
    saved = fp.folder_names_and_paths["manganinja"]
    fp.folder_names_and_paths["manganinja"] = ([str(tmp_path / "empty")], set())
    try:
        with pytest.raises(Exception) as e:
            pack.nodes.load.LoadMangaNinja().load("auto", False)
        msg = str(e.value)
        assert "missing under" in msg and "MangaNinjia/denoising_unet.pth" in msg and "Johanan0528" in msg
        assert "download" in msg
    finally:
        fp.folder_names_and_paths["manganinja"] = saved


def test_checkpoint_choices_are_the_layout_subfolders(pack, comfy_env, tmp_path):
    fp = comfy_env["folder_paths"]
    saved = fp.folder_names_and_paths["manganinja"]
    root = tmp_path / "mn"
    for name in ("finetune_b", "finetune_a"):
        (root / name / "MangaNinjia").mkdir(parents=True)
    (root / "not_a_layout").mkdir()
    fp.folder_names_and_paths["manganinja"] = ([str(root)], set())
    try:
        load = pack.nodes.load
        assert load.LoadMangaNinja.INPUT_TYPES()["optional"]["checkpoint"][0] == ["auto", "finetune_a", "finetune_b"]
        assert load._checkpoint_root("finetune_b") == root / "finetune_b"
        with pytest.raises(ValueError) as e:  # not one of the choices: refused before anything runs
            load.LoadMangaNinja().load("auto", False, checkpoint="gone")
        assert "`checkpoint`" in str(e.value) and "'gone'" in str(e.value) and "finetune_a" in str(e.value)
        with pytest.raises(FileNotFoundError) as e:  # a folder that went away after the list was made
            load.load_pipeline("auto", False, checkpoint="gone")
        assert "checkpoint" in str(e.value) and "'gone'" in str(e.value) and "finetune_a" in str(e.value)
        with pytest.raises(Exception) as e:  # a chosen checkpoint that lacks files lists them under its folder
            load.LoadMangaNinja().load("auto", False, checkpoint="finetune_a")
        assert f"missing under {root / 'finetune_a'}" in str(e.value)
    finally:
        fp.folder_names_and_paths["manganinja"] = saved


def test_standard_folder_files_are_used(pack, models_dir, comfy_env):
    """clip_vision / vae picked from ComfyUI's folders; the base ControlNet found by name in models/controlnet."""
    from safetensors.torch import save_file

    from mn_core.loading import TensorFile

    layout_dir = models_dir / "manganinja"
    clip = TensorFile(layout_dir / "models/clip-vit-large-patch14/model.safetensors")
    save_file({k: clip.get(k) for k in clip.keys() if k.startswith(("vision_model.", "visual_projection"))},
              str(models_dir / "clip_vision" / "my_clip_vision.safetensors"))
    shutil.copy(layout_dir / "StableDiffusion/vae/diffusion_pytorch_model.safetensors",
                models_dir / "vae" / "my_vae.safetensors")
    moved = models_dir / "controlnet" / "control_v11p_sd15_lineart.safetensors"
    base = layout_dir / "models/control_v11p_sd15_lineart/diffusion_pytorch_model.safetensors"
    shutil.move(base, moved)
    try:
        files = pack.nodes.load.model_files(layout_dir, clip_vision="my_clip_vision.safetensors", vae="my_vae.safetensors")
        assert files.clip_vision.name == "my_clip_vision.safetensors"
        assert files.vae.name == "my_vae.safetensors"
        assert files.controlnet_base == moved
        mn = pack.nodes.load.load_pipeline("fp32", False, "my_clip_vision.safetensors", "my_vae.safetensors")
        assert mn.modules.get("clip_vision") is not None
    finally:
        shutil.move(moved, base)


def test_point_editor_node(pack, sample_images, comfy_env):
    node = pack.nodes.points.PointEditor()
    ref, line = image_tensor(sample_images["reference"]), image_tensor(sample_images["black_on_white"])
    text = json.dumps({"pairs": [{"reference": [80, 50], "lineart": [48, 45]}, {"reference": [10, 10],
                                                                                "lineart": [90, 130]}]})
    out = node.run(ref, line, text)
    points = out["result"][0]
    assert points.pairs == (((80, 50), (48, 45)), ((10, 10), (90, 130)))
    assert points.reference_size == (160, 120) and points.lineart_size == (96, 140)
    assert "images" not in out["ui"] and len(out["ui"]["mn_sources"]) == 2  # the editor shows them, no previews
    assert json.loads(out["ui"]["mn_points"][0])["pairs"][1]["lineart"] == [90, 130]
    temp = comfy_env["folder_paths"].get_temp_directory()
    assert all((__import__("pathlib").Path(temp) / p["filename"]).is_file() for p in out["ui"]["mn_sources"])
    kj = node.run(ref, line, "", '[{"x": 80, "y": 50}]', '[{"x": 48, "y": 45}]')["result"][0]
    assert kj.pairs == (((80, 50), (48, 45)),)
    with pytest.raises(pack.mn_core.PointsError, match="outside the 96x140 line art"):
        node.run(ref, line, json.dumps({"pairs": [{"reference": [1, 1], "lineart": [200, 1]}]}))


def test_point_editor_several_references(pack, sample_images, comfy_env):
    """reference_2 (and a batch on `reference`) number the references as Reference Encode does; pairs name them by
    reference_index, sizes are checked per reference, and each reference's preview shows its own pairs."""
    node = pack.nodes.points.PointEditor()
    ref, line = image_tensor(sample_images["reference"]), image_tensor(sample_images["black_on_white"])
    other = torch.rand(1, 50, 70, 3)
    text = json.dumps({"reference_size": [[160, 120], [70, 50]],
                       "pairs": [{"reference": [80, 50], "lineart": [48, 45]},
                                 {"reference": [60, 40], "lineart": [20, 20], "reference_index": 1}]})
    out = node.run(ref, line, text, reference_2=other)
    points = out["result"][0]
    assert points.reference_indices == (0, 1) and points.reference_size == ((160, 120), (70, 50))
    assert len(out["ui"]["mn_reference_sources"]) == 2
    assert len(out["ui"]["mn_sources"]) == 2  # [first reference, line art], as with one reference
    assert json.loads(out["ui"]["mn_points"][0])["pairs"][1]["reference_index"] == 1
    # the same two references as one batch give the same points (sizes filled in from the images)
    batch = node.run(torch.cat([ref, torch.nn.functional.interpolate(other.permute(0, 3, 1, 2), (120, 160))
                                .permute(0, 2, 3, 1)]), line,
                     json.dumps({"pairs": json.loads(text)["pairs"][:1] +
                                 [{"reference": [150, 100], "lineart": [20, 20], "reference_index": 1}]}))
    assert batch["result"][0].reference_size == ((160, 120), (160, 120))
    # (60, 40) is inside reference 2 (70x50) but (75, 40) is not; index 2 names no reference
    bad = json.loads(text)
    bad["pairs"][1]["reference"] = [75, 40]
    with pytest.raises(pack.mn_core.PointsError, match=r"pair 2: the reference 2 \(reference_index 1\) point .* outside the 70x50"):
        node.run(ref, line, json.dumps(bad), reference_2=other)
    bad["pairs"][1].update(reference=[1, 1], reference_index=2)
    with pytest.raises(pack.mn_core.PointsError, match="reference_index 2 names a reference that is not there; 2"):
        node.run(ref, line, json.dumps(bad), reference_2=other)
    bad["pairs"][1]["reference_index"] = 1
    bad["reference_size"] = [[160, 120], [80, 50]]
    with pytest.raises(pack.mn_core.PointsError, match=r"placed on a 80x50 reference 2 \(reference_index 1\), but the reference 2"):
        node.run(ref, line, json.dumps(bad), reference_2=other)
    # one reference: the output is what it always was (one size, no reference_index)
    single = json.loads(node.run(ref, line, json.dumps({"pairs": json.loads(text)["pairs"][:1]}))["ui"]["mn_points"][0])
    assert single == {"reference_size": [160, 120], "lineart_size": [96, 140],
                      "pairs": [{"reference": [80.0, 50.0], "lineart": [48.0, 45.0]}]}


def test_extract_lineart_node(pack, model, sample_images):
    node = pack.nodes.lineart.ExtractLineart()
    img = image_tensor(sample_images["reference"])
    with pytest.raises(ValueError, match="needs the MangaNinja model"):
        node.extract(img, "extract", "auto", 0.0, True, 256, "letterbox", "black_on_white")
    out, prepared = node.extract(img, "extract", "auto", 0.0, True, 256, "letterbox", "black_on_white", model=model)
    assert out.shape == (1, 120, 160, 3)
    direct = model.extract_lineart(img[0], size=256, fit="letterbox")
    assert len(prepared) == 1 and torch.equal(prepared[0].values, direct.values) and prepared[0].size == 256
    drawn = node.extract(image_tensor(sample_images["black_on_white"]), "drawn", "auto", 0.5, True, 256,
                         "letterbox", "white_on_black")[0]  # no model needed for drawn line art
    assert drawn.shape == (1, 140, 96, 3) and drawn.mean() < 0.3  # white lines on black
    again = node.extract(image_tensor(sample_images["black_on_white"]), "drawn", "auto", 0.5, True, 256,
                         "letterbox", "black_on_white")[0]
    assert torch.allclose(again, 1 - drawn, atol=1 / 255)


def test_extract_lineart_feeds_the_sampler_unchanged(pack, model, sample_images):
    """Line art flows once: Extract Lineart's prepared output -> Colorize Sampler gives exactly what the sampler
    makes from the drawing itself (non-square 96x140 input, 256 px), and extracted line art is used as extracted."""
    ref = pack.nodes.reference.ReferenceEncode().encode(model, image_tensor(sample_images["reference"]), 256,
                                                        "letterbox", 0)[0]
    sampler, extractor = pack.nodes.sampler.ColorizeSampler(), pack.nodes.lineart.ExtractLineart()
    frames = torch.cat([image_tensor(sample_images["black_on_white"]), image_tensor(sample_images["white_on_black"])])
    direct = sampler.sample(model, ref, 2, 7, 9.0, 15.0, "letterbox", "auto", lineart=frames)["result"]
    _, prepared = extractor.extract(frames, "drawn", "auto", 0.0, True, 256, "letterbox", "black_on_white")
    via = sampler.sample(model, ref, 2, 7, 9.0, 15.0, "stretch", "white_on_black",  # ignored for prepared input
                         prepared_lineart=prepared)["result"]
    assert via[0].shape == (2, 140, 96, 3)
    assert torch.equal(via[0], direct[0]) and torch.equal(via[1], direct[1])

    # Mode extract: the annotator's line art reaches the sampler without a second fit, polarity guess or cleanup.
    _, extracted = extractor.extract(image_tensor(sample_images["reference"]), "extract", "auto", 0.0, True, 256,
                                     "letterbox", "black_on_white", model=model)
    via = sampler.sample(model, ref, 2, 7, 9.0, 15.0, "letterbox", "auto", prepared_lineart=extracted)["result"]
    core = model.colorize(ref, model.extract_lineart(sample_images["reference"], size=256), steps=2,
                          generator=torch.Generator("cpu").manual_seed(7))
    assert torch.equal(via[0][0], torch.from_numpy(np.asarray(core.image, dtype=np.float32) / 255.0))

    with pytest.raises(ValueError, match="either `lineart`.*not neither"):
        sampler.sample(model, ref, 2, 7, 9.0, 15.0, "letterbox", "auto")
    with pytest.raises(ValueError, match="not both"):
        sampler.sample(model, ref, 2, 7, 9.0, 15.0, "letterbox", "auto", lineart=frames, prepared_lineart=prepared)
    _, small = extractor.extract(frames, "drawn", "auto", 0.0, True, 320, "letterbox", "black_on_white")
    with pytest.raises(ValueError, match="made at size 320 .* encoded at 256; set Extract Lineart's size to 256"):
        sampler.sample(model, ref, 2, 7, 9.0, 15.0, "letterbox", "auto", prepared_lineart=small)


def test_reference_encode_takes_several_references(pack, model, sample_images):
    from PIL import Image

    node = pack.nodes.reference.ReferenceEncode()
    first = image_tensor(sample_images["reference"])
    other = image_tensor(Image.new("RGB", (70, 150), (40, 200, 90)))  # another size: its own input
    one = node.encode(model, first, 256, "letterbox", 0)[0]
    for mode in ("tile", "bank"):
        assert torch.equal(node.encode(model, first, 256, "letterbox", 0, combine=mode)[0].latents, one.latents)
    tile = node.encode(model, first, 256, "letterbox", 0, combine="tile", reference_2=other)[0]
    bank = node.encode(model, torch.cat([first, first]), 256, "letterbox", 0, combine="bank", reference_3=other)[0]
    assert tile.squares == 1 and len(tile.sources) == 2
    assert bank.squares == 3 and [s for s, _ in bank.sources] == [0, 1, 2]
    assert bank.sources[2][1].source_size == (70, 150)
    pts = pack.mn_core.points.parse({"pairs": [{"reference": [10, 10], "lineart": [10, 10], "reference_index": 3}]})
    with pytest.raises(pack.mn_core.points.PointsError, match="reference_index 3 names a reference"):
        pack.nodes.sampler.ColorizeSampler().sample(model, bank, 1, 0, 9.0, 15.0, "letterbox", "auto",
                                                    lineart=image_tensor(sample_images["black_on_white"]),
                                                    points=pts)


def test_sampler_colours_a_batch_as_a_sequence(pack, model, sample_images, comfy_env):
    import comfy.utils

    from_core = pack.mn_core.sequence.colorize_sequence
    ref = pack.nodes.reference.ReferenceEncode().encode(model, image_tensor(sample_images["reference"]), 256,
                                                        "letterbox", 0)[0]
    frames = torch.cat([image_tensor(sample_images["black_on_white"]), image_tensor(sample_images["white_on_black"]),
                        image_tensor(sample_images["black_on_white"])])
    sampler = pack.nodes.sampler.ColorizeSampler()
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview: seen.append((value, total)))
    try:
        chained = sampler.sample(model, ref, 2, 4, 9.0, 15.0, "letterbox", "auto", previous_frame=True,
                                 lineart=frames)["result"][0]
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
    assert seen == [(k, 6) for k in range(1, 7)]  # progress over all frames
    arts = [pack.mn_core.lineart.from_drawing(f, size=256) for f in frames]
    core = list(from_core(model, ref, arts, steps=2, seed=4, previous_frame=True))
    for k, result in enumerate(core):
        assert torch.equal(chained[k], torch.from_numpy(np.asarray(result.image, dtype=np.float32) / 255.0))
    independent = sampler.sample(model, ref, 2, 4, 9.0, 15.0, "letterbox", "auto", lineart=frames)["result"][0]
    assert torch.equal(independent[0], chained[0]) and not torch.equal(independent[1], chained[1])
    batched = sampler.sample(model, ref, 2, 4, 9.0, 15.0, "letterbox", "auto", frames_per_call=3,
                             lineart=frames)["result"][0]
    assert (batched - independent).abs().max() <= 1 / 255 + 1e-6
    same = sampler.sample(model, ref, 2, 4, 9.0, 15.0, "letterbox", "auto", same_noise=True,
                          lineart=frames)["result"][0]
    assert torch.equal(same[0], same[2])  # frames 0 and 2 are the same drawing
    with pytest.raises(ValueError, match="set frames_per_call to 1"):
        sampler.sample(model, ref, 2, 4, 9.0, 15.0, "letterbox", "auto", previous_frame=True, frames_per_call=2,
                       lineart=frames)


def test_suggest_points_node_per_image_and_per_frame(pack, model, comfy_env):
    """Suggest Points: the pairs of mn_core.suggest for one image; for a batch, each frame's own pairs, which the
    sampler applies frame by frame (each frame equal to colouring it alone with its pairs)."""
    from_core = pack.mn_core.suggest.suggest_points
    from mn_core.warp_cases import make_case
    cases = [make_case("character", 4, size=256), make_case("character", 5, size=256)]
    ref = image_tensor(cases[0].reference)
    node = pack.nodes.suggest.SuggestPoints()
    one = node.run(ref, image_tensor(cases[0].lineart), 8, 0.0, False)
    points, text = one["result"]
    assert points == from_core(cases[0].reference, cases[0].lineart, 8) and len(points) >= 6
    assert pack.mn_core.points.parse(text) == points
    assert "confidence" in text and one["ui"]["mn_pairs"] == [len(points)]
    # a second frame: the second drawing's lines under the first one's reference (another warp, other pairs)
    frames = torch.cat([image_tensor(cases[0].lineart), image_tensor(cases[1].lineart)])
    many, text = node.run(ref, frames, 8, 0.0, False)["result"]
    assert isinstance(many, pack.mn_core.points.FramePoints) and len(many) == 2
    assert many.frames[0] == points and many.frames[1] == from_core(cases[0].reference, cases[1].lineart, 8)
    assert json.loads(text) == {"frames": [json.loads(p.to_json()) for p in many.frames]}
    encoded = pack.nodes.reference.ReferenceEncode().encode(model, ref, 256, "letterbox", 0)[0]
    sampler = pack.nodes.sampler.ColorizeSampler()
    both = sampler.sample(model, encoded, 1, 3, 9.0, 15.0, "letterbox", "auto", lineart=frames, points=many,
                          frames_per_call=2)["result"][0]
    for k in range(2):
        core = pack.mn_core.sequence.colorize_frame(model, encoded, cases[k].lineart, k, points=many.frames[k],
                                                    steps=1, seed=3)
        assert torch.equal(both[k], torch.from_numpy(np.asarray(core.image, dtype=np.float32) / 255.0))
    with pytest.raises(pack.mn_core.points.PointsError, match="frame 2 has no points"):
        sampler.sample(model, encoded, 1, 3, 9.0, 15.0, "letterbox", "auto", points=many,
                       lineart=torch.cat([frames, frames[:1]]))


def test_missing_dependency_logs_one_line_and_registers_nothing(tmp_path):
    script = textwrap.dedent(f"""
        import importlib.util, logging, sys
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "diffusers" else real(name, *a)
        spec = importlib.util.spec_from_file_location("p", {str(ROOT / '__init__.py')!r},
                                                      submodule_search_locations=[{str(ROOT)!r}])
        m = importlib.util.module_from_spec(spec); sys.modules["p"] = m; spec.loader.exec_module(m)
        print("MAPPINGS", len(m.NODE_CLASS_MAPPINGS), "torch.cuda.initialized", __import__("torch").cuda.is_initialized())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MAPPINGS 0" in out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "diffusers" in errors[0] and "pip install -r" in errors[0]
    assert list(tmp_path.iterdir()) == []  # importing wrote nothing (and downloaded nothing)


def test_nodes_run_standalone_without_comfyui(tiny_models, tmp_path, sample_images):
    """Without ComfyUI's modules the same node code runs with plain device placement."""
    sample_images["reference"].save(tmp_path / "r.png")
    script = textwrap.dedent(f"""
        import importlib.util, sys, os
        import numpy as np, torch
        from PIL import Image
        os.environ["MANGANINJA_MODELS"] = {str(tiny_models)!r}
        spec = importlib.util.spec_from_file_location("p", {str(ROOT / '__init__.py')!r},
                                                      submodule_search_locations=[{str(ROOT)!r}])
        m = importlib.util.module_from_spec(spec); sys.modules["p"] = m; spec.loader.exec_module(m)
        assert not m.nodes.bridge.have_comfy() and "comfy" not in sys.modules
        img = torch.from_numpy(np.asarray(Image.open({str(tmp_path / 'r.png')!r}).convert("RGB"), np.float32) / 255)[None]
        model = m.nodes.load.LoadMangaNinja().load("fp32", False)[0]
        print(type(model.modules).__name__)
        ref = m.nodes.reference.ReferenceEncode().encode(model, img, 256, "letterbox", 0)[0]
        out = m.nodes.sampler.ColorizeSampler().sample(model, ref, 1, 0, 9.0, 15.0, "letterbox", "auto", lineart=img)
        print(tuple(out["result"][0].shape))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "LocalModules" in out.stdout and "(1, 120, 160, 3)" in out.stdout


def test_logging_uses_the_pack_logger(pack):
    assert pack.nodes.bridge.log.name == "MangaNinja" and isinstance(pack.nodes.bridge.log, logging.Logger)


def test_loader_downloads_missing_files_only_when_run(pack, comfy_env, tiny_models, tmp_path, hub):
    """download=True fetches the layout through mn_core's downloader (a local fake hub here), with progress."""
    import comfy.utils

    from mn_core import layout

    fp = comfy_env["folder_paths"]
    for lf in layout.FILES:
        path = lf.find(tiny_models)
        if path is not None:
            hub.add(lf.repo, lf.repo_file, path.read_bytes())
    target = tmp_path / "downloaded"
    saved = fp.folder_names_and_paths["manganinja"]
    fp.folder_names_and_paths["manganinja"] = ([str(target)], set())
    seen = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview: seen.append((value, total)))
    try:
        with pytest.raises(Exception, match="missing under"):
            pack.nodes.load.LoadMangaNinja().load("fp32", False)  # off: nothing is fetched
        assert not any(r.method == "GET" for r in hub.requests)
        model = pack.nodes.load.LoadMangaNinja().load("fp32", True)[0]
    finally:
        comfy.utils.set_progress_bar_global_hook(None)
        fp.folder_names_and_paths["manganinja"] = saved
    assert layout.missing(target) == []
    assert model.null_context.shape == (1, 1, 16)
    assert seen and seen[-1] == (100, 100) and all(t == 100 for _, t in seen)
