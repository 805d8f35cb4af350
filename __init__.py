"""MangaNinja for ComfyUI: reference-based line-art colorization (CVPR 2025), on ComfyUI's model manager.

Importing the pack never downloads, installs or touches the GPU. If a dependency is missing, one log line says
which and how to install it, and ComfyUI starts without these nodes.
"""

import importlib.util
import logging
import os

WEB_DIRECTORY = "./js"
NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}

_REQUIRED = ("diffusers", "transformers", "safetensors", "huggingface_hub")
_missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
if _missing:
    logging.getLogger("MangaNinja").error(
        "MangaNinja nodes not loaded: missing Python package(s) %s. Install them with: pip install -r %s",
        ", ".join(_missing), os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements.txt"))
elif __package__:  # ComfyUI imports the pack folder as a package; a bare import (e.g. by pytest) registers nothing
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
