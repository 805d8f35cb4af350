"""Install the pack the way most users do: ComfyUI-Manager's cm-cli, from a git URL, into a fresh ComfyUI 0.3.75.

The project (what `git ls-files` holds, as it would be pushed) is committed into a throwaway repository and served
read-only over HTTP on 127.0.0.1 (git's "dumb" HTTP protocol), so nothing leaves this machine. cm-cli clones it into
custom_nodes/ and installs its requirements.txt into the server's venv; then:
- no installed package is broken (`pip check`), and none of ComfyUI's own requirements changed version;
- the server starts, registers the pack's nodes and logs no traceback from the pack.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from support import ROOT, comfyui_harness as ch, comfyui_setup
from support.stacks import Stack, selected

STACK = Stack("0.3.75")
PACK = "comfyui-manganinja"
NODES = {"MangaNinjaLoader", "MangaNinjaExtractLineart", "MangaNinjaPointEditor", "MangaNinjaReferenceEncode",
         "MangaNinjaColorizeSampler", "MangaNinjaColorizationMetrics", "MangaNinjaFinishPage",
         "MangaNinjaSaveLayers"}


def publish(tmp: Path) -> Path:
    """A bare repository with one commit of the project's files, ready for dumb HTTP."""
    work = tmp / "src" / PACK
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@127.0.0.1", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q"], cwd=work, check=True)
    subprocess.run(git + ["add", "-A"], cwd=work, check=True)
    subprocess.run(git + ["commit", "-qm", "release"], cwd=work, check=True)
    bare = tmp / "served" / f"{PACK}.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "update-server-info"], cwd=bare, check=True)
    return bare.parent


def versions(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
                         capture_output=True, text=True, check=True).stdout
    return {comfyui_setup.requirement_name(p["name"]): p["version"] for p in json.loads(out)}


@pytest.mark.skipif(STACK not in selected([STACK]), reason="MN_STACKS leaves out ComfyUI 0.3.75")
def test_manager_installs_the_pack_from_git(tmp_path):
    cli = comfyui_setup.ensure_manager(STACK.server, quiet=True)
    python = STACK.python()
    served = publish(tmp_path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        root = ch.prepare_instance(tmp_path / "comfyui", source=STACK.source())
        comfy_reqs = [comfyui_setup.requirement_name(r) for r in comfyui_setup.server_requirements(root)]
        before = versions(python)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/{PACK}.git"
        run = subprocess.run([str(cli), "install", url, "--mode", "local", "--exit-on-fail"],
                             env=dict(os.environ, COMFYUI_PATH=str(root)), capture_output=True, text=True,
                             timeout=600)
        log = run.stdout + run.stderr
        assert run.returncode == 0 and "[INSTALLED]" in log, log[-4000:]
    finally:
        httpd.shutdown()
    installed = root / "custom_nodes" / PACK
    assert (installed / "__init__.py").is_file() and (installed / ".git").is_dir()
    assert "Installation was successful" in log, log[-4000:]

    check = subprocess.run([python, "-m", "pip", "check", "--disable-pip-version-check"], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    after = versions(python)
    changed = {name: (before.get(name), after.get(name)) for name in comfy_reqs if before.get(name) != after.get(name)}
    assert not changed, f"installing the pack changed ComfyUI's requirements: {changed}"

    server = ch.ComfyUIServer(root, python=python, log_path=tmp_path / "comfyui.log")
    with server:
        info = server.client.object_info()
        assert NODES <= set(info), sorted(NODES - set(info))
        assert f"custom_nodes/{PACK}" in server.read_log()
    assert not ch.failed_imports(server.read_log()), ch.failed_imports(server.read_log())
    assert not [t for t in server.tracebacks() if PACK in t], server.tracebacks()
