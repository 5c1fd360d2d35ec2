"""Plumbing shared by the algorithm files: observation sizes, acting, state dicts, batch conversion."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


@dataclass
class ObsDims:
    proprio_dim: int  # size of the proprioception vector
    action_dim: int  # size of the (normalised, [-1,1]) action vector
    lang_dim: int  # size of the instruction embedding fed to the networks
    feature_dim: Optional[int] = None  # frozen-encoder feature size (obs_mode "features")
    image_shape: Optional[tuple] = None  # (H, W, 3) (obs_mode "cnn")


def autocast(enabled: bool):
    """bf16 autocast on CPU (or CUDA) when enabled, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.autocast(device_type=dev, dtype=torch.bfloat16)


_HOST_MEMORY_TUNED = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse the step's large buffers instead of returning them to the OS.

    A gradient step allocates and frees the same few (B*N, H) activation buffers (8-16 MiB each)
    every time. With glibc defaults they are often mmap'd fresh or trimmed off the heap, and each
    then costs ~2k page faults on first touch (about 20% of a state-based Cal-QL step on CPU).
    Serving allocations up to 32 MiB from the heap and only trimming beyond 256 MiB of free heap
    keeps them resident. Process-wide, idempotent; Linux/glibc only; ROBOFUME_KEEP_FREED_MEMORY=0
    turns it off. Returns whether the setting is active."""
    global _HOST_MEMORY_TUNED
    if _HOST_MEMORY_TUNED:
        return True
    if os.environ.get("ROBOFUME_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        ok = libc.mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 256 << 20) == 1
    except (OSError, AttributeError):
        ok = False
    _HOST_MEMORY_TUNED = ok
    return ok


@contextlib.contextmanager
def denormals_flushed():
    """Flush-to-zero for the CPU math inside the block: the calling thread and every thread of
    its intra-op team (rl/native.py's kernels do it; torch.set_flush_denormal alone reaches one
    thread and leaves results depending on which thread computed them), restored on exit so
    other code in the process (numpy, the safety envelope) keeps IEEE denormals. Denormal
    gradients (the CQL logsumexp's softmax weights below exp(-87)) otherwise slow fp32 matmuls by
    10x and more. Two parallel regions per use (microseconds). No compiled kernels or
    ROBOFUME_FLUSH_DENORMAL=0: nothing is changed."""
    k = None
    if os.environ.get("ROBOFUME_FLUSH_DENORMAL", "1") != "0":
        from robofume_ros.rl import native

        k = native.kernels()
    prev = k.flush_denormal_all_threads(True) if k is not None else -1
    try:
        yield prev >= 0
    finally:
        if prev == 0:
            k.flush_denormal_all_threads(False)


def to_torch(batch: dict, device="cpu") -> dict:
    """numpy batch (nested dicts) -> torch tensors without copies where possible."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, dict):
            out[k] = to_torch(v, device)
        elif isinstance(v, np.ndarray):
            out[k] = torch.from_numpy(v).to(device)
        else:
            out[k] = v
    return out


class AgentBase:
    """Common acting / (de)serialisation. Subclasses set self.encoder, self.actor, self.modules
    (dict name -> nn.Module or Parameter holder) and self.optimizers (dict name -> optimizer)."""

    cfg = None
    modules: dict
    optimizers: dict
    bf16: bool = False

    def _build_critics(self, cfg, dims, device) -> None:
        """What every actor-critic here starts from: the observation encoder, twin critics and their
        target copies on `device` (frozen targets, updated by Polyak averaging)."""
        import copy

        from robofume_ros.rl.networks import ObsEncoder, StackedQ

        self.cfg, self.dims, self.device, self.bf16 = cfg, dims, device, cfg.bf16
        if torch.device(device).type == "cpu":
            keep_freed_memory()  # reuse the step's big activation buffers (no page faults)
        self.encoder = ObsEncoder(cfg.net, dims.proprio_dim, dims.lang_dim, dims.feature_dim, dims.image_shape).to(
            device
        )
        self.critic = StackedQ(self.encoder.out_dim, dims.action_dim, cfg.net.hidden, 2).to(device)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)

    @torch.no_grad()
    def act(
        self, obs: dict, deterministic: bool = True, noise_scale: float = 1.0, eps: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """obs: tensors (B, ...) with 'lang' already embedded. Returns actions (B, A) in [-1,1];
        stochastic ones with the actor's std scaled by noise_scale and, if given, the standard-normal
        noise eps (B, A) (see TanhGaussianActor.explore, rl/exploration.py)."""
        with autocast(self.bf16):
            z = self.encoder(obs)
            mean, log_std = self.actor(z)
        return self.actor.explore(mean.float(), log_std.float(), 0.0 if deterministic else noise_scale, eps)

    @torch.no_grad()
    def set_value_offset(self, value: float) -> None:
        """Start every value head (critics, their targets, IQL's V) at `value` (output bias; the
        output weights are initialised near zero, so Q(s, a) ~= value everywhere)."""
        for name in ("critic", "target_critic"):
            if name in self.modules:
                self.modules[name].b_out.fill_(value)
        if "value" in self.modules:
            self.modules["value"][-1].bias.fill_(value)  # mlp(): the last layer is the output Linear

    def step_optimizers_and_targets(self) -> None:
        """Apply every optimizer, then Polyak-average the target critic (and target encoder when
        the encoder trains) towards the online ones at rate cfg.tau."""
        from robofume_ros.rl.networks import soft_update

        for o in self.optimizers.values():
            o.step()
        soft_update(self.target_critic, self.critic, self.cfg.tau)
        if self.encoder_trainable:
            soft_update(self.target_encoder, self.encoder, self.cfg.tau)

    @torch.no_grad()
    def q_values(self, obs: dict, actions: torch.Tensor) -> torch.Tensor:
        """min(Q1,Q2)(s,a) for (B,A) actions -> (B,)."""
        with autocast(self.bf16):
            return self.critic(self.encoder(obs), actions[:, None]).float().min(0).values[:, 0]

    def policy_state_dict(self) -> dict:
        """What the policy node needs: encoder (with normalisation stats) + actor."""
        sd = {f"encoder.{k}": v.detach().clone() for k, v in self.encoder.state_dict().items()}
        sd.update({f"actor.{k}": v.detach().clone() for k, v in self.actor.state_dict().items()})
        return sd

    def state_dict(self) -> dict:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
        }

    def load_state_dict(self, sd: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(sd["modules"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(sd["optimizers"][k])

    def set_obs_stats(self, **stats) -> None:
        for m in self.modules.values():
            if hasattr(m, "set_stats"):
                m.set_stats(**stats)

    def train_mode(self, flag: bool = True):
        for m in self.modules.values():
            m.train(flag)


class ScalarParam(torch.nn.Module):
    """A single learnable scalar (log alpha, log alpha')."""

    def __init__(self, value: float):
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(float(value)))

    def forward(self):
        return self.value
