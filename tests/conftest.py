"""Shared fixtures: the official parity fixtures, the key manifests, and tiny random checkpoints of our own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared" / "manganinja"
FIXTURES = Path(os.environ.get("MN_FIXTURES", SHARED / "fixtures"))
KEYS = Path(os.environ.get("MN_KEYS", SHARED / "keys"))


CHUNK = 4096  # huggingface_hub's write/progress granularity with the fake hub (10 MiB by default)


def fixture_cases() -> list[Path]:
    return sorted(p.parent for p in FIXTURES.glob("cases/*/case.json"))


def require(path: Path, what: str, env: str) -> Path:
    """Fail (never skip) when shared test material is absent, saying where it must be."""
    if not path.exists():
        pytest.fail(f"{what} not found at {path}. Put the shared MangaNinja material there "
                    f"(../shared/manganinja beside the repository) or set {env} to its location.")
    return path


@pytest.fixture(scope="session")
def keys_dir() -> Path:
    return require(KEYS / "sd15_configs.json", "key manifests (sd15_configs.json)", "MN_KEYS").parent


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return require(FIXTURES / "weights", "parity fixtures", "MN_FIXTURES").parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    """A complete official-layout folder with tiny random weights (our own generator)."""
    from mn_core import synthetic

    return synthetic.write_layout(tmp_path_factory.mktemp("tiny-models"), synthetic.TINY, seed=0)


@pytest.fixture(scope="session")
def tiny(tiny_models):
    """A MangaNinja pipeline on the tiny weights (CPU, float32). Tests must not mutate it."""
    from mn_core import MangaNinja

    return MangaNinja.from_folder(tiny_models, device="cpu", precision="fp32")


def draw_samples():
    """A reference (160x120), and line art of the same character (96x140) in both polarities."""
    import numpy as np
    from PIL import Image, ImageDraw

    ref = Image.new("RGB", (160, 120), "white")
    d = ImageDraw.Draw(ref)
    d.ellipse((40, 10, 120, 90), fill=(230, 90, 60), outline=(20, 20, 20), width=3)
    d.rectangle((60, 80, 100, 118), fill=(40, 80, 200), outline=(20, 20, 20), width=3)
    line = Image.new("L", (96, 140), 255)
    d = ImageDraw.Draw(line)
    d.ellipse((10, 10, 86, 80), outline=0, width=3)
    d.rectangle((28, 78, 68, 136), outline=0, width=3)
    return {"reference": ref, "black_on_white": line, "white_on_black": Image.fromarray(255 - np.asarray(line))}


@pytest.fixture(scope="session")
def sample_images():
    return draw_samples()


class _NoSleepTime:
    """Stands in for the ``time`` module inside huggingface_hub so its retry back-off does not wait."""

    def __init__(self, real):
        self._real = real
        self.sleeps: list[float] = []

    def sleep(self, s):
        self.sleeps.append(s)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A local fake Hugging Face hub (tests/fake_hub.py) that huggingface_hub talks to via HF_ENDPOINT."""
    import time

    import huggingface_hub
    import huggingface_hub.file_download as fd
    import huggingface_hub.utils._http as hf_http
    from huggingface_hub import constants

    from fake_hub import FakeHub

    fake = FakeHub().start()
    # Set HF_ENDPOINT only in the environment: huggingface_hub read it once at import (constants.ENDPOINT), so
    # this also checks that download() reads it at call time.
    monkeypatch.setenv("HF_ENDPOINT", fake.endpoint)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)  # never send a real stored login
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # never copy from the user's cache
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)
    shim = _NoSleepTime(time)
    monkeypatch.setattr(fd, "time", shim)
    monkeypatch.setattr(hf_http, "time", shim)
    huggingface_hub.close_session()  # fresh client (proxy env) and no pooled connections from other tests
    fake.sleeps = shim.sleeps
    yield fake
    huggingface_hub.close_session()
    fake.stop()


