"""A tiny local stand-in for the Hugging Face hub, enough for ``huggingface_hub.hf_hub_download`` (2.4).

What huggingface_hub 2.4 does for ``hf_hub_download(repo_id, filename, local_dir=...)`` on a branch revision:

What mn_core.download does on top (its own resumable GET, see its docstring) needs nothing more from the server
than Range support and the headers below.

1. ``HEAD {endpoint}/{repo_id}/resolve/{revision}/{filename}`` (``Accept-Encoding: identity``), not following
   redirects to other origins. From that response it reads ``X-Repo-Commit`` (required), ``X-Linked-Etag`` or
   ``ETag`` (required), ``X-Linked-Size`` or (if not a redirect) ``Content-Length``, and ``Location`` when it is a
   redirect. Errors are told apart by ``X-Error-Code`` (``EntryNotFound``, ``RepoNotFound``, ``RevisionNotFound``,
   ``GatedRepo``). ``X-Xet-Hash`` + ``X-Xet-Refresh-Route``/``Link: ...; rel="xet-auth"`` would switch it to Xet:
   this server never sends them, so plain HTTP is used even with ``hf_xet`` installed.
2. ``GET`` on that URL, or on the ``Location`` of the HEAD redirect (LFS files: the hub answers ``302`` to a CDN
   on another origin, and the ``Authorization`` header is not sent there), streamed in chunks. If the connection
   drops, it retries with ``Range: bytes=<written>-`` and expects ``206`` + ``Content-Range``.
   No ``/api/...`` call is made for this path.

So this server runs two HTTP servers on 127.0.0.1 (random free ports): the *hub* (``/resolve/``) and a *CDN*
(``/lfs/<sha256>``) for LFS-style files, both sharing one :class:`FakeHub` state with failure knobs and a request
log.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

CHUNK = 4096  # huggingface_hub's write/progress granularity with the fake hub (10 MiB by default)


class NoSleepTime:
    """Stands in for the ``time`` module inside huggingface_hub so its retry back-off does not wait."""

    def __init__(self, real):
        self._real = real
        self.sleeps: list[float] = []

    def sleep(self, s):
        self.sleeps.append(s)

    def __getattr__(self, name):
        return getattr(self._real, name)


@dataclass
class HubFile:
    repo: str
    path: str
    data: bytes
    lfs: bool
    # Failure knobs. ``fail_status``: answer every request (HEAD and GET, hub and CDN) for this file with that
    # status, ``fail_times`` times (None = always). ``cut_at``: body GETs stop sending at that absolute byte offset
    # and drop the connection (a GET starting at or past it sends headers only), ``cut_times`` times (None = always).
    fail_status: int | None = None
    fail_times: int | None = None
    cut_at: int | None = None
    cut_times: int | None = None
    hub_error_headers: bool = True  # send X-Error-Code like the real hub (a bare mirror would not)
    # ``corrupt_at``: body bytes at that offset go out with one bit flipped (same size, another checksum).
    # ``ignore_range``: answer a Range request with the whole file (200), like a server without range support.
    # ``throttle_s``: pause after each 64 KiB sent (a slow link, to interrupt a download part-way).
    corrupt_at: int | None = None
    ignore_range: bool = False
    throttle_s: float = 0.0

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1


@dataclass
class Request:
    server: str  # "hub" or "cdn"
    method: str
    path: str  # as sent, with query
    headers: dict[str, str]  # lower-case names
    status: int = 0
    body_bytes: int = 0  # body bytes actually sent
    file: HubFile | None = field(default=None, repr=False)
    # Set once the handler has finished with the request: the client can read the last byte before the server's
    # thread records ``body_bytes``, so readers wait for this.
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def range(self) -> str | None:
        return self.headers.get("range")


_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_LFS = re.compile(r"^/lfs/(?P<sha>[0-9a-f]{64})$")
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


class FakeHub:
    """Start with ``with FakeHub() as hub:`` (or ``start()``/``stop()``); point ``HF_ENDPOINT`` at ``hub.endpoint``."""

    def __init__(self):
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()

    # --- content and knobs -------------------------------------------------------------------------------------

    def add(self, repo: str, path: str, data: bytes, *, lfs: bool | None = None, **knobs) -> HubFile:
        if lfs is None:
            lfs = not path.endswith((".json", ".txt", ".md"))
        f = HubFile(repo, path, bytes(data), lfs, **knobs)
        self.files[(repo, path)] = f
        return f

    def commit(self, repo: str) -> str:
        return hashlib.sha1(f"commit:{repo}".encode()).hexdigest()

    def requests_for(self, f: HubFile, method: str | None = None, wait_s: float = 10.0) -> list[Request]:
        """The requests for ``f``, each read after its handler finished (or ``wait_s`` passed)."""
        with self._lock:
            found = [r for r in self.requests if r.file is f and (method is None or r.method == method)]
        for r in found:
            r.done.wait(wait_s)
        return found

    def gets(self, f: HubFile) -> list[Request]:
        """The GETs that were meant to return the bytes of ``f`` (redirects not counted)."""
        return [r for r in self.requests_for(f, "GET") if r.status in (200, 206) or r.status >= 400]

    # --- lifecycle ----------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers['hub'].server_address[1]}"

    @property
    def cdn_endpoint(self) -> str:
        return f"http://127.0.0.1:{self._servers['cdn'].server_address[1]}"

    def start(self) -> "FakeHub":
        for kind in ("hub", "cdn"):
            srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            srv.daemon_threads = True
            srv.fake = self  # type: ignore[attr-defined]
            srv.kind = kind  # type: ignore[attr-defined]
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._servers[kind] = srv
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self._servers.values():
            srv.shutdown()
            srv.server_close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:  # keep-alive connections still parked in handler threads
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def closed_port_endpoint() -> str:
    """An http endpoint on 127.0.0.1 where nothing listens (connection refused)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    def setup(self):
        super().setup()
        with self.server.fake._lock:
            self.server.fake._conns.add(self.connection)

    def handle(self):
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):  # client dropped a kept-alive connection
            self.close_connection = True

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.fake._lock:
                self.server.fake._conns.discard(self.connection)

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_HEAD(self):
        self._handle(head=True)

    def do_GET(self):
        self._handle(head=False)

    # --- helpers ------------------------------------------------------------------------------------------------

    def _handle(self, head: bool) -> None:
        rec = Request(self.server.kind, self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        with self.server.fake._lock:
            self.server.fake.requests.append(rec)
        try:
            self._answer(rec, head)
        finally:
            rec.done.set()

    def _answer(self, rec: Request, head: bool) -> None:
        fake: FakeHub = self.server.fake
        path = unquote(urlsplit(self.path).path)
        if self.server.kind == "hub":
            m = _RESOLVE.match(path)
            if not m:
                return self._error(rec, head, 404, "not a resolve url", None, None)
            repo, rev, name = m["repo"], m["rev"], m["file"]
            if not any(r == repo for r, _ in fake.files):
                return self._error(rec, head, 401, "Repository not found", "RepoNotFound", None)
            if rev not in ("main", fake.commit(repo)):
                return self._error(rec, head, 404, "Invalid rev id", "RevisionNotFound", None)
            f = fake.files.get((repo, name))
            if f is None:
                return self._error(rec, head, 404, "Entry not found", "EntryNotFound", fake.commit(repo))
            rec.file = f
            if self._inject_failure(rec, head, f):
                return
            if f.lfs:
                return self._redirect(rec, head, f)
            return self._serve(rec, head, f, with_hub_headers=True)
        m = _LFS.match(path)
        f = next((x for x in fake.files.values() if m and x.lfs and x.sha256 == m["sha"]), None)
        if f is None:
            return self._error(rec, head, 404, "no such object", None, None)
        rec.file = f
        if self._inject_failure(rec, head, f):
            return
        return self._serve(rec, head, f, with_hub_headers=False)

    def _inject_failure(self, rec: Request, head: bool, f: HubFile) -> bool:
        fake: FakeHub = self.server.fake
        with fake._lock:
            if f.fail_status is None or f.fail_times == 0:
                return False
            if f.fail_times is not None:
                f.fail_times -= 1
        code = "EntryNotFound" if f.fail_status == 404 and f.hub_error_headers else None
        self._error(rec, head, f.fail_status, f"injected {f.fail_status}", code, fake.commit(f.repo))
        return True

    def _error(self, rec: Request, head: bool, status: int, message: str, code: str | None,
               commit: str | None) -> None:
        body = message.encode()
        rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        f = rec.file
        if code and (f is None or f.hub_error_headers):
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if not head:
            self.wfile.write(body)
            rec.body_bytes = len(body)

    def _redirect(self, rec: Request, head: bool, f: HubFile) -> None:
        fake: FakeHub = self.server.fake
        rec.status = 302
        self.send_response(302)
        self.send_header("Location", f"{fake.cdn_endpoint}/lfs/{f.sha256}")
        self.send_header("ETag", f'"{f.sha256}"')
        self.send_header("X-Linked-Etag", f'"{f.sha256}"')
        self.send_header("X-Linked-Size", str(len(f.data)))
        self.send_header("X-Repo-Commit", fake.commit(f.repo))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, rec: Request, head: bool, f: HubFile, with_hub_headers: bool) -> None:
        fake: FakeHub = self.server.fake
        size = len(f.data)
        start, end = 0, size  # [start, end)
        status = 200
        rng = self.headers.get("Range")
        if rng and not head and not f.ignore_range:
            m = _RANGE.match(rng)
            if m and (m[1] or m[2]):
                if m[1]:
                    start = int(m[1])
                    end = min(int(m[2]) + 1, size) if m[2] else size
                else:  # suffix range
                    start = max(size - int(m[2]), 0)
                if start >= size or start >= end:
                    rec.status = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
        rec.status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{f.etag}"')
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        if with_hub_headers:
            self.send_header("X-Repo-Commit", fake.commit(f.repo))
        self.end_headers()
        if head:
            return
        stop = end
        with fake._lock:
            cut = f.cut_at is not None and f.cut_times != 0
            if cut and f.cut_times is not None:
                f.cut_times -= 1
        if cut:
            stop = min(max(f.cut_at, start), end)
        pos = start
        try:
            while pos < stop:
                n = min(64 * 1024, stop - pos)
                block = f.data[pos:pos + n]
                if f.corrupt_at is not None and pos <= f.corrupt_at < pos + n:
                    k = f.corrupt_at - pos
                    block = block[:k] + bytes([block[k] ^ 1]) + block[k + 1:]
                self.wfile.write(block)
                pos += n
                if f.throttle_s:
                    self.wfile.flush()
                    time.sleep(f.throttle_s)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (e.g. a cancelled download)
            self.close_connection = True
        rec.body_bytes = pos - start
        if cut and stop < end:
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
