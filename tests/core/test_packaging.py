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


def test_readme_matrix_covers_every_stack():
    """The README's tested matrix (tests/support/matrix.py) has a row for every stack the suite runs on."""
    from support.matrix import END, START, STACK_IDS
    from support.stacks import API_STACKS, BROWSER_STACKS

    readme = (ROOT / "README.md").read_text()
    rows = [line for line in readme[readme.index(START):readme.index(END)].splitlines() if line.startswith("| ")][1:]
    seen = {(r.split("|")[1].strip(), r.split("|")[2].strip(), r.split("|")[3].strip(), r.split("|")[4].strip())
            for r in rows}
    for kind, stacks in (("api", API_STACKS), ("browser", BROWSER_STACKS)):
        for s in stacks:
            front = s.frontend or ("its own (web/ of 2024)" if s.server == "2024" else "its own (1.32.9)")
            assert (kind, f"ComfyUI {s.server}", front, "Nodes 2.0" if s.vue else "classic") in seen, (kind, s.id)
    assert all(r.split("|")[7].strip() == "0" for r in rows), "the README's matrix records failures"
    assert "0.3.75" in STACK_IDS
