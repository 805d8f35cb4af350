"""Fetch missing checkpoint files from the Hugging Face hub into the official folder layout.

Nothing here runs at import time, and ``huggingface_hub`` is only imported when a download is really made.

Each file of :mod:`mn_core.layout` is fetched with ``huggingface_hub.hf_hub_download(repo, repo_file,
local_dir=<root>/<local_dir>)``, which puts it at exactly ``<root>/<path>``. What huggingface_hub 2.4 does for us:

* it writes to a temporary ``*.incomplete`` file under ``<root>/<local_dir>/.cache/huggingface/download/`` and
  moves it into place only once the size has been checked, so a failed download never leaves a partial file at the
  final path (the temporary file is deleted on failure);
* a transfer cut part-way is resumed within the same call with an HTTP ``Range`` request from the last whole chunk
  written (``DOWNLOAD_CHUNK_SIZE``, 10 MiB): up to 5 resumes 1 s apart, the count restarting whenever bytes arrive.
  A *new* call starts the file from scratch: 2.4 names each temporary file uniquely per attempt and deletes it on
  failure, so there is no resume across calls (a process killed mid-download leaves its ``*.incomplete`` behind);
* if the first ``HEAD`` fails with a network error or 5xx, it retries up to 5 times with back-off (1+2+4+8+8 s), so
  an unreachable endpoint takes about 25 s to be reported;
* it honours ``HF_HUB_OFFLINE``, ``HF_TOKEN``/the stored login, proxies and ``HF_HUB_DOWNLOAD_TIMEOUT``.

The endpoint is, in order: the ``endpoint`` argument, the ``HF_ENDPOINT`` environment variable *as it is when
:func:`download` is called* (huggingface_hub itself reads it once, at its import), huggingface_hub's default.
It is passed per call, so no global state is changed.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from .layout import BY_ROLE, FILES, LayoutFile

logger = logging.getLogger("mn_core.download")

ProgressCallback = Callable[[str, int, int], None]
"""``progress(role, done_bytes, total_bytes)``; ``total_bytes`` is 0 when not known."""

_TRUE = {"1", "ON", "YES", "TRUE"}
_DEFAULT_ENDPOINT = "https://huggingface.co"
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_DISK_ERRNOS = {getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EACCES", "EROFS", "EPERM") if hasattr(errno, n)}


class DownloadError(RuntimeError):
    """A layout file could not be downloaded.

    The message names the role, repo, file, URL and cause, and says how to fix it. ``reason`` is a short code:
    ``not_found`` (file not in the repo), ``repo_not_found``, ``gated``, ``auth``, ``offline``, ``network``,
    ``http`` (another HTTP error status), ``incomplete`` (transfer kept being cut or came back short),
    ``disk`` (local disk full / not writable) or ``other``. ``cause`` is the one-line exception chain; ``url``,
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
    bytes are written (every ``huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE``, 10 MiB by default, with the true
    size as total), and with ``(size, size)`` when it is done; a file already present gets one ``(size, size)``
    call. It may be called from a worker thread (Xet downloads). If it raises (e.g. to cancel from a UI), the
    download stops, its temporary file is removed and the exception propagates unchanged. Counts only go up
    except in one case: if a server answers a resume request with the whole file, the count drops back to 0.

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


def _progress_class(reporter: _Reporter):
    """A tqdm class for ``hf_hub_download(tqdm_class=...)`` that also reports bytes to ``reporter``.

    It subclasses huggingface_hub's own tqdm, so the console bar looks and can be disabled as usual
    (``HF_HUB_DISABLE_PROGRESS_BARS``). huggingface_hub creates one per file and reuses it across its resume
    retries; ``update(n)`` is called with each chunk written (and with a negative count if a resume had to start
    over). Defining ``update_transfer`` makes Xet downloads use a single bar too (bytes written to disk).
    """
    from huggingface_hub.utils import tqdm as hf_tqdm

    class _ReportingTqdm(hf_tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Own counter: a disabled tqdm (no TTY, HF_HUB_DISABLE_PROGRESS_BARS) does not count.
            self._mn_done = int(kwargs.get("initial") or 0)
            reporter(self._mn_done, getattr(self, "total", None))

        def update(self, n=1):
            out = super().update(n)
            if n:
                self._mn_done += int(n)
                reporter(self._mn_done, getattr(self, "total", None))
            return out

        def update_transfer(self, n=1):  # network bytes of Xet transfers; we report bytes written instead
            return None

        def set_transfer_postfix_str(self, s="", refresh=True):
            return None

    return _ReportingTqdm


def _download_one(root: Path, lf: LayoutFile, *, progress: ProgressCallback | None, endpoint: str,
                  token: str | bool | None) -> Path:
    dest = root / lf.path
    url = file_url(lf, endpoint)
    reporter = _Reporter(lf.role, progress)
    logger.info("Downloading %s: %s/%s (%s) -> %s", lf.role, lf.repo, lf.repo_file,
                _fmt_size(lf.approx_bytes, approx=True), dest)
    start = time.monotonic()
    reporter(0, lf.approx_bytes)
    try:
        import inspect

        from huggingface_hub import hf_hub_download

        extra = {}
        if "tqdm_class" in inspect.signature(hf_hub_download).parameters:  # huggingface_hub >= 1.2: byte progress
            extra["tqdm_class"] = _progress_class(reporter)
        got = hf_hub_download(
            lf.repo,
            lf.repo_file,
            local_dir=root / lf.local_dir,
            endpoint=endpoint,
            token=token,
            **extra,
        )
    except BaseException as exc:
        if reporter.callback_error is not None and exc is reporter.callback_error:
            raise  # the caller's own exception (e.g. a UI cancel): not a download failure
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit
        err = _wrap_error(exc, root, lf, url, endpoint)
        logger.error("Download of %s failed (%s): %s", lf.role, err.reason, err.cause)
        raise err from exc

    if not dest.is_file() or not _same_file(got, dest):
        raise DownloadError(
            f"Downloading '{lf.role}' ({lf.repo}/{lf.repo_file}) reported {got} but {dest} is not there.",
            role=lf.role, repo=lf.repo, filename=lf.repo_file, url=url, endpoint=endpoint, dest=dest, reason="other",
        )
    size = dest.stat().st_size
    elapsed = time.monotonic() - start
    reporter(size, size)
    rate = f", {_fmt_size(size / elapsed)}/s" if elapsed > 0 else ""
    logger.info("Downloaded %s: %s (%s in %.1f s%s)", lf.role, dest, _fmt_size(size), elapsed, rate)
    return dest


def _same_file(a: str | Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # robust to Windows extended paths (\\?\...) and symlinked roots
    except OSError:
        return False


# --- errors -----------------------------------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not e for e in out):
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def _status(exc: BaseException) -> int | None:
    try:
        code = getattr(getattr(exc, "response", None), "status_code", None)
    except Exception:
        return None
    return code if isinstance(code, int) else None


def _method(exc: BaseException) -> str | None:
    try:
        return exc.request.method  # httpx-style exceptions; raises when no request is attached
    except Exception:
        return None


def _classify(chain: list[BaseException]) -> str:
    """A short reason code for a failed ``hf_hub_download``, from its exception chain (most specific first)."""
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
        if any(isinstance(e, hf_errors.RemoteEntryNotFoundError) for e in chain):
            return "not_found"
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
    if any("Consistency check failed" in str(e) for e in chain):
        return "incomplete"
    # A connection dropped while the body streams (GET) is a cut transfer; anything else is "can't reach it".
    if any(type(e).__name__ == "RemoteProtocolError" and _method(e) == "GET" for e in chain):
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
    "incomplete": "The transfer kept being cut off and could not be completed: retry (a new attempt starts the "
                  "file from the beginning).",
    "disk": "Could not write the file: check free disk space and write permission.",
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


def _wrap_error(exc: Exception, root: Path, lf: LayoutFile, url: str, endpoint: str) -> DownloadError:
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
