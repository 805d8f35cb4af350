"""DDIM and the three-way guidance, checked against diffusers' DDIMScheduler and the official formula."""


import pytest
import torch

from mn_core.sampling import DDIMSchedule, guidance_coefficients, guide, needed_rows

SD15 = {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
        "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
        "trained_betas": None, "clip_sample": False}


@pytest.mark.parametrize("steps", [1, 3, 4, 20, 50])
def test_ddim_matches_diffusers(steps):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler.from_config(SD15)
    ref.set_timesteps(steps)
    ours = DDIMSchedule.from_config(SD15)
    assert ours.timesteps(steps) == ref.timesteps.tolist()
    g = torch.Generator().manual_seed(steps)
    z = torch.randn(1, 4, 8, 8, generator=g)
    z_ref = z.clone()
    for t in ours.timesteps(steps):
        eps = torch.randn(1, 4, 8, 8, generator=g)
        z = ours.step(eps, t, z, steps)
        z_ref = ref.step(eps, t, z_ref, eta=0.0).prev_sample
        assert torch.equal(z, z_ref)


def test_fifty_steps_are_leading():
    ts = DDIMSchedule.from_config(SD15).timesteps(50)
    assert ts[:3] == [981, 961, 941] and ts[-1] == 1


def test_config_mismatches_are_refused():
    with pytest.raises(ValueError, match="prediction_type"):
        DDIMSchedule.from_config({**SD15, "prediction_type": "v_prediction"})
    with pytest.raises(ValueError, match="beta_schedule"):
        DDIMSchedule.from_config({**SD15, "beta_schedule": "squaredcos_cap_v2"})


def test_guidance_is_the_official_formula():
    g = torch.Generator().manual_seed(0)
    eu, er, ep = (torch.randn(2, 3, generator=g) for _ in range(3))
    for gr, gp in ((9.0, 15.0), (7.0, 12.0), (1.0, 15.0), (0.5, 3.0), (0.0, 0.0)):
        official = ((eu + gr * (er - eu)) + (er + gp * (ep - er))) / 2
        assert torch.equal(guide({"uncond": eu, "ref": er, "point": ep}, gr, gp), official)
        w = guidance_coefficients(gr, gp)
        assert torch.allclose(w["uncond"] * eu + w["ref"] * er + w["point"] * ep, official, atol=1e-5)
    assert guidance_coefficients(9, 15) == {"uncond": -4.0, "ref": -2.5, "point": 7.5}


def test_rows_with_zero_weight_are_not_needed():
    assert needed_rows(9, 15) == ("uncond", "ref", "point")
    assert needed_rows(1, 15) == ("ref", "point")  # guidance_ref == 1: the uncond row has weight 0
    assert needed_rows(0.5, 15) == ("uncond", "ref", "point")
    assert needed_rows(9, 0) == ("uncond", "ref")
    eu, er, ep = torch.ones(1), torch.full((1,), 2.0), torch.full((1,), 5.0)
    assert torch.allclose(guide({"ref": er, "point": ep}, 1.0, 15), guide({"uncond": eu, "ref": er, "point": ep},
                                                                            1.0, 15))
    assert torch.allclose(guide({"uncond": eu, "ref": er}, 9, 0.0), guide({"uncond": eu, "ref": er, "point": ep},
                                                                          9, 0.0))
