"""RND exploration bonus as OOO uses it (Burda et al. 2018; Sobol Mark et al.).

Predictor and fixed random target MLPs (512-512 hidden). Observations are normalised with running
mean/std and clipped to [-5, 5]; bonus(s) = max over output dims of (pred - target)^2, divided by
the running std of the bonus, times `scale`. The learner adds the bonus to the (scaled) reward of
the online part of each batch and trains the predictor on the same states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from robofume_ros.rl.networks import mlp


@dataclass
class RNDConfig:
    hidden: tuple = (512, 512)  # hidden units of predictor and target
    out_dim: int = 512  # feature size of predictor / target outputs
    lr: float = 1e-4  # predictor learning rate
    scale: float = 10.0  # bonus multiplier (OOO: 10 typical, 0.5 on Adroit)
    clip: float = 5.0  # normalised observations are clipped to [-clip, clip]


class RunningMeanStd(nn.Module):
    """Streaming mean/variance (parallel-variance update), kept as buffers for checkpointing."""

    def __init__(self, shape=()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("var", torch.ones(shape))
        self.register_buffer("count", torch.tensor(1e-4))

    @torch.no_grad()
    def update(self, x: torch.Tensor):
        bm, bv, bc = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        delta, tot = bm - self.mean, self.count + bc
        self.mean += delta * bc / tot
        self.var.copy_((self.var * self.count + bv * bc + delta**2 * self.count * bc / tot) / tot)
        self.count.copy_(tot)

    @property
    def std(self):
        return self.var.clamp_min(1e-8).sqrt()


class RND(nn.Module):
    def __init__(self, obs_dim: int, cfg: RNDConfig = RNDConfig()):
        super().__init__()
        self.cfg = cfg
        self.predictor = mlp(obs_dim, cfg.hidden, cfg.out_dim, out_gain=1.0)
        self.target = mlp(obs_dim, cfg.hidden, cfg.out_dim, out_gain=1.0).requires_grad_(False)
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.bonus_rms = RunningMeanStd(())
        self.opt = torch.optim.Adam(self.predictor.parameters(), lr=cfg.lr, fused=True)

    def _err(self, x):
        x = ((x - self.obs_rms.mean) / self.obs_rms.std).clamp(-self.cfg.clip, self.cfg.clip)
        return ((self.predictor(x) - self.target(x)) ** 2).max(-1).values

    @torch.no_grad()
    def bonus(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled intrinsic reward for states x (B, obs_dim)."""
        return self.cfg.scale * self._err(x) / self.bonus_rms.std

    def update(self, x: torch.Tensor) -> dict:
        """Update normalisers and train the predictor on states x; returns metrics (tensors)."""
        self.obs_rms.update(x)
        err = self._err(x)
        self.bonus_rms.update(err.detach())
        loss = err.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"rnd_loss": loss.detach()}

    def full_state_dict(self):
        return {"net": self.state_dict(), "opt": self.opt.state_dict()}

    def load_full_state_dict(self, sd):
        self.load_state_dict(sd["net"])
        self.opt.load_state_dict(sd["opt"])
