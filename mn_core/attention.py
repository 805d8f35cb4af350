"""Reference attention and point injection, as diffusers attention processors.

What the official hooks compute (they replace every ``BasicTransformerBlock.forward`` of both UNets):

* Reference UNet ("writer"): each block's self-attention input ``n = norm1(h)`` is stored in a bank.
* Denoising UNet ("reader"), per guidance row, with ``B`` the bank of the block at the same module path and
  ``Et``/``Er`` the PointNet tokens of the target/reference point maps at this block's scale:

  ==========  ===========================================================
  row         self-attention (this block's attn1 weights)
  ==========  ===========================================================
  uncond      Attn(q=n,      k=n,                 v=n)
  ref         Attn(q=n,      k=[n ; B],           v=[n ; B])
  point       Attn(q=n+Et,   k=[n+Et ; B+Er],     v=[n ; B])
  ==========  ===========================================================

  The points enter the inputs of the query and key projections only; the value path sees the raw tokens.

Everything else in a block (cross-attention, feed-forward) is the stock diffusers code. Only attn1 gets a
reader/writer processor, so the UNets stay stock ``UNet2DConditionModel`` instances.

The cross-attention context is a single token (one CLIP image embedding, or the null text token). Softmax over a
single key is exactly 1, so cross-attention equals ``to_out(to_v(context))`` for every query:
:class:`CrossAttention` skips the query/key projections and the attention itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ROW_KINDS = ("uncond", "ref", "point")


def transformer_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The model's diffusers BasicTransformerBlocks by module path, in registration order."""
    from diffusers.models.attention import BasicTransformerBlock

    return {name: m for name, m in model.named_modules() if isinstance(m, BasicTransformerBlock)}


def check_supported(attn: nn.Module) -> None:
    """Our processors implement the SD1.5 attention layer; refuse configurations they would get wrong."""
    unsupported = []
    for name in ("spatial_norm", "group_norm", "norm_q", "norm_k", "norm_cross"):
        if getattr(attn, name, None) is not None:
            unsupported.append(name)
    if getattr(attn, "residual_connection", False):
        unsupported.append("residual_connection")
    if getattr(attn, "rescale_output_factor", 1.0) != 1.0:
        unsupported.append("rescale_output_factor")
    if getattr(attn, "is_cross_attention", False) and getattr(attn, "added_kv_proj_dim", None) is not None:
        unsupported.append("added_kv_proj_dim")
    if unsupported:
        raise NotImplementedError(f"attention layer uses unsupported options: {', '.join(unsupported)}")


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head scaled dot-product attention of already-projected (N, L, C) tensors; returns (N, Lq, C)."""
    heads = attn.heads
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads), _split_heads(v, heads),
                                         scale=attn.scale)
    n, _, length, d = out.shape
    return out.transpose(1, 2).reshape(n, length, heads * d)


def _output(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return attn.to_out[1](attn.to_out[0](x))


def self_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _output(attn, _attend(attn, attn.to_q(x), attn.to_k(x), attn.to_v(x)))


class CrossAttention:
    """attn2 processor: exact shortcut for a one-token context, plain SDPA otherwise."""

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        if attention_mask is not None:
            raise NotImplementedError("attention masks are not used by MangaNinja")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if context.shape[1] == 1:
            value = _output(attn, attn.to_v(context))
            return value.expand(-1, hidden_states.shape[1], -1)
        q = attn.to_q(hidden_states)
        return _output(attn, _attend(attn, q, attn.to_k(context), attn.to_v(context)))


def install_cross_attention(model: nn.Module) -> None:
    for block in transformer_blocks(model).values():
        if block.attn2 is not None:
            check_supported(block.attn2)
            block.attn2.set_processor(CrossAttention())


# --------------------------------------------------------------------------------------------------------------
# Writer: record the bank on the reference UNet


class _BankComplete(Exception):
    """Raised by the last writer block: nothing after it contributes to the bank."""


class BankRecorder:
    """Owns the writer processors of one reference UNet and the bank they fill."""

    def __init__(self, reference_unet: nn.Module):
        self.paths = list(transformer_blocks(reference_unet))
        if not self.paths:
            raise ValueError("the reference UNet has no transformer blocks")
        self.bank: dict[str, torch.Tensor] | None = None
        for path, block in transformer_blocks(reference_unet).items():
            check_supported(block.attn1)
            block.attn1.set_processor(_BankWriter(self, path))

    @contextlib.contextmanager
    def recording(self):
        """Run the reference UNet inside this; afterwards the yielded dict holds every block's ``norm1`` output.

        The forward pass is stopped right after the last block's input is recorded.
        """
        bank: dict[str, torch.Tensor] = {}
        self.bank = bank
        try:
            yield bank
        except _BankComplete:
            pass
        finally:
            self.bank = None
        if len(bank) != len(self.paths):
            raise RuntimeError(f"reference pass recorded {len(bank)} of {len(self.paths)} transformer blocks")


class _BankWriter:
    def __init__(self, recorder: BankRecorder, path: str):
        self.recorder = recorder
        self.path = path

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        bank = self.recorder.bank
        if bank is not None:
            bank[self.path] = hidden_states.detach().clone()
            if len(bank) == len(self.recorder.paths):
                raise _BankComplete
        return self_attention(attn, hidden_states)


# --------------------------------------------------------------------------------------------------------------
# Reader: the denoising UNet attends to the bank


@dataclass
class _BlockContext:
    key_ref: torch.Tensor      # to_k(B)           (1, S*Lr, C): the S reference squares side by side
    key_point: torch.Tensor    # to_k(B + Er)      (1, S*Lr, C)
    value_ref: torch.Tensor    # to_v(B)           (1, S*Lr, C)
    target_points: torch.Tensor  # Et             (1 or F, L, C)


@dataclass
class _ReadContext:
    rows: tuple[str, ...]  # the UNet batch holds each row for every frame: row-major, ``frames`` long each
    frames: int
    blocks: dict[str, _BlockContext]


def round_bank(bank_tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The bank in the precision the reader uses.

    The official code stores the bank as float16 even when running in float32 (then promotes it back); other
    precisions keep the bank in the model dtype.
    """
    if dtype == torch.float32:
        return bank_tensor.to(torch.float16).to(torch.float32)
    return bank_tensor.to(dtype)


def match_scale(tokens: list[torch.Tensor], length: int, width: int) -> torch.Tensor:
    for t in tokens:
        if t.shape[-2:] == (length, width):
            return t
    shapes = ", ".join(str(tuple(t.shape[-2:])) for t in tokens)
    raise ValueError(f"no point embedding of shape ({length}, {width}) among {shapes}: point maps and images "
                     "must have the same processing size")


def _side_by_side(x: torch.Tensor) -> torch.Tensor:
    """(S, L, C) -> (1, S*L, C): several reference squares as one longer bank (one square: unchanged)."""
    return x if x.shape[0] == 1 else x.reshape(1, x.shape[0] * x.shape[1], x.shape[2])


class ReferenceReader:
    """Owns the reader processors of one denoising UNet; :meth:`bound` activates a reference for a run."""

    def __init__(self, denoising_unet: nn.Module):
        self.blocks = transformer_blocks(denoising_unet)
        self.context: _ReadContext | None = None
        for path, block in self.blocks.items():
            check_supported(block.attn1)
            block.attn1.set_processor(_BankReader(self, path))

    @contextlib.contextmanager
    def bound(self, bank: dict[str, torch.Tensor], reference_points: list[torch.Tensor],
              target_points: list[torch.Tensor], rows: tuple[str, ...], frames: int = 1):
        """Make the reader blocks attend to ``bank`` while inside the context.

        ``bank`` maps block paths to (S, L, C) tensors already in the reader precision (see :func:`round_bank`),
        one per encoded reference square; their keys and values are concatenated along the token axis, so every
        target token attends to [itself; square 1; ...; square S]. ``reference_points`` are the PointNet outputs
        of the S reference point maps, ``target_points`` those of the line-art maps (one, or one per frame);
        ``rows`` says which guidance rows the UNet batch holds, in order, each for all ``frames``. Keys and
        values of the bank are projected once here (they are the same at every step and for every frame: the
        frames share one projected copy).
        """
        if tuple(sorted(bank)) != tuple(sorted(self.blocks)):
            raise ValueError("the bank was recorded on a UNet whose transformer blocks differ from the denoising "
                             f"UNet's ({len(bank)} vs {len(self.blocks)} blocks)")
        if not rows or any(r not in ROW_KINDS for r in rows) or list(rows) != sorted(rows, key=ROW_KINDS.index):
            raise ValueError(f"rows must be an ordered subset of {ROW_KINDS}, got {rows}")
        blocks = {}
        for path, block in self.blocks.items():
            attn = block.attn1
            b = bank[path]
            squares, length, width = b.shape
            er = match_scale(reference_points, length, width).to(b.dtype)
            et = match_scale(target_points, length, width).to(b.dtype)
            if er.shape[0] != squares:
                raise ValueError(f"{er.shape[0]} reference point maps for {squares} reference squares")
            blocks[path] = _BlockContext(key_ref=_side_by_side(attn.to_k(b)),
                                         key_point=_side_by_side(attn.to_k(b + er)),
                                         value_ref=_side_by_side(attn.to_v(b)), target_points=et)
        self.context = _ReadContext(rows=tuple(rows), frames=frames, blocks=blocks)
        try:
            yield
        finally:
            self.context = None

    def set_rows(self, rows: tuple[str, ...]) -> None:
        """Change which rows the next UNet call holds (for running the rows one at a time)."""
        if self.context is None:
            raise RuntimeError("no reference is bound")
        self.context.rows = tuple(rows)


class _BankReader:
    def __init__(self, reader: ReferenceReader, path: str):
        self.reader = reader
        self.path = path

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        context = self.reader.context
        if context is None:
            return self_attention(attn, hidden_states)
        block = context.blocks[self.path]
        n = hidden_states
        rows, f = context.rows, context.frames
        if n.shape[0] != len(rows) * f:
            raise ValueError(f"UNet batch {n.shape[0]} does not match rows {rows} x {f} frames")
        chunks = dict(zip(rows, n.split(f)))

        # Query/key inputs: the point row gets the target point tokens added; values never do.
        qk_in = torch.cat([chunks[r] + block.target_points if r == "point" else chunks[r] for r in rows])
        q = attn.to_q(qk_in)
        k = attn.to_k(qk_in)
        v = attn.to_v(n)
        q_rows, k_rows, v_rows = (dict(zip(rows, t.split(f))) for t in (q, k, v))

        outputs = []
        if "uncond" in rows:
            outputs.append(_attend(attn, q_rows["uncond"], k_rows["uncond"], v_rows["uncond"]))
        with_bank = [r for r in rows if r != "uncond"]
        if with_bank:
            bank_keys = {"ref": block.key_ref, "point": block.key_point}
            keys = torch.cat([torch.cat([k_rows[r], bank_keys[r].expand(f, -1, -1)], dim=1) for r in with_bank])
            values = torch.cat([torch.cat([v_rows[r], block.value_ref.expand(f, -1, -1)], dim=1)
                                for r in with_bank])
            queries = torch.cat([q_rows[r] for r in with_bank])
            outputs.append(_attend(attn, queries, keys, values))
        return _output(attn, torch.cat(outputs) if len(outputs) > 1 else outputs[0])
