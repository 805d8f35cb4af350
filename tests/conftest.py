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
