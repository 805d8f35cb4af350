"""The points JSON format, its validation, and point maps (ids at [row, col] of the processed square)."""

import json

import numpy as np
import pytest

from mn_core.images import Fit
from mn_core.points import (MAX_PAIRS, Points, PointsError, pairs_from_coordinates, parse, point_maps,
                            validate)


def test_canonical_format_round_trips():
    text = json.dumps({"reference_size": [300, 200], "lineart_size": [100, 150],
                       "pairs": [{"reference": [10, 20], "lineart": [5, 6]}, {"reference": [299, 199],
                                                                              "lineart": [0, 149]}]})
    p = parse(text)
    assert p.pairs == (((10, 20), (5, 6)), ((299, 199), (0, 149)))
    assert p.reference_size == (300, 200) and p.lineart_size == (100, 150)
    assert parse(p.to_json()) == p


@pytest.mark.parametrize("text", ["", "  ", "null", "[]", '{"pairs": []}'])
def test_empty_means_no_points(text):
    assert len(parse(text)) == 0


def test_other_accepted_shapes():
    assert parse([[[1, 2], [3, 4]]]).pairs == (((1, 2), (3, 4)),)
    assert parse('[{"reference": {"x": 1, "y": 2}, "lineart": [3, 4]}]').pairs == (((1, 2), (3, 4)),)


@pytest.mark.parametrize("text, message", [
    ("{", "not valid JSON"),
    ('{"pairs": [], "colour": 1}', "unknown keys"),
    ('[{"reference": [1, 2]}]', "expected keys 'reference' and 'lineart'"),
    ('[{"reference": [1, "a"], "lineart": [1, 2]}]', "pair 1 \\(reference\\): expected \\[x, y\\] numbers"),
    ('[{"reference": [1, 2, 3], "lineart": [1, 2]}]', "expected \\[x, y\\]"),
    ('{"pairs": [], "reference_size": [0, 4]}', "reference_size must be"),
    ("5", "must be a list of pairs"),
])
def test_malformed_json_is_explained(text, message):
    with pytest.raises(PointsError, match=message):
        parse(text)


def test_kjnodes_coordinates_pair_by_order():
    p = pairs_from_coordinates('[{"x": 1, "y": 2}, {"x": 3, "y": 4}]', "[{'x': 5, 'y': 6}, {'x': 7, 'y': 8}]")
    assert p.pairs == (((1, 2), (5, 6)), ((3, 4), (7, 8)))
    with pytest.raises(PointsError, match="reference has 2 points and the line art 1"):
        pairs_from_coordinates('[{"x": 1, "y": 2}, {"x": 3, "y": 4}]', '[{"x": 5, "y": 6}]')


def test_validation_errors_say_which_pair_and_why():
    sizes = ((100, 80), (50, 60))
    with pytest.raises(PointsError, match=r"pair 2: the line art point \(x=50, y=3\) lies outside the 50x60"):
        validate(Points((((1, 1), (1, 1)), ((2, 2), (50, 3)))), *sizes)
    with pytest.raises(PointsError, match="pair 2 uses the same reference pixel \\(4, 5\\) as pair 1"):
        validate(Points((((4, 5), (1, 1)), ((4.7, 5.2), (2, 2)))), *sizes)
    with pytest.raises(PointsError, match=f"at most {MAX_PAIRS}"):
        validate(Points(tuple(((i, 0), (i, 0)) for i in range(MAX_PAIRS + 1))), *sizes)
    with pytest.raises(PointsError, match="placed on a 64x64 reference"):
        validate(Points((), reference_size=(64, 64)), *sizes)
    with pytest.raises(PointsError, match=r"outside"):
        validate(Points((((-1, 0), (0, 0)),)), *sizes)


def test_maps_hold_pair_ids_at_row_col():
    p = Points((((10, 20), (30, 5)), ((0, 127), (127, 0))))
    maps = point_maps(p, Fit("stretch", (128, 128), 128), Fit("stretch", (128, 128), 128))
    ref, line = maps.reference[0, 0].numpy(), maps.lineart[0, 0].numpy()
    assert ref.dtype == np.float32 and ref.shape == (128, 128)
    assert ref[20, 10] == 1 and line[5, 30] == 1 and ref[127, 0] == 2 and line[0, 127] == 2
    assert np.count_nonzero(ref) == 2 and np.count_nonzero(line) == 2


def test_points_merging_after_downscale_are_refused():
    p = Points((((0, 0), (0, 0)), ((1, 1), (9, 9))))
    fit = Fit("stretch", (1024, 1024), 128)  # 8x downscale: (0,0) and (1,1) land on the same pixel
    with pytest.raises(PointsError, match="pairs 1 and 2 fall on the same reference pixel"):
        point_maps(p, fit, Fit("stretch", (64, 64), 128))


def test_no_points_give_zero_maps():
    maps = point_maps(Points(), Fit("letterbox", (30, 40), 64), Fit("letterbox", (30, 40), 64))
    assert not maps.reference.any() and not maps.lineart.any()
