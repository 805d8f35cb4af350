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


def test_psnr_pairs_each_call_with_the_baselines_call_of_the_same_round(tmp_path):
    import math

    import numpy as np

    def saved(name, img):
        path = tmp_path / f"{name}.npy"
        np.save(path, img)
        return {"output": str(path)}

    base = np.full((4, 4, 3), 100, np.uint8)
    off_by_one = base.copy()
    off_by_one[0, 0, 0] = 101  # mse = 1 / 48
    rounds = [{"official": [saved("b1", base), saved("b2", base)],
               "ours": [saved("s1", base), saved("s2", off_by_one)]}]
    lines = []
    got = sbs.psnr_report(rounds, write=lines.append)
    assert got[0] == math.inf
    assert math.isclose(got[1], 10 * math.log10(255.0**2 * 48))
    assert "inf dB" in lines[0]
