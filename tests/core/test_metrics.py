"""The metrics without networks: cross-checked against an independent implementation, and known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mn_core import metrics as M
from mn_core.points import parse


def _pair(seed=0, h=190, w=230, noise=18):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(5 * xx + 2 * yy), np.cos(3 * xx - 4 * yy), np.sin(7 * (xx + yy))], -1)
    target = ((base * 0.5 + 0.5) * 255).astype(np.uint8)
    pred = np.clip(target.astype(np.int16) + rng.integers(-noise, noise + 1, target.shape), 0, 255).astype(np.uint8)
    return pred, target


def _t(a):
    return torch.from_numpy(a).permute(2, 0, 1)[None].double() / 255.0


@pytest.mark.parametrize("seed,noise", [(0, 6), (1, 18), (2, 60)])
def test_psnr_and_ssim_equal_torchmetrics(seed, noise):
    """scikit-image (what we use) against torchmetrics (an independent implementation), in float64.

    torchmetrics 1.9 averages its SSIM map over the whole image; Wang et al. (and scikit-image) leave out the
    5 px border the 11 px window does not cover, so the comparison is on torchmetrics' map without that border.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    pred, target = _pair(seed, noise=noise)
    ours_psnr, ours_ssim = M.psnr(pred, target), M.ssim(pred, target)
    ref_psnr = float(peak_signal_noise_ratio(_t(pred), _t(target), data_range=1.0))
    _, ssim_map = structural_similarity_index_measure(_t(pred), _t(target), data_range=1.0, return_full_image=True)
    ref_ssim = float(ssim_map[..., 5:-5, 5:-5].mean())
    assert ours_psnr == pytest.approx(ref_psnr, abs=1e-4)
    assert ours_ssim == pytest.approx(ref_ssim, abs=2e-6)
    # and the definition of PSNR itself
    mse = np.mean((pred.astype(np.float64) - target.astype(np.float64)) ** 2) / 255.0**2
    assert ours_psnr == pytest.approx(10 * math.log10(1 / mse), abs=1e-4)
    assert 0 < ours_ssim < 1 and M.ms_ssim(pred, target) < 1


def test_identical_images():
    pred, target = _pair()
    assert M.psnr(target, target) == math.inf
    assert M.ssim(target, target) == pytest.approx(1.0)
    assert M.ms_ssim(target, target) == pytest.approx(1.0, abs=1e-5)


def test_point_mse_is_the_3x3_patch_error():
    target = np.zeros((50, 60, 3), np.uint8)
    pred = target.copy()
    pred[19:22, 29:32] = 255          # the 3x3 patch around (x=30, y=20) is wrong everywhere by 1.0
    pred[0:2, 0:2, 0] = 255           # a corner patch clipped to 2x2, one channel of three wrong
    points = parse('{"pairs": [{"reference": [5, 5], "lineart": [30, 20]}, {"reference": [1, 1], "lineart": [0, 0]},'
                   ' {"reference": [9, 9], "lineart": [50, 40]}]}')
    # pair 1: 1.0; pair 2: 4 px x 1 channel of 12 values -> 1/3; pair 3: 0
    assert M.point_mse(pred, target, points) == pytest.approx((1.0 + 1 / 3 + 0.0) / 3)
    # points clicked on a line art of twice the size are scaled to the image
    scaled = parse('{"lineart_size": [120, 100], "pairs": [{"reference": [5, 5], "lineart": [60, 40]}]}')
    assert M.point_mse(pred, target, scaled) == pytest.approx(1.0)
    assert M.point_mse(pred, target, parse('{"pairs": []}')) is None


def test_temporal_compares_changes_between_frames():
    rng = np.random.default_rng(0)
    targets = [(rng.random((20, 30, 3)) * 200).astype(np.uint8) for _ in range(4)]
    shifted = [t + 10 for t in targets]  # a constant colour offset changes nothing between frames
    assert M.temporal(shifted, targets) == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    frozen = [targets[0]] * 4  # a prediction that never changes misses every change of the target
    expected = [float(np.mean(np.abs(targets[t].astype(np.float32) - targets[t - 1]))) / 255 for t in range(1, 4)]
    assert M.temporal(frozen, targets) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(M.MetricError, match="3 predicted frames but 4 target"):
        M.temporal(frozen[:3], targets)


def test_bad_inputs_say_what_is_wrong():
    pred, target = _pair()
    with pytest.raises(M.MetricError, match=r"differ in size: 230x190 vs 100x190.*--resize"):
        M.check_pair(pred, target[:, :100])
    with pytest.raises(M.MetricError, match="ms_ssim: images of 100x100 are too small.*161"):
        M.ms_ssim(pred[:100, :100], target[:100, :100])
    with pytest.raises(M.MetricError, match="unknown metric.*psnrr.*choose from"):
        M.parse_names("psnrr, ssim")
    assert M.parse_names("ssim , PSNR") == ("psnr", "ssim")
    assert M.parse_names("all") == M.NAMES
    with pytest.raises(M.MetricError, match="lpips: needs its network"):
        M.score_pair(pred, target, ["lpips"])
