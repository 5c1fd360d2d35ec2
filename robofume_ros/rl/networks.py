"""Networks shared by every algorithm: observation encoder, stacked twin critics, tanh-Gaussian actor.

Observation -> ObsEncoder -> z (one flat vector per state) -> heads.
  mode "state":    z = [normalised proprio, language embedding]
  mode "features": z = [normalised frozen-CNN features (Episode.features), proprio, language]; with
                   feature_embed > 0 the features first go through a trainable projection (critic-trained)
  mode "cnn":      z = [RoboFuME CNN(image), proprio, language]; the CNN is trained by the critic
                   loss only; the actor always sees z.detach().
The twin critics are one module with stacked weights (E=2 members) evaluated in one call, and the
state part of the first layer is computed once per state and broadcast across all the actions
evaluated at that state (data, random, policy actions: one pass). The critic's forward and
backward are written by hand (_StackedMLP) for speed on CPU; StackedQ.forward_reference is the
same function in plain autograd ops, and the tests check they agree.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from robofume_ros.vision.preprocess import to_pixels

_HALF, _ONE = (0.5,) * 3, (1.0,) * 3  # the CNN's input: pixels in [-0.5, 0.5]


@dataclass
class NetConfig:
    obs_mode: str = "state"  # "state" | "features" (frozen pre-trained CNN) | "cnn" (trainable RoboFuME CNN)
    hidden: tuple = (256, 256)  # hidden units of every MLP head (actor, critics, value)
    cnn_channels: int = 32  # RoboFuME CNN: channels of each of the 4 conv layers
    cnn_strides: tuple = (2, 1, 1, 1)  # RoboFuME CNN: strides of the 4 3x3 conv layers
    cnn_embed: int = 50  # RoboFuME CNN: size of the linear+LayerNorm+tanh projection after the convs
    feature_embed: int = 0  # "features": Linear+LayerNorm+tanh projection of the frozen features to this
    # size, trained by the critic loss like the CNN (0 = feed them unprojected)
    log_std_min: float = -20.0  # actor: clamp of log std (official Cal-QL values)
    log_std_max: float = 2.0  # actor: clamp of log std
    log_std_offset: float = -1.0  # actor: added to the raw log std output (official TanhGaussianPolicy)


def orthogonal_(w: torch.Tensor, gain: float) -> torch.Tensor:
    """Orthogonal init of a (in, out) weight (stored transposed w.r.t. nn.Linear)."""
    with torch.no_grad():
        t = torch.empty(w.shape[-1], w.shape[-2])
        nn.init.orthogonal_(t, gain)
        w.copy_(t.t())
    return w


def linear(in_dim: int, out_dim: int, gain: float) -> nn.Linear:
    """nn.Linear with orthogonal weights (gain) and zero bias."""
    lin = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(lin.weight, gain)
    nn.init.zeros_(lin.bias)
    return lin


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, out_gain: float = 1e-2) -> nn.Sequential:
    """Plain ReLU MLP with orthogonal init (sqrt(2) hidden, out_gain output), zero biases."""
    layers, d = [], in_dim
    for h in hidden:
        layers += [linear(d, h, math.sqrt(2.0)), nn.ReLU()]
        d = h
    layers.append(linear(d, out_dim, out_gain))
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
        self.proj = linear(channels * H * W, embed, 1.0)
        self.norm = nn.LayerNorm(embed)
        self.out_dim = embed

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = to_pixels(img, None, _HALF, _ONE)
        x = self.convs(x).flatten(1)
        return torch.tanh(self.norm(self.proj(x).float()))


class ObsEncoder(nn.Module):
    """Observation dict -> flat state vector z. Holds the normalisation statistics as buffers
    (so they travel with the policy weights). obs keys: proprio (B,P) float, lang (B,L) float,
    and image (B,H,W,3) uint8 for mode "cnn" or features (B,F) float for mode "features"."""

    def __init__(
        self,
        cfg: NetConfig,
        proprio_dim: int,
        lang_dim: int,
        feature_dim: Optional[int] = None,
        image_shape: Optional[tuple] = None,
    ):
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
            self.feat_proj = None
            if cfg.feature_embed > 0:
                # 1280 image dims would otherwise drown the 4 proprio dims and the instruction in z
                self.feat_proj = nn.Sequential(
                    linear(feature_dim, cfg.feature_embed, 1.0), nn.LayerNorm(cfg.feature_embed), nn.Tanh()
                )
            d += cfg.feature_embed if cfg.feature_embed > 0 else feature_dim
        elif self.mode == "cnn":
            if image_shape is None:
                raise ValueError("obs_mode 'cnn' needs image_shape")
            self.cnn = RoboFuMECNN(image_shape, cfg.cnn_channels, cfg.cnn_strides, cfg.cnn_embed)
            d += self.cnn.out_dim
        elif self.mode != "state":
            raise ValueError(f"unknown obs_mode {self.mode!r}")
        self.out_dim = d
        # where the normalised proprioception sits in z (after the image part, before the instruction)
        self.proprio_slice = slice(d - proprio_dim - lang_dim, d - lang_dim)
        # rnd_input's size: the fixed (untrained) part of the observation, unprojected
        self.rnd_dim = proprio_dim + lang_dim + (feature_dim if self.mode == "features" else 0)

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
            f = (obs["features"] - self.feat_mean) / self.feat_std
            parts.append(f if self.feat_proj is None else self.feat_proj(f).float())
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
    is computed once per state and broadcast over its N actions; the output layer runs in fp32
    (Q values of a few hundred need fp32 resolution). See _StackedMLP for how it runs.
    """

    def __init__(self, in_dim: int, action_dim: int, hidden: Sequence[int], n: int = 2):
        super().__init__()
        self.n = n
        h0 = hidden[0]
        self.w_z = nn.Parameter(torch.empty(n, in_dim, h0))
        self.w_a = nn.Parameter(torch.empty(n, action_dim, h0))
        self.b0 = nn.Parameter(torch.zeros(n, 1, h0))
        for e in range(n):  # orthogonal init of the joint first layer [W_z; W_a]
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

    def forward(self, z: torch.Tensor, a: torch.Tensor, detach_weights: bool = False) -> torch.Tensor:
        """Q values (E,B,N) in fp32. detach_weights: gradients flow into z and a only (the actor's
        use of the critic), never into the critic's parameters."""
        # Under autocast the hidden layers run in the autocast dtype (bf16): weights are cast once
        # per call, the big (E, B*N, H) activations are created in bf16 directly and never re-cast.
        dev = z.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.float32
        params = [self.w_z, self.w_a, self.b0, self.w_out, self.b_out, *self.ws, *self.bs]
        if detach_weights:
            params = [p.detach() for p in params]
        with torch.autocast(device_type=dev, enabled=False):
            return _StackedMLP.apply(dt, z, a, *params)

    def forward_reference(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The same function with plain autograd ops (for tests of the fused forward/backward)."""
        E = self.n
        B, N, A = a.shape
        dev = z.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else torch.float32
        with torch.autocast(device_type=dev, enabled=False):
            c = (lambda t: t.to(dt)) if dt != torch.float32 else (lambda t: t)
            hz = torch.baddbmm(c(self.b0), c(z).unsqueeze(0).expand(E, -1, -1), c(self.w_z))  # (E,B,H)
            ha = torch.bmm(c(a).reshape(1, B * N, A).expand(E, -1, -1), c(self.w_a))  # (E,B*N,H)
            h = torch.relu_((ha.view(E, B, N, -1) + hz.unsqueeze(2)).view(E, B * N, -1))
            for w, b in zip(self.ws, self.bs):
                h = torch.relu_(torch.baddbmm(c(b), h, c(w)))
            q = torch.baddbmm(self.b_out, h.float(), self.w_out)  # (E,B*N,1) fp32 output layer
        return q.view(E, B, N)


def _onednn_linear_relu_ok() -> bool:
    """oneDNN's linear with a fused bias + ReLU epilogue (CPU builds with mkldnn)."""
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


USE_ONEDNN_LINEAR = _onednn_linear_relu_ok()
ONEDNN_MIN_ROWS = (
    2048  # below, addmm + relu_ is faster (the oneDNN call's fixed cost: 0.25 vs 0.14 ms at 256 rows, fp32)
)


def _linear_relu(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """relu(h @ w + b) for h (M,K), w (K,H), b (H,): on CPU, for the big row counts, one oneDNN call
    with the bias and the ReLU fused into the matmul (one pass over the output instead of three);
    plain addmm + ReLU elsewhere, or for good (with one log line) if the oneDNN call ever fails."""
    global USE_ONEDNN_LINEAR
    if USE_ONEDNN_LINEAR and h.device.type == "cpu" and h.shape[0] >= ONEDNN_MIN_ROWS:
        try:
            return torch.ops.mkldnn._linear_pointwise(h, w.t().contiguous(), b, "relu", [], "")
        except RuntimeError as ex:
            USE_ONEDNN_LINEAR = False
            logging.getLogger(__name__).warning("oneDNN fused linear+ReLU failed (%s); using addmm + ReLU", ex)
    return torch.addmm(b, h, w).relu_()


USE_NATIVE = True  # the fused CPU kernels of rl/native.py where they load (tests switch it off)


def _native_kernels(z: torch.Tensor, dt: torch.dtype, action_dim: int):
    """rl/native.py's compiled kernels when they apply here (CPU with AVX-512, fp32/bf16, <= 16 action
    dims), else None (plain PyTorch ops)."""
    if not USE_NATIVE or z.device.type != "cpu" or dt not in (torch.float32, torch.bfloat16) or action_dim > 16:
        return None
    from robofume_ros.rl import native

    k = native.kernels()
    # the scalar build (no AVX-512 here) is no faster than PyTorch's own vectorised ops
    return k if k is not None and k.vector_width() > 1 else None


def _relu_grad_(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g *= (h > 0), in place (h is the ReLU output)."""
    return torch.ops.aten.threshold_backward.grad_input(g, h, 0, grad_input=g)


class _StackedMLP(torch.autograd.Function):
    """StackedQ's forward and a hand-written backward with the fewest passes over the big (B*N, H)
    activations. Per member (E is 2, a Python loop): hidden layers are one oneDNN call with bias +
    ReLU fused, and weight gradients are skipped entirely when the weights do not need them (the
    actor's pass). Around them, on CPUs with AVX-512, four fused kernels (rl/native.py) each make
    one pass: the first layer (state part broadcast over the N actions + a W_a + ReLU), the fp32
    output layer read straight from the bf16 rows, its backward (output gradient, last ReLU mask,
    w_out's and the last bias's gradients) and the first layer's backward (mask, per-state sums,
    W_a's gradient). Elsewhere the same steps run as PyTorch ops: repeat_interleave + addmm_ +
    relu_, a matrix-vector product (a (M,H)x(H,1) bmm runs far off peak on CPU), a broadcast
    multiply instead of a K=1 matmul, ReLU masks applied in place. Mathematically the same
    function and gradients as StackedQ.forward_reference (tested both ways)."""

    @staticmethod
    def forward(ctx, dt, z, a, w_z, w_a, b0, w_out, b_out, *wbs):
        L = len(wbs) // 2
        E = w_z.shape[0]
        B, N, A = a.shape
        M = B * N
        c = (lambda t: t.to(dt)) if dt != torch.float32 else (lambda t: t)
        zc, wzc, wac, b0c = c(z), c(w_z), c(w_a), c(b0)
        ac = c(a).reshape(M, A)
        wcs = [c(w) for w in wbs[:L]]
        bcs = [c(b) for b in wbs[L:]]
        K = _native_kernels(z, dt, A)
        ctx.native = K
        if K is not None:
            ac = ac.contiguous()
        q = torch.empty(E, M, dtype=torch.float32, device=z.device)
        hs = []
        for e in range(E):
            hz = torch.addmm(b0c[e, 0], zc, wzc[e])  # (B,H0)
            if K is not None:  # one pass: broadcast, + a W_a (fp32 weights), ReLU
                h = K.first_layer_fwd(hz, ac, w_a[e].detach().float().contiguous())
            else:
                # each state's part, once per action (repeat_interleave: ~5x faster than reshaping
                # a stride-0 expand into a fresh buffer on CPU), then W_a a accumulated in place
                h = hz.repeat_interleave(N, 0) if N > 1 else hz
                h.addmm_(ac, wac[e]).relu_()
            he = [h]
            for w, b in zip(wcs, bcs):
                h = _linear_relu(h, w[e], b[e, 0])
                he.append(h)
            # fp32 output layer (Q values of a few hundred need fp32 resolution)
            if K is not None:  # fp32 dot products straight from the bf16 rows (no fp32 copy)
                K.out_fwd(h, w_out[e, :, 0].detach().contiguous(), 0.0, q[e])
            else:
                torch.mv(h.float() if dt != torch.float32 else h, w_out[e, :, 0], out=q[e])
            hs.append(he)
        q.add_(b_out.view(E, 1))
        ctx.dt, ctx.shape = dt, (E, B, N, A)
        # inputs and weights go through save_for_backward for autograd's in-place-modification
        # check; the activations and cast weights (internal, never modified) ride on ctx
        ctx.save_for_backward(z, a, w_z, w_a, w_out, *wbs[:L])
        ctx.inter = (zc, ac, wzc, wac, wcs, hs)
        return q.view(E, B, N)

    @staticmethod
    def backward(ctx, gq):
        dt = ctx.dt
        E, B, N, A = ctx.shape
        M = B * N
        z, a, _, _, w_out, *_ = ctx.saved_tensors
        zc, ac, wzc, wac, wcs, hs = ctx.inter
        del ctx.inter
        need = ctx.needs_input_grad  # (dt, z, a, w_z, w_a, b0, w_out, b_out, *ws, *bs)
        L = len(wcs)
        g = gq.reshape(E, M)
        grads = {k: [] for k in ("z", "a", "w_z", "w_a", "b0", "w_out", "ws", "bs")}
        K = ctx.native
        if K is not None:
            g = g.contiguous()
        else:
            gd, wod = g.to(dt), w_out.to(dt)
        for e in range(E):
            he = hs[e]
            gw, gb = [None] * L, [None] * L
            if K is not None:
                # one pass: dh = g w_out^T masked by the last ReLU, w_out's gradient, the last bias's
                dh, g_wo, g_bl = K.out_bwd(g[e], w_out[e, :, 0].detach().contiguous(), he[-1])
                if need[6]:
                    grads["w_out"].append(g_wo.view(1, -1))
            else:
                if need[6]:
                    grads["w_out"].append(torch.mm(gd[e].unsqueeze(0), he[-1]).float())  # (1,H)
                dh = torch.outer(gd[e], wod[e, :, 0])  # (M,H)
                _relu_grad_(dh, he[-1])
            for i in range(L - 1, -1, -1):
                if need[8 + i]:
                    gw[i] = torch.mm(he[i].t(), dh).float()
                if need[8 + L + i]:
                    gb[i] = g_bl if (K is not None and i == L - 1) else dh.sum(0).float()
                dh = torch.mm(dh, wcs[i][e].t())
                if K is None or i > 0:  # the first layer's mask: first_layer_bwd below
                    _relu_grad_(dh, he[i])
            grads["ws"].append(gw)
            grads["bs"].append(gb)
            # first layer: dh is the gradient of its pre-activation (M, H0)
            if K is not None:  # one pass: first ReLU's mask, per-state sums, a^T dh
                dhz32, g_wa = K.first_layer_bwd(dh, he[0], ac, B, bool(need[4]))
                if need[4]:
                    grads["w_a"].append(g_wa)
                dhz = dhz32.to(dt)
                if need[5]:
                    grads["b0"].append(dhz32.sum(0))
            else:
                if need[4]:
                    grads["w_a"].append(torch.mm(ac.t(), dh).float())
                dhz = dh.view(B, N, -1).sum(1) if (need[1] or need[3] or need[5]) else None  # (B,H0)
                if need[5]:
                    grads["b0"].append(dhz.sum(0).float())
            he.clear()  # free this member's activations early
            if need[2]:
                grads["a"].append(torch.mm(dh, wac[e].t()))
            if need[3]:
                grads["w_z"].append(torch.mm(zc.t(), dhz).float())
            if need[1]:
                grads["z"].append(torch.mm(dhz, wzc[e].t()))
        st = lambda k, shape: torch.stack(grads[k]).view(shape) if grads[k] else None
        H0 = wzc.shape[2]
        g_z = sum(grads["z"]).to(z.dtype) if grads["z"] else None
        g_a = sum(grads["a"]).view(B, N, A).to(a.dtype) if grads["a"] else None
        g_ws = [torch.stack([grads["ws"][e][i] for e in range(E)]) if need[8 + i] else None for i in range(L)]
        g_bs = [
            torch.stack([grads["bs"][e][i] for e in range(E)]).unsqueeze(1) if need[8 + L + i] else None
            for i in range(L)
        ]
        return (
            None,
            g_z,
            g_a,
            st("w_z", (E, -1, H0)),
            st("w_a", (E, A, H0)),
            st("b0", (E, 1, H0)),
            st("w_out", (E, -1, 1)),
            g.sum(1).view(E, 1, 1) if need[7] else None,
            *g_ws,
            *g_bs,
        )


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, exp(log_std)^2) of a diagonal Gaussian, summed over the last dimension."""
    return (-0.5 * ((x - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


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
        corr = (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return gaussian_log_prob(u, mean, log_std) - corr

    def sample(self, mean, log_std, n: int):
        """n reparametrised samples per state: actions (B,n,A), log-probs (B,n)."""
        m, ls = mean.unsqueeze(1), log_std.unsqueeze(1)
        u = m + ls.exp() * torch.randn(mean.shape[0], n, mean.shape[1], device=mean.device)
        return torch.tanh(u), self._log_prob_pre_tanh(u, m, ls)

    def explore(self, mean, log_std, noise_scale: float = 1.0, eps: Optional[torch.Tensor] = None):
        """Actions for acting: tanh(mean + noise_scale * std * eps). noise_scale 1 samples the policy's
        own distribution, 0 is the deterministic tanh(mean), in between narrows the exploration.
        eps: standard-normal noise to use (e.g. temporally correlated, rl/exploration.py); None draws it."""
        if noise_scale <= 0:
            return torch.tanh(mean)
        if eps is None:
            eps = torch.randn_like(mean)
        return torch.tanh(mean + noise_scale * log_std.exp() * eps.to(mean.dtype).view_as(mean))

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
