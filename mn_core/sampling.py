"""DDIM (eta = 0, "leading" timestep spacing) and MangaNinja's three-way guidance.

The schedule is read from the SD1.5 ``scheduler_config.json``; the official code loads it as a diffusers
``DDIMScheduler``, whose behaviour on that config is reproduced here step for step (float32 throughout).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DDIMSchedule:
    alphas_cumprod: torch.Tensor  # (num_train_timesteps,) float32
    final_alpha_cumprod: torch.Tensor  # 0-dim float32
    num_train_timesteps: int
    steps_offset: int

    @classmethod
    def from_config(cls, config: dict) -> DDIMSchedule:
        n = int(config.get("num_train_timesteps", 1000))
        schedule = config.get("beta_schedule", "linear")
        start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
        if config.get("trained_betas") is not None:
            betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
        elif schedule == "scaled_linear":
            betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float32) ** 2
        elif schedule == "linear":
            betas = torch.linspace(start, end, n, dtype=torch.float32)
        else:
            raise ValueError(f"unsupported beta_schedule {schedule!r} in the scheduler config")
        for key, wanted in (("prediction_type", "epsilon"), ("timestep_spacing", "leading")):
            if config.get(key, wanted) != wanted:
                raise ValueError(f"scheduler config has {key}={config[key]!r}; MangaNinja uses {wanted!r}")
        if config.get("rescale_betas_zero_snr") or config.get("thresholding"):
            raise ValueError("scheduler config enables zero-SNR rescaling or thresholding, which MangaNinja does not use")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        final = torch.tensor(1.0) if config.get("set_alpha_to_one", True) else alphas_cumprod[0]
        return cls(alphas_cumprod, final, n, int(config.get("steps_offset", 0)))

    def timesteps(self, steps: int) -> list[int]:
        """Leading spacing: t_i = (steps-1-i) * (T // steps) + offset, e.g. 981, 961, ..., 1 for 50 steps."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be between 1 and {self.num_train_timesteps}, got {steps}")
        ratio = self.num_train_timesteps // steps
        return [(steps - 1 - i) * ratio + self.steps_offset for i in range(steps)]

    def step(self, eps: torch.Tensor, t: int, z: torch.Tensor, steps: int) -> torch.Tensor:
        """One deterministic DDIM update from timestep ``t`` (no clipping)."""
        prev = t - self.num_train_timesteps // steps
        a_t = self.alphas_cumprod[t]
        a_prev = self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod
        x0 = (z - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        return a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps


def guidance_coefficients(guidance_ref: float, guidance_point: float) -> dict[str, float]:
    """Weights of each row in the guided prediction (the official formula, expanded).

    eps = ((eu + g_r (er - eu)) + (er + g_p (ep - er))) / 2
        = (1 - g_r)/2 * eu + (1 + g_r - g_p)/2 * er + g_p/2 * ep
    """
    return {"uncond": (1 - guidance_ref) / 2, "ref": (1 + guidance_ref - guidance_point) / 2,
            "point": guidance_point / 2}


def needed_rows(guidance_ref: float, guidance_point: float) -> tuple[str, ...]:
    """Rows whose weight is not zero. The reference row is always run (the formula is written around it)."""
    w = guidance_coefficients(guidance_ref, guidance_point)
    return tuple(r for r in ("uncond", "ref", "point") if r == "ref" or w[r] != 0)


def guide(eps: dict[str, torch.Tensor], guidance_ref: float, guidance_point: float) -> torch.Tensor:
    """Combine the rows exactly as the official code does; a row missing from ``eps`` has weight 0."""
    er = eps["ref"]
    eu = eps.get("uncond")
    ep = eps.get("point")
    e1 = er if eu is None else eu + guidance_ref * (er - eu)  # eu absent only when g_r == 1
    e2 = er if ep is None else er + guidance_point * (ep - er)  # ep absent only when g_p == 0
    return (e1 + e2) / 2


def sample(predict: Callable[[torch.Tensor, int], dict[str, torch.Tensor]], z: torch.Tensor,
           schedule: DDIMSchedule, steps: int, guidance_ref: float, guidance_point: float,
           callback: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run DDIM from ``z`` (float32). ``predict(z, t)`` returns the ε of each needed row (float32)."""
    z = z.float()
    timesteps = schedule.timesteps(steps)
    for i, t in enumerate(timesteps):
        eps = guide(predict(z, t), guidance_ref, guidance_point)
        z = schedule.step(eps, t, z, steps)
        if callback is not None:
            callback(i + 1, len(timesteps), z)
    return z
