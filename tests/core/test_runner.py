"""The resumable shot runner: SIGKILL at random moments and Ctrl-C, then the same command again, give the folder of
an uninterrupted run byte for byte; other settings are refused (or --restart); damaged frames are coloured again."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageChops

from support import ROOT
from mn_core.runner import MANIFEST, Run, plan

CPU = ("--device", "cpu", "--precision", "fp32")
FRAMES = 8


@pytest.fixture(scope="module")
def shot(tmp_path_factory, sample_images):
    d = tmp_path_factory.mktemp("shot")
    sample_images["reference"].save(d / "ref.png")
    (d / "frames").mkdir()
    line = sample_images["black_on_white"]
    for k in range(FRAMES):  # the drawing moving right
        ImageChops.offset(line, 2 * k, 0).save(d / "frames" / f"f{k:02d}.png")
    return d


def command(models, shot, out, *extra):
    return [sys.executable, "-m", "mn_core", "-v", "sequence", "--models", str(models), "--reference",
            str(shot / "ref.png"), "--frames", str(shot / "frames"), "--out", str(out), "--steps", "3", "--size",
            "128", *CPU, *map(str, extra)]


def run(cmd, timeout=600):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def snapshot(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def finished_count(out) -> int:
    try:
        return len(json.loads((out / MANIFEST).read_text())["frames"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, shot, tmp_path_factory):
    outs = {}
    for mode, extra in (("independent", ()), ("previous", ("--previous-frame",))):
        out = tmp_path_factory.mktemp(f"whole-{mode}")
        done = run(command(tiny_models, shot, out, *extra))
        assert done.returncode == 0, done.stderr
        outs[mode] = snapshot(out)
    return outs


@pytest.mark.parametrize("mode, extra", [("independent", ()), ("previous", ("--previous-frame",))])
def test_sigkill_at_random_moments_then_resume_gives_the_same_folder(tiny_models, shot, uninterrupted, tmp_path,
                                                                     mode, extra):
    out = tmp_path / "out"
    rng = np.random.default_rng(7)
    kills = 0
    for attempt in range(12):
        before = finished_count(out)
        if before == FRAMES:
            break
        proc = subprocess.Popen(command(tiny_models, shot, out, *extra), cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # kill once this run has made progress, at a random moment of the next frame (or while it starts)
        deadline = time.monotonic() + 120
        while finished_count(out) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.4)))
        if proc.poll() is None and attempt < 3:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=300)
    assert kills == 3
    final = run(command(tiny_models, shot, out, *extra))
    assert final.returncode == 0, final.stderr
    assert snapshot(out) == uninterrupted[mode]  # frames, manifest and contact sheet, byte for byte
    assert not list(out.glob(".*"))


def test_ctrl_c_stops_after_the_frame_and_says_how_to_resume(tiny_models, shot, uninterrupted, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(command(tiny_models, shot, out, "--previous-frame"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    while finished_count(out) < 2 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    stopped_at = finished_count(out)
    assert 2 <= stopped_at < FRAMES
    again = run(command(tiny_models, shot, out, "--previous-frame"))
    assert again.returncode == 0 and f"resuming: {stopped_at} of {FRAMES} frames already finished" in again.stderr
    written = [line for line in again.stderr.splitlines() if "mn_core.runner: wrote" in line]
    assert len(written) == FRAMES - stopped_at  # nothing done twice
    assert snapshot(out) == uninterrupted["previous"]


def test_other_settings_are_refused_unless_restart(tiny_models, shot, uninterrupted, tmp_path):
    out = tmp_path / "out"
    assert run(command(tiny_models, shot, out)).returncode == 0
    other = run(command(tiny_models, shot, out, "--seed", "1"))
    assert other.returncode == 2 and "Traceback" not in other.stderr
    errors = [line for line in other.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "was started with other settings (different: seed)" in errors[0]
    assert "--restart" in errors[0]
    assert snapshot(out) == uninterrupted["independent"]  # untouched
    restarted = run(command(tiny_models, shot, out, "--seed", "1", "--restart"))
    assert restarted.returncode == 0, restarted.stderr
    fresh = tmp_path / "fresh"
    assert run(command(tiny_models, shot, fresh, "--seed", "1")).returncode == 0
    assert snapshot(out) == snapshot(fresh)


def test_damaged_or_missing_frames_are_coloured_again(tiny_models, shot, uninterrupted, tmp_path):
    out = tmp_path / "out"
    assert run(command(tiny_models, shot, out, "--previous-frame")).returncode == 0
    (out / "f03.png").write_bytes(b"truncated")
    (out / "f06.png").unlink()
    (out / ".f07.png.partial").write_bytes(b"left by a crash")
    again = run(command(tiny_models, shot, out, "--previous-frame"))
    assert again.returncode == 0, again.stderr
    written = sorted(line.rsplit(" ", 1)[1] for line in again.stderr.splitlines() if "mn_core.runner: wrote" in line)
    assert written == ["f03.png", "f06.png"]  # the chain runs on from f03; only what is missing is written
    assert snapshot(out) == uninterrupted["previous"]


def test_a_folder_of_frames_without_manifest_is_not_overwritten(tiny_models, shot, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (4, 4)).save(out / "f00.png")
    refused = run(command(tiny_models, shot, out))
    assert refused.returncode == 2 and "no manifest.json: it is not a resumable run's folder" in refused.stderr


def test_chunks_restart_from_the_keyframe_with_overlap(tmp_path):
    run_ = Run.open(tmp_path, {"x": 1}, [f"{k}.png" for k in range(10)])
    units = plan(run_, previous_frame=True, chunk=4, overlap=2)
    assert [(u.indices, u.write) for u in units] == [((0, 1, 2, 3), (0, 1, 2, 3)),
                                                    ((2, 3, 4, 5, 6, 7), (4, 5, 6, 7)),
                                                    ((6, 7, 8, 9), (8, 9))]
    run_.finished = {"4.png": "x", "5.png": "y", "0.png": "z"}
    units = plan(run_, previous_frame=True, chunk=4, overlap=2)
    assert [(u.indices, u.write, u.previous_index) for u in units] == [
        ((1, 2, 3), (1, 2, 3), 0), ((6, 7), (6, 7), 5), ((6, 7, 8, 9), (8, 9), None)]
    assert [u.indices for u in plan(run_, previous_frame=False, batch=3)] == [(1, 2, 3), (6, 7, 8), (9,)]
    assert [u.indices for u in plan(run_, previous_frame=True)] == [(1, 2, 3, 4, 5, 6, 7, 8, 9)]


def test_chunked_shot_equals_the_chains_computed_directly(tiny, tiny_models, shot, tmp_path):
    from mn_core.sequence import colorize_frame

    out = tmp_path / "out"
    done = run(command(tiny_models, shot, out, "--previous-frame", "--chunk", "3", "--overlap", "1"))
    assert done.returncode == 0, done.stderr
    frames = [Image.open(shot / "frames" / f"f{k:02d}.png") for k in range(FRAMES)]
    ref = tiny.encode_references([Image.open(shot / "ref.png")], mode="tile", size=128, seed=0)
    for start in range(0, FRAMES, 3):
        previous = None
        for index in range(max(0, start - 1), min(FRAMES, start + 3)):
            result = colorize_frame(tiny, ref, frames[index], index, previous=previous, steps=3)
            previous = result.image
            if index >= start:
                got = np.asarray(Image.open(out / f"f{index:02d}.png"))
                assert np.array_equal(got, np.asarray(result.image)), index


def test_two_runs_into_one_folder_the_second_is_refused(tiny_models, shot, tmp_path):
    out = tmp_path / "out"
    first = subprocess.Popen(command(tiny_models, shot, out, "--steps", "40"), cwd=ROOT,  # long enough to meet
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while finished_count(out) < 1 and first.poll() is None:
            time.sleep(0.02)
        second = run(command(tiny_models, shot, out))
        assert second.returncode == 2 and "another run is writing into this folder" in second.stderr
    finally:
        first.wait(timeout=300)
    assert first.returncode == 0 and finished_count(out) == FRAMES
