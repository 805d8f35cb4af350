"""Half precision stays close to float32 on the same weights and noise (the parity fixtures' weights)."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from support import FIXTURES, fixture_cases, require
from mn_core import MangaNinja, lineart_from_drawing

CASES = fixture_cases()


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


@pytest.mark.parametrize("case", CASES or [None], ids=[c.name for c in CASES] or ["missing"])
def test_fp16_and_bf16_match_fp32_above_35_db(case):
    if case is None:
        require(FIXTURES / "cases", "parity fixture cases", "MN_FIXTURES")
        pytest.fail(f"no cases under {FIXTURES / 'cases'}")
    meta = json.loads((case / "case.json").read_text())
    call = meta["call"]
    size = int(call["processing_res"])
    ref_noise = torch.from_numpy(np.load(case / "noise" / "ref_posterior_noise.npy"))
    init = torch.from_numpy(np.load(case / "noise" / "initial_latents.npy"))
    outputs = {}
    for precision in ("fp32", "fp16", "bf16"):
        mn = MangaNinja.from_folder((case / meta["weights_dir"]).resolve(), device="cpu", precision=precision)
        ref = mn.encode_reference(Image.open(case / "inputs" / "reference.png"), size=size, fit="stretch",
                                  noise=ref_noise)
        target = Image.open(case / "inputs" / "target.png")
        lineart = (lineart_from_drawing(target, size=size, fit="stretch", polarity="white_on_black")
                   if call["is_lineart"] else mn.extract_lineart(target, size=size, fit="stretch"))
        out = mn.colorize(ref, lineart, steps=int(call["denoising_steps"]), guidance_ref=call["guidance_scale_ref"],
                          guidance_point=call["guidance_scale_point"], noise=init)
        assert mn.modules.get("denoising_unet").dtype == {"fp32": torch.float32, "fp16": torch.float16,
                                                         "bf16": torch.bfloat16}[precision]
        outputs[precision] = out.processed_image
    for precision in ("fp16", "bf16"):
        value = psnr(outputs[precision], outputs["fp32"])
        print(f"{case.name}: {precision} vs fp32 PSNR {value:.1f} dB")
        assert value >= 35, f"{precision}: {value:.1f} dB"
