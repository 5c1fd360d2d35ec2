"""IQL (Kostrikov et al. 2022) on the shared networks; also OOO's pessimistic offline retraining.

  V loss      expectile(tau_e) regression of V(s) towards min(Q1',Q2')(s, a_data)
  Q loss      (Q(s,a) - y)^2 with y = r + gamma * (1 - done) * V(s'), y clipped to
              [r_min/(1-gamma), r_max/(1-gamma)] (OOO's bound on Q); V is clipped the same way
  actor loss  advantage-weighted regression: -exp(beta * (Q' - V)).clamp(max=100) * log N(a; tanh(mean), std)
              (a Gaussian around the squashed mean, as the official IQL actor: the tanh-Gaussian
              density of saturated data actions, a = +-1 in a third of the drawer data, needs
              atanh(1 - 1e-6) = 7.3 and its Jacobian, and those samples then dominate the loss)
The image encoder (obs_mode "cnn") is trained by the Q loss only; V and the actor see detached features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from robofume_ros.rl.common import AgentBase, ObsDims, autocast
from robofume_ros.rl.networks import (
    NetConfig,
    TanhGaussianActor,
    gaussian_log_prob,
    grad_norm,
    mlp,
)


@dataclass
class IQLConfig:
    net: NetConfig = field(default_factory=NetConfig)  # encoder and MLP sizes
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # target-network Polyak rate
    actor_lr: float = 3e-4  # actor learning rate
    critic_lr: float = 3e-4  # Q (+ image encoder) and V learning rate
    batch_size: int = 256  # transitions per gradient step
    reward_scale: float = 10.0  # r' = scale*r + bias (same mapping as Cal-QL)
    reward_bias: float = 5.0  # see reward_scale
    expectile: float = 0.7  # expectile of the V regression
    beta: float = 3.0  # inverse temperature of the advantage weights
    max_weight: float = 100.0  # clip of the advantage weights
    r_min: float = -5.0  # smallest scaled reward (Q bounded below by r_min/(1-gamma))
    r_max: float = 5.0  # largest scaled reward (Q bounded above by r_max/(1-gamma))
    bf16: bool = False  # bf16 autocast for the forward passes
    online_ratio: float = 0.5  # share of online data per batch (when used online)


def squashed_mean_log_prob(mean: torch.Tensor, log_std: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """log N(a; tanh(mean), exp(log_std)^2), summed over action dimensions."""
    return gaussian_log_prob(a, torch.tanh(mean), log_std)


class IQL(AgentBase):
    def __init__(self, cfg: IQLConfig, dims: ObsDims, device="cpu"):
        self._build_critics(cfg, dims, device)
        self.value = mlp(self.encoder.out_dim, cfg.net.hidden, 1, out_gain=1.0).to(device)
        self.actor = TanhGaussianActor(self.encoder.out_dim, dims.action_dim, cfg.net).to(device)
        self.encoder_trainable = any(True for _ in self.encoder.parameters())
        self.q_lo = cfg.r_min / (1 - cfg.gamma)
        self.q_hi = cfg.r_max / (1 - cfg.gamma)
        self.modules = {
            "encoder": self.encoder,
            "critic": self.critic,
            "target_encoder": self.target_encoder,
            "target_critic": self.target_critic,
            "value": self.value,
            "actor": self.actor,
        }
        self.critic_params = list(self.encoder.parameters()) + list(self.critic.parameters())
        self.optimizers = {
            "critic": torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=True),
            "value": torch.optim.Adam(self.value.parameters(), lr=cfg.critic_lr, fused=True),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True),
        }

    def set_obs_stats(self, **stats):
        self.encoder.set_stats(**stats)
        self.target_encoder.set_stats(**stats)

    def update(self, batch: dict) -> dict:
        cfg = self.cfg
        obs, next_obs = batch["obs"], batch["next_obs"]
        a, r, disc, mc = batch["actions"], batch["rewards"], batch["discounts"], batch["mc_returns"]
        with autocast(self.bf16):
            z = self.encoder(obs)
            zd = z.detach()
            with torch.no_grad():
                z_t = self.target_encoder(obs) if self.encoder_trainable else zd
                z_next = self.encoder(next_obs)
                q_t = self.target_critic(z_t, a[:, None]).float().min(0).values[:, 0]
                v_next = self.value(z_next).float()[:, 0].clamp(self.q_lo, self.q_hi)
                y = (r + disc * v_next).clamp(self.q_lo, self.q_hi)
            v = self.value(zd).float()[:, 0]
            diff = q_t - v
            w_e = torch.where(diff > 0, cfg.expectile, 1 - cfg.expectile)
            v_loss = (w_e * diff**2).mean()
            q = self.critic(z, a[:, None]).float()[:, :, 0]
            q_loss = ((q - y) ** 2).mean(-1).sum()
            mean, log_std = self.actor(zd)
            w = torch.exp(cfg.beta * (q_t - v.detach())).clamp(max=cfg.max_weight)
            actor_loss = -(w * squashed_mean_log_prob(mean, log_std, a)).mean()
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        (v_loss + q_loss + actor_loss).backward()
        m = {
            "q_data": q.mean().detach(),
            "mc_return": mc.mean(),
            "v": v.mean().detach(),
            "v_loss": v_loss.detach(),
            "td_loss": q_loss.detach(),
            "actor_loss": actor_loss.detach(),
            "critic_grad_norm": grad_norm(self.critic_params),
            "actor_grad_norm": grad_norm(self.actor.parameters()),
        }
        self.step_optimizers_and_targets()
        return m
