"""The side-by-side benchmark's arithmetic: medians of pairwise ratios, warm and cold apart."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import side_by_side as sbs  # noqa: E402


def _call(call, scale):
    return {"call": call, "load_s": 10 * scale, "e2e_s": 20 * scale, "once_s": 8 * scale,
            "steps_s": [4 * scale, 3 * scale, 5 * scale], "decode_s": 2 * scale, "peak_rss_gb": 10 * scale,
            "other_cores": 0.0, "nets_s": {"unet": 3 * scale}}


def test_ratios_pair_rounds_and_calls_and_keep_cold_apart():
    rounds = [{"official": [_call(1, 2.0), _call(2, 1.0)], "ours": [_call(1, 1.0), _call(2, 0.5)]},
              {"official": [_call(1, 1.0), _call(2, 1.0)], "ours": [_call(1, 0.9), _call(2, 0.7)]},
              {"official": [_call(1, 1.0), _call(2, 1.0)], "ours": [_call(1, 0.3), _call(2, 0.9)]}]
    assert sbs.pair_ratios(rounds, "step_s", warm=True) == [0.5, 0.7, 0.9]
    assert sbs.pair_ratios(rounds, "e2e_s", warm=False) == [0.5, 0.9, 0.3]
    lines = []
    table = sbs.summarise(rounds, write=lines.append)
    assert table["warm_step_s"]["ratio"] == 0.7 and table["warm_step_s"]["goal"] == 0.85
    assert table["cold_e2e_s"]["ratio"] == 0.5
    assert table["cold_load_plus_first_s"]["ratio"] == 0.5
    assert any("NOT met" in line for line in lines) and any(" met" in line for line in lines)


def test_ours_flags_parse_into_from_folder_options():
    assert sbs.parse_ours_flags("precision=bf16 compile one-phase=false") == {
        "precision": "bf16", "compile": True, "options": {"one_phase": False}}
