"""Strict state-dict loading: read tensors lazily, build modules without allocating, fill them exactly.

The official code loads every MangaNinja file with ``strict=False`` and ignores what did not match, so a wrong or
prefixed file loads as a silent no-op. Here every module must end up with each of its keys filled exactly once,
from the MangaNinja overlay or from its base weights, and anything else is an error that names the file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("mn_core.loading")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit the module it is loaded into."""


_DAMAGED = ("If it was cut short or damaged (an interrupted download or copy), delete it and download it again: "
            "python -m mn_core download --models <checkpoint folder>, or tick 'download' on the Load MangaNinja node.")


# --------------------------------------------------------------------------------------------------------------
# Reading tensors


class TensorFile:
    """The tensors of one checkpoint file, read one at a time.

    ``.safetensors`` files are opened lazily; pickled ``.pth``/``.bin`` state dicts are loaded with
    ``weights_only=True`` and memory-mapped, so no full copy is made before the tensors are converted.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: file not found")
        self._st = None
        self._sd: Mapping[str, torch.Tensor] | None = None
        if self.path.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                self._st = safe_open(str(self.path), framework="pt", device="cpu")
            except Exception as e:  # noqa: BLE001 - re-raised with the file name
                raise CheckpointError(f"{self.path}: not a readable .safetensors file ({e}). {_DAMAGED}") from e
            self._keys = list(self._st.keys())
        else:
            self._sd = _load_pickled_state_dict(self.path)
            self._keys = list(self._sd.keys())

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if self._st is not None:
            return tuple(self._st.get_slice(key).get_shape())
        return tuple(self._sd[key].shape)

    def get(self, key: str) -> torch.Tensor:
        if self._st is not None:
            return self._st.get_tensor(key)
        return self._sd[key]


def _load_pickled_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        mmap = zipfile.is_zipfile(path)  # torch.load can only memory-map the zip format
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: cannot be read as a weights-only PyTorch state dict ({type(e).__name__}: {e}). "
            + ("" if "weights_only" in str(e) or "Unsupported" in str(e) else _DAMAGED + " ")
            + "Only plain tensor state dicts are accepted; re-save the file with torch.save(state_dict) or as "
            ".safetensors."
        ) from e
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        kind = type(sd).__name__
        hint = ""
        if isinstance(sd, Mapping):
            nested = [k for k, v in sd.items() if isinstance(v, Mapping)]
            if nested:
                hint = f" It holds nested dicts under {nested[:3]}; extract the state dict first."
        raise CheckpointError(f"{path}: expected a flat dict of tensors (a state dict), found a {kind}.{hint}")
    return sd


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


# --------------------------------------------------------------------------------------------------------------
# Building modules without allocating their weights


@contextlib.contextmanager
def empty_weights():
    """Create parameters on the meta device (buffers stay real, so non-persistent buffers keep their values)."""
    original = nn.Module.register_parameter

    def register_parameter(module, name, param):
        original(module, name, param)
        if param is not None:
            p = module._parameters[name]
            module._parameters[name] = nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)

    nn.Module.register_parameter = register_parameter
    try:
        yield
    finally:
        nn.Module.register_parameter = original


# --------------------------------------------------------------------------------------------------------------
# Filling modules


class Source:
    """Where some keys of a module come from: a file, an optional key mapping, and what it may hold beyond them."""

    def __init__(self, file: TensorFile, *, rename=None, prefix: str = "", allow_extra: Iterable[str] = (),
                 allow_any_extra: bool = False, convert=None):
        self.file = file
        self.prefix = prefix  # only file keys starting with this are considered (and it is stripped)
        self.rename = rename  # optional callable: file key (prefix stripped) -> module key
        self.allow_extra = tuple(allow_extra)  # prefixes of module-key names that may be present and are ignored
        self.allow_any_extra = allow_any_extra  # base files (e.g. a whole CLIP model for one tower)
        self.convert = convert  # optional callable (module key, tensor) -> tensor, for other file formats

    def load(self, module_key: str, file_key: str) -> torch.Tensor:
        t = self.file.get(file_key)
        return self.convert(module_key, t) if self.convert is not None else t

    def shape(self, module_key: str, file_key: str) -> tuple[int, ...]:
        shape = self.file.shape(file_key)
        if self.convert is not None:  # formats that reshape: check the converted shape
            shape = tuple(self.convert(module_key, torch.empty(shape, device="meta")).shape)
        return shape

    def mapping(self) -> dict[str, str]:
        """module key -> file key."""
        out = {}
        for k in self.file.keys():
            if not k.startswith(self.prefix):
                continue
            mk = k[len(self.prefix):]
            if self.rename is not None:
                mk = self.rename(mk)
                if mk is None:
                    continue
            out[mk] = k
        return out


def _examples(keys, n=5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:n])
    return shown + (f", … (+{len(keys) - n} more)" if len(keys) > n else "")


def _prefix_hint(file_keys: Iterable[str], expected: set[str]) -> str:
    """If the file's keys are the expected ones behind a common prefix, say so."""
    file_keys = list(file_keys)
    if not file_keys:
        return ""
    first = file_keys[0]
    if "." in first:
        head = first.split(".", 1)[0] + "."
        if all(k.startswith(head) for k in file_keys):
            stripped = {k[len(head):] for k in file_keys}
            if len(stripped & expected) > len(expected) // 2:
                return f" The file's keys all start with '{head}'; it was probably saved from a wrapper module."
    return ""


def load_module(module: nn.Module, sources: list[Source], *, what: str, dtype: torch.dtype | None,
                device: torch.device | str = "cpu") -> nn.Module:
    """Fill every parameter and persistent buffer of ``module`` from ``sources`` (earlier sources win).

    Each key must be found in some source with the right shape; every key of the first (overlay) source must
    belong to the module unless allowed. Floating-point tensors are converted to ``dtype`` one at a time.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    chosen: dict[str, tuple[Source, str]] = {}
    problems: list[str] = []
    for src in sources:
        mapping = src.mapping()
        extra = [mk for mk in mapping if mk not in expected and not mk.startswith(src.allow_extra)]
        if extra and not src.allow_any_extra:
            problems.append(
                f"{src.file.path}: {len(extra)} unexpected key(s) for the {what}: {_examples(extra)}."
                + _prefix_hint(mapping.keys(), set(expected)))
        bad_shapes = []
        for mk, fk in mapping.items():
            if mk in expected and mk not in chosen:
                shape = src.shape(mk, fk)
                if shape != expected[mk]:
                    bad_shapes.append(f"{mk} {shape} (expected {expected[mk]})")
                    continue
                chosen[mk] = (src, fk)
        if bad_shapes:
            problems.append(f"{src.file.path}: {len(bad_shapes)} tensor(s) with the wrong shape for the {what} "
                            f"(config and weights disagree?): {_examples(bad_shapes, 3)}")
    missing = [k for k in expected if k not in chosen]
    if missing:
        files = " + ".join(str(s.file.path) for s in sources)
        problems.append(f"{files}: {len(missing)} of {len(expected)} key(s) of the {what} are missing: "
                        f"{_examples(missing)}")
    if problems:
        raise CheckpointError("Cannot load the " + what + ":\n  " + "\n  ".join(problems))

    state = {}
    for mk, (src, fk) in chosen.items():
        t = src.load(mk, fk)
        if dtype is not None and t.is_floating_point():
            t = t.to(device=device, dtype=dtype)
        else:
            t = t.to(device=device)
        state[mk] = t
    module.load_state_dict(state, strict=True, assign=True)
    # Non-persistent buffers were created for real on the CPU; bring them along.
    for name, buf in list(module.named_buffers()):
        _set_buffer(module, name, buf.to(device))
    module.requires_grad_(False)
    module.eval()
    log.debug("loaded %s: %d tensors from %s", what, len(state), ", ".join(str(s.file.path) for s in sources))
    return module


def _set_buffer(module: nn.Module, name: str, value: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    owner._buffers[leaf] = value


def module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())
