"""The HTTP and websocket client of a running ComfyUI server, and readers of its /history entries.

Plain stdlib; both the 2024 ComfyUI and the current one serve these (unprefixed) routes. Used through
:mod:`comfyui_harness`, which re-exports everything here.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping


class ComfyUIError(RuntimeError):
    pass


class PromptValidationError(ComfyUIError):
    """POST /prompt was rejected (HTTP 400)."""

    def __init__(self, error: Any, node_errors: Any, body: Any = None):
        self.error = error
        self.node_errors = node_errors
        self.body = body
        super().__init__(f"prompt rejected: {json.dumps(error)}; node_errors={json.dumps(node_errors)}")


class PromptExecutionError(ComfyUIError):
    """A prompt finished with status 'error' (exception or interrupt)."""

    def __init__(self, prompt_id: str, entry: dict):
        self.prompt_id = prompt_id
        self.entry = entry
        self.messages = history_messages(entry)
        super().__init__(f"prompt {prompt_id} failed: {json.dumps(self.messages)[:4000]}")


# --------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------

def history_messages(entry: dict) -> list:
    return ((entry or {}).get("status") or {}).get("messages") or []


def history_status(entry: dict) -> str | None:
    """'success', 'error' or None (not finished / no status)."""
    return ((entry or {}).get("status") or {}).get("status_str")


def was_interrupted(entry: dict) -> bool:
    return any(m[0] == "execution_interrupted" for m in history_messages(entry))


def execution_error(entry: dict) -> dict | None:
    """The execution_error message data of a failed prompt, if any."""
    for event, data in history_messages(entry):
        if event == "execution_error":
            return data
    return None


def output_images(entry: dict, node_id: str | None = None) -> list[dict]:
    """[{'filename', 'subfolder', 'type'}, ...] from the 'images' ui outputs."""
    out = []
    for nid, ui in (entry.get("outputs") or {}).items():
        if node_id is not None and str(nid) != str(node_id):
            continue
        out.extend(ui.get("images") or [])
    return out


class ComfyUIClient:
    """Minimal stdlib client for the ComfyUI HTTP API (unprefixed routes,
    which both 2024 and current ComfyUI serve; current also serves /api/...)."""

    def __init__(self, base_url: str, client_id: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout

    # -- raw -------------------------------------------------------------------------
    def request(self, method: str, path: str, data: bytes | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None
                ) -> tuple[int, bytes, Any]:
        """Return (status, body, headers); HTTP errors are returned, not raised."""
        req = urllib.request.Request(self.base_url + path, data=data, method=method,
                                     headers=dict(headers or {}))
        try:
            with urllib.request.urlopen(req, timeout=timeout or self.timeout) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers

    def get(self, path: str, **query: Any) -> bytes:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        status, body, _ = self.request("GET", path)
        if status != 200:
            raise ComfyUIError(f"GET {path}: HTTP {status}: {body[:2000]!r}")
        return body

    def get_json(self, path: str, **query: Any) -> Any:
        return json.loads(self.get(path, **query))

    def post_json(self, path: str, payload: Any) -> tuple[int, bytes]:
        status, body, _ = self.request("POST", path, json.dumps(payload).encode(),
                                       {"Content-Type": "application/json"})
        return status, body

    # -- info ------------------------------------------------------------------------
    def is_up(self) -> bool:
        try:
            status, _, _ = self.request("GET", "/system_stats", timeout=2)
            return status == 200
        except (OSError, urllib.error.URLError):
            return False

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def object_info(self, node_class: str | None = None) -> dict:
        if node_class is None:
            return self.get_json("/object_info")
        return self.get_json("/object_info/" + urllib.parse.quote(node_class))

    def extensions(self) -> list[str]:
        return self.get_json("/extensions")

    def queue(self) -> dict:
        return self.get_json("/queue")

    # -- prompts ---------------------------------------------------------------------
    def queue_prompt(self, prompt: Mapping[str, Any], extra_data: Mapping[str, Any] | None = None,
                     client_id: str | None = None) -> str:
        """POST /prompt (API-format graph); return prompt_id or raise PromptValidationError."""
        payload: dict[str, Any] = {"prompt": prompt, "client_id": client_id or self.client_id}
        if extra_data:
            payload["extra_data"] = dict(extra_data)
        status, body = self.post_json("/prompt", payload)
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if status != 200 or not isinstance(data, dict) or "prompt_id" not in data:
            if isinstance(data, dict):
                raise PromptValidationError(data.get("error"), data.get("node_errors"), data)
            raise ComfyUIError(f"POST /prompt: HTTP {status}: {body[:2000]!r}")
        if data.get("node_errors"):  # accepted, but some outputs were dropped
            raise PromptValidationError("some outputs failed validation", data["node_errors"], data)
        return data["prompt_id"]

    def history(self, prompt_id: str | None = None) -> dict:
        if prompt_id is None:
            return self.get_json("/history")
        return self.get_json("/history/" + urllib.parse.quote(prompt_id))

    def wait_for_prompt(self, prompt_id: str, timeout: float = 60.0, poll: float = 0.1,
                        check: bool = True) -> dict:
        """Poll /history/<id> until the prompt is done; return its history entry.

        check=True raises PromptExecutionError for status 'error' (this
        includes interrupted prompts, see was_interrupted()).
        """
        deadline = time.monotonic() + timeout
        while True:
            entry = self.history(prompt_id).get(prompt_id)
            if entry is not None and (entry.get("status") is None or history_status(entry)):
                if check and history_status(entry) == "error":
                    raise PromptExecutionError(prompt_id, entry)
                return entry
            if time.monotonic() > deadline:
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout}s; queue={self.queue()}")
            time.sleep(poll)

    def run_prompt(self, prompt: Mapping[str, Any], timeout: float = 60.0, check: bool = True,
                   extra_data: Mapping[str, Any] | None = None) -> dict:
        """Queue a prompt and wait for it; the entry gets 'prompt_id' added."""
        prompt_id = self.queue_prompt(prompt, extra_data=extra_data)
        entry = self.wait_for_prompt(prompt_id, timeout=timeout, check=check)
        entry = dict(entry)
        entry["prompt_id"] = prompt_id
        return entry

    def interrupt(self, prompt_id: str | None = None) -> None:
        """POST /interrupt. prompt_id is honoured by current ComfyUI only
        (2024 always interrupts whatever runs)."""
        status, body = self.post_json("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})
        if status != 200:
            raise ComfyUIError(f"POST /interrupt: HTTP {status}: {body[:500]!r}")

    def clear_queue(self) -> None:
        self.post_json("/queue", {"clear": True})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})

    # -- files -----------------------------------------------------------------------
    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        return self.get("/view", filename=filename, subfolder=subfolder, type=type)

    def fetch_images(self, entry: dict, node_id: str | None = None) -> list[tuple[dict, bytes]]:
        """[(image_info, png_bytes), ...] for the 'images' ui outputs of a history entry."""
        return [(info, self.view(info["filename"], info.get("subfolder", ""), info.get("type", "output")))
                for info in output_images(entry, node_id)]

    def upload_image(self, image: str | os.PathLike | bytes, name: str | None = None,
                     subfolder: str = "", type: str = "input", overwrite: bool = True) -> dict:
        """POST /upload/image (multipart); returns {'name', 'subfolder', 'type'}."""
        if isinstance(image, (bytes, bytearray)):
            data, name = bytes(image), name or "upload.png"
        else:
            data, name = Path(image).read_bytes(), name or Path(image).name
        fields = {"subfolder": subfolder, "type": type, "overwrite": "true" if overwrite else "false"}
        boundary = "----mn" + uuid.uuid4().hex
        parts = []
        for k, v in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        status, body, _ = self.request("POST", "/upload/image", b"".join(parts),
                                       {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            raise ComfyUIError(f"POST /upload/image: HTTP {status}: {body[:500]!r}")
        return json.loads(body)

    # -- websocket -------------------------------------------------------------------
    def websocket(self) -> "WebSocketListener":
        """A started listener on /ws?clientId=<self.client_id> (stop() it, or use `with`)."""
        return WebSocketListener(self.base_url, self.client_id).start()


class WebSocketListener:
    """Collects /ws messages in a background thread (needs aiohttp, which
    ComfyUI itself requires). JSON messages are kept as dicts
    ({'type': 'progress', 'data': {...}}); binary frames (previews) as
    {'type': 'binary', 'size': n}."""

    def __init__(self, base_url: str, client_id: str):
        self.url = base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + \
            "/ws?clientId=" + urllib.parse.quote(client_id)
        self.messages: list[dict] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._loop = None
        self._stop = None
        self._connected = threading.Event()
        self.error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> "WebSocketListener":
        self._thread = threading.Thread(target=self._run, name="comfyui-ws", daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            raise ComfyUIError(f"websocket {self.url} did not connect: {self.error!r}")
        if self.error:
            raise ComfyUIError(f"websocket {self.url} failed: {self.error!r}")
        return self

    def _run(self) -> None:
        import asyncio

        import aiohttp

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.ws_connect(self.url, heartbeat=30) as ws:
                        self._connected.set()
                        stop_task = asyncio.ensure_future(self._stop.wait())
                        while not self._stop.is_set():
                            recv = asyncio.ensure_future(ws.receive())
                            done, _ = await asyncio.wait({recv, stop_task}, return_when=asyncio.FIRST_COMPLETED)
                            if recv not in done:
                                recv.cancel()
                                break
                            msg = recv.result()
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self._add(json.loads(msg.data))
                            elif msg.type == aiohttp.WSMsgType.BINARY:
                                self._add({"type": "binary", "size": len(msg.data)})
                            else:  # CLOSE/CLOSED/ERROR
                                break
                        stop_task.cancel()
            except BaseException as e:  # noqa: BLE001 - reported via .error
                self.error = e
            finally:
                self._connected.set()

        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(main())
        finally:
            self._loop.close()

    def _add(self, msg: dict) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float = 30.0) -> dict:
        """Block until a message matching predicate arrives (also checks old ones)."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for msg in self.messages[seen:]:
                    if predicate(msg):
                        return msg
                seen = len(self.messages)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching websocket message in {timeout}s; "
                                       f"got types {[m.get('type') for m in self.messages][-30:]}")
                self._cond.wait(left)

    def of_type(self, type_: str, prompt_id: str | None = None) -> list[dict]:
        with self._cond:
            return [m for m in self.messages if m.get("type") == type_ and
                    (prompt_id is None or (m.get("data") or {}).get("prompt_id") in (prompt_id, None))]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "WebSocketListener":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
