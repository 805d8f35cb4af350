"""Where things are: the repository, the shared MangaNinja test material, and loading a file as a module."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

SHARED = ROOT.parent / "shared" / "manganinja"
FIXTURES = Path(os.environ.get("MN_FIXTURES", SHARED / "fixtures"))
KEYS = Path(os.environ.get("MN_KEYS", SHARED / "keys"))


def fixture_cases() -> list[Path]:
    return sorted(p.parent for p in FIXTURES.glob("cases/*/case.json"))


def require(path: Path, what: str, env: str) -> Path:
    """Fail (never skip) when shared test material is absent, saying where it must be."""
    import pytest

    if not path.exists():
        pytest.fail(f"{what} not found at {path}. Put the shared MangaNinja material there "
                    f"(../shared/manganinja beside the repository) or set {env} to its location.")
    return path


def load_module(path: Path, name: str) -> ModuleType:
    """Import a script that is not in a package (e.g. workflows/build.py) under ``name``, once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before exec: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
