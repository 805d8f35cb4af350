"""Suggested points (mn_core.suggest) and palette hints (mn_core.palette), with no model weights.

Quality is measured against ground truth: line drawings under known affine + elastic warps (mn_core.warp_cases);
a suggested pair is right when its reference point lies within 12 px (at 512 px) of the true source of its line-art
point. The full table (12 cases, the official annotated case) is benchmarks/points_bench.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from mn_core import points as P
from mn_core.palette import hint_points, palette
from mn_core.suggest import SuggestError, suggest_points
from mn_core.warp_cases import make_case

TOL = 12.0


def errors(points, case, scale_ref=1.0, scale_line=1.0):
    ref = np.array([r for r, _ in points.pairs], float) + 0.5
    line = np.array([q for _, q in points.pairs], float) + 0.5
    return np.linalg.norm(case.truth(line / scale_line) - ref / scale_ref, axis=1)


@pytest.fixture(scope="module")
def cases():
    return [make_case("character", 0), make_case("character", 3), make_case("astronaut", 0),
            make_case("rocket", 3)]


def test_precision_and_count_on_warped_drawings(cases):
    right = total = 0
    for case in cases:
        found = suggest_points(case.reference, case.lineart, 12)
        err = errors(found, case)
        assert len(found) >= 8, (case.name, len(found))
        right += int((err <= TOL).sum())
        total += len(err)
    assert right / total >= 0.9, (right, total)


def test_pairs_are_best_first_spread_and_valid(cases):
    case = cases[0]
    found = suggest_points(case.reference, case.lineart, 12)
    conf = list(found.confidences)
    assert len(conf) == len(found) and conf == sorted(conf, reverse=True) and conf[0] == 1.0
    assert all(0 <= c <= 1 for c in conf)
    line = np.array([q for _, q in found.pairs], float)
    nearest = [np.min(np.delete(np.linalg.norm(line - q, axis=1), k)) for k, q in enumerate(line)]
    assert min(nearest) >= 0.03 * 512 - 1  # never clustered
    # spread over the drawing: the pairs' bounding box covers most of the line art's drawn extent
    ys, xs = np.nonzero(np.asarray(case.lineart) < 128)
    assert np.ptp(line[:, 0]) >= 0.5 * np.ptp(xs) and np.ptp(line[:, 1]) >= 0.5 * np.ptp(ys)
    P.validate(found, case.reference.size, case.lineart.size)
    again = P.parse(found.to_json())
    assert again == found  # confidences survive the JSON


def test_pairs_are_in_pixels_of_the_original_images(cases):
    case = cases[0]
    ref = case.reference.resize((300, 300), Image.LANCZOS)
    line = case.lineart.resize((700, 700), Image.LANCZOS)
    found = suggest_points(ref, line, 12)
    assert found.reference_size == (300, 300) and found.lineart_size == (700, 700)
    err = errors(found, case, scale_ref=300 / 512, scale_line=700 / 512) * 300 / 512
    assert len(found) >= 8 and np.mean(err <= TOL * 300 / 512 + 1) >= 0.9, err


def test_white_on_black_and_colour_line_art(cases):
    case = cases[0]
    plain = suggest_points(case.reference, case.lineart, 12)
    inverted = suggest_points(case.reference, ImageOps.invert(case.lineart), 12)
    assert inverted.pairs == plain.pairs
    tinted = Image.merge("RGB", [case.lineart] * 3)
    coloured = suggest_points(case.reference, tinted, 12, extract=True)
    assert coloured.pairs == plain.pairs


def test_nothing_to_match_gives_no_pairs_and_bad_options_are_refused():
    blank = Image.new("RGB", (256, 256), "white")
    found = suggest_points(blank, blank.convert("L"), 12)
    assert len(found) == 0 and found.reference_size == (256, 256)
    with pytest.raises(SuggestError, match="max_pairs must be a whole number from 1 to 24"):
        suggest_points(blank, blank, 25)
    with pytest.raises(SuggestError, match="min_confidence"):
        suggest_points(blank, blank, 4, min_confidence=2)
    with pytest.raises(SuggestError, match="line art: 8x8 is too small"):
        suggest_points(blank, blank.resize((8, 8)), 4)


def test_min_confidence_keeps_the_confident_ones(cases):
    case = cases[0]
    every = suggest_points(case.reference, case.lineart, 24)
    some = suggest_points(case.reference, case.lineart, 24, min_confidence=0.5)
    assert 1 <= len(some) <= len(every) and all(c >= 0.5 for c in some.confidences)


def four_colours() -> Image.Image:
    img = Image.new("RGB", (200, 100), (250, 250, 250))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, 99, 59), fill=(220, 40, 40))
    d.rectangle((100, 0, 199, 59), fill=(40, 60, 220))
    d.rectangle((0, 60, 199, 99), fill=(40, 180, 60))
    d.line((0, 60, 199, 60), fill=(0, 0, 0), width=3)
    return img


def test_palette_colours_shares_and_points():
    img = four_colours()
    swatches = palette(img, k=4)
    rgb = np.asarray(img)
    assert len(swatches) == 4
    assert [s.share for s in swatches] == sorted((s.share for s in swatches), reverse=True)
    found = {s.colour: s for s in swatches}
    for colour, share in (((220, 40, 40), 0.29), ((40, 60, 220), 0.29), ((40, 180, 60), 0.39)):
        best = min(found, key=lambda c: np.abs(np.subtract(c, colour)).sum())
        assert np.abs(np.subtract(best, colour)).max() <= 3, (best, colour)
        s = found[best]
        assert abs(s.share - share) < 0.03, (colour, s.share)
        assert len(s.points) >= 3 and len(set(s.points)) == len(s.points)
        for x, y in s.points:  # every point lies in its own colour, not on an edge
            assert np.abs(rgb[y, x].astype(int) - colour).max() <= 3
        x, y = s.points[0]
        assert np.abs(rgb[max(0, y - 8):y + 9, max(0, x - 8):x + 9].astype(int) - colour).max() <= 3
    assert palette(img, k=4) == swatches  # the same image, the same palette
    assert len(palette(img, k=12)) <= 12
    assert json.loads(json.dumps(swatches[0].to_json()))["hex"].startswith("#")


def test_palette_hints_become_pairs():
    img = four_colours()
    swatches = palette(img, k=4)
    red = next(k for k, s in enumerate(swatches) if s.colour[0] > 200)
    hinted = hint_points(swatches, [(red, (10, 20)), (red, (50, 20))], lineart_size=(120, 80),
                         reference_size=img.size)
    assert len(hinted) == 2 and hinted.pairs[0][0] != hinted.pairs[1][0]  # the colour's next point
    assert [q for _, q in hinted.pairs] == [(10.0, 20.0), (50.0, 20.0)]
    P.validate(hinted, img.size, (120, 80))
    with pytest.raises(P.PointsError, match="swatch 9 is not in the palette"):
        hint_points(swatches, [(9, (1, 1))], lineart_size=(120, 80), reference_size=img.size)
    many = [(red, (k, 1)) for k in range(len(swatches[red].points) + 1)]
    with pytest.raises(P.PointsError, match="every reference point of colour"):
        hint_points(swatches, many, lineart_size=(120, 80), reference_size=img.size)
