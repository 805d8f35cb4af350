"""Run a real ComfyUI server for integration tests.

Plain functions/classes, meant to be wrapped by pytest fixtures::

    from support.comfyui_harness import comfyui_server

    with comfyui_server(tmp_path, packs={"comfyui-manganinja": REPO_ROOT},
                        models_dir=tmp_path / "models") as server:
        client = server.client
        assert "MyNode" in client.object_info()
        entry = client.run_prompt(graph, timeout=60)
        images = client.fetch_images(entry)

The client side (HTTP, websocket, /history readers) is :mod:`comfyui_client`,
re-exported here.

Which ComfyUI: ``comfyui_server(..., stack=Stack(...))`` (see :mod:`stacks`)
runs that server with its interpreter and frontend. Without a stack:

``MN_COMFYUI_DIR`` / ``MN_COMFYUI_PYTHON``
    any ComfyUI source dir and the interpreter that runs it. Default: the
    2024 server from :mod:`comfyui_setup`, in this interpreter.

The shared ComfyUI source dir is never written to by the server: each
instance is a private dir in which ComfyUI's top-level files are copied
(``folder_paths``/``main``/``server`` locate output/, input/, temp/, user/,
models/, custom_nodes/ and extra_model_paths.yaml from
``os.path.realpath(__file__)``) and its package dirs (comfy/, comfy_extras/,
web/, app/, ...) are symlinked.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

try:  # imported as support.comfyui_harness or as a top-level module
    from . import comfyui_setup
    from .comfyui_client import (ComfyUIClient, ComfyUIError, PromptExecutionError, PromptValidationError,  # noqa: F401
                                 WebSocketListener, execution_error, history_messages, history_status,
                                 output_images, was_interrupted)
except ImportError:  # pragma: no cover
    import comfyui_setup  # type: ignore[no-redef]
    from comfyui_client import (ComfyUIClient, ComfyUIError, PromptExecutionError,  # type: ignore  # noqa: F401
                                PromptValidationError, WebSocketListener, execution_error, history_messages,
                                history_status, output_images, was_interrupted)

# Entries of a ComfyUI dir that a running server writes to (or that we
# generate) and that therefore must be private to each instance.
PRIVATE_ENTRIES = {"output", "input", "temp", "user", "custom_nodes", "models", "__pycache__",
                   "extra_model_paths.yaml", "web_custom_versions"}

# model folder name -> sub dir of the models dir given to prepare_instance()
DEFAULT_MODEL_FOLDERS: dict[str, str] = {
    "manganinja": "manganinja",
    "checkpoints": "checkpoints",
    "controlnet": "controlnet",
    "clip_vision": "clip_vision",
    "vae": "vae",
    "unet": "unet",
    "diffusion_models": "diffusion_models",
    "clip": "clip",
    "text_encoders": "text_encoders",
    "annotators": "annotators",
}

# Flags added when the ComfyUI version knows them (checked in comfy/cli_args.py).
OPTIONAL_FLAGS = [
    # current ComfyUI: don't import the ~40 comfy_api_nodes modules (faster, no network code)
    "--disable-api-nodes",
]

_TRACEBACK_RE = re.compile(r"^Traceback \(most recent call last\):", re.M)


class ServerStartError(ComfyUIError):
    pass


# --------------------------------------------------------------------------------------
# locating ComfyUI
# --------------------------------------------------------------------------------------

def comfyui_source_dir() -> Path:
    """$MN_COMFYUI_DIR, else the 2024 server (downloaded/extracted on first use)."""
    env = os.environ.get("MN_COMFYUI_DIR")
    if env:
        path = Path(env).expanduser().resolve()
        if not (path / "main.py").is_file():
            raise ComfyUIError(f"MN_COMFYUI_DIR={env} has no main.py")
        return path
    return comfyui_setup.ensure_comfyui("2024", quiet=True)


def comfyui_python() -> str:
    """$MN_COMFYUI_PYTHON (a path, made absolute, or a name on PATH), else sys.executable."""
    env = os.environ.get("MN_COMFYUI_PYTHON")
    if not env:
        return sys.executable
    return os.path.abspath(env) if os.sep in env else env


def comfyui_version(source: Path) -> str:
    """'0.3.75' from comfyui_version.py; 2024 checkouts have none."""
    vf = Path(source) / "comfyui_version.py"
    if vf.is_file():
        m = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", vf.read_text())
        if m:
            return m.group(1)
    marker = Path(source) / comfyui_setup.MARKER
    if marker.is_file() and re.search(r"^server=2024$", marker.read_text(), re.M):
        return "2024-03-22+" + comfyui_setup.COMFYUI_2024_COMMIT[:8]
    return "unknown"


def supported_flags(source: Path, flags: Iterable[str]) -> list[str]:
    cli = (Path(source) / "comfy" / "cli_args.py").read_text()
    return [f for f in flags if f'"{f}"' in cli or f"'{f}'" in cli]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# private instance dir
# --------------------------------------------------------------------------------------

def write_extra_model_paths(path: Path, models_dir: Path,
                            model_folders: Mapping[str, str] = DEFAULT_MODEL_FOLDERS,
                            section: str = "mn_tests") -> Path:
    """Write an extra_model_paths.yaml mapping each folder name to models_dir/<sub>.

    Unknown folder names (e.g. ``manganinja``) are created by ComfyUI via
    folder_paths.add_model_folder_path() with an empty extension set, which
    get_filename_list() treats as "any file".
    """
    models_dir = Path(models_dir).resolve()
    lines = [f"{section}:", f"    base_path: {json.dumps(str(models_dir))}"]
    for name, sub in model_folders.items():
        (models_dir / sub).mkdir(parents=True, exist_ok=True)
        lines.append(f"    {name}: {json.dumps(sub)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare_instance(
    instance_dir: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    packs: Mapping[str, str | os.PathLike] | None = None,
    models_dir: str | os.PathLike | None = None,
    model_folders: Mapping[str, str] = DEFAULT_MODEL_FOLDERS,
    builtin_custom_nodes: bool = True,
) -> Path:
    """Create a private ComfyUI dir at instance_dir and return it.

    packs: {folder name in custom_nodes/: pack dir or .py file} (symlinked).
    models_dir: if given, extra_model_paths.yaml points model_folders there.
    builtin_custom_nodes: copy ComfyUI's own custom_nodes/*.py (e.g.
        websocket_image_save.py in 2024) like a fresh checkout would have.
    """
    src = Path(source).resolve() if source else comfyui_source_dir()
    root = Path(instance_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise ComfyUIError(f"instance dir {root} is not empty")

    for entry in sorted(src.iterdir()):
        name = entry.name
        if name in PRIVATE_ENTRIES or name.startswith(".git"):
            continue
        if entry.is_dir():
            (root / name).symlink_to(entry, target_is_directory=True)
        else:
            shutil.copy2(entry, root / name)

    if (src / "__pycache__").is_dir():  # bytecode of the copied top-level files
        shutil.copytree(src / "__pycache__", root / "__pycache__")
    for name in ("output", "temp", "user"):
        (root / name).mkdir()
    if (src / "input").is_dir():
        shutil.copytree(src / "input", root / "input", symlinks=True)
    else:
        (root / "input").mkdir()
    if (src / "models").is_dir():  # only placeholders + small yaml configs
        shutil.copytree(src / "models", root / "models", symlinks=True)
    else:
        (root / "models").mkdir()

    custom_nodes = root / "custom_nodes"
    custom_nodes.mkdir()
    if builtin_custom_nodes and (src / "custom_nodes").is_dir():
        for f in (src / "custom_nodes").iterdir():
            if f.is_file():
                shutil.copy2(f, custom_nodes / f.name)
    for name, target in (packs or {}).items():
        target = Path(target).resolve()
        if not target.exists():
            raise ComfyUIError(f"pack {name}: {target} does not exist")
        (custom_nodes / name).symlink_to(target, target_is_directory=target.is_dir())

    if models_dir is not None:
        write_extra_model_paths(root / "extra_model_paths.yaml", Path(models_dir), model_folders)
    return root


# --------------------------------------------------------------------------------------
# server process
# --------------------------------------------------------------------------------------

try:  # loaded in the parent: the preexec_fn below must not take locks after fork()
    _LIBC = ctypes.CDLL("libc.so.6", use_errno=True) if sys.platform.startswith("linux") else None
except OSError:  # pragma: no cover
    _LIBC = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: SIGTERM the server if the test process dies without teardown."""
    _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def find_tracebacks(text: str, context: int = 40) -> list[str]:
    """Each 'Traceback (most recent call last):' block (up to `context` lines), except ComfyUI's own failed imports
    of its comfy_extras modules that need a package this environment cannot have (comfyui_setup.UNAVAILABLE)."""
    lines = text.splitlines()
    blocks = ["\n".join(lines[i:i + context]) for i, line in enumerate(lines) if _TRACEBACK_RE.match(line)]
    return [b for b in blocks if not _unavailable_module(b)]


def failed_imports(text: str) -> list[str]:
    """The module paths ComfyUI could not import ("Cannot import <path> module for custom nodes: <why>"), except
    its own modules that need an unavailable package (comfyui_setup.UNAVAILABLE)."""
    out = []
    for m in re.finditer(r"Cannot import (\S+) module for custom nodes: (.*)", text):
        why = re.match(r"No module named '([^'.]+)", m.group(2))
        if not (why and why.group(1) in comfyui_setup.UNAVAILABLE and "/custom_nodes/" not in m.group(1)):
            out.append(f"{m.group(1)}: {m.group(2)}")
    return out


def _unavailable_module(block: str) -> bool:
    """A failed import of an unavailable module, with no frame in custom_nodes (so not in any pack)."""
    frames, error = [], ""
    for line in block.splitlines()[1:]:
        if line.startswith("  File "):
            frames.append(line)
        elif not line.startswith(" "):
            error = line
            break
    missing = re.match(r"ModuleNotFoundError: No module named '([^'.]+)", error)
    return bool(missing and missing.group(1) in comfyui_setup.UNAVAILABLE
                and not any("/custom_nodes/" in f for f in frames))


class ComfyUIServer:
    """One `python main.py --cpu ...` process running in a prepared instance dir."""

    def __init__(self, instance_dir: str | os.PathLike, *, python: str | None = None,
                 port: int | None = None, extra_args: Iterable[str] = (),
                 env: Mapping[str, str] | None = None, log_path: str | os.PathLike | None = None,
                 stack=None):
        self.instance_dir = Path(instance_dir)
        self.python = python or comfyui_python()
        self.port = port
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.log_path = Path(log_path) if log_path else self.instance_dir / "comfyui.log"
        self.proc: subprocess.Popen | None = None
        self._log_fh = None
        self.startup_seconds: float | None = None
        self.version = comfyui_version(self.instance_dir)
        self.stack = stack  # the stacks.Stack it runs, if it was started from one

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def client(self) -> ComfyUIClient:
        return ComfyUIClient(self.base_url)

    def command(self) -> list[str]:
        args = [self.python, "-u", "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                "--disable-auto-launch"]
        args += supported_flags(self.instance_dir, OPTIONAL_FLAGS)
        return args + self.extra_args

    def start(self, timeout: float = 120.0, retries: int = 3) -> "ComfyUIServer":
        fixed_port = self.port is not None
        for attempt in range(retries):
            if not fixed_port:
                self.port = free_port()
            try:
                self._start_once(timeout)
                return self
            except ServerStartError:
                port_clash = "address already in use" in self.read_log().lower()
                self.stop()
                if fixed_port or not port_clash or attempt == retries - 1:
                    raise
        return self

    def _start_once(self, timeout: float) -> None:
        env = dict(os.environ)
        env.update({"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "DO_NOT_TRACK": "1",
                    "TQDM_DISABLE": "1"})
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fh = open(self.log_path, "ab")
        self._log_fh.write(f"### {' '.join(self.command())}\n".encode())
        self._log_fh.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(), cwd=self.instance_dir, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_fh, stderr=subprocess.STDOUT,
            start_new_session=True,  # keep terminal Ctrl-C for pytest; teardown stops us
            preexec_fn=_die_with_parent if _LIBC is not None else None,
        )
        client = ComfyUIClient(self.base_url)
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerStartError(f"ComfyUI exited with {self.proc.returncode} during startup\n"
                                       f"--- {self.log_path} (tail) ---\n{self.log_tail()}")
            if client.is_up():
                self.startup_seconds = time.monotonic() - t0
                return
            if time.monotonic() > deadline:
                raise ServerStartError(f"ComfyUI did not answer within {timeout}s\n"
                                       f"--- {self.log_path} (tail) ---\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 10.0) -> int | None:
        """terminate(), then kill() after timeout; returns the exit code."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
            rc = self.proc.returncode
            self.proc = None
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        return rc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def read_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.read_log().splitlines()[-lines:])

    def tracebacks(self) -> list[str]:
        return find_tracebacks(self.read_log())

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match:
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.read_log())
            if m:
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pattern!r} not in log after {timeout}s\n{self.log_tail()}")
            time.sleep(0.1)

    @property
    def output_dir(self) -> Path:
        return self.instance_dir / "output"

    @property
    def input_dir(self) -> Path:
        return self.instance_dir / "input"

    def __enter__(self) -> "ComfyUIServer":
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def comfyui_server(
    base_dir: str | os.PathLike,
    *,
    packs: Mapping[str, str | os.PathLike] | None = None,
    models_dir: str | os.PathLike | None = None,
    model_folders: Mapping[str, str] = DEFAULT_MODEL_FOLDERS,
    source: str | os.PathLike | None = None,
    python: str | None = None,
    extra_args: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 120.0,
    stack=None,
) -> Iterator[ComfyUIServer]:
    """prepare_instance(base_dir/'comfyui') + start; stops on exit.

    The log is base_dir/'comfyui.log' (outside the instance dir). ``stack`` (a :class:`stacks.Stack`) gives the
    source, interpreter and frontend.
    """
    base = Path(base_dir)
    if stack is not None:
        source, python = source or stack.source(), python or stack.python()
        extra_args = list(stack.server_args()) + list(extra_args)
    root = prepare_instance(base / "comfyui", source=source, packs=packs, models_dir=models_dir,
                            model_folders=model_folders)
    server = ComfyUIServer(root, python=python, extra_args=extra_args, env=env,
                           log_path=base / "comfyui.log", stack=stack)
    try:
        server.start(timeout=startup_timeout)
        yield server
    finally:
        server.stop()
