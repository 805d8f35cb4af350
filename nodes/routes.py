"""The pack's server routes, for the Point Editor's Suggest and Palette buttons (on ComfyUI's own server).

``POST /manganinja/suggest`` (multipart: ``reference`` and ``lineart`` image files, optional ``max_pairs``,
``extract``): the suggested pairs, ``{"reference_size", "lineart_size", "pairs": [{"reference", "lineart",
"confidence"}, ...]}`` (mn_core.suggest; no model weights).
``POST /manganinja/palette`` (multipart: ``reference``, optional ``k``): ``{"reference_size", "palette": [{"colour",
"hex", "share", "points"}, ...]}`` (mn_core.palette).

The browser sends the images it shows (so any upstream preview works); the work runs in a thread, off the server's
event loop. Bad input answers 400 with ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import json
import logging

from ..mn_core import points as mn_points
from ..mn_core.images import ImageError, open_image

log = logging.getLogger("MangaNinja")


class RouteError(ValueError):
    pass


def _image(fields: dict, name: str):
    data = fields.get(name)
    if not isinstance(data, (bytes, bytearray)) or not data:
        raise RouteError(f"{name}: missing (send it as a file field of a multipart form)")
    try:
        return open_image(data, what=name)
    except ImageError as e:
        raise RouteError(str(e)) from None


def _int(fields: dict, name: str, default: int, low: int, high: int) -> int:
    text = fields.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise RouteError(f"{name}: expected a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise RouteError(f"{name}: must be from {low} to {high}, got {value}")
    return value


def suggest(fields: dict) -> dict:
    from ..mn_core.suggest import suggest_points

    ref, line = _image(fields, "reference"), _image(fields, "lineart")
    found = suggest_points(ref, line, _int(fields, "max_pairs", 12, 1, mn_points.MAX_PAIRS),
                           extract=fields.get("extract") in ("1", "true"))
    return json.loads(found.to_json())


def palette(fields: dict) -> dict:
    from ..mn_core.palette import palette as find_palette

    ref = _image(fields, "reference")
    return {"reference_size": list(ref.size),
            "palette": [s.to_json() for s in find_palette(ref, _int(fields, "k", 12, 1, 64))]}


async def _fields(request) -> dict:
    out = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        out[part.name] = await part.read() if part.filename else await part.text()
    return out


def _handler(work):
    from aiohttp import web

    async def handle(request):
        try:
            fields = await _fields(request)
            result = await asyncio.get_running_loop().run_in_executor(None, work, fields)
        except (RouteError, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)
        except Exception as e:  # noqa: BLE001  (a bug of ours: logged with its traceback, answered in one line)
            log.exception("MangaNinja route %s failed", request.path)
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=500)
        return web.json_response(result)

    return handle


def register() -> None:
    """Add the routes to ComfyUI's server (nothing outside a ComfyUI process)."""
    try:
        from server import PromptServer
    except ImportError:
        return
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return
    instance.routes.post("/manganinja/suggest")(_handler(suggest))
    instance.routes.post("/manganinja/palette")(_handler(palette))
