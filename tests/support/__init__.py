"""Plain helpers shared by the tests (pytest fixtures stay in tests/conftest.py).

Imported as ``support`` (``from support import ROOT``, ``from support import comfyui_harness as ch``):
tests/conftest.py puts tests/ first on ``sys.path``. Not ``tests.support``: the 2024 ComfyUI that some tests put
on ``sys.path`` has a ``tests`` package of its own, and the repository folder need not be a valid package name.
"""

from .paths import FIXTURES, KEYS, ROOT, SHARED, TESTS, fixture_cases, load_module, require
from .samples import draw_samples

__all__ = ["FIXTURES", "KEYS", "ROOT", "SHARED", "TESTS", "draw_samples", "fixture_cases", "load_module", "require"]
