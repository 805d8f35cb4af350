"""Shared fixtures: the official parity fixtures, the key manifests, and tiny random checkpoints of our own.

Plain helpers live in the ``support`` package (tests/support/); this file holds only pytest fixtures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (_TESTS.parent, _TESTS):  # the repository (mn_core, nodes) and tests/ (the support package), in front
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from support import FIXTURES, KEYS, draw_samples, require  # noqa: E402
from support.fake_hub import CHUNK, NoSleepTime  # noqa: E402


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


@pytest.fixture(scope="session")
def sample_images():
    return draw_samples()


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A local fake Hugging Face hub (tests/support/fake_hub.py) that huggingface_hub talks to via HF_ENDPOINT."""
    import time

    import huggingface_hub
    from huggingface_hub import constants

    from mn_core import download as dl

    from support.fake_hub import FakeHub

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
    monkeypatch.setattr(dl, "CHUNK_BYTES", CHUNK)
    shim = NoSleepTime(time)
    monkeypatch.setattr(dl, "time", shim)  # the retry back-off and the pause between resumes are not waited for
    huggingface_hub.close_session()  # fresh client (proxy env) and no pooled connections from other tests
    fake.sleeps = shim.sleeps
    yield fake
    huggingface_hub.close_session()
    fake.stop()


# ---- the tested matrix (support/matrix.py) ---------------------------------------------------------------------
from support.matrix import Recorder  # noqa: E402

_MATRIX = Recorder()


def pytest_runtest_logreport(report):
    # a test counts once (its call, or the setup or teardown that failed); every phase's time counts (server starts)
    counted = report.when == "call" or report.outcome != "passed"
    _MATRIX.add(report.nodeid, report.outcome if counted else None, report.duration)


def pytest_sessionfinish(session):
    _MATRIX.write()
