"""The metric networks: fetched on first use into their folder, offline against local servers, and refused when
unsafe or missing. Weights are random, with the real shapes (only the mechanics are tested here)."""

from __future__ import annotations

import functools
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

from mn_core import metric_nets, metrics as M


class Mirror:
    """A plain local HTTP server over a folder: what a mirror of the weights' URLs would serve."""

    def __init__(self, root: Path):
        self.root = root
        self.paths: list[str] = []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mirror.paths.append(self.path)
                super().do_GET()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def put(self, url: str, path: Path) -> None:
        dest = self.root / urlsplit(url).path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.symlink_to(path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def random_weights(tmp_path_factory):
    """Random AlexNet (torchvision) and FID Inception (torch-fidelity) state dicts in fp16, the real key sets."""
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    folder = tmp_path_factory.mktemp("random-metric-weights")
    torch.manual_seed(0)
    alex = folder / "alexnet.pth"
    torch.save({k: v.half() for k, v in torchvision.models.alexnet(weights=None).state_dict().items()}, alex)

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    empty = folder / "empty.pth"
    torch.save({}, empty)
    inception = Unloaded("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    incep = folder / "inception.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in inception.state_dict().items()}, incep)
    return {"alexnet": alex, "inception": incep}


@pytest.fixture
def mirror(tmp_path, monkeypatch, random_weights):
    m = Mirror(tmp_path / "mirror")
    m.root.mkdir(exist_ok=True)
    m.put(metric_nets.alexnet_file().url, random_weights["alexnet"])
    m.put(metric_nets.inception_file().url, random_weights["inception"])
    monkeypatch.setenv("MN_METRICS_MIRROR", m.url)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(metric_nets, "_CACHE", {})
    yield m
    m.close()


def _images(n=3, seed=0, size=96):
    rng = np.random.default_rng(seed)
    return [(rng.random((size, size + 8, 3)) * 255).astype(np.uint8) for _ in range(n)]


def test_lpips_fetches_alexnet_once_and_uses_exactly_it(mirror, tmp_path, random_weights):
    from torchmetrics.functional.image.lpips import _LPIPS

    root = tmp_path / "nets"
    hub_dir = torch.hub.get_dir()
    a, b, _ = _images()
    value = M.Networks(root).lpips(a, b)
    dest = root / metric_nets.alexnet_file().path
    assert dest.is_file() and dest.read_bytes() == random_weights["alexnet"].read_bytes()
    assert mirror.paths == [urlsplit(metric_nets.alexnet_file().url).path]
    assert torch.hub.get_dir() == hub_dir  # torch.hub's folder is put back
    assert not [p for p in dest.parent.iterdir() if p != dest]  # no temporary file left

    # The same LPIPS built by hand from the file: the downloaded AlexNet is what was used.
    net = _LPIPS(pretrained=True, net="alex", pnet_rand=True).eval()
    features = torch.load(dest, weights_only=True)
    net.net.load_state_dict({k: features[f"features.{k.split('.', 1)[1]}"].float()
                             for k in net.net.state_dict()}, strict=True)
    x = M._tensor(a, b) * 2 - 1
    with torch.no_grad():
        expected = float(net(x[:1], x[1:]).reshape(-1)[0])
    assert value == pytest.approx(expected, rel=1e-5)
    assert M.Networks(root).lpips(a, a) == pytest.approx(0.0, abs=1e-7)

    metric_nets._CACHE.clear()  # a new process: the file is there, nothing is fetched
    M.Networks(root).lpips(a, b)
    assert len(mirror.paths) == 1


def test_fid_fetches_inception_and_scores_sets(mirror, tmp_path):
    root = tmp_path / "nets"
    nets = M.Networks(root)
    preds, targets = _images(4, seed=1), _images(4, seed=2)
    nets.fid_update(preds[0], targets[0])
    assert nets.fid_compute() is None  # one pair is not a set
    for p, t in zip(preds, targets):
        nets.fid_update(p, t)
    different = nets.fid_compute()
    for t in targets:
        nets.fid_update(t, t)
    same = nets.fid_compute()
    assert (root / metric_nets.inception_file().path).is_file()
    assert np.isfinite(different) and different > 0 and abs(same) < 1e-3 * different
    assert mirror.paths.count(urlsplit(metric_nets.inception_file().url).path) == 1


def _tiny_dino(folder: Path) -> Path:
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, image_size=56, patch_size=14))
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "image_processor_type": "BitImageProcessor", "do_resize": True, "size": {"shortest_edge": 64},
        "resample": 3, "do_center_crop": True, "crop_size": {"height": 56, "width": 56}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True}))
    return folder


def test_clip_and_dino_come_from_the_hub(hub, tmp_path, tiny_models, monkeypatch):
    monkeypatch.setattr(metric_nets, "_CACHE", {})
    for lf in metric_nets.CLIP_FILES:
        hub.add(lf.repo, lf.repo_file, (tiny_models / lf.path).read_bytes())
    dino_src = _tiny_dino(tmp_path / "dino-src")
    for lf in metric_nets.DINO_FILES:
        hub.add(lf.repo, lf.repo_file, (dino_src / lf.repo_file).read_bytes())
    root = tmp_path / "nets"
    nets = M.Networks(root)
    a, b, _ = _images(size=80)
    for kind in ("clip", "dino"):
        assert nets.similarity(kind, a, a) == pytest.approx(1.0, abs=1e-5)
        assert -1 <= nets.similarity(kind, a, b) < 0.99999
    for lf in (*metric_nets.CLIP_FILES, *metric_nets.DINO_FILES):
        assert (root / lf.path).is_file(), lf.path
    scores = M.score_pair(a, b, ["clip", "dino"], nets=nets, reference=a)
    assert set(scores) == {"clip", "clip_ref", "dino", "dino_ref"} and scores["clip_ref"] == pytest.approx(
        nets.similarity("clip", a, a))

    # The CLIP of a MangaNinja checkpoint folder is used where it is, without asking the hub.
    hub.requests.clear()
    metric_nets._CACHE.clear()
    other = M.Networks(tmp_path / "empty-nets", clip_also=(tiny_models,))
    assert other.similarity("clip", a, b) == pytest.approx(nets.similarity("clip", a, b), abs=1e-6)
    assert hub.requests == [] and not (tmp_path / "empty-nets").exists()


def test_missing_networks_give_one_line_errors(tmp_path, mirror, monkeypatch):
    a, b, _ = _images()
    root = tmp_path / "nets"
    dest = root / metric_nets.alexnet_file().path
    with pytest.raises(metric_nets.MetricNetError) as e:
        M.Networks(root, download=False).lpips(a, b)
    assert "\n" not in str(e.value) and str(dest) in str(e.value) and "downloads are off" in str(e.value)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(metric_nets.MetricNetError, match="downloads are disabled"):
        M.Networks(root).fid_update(a, b)
    monkeypatch.delenv("HF_HUB_OFFLINE")

    monkeypatch.setenv("MN_METRICS_MIRROR", mirror.url + "/nothing-here")
    with pytest.raises(metric_nets.MetricNetError) as e:
        M.Networks(root).lpips(a, b)
    assert "404" in str(e.value) and "/nothing-here/" in str(e.value) and "\n" not in str(e.value)
    assert not dest.parent.exists() or not list(dest.parent.iterdir())  # nothing half-written


class _NotAWeight:
    pass


@pytest.mark.parametrize("content,message", [({"features.0.weight": _NotAWeight()}, "not a plain file of weights"),
                                             ({"features.0.weight": "text"}, "not a state dict of tensors")])
def test_unsafe_weight_files_are_refused(tmp_path, mirror, content, message):
    root = tmp_path / "nets"
    dest = root / metric_nets.alexnet_file().path
    dest.parent.mkdir(parents=True)
    torch.save(content, dest)
    a, b, _ = _images()
    with pytest.raises(metric_nets.MetricNetError, match=message):
        M.Networks(root).lpips(a, b)
    assert mirror.paths == []
