"""The command line with several references and over sequences: ``colorize --reference A --reference B`` and
``sequence --frames DIR_OR_VIDEO``; outputs equal the in-process API byte for byte, errors are one line."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from support import ROOT
from mn_core.sequence import colorize_sequence

av = pytest.importorskip("av")

CPU = ["--device", "cpu", "--precision", "fp32"]  # what the in-process `tiny` fixture uses


def run(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "mn_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def load(path):
    img = Image.open(path)
    img.load()
    return img


def same_bytes(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()


def video_frames(line: Image.Image) -> list[Image.Image]:
    """Three 64x48 RGB frames: the drawing sliding a little to the right."""
    base = np.asarray(line.convert("RGB").resize((64, 48)))
    return [Image.fromarray(np.roll(base, 2 * k, axis=1)) for k in range(3)]


def write_video(path, frames):
    container = av.open(str(path), "w")
    stream = container.add_stream("png", rate=24)  # lossless: the frames read back are exactly these
    stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "rgb24"
    for img in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, sample_images):
    d = tmp_path_factory.mktemp("cli-seq")
    ref = sample_images["reference"]
    ref.save(d / "ref.png")
    ImageOps.mirror(ref).rotate(180).save(d / "ref2.png")
    line = sample_images["black_on_white"]
    line.save(d / "line.png")
    frames = d / "frames"
    frames.mkdir()
    line.save(frames / "f1.png")                                           # 96x140
    ImageOps.mirror(line).save(frames / "f0.png")                          # sorted first
    sample_images["white_on_black"].resize((80, 60)).save(frames / "f2.png")
    (frames / "notes.txt").write_text("not a frame")                       # ignored: not an image file
    write_video(d / "clip.mov", video_frames(line))
    return d


@pytest.mark.parametrize("previous_frame", [False, True])
def test_sequence_folder_matches_colorize_sequence(tiny, tiny_models, inputs, tmp_path, previous_frame):
    flags = ["--previous-frame"] if previous_frame else []
    out = run("sequence", "--models", tiny_models, "--reference", inputs / "ref.png", "--frames", inputs / "frames",
              "--out", tmp_path / "out", "--steps", 2, "--size", 128, "--seed", 5, *CPU, *flags)
    assert out.returncode == 0, out.stderr
    assert "wrote 3 frames" in out.stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["contact_sheet.png", "f0.png", "f1.png", "f2.png",
                                                                   "manifest.json"]
    names = ["f0", "f1", "f2"]
    ref = tiny.encode_references([load(inputs / "ref.png")], mode="tile", size=128, seed=5)
    expected = colorize_sequence(tiny, ref, [load(inputs / "frames" / f"{n}.png") for n in names], steps=2, seed=5,
                                 previous_frame=previous_frame)
    for name, want, size in zip(names, expected, [(96, 140), (96, 140), (80, 60)]):
        got = load(tmp_path / "out" / f"{name}.png")
        assert got.size == size
        assert same_bytes(got, want.image), name


def test_sequence_batch_and_same_noise(tiny_models, inputs, tmp_path):
    args = ["sequence", "--models", tiny_models, "--reference", inputs / "ref.png", "--frames", inputs / "frames",
            "--steps", 1, "--size", 128, "--same-noise", *CPU]
    one = run(*args, "--out", tmp_path / "one")
    two = run(*args, "--out", tmp_path / "two", "--batch", 2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    for name in ("f0.png", "f1.png", "f2.png"):
        a = np.asarray(load(tmp_path / "one" / name), np.int16)
        b = np.asarray(load(tmp_path / "two" / name), np.int16)
        assert np.abs(a - b).max() <= 1  # batching shares network calls; results agree within rounding


def test_sequence_reads_a_video(tiny, tiny_models, inputs, tmp_path):
    out = run("sequence", "--models", tiny_models, "--reference", inputs / "ref.png", "--reference",
              inputs / "ref2.png", "--multi-reference", "bank", "--frames", inputs / "clip.mov",
              "--out", tmp_path / "out", "--steps", 1, "--size", 128, "--seed", 3, *CPU)
    assert out.returncode == 0, out.stderr
    assert "frame" in out.stderr  # the progress bar counts frames
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["coloured.mp4", "contact_sheet.png", "frame_00000.png", "frame_00001.png", "frame_00002.png",
                     "manifest.json"]
    names = names[2:5]
    ref = tiny.encode_references([load(inputs / "ref.png"), load(inputs / "ref2.png")], mode="bank", size=128,
                                 seed=3)
    expected = colorize_sequence(tiny, ref, video_frames(load(inputs / "line.png")), steps=1, seed=3)
    for name, want in zip(names, expected):
        got = load(tmp_path / "out" / name)
        assert got.size == (64, 48)
        assert same_bytes(got, want.image), name
    # for people: the coloured shot as an MP4 at the source's 24 fps, and a contact sheet of every frame
    with av.open(str(tmp_path / "out" / "coloured.mp4")) as container:
        stream = container.streams.video[0]
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert float(stream.average_rate) == 24 and len(decoded) == 3 and decoded[0].shape == (48, 64, 3)
    first = np.asarray(load(tmp_path / "out" / names[0]), np.int16)
    # H.264 with 4:2:0 chroma blurs the tiny random weights' pixel noise; the picture itself is the frame's
    assert np.abs(decoded[0].reshape(-1, 3).mean(0) - first.reshape(-1, 3).mean(0)).max() < 4
    sheet = Image.open(tmp_path / "out" / "contact_sheet.png")
    assert sheet.width > 3 * 64 and sheet.height > 48


@pytest.mark.parametrize("mode", ["tile", "bank"])
def test_colorize_with_two_references(tiny, tiny_models, inputs, tmp_path, mode):
    out = run("colorize", "--models", tiny_models, "--reference", inputs / "ref.png", "--reference",
              inputs / "ref2.png", "--multi-reference", mode, "--lineart", inputs / "line.png", "--steps", 1,
              "--size", 128, "--seed", 4, *CPU, "--out", tmp_path / "o.png")
    assert out.returncode == 0, out.stderr
    got = load(tmp_path / "o.png")
    assert got.size == (96, 140) and np.asarray(got).std() > 1
    g = torch.Generator("cpu").manual_seed(4)  # one generator: reference noise, then the latents
    ref = tiny.encode_references([load(inputs / "ref.png"), load(inputs / "ref2.png")], mode=mode, size=128,
                                 generator=g, seed=4)
    want = tiny.colorize(ref, load(inputs / "line.png"), steps=1, generator=g, seed=4)
    assert same_bytes(got, want.image)


def test_one_reference_is_unchanged(tiny, tiny_models, inputs, tmp_path):
    base = ["colorize", "--models", tiny_models, "--reference", inputs / "ref.png", "--lineart",
            inputs / "line.png", "--steps", 2, "--size", 128, "--seed", 9, *CPU]
    plain = run(*base, "--out", tmp_path / "plain.png")
    bank = run(*base, "--multi-reference", "bank", "--out", tmp_path / "bank.png")
    assert plain.returncode == 0 and bank.returncode == 0, plain.stderr + bank.stderr
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "bank.png").read_bytes()
    g = torch.Generator("cpu").manual_seed(9)  # what the CLI has always done with one reference
    ref = tiny.encode_reference(load(inputs / "ref.png"), size=128, generator=g, seed=9)
    want = tiny.colorize(ref, load(inputs / "line.png"), steps=2, generator=g, seed=9)
    assert same_bytes(load(tmp_path / "plain.png"), want.image)


@pytest.mark.parametrize("args, message", [
    (["--frames", "MISSING"], "no such folder or video file"),
    (["--frames", "EMPTY_DIR"], "no image files here"),
    (["--frames", "BAD_VIDEO"], "not a readable video"),
    (["--frames", "BAD_FRAME_DIR"], "not a readable image"),
    (["--batch", "2", "--previous-frame"], "--batch 2 with --previous-frame"),
    (["--out", "A_FILE"], "exists and is not a folder"),
    (["--reference", "missing.png"], "--reference missing.png: file not found"),
])
def test_sequence_errors_are_one_line(tiny_models, inputs, tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "badframes").mkdir()
    (tmp_path / "badframes" / "a.png").write_text("not an image")
    (tmp_path / "a_file").write_text("x")
    subst = {"MISSING": tmp_path / "missing", "EMPTY_DIR": tmp_path / "empty", "BAD_VIDEO": tmp_path / "bad.mp4",
             "BAD_FRAME_DIR": tmp_path / "badframes", "A_FILE": tmp_path / "a_file"}
    base = {"--models": tiny_models, "--reference": inputs / "ref.png", "--frames": inputs / "frames",
            "--out": tmp_path / "out"}
    extra = []
    i = 0
    while i < len(args):
        flag = args[i]
        if i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = subst.get(args[i + 1], args[i + 1])
            i += 2
            if flag in base:
                base[flag] = value
                continue
            extra += [flag, value]
        else:
            extra.append(flag)
            i += 1
    out = run("sequence", "--steps", 1, "--size", 128, *CPU, *sum(([k, v] for k, v in base.items()), []), *extra)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], out.stderr


def test_video_without_pyav_says_how_to_install(tiny_models, inputs, tmp_path):
    shim = tmp_path / "shim" / "av"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('PyAV hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shim.parent), os.environ.get("PYTHONPATH")])))
    out = run("sequence", "--models", tiny_models, "--reference", inputs / "ref.png", "--frames",
              inputs / "clip.mov", "--out", tmp_path / "out", *CPU, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "reading video needs PyAV: pip install av" in errors[0], out.stderr


@pytest.mark.parametrize("args, message", [
    (["--batch", "0"], "argument --batch: must be at least 1"),
    (["--batch", "two"], "argument --batch: expected a whole number"),
    (["--multi-reference", "grid"], "argument --multi-reference: invalid choice"),
])
def test_bad_sequence_arguments_are_usage_errors(args, message, tmp_path):
    out = run("sequence", "--models", tmp_path, "--reference", "r.png", "--frames", tmp_path, "--out", "o", *args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
