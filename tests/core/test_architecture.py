"""Full-size networks built on the meta device from the SD1.5 configs match the official key manifests exactly."""

import ast
import json

import pytest

from mn_core import models
from mn_core.annotator import LineartGenerator
from mn_core.loading import empty_weights
from mn_core.pointnet import PointNet


def manifest(keys_dir, name):
    out = {}
    for line in (keys_dir / f"{name}.tsv").read_text().splitlines():
        key, shape, _dtype = line.split("\t")
        out[key] = tuple(ast.literal_eval(shape))
    return out


def shapes(module, prefix=""):
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}


@pytest.fixture(scope="module")
def configs(keys_dir):
    return json.loads((keys_dir / "sd15_configs.json").read_text())


def assert_same(actual, expected):
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(actual) & set(expected) if actual[k] != expected[k])
    assert not missing and not extra and not wrong, (missing[:5], extra[:5], wrong[:5])


def test_denoising_unet(configs, keys_dir):
    unet = models.build_unet(configs["unet"], reference=False)
    assert all(p.is_meta for p in unet.parameters())
    assert_same(shapes(unet), manifest(keys_dir, "denoising_unet"))


def test_reference_unet(configs, keys_dir):
    assert_same(shapes(models.build_unet(configs["unet"], reference=True)), manifest(keys_dir, "reference_unet"))


def test_controlnet(configs, keys_dir):
    assert_same(shapes(models.build_controlnet(configs["controlnet"])), manifest(keys_dir, "controlnet"))


def test_vae(configs, keys_dir):
    assert_same(shapes(models.build_vae(configs["vae"])), manifest(keys_dir, "vae_sd15"))


def test_clip_vision(configs, keys_dir):
    from transformers import CLIPVisionConfig

    model = models.build_clip_vision(CLIPVisionConfig(**configs["clip_vision"]))
    assert_same(shapes(model), manifest(keys_dir, "clip_vision_with_projection"))


def test_clip_text(configs, keys_dir):
    from transformers import CLIPTextConfig

    model = models.build_clip_text(CLIPTextConfig(**configs["clip_text"]))
    actual = shapes(model)
    # transformers 5 drops the tower prefix in CLIPTextModel's own state dict; the files keep it.
    if not any(k.startswith("text_model.") for k in actual):
        actual = {"text_model." + k: v for k, v in actual.items()}
    assert_same(actual, manifest(keys_dir, "clip_text"))


def test_point_net(configs, keys_dir):
    cfg = configs["point_net"]
    expected = manifest(keys_dir, "point_net")
    stages = PointNet.stages_from_shapes(expected)
    assert stages == [(c, d // 2) for c, d in zip(cfg["out_channels"], cfg["downsamples"])]
    with empty_weights():
        net = PointNet(stages, in_channels=cfg["conditioning_channels"])
    assert_same(shapes(net), expected)


def test_annotator(keys_dir):
    expected = manifest(keys_dir, "annotator_sk_model")
    cfg = LineartGenerator.config_from_shapes(expected)
    assert cfg == dict(in_channels=3, out_channels=1, widths=(64, 128, 256), n_residual_blocks=3)
    with empty_weights():
        net = LineartGenerator(**cfg)
    assert_same(shapes(net), expected)


def test_transformer_blocks_pair_by_path(configs, keys_dir):
    from mn_core.attention import transformer_blocks

    rows = [line.split("\t") for line in (keys_dir / "transformer_blocks.tsv").read_text().splitlines()[1:]
            if line and not line.startswith(("attn", "dfs"))]
    expected = {r[2]: (int(r[3]), int(r[4])) for r in rows if len(r) >= 5}
    for reference in (False, True):
        blocks = transformer_blocks(models.build_unet(configs["unet"], reference=reference))
        assert {p: (b.norm1.normalized_shape[0], b.attn1.heads) for p, b in blocks.items()} == expected


def test_meta_build_allocates_nothing(configs):
    unet = models.build_unet(configs["unet"], reference=False)
    assert sum(p.numel() for p in unet.parameters()) == 859_520_964
    assert all(p.device.type == "meta" for p in unet.parameters())
