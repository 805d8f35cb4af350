"""Fetching a whole models folder from the (fake, local) hub: only what is missing, base weights only if needed."""

import os
import subprocess
import sys

import pytest

from support import ROOT
from mn_core import MangaNinja, layout, models, synthetic

pytestmark = pytest.mark.usefixtures("hub")


def serve_layout(fake, root):
    for lf in layout.FILES:
        path = lf.find(root)
        if path is not None:
            fake.add(lf.repo, lf.repo_file, path.read_bytes())


def requested_files(fake):
    return {r.file.path for r in fake.requests if r.file is not None and r.method == "GET"}


def test_complete_overlays_skip_the_base_weights(hub, tiny_models, tmp_path):
    serve_layout(hub, tiny_models)
    root = tmp_path / "models"
    models.ensure_models(root)
    assert layout.missing(root) == []
    fetched = requested_files(hub)
    assert "unet/diffusion_pytorch_model.safetensors" not in fetched
    assert "diffusion_pytorch_model.safetensors" not in fetched  # the ControlNet base
    assert {"denoising_unet.pth", "point_net.pth", "sk_model.pth", "model.safetensors"} <= fetched
    mn = MangaNinja.from_folder(root, precision="fp32")
    assert mn.null_context.shape == (1, 1, 16)
    n = len(hub.requests)
    models.ensure_models(root)  # nothing missing: no requests at all
    assert len(hub.requests) == n


def test_partial_overlays_fetch_their_base(hub, tmp_path):
    src = synthetic.write_layout(tmp_path / "src", synthetic.TINY, drop_overlay_keys={"controlnet": ["conv_in."]})
    serve_layout(hub, src)
    root = tmp_path / "models"
    models.ensure_models(root)
    fetched = requested_files(hub)
    assert "diffusion_pytorch_model.safetensors" in fetched  # ControlNet base: needed
    assert "unet/diffusion_pytorch_model.safetensors" not in fetched  # UNet overlays are complete
    MangaNinja.from_folder(root, precision="fp32")


def test_cli_download_and_colorize_with_download(hub, tiny_models, tmp_path, sample_images):
    serve_layout(hub, tiny_models)
    env = dict(os.environ, HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=str(tmp_path / "cache"),
               HF_HUB_DISABLE_IMPLICIT_TOKEN="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    out = subprocess.run([sys.executable, "-m", "mn_core", "download", "--models", str(tmp_path / "a")], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert layout.missing(tmp_path / "a") == []
    sample_images["reference"].save(tmp_path / "r.png")
    sample_images["black_on_white"].save(tmp_path / "l.png")
    out = subprocess.run([sys.executable, "-m", "mn_core", "colorize", "--models", str(tmp_path / "b"), "--download",
                          "--reference", str(tmp_path / "r.png"), "--lineart", str(tmp_path / "l.png"), "--steps", "1",
                          "--size", "128", "--out", str(tmp_path / "o.png")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "o.png").exists()


def test_cli_download_failure_is_one_line(hub, tmp_path, monkeypatch, capsys):
    from mn_core.cli import main

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert main(["download", "--models", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0] and "Traceback" not in err


def test_cli_verify_and_a_damaged_file_at_load(hub, tiny_models, tmp_path, capsys):
    """download --verify reads every file against the hub's checksums; a file cut short after its download is named
    when the models are loaded, and a damaged one by --verify."""
    from mn_core.cli import main
    from mn_core.loading import CheckpointError
    from mn_core.models import ModelFiles

    serve_layout(hub, tiny_models)
    root = tmp_path / "m"
    assert main(["download", "--models", str(root), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "point_net: ok" in out and "denoising_unet: ok" in out

    target = root / layout.BY_ROLE["point_net"].path
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # e.g. a copy to another disk that was cut off
    with pytest.raises(CheckpointError) as ei:
        ModelFiles.from_folder(root)
    assert str(target) in str(ei.value) and f"{len(data) // 2} bytes" in str(ei.value)

    broken = bytearray(data)
    broken[len(data) // 2] ^= 0xFF  # same size, flipped bits: only the checksum sees it
    target.write_bytes(bytes(broken))
    ModelFiles.from_folder(root)  # the size is right: loading does not read every byte
    assert main(["download", "--models", str(root), "--verify"]) == 1
    captured = capsys.readouterr()
    assert "point_net: " + str(target) in captured.out and "sha256 differs" in captured.out
    assert "error: 1 file(s) differ" in captured.err and "point_net" in captured.err

    target.unlink()  # what the message says to do: the next download fetches it again
    assert main(["download", "--models", str(root), "--verify"]) == 0
    assert target.read_bytes() == data


def test_truncated_weight_files_name_the_file(tmp_path):
    import torch
    from safetensors.torch import save_file

    from mn_core.loading import CheckpointError, TensorFile

    sd = {"w": torch.arange(4000, dtype=torch.float32)}
    save_file(sd, tmp_path / "a.safetensors")
    torch.save(sd, tmp_path / "a.pth")
    for name in ("a.safetensors", "a.pth"):
        path = tmp_path / name
        path.write_bytes(path.read_bytes()[:5000])
        with pytest.raises(CheckpointError) as ei:
            TensorFile(path)
        assert str(path) in str(ei.value) and "download it again" in str(ei.value)
