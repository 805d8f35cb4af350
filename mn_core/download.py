"""Fetch missing checkpoint files from the Hugging Face hub into the official folder layout.

Nothing here runs at import time, and ``huggingface_hub`` is only imported when a download is really made.

For each missing file of :mod:`mn_core.layout`:

1. ``HEAD <endpoint>/<repo>/resolve/main/<file>`` through ``huggingface_hub.get_hf_file_metadata`` (its headers,
   token handling and error types: repo not found, gated, entry not found): the file's size, its etag (the sha256
   of an LFS file, the git blob sha1 of a small file kept in git) and where to GET it (the CDN an LFS file
   redirects to). A network error, 429 or 5xx is retried after 1, 2, 4, 8 and 8 s.
2. ``GET`` into ``<root>/.mn_download/<path>.part``, resuming with ``Range: bytes=N-`` from the bytes an earlier
   call or run left there (a ``.part.json`` beside it holds the size and etag they belong to: a file changed on the
   hub starts over). A cut transfer is resumed at once, up to 5 times in a row without progress, 1 s apart; then
   the call fails and the bytes stay for the next run. The token goes to the hub's origin only, never to the CDN.
3. The finished bytes are checked against the hub's size and checksum; a mismatch deletes them. Only then is the
   file moved to exactly ``<root>/<path>`` (one rename), and its size and checksum are recorded in
   ``<root>/.mn_download/verified.json``: :func:`check_sizes` (at every load) finds a file that was cut short or
   overwritten since, :func:`verify` re-reads every file against the checksums.

The loader only ever looks at the layout's paths, so a half-downloaded file is never taken for a weight file. The
free disk space is checked before a transfer starts, and a disk that fills up during it stops the download with
the bytes so far kept. A ``filelock`` on the partial file keeps two processes from writing it at once.

The endpoint is, in order: the ``endpoint`` argument, the ``HF_ENDPOINT`` environment variable *as it is when
:func:`download` is called* (huggingface_hub itself reads it once, at its import), huggingface_hub's default.
``HF_HUB_OFFLINE``, ``HF_TOKEN``/the stored login, ``HTTPS_PROXY`` and ``HF_HUB_DOWNLOAD_TIMEOUT`` are honoured.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote, urlsplit

from .layout import BY_ROLE, FILES, LayoutFile

logger = logging.getLogger("mn_core.download")

ProgressCallback = Callable[[str, int, int], None]
"""``progress(role, done_bytes, total_bytes)``; ``total_bytes`` is 0 when not known."""

_TRUE = {"1", "ON", "YES", "TRUE"}
_DEFAULT_ENDPOINT = "https://huggingface.co"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
PARTIAL_DIR = ".mn_download"  # under the checkpoint folder: bytes of unfinished downloads, the verified record
HEAD_BACKOFF = (1, 2, 4, 8, 8)  # seconds between the tries of a HEAD that failed with the network or 5xx
RESUMES = 5  # resumes in a row without a new byte before a transfer is given up (the bytes stay for the next run)
CHUNK_BYTES = 1 << 20  # read and progress granularity
_DISK_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EACCES", "EROFS", "EPERM") if hasattr(errno, n)}


class DownloadError(RuntimeError):
    """A layout file could not be downloaded.

    The message names the role, repo, file, URL and cause, and says how to fix it. ``reason`` is a short code:
    ``not_found`` (file not in the repo), ``repo_not_found``, ``gated``, ``auth``, ``offline``, ``network``,
    ``http`` (another HTTP error status), ``incomplete`` (transfer kept being cut or came back short),
    ``checksum`` (complete, but not the hub's size or checksum), ``disk`` (local disk full / not writable) or
    ``other``. ``cause`` is the one-line exception chain; ``url``,
    ``endpoint`` and ``dest`` (the final path, never left half-written) are there for UIs.
    """

    def __init__(self, message: str, *, role: str, repo: str, filename: str, url: str, endpoint: str,
                 dest: Path, reason: str, cause: str = ""):
        super().__init__(message)
        self.cause = cause
        self.role = role
        self.repo = repo
        self.filename = filename
        self.url = url
        self.endpoint = endpoint
        self.dest = dest
        self.reason = reason


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The hub endpoint a download will use: ``endpoint``, else ``$HF_ENDPOINT``, else huggingface_hub's default."""
    if endpoint:
        return endpoint.rstrip("/")
    env = os.environ.get("HF_ENDPOINT")
    if env:
        return env.rstrip("/")
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT.rstrip("/")
    except Exception:  # pragma: no cover - huggingface_hub missing or broken
        return _DEFAULT_ENDPOINT


def file_url(role: str | LayoutFile, endpoint: str | None = None) -> str:
    """The ``.../resolve/main/...`` URL of a layout file (what a browser or ``wget`` can fetch by hand)."""
    lf = BY_ROLE[role] if isinstance(role, str) else role
    return f"{resolve_endpoint(endpoint)}/{lf.repo}/resolve/main/{quote(lf.repo_file)}"


def offline_mode() -> bool:
    """Whether hub downloads are disabled (``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` now or at hub import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").upper() in _TRUE:
            return True
    try:
        from huggingface_hub import constants

        return bool(constants.is_offline_mode())
    except Exception:  # pragma: no cover
        return False


def download(
    root: str | Path,
    roles: Iterable[str | LayoutFile] | None = None,
    *,
    progress: ProgressCallback | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> dict[str, Path]:
    """Make sure the files of ``roles`` exist under ``root``, downloading the missing ones; return their paths.

    ``roles`` defaults to every role except the base-only weights (see :func:`mn_core.layout.missing`); a
    :class:`~mn_core.layout.LayoutFile` may stand for a role (the metric networks, :mod:`mn_core.metric_nets`, are
    described that way and are not roles of the model layout). Files
    already present (under their main name or an accepted alternative, see ``LayoutFile.find``) are not fetched
    again. Missing files are fetched one after the other, each to exactly ``<root>/<path>``.

    ``progress(role, done_bytes, total_bytes)`` is called with ``(0, approx_bytes)`` when a file starts, as its
    bytes are written (every ``CHUNK_BYTES``, with the true size as total; a resumed file starts at the bytes it
    already had), and with ``(size, size)`` when it is done; a file already present gets one ``(size, size)``
    call. If it raises (e.g. to cancel from a UI), the download stops, the bytes so far stay for the next call and
    the exception propagates unchanged. Counts only go up except in one case: if a server answers a resume request
    with the whole file, the count drops back to 0.

    ``token``: a hub token, ``True`` to require the stored login, ``False`` to send none, ``None`` (default) to
    send the stored login / ``$HF_TOKEN`` if any. ``endpoint`` overrides ``$HF_ENDPOINT`` for this call.

    Raises :class:`DownloadError` (a ``RuntimeError``) for the first file that fails; files finished before it stay.
    """
    root = Path(root)
    wanted = _select(roles)
    result: dict[str, Path] = {}
    todo: list[LayoutFile] = []
    for lf in wanted:
        found = lf.find(root)
        if found is not None:
            logger.debug("%s already present at %s", lf.role, found)
            result[lf.role] = found
            if progress is not None:
                size = found.stat().st_size
                progress(lf.role, size, size)
        else:
            todo.append(lf)
    if not todo:
        return result

    ep = resolve_endpoint(endpoint)
    if offline_mode():
        raise _offline_error(root, todo, ep)

    for lf in todo:
        # One download per destination at a time in this process; a concurrent caller may have just finished it.
        with _lock_for(root / lf.path):
            found = lf.find(root)
            if found is not None:
                result[lf.role] = found
                if progress is not None:
                    size = found.stat().st_size
                    progress(lf.role, size, size)
                continue
            result[lf.role] = _download_one(root, lf, progress=progress, endpoint=ep, token=token)
    return result


def _lock_for(dest: Path) -> threading.Lock:
    key = os.path.normcase(os.path.abspath(dest))
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(key, threading.Lock())


def _select(roles: Iterable[str | LayoutFile] | None) -> list[LayoutFile]:
    if roles is None:
        return [f for f in FILES if not f.base_only]
    if isinstance(roles, (str, LayoutFile)):
        roles = [roles]
    out: list[LayoutFile] = []
    for role in roles:
        if isinstance(role, LayoutFile):
            if role not in out:
                out.append(role)
            continue
        if role not in BY_ROLE:
            raise ValueError(f"Unknown checkpoint role {role!r}; known roles: {', '.join(BY_ROLE)}")
        if BY_ROLE[role] not in out:
            out.append(BY_ROLE[role])
    return out


class _Reporter:
    """Forwards byte counts of one file to the user's callback and remembers an exception the callback raised."""

    def __init__(self, role: str, callback: ProgressCallback | None):
        self.role = role
        self.callback = callback
        self.callback_error: BaseException | None = None
        self._last: tuple[int, int] | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.callback is None:
            return
        now = (int(done), int(total or 0))
        if now == self._last:
            return
        self._last = now
        try:
            self.callback(self.role, *now)
        except BaseException as exc:
            self.callback_error = exc
            raise


class _Metadata:
    """What the hub's ``HEAD`` says about a file: where to GET it, its size and its checksum (etag)."""

    def __init__(self, location: str, size: int | None, etag: str | None, commit: str | None):
        self.location, self.size, self.etag, self.commit = location, size, etag, commit

    @property
    def digest(self) -> tuple[str, str] | None:
        """``("sha256", hex)`` for LFS files, ``("git-sha1", hex)`` for files kept in git, None if not a checksum."""
        tag = (self.etag or "").lower()
        if re.fullmatch(r"[0-9a-f]{64}", tag):
            return "sha256", tag
        if re.fullmatch(r"[0-9a-f]{40}", tag):
            return "git-sha1", tag
        return None


def _retryable(exc: BaseException) -> bool:
    """A failed HEAD worth retrying: the network, a timeout, HTTP 429 or 5xx."""
    for e in _chain(exc):
        status = _status(e)
        if status is not None:
            return status == 429 or status >= 500
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if {c.__name__ for c in type(e).__mro__} & {"TransportError", "NetworkError", "TimeoutException",
                                                   "ConnectionError", "Timeout"}:
            return True
    return False


def _metadata(url: str, token, endpoint: str) -> _Metadata:
    """``HEAD`` through huggingface_hub (its headers, token and hub error types), with our own back-off."""
    import inspect

    from huggingface_hub import get_hf_file_metadata

    params = inspect.signature(get_hf_file_metadata).parameters
    extra = {k: v for k, v in (("endpoint", endpoint), ("retry_on_errors", False)) if k in params}
    for attempt, pause in enumerate((*HEAD_BACKOFF, None)):
        try:
            m = get_hf_file_metadata(url, token=token, **extra)
            return _Metadata(m.location, m.size, m.etag, m.commit_hash)
        except Exception as exc:
            if pause is None or not _retryable(exc):
                raise
            logger.warning("Asking %s failed (%s); retrying in %s s", url, _describe_cause(_chain(exc)), pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


class _Partial:
    """The bytes received so far for one layout file, kept across runs under ``<root>/.mn_download/``.

    ``<path>.part`` holds the bytes, ``<path>.part.json`` the hub's size and etag they belong to (a file changed
    upstream starts over), ``<path>.part.lock`` keeps two processes from writing it at once. The loader only looks at
    the layout's own paths, so nothing here is ever taken for a weight file.
    """

    def __init__(self, root: Path, lf: LayoutFile):
        base = root / PARTIAL_DIR / lf.path
        self.path = base.with_name(base.name + ".part")
        self.info = base.with_name(base.name + ".part.json")
        self.lock = base.with_name(base.name + ".part.lock")

    def resume_from(self, meta: _Metadata) -> int:
        """Bytes already here for this exact file (same size and etag on the hub), else 0 (and they are dropped)."""
        want = {"size": meta.size, "etag": meta.etag}
        try:
            have = json.loads(self.info.read_text(encoding="utf-8"))
            size = self.path.stat().st_size
        except (OSError, ValueError):
            have, size = None, 0
        if have == want and meta.size is not None and size <= meta.size:
            return size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self.info.write_text(json.dumps(want), encoding="utf-8")
        return 0

    def discard(self) -> None:
        for p in (self.path, self.info):
            p.unlink(missing_ok=True)


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.netloc) == (pb.scheme, pb.netloc)


def _request(url: str, start: int, token, endpoint: str) -> urllib.request.Request:
    from huggingface_hub.utils import build_hf_headers

    headers = build_hf_headers(token=token)
    auth = {k: v for k, v in headers.items() if k.lower() == "authorization"}
    req = urllib.request.Request(url, headers={k: v for k, v in headers.items() if k not in auth})
    req.add_header("Accept-Encoding", "identity")
    if start:
        req.add_header("Range", f"bytes={start}-")
    if _same_origin(url, endpoint):  # the hub gets the token; a CDN on another origin, or any redirect, does not
        for k, v in auth.items():
            req.add_unredirected_header(k, v)
    return req


def _get_once(meta: _Metadata, part: _Partial, start: int, reporter: _Reporter, token, endpoint: str) -> int:
    """One ``GET`` from byte ``start``, appended to the partial file; returns the bytes now there."""
    req = _request(meta.location, start, token, endpoint)
    with urllib.request.urlopen(req, timeout=_timeout()) as resp:
        if start and resp.status == 200:  # the server ignored the Range: take the whole file again
            logger.warning("%s ignored the resume request; starting the file again", meta.location)
            start = 0
        elif start:
            got = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if resp.status != 206 or got is None or int(got[1]) != start:
                raise _Cut(f"asked for bytes from {start}, got HTTP {resp.status} "
                           f"{resp.headers.get('Content-Range', '')}".strip())
        done = start
        with open(part.path, "r+b") as out:
            out.seek(start)
            out.truncate()
            reporter(done, meta.size)
            while True:
                try:
                    chunk = resp.read(CHUNK_BYTES)
                except http.client.IncompleteRead as cut:  # the connection dropped: keep what did arrive
                    if cut.partial:
                        _write(out, cut.partial)
                        done += len(cut.partial)
                        reporter(done, meta.size)
                    raise _Cut(f"the connection dropped at byte {done} ({cut!r})") from None
                if not chunk:
                    break
                _write(out, chunk)
                done += len(chunk)
                reporter(done, meta.size)
        return done


class _Cut(Exception):
    """The transfer stopped short (connection dropped, short body, a resume answered wrongly)."""


def _write(out, chunk: bytes) -> None:
    out.write(chunk)
    out.flush()


def _timeout() -> float:
    try:
        return float(os.environ.get("HF_HUB_DOWNLOAD_TIMEOUT", "10"))
    except ValueError:
        return 10.0


def _transfer(meta: _Metadata, part: _Partial, reporter: _Reporter, token, endpoint: str) -> None:
    """GET the file into ``part`` from where an earlier run stopped; resume a cut transfer up to RESUMES times in a
    row without progress, 1 s apart. Raises ``_Cut`` (with the last cause chained) when it cannot finish."""
    have = part.resume_from(meta)
    if have:
        logger.info("Resuming %s from byte %d of %d", part.path.name, have, meta.size)
    if meta.size is not None:
        _check_space(part.path.parent, meta.size - have)
    resumes = 0
    last: BaseException | None = None
    while meta.size is None or have < meta.size or have == 0:
        try:
            now = _get_once(meta, part, have, reporter, token, endpoint)
        except urllib.error.HTTPError as exc:
            if exc.code != 429 and exc.code < 500:
                raise
            now, last = part.path.stat().st_size, exc
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS:
                raise
            now, last = part.path.stat().st_size, exc
        except (_Cut, http.client.HTTPException) as exc:
            now, last = part.path.stat().st_size, exc
        else:
            if meta.size is None or now == meta.size:
                return
            last = _Cut(f"the server sent {now} of {meta.size} bytes")
        if now > have:
            resumes = 0  # bytes arrived: the count of resumes without progress starts again
        have = now
        if resumes >= RESUMES:
            raise _Cut(f"the transfer stopped at byte {have} of {meta.size} and {RESUMES} resumes in a row brought "
                       "nothing more") from last
        resumes += 1
        logger.warning("Transfer of %s cut at byte %d (%s); resuming", part.path.name, have, last)
        time.sleep(1)


def _check_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise OSError(errno.ENOSPC, f"{_fmt_size(needed)} still to download but only {_fmt_size(free)} free "
                                    f"on the disk of {folder}")


def file_digest(path: Path, kind: str) -> str:
    """``sha256`` of the file, or its git blob ``git-sha1`` (what the hub's etag is for files not kept in LFS)."""
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git-sha1":
        h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _verify(part: _Partial, meta: _Metadata) -> dict:
    """Size and checksum of the finished partial file against the hub's; the record kept for it."""
    size = part.path.stat().st_size
    if meta.size is not None and size != meta.size:
        raise _Corrupt(f"the file has {size} bytes but the hub says {meta.size}")
    record = {"size": size, "etag": meta.etag, "commit": meta.commit}
    digest = meta.digest
    if digest is None:
        logger.info("%s: the server's etag %r is not a checksum; only the size was checked", part.path.name,
                    meta.etag)
        return record
    kind, want = digest
    got = file_digest(part.path, kind)
    if got != want:
        raise _Corrupt(f"its {kind} is {got} but the hub's is {want}")
    record[kind] = got
    return record


class _Corrupt(Exception):
    """The downloaded bytes are complete but not the hub's (size or checksum differ)."""


# --- the record of verified downloads ----------------------------------------------------------------------------


def _record_path(root: Path) -> Path:
    return root / PARTIAL_DIR / "verified.json"


def recorded(root: str | Path) -> dict[str, dict]:
    """``{layout path: {"size", "etag", "sha256" | "git-sha1", "commit"}}`` of the files downloaded and verified
    under ``root`` (empty if none)."""
    try:
        data = json.loads(_record_path(Path(root)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember(root: Path, rel: str, record: dict) -> None:
    with _LOCKS_GUARD:
        data = recorded(root)
        data[rel] = record
        path = _record_path(root)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


def check_sizes(root: str | Path) -> list[str]:
    """Files under ``root`` whose size is no longer the one they were downloaded and verified with (cut short by a
    copy, overwritten): one line each, naming the file and how to fix it. Costs one ``stat`` per file."""
    root = Path(root)
    problems = []
    for rel, rec in recorded(root).items():
        path = root / rel
        try:
            size = path.stat().st_size
        except OSError:
            continue  # gone: the missing-file check names it
        if size != rec.get("size"):
            problems.append(f"{path} has {size} bytes but was downloaded with {rec.get('size')} (hub checksum "
                            f"{rec.get('sha256') or rec.get('git-sha1') or rec.get('etag')}): it was cut short or "
                            f"replaced. Delete it and run `python -m mn_core download --models {root}` (or tick "
                            f"'download' on the Load node), or run `python -m mn_core download --verify --models "
                            f"{root}` if you replaced it on purpose.")
    return problems


def verify(root: str | Path, roles: Iterable[str | LayoutFile] | None = None, *, endpoint: str | None = None,
           token: str | bool | None = None) -> dict[str, str]:
    """Check every present file of ``roles`` against the hub's size and checksum: ``{role: "ok" | problem}``.

    Files downloaded by :func:`download` are checked against the hub's metadata recorded then (no network);
    others are checked against a fresh ``HEAD`` (and recorded when they match). A file that matches is recorded
    again, so a file replaced on purpose with the hub's own bytes is accepted from then on.
    """
    root = Path(root)
    ep = resolve_endpoint(endpoint)
    out: dict[str, str] = {}
    records = recorded(root)
    for lf in _select(roles):
        path = lf.find(root)
        if path is None:
            continue
        rel = path.relative_to(root).as_posix()
        rec = records.get(rel) if rel == lf.path else None
        if rec is None or not (rec.get("sha256") or rec.get("git-sha1")):
            try:
                meta = _metadata(file_url(lf, ep), token, ep)
            except Exception as exc:  # noqa: BLE001 - reported per file
                out[lf.role] = f"could not ask the hub ({_describe_cause(_chain(exc))})"
                continue
            rec = {"size": meta.size, "etag": meta.etag, "commit": meta.commit}
            if meta.digest:
                rec[meta.digest[0]] = meta.digest[1]
        size = path.stat().st_size
        kind = "sha256" if rec.get("sha256") else "git-sha1" if rec.get("git-sha1") else None
        if rec.get("size") is not None and size != rec["size"]:
            out[lf.role] = f"{path}: {size} bytes, the hub's file has {rec['size']}"
        elif kind and file_digest(path, kind) != rec[kind]:
            out[lf.role] = f"{path}: its {kind} differs from the hub's {rec[kind]} (corrupted or another file)"
        else:
            out[lf.role] = "ok" if kind else "ok (size only: the hub gave no checksum)"
            if rel == lf.path:
                _remember(root, rel, rec)
    return out


def _download_one(root: Path, lf: LayoutFile, *, progress: ProgressCallback | None, endpoint: str,
                  token: str | bool | None) -> Path:
    dest = root / lf.path
    url = file_url(lf, endpoint)
    reporter = _Reporter(lf.role, progress)
    part = _Partial(root, lf)
    logger.info("Downloading %s: %s/%s (%s) -> %s", lf.role, lf.repo, lf.repo_file,
                _fmt_size(lf.approx_bytes, approx=True), dest)
    start = time.monotonic()
    reporter(0, lf.approx_bytes)
    try:
        from filelock import FileLock

        meta = _metadata(url, token, endpoint)
        part.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(part.lock)):  # another process may be fetching the same file into the same folder
            if lf.find(root) is None:
                _transfer(meta, part, reporter, token, endpoint)
                try:
                    record = _verify(part, meta)
                except _Corrupt:
                    part.discard()  # complete but wrong: the next run must not resume from these bytes
                    raise
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(part.path, dest)
                part.info.unlink(missing_ok=True)
                _remember(root, lf.path, record)
    except BaseException as exc:
        if reporter.callback_error is not None and exc is reporter.callback_error:
            raise  # the caller's own exception (e.g. a UI cancel): not a download failure; the bytes stay for later
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit
        err = _wrap_error(exc, root, lf, url, endpoint, part)
        logger.error("Download of %s failed (%s): %s", lf.role, err.reason, err.cause)
        raise err from exc

    size = dest.stat().st_size
    elapsed = time.monotonic() - start
    reporter(size, size)
    rate = f", {_fmt_size(size / elapsed)}/s" if elapsed > 0 else ""
    logger.info("Downloaded %s: %s (%s in %.1f s%s, checked against the hub's size and checksum)", lf.role, dest,
                _fmt_size(size), elapsed, rate)
    return dest


# --- errors -----------------------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code
    try:
        code = getattr(getattr(exc, "response", None), "status_code", None)
    except Exception:
        return None
    return code if isinstance(code, int) else None


def _classify(chain: list[BaseException]) -> str:
    """A short reason code for a failed download, from its exception chain (most specific first)."""
    try:
        from huggingface_hub import errors as hf_errors
    except Exception:  # pragma: no cover
        hf_errors = None
    mro_names = {c.__name__ for e in chain for c in type(e).__mro__}
    if hf_errors is not None:
        if any(isinstance(e, hf_errors.OfflineModeIsEnabled) for e in chain):
            return "offline"
        if any(isinstance(e, hf_errors.GatedRepoError) for e in chain):
            return "gated"
        if any(isinstance(e, hf_errors.RepositoryNotFoundError) for e in chain):
            return "repo_not_found"
        not_found = getattr(hf_errors, "RemoteEntryNotFoundError", None) or hf_errors.EntryNotFoundError
        if any(isinstance(e, not_found) for e in chain):
            return "not_found"
    if any(isinstance(e, _Corrupt) for e in chain):
        return "checksum"
    statuses = [s for s in (_status(e) for e in chain) if s is not None]
    if statuses:
        s = statuses[-1]
        if s == 404:
            return "not_found"
        if s in (401, 403):
            return "auth"
        return "http"
    for e in chain:
        if isinstance(e, OSError) and e.errno is not None and e.errno in _DISK_ERRNOS:
            return "disk"
    if any(isinstance(e, _Cut) for e in chain):
        return "incomplete"
    if mro_names & {"TransportError", "NetworkError", "TimeoutException"}:
        return "network"
    if any(isinstance(e, (ConnectionError, TimeoutError)) for e in chain):
        return "network"
    return "other"


_HINTS = {
    "not_found": "The file is not in the repo at that endpoint (renamed or removed upstream, or a mirror that lacks "
                 "it).",
    "repo_not_found": "The repo was not found: it may be private or gated and need a login (`hf auth login` or "
                      "HF_TOKEN), or the endpoint may be wrong.",
    "gated": "The repo is gated: accept its terms on its hub page, then log in (`hf auth login` or HF_TOKEN).",
    "auth": "Access was refused: check your token (HF_TOKEN / `hf auth login`) and that you accepted the repo's "
            "terms.",
    "offline": "Offline mode is on (HF_HUB_OFFLINE=1): unset it to allow downloads.",
    "network": "Could not reach the endpoint: check the internet connection, proxy settings (HTTPS_PROXY) and "
               "HF_ENDPOINT, then retry.",
    "http": "The server answered with an error: retry later, or check HF_ENDPOINT.",
    "incomplete": "The transfer kept being cut off and could not be completed: run the download again, it resumes "
                  "from the bytes already received.",
    "checksum": "The bytes received are not the hub's file (a proxy or mirror altered them, or the file changed "
                "while it was fetched); they were deleted: run the download again.",
    "disk": "Could not write the file: free some disk space (or fix the folder's write permission) and run the "
            "download again, it resumes from the bytes already received.",
    "other": "",
}


def _describe_cause(chain: list[BaseException]) -> str:
    parts: list[str] = []
    seen_status = False
    for e in chain:
        if type(e).__name__ == "HTTPStatusError" and seen_status:
            continue  # the raw httpx error under a hub HTTP error: same status and URL again
        seen_status = seen_status or _status(e) is not None
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
        status = _status(e)
        label = type(e).__name__ + (f" (HTTP {status})" if status is not None and str(status) not in text else "")
        item = f"{label}: {text}" if text else label
        if len(item) > 400:
            item = item[:397] + "..."
        if item not in parts:
            parts.append(item)
    return " <- ".join(parts) if parts else "unknown error"


def _wrap_error(exc: Exception, root: Path, lf: LayoutFile, url: str, endpoint: str,
                part: _Partial | None = None) -> DownloadError:
    chain = _chain(exc)
    reason = _classify(chain)
    dest = root / lf.path
    hint = _HINTS.get(reason, "")
    cause = _describe_cause(chain)
    msg = (
        f"Could not download the MangaNinja checkpoint file '{lf.role}' ({lf.repo_file} from repo {lf.repo}).\n"
        f"URL: {url} (endpoint {endpoint})\n"
        f"Cause: {cause}\n"
        + (f"{hint}\n" if hint else "")
        + (f"Received so far: {_fmt_size(part.path.stat().st_size)} in {part.path} (never loaded as a weight "
           "file).\n" if part is not None and part.path.is_file() and part.path.stat().st_size else "")
        + f"To fix it by hand: download {url} and save it as {dest}"
        + (f" (accepted instead: {', '.join(str(root / a) for a in lf.alternatives)})" if lf.alternatives else "")
        + "."
    )
    return DownloadError(msg, role=lf.role, repo=lf.repo, filename=lf.repo_file, url=url, endpoint=endpoint,
                         dest=dest, reason=reason, cause=cause)


def _offline_error(root: Path, todo: list[LayoutFile], endpoint: str) -> DownloadError:
    first = todo[0]
    lines = "\n".join(f"  {file_url(lf, endpoint)}  ->  {root / lf.path}" for lf in todo)
    msg = (
        f"Offline mode is on (HF_HUB_OFFLINE=1), so the missing MangaNinja checkpoint file(s) cannot be downloaded "
        f"(first: '{first.role}', {first.repo_file} from repo {first.repo}).\n"
        f"Unset HF_HUB_OFFLINE to allow downloads, or download these by hand:\n{lines}"
    )
    return DownloadError(msg, role=first.role, repo=first.repo, filename=first.repo_file,
                         url=file_url(first, endpoint), endpoint=endpoint, dest=root / first.path, reason="offline",
                         cause="offline mode (HF_HUB_OFFLINE) is on")


def _fmt_size(n: float, approx: bool = False) -> str:
    if not n:
        return "size unknown" if approx else "0 B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            s = f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            return ("~" + s) if approx else s
        n /= 1000
    return str(n)  # pragma: no cover
