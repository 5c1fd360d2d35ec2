"""Cal-QL (Nakamoto et al. 2023) with the RoboFuME actor BC term, in one readable file.

Follows the official JAX implementation (conservative_sac.py with enable_calql=True):
  critic target  y = r + (1 - done) * gamma * min(Q1', Q2')(s', a'),  a' ~ pi(s')   (no entropy term
                 unless backup_entropy; optional max-target backup over n sampled a'; with the
                 learner's n_step > 1, r sums up to n rewards of the episode and gamma (1 - done)
                 becomes the stored discount gamma^k: replay.n_step_targets)
  CQL term       per state: n uniform random actions, n policy actions at s, n policy actions at s'
                 (all evaluated at s); Cal-QL bounds the *policy-action* Q values from below by the
                 data's MC return-to-go (random actions only when bound_random_actions);
                 importance-sampled logsumexp over [Q_rand - log 0.5^d, Q_next - log pi_next,
                 Q_cur - log pi_cur] minus Q(s, a_data); weight cql_alpha (or Lagrange alpha').
  actor          alpha * log pi(a|s) - min Q(s, a) + RoboFuME BC term; automatic entropy tuning
                 with target -dim(A). The actor sees detached encoder features (the image encoder
                 is trained by the critic loss only).
All losses are computed from the same parameters and applied in one backward pass (like the JAX
code); the actor's use of the critic goes through detached critic weights so only the critic loss
trains the critic. Calibration stays on online: online episodes carry MC returns too.

Metrics come back as 0-dim tensors (no host sync inside the step); call .item() rarely.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from robofume_ros.rl.common import AgentBase, ObsDims, ScalarParam, autocast
from robofume_ros.rl.networks import NetConfig, TanhGaussianActor, grad_norm


@dataclass
class CalQLConfig:
    net: NetConfig = field(default_factory=NetConfig)  # encoder and MLP sizes
    gamma: float = 0.99  # discount
    tau: float = 5e-3  # target-network Polyak rate
    actor_lr: float = 1e-4  # actor (and entropy temperature) learning rate
    critic_lr: float = 3e-4  # critics + image encoder learning rate
    alpha_prime_lr: float = 3e-4  # Lagrange CQL weight learning rate
    batch_size: int = 256  # transitions per gradient step
    reward_scale: float = 10.0  # r' = scale*r + bias; RoboFuME raw {-1,0} -> {-5,+5} (Cal-QL antmaze mapping)
    reward_bias: float = 5.0  # see reward_scale
    use_cql: bool = True  # False turns the conservative term off entirely (plain SAC)
    calibrate: bool = True  # Cal-QL: bound policy-action Qs below by the MC return (False = CQL)
    bound_random_actions: bool = False  # also bound the random-action Qs by the MC return
    cql_alpha: float = 5.0  # CQL regulariser weight (min_q_weight)
    cql_n_actions: int = 10  # random / current-policy / next-state-policy actions per state
    cql_importance_sample: bool = True  # importance-sampled logsumexp (official default)
    cql_temp: float = 1.0  # logsumexp temperature
    cql_clip_diff_min: float = -math.inf  # clip of (logsumexp - Q_data) before averaging
    cql_clip_diff_max: float = math.inf  # clip of (logsumexp - Q_data) before averaging
    cql_lagrange: bool = False  # learn the CQL weight alpha' to hit cql_target_action_gap
    cql_target_action_gap: float = 0.8  # Lagrange target for (logsumexp - Q_data)
    max_target_backup: bool = False  # target = max over cql_n_actions sampled a' of min(Q1',Q2')
    backup_entropy: bool = False  # subtract alpha*log pi(a'|s') in the target (off in Cal-QL)
    automatic_entropy: bool = True  # learn alpha towards target_entropy
    target_entropy: Optional[float] = None  # None -> -dim(A)
    init_alpha: float = 1.0  # initial entropy temperature
    bc_weight: float = 0.1  # RoboFuME actor BC weight; the BC loss is rescaled to |RL loss| first (0 = off)
    bc_loss: str = "mse"  # "mse" (tanh(mean) vs data action) or "nll" (-log pi(a_data|s))
    bc_only_successful: bool = False  # BC only on transitions of episodes that succeeded (online
    # exploration that failed is not imitated; RL still sees it)
    bc_online: bool = True  # False: the BC term only on offline transitions (online attempts,
    # noisy from exploration, train the critic and the RL term only)
    actor_proprio_dropout: float = 0.0  # share of actor inputs (per transition, training only) whose
    # proprioception is set to its mean: the actor must read the image
    # where hand pose alone is ambiguous (causal confusion with BC data)
    grad_clip: float = 0.0  # max global grad norm per optimiser (0 = no clipping)
    bf16: bool = False  # bf16 autocast for the forward passes (loss math stays fp32)
    online_ratio: float = 0.5  # share of each batch drawn from the online store once it has data


class CalQL(AgentBase):
    def __init__(self, cfg: CalQLConfig, dims: ObsDims, device="cpu"):
        self._build_critics(cfg, dims, device)
        self.actor = TanhGaussianActor(self.encoder.out_dim, dims.action_dim, cfg.net).to(device)
        self.log_alpha = ScalarParam(math.log(cfg.init_alpha)).to(device)
        self.log_alpha_prime = ScalarParam(0.0).to(device)
        self.target_entropy = -float(dims.action_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.encoder_trainable = any(True for _ in self.encoder.parameters())
        self.modules = {
            "encoder": self.encoder,
            "critic": self.critic,
            "target_encoder": self.target_encoder,
            "target_critic": self.target_critic,
            "actor": self.actor,
            "log_alpha": self.log_alpha,
            "log_alpha_prime": self.log_alpha_prime,
        }
        self.critic_params = list(self.encoder.parameters()) + list(self.critic.parameters())
        self.optimizers = {
            "critic": torch.optim.Adam(self.critic_params, lr=cfg.critic_lr, fused=True),
            "actor": torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, fused=True),
            "alpha": torch.optim.Adam(self.log_alpha.parameters(), lr=cfg.actor_lr, fused=True),
            "alpha_prime": torch.optim.Adam(self.log_alpha_prime.parameters(), lr=cfg.alpha_prime_lr, fused=True),
        }

    def set_obs_stats(self, **stats):
        self.encoder.set_stats(**stats)
        self.target_encoder.set_stats(**stats)

    @torch.no_grad()
    def deterministic_value(self, z: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """min over the critics of Q(s, tanh(mean)): the value of the deterministic policy (B,), fp32."""
        return self.critic(z, torch.tanh(mean)[:, None]).float().min(0).values[:, 0]

    # ------------------------------------------------------------------------------------------
    def losses(self, batch: dict):
        """All losses and metrics for one batch (tensors: obs/next_obs dicts, actions, rewards
        (scaled; n-step sums with n_step > 1), dones, discounts, mc_returns)."""
        cfg = self.cfg
        obs, next_obs = batch["obs"], batch["next_obs"]
        a_data, r, disc, mc = batch["actions"], batch["rewards"], batch["discounts"], batch["mc_returns"]
        B, A = a_data.shape
        n = cfg.cql_n_actions
        alpha = self.log_alpha().exp().detach()
        m = {}
        with autocast(self.bf16):
            # --- encoders: online encoder (trained by the critic) on s; s' only without grad
            z = self.encoder(obs)
            with torch.no_grad():
                if self.encoder_trainable:
                    z_next = self.encoder(next_obs)
                    z_next_t = self.target_encoder(next_obs)
                else:  # no parameters: online and target encoders agree
                    z_next = z_next_t = self.encoder(next_obs)
            zd = z.detach()
            za = zd
            if cfg.actor_proprio_dropout > 0:
                keep = (torch.rand(B, 1, device=zd.device) >= cfg.actor_proprio_dropout).to(zd.dtype)
                sl = self.encoder.proprio_slice
                za = torch.cat([zd[:, : sl.start], zd[:, sl] * keep, zd[:, sl.stop :]], -1)

            # --- actor: one reparametrised sample at s (trains the actor)
            mean, log_std = self.actor(za)
            a_pi, logp_pi = self.actor.sample(mean, log_std, 1)
            q_pi = self.critic(zd, a_pi, detach_weights=True).min(0).values[:, 0]
            rl_loss = (alpha * logp_pi[:, 0] - q_pi).mean()
            if cfg.bc_weight > 0:
                if cfg.bc_loss == "nll":
                    bc_per = -self.actor.log_prob(mean, log_std, a_data)
                else:
                    bc_per = ((torch.tanh(mean) - a_data) ** 2).mean(-1)
                if cfg.bc_only_successful or not cfg.bc_online:
                    # which transitions are cloned: their episode succeeded (replay's flag) and/or
                    # they came from the offline store (sample_mixed's "online" marks the others)
                    w = batch["success"] if cfg.bc_only_successful else torch.ones_like(bc_per)
                    if not cfg.bc_online:
                        w = w * (1.0 - batch["online"])
                    bc = (w * bc_per).sum() / w.sum().clamp_min(1.0)
                    m["bc_share"] = w.mean()
                else:
                    bc = bc_per.mean()
                scale = (rl_loss.abs() / (bc.abs() + 1e-6)).detach()
                actor_loss = rl_loss + cfg.bc_weight * scale * bc
                m["bc_loss"] = bc.detach()
            else:
                actor_loss = rl_loss
            alpha_loss = -(self.log_alpha() * (logp_pi.detach() + self.target_entropy)).mean()

            # --- sampled actions for target and CQL (no gradient into the actor)
            with torch.no_grad():
                mean_n, log_std_n = self.actor(z_next)
                n_t = n if cfg.max_target_backup else 1
                a_nx, logp_nx = self.actor.sample(mean_n, log_std_n, n_t + (n if cfg.use_cql else 0))
                a_t, logp_t = a_nx[:, :n_t], logp_nx[:, :n_t]
                q_t = self.target_critic(z_next_t, a_t).min(0).values  # (B, n_t)
                if cfg.max_target_backup:
                    q_t, i = q_t.max(1)
                    logp_t = logp_t.gather(1, i[:, None])[:, 0]
                else:
                    q_t, logp_t = q_t[:, 0], logp_t[:, 0]
                if cfg.backup_entropy:
                    q_t = q_t - alpha * logp_t
                td_target = r + disc * q_t  # disc = gamma^k (1 - terminal)
                if cfg.use_cql:
                    a_next, logp_next = a_nx[:, n_t:], logp_nx[:, n_t:]
                    a_cur, logp_cur = self.actor.sample(mean.detach(), log_std.detach(), n)
                    a_rand = torch.rand(B, n, A, device=a_data.device) * 2 - 1

            # --- critics: data, random, current-policy and next-policy actions in one pass at s
            if cfg.use_cql:
                a_all = torch.cat([a_data[:, None], a_rand, a_cur, a_next], 1)  # (B, 1+3n, A)
            else:
                a_all = a_data[:, None]
            q_all = self.critic(z, a_all).float()  # (2,B,1+3n)

        q_data = q_all[:, :, 0]
        td_loss = ((q_data - td_target) ** 2).mean(-1).sum()
        critic_loss = td_loss
        alpha_prime_loss = torch.zeros((), device=q_all.device)
        if cfg.use_cql:
            q_rand, q_cur, q_next = q_all[:, :, 1 : 1 + n], q_all[:, :, 1 + n : 1 + 2 * n], q_all[:, :, 1 + 2 * n :]
            m["q_policy"] = q_cur.mean().detach()
            if cfg.calibrate:
                lb = mc.view(1, B, 1)
                m["bound_rate"] = (q_cur < lb).float().mean().detach()
                q_cur = torch.maximum(q_cur, lb)
                q_next = torch.maximum(q_next, lb)
                if cfg.bound_random_actions:
                    q_rand = torch.maximum(q_rand, lb)
            if cfg.cql_importance_sample:
                cat = torch.cat([q_rand - A * math.log(0.5), q_next - logp_next[None], q_cur - logp_cur[None]], -1)
            else:
                cat = torch.cat([q_rand, q_data[..., None], q_next, q_cur], -1)
            ood = torch.logsumexp(cat / cfg.cql_temp, -1) * cfg.cql_temp  # (2,B)
            gap = (ood - q_data).clamp(cfg.cql_clip_diff_min, cfg.cql_clip_diff_max).mean(-1)  # (2,)
            if cfg.cql_lagrange:
                alpha_prime = self.log_alpha_prime().exp().clamp(0.0, 1e6)
                cql_loss = (alpha_prime.detach() * cfg.cql_alpha * (gap - cfg.cql_target_action_gap)).sum()
                alpha_prime_loss = (
                    -0.5 * (alpha_prime * cfg.cql_alpha * (gap.detach() - cfg.cql_target_action_gap)).sum()
                )
                m["alpha_prime"] = alpha_prime.detach()
            else:
                cql_loss = cfg.cql_alpha * gap.sum()
            critic_loss = critic_loss + cql_loss
            m["cql_gap"] = gap.mean().detach()
            m["cql_loss"] = cql_loss.detach()

        m.update(
            q_data=q_data.mean().detach(),
            mc_return=mc.mean(),
            td_target=td_target.mean(),
            td_loss=td_loss.detach(),
            actor_loss=actor_loss.detach(),
            alpha=alpha,
            entropy=-logp_pi.mean().detach(),
            q_pi=q_pi.mean().detach(),
        )
        total = critic_loss + actor_loss + alpha_prime_loss
        if cfg.automatic_entropy:
            total = total + alpha_loss
        return total, m

    def update(self, batch: dict) -> dict:
        """One gradient step on every network; returns metrics as 0-dim tensors."""
        cfg = self.cfg
        total, m = self.losses(batch)
        for o in self.optimizers.values():
            o.zero_grad(set_to_none=True)
        total.backward()
        m["critic_grad_norm"] = grad_norm(self.critic_params)
        m["actor_grad_norm"] = grad_norm(self.actor.parameters())
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.critic_params, cfg.grad_clip)
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        self.step_optimizers_and_targets()
        return m
