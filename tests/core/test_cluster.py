"""The shot on a real local Ray instance (num_cpus=2, two actors on the tiny weights): one worker process is
SIGKILLed mid-run; its frames are coloured elsewhere, every frame is written exactly once, and the folder matches
the single-process run within one grey level."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from PIL import Image, ImageChops

from support import ROOT
from mn_core.runner import MANIFEST

CPU = ("--device", "cpu", "--precision", "fp32")
FRAMES = 16


@pytest.fixture(scope="module")
def shot(tmp_path_factory, sample_images):
    d = tmp_path_factory.mktemp("ray-shot")
    sample_images["reference"].save(d / "ref.png")
    (d / "frames").mkdir()
    for k in range(FRAMES):
        ImageChops.offset(sample_images["black_on_white"], k, 0).save(d / "frames" / f"f{k:02d}.png")
    return d


def command(models, shot, out, *extra):
    return [sys.executable, "-m", "mn_core", "-v", "sequence", "--models", str(models), "--reference",
            str(shot / "ref.png"), "--frames", str(shot / "frames"), "--out", str(out), "--steps", "4", "--size",
            "128", *CPU, *map(str, extra)]


def finished_count(out) -> int:
    try:
        return len(json.loads((out / MANIFEST).read_text())["frames"])
    except (OSError, ValueError, KeyError):
        return 0


def workers() -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any("ray::FrameWorker" in part for part in (p.info["cmdline"] or [])):
            found.append(p)
    return found


@pytest.mark.parametrize("extra", [(), ("--previous-frame", "--chunk", "4", "--overlap", "1")],
                         ids=["independent", "previous-frame-chunks"])
def test_a_killed_ray_worker_loses_nothing(tiny_models, shot, tmp_path, extra):
    single = tmp_path / "single"
    done = subprocess.run(command(tiny_models, shot, single, *extra), cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out, log = tmp_path / "ray", tmp_path / "ray.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(command(tiny_models, shot, out, *extra, "--ray", "local", "--ray-workers", "2"),
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        while finished_count(out) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        alive = workers()
        assert len(alive) == 2 and proc.poll() is None, log.read_text()
        os.kill(alive[0].pid, signal.SIGKILL)  # a worker dies mid-run
        killed_at = finished_count(out)
        assert proc.wait(timeout=600) == 0, log.read_text()
    assert killed_at < FRAMES  # the kill happened with work left
    text = log.read_text()
    written = [line.rsplit(" ", 1)[1] for line in text.splitlines() if "mn_core.runner: wrote" in line]
    assert sorted(written) == [f"f{k:02d}.png" for k in range(FRAMES)]  # every frame exactly once
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and len(manifest["frames"]) == FRAMES
    for k in range(FRAMES):
        a = np.asarray(Image.open(single / f"f{k:02d}.png"), np.int16)
        b = np.asarray(Image.open(out / f"f{k:02d}.png"), np.int16)
        assert np.abs(a - b).max() <= 1, k
    assert not workers()  # the local Ray instance is gone


def test_without_ray_one_line(tiny_models, shot, tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('Ray hidden by the test')\n")
    env = dict(os.environ, PYTHONPATH=str(shim.parent))
    out = subprocess.run(command(tiny_models, shot, tmp_path / "out", "--ray", "local"), cwd=ROOT,
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == ['error: --ray needs Ray: pip install ray (or pip install "comfyui-manganinja[cluster]")']
    assert not (tmp_path / "out").exists()  # refused before anything was started or written


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}", "127.0.0.1:notaport"])
def test_an_address_where_nothing_answers_is_one_line(tiny_models, shot, tmp_path, address):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = address.format(port=port)
    t0 = time.monotonic()
    out = subprocess.run(command(tiny_models, shot, tmp_path / "out", "--ray", address), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: --ray {address}: "), out.stderr
    assert ("nothing answers at 127.0.0.1:" if "notaport" not in address else "expected local, auto") in errors[0]
    assert time.monotonic() - t0 < 120  # Ray alone retries for minutes
    assert not (tmp_path / "out").exists()


def test_joining_a_running_cluster_by_its_address(tiny_models, shot, tmp_path):
    """`--ray ADDRESS`: a Ray head started with `ray start` (as a studio's cluster is), joined by the command."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_cli = [sys.executable, "-c", "from ray.scripts.scripts import main; main()"]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token")  # token auth, as Ray now defaults
    started = subprocess.run([*ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                             capture_output=True, text=True, timeout=180, env=env)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        out = tmp_path / "out"
        done = subprocess.run(command(tiny_models, shot, out, "--ray", f"127.0.0.1:{port}", "--ray-workers", "2"),
                              cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads((out / MANIFEST).read_text())["complete"]
        written = [line for line in done.stderr.splitlines() if "mn_core.runner: wrote" in line]
        assert len(written) == FRAMES
    finally:
        subprocess.run([*ray_cli, "stop", "--force"], capture_output=True, timeout=120, env=env)
