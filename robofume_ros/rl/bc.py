"""Behaviour cloning baseline on the shared encoder + tanh-Gaussian actor.

loss = -log pi(a_data | s) ("nll") or ||tanh(mean) - a_data||^2 ("mse"). Here the image encoder
(obs_mode "cnn") is trained by the BC loss, since there is no critic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from robofume_ros.rl.common import AgentBase, ObsDims, autocast
from robofume_ros.rl.networks import NetConfig, ObsEncoder, TanhGaussianActor, grad_norm


@dataclass
class BCConfig:
    net: NetConfig = field(default_factory=NetConfig)  # encoder and MLP sizes
    actor_lr: float = 3e-4  # learning rate (actor + encoder)
    batch_size: int = 256  # transitions per gradient step
    gamma: float = 0.99  # only used for the logged MC returns
    reward_scale: float = 10.0  # only used for the logged MC returns
    reward_bias: float = 5.0  # only used for the logged MC returns
    loss: str = "nll"  # "nll" or "mse"
    only_successful: bool = False  # train only on transitions of successful episodes (replay's success flag)
    bf16: bool = False  # bf16 autocast for the forward passes
    online_ratio: float = 0.5  # share of online data per batch (when used online)


class BC(AgentBase):
    def __init__(self, cfg: BCConfig, dims: ObsDims, device="cpu"):
        self.cfg, self.dims, self.device, self.bf16 = cfg, dims, device, cfg.bf16
        self.encoder = ObsEncoder(cfg.net, dims.proprio_dim, dims.lang_dim, dims.feature_dim, dims.image_shape).to(
            device
        )
        self.actor = TanhGaussianActor(self.encoder.out_dim, dims.action_dim, cfg.net).to(device)
        self.modules = {"encoder": self.encoder, "actor": self.actor}
        self.params = list(self.encoder.parameters()) + list(self.actor.parameters())
        self.optimizers = {"actor": torch.optim.Adam(self.params, lr=cfg.actor_lr, fused=True)}

    def update(self, batch: dict) -> dict:
        cfg = self.cfg
        a = batch["actions"]
        with autocast(self.bf16):
            mean, log_std = self.actor(self.encoder(batch["obs"]))
        if cfg.loss == "nll":
            per = -self.actor.log_prob(mean, log_std, a)
        else:
            per = ((torch.tanh(mean) - a) ** 2).mean(-1)
        if cfg.only_successful:
            w = batch["success"]
            loss = (w * per).sum() / w.sum().clamp_min(1.0)
        else:
            loss = per.mean()
        self.optimizers["actor"].zero_grad(set_to_none=True)
        loss.backward()
        m = {
            "bc_loss": loss.detach(),
            "actor_grad_norm": grad_norm(self.params),
            "mse": F.mse_loss(torch.tanh(mean), a).detach(),
            "mc_return": batch["mc_returns"].mean(),
        }
        self.optimizers["actor"].step()
        return m
