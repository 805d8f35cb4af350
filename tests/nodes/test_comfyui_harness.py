"""Smoke test of tests/support/comfyui_harness.py against a real ComfyUI server.

Runs in the normal suite, on every server of support.stacks.API_STACKS
(provided by tests/support/comfyui_setup.py on first use).

The server loads a throwaway custom node pack written to tmp (folder name
with '-' on purpose, plus a WEB_DIRECTORY) instead of the MangaNinja pack.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from support import comfyui_harness as ch
from support.stacks import API_STACKS, selected

PACK_NAME = "mn-smoke-pack"
EXPECTED_FAILURE = "MN_SMOKE_EXPECTED_FAILURE"

PACK_INIT = textwrap.dedent(
    '''
    import time

    import torch

    import comfy.model_management
    import comfy.utils

    from .helper import fill_value

    WEB_DIRECTORY = "./js"


    class MNSmokeSolidImage:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {
                "size": ("INT", {"default": 8, "min": 1, "max": 256}),
                "value": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            }}

        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"
        CATEGORY = "mn_smoke"

        def run(self, size, value):
            return (torch.full((1, size, size, 3), fill_value(value)),)


    class MNSmokeSlow:
        """Passes the image through; ProgressBar + interrupt aware."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {
                "image": ("IMAGE",),
                "steps": ("INT", {"default": 10, "min": 1, "max": 10000}),
                "delay": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001}),
            }}

        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"
        CATEGORY = "mn_smoke"

        def run(self, image, steps, delay):
            pbar = comfy.utils.ProgressBar(steps)
            for _ in range(steps):
                comfy.model_management.throw_exception_if_processing_interrupted()
                time.sleep(delay)
                pbar.update(1)
            return (image,)


    class MNSmokeReport:
        """Output node with a ui payload and an optional deliberate failure."""

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE",), "fail": ("BOOLEAN", {"default": False})}}

        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True
        CATEGORY = "mn_smoke"

        def run(self, image, fail):
            if fail:
                raise ValueError("''' + EXPECTED_FAILURE + '''")
            return {"ui": {"text": ["shape=%s" % list(image.shape)]}}


    NODE_CLASS_MAPPINGS = {
        "MNSmokeSolidImage": MNSmokeSolidImage,
        "MNSmokeSlow": MNSmokeSlow,
        "MNSmokeReport": MNSmokeReport,
    }
    NODE_DISPLAY_NAME_MAPPINGS = {"MNSmokeSolidImage": "MN Smoke Solid Image"}
    '''
)


def _write_pack(root: Path) -> Path:
    pack = root / PACK_NAME
    (pack / "js").mkdir(parents=True)
    (pack / "__init__.py").write_text(PACK_INIT)
    (pack / "helper.py").write_text("def fill_value(v):\n    return float(v)\n")
    (pack / "js" / "smoke.js").write_text("// mn smoke extension\n")
    return pack


@pytest.fixture(scope="module", params=selected(API_STACKS), ids=lambda s: s.id)
def server(request, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"comfyui-{request.param.id}")
    pack = _write_pack(base / "packs")
    with ch.comfyui_server(base, packs={PACK_NAME: pack}, models_dir=base / "models", stack=request.param) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return server.client


def _graph(size=16, value=1.0, slow_steps=None, delay=0.01, fail=False, prefix="mn_smoke"):
    g = {
        "1": {"class_type": "MNSmokeSolidImage", "inputs": {"size": size, "value": value}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
        "4": {"class_type": "MNSmokeReport", "inputs": {"image": ["1", 0], "fail": fail}},
    }
    if slow_steps:
        g["2"] = {"class_type": "MNSmokeSlow", "inputs": {"image": ["1", 0], "steps": slow_steps, "delay": delay}}
        g["3"]["inputs"]["images"] = ["2", 0]
        g["4"]["inputs"]["image"] = ["2", 0]
    return g


def test_object_info_lists_pack_nodes(client):
    info = client.object_info()
    for name in ("MNSmokeSolidImage", "MNSmokeSlow", "MNSmokeReport", "SaveImage"):
        assert name in info
    node = client.object_info("MNSmokeSolidImage")["MNSmokeSolidImage"]
    assert node["display_name"] == "MN Smoke Solid Image"
    assert node["input"]["required"]["size"][0] == "INT"
    assert node["output"] == ["IMAGE"]


def test_pack_web_directory_is_served(client):
    url = f"/extensions/{PACK_NAME}/smoke.js"
    assert url in client.extensions()
    assert b"mn smoke extension" in client.get(url)


def test_prompt_saves_image_and_ui_output(client):
    from PIL import Image

    entry = client.run_prompt(_graph(size=16, value=1.0), timeout=30)
    assert ch.history_status(entry) == "success"
    assert entry["outputs"]["4"]["text"] == ["shape=[1, 16, 16, 3]"]
    images = client.fetch_images(entry, node_id="3")
    assert len(images) == 1
    info, png = images[0]
    assert info["type"] == "output" and info["filename"].startswith("mn_smoke")
    img = Image.open(io.BytesIO(png))
    assert img.size == (16, 16)
    assert img.convert("RGB").getpixel((3, 3)) == (255, 255, 255)


def test_invalid_prompt_raises_node_errors(client):
    with pytest.raises(ch.PromptValidationError) as exc:
        client.queue_prompt(_graph(size=0))
    assert "1" in exc.value.node_errors


def test_upload_image_then_load(client):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 7), (10, 20, 30)).save(buf, format="PNG")
    up = client.upload_image(buf.getvalue(), name="mn_upload.png")
    assert up["name"] == "mn_upload.png"
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": up["name"]}},
        "4": {"class_type": "MNSmokeReport", "inputs": {"image": ["1", 0], "fail": False}},
    }
    entry = client.run_prompt(graph, timeout=30)
    assert entry["outputs"]["4"]["text"] == ["shape=[1, 7, 5, 3]"]


def test_execution_error_is_reported(client):
    entry = client.run_prompt(_graph(fail=True), timeout=30, check=False)
    assert ch.history_status(entry) == "error"
    err = ch.execution_error(entry)
    assert err is not None and err["node_type"] == "MNSmokeReport"
    assert EXPECTED_FAILURE in err["exception_message"]
    with pytest.raises(ch.PromptExecutionError):
        client.run_prompt(_graph(fail=True, value=0.25), timeout=30)


def test_progress_and_interrupt(client):
    with client.websocket() as ws:
        prompt_id = client.queue_prompt(_graph(slow_steps=400, delay=0.05, value=0.3))
        msg = ws.wait_for(lambda m: m.get("type") == "progress" and m["data"]["value"] >= 3, timeout=20)
        assert msg["data"]["max"] == 400
        client.interrupt()
        entry = client.wait_for_prompt(prompt_id, timeout=20, check=False)
        ws.wait_for(lambda m: m.get("type") == "executing" and m["data"].get("node") is None, timeout=10)
        assert any(m["data"].get("node") == "2" for m in ws.of_type("executing"))
    assert ch.history_status(entry) == "error"
    assert ch.was_interrupted(entry)
    assert "3" not in entry["outputs"]
    # the server is usable again afterwards
    assert ch.history_status(client.run_prompt(_graph(slow_steps=2, value=0.6), timeout=30)) == "success"


def test_shared_comfyui_dir_untouched(server):
    src = server.stack.source()
    assert not (src / "user").exists()
    assert not list((src / "output").glob("mn_smoke*"))
    assert not list((src / "input").glob("mn_upload*"))
    assert not (src / "temp").exists()
    assert (server.output_dir / "mn_smoke_00001_.png").is_file()


def test_log_has_no_unexpected_traceback(server):
    log = server.read_log()
    assert f"{PACK_NAME}" in log  # import-times line for the pack
    assert not ch.failed_imports(log), ch.failed_imports(log)
    assert f"{PACK_NAME} (IMPORT FAILED)" not in log
    unexpected = [tb for tb in server.tracebacks() if EXPECTED_FAILURE not in tb]
    assert not unexpected, "\n\n".join(unexpected)
