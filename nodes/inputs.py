"""Every node input checked against the node's own INPUT_TYPES before the node runs.

ComfyUI checks a widget's range when a prompt is queued, but not a value that arrives through a link (a math node,
a primitive, a script's API prompt), nor the shape of an IMAGE. So each node's FUNCTION is wrapped once, where the
mappings are built: numbers must be finite and in range, combos one of their choices, booleans booleans, strings
strings, IMAGE a non-empty (B, H, W, C) batch of finite values and MASK a (B, H, W) one. A bad input is a ValueError
naming the node, the input and how to fix it, raised before anything is computed. Custom types (MANGANINJA_*) are
checked by the nodes themselves (``bridge.expect``), and batch sizes that must agree by the node that pairs them.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers

import torch

MASK_HINT = "a MASK was connected where an IMAGE is expected: convert it with ComfyUI's 'Convert Mask to Image' node"


class InputError(ValueError):
    """A node input that does not fit the node's INPUT_TYPES."""


def _spec(node_cls) -> dict[str, tuple]:
    types = node_cls.INPUT_TYPES()
    out = {}
    for section in ("required", "optional"):
        for name, spec in types.get(section, {}).items():
            out[name] = spec
    return out


def _shown(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check(node: str, name: str, spec: tuple, value) -> None:
    """Raise InputError if ``value`` does not fit ``spec`` (an INPUT_TYPES entry)."""
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})

    def bad(problem: str, fix: str) -> InputError:
        return InputError(f"{node}: `{name}` {problem} (got {_shown(value)}); {fix}")

    if isinstance(kind, (list, tuple)):  # a combo
        if value not in kind:
            listed = ", ".join(map(repr, kind[:8])) + (", ..." if len(kind) > 8 else "")
            raise bad("is not one of its choices", f"choose one of {listed}")
        return
    if kind in ("INT", "FLOAT"):
        whole = kind == "INT"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad(f"must be a {'whole ' if whole else ''}number", "connect a number or type one in the widget")
        if not math.isfinite(float(value)):
            raise bad("must be a finite number, not NaN or infinity", "check the node that computes it")
        if whole and float(value) != int(value):
            raise bad("must be a whole number", "round it (e.g. with a math node) before connecting it")
        lo, hi = opts.get("min"), opts.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise bad(f"must be between {lo} and {hi}", f"use a value from {lo} to {hi}")
        step = opts.get("step")
        if whole and step and step > 1 and (int(value) - int(lo or 0)) % int(step):
            raise bad(f"must be a multiple of {step}", f"use a multiple of {step}")
        return
    if kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise bad("must be true or false", "connect a boolean or use the toggle")
        return
    if kind == "STRING":
        if not isinstance(value, str):
            raise bad("must be text", "connect a STRING")
        return
    if kind in ("IMAGE", "MASK"):
        if not isinstance(value, torch.Tensor):
            raise bad(f"must be an {kind}", f"connect an {kind} output")
        if kind == "IMAGE":
            if value.ndim == 3:
                raise bad("is not an IMAGE batch (B, H, W, C)", MASK_HINT)
            if value.ndim != 4 or value.shape[-1] not in (1, 3, 4):
                raise bad("is not an IMAGE batch (B, H, W, C) with 1, 3 or 4 channels",
                          "connect an IMAGE output (Load Image, a decoder, ...)")
        elif value.ndim != 3:
            raise bad("is not a MASK batch (B, H, W)", "connect a MASK output")
        if value.shape[0] == 0:
            raise bad("is an empty batch", "check the node that feeds it (a filter or a batch split that kept "
                                           "nothing)")
        if value.shape[1] == 0 or value.shape[2] == 0:
            raise bad("has no pixels", "check the crop or resize that feeds it")
        if not value.is_floating_point():
            raise bad("must hold floating-point values in [0, 1]", "convert it to a float IMAGE")
        if not bool(torch.isfinite(value).all()):
            raise bad("holds NaN or infinite values", "check the node that computes it")
        return
    # custom types: the node checks them with bridge.expect


def validated(node_cls, display_name: str):
    """Wrap ``node_cls``'s FUNCTION so that every input is checked first (once per class)."""
    fname = node_cls.FUNCTION
    func = getattr(node_cls, fname)
    if getattr(func, "_mn_validated", False):
        return node_cls

    signature = inspect.signature(func)

    @functools.wraps(func)
    def run(self, *args, **kwargs):
        given = signature.bind(self, *args, **kwargs).arguments  # ComfyUI passes names; a script may pass positions
        spec = _spec(node_cls)
        for name, value in given.items():
            if name in spec and value is not None:
                check(display_name, name, spec[name], value)
        return func(self, *args, **kwargs)

    run._mn_validated = True
    setattr(node_cls, fname, run)
    return node_cls
