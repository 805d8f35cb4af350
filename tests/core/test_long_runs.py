"""100 colorize runs in one process through the API (tiny weights, CPU): RSS after every run, and its slope over
runs 10-100 (printed; the integration test does the same on the real server)."""

from __future__ import annotations

import gc

import numpy as np
import psutil

RUNS = 100


def slope_mb_per_run(rss: list[float], start: int = 10) -> float:
    x = np.arange(start, len(rss))
    return float(np.polyfit(x, np.asarray(rss[start:]), 1)[0])


def test_one_hundred_runs_do_not_grow(tiny, sample_images):
    proc = psutil.Process()
    ref = tiny.encode_reference(sample_images["reference"], size=128, seed=0)
    rss = []
    for k in range(RUNS):
        tiny.colorize(ref, sample_images["black_on_white"], steps=2, seed=k)
        gc.collect()
        rss.append(proc.memory_info().rss / 2**20)
    slope = slope_mb_per_run(rss)
    print(f"API, {RUNS} colorize runs: RSS {rss[9]:.1f} MB after run 10, {rss[-1]:.1f} MB after run {RUNS}, "
          f"slope {slope * 1024:+.1f} KB per run")
    # the bound is on medians (RSS wanders with the allocator): a leak of one 128 px image per run (48 KB) would
    # add about 4 MB between runs 10-20 and runs 90-100
    growth = float(np.median(rss[90:]) - np.median(rss[10:20]))
    assert growth < 3, (growth, slope, rss)
