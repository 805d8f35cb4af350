"""A shot run unattended: resumable after a crash, with nothing lost or done twice.

The output folder holds the coloured frames and ``manifest.json``: the run's settings (and their hash: the inputs,
references, models and options) and every finished frame with the SHA-256 of its file. Each frame is written
atomically (encoded in memory, written to ``.<name>.partial``, flushed to disk, renamed into place), then the
manifest is rewritten the same way. So after a crash at any moment the folder holds whole frames only; running the
same command again checks the finished frames against their checksums, deletes leftover partial files, and colours
only what is missing. In previous-frame mode the previous frame is read back from its file (PNG is lossless: the
same pixels as in memory). The finished folder is byte for byte the same as an uninterrupted run's.

The work is cut into *units*, each coloured by one call of :func:`colour_unit` (in this process, or on a Ray actor,
see :mod:`mn_core.cluster`): independent frames in batches; in previous-frame mode, chunks of the shot. With
``chunk`` 0 the whole shot is one chain. With ``chunk`` L each chunk of L frames restarts from the keyframe
``overlap`` frames before its first frame (those frames are coloured to warm the chain up and not written), as
LVCD does for long clips: chunks can then run on different machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

MANIFEST = "manifest.json"
FORMAT = 1
log = logging.getLogger(__name__)


class ResumeError(ValueError):
    """The output folder belongs to a run with other settings (or is not a run's folder)."""


def digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def models_identity(root: Path) -> str:
    """A hash of a model folder: every file's relative path and size, and the SHA-256 of its first and last MiB
    (reading 10 GB of weights at every start would take minutes; a changed checkpoint changes these)."""
    h = hashlib.sha256()
    root = Path(root)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        h.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(-(1 << 20), os.SEEK_END)
                h.update(f.read(1 << 20))
    return h.hexdigest()


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@contextlib.contextmanager
def atomic_file(path: Path):
    """A binary file to write that appears at ``path`` only whole: a hidden temporary file, flushed to disk,
    renamed into place when the block ends (and removed if it fails)."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` into ``path``, never partially (:func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


_LOCKS: dict[str, int] = {}  # folder -> open descriptor holding its lock, for the life of the process


def _lock(out: Path) -> None:
    """One run per folder: an exclusive lock on the folder itself (released when the process ends, however)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock
        return
    key = str(out.resolve())
    if key in _LOCKS:
        return
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ResumeError(f"--out {out}: another run is writing into this folder; wait for it to end (or stop it) "
                          f"and run the command again") from None
    _LOCKS[key] = fd


def settings_digest(settings: dict) -> str:
    return digest_bytes(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode())


@dataclass
class Run:
    """The output folder of one shot: which frames are finished, and the writer of the others."""

    out: Path
    settings: dict
    names: list[str]                       # output file name of every frame, by index
    finished: dict[str, str] = field(default_factory=dict)  # name -> sha256 of its file

    @classmethod
    def open(cls, out: Path, settings: dict, names: list[str], *, restart: bool = False) -> "Run":
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        _lock(out)
        for stale in out.glob(".*.partial"):  # what a crash left mid-write
            stale.unlink()
        run = cls(out, settings, list(names))
        path = out / MANIFEST
        if not path.exists():
            others = [p.name for p in out.iterdir() if p.name in set(names)]
            if others and not restart:
                raise ResumeError(f"--out {out}: holds frames ({others[0]}, ...) but no {MANIFEST}: it is not a "
                                  f"resumable run's folder; choose an empty folder, or pass --restart to overwrite")
            return run
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ResumeError(f"--out {out}: {MANIFEST} is unreadable ({e}); pass --restart to start over") from None
        if old.get("settings_sha256") != settings_digest(settings):
            if not restart:
                changed = sorted(k for k in set(old.get("settings", {})) | set(settings)
                                 if old.get("settings", {}).get(k) != settings.get(k))
                raise ResumeError(f"--out {out}: was started with other settings (different: "
                                  f"{', '.join(changed) or 'format'}); run the original command to resume, choose "
                                  f"another folder, or pass --restart to colour it again from the start")
            for name in old.get("frames", {}):
                (out / name).unlink(missing_ok=True)
            path.unlink()
            return run
        for name, info in old.get("frames", {}).items():
            file = out / name
            if name in run.names and file.is_file() and digest_file(file) == info.get("sha256"):
                run.finished[name] = info["sha256"]
        return run

    def done(self, index: int) -> bool:
        return self.names[index] in self.finished

    def missing(self) -> list[int]:
        return [i for i in range(len(self.names)) if not self.done(i)]

    def record(self, index: int, data: bytes) -> None:
        """Write frame ``index`` (PNG bytes) and then the manifest, each atomically."""
        name = self.names[index]
        write_atomic(self.out / name, data)
        self.finished[name] = digest_bytes(data)
        self.save()
        log.info("wrote %s", name)

    def read(self, index: int) -> Image.Image:
        """A finished frame, read back from its file (checked against its checksum)."""
        path = self.out / self.names[index]
        data = path.read_bytes()
        if digest_bytes(data) != self.finished.get(self.names[index]):
            raise ResumeError(f"{path}: changed on disk since it was written; pass --restart to start over")
        image = Image.open(io.BytesIO(data))
        image.load()
        return image

    def save(self) -> None:
        frames = {name: {"index": i, "sha256": self.finished[name]} for i, name in enumerate(self.names)
                  if name in self.finished}
        doc = {"format": FORMAT, "settings_sha256": settings_digest(self.settings), "settings": self.settings,
               "total": len(self.names), "complete": len(frames) == len(self.names), "frames": frames}
        write_atomic(self.out / MANIFEST, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


# --------------------------------------------------------------------------------------------------------------
# units of work


@dataclass(frozen=True)
class Unit:
    """Frames coloured by one call: ``indices`` in order; ``write`` those written (the others warm a chain up);
    ``chain``: each frame uses the coloured frame before it (the first one: ``previous``, or none)."""

    indices: tuple[int, ...]
    write: tuple[int, ...]
    chain: bool
    previous_index: int | None = None  # a finished frame read back from disk as the first frame's previous


def plan(run: Run, *, previous_frame: bool, batch: int = 1, chunk: int = 0, overlap: int = 2) -> list[Unit]:
    """The units still to do. Independent frames: the missing ones, ``batch`` per unit. Previous-frame mode: per
    chunk (``chunk`` 0: the whole shot), from its first missing frame on."""
    n = len(run.names)
    missing = run.missing()
    if not previous_frame:
        return [Unit(tuple(missing[k:k + batch]), tuple(missing[k:k + batch]), False)
                for k in range(0, len(missing), batch)]
    if chunk < 0 or overlap < 0:
        raise ValueError(f"chunk and overlap must be >= 0, got {chunk} and {overlap}")
    size = chunk or n
    units = []
    for start in range(0, n, size):
        end = min(n, start + size)
        todo = [i for i in range(start, end) if not run.done(i)]
        if not todo:
            continue
        first = todo[0]
        if first > start:  # resume inside the chunk: from the finished frame before it, read back
            units.append(Unit(tuple(range(first, end)), tuple(i for i in range(first, end) if not run.done(i)),
                              True, previous_index=first - 1))
        else:
            warm = max(0, start - overlap) if chunk else start
            units.append(Unit(tuple(range(warm, end)), tuple(todo), True))
    return units


def colour_unit(mn, reference, unit: Unit, lineart_of, previous: Image.Image | None, options: dict):
    """Colour one unit; yields (index, PNG bytes) of each frame to write, in order. ``lineart_of(index)``: the
    frame's line art; ``options``: points, steps, guidance_ref, guidance_point, seed, same_noise, polarity."""
    from .sequence import colorize_frame, colorize_frames

    if not unit.chain:
        results = colorize_frames(mn, reference, [(i, lineart_of(i)) for i in unit.indices], **options)
        for index, result in zip(unit.indices, results):
            yield index, png_bytes(result.image)
        return
    write = set(unit.write)
    for index in unit.indices:
        result = colorize_frame(mn, reference, lineart_of(index), index, previous=previous, **options)
        previous = result.image
        if index in write:
            yield index, png_bytes(result.image)
