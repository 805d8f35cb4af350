"""What the Comfy Registry and ComfyUI-Manager read from pyproject.toml, and what the pack ships beside it."""

import re
import tomllib

from support import ROOT


def test_registry_fields_are_complete():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    comfy, meta = project["tool"]["comfy"], project["project"]
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert comfy.get(key), f"[tool.comfy] {key} is missing"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", comfy["PublisherId"])
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", meta["version"]), "the registry needs a semver version"
    assert meta["urls"]["Repository"].startswith("https://")
    assert comfy["Icon"].endswith("/js/icon.png") and (ROOT / "js" / "icon.png").is_file()
    # the requirements ComfyUI-Manager installs are the project's dependencies
    listed = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == meta["dependencies"]
    readme = (ROOT / "README.md").read_text()
    assert comfy["PublisherId"] in readme and "placeholders" in readme
