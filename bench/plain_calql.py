"""A plain, textbook PyTorch Cal-QL step: the baseline of bench_learning.py.

Written the way a reader first writes Cal-QL from the paper and the CORL / JAX reference code,
with none of the project's speed work: two separate Q networks (nn.Sequential), each evaluated once
per state-action row (the data action, then every sampled CQL action in a Python loop); the actor
re-run for every sampled action; the critic, actor and temperature losses each with their own
backward pass and Adam optimiser (torch's default, not fused); no denormal flush, no fused
kernels. The math is the project's Cal-QL at its defaults (rl/calql.py): same network sizes, n
random / current / next-state policy actions, MC-return lower bound on the policy actions,
importance-sampled logsumexp, no entropy in the backup, RoboFuME's BC term rescaled to the RL
loss, automatic entropy tuning. It reads the project's batches (Learner.sample_batch) so both steps
train on the same data and pay the same sampling cost.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(i, o, hidden):
    layers, d = [], i
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    return nn.Sequential(*layers, nn.Linear(d, o))


class Encoder(nn.Module):
    """Observation dict -> z: [proprio, language] (state), [features, proprio, language] (features) or
    [RoboFuME CNN embedding, proprio, language] (cnn); normalisation as the project's encoder."""

    def __init__(self, mode, proprio_dim, lang_dim, feature_dim, image_shape, stats):
        super().__init__()
        self.mode = mode
        self.register_buffer("p_mean", stats["proprio_mean"].clone())
        self.register_buffer("p_std", stats["proprio_std"].clone())
        d = proprio_dim + lang_dim
        if mode == "features":
            self.register_buffer("f_mean", stats["feat_mean"].clone())
            self.register_buffer("f_std", stats["feat_std"].clone())
            d += feature_dim
        if mode == "cnn":
            h, w, _ = image_shape
            convs, c = [], 3
            for s in (2, 1, 1, 1):  # each conv LayerNorm'd over (C, H, W), as the project's CNN
                convs += [nn.Conv2d(c, 32, 3, s), nn.GroupNorm(1, 32), nn.ReLU()]
                c, h, w = 32, (h - 3) // s + 1, (w - 3) // s + 1
            self.cnn = nn.Sequential(*convs, nn.Flatten(), nn.Linear(32 * h * w, 50), nn.LayerNorm(50), nn.Tanh())
            d += 50
        self.out_dim = d

    def forward(self, obs):
        parts = []
        if self.mode == "features":
            parts.append((obs["features"] - self.f_mean) / self.f_std)
        if self.mode == "cnn":
            parts.append(self.cnn(obs["image"].permute(0, 3, 1, 2).float() / 255.0 - 0.5))
        parts += [(obs["proprio"] - self.p_mean) / self.p_std, obs["lang"]]
        return torch.cat(parts, -1)


class Actor(nn.Module):
    def __init__(self, z, a, hidden):
        super().__init__()
        self.net = mlp(z, 2 * a, hidden)

    def forward(self, z):
        mean, log_std = self.net(z).chunk(2, -1)
        return mean, (log_std - 1.0).clamp(-20.0, 2.0)

    def sample(self, z):
        mean, log_std = self(z)
        u = mean + log_std.exp() * torch.randn_like(mean)
        a = torch.tanh(u)
        logp = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return a, logp, mean


class PlainCalQL:
    def __init__(self, mode, dims, stats, hidden=(256, 256), n_actions=10, gamma=0.99, bc_weight=0.1, bf16=False):
        P, L, Fd, img, A = dims
        self.encoder = Encoder(mode, P, L, Fd, img, stats)
        z = self.encoder.out_dim
        self.q1, self.q2 = mlp(z + A, 1, hidden), mlp(z + A, 1, hidden)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.encoder_t = copy.deepcopy(self.encoder)  # the target critic's own encoder, as the project's
        self.actor = Actor(z, A, hidden)
        self.log_alpha = torch.zeros((), requires_grad=True)
        critic_params = list(self.encoder.parameters()) + list(self.q1.parameters()) + list(self.q2.parameters())
        self.critic_opt = torch.optim.Adam(critic_params, lr=3e-4)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=1e-4)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=1e-4)
        self.n, self.gamma, self.bc_weight, self.A, self.bf16 = n_actions, gamma, bc_weight, A, bf16

    def q(self, net, z, a):
        return net(torch.cat([z, a], -1))[:, 0]

    def update(self, batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self._update(batch)

    def _update(self, batch):
        obs, next_obs, a_data = batch["obs"], batch["next_obs"], batch["actions"]
        r, disc, mc = batch["rewards"], batch["discounts"], batch["mc_returns"]
        B, A, n = a_data.shape[0], self.A, self.n

        # --- critic
        z = self.encoder(obs)
        with torch.no_grad():
            z_next = self.encoder(next_obs)
            z_next_t = self.encoder_t(next_obs) if self.encoder.mode == "cnn" else z_next
            a_next, _, _ = self.actor.sample(z_next)
            q_next_t = torch.min(self.q(self.q1_t, z_next_t, a_next), self.q(self.q2_t, z_next_t, a_next))
            target = r + disc * q_next_t
        q1_data, q2_data = self.q(self.q1, z, a_data), self.q(self.q2, z, a_data)
        td = F.mse_loss(q1_data.float(), target) + F.mse_loss(q2_data.float(), target)
        rand, cur, nxt = [[], []], [[], []], [[], []]
        for _ in range(n):
            with torch.no_grad():
                a_r = torch.rand(B, A) * 2 - 1
                a_c, logp_c, _ = self.actor.sample(z.detach())
                a_n, logp_n, _ = self.actor.sample(z_next)
            for k, qnet in enumerate((self.q1, self.q2)):
                rand[k].append(self.q(qnet, z, a_r).float() - A * math.log(0.5))
                cur[k].append(torch.maximum(self.q(qnet, z, a_c).float(), mc) - logp_c.float())
                nxt[k].append(torch.maximum(self.q(qnet, z, a_n).float(), mc) - logp_n.float())
        cql = 0.0
        for k, q_data in enumerate((q1_data, q2_data)):
            ood = torch.logsumexp(torch.stack(rand[k] + nxt[k] + cur[k], 1), 1)
            cql = cql + (ood - q_data.float()).mean()
        critic_loss = td + 5.0 * cql
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()

        # --- actor (after the critic step, on detached features)
        zd = z.detach()
        alpha = self.log_alpha.exp().detach()
        a_pi, logp_pi, mean = self.actor.sample(zd)
        q_pi = torch.min(self.q(self.q1, zd, a_pi), self.q(self.q2, zd, a_pi)).float()
        rl = (alpha * logp_pi - q_pi).mean()
        bc = ((torch.tanh(mean).float() - a_data) ** 2).mean()
        actor_loss = rl + self.bc_weight * (rl.abs() / (bc.abs() + 1e-6)).detach() * bc
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()

        # --- temperature
        alpha_loss = -(self.log_alpha * (logp_pi.detach().float() - A)).mean()
        self.alpha_opt.zero_grad()
        alpha_loss.backward()
        self.alpha_opt.step()

        # --- targets
        with torch.no_grad():
            for net, tgt in ((self.q1, self.q1_t), (self.q2, self.q2_t), (self.encoder, self.encoder_t)):
                for p, pt in zip(net.parameters(), tgt.parameters()):
                    pt.mul_(0.995).add_(p, alpha=0.005)
        return {"q_data": q1_data.detach().float().mean(), "critic_loss": critic_loss.detach()}
