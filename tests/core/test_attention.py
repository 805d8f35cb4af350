"""Every shortcut against the plain computation it replaces (tiny random networks, float32, CPU).

Plain = what the official code computes: three rows through every network, cross-attention over the one-token
context, the row-2 formula for all rows then rows 0 and 1 recomputed, the reference UNet at batch 3 to its end,
the ControlNet's conditioning embedding at every step.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from mn_core import attention
from mn_core.attention import CrossAttention, round_bank, transformer_blocks
from mn_core.denoise import Denoiser, StepInputs, controlnet_residuals
from mn_core.lineart import from_drawing as lineart_from_drawing

TOL = dict(rtol=0, atol=2e-5)


def plain_attention(attn, q_in, k_in, v_in):
    """diffusers' AttnProcessor2_0 maths with a separate value input (what the official processor does)."""
    heads = attn.heads
    q, k, v = attn.to_q(q_in), attn.to_k(k_in), attn.to_v(v_in)
    n = q.shape[0]
    split = lambda x: x.view(n, -1, heads, x.shape[-1] // heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return attn.to_out[0](out.transpose(1, 2).reshape(n, -1, heads * (q.shape[-1] // heads)))


class UpstreamReader:
    """The official reader, literally: the point formula for all three rows, then rows 0 and 1 overwritten."""

    def __init__(self, bank, et, er):
        self.bank, self.et, self.er = bank, et, er

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        n = hidden_states
        b = self.bank.expand(n.shape[0], -1, -1)
        q_in = n + self.et
        out = plain_attention(attn, q_in, torch.cat([q_in, b + self.er], 1), torch.cat([n, b], 1))
        out[0:1] = plain_attention(attn, n[0:1], n[0:1], n[0:1])
        both = torch.cat([n[1:2], b[1:2]], 1)
        out[1:2] = plain_attention(attn, n[1:2], both, both)
        return out


class PlainProcessor:
    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None):
        ctx = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        return plain_attention(attn, hidden_states, ctx, ctx)


def plain_copy(module):
    m = copy.deepcopy(module)
    for block in transformer_blocks(m).values():
        block.attn1.set_processor(PlainProcessor())
        block.attn2.set_processor(PlainProcessor())
    return m


@pytest.fixture(scope="module")
def nets(tiny):
    return {name: tiny.modules.get(name) for name in ("reference_unet", "denoising_unet", "controlnet", "point_net")}


def test_single_token_cross_attention_equals_sdpa(nets):
    attn = next(iter(transformer_blocks(nets["denoising_unet"]).values())).attn2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 256, attn.to_q.in_features, generator=g)
    ctx = torch.randn(3, 1, attn.to_k.in_features, generator=g)
    fast = CrossAttention()(attn, x, ctx)
    assert torch.allclose(fast, plain_attention(attn, x, ctx, ctx), **TOL)
    # more than one context token: the ordinary path
    ctx2 = torch.randn(3, 5, attn.to_k.in_features, generator=g)
    assert torch.allclose(CrossAttention()(attn, x, ctx2), plain_attention(attn, x, ctx2, ctx2), **TOL)


@pytest.mark.parametrize("rows", [("uncond", "ref", "point"), ("ref", "point"), ("uncond", "ref"), ("point",)])
def test_reader_rows_equal_the_official_hook(nets, rows):
    unet = nets["denoising_unet"]
    path, block = next(iter(transformer_blocks(unet).items()))
    attn = block.attn1
    width = attn.to_q.in_features
    g = torch.Generator().manual_seed(1)
    n = torch.randn(3, 64, width, generator=g)
    bank = torch.randn(1, 64, width, generator=g)
    et, er = torch.randn(1, 64, width, generator=g), torch.randn(1, 64, width, generator=g)
    expected = UpstreamReader(round_bank(bank, torch.float32), et, er)(attn, n)
    reader = unet.mn_reader
    banks = {p: (round_bank(bank, torch.float32) if p == path else torch.zeros(1, 4, 64)) for p in reader.blocks}
    tokens = [et, torch.zeros(1, 4, 64)]
    ref_tokens = [er, torch.zeros(1, 4, 64)]
    index = [("uncond", "ref", "point").index(r) for r in rows]
    for path_ in reader.blocks:  # only the first block is exercised; give the others shapes that match
        b = reader.blocks[path_].attn1
        banks[path_] = banks[path_] if path_ == path else torch.zeros(1, 4, b.to_q.in_features)
    tokens += [torch.zeros(1, 4, reader.blocks[p].attn1.to_q.in_features) for p in reader.blocks]
    ref_tokens += [torch.zeros(1, 4, reader.blocks[p].attn1.to_q.in_features) for p in reader.blocks]
    with reader.bound(banks, ref_tokens, tokens, rows):
        got = attn.processor(attn, n[index])
    assert torch.allclose(got, expected[index], **TOL)


def test_unbound_reader_is_plain_self_attention(nets):
    block = next(iter(transformer_blocks(nets["denoising_unet"]).values()))
    x = torch.randn(2, 16, block.attn1.to_q.in_features)
    assert torch.allclose(block.attn1(x), plain_attention(block.attn1, x, x, x), **TOL)


def test_bank_is_rounded_through_fp16_only_in_fp32():
    x = torch.randn(1, 4, 8) * 3
    assert torch.equal(round_bank(x, torch.float32), x.half().float())
    assert round_bank(x, torch.bfloat16).dtype == torch.bfloat16 and torch.equal(round_bank(x, torch.bfloat16),
                                                                                  x.bfloat16())


def test_reference_pass_batch_one_and_early_stop_equal_the_full_batch_three_pass(nets, tiny):
    ref_unet = nets["reference_unet"]
    recorder = ref_unet.mn_bank_recorder
    g = torch.Generator().manual_seed(2)
    z = torch.randn(1, 4, 16, 16, generator=g)
    ctx = torch.randn(1, 1, ref_unet.config.cross_attention_dim, generator=g)
    calls = []
    blocks = transformer_blocks(ref_unet)
    hooks = [b.ff.register_forward_hook(lambda *a, p=p: calls.append(p)) for p, b in blocks.items()]
    try:
        with torch.no_grad(), recorder.recording() as bank:
            ref_unet(z, 0, encoder_hidden_states=ctx)
    finally:
        for h in hooks:
            h.remove()
    # Every block's feed-forward ran except the last one executed (up_blocks.3...): the pass stopped there.
    assert len(calls) == len(blocks) - 1 and "up_blocks.3.attentions.2.transformer_blocks.0" not in calls
    assert all(v.shape[0] == 1 for v in bank.values())
    # The plain way: batch 3 [null, img, img], record norm1 outputs with hooks, run to the end.
    plain = plain_copy(ref_unet)
    recorded = {}
    hooks = [b.norm1.register_forward_hook(lambda m, i, o, p=p: recorded.setdefault(p, o))
             for p, b in transformer_blocks(plain).items()]
    ctx3 = torch.cat([torch.randn(1, 1, ctx.shape[-1], generator=g), ctx, ctx])
    with torch.no_grad():
        plain(z.repeat(3, 1, 1, 1), 0, encoder_hidden_states=ctx3)
    for h in hooks:
        h.remove()
    assert set(recorded) == set(bank)
    for p in bank:
        assert torch.allclose(bank[p][0], recorded[p][1], **TOL) and torch.equal(recorded[p][1], recorded[p][2])


def test_controlnet_shortcuts_equal_the_stock_forward(nets):
    cn = nets["controlnet"]
    stock = plain_copy(cn)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(1, 4, 16, 16, generator=g)
    cond = torch.rand(1, 3, 128, 128, generator=g) * 2 - 1
    null, img = (torch.randn(1, 1, cn.config.cross_attention_dim, generator=g) for _ in range(2))
    with torch.no_grad():
        down3, mid3 = stock(z.repeat(3, 1, 1, 1), 501, encoder_hidden_states=torch.cat([null, img, img]),
                            controlnet_cond=cond.repeat(3, 1, 1, 1), return_dict=False)
        emb = cn.controlnet_cond_embedding(cond)  # once per line art
        down2, mid2 = controlnet_residuals(cn, z.repeat(2, 1, 1, 1), 501, torch.cat([null, img]), emb.repeat(2, 1, 1, 1))
    for a, b in zip(down2 + [mid2], list(down3) + [mid3]):
        assert torch.allclose(a[0], b[0], **TOL) and torch.allclose(a[1], b[1], **TOL)
        assert torch.equal(b[1], b[2])  # the ref and point rows of the ControlNet are identical


def _step_inputs(tiny, nets, ref, lineart, rows):
    dtype = torch.float32
    cond = (lineart.values.repeat(1, 3, 1, 1) * 2 - 1).to(dtype)
    return StepInputs(rows=rows, null_context=tiny.null_context, image_context=ref.context,
                      cond_embedding=nets["controlnet"].controlnet_cond_embedding(cond)), cond


@pytest.fixture(scope="module")
def inputs(tiny, sample_images):
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    lineart = lineart_from_drawing(sample_images["black_on_white"], size=128)
    maps_ref = torch.zeros(1, 1, 128, 128)
    maps_line = torch.zeros(1, 1, 128, 128)
    maps_ref[0, 0, 40, 50] = maps_line[0, 0, 60, 30] = 1
    return ref, lineart, maps_ref, maps_line


@pytest.mark.parametrize("sequential", [False, True])
def test_whole_step_equals_the_official_batch_of_three(tiny, nets, inputs, sequential):
    """Our step (ControlNet once per context, reader processors, sequential rows or not) vs the official one."""
    ref, lineart, maps_ref, maps_line = inputs
    pn, unet, cn = nets["point_net"], nets["denoising_unet"], nets["controlnet"]
    with torch.no_grad():
        er, et = pn(maps_ref), pn(maps_line)
        step, cond = _step_inputs(tiny, nets, ref, lineart, ("uncond", "ref", "point"))
        z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(4))
        with unet.mn_reader.bound(ref.bank, er, et, step.rows):
            ours = Denoiser(cn, unet, unet.mn_reader, step, torch.float32, sequential_rows=sequential)(z, 751)
        # Official: everything at batch 3 with plain attention and the literal hook.
        plain_unet, plain_cn = plain_copy(unet), plain_copy(cn)
        for path, block in transformer_blocks(plain_unet).items():
            b = ref.bank[path]
            block.attn1.set_processor(UpstreamReader(b, attention.match_scale(et, *b.shape[1:]),
                                                     attention.match_scale(er, *b.shape[1:])))
        ctx = torch.cat([tiny.null_context, ref.context, ref.context])
        down, mid = plain_cn(z.repeat(3, 1, 1, 1), 751, encoder_hidden_states=ctx,
                             controlnet_cond=cond.repeat(3, 1, 1, 1), return_dict=False)
        eps = plain_unet(z.repeat(3, 1, 1, 1), 751, encoder_hidden_states=ctx, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample
    for i, row in enumerate(("uncond", "ref", "point")):
        assert torch.allclose(ours[row], eps[i:i + 1], **TOL), row


def test_skipped_uncond_row_gives_the_same_result(tiny, inputs):
    """guidance_ref == 1 gives the uncond row weight 0; skipping it must not change the image."""
    ref, lineart, _, _ = inputs
    skipped = tiny.colorize(ref, lineart, steps=3, guidance_ref=1.0, guidance_point=15.0, seed=5)
    from mn_core import pipeline

    original = pipeline.needed_rows
    pipeline.needed_rows = lambda gr, gp: ("uncond", "ref", "point")
    try:
        full = tiny.colorize(ref, lineart, steps=3, guidance_ref=1.0, guidance_point=15.0, seed=5)
    finally:
        pipeline.needed_rows = original
    assert torch.allclose(skipped.latents, full.latents, rtol=0, atol=1e-4)


def test_sequential_rows_give_the_same_image(tiny_models, inputs):
    from mn_core import MangaNinja

    ref, lineart, _, _ = inputs
    a = MangaNinja.from_folder(tiny_models, precision="fp32")
    b = MangaNinja.from_folder(tiny_models, precision="fp32", sequential_rows=True)
    ra = a.colorize(ref, lineart, steps=3, seed=6)
    rb = b.colorize(ref, lineart, steps=3, seed=6)
    assert torch.allclose(ra.latents, rb.latents, rtol=0, atol=1e-4)
    assert ra.processed_image.tobytes() == rb.processed_image.tobytes() or \
        (abs(torch.tensor(list(ra.processed_image.tobytes())) - torch.tensor(list(rb.processed_image.tobytes())))
         .max() <= 1)


@pytest.mark.parametrize("frames", [1, 3])
def test_bank_of_several_squares_and_frames_equals_the_official_hook_on_the_concatenated_bank(nets, frames):
    """Bank mode: squares side by side along the token axis, [target; bank_1; bank_2], each square with its own
    point tokens; F frames in one call, the bank shared: each frame equals the official hook alone."""
    unet = nets["denoising_unet"]
    path, block = next(iter(transformer_blocks(unet).items()))
    attn = block.attn1
    width = attn.to_q.in_features
    g = torch.Generator().manual_seed(11)
    n = torch.randn(3 * frames, 64, width, generator=g)  # rows x frames, row-major
    bank = round_bank(torch.randn(2, 64, width, generator=g), torch.float32)
    er = torch.randn(2, 64, width, generator=g)
    et = torch.randn(frames, 64, width, generator=g)
    reader = unet.mn_reader
    banks = {p: (bank if p == path else torch.zeros(2, 4, reader.blocks[p].attn1.to_q.in_features))
             for p in reader.blocks}
    ref_tokens = [er] + [torch.zeros(2, 4, reader.blocks[p].attn1.to_q.in_features) for p in reader.blocks]
    tokens = [et] + [torch.zeros(frames, 4, reader.blocks[p].attn1.to_q.in_features) for p in reader.blocks]
    rows = ("uncond", "ref", "point")
    with reader.bound(banks, ref_tokens, tokens, rows, frames=frames):
        got = attn.processor(attn, n)
    joined, joined_er = torch.cat(list(bank), 0)[None], torch.cat(list(er), 0)[None]
    for f in range(frames):
        alone = n[[f, frames + f, 2 * frames + f]]
        expected = UpstreamReader(joined, et[f:f + 1], joined_er)(attn, alone)
        assert torch.allclose(got[[f, frames + f, 2 * frames + f]], expected, **TOL), f
