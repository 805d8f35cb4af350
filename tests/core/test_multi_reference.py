"""Several references (tile and bank), points naming their reference, sequences and frame batching."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mn_core import MangaNinja, PointsError, parse_points
from mn_core.images import Fit, tile_regions
from mn_core.observers import Trace
from mn_core.points import point_maps
from mn_core.sequence import colorize_frame, colorize_sequence, frame_seed
from support import FIXTURES, fixture_cases, require


def frame(i: int) -> Image.Image:
    im = Image.new("L", (96, 80), 255)
    ImageDraw.Draw(im).ellipse((10 + 5 * i, 10, 60 + 5 * i, 60), outline=0, width=3)
    return im


@pytest.fixture(scope="module")
def refs(sample_images):
    second = Image.new("RGB", (70, 150), (40, 200, 90))
    ImageDraw.Draw(second).ellipse((10, 40, 60, 90), fill=(250, 220, 30))
    return [sample_images["reference"], second]


@pytest.mark.parametrize("mode", ["tile", "bank"])
def test_one_reference_is_todays_result_bit_for_bit_in_both_modes(tiny, refs, sample_images, mode):
    today = tiny.encode_reference(refs[0], size=128, seed=4)
    combined = tiny.encode_references(refs[:1], mode=mode, size=128, seed=4)
    for a, b in ((today.latents, combined.latents), (today.context, combined.context)):
        assert torch.equal(a, b)
    assert all(torch.equal(today.bank[k], combined.bank[k]) for k in today.bank)
    pts = parse_points({"pairs": [{"reference": [20, 30], "lineart": [40, 50]}]})
    a = tiny.colorize(today, sample_images["black_on_white"], points=pts, steps=2, seed=1)
    b = tiny.colorize(combined, sample_images["black_on_white"], points=pts, steps=2, seed=1)
    assert torch.equal(a.latents, b.latents) and a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize("mode", ["tile", "bank"])
def test_one_reference_reproduces_the_official_fixture_in_both_modes(mode):
    cases = fixture_cases()
    if not cases:
        require(FIXTURES / "cases", "parity fixture cases", "MN_FIXTURES")
    case = next(c for c in cases if json.loads((c / "case.json").read_text())["call"]["is_lineart"])
    meta = json.loads((case / "case.json").read_text())
    size = int(meta["call"]["processing_res"])
    mn = MangaNinja.from_folder((case / meta["weights_dir"]).resolve(), device="cpu", precision="fp32")
    noise = torch.from_numpy(np.load(case / "noise" / "ref_posterior_noise.npy"))
    ref = mn.encode_references([Image.open(case / "inputs" / "reference.png")], mode=mode, size=size, fit="stretch",
                               noise=noise)
    from mn_core import lineart_from_drawing
    from mn_core.points import maps_from_arrays

    art = lineart_from_drawing(Image.open(case / "inputs" / "target.png"), size=size, fit="stretch",
                               polarity="white_on_black")
    maps = maps_from_arrays(np.load(case / "inputs" / "point_ref.npy"), np.load(case / "inputs" / "point_target.npy"))
    out = mn.colorize(ref, art, points=maps, steps=int(meta["call"]["denoising_steps"]),
                      guidance_ref=float(meta["call"]["guidance_scale_ref"]),
                      guidance_point=float(meta["call"]["guidance_scale_point"]),
                      noise=torch.from_numpy(np.load(case / "noise" / "initial_latents.npy")))
    expected = np.load(case / "expected" / "final_latents.npy")
    assert np.abs(out.latents.numpy() - expected).max() <= meta["tolerances"]["final_latents"]["atol"]


def test_tile_mode_lays_references_out_in_one_square(tiny, refs):
    assert tile_regions(1, 128) == [(0, 0, 128, 128)]
    assert tile_regions(2, 128) == [(0, 0, 64, 128), (64, 0, 64, 128)]
    assert tile_regions(3, 128) == [(0, 0, 64, 64), (64, 0, 64, 64), (0, 64, 64, 64)]
    ref = tiny.encode_references(refs, mode="tile", size=128, seed=0)
    assert ref.squares == 1 and ref.latents.shape[0] == 1 and all(v.shape[0] == 1 for v in ref.bank.values())
    (s0, f0), (s1, f1) = ref.sources
    assert s0 == s1 == 0 and f0.region == (0, 0, 64, 128) and f1.region == (64, 0, 64, 128)
    px = np.asarray(ref.image)
    assert tuple(px[64, 96]) == (250, 220, 30)  # the second reference's yellow disc, in the right-hand tile
    l0, t0, w0, h0 = f0.box
    assert l0 >= 0 and l0 + w0 <= 64 and abs(w0 / h0 - 160 / 120) < 0.05  # letterboxed inside its tile


def test_bank_mode_encodes_each_reference_alone(tiny, refs):
    bank = tiny.encode_references(refs, mode="bank", size=128, seed=0)
    g = torch.Generator().manual_seed(0)
    alone = [tiny.encode_reference(r, size=128, generator=g) for r in refs]  # the same noise draws, in order
    assert bank.squares == 2 and [s for s, _ in bank.sources] == [0, 1]
    for k, single in enumerate(alone):
        assert torch.equal(bank.latents[k:k + 1], single.latents)
        assert all(torch.equal(bank.bank[p][k:k + 1], single.bank[p]) for p in single.bank)
    assert torch.allclose(bank.context, (alone[0].context + alone[1].context) / 2, atol=1e-6)


def test_points_name_their_reference(tiny, refs):
    pts = parse_points({"reference_size": [[160, 120], [70, 150]], "pairs": [
        {"reference": [20, 30], "lineart": [40, 50]},
        {"reference": [35, 60], "lineart": [10, 70], "reference_index": 1}]})
    assert json.loads(pts.to_json())["pairs"][1]["reference_index"] == 1
    line = Fit("letterbox", (96, 140), 128)
    bank = tiny.encode_references(refs, mode="bank", size=128, seed=0)
    maps = point_maps(pts, list(bank.sources), line, squares=bank.squares)
    assert maps.reference.shape == (2, 1, 128, 128) and maps.lineart.shape == (1, 1, 128, 128)
    r, c = bank.sources[1][1].map_point(35, 60)
    assert maps.reference[1, 0, r, c] == 2 and maps.reference[0].sum() == 1 and maps.reference[1].sum() == 2
    tile = tiny.encode_references(refs, mode="tile", size=128, seed=0)
    maps = point_maps(pts, list(tile.sources), line, squares=1)
    r, c = tile.sources[1][1].map_point(35, 60)
    assert maps.reference.shape == (1, 1, 128, 128) and maps.reference[0, 0, r, c] == 2 and c >= 64
    bad = parse_points({"pairs": [{"reference": [1, 1], "lineart": [1, 1], "reference_index": 2}]})
    with pytest.raises(PointsError, match="reference_index 2 names a reference that is not there; 2 reference"):
        tiny.colorize(bank, frame(0), points=bad, steps=1, seed=0)
    with pytest.raises(PointsError, match="reference_index must be a whole number"):
        parse_points({"pairs": [{"reference": [1, 1], "lineart": [1, 1], "reference_index": -1}]})
    wrong = parse_points({"reference_size": [[160, 120], [71, 150]],
                          "pairs": [{"reference": [1, 1], "lineart": [1, 1]}]})
    with pytest.raises(PointsError, match=r"placed on a 71x150 reference 2 \(reference_index 1\)"):
        tiny.colorize(bank, frame(0), points=wrong, steps=1, seed=0)
    for ref in (bank, tile):
        out = tiny.colorize(ref, sample_line := frame(0), points=pts.__class__(pts.pairs, None, None,
                                                                               pts.reference_indices), steps=2, seed=1)
        assert out.image.size == sample_line.size


def test_bank_mode_uses_both_references(tiny, refs):
    one = tiny.encode_references(refs[:1], mode="bank", size=128, seed=0)
    two = tiny.encode_references(refs, mode="bank", size=128, seed=0)
    a = tiny.colorize(one, frame(0), steps=2, seed=1)
    b = tiny.colorize(two, frame(0), steps=2, seed=1)
    assert not torch.equal(a.latents, b.latents)
    with pytest.raises(ValueError, match="mode must be tile or bank"):
        tiny.encode_references(refs, mode="mix", size=128)
    with pytest.raises(ValueError, match="no reference image given"):
        tiny.encode_references([], size=128)


def test_frames_batched_equal_frame_by_frame_and_noise_depends_only_on_seed_and_index(tiny, refs):
    ref = tiny.encode_reference(refs[0], size=128, seed=0)
    frames = [frame(i) for i in range(5)]
    alone = list(colorize_sequence(tiny, ref, frames, steps=2, seed=3, batch=1))
    batched = list(colorize_sequence(tiny, ref, frames, steps=2, seed=3, batch=3))
    for a, b in zip(alone, batched):
        assert torch.allclose(a.latents, b.latents, rtol=0, atol=2e-4)
        diff = np.abs(np.asarray(a.processed_image, np.int16) - np.asarray(b.processed_image, np.int16))
        assert diff.max() <= 1
    # frame 3 alone, or in another order, is the same frame
    again = colorize_frame(tiny, ref, frames[3], 3, steps=2, seed=3)
    assert torch.equal(again.latents, alone[3].latents)
    reordered = list(colorize_sequence(tiny, ref, [frames[3]], steps=2, seed=3))
    assert not torch.equal(reordered[0].latents, alone[3].latents)  # it is frame 0 of that run
    assert frame_seed(3, 1) != frame_seed(3, 2) and frame_seed(3, 1) == frame_seed(3, 1)
    same = list(colorize_sequence(tiny, ref, [frames[0], frames[0]], steps=2, seed=3, same_noise=True))
    assert torch.equal(same[0].latents, same[1].latents)
    different = list(colorize_sequence(tiny, ref, [frames[0], frames[0]], steps=2, seed=3))
    assert not torch.equal(different[0].latents, different[1].latents)


def test_previous_frame_mode(tiny, refs):
    ref = tiny.encode_reference(refs[0], size=128, seed=0)
    frames = [frame(i) for i in range(3)]
    chained = list(colorize_sequence(tiny, ref, frames, steps=2, seed=3, previous_frame=True))
    independent = list(colorize_sequence(tiny, ref, frames, steps=2, seed=3))
    assert torch.equal(chained[0].latents, independent[0].latents)  # frame 0: the keyframe only
    assert not torch.equal(chained[1].latents, independent[1].latents)
    trace = Trace()
    redo = colorize_frame(tiny, ref, frames[2], 2, previous=chained[1].image, steps=2, seed=3, observers=[trace])
    assert torch.equal(redo.latents, chained[2].latents)  # recomputable from the previous frame alone
    assert trace["ref_latents"].shape == (1, 4, 16, 16)  # the previous frame was encoded as a reference
    with pytest.raises(ValueError, match="use batch 1"):
        list(colorize_sequence(tiny, ref, frames, steps=2, previous_frame=True, batch=2))
