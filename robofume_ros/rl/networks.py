"""Networks shared by every algorithm: observation encoder, stacked twin critics, tanh-Gaussian actor.

Observation -> ObsEncoder -> z (one flat vector per state) -> heads.
  mode "state":    z = [normalised proprio, language embedding]
  mode "features": z = [normalised frozen-CNN features (Episode.features), proprio, language]
  mode "cnn":      z = [RoboFuME CNN(image), proprio, language]; the CNN is trained by the critic
                   loss only; the actor always sees z.detach().
The twin critics are one module with stacked weights (E=2 members) so both run in one batched
matmul, and the state part of the first layer is computed once per state and broadcast across all
the actions evaluated at that state (data, random, policy actions: one pass).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class NetConfig:
    obs_mode: str = "state"              # "state" | "features" (frozen pre-trained CNN) | "cnn" (trainable RoboFuME CNN)
    hidden: tuple = (256, 256)           # hidden units of every MLP head (actor, critics, value)
    cnn_channels: int = 32               # RoboFuME CNN: channels of each of the 4 conv layers
    cnn_strides: tuple = (2, 1, 1, 1)    # RoboFuME CNN: strides of the 4 3x3 conv layers
    cnn_embed: int = 50                  # RoboFuME CNN: size of the linear+LayerNorm+tanh projection after the convs
    log_std_min: float = -20.0           # actor: clamp of log std (official Cal-QL values)
    log_std_max: float = 2.0             # actor: clamp of log std
    log_std_offset: float = -1.0         # actor: added to the raw log std output (official TanhGaussianPolicy)


def orthogonal_(w: torch.Tensor, gain: float) -> torch.Tensor:
    """Orthogonal init of a (in, out) weight (stored transposed w.r.t. nn.Linear)."""
    with torch.no_grad():
        t = torch.empty(w.shape[-1], w.shape[-2])
        nn.init.orthogonal_(t, gain)
        w.copy_(t.t())
    return w


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float = 1e-2) -> nn.Sequential:
    """Plain ReLU MLP with orthogonal init (sqrt(2) hidden, out_gain output), zero biases."""
    layers, d = [], in_dim
    for h in hidden:
        lin = nn.Linear(d, h)
        nn.init.orthogonal_(lin.weight, math.sqrt(2.0))
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
        d = h
    lin = nn.Linear(d, out_dim)
    nn.init.orthogonal_(lin.weight, out_gain)
    nn.init.zeros_(lin.bias)
    layers.append(lin)
    return nn.Sequential(*layers)


class RoboFuMECNN(nn.Module):
    """4 conv layers (32 ch, 3x3, strides 2,1,1,1), each LayerNorm (over C,H,W) + ReLU, then
    Linear -> LayerNorm -> tanh to `embed` dims. Input uint8 (B,H,W,3), scaled to [-0.5, 0.5]."""

    def __init__(self, image_shape, channels=32, strides=(2, 1, 1, 1), embed=50):
        super().__init__()
        H, W, C = image_shape
        convs, c = [], C
        for s in strides:
            convs += [nn.Conv2d(c, channels, 3, stride=s), nn.GroupNorm(1, channels), nn.ReLU()]
            c = channels
            H, W = (H - 3) // s + 1, (W - 3) // s + 1
        self.convs = nn.Sequential(*convs)
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                nn.init.orthogonal_(m.weight, math.sqrt(2.0))
                nn.init.zeros_(m.bias)
        self.proj = nn.Linear(channels * H * W, embed)
        nn.init.orthogonal_(self.proj.weight, 1.0)
        nn.init.zeros_(self.proj.bias)
        self.norm = nn.LayerNorm(embed)
        self.out_dim = embed

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = img.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5)
        x = self.convs(x).flatten(1)
        return torch.tanh(self.norm(self.proj(x).float()))


class ObsEncoder(nn.Module):
    """Observation dict -> flat state vector z. Holds the normalisation statistics as buffers
    (so they travel with the policy weights). obs keys: proprio (B,P) float, lang (B,L) float,
    and image (B,H,W,3) uint8 for mode "cnn" or features (B,F) float for mode "features"."""

    def __init__(self, cfg: NetConfig, proprio_dim: int, lang_dim: int,
                 feature_dim: Optional[int] = None, image_shape: Optional[tuple] = None):
        super().__init__()
        self.mode = cfg.obs_mode
        self.register_buffer("proprio_mean", torch.zeros(proprio_dim))
        self.register_buffer("proprio_std", torch.ones(proprio_dim))
        self.cnn = None
        d = proprio_dim + lang_dim
        if self.mode == "features":
            if not feature_dim:
                raise ValueError("obs_mode 'features' needs feature_dim")
            self.register_buffer("feat_mean", torch.zeros(feature_dim))
            self.register_buffer("feat_std", torch.ones(feature_dim))
            d += feature_dim
        elif self.mode == "cnn":
            if image_shape is None:
                raise ValueError("obs_mode 'cnn' needs image_shape")
            self.cnn = RoboFuMECNN(image_shape, cfg.cnn_channels, cfg.cnn_strides, cfg.cnn_embed)
            d += self.cnn.out_dim
        elif self.mode != "state":
            raise ValueError(f"unknown obs_mode {self.mode!r}")
        self.out_dim = d

    def set_stats(self, proprio_mean, proprio_std, feat_mean=None, feat_std=None):
        """Set normalisation statistics (std is floored at 1e-3)."""
        with torch.no_grad():
            self.proprio_mean.copy_(torch.as_tensor(proprio_mean))
            self.proprio_std.copy_(torch.as_tensor(proprio_std).clamp_min(1e-3))
            if self.mode == "features" and feat_mean is not None:
                self.feat_mean.copy_(torch.as_tensor(feat_mean))
                self.feat_std.copy_(torch.as_tensor(feat_std).clamp_min(1e-3))

    def forward(self, obs: dict) -> torch.Tensor:
        parts = []
        if self.mode == "cnn":
            parts.append(self.cnn(obs["image"]))
        elif self.mode == "features":
            parts.append((obs["features"] - self.feat_mean) / self.feat_std)
        parts.append((obs["proprio"] - self.proprio_mean) / self.proprio_std)
        parts.append(obs["lang"])
        return torch.cat(parts, dim=-1)

    def rnd_input(self, obs: dict) -> torch.Tensor:
        """Fixed (non-learned) state vector for the RND bonus: everything but the trainable CNN."""
        parts = []
        if self.mode == "features":
            parts.append((obs["features"] - self.feat_mean) / self.feat_std)
        parts.append((obs["proprio"] - self.proprio_mean) / self.proprio_std)
        parts.append(obs["lang"])
        return torch.cat(parts, dim=-1)


class StackedQ(nn.Module):
    """E independent Q(z, a) MLPs with stacked weights, evaluated together.

    forward(z (B,D), a (B,N,A)) -> (E,B,N): the first layer is split into W_z z + W_a a so z's part
    is computed once per state and broadcast over its N actions; hidden layers are one baddbmm for
    all members; the output layer runs in fp32 (Q values of a few hundred need fp32 resolution).
    """

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.n = n
        h0 = hidden[0]
        self.w_z = nn.Parameter(torch.empty(n, in_dim, h0))
        self.w_a = nn.Parameter(torch.empty(n, action_dim, h0))
        self.b0 = nn.Parameter(torch.zeros(n, 1, h0))
        for e in range(n):   # orthogonal init of the joint first layer [W_z; W_a]
            w = orthogonal_(torch.empty(in_dim + action_dim, h0), math.sqrt(2.0))
            self.w_z.data[e], self.w_a.data[e] = w[:in_dim], w[in_dim:]
        self.ws = nn.ParameterList()
        self.bs = nn.ParameterList()
        for a, b in zip(hidden[:-1], hidden[1:]):
            w = nn.Parameter(torch.empty(n, a, b))
            for e in range(n):
                orthogonal_(w.data[e], math.sqrt(2.0))
            self.ws.append(w)
            self.bs.append(nn.Parameter(torch.zeros(n, 1, b)))
        self.w_out = nn.Parameter(torch.empty(n, hidden[-1], 1))
        for e in range(n):
            orthogonal_(self.w_out.data[e], 1e-2)
        self.b_out = nn.Parameter(torch.zeros(n, 1, 1))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        E = self.n
        B, N, A = a.shape
        # Under autocast, cast once here and run the hidden layers with autocast off, so the big
        # (E, B*N, H) activations are created in bf16 directly and never re-cast.
        dev = z.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.float32
        with torch.autocast(device_type=dev, enabled=False):
            c = (lambda t: t.to(dt)) if dt != torch.float32 else (lambda t: t)
            hz = torch.baddbmm(c(self.b0), c(z).unsqueeze(0).expand(E, -1, -1), c(self.w_z))   # (E,B,H)
            ha = torch.bmm(c(a).reshape(1, B * N, A).expand(E, -1, -1), c(self.w_a))          # (E,B*N,H)
            h = torch.relu_((ha.view(E, B, N, -1) + hz.unsqueeze(2)).view(E, B * N, -1))
            for w, b in zip(self.ws, self.bs):
                h = torch.relu_(torch.baddbmm(c(b), h, c(w)))
            q = torch.baddbmm(self.b_out, h.float(), self.w_out)       # (E,B*N,1) fp32 output layer
        return q.view(E, B, N)


class TanhGaussianActor(nn.Module):
    """SAC tanh-Gaussian policy head (official Cal-QL parametrisation)."""

    def __init__(self, in_dim: int, action_dim: int, cfg: NetConfig):
        super().__init__()
        self.net = mlp(in_dim, cfg.hidden, 2 * action_dim)
        self.cfg = cfg
        self.action_dim = action_dim

    def forward(self, z: torch.Tensor):
        out = self.net(z).float()
        mean, log_std = out.chunk(2, dim=-1)
        log_std = (log_std + self.cfg.log_std_offset).clamp(self.cfg.log_std_min, self.cfg.log_std_max)
        return mean, log_std

    @staticmethod
    def _log_prob_pre_tanh(u, mean, log_std):
        # Gaussian log-density of u plus the tanh change of variables (stable form).
        gauss = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        corr = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return gauss - corr

    def sample(self, mean, log_std, n: int):
        """n reparametrised samples per state: actions (B,n,A), log-probs (B,n)."""
        m, ls = mean.unsqueeze(1), log_std.unsqueeze(1)
        u = m + ls.exp() * torch.randn(mean.shape[0], n, mean.shape[1], device=mean.device)
        return torch.tanh(u), self._log_prob_pre_tanh(u, m, ls)

    def log_prob(self, mean, log_std, actions):
        """log pi(actions | state) for actions in (-1, 1) (clipped to +-(1-1e-6))."""
        a = actions.clamp(-1 + 1e-6, 1 - 1e-6)
        return self._log_prob_pre_tanh(torch.atanh(a), mean, log_std)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        tp = list(target.parameters())
        sp = list(source.parameters())
        if tp:
            torch._foreach_lerp_(tp, sp, tau)


def grad_norm(params) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
