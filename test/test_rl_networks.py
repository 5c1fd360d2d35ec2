"""StackedQ's hand-written forward/backward equals the plain-autograd reference (fp32 and bf16),
with the fused native kernels (rl/native.py) and with plain PyTorch ops."""

import shutil

import numpy as np
import pytest
import torch

from robofume_ros.rl import native, networks
from robofume_ros.rl.networks import StackedQ


def _use_native(monkeypatch, on: bool):
    """Run the critic with (on) or without the fused kernels; on=True needs them built here."""
    if on and networks._native_kernels(torch.zeros(1), torch.float32, 3) is None:
        pytest.skip("fused kernels not available on this machine (no compiler or no AVX-512)")
    monkeypatch.setattr(networks, "USE_NATIVE", on)


def test_native_kernels_build_where_a_compiler_is():
    """With a C++ compiler and Python headers (tools/setup.sh's machines) the kernels must load:
    otherwise the learner silently runs at the old speed."""
    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("no C++ compiler")
    k = native.kernels()
    assert k is not None, "rl/native.py could not build or load critic_kernels.cpp (see its log line)"
    assert k.vector_width() in (1, 16)


def _grads(q_fn, critic, z, a, gq):
    for p in list(critic.parameters()) + [z, a]:
        p.grad = None
    q = q_fn(z, a)
    (q * gq).sum().backward()
    return q.detach(), [p.grad.clone() for p in list(critic.parameters()) + [z, a]]


@pytest.mark.parametrize("native_kernels", [True, False])
@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("hidden", [(64, 64), (32, 48, 40), (16,), (20, 24)])
def test_fused_critic_matches_reference_fp32(hidden, onednn, native_kernels, monkeypatch):
    monkeypatch.setattr(networks, "USE_ONEDNN_LINEAR", onednn and networks.USE_ONEDNN_LINEAR)
    monkeypatch.setattr(networks, "ONEDNN_MIN_ROWS", 0)  # the test's few rows take the oneDNN path too
    _use_native(monkeypatch, native_kernels)
    critic, z, a, gq = _setup(hidden)
    q1, g1 = _grads(critic, critic, z, a, gq)
    q0, g0 = _grads(critic.forward_reference, critic, z, a, gq)
    assert q1.dtype == torch.float32 and q1.shape == (2, 9, 5)
    torch.testing.assert_close(q1, q0, rtol=1e-5, atol=1e-5)
    for x, y in zip(g1, g0):
        assert x.dtype == y.dtype and x.shape == y.shape
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native_kernels", [True, False])
def test_fused_critic_bf16_error_like_reference(native_kernels, monkeypatch):
    """Under bf16 autocast both versions round differently; each must stay as close to the fp32
    result as the plain-autograd bf16 version (relative L2 error)."""
    _use_native(monkeypatch, native_kernels)
    critic, z, a, gq = _setup((64, 64))
    qt, gt = _grads(critic.forward_reference, critic, z, a, gq)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q1, g1 = _grads(critic, critic, z, a, gq)
        q0, g0 = _grads(critic.forward_reference, critic, z, a, gq)
    rel = lambda x, t: ((x - t).norm() / t.norm()).item()
    assert q1.dtype == torch.float32
    assert rel(q1, qt) <= max(2 * rel(q0, qt), 1e-2)
    for x, y, t in zip(g1, g0, gt):
        assert x.dtype == t.dtype and x.shape == t.shape
        assert rel(x, t) <= max(2 * rel(y, t), 2e-2), (rel(x, t), rel(y, t))


def _setup(hidden):
    torch.manual_seed(0)
    critic = StackedQ(12, 3, hidden, 2)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(0.1 * torch.randn_like(p))  # non-zero biases, non-tiny output layer
    z = torch.randn(9, 12, requires_grad=True)
    a = (torch.rand(9, 5, 3) * 2 - 1).requires_grad_()
    return critic, z, a, torch.randn(2, 9, 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_native_kernels_match_plain_ops_and_keep_nan(dtype):
    """Each fused kernel against the PyTorch ops it replaces, at a width that is not a multiple of
    the vector length (tails), one action per state and several; NaN activations stay NaN (a
    diverging critic must not be hidden by the kernels)."""
    k = networks._native_kernels(torch.zeros(1), dtype, 3)
    if k is None:
        pytest.skip("fused kernels not available on this machine")
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.manual_seed(0)
    for B, N, A, H in ((5, 3, 3, 37), (4, 1, 2, 16), (3, 31, 7, 256)):
        M = B * N
        hz, a = torch.randn(B, H).to(dtype), (torch.rand(M, A) * 2 - 1).to(dtype)
        w_a = torch.randn(A, H)
        ref = (hz.float().repeat_interleave(N, 0) + a.float() @ w_a).relu()
        h = k.first_layer_fwd(hz, a, w_a)
        assert h.dtype == dtype and h.shape == (M, H)
        torch.testing.assert_close(h.float(), ref, **tol)
        w, q = torch.randn(H), torch.empty(M)
        k.out_fwd(h, w, 0.5, q)
        torch.testing.assert_close(q, h.float() @ w + 0.5, **tol)
        g = torch.randn(M)
        dh, dw, db = k.out_bwd(g, w, h)
        dref = torch.outer(g, w) * (h.float() > 0)
        torch.testing.assert_close(dh.float(), dref, **tol)
        torch.testing.assert_close(dw, h.float().t() @ g, **tol)
        torch.testing.assert_close(db, dref.sum(0), **tol)
        d = torch.randn(M, H).to(dtype)
        mref = d.float() * (h.float() > 0)
        dhz, dwa = k.first_layer_bwd(d, h, a, B, True)
        torch.testing.assert_close(d.float(), mref, **tol)  # masked in place
        torch.testing.assert_close(dhz, mref.view(B, N, H).sum(1), **tol)
        torch.testing.assert_close(dwa, a.float().t() @ mref, **tol)
        assert k.first_layer_bwd(d, h, a, B, False)[1].numel() == 0
    hz[0, 1] = float("nan")
    assert torch.isnan(k.first_layer_fwd(hz, a, w_a)[:N, 1]).all()
    h[2, 4] = float("nan")
    k.out_fwd(h, w, 0.0, q)
    assert torch.isnan(q[2]) and not torch.isnan(q[3])
    with pytest.raises(RuntimeError, match="float32 or bfloat16"):
        k.out_fwd(h.double(), w, 0.0, q)


def test_detached_weights_give_action_gradient_only():
    torch.manual_seed(0)
    critic = StackedQ(6, 2, (32, 32), 2)
    z = torch.randn(4, 6)
    a = torch.rand(4, 1, 2, requires_grad=True)
    critic(z, a, detach_weights=True).sum().backward()
    assert all(p.grad is None for p in critic.parameters())
    ref = torch.autograd.grad(critic.forward_reference(z, a).sum(), a)[0]
    torch.testing.assert_close(a.grad, ref)


def test_feature_projection_is_trained_by_the_critic_and_exported_with_the_policy():
    """features mode with feature_embed: z holds the projected features (not the 1280 raw dims),
    the update trains the projection (and moves its target copy), and policy weights carry it."""
    import numpy as np

    from robofume_ros.rl.learner import Learner, LearnerConfig
    from robofume_ros.rl.policy import Policy

    F_DIM, K = 40, 8
    L = Learner(
        LearnerConfig(
            algo="calql",
            obs_mode="features",
            lang_mode="onehot",
            agent={"batch_size": 16, "cql_n_actions": 2, "net": {"hidden": (16,), "feature_embed": K}},
        ),
        proprio_dim=4,
        action_dim=4,
        feature_dim=F_DIM,
    )
    enc = L.agent.encoder
    assert enc.out_dim == K + 4 + L.lang.dim and enc.rnd_dim == F_DIM + 4 + L.lang.dim
    proj = list(enc.parameters())
    assert proj and all(p is q for p, q in zip(proj, enc.feat_proj.parameters()))
    rng = np.random.default_rng(0)
    b = {
        "obs": {"proprio": torch.randn(16, 4), "features": torch.randn(16, F_DIM), "lang": torch.zeros(16, L.lang.dim)},
        "actions": torch.rand(16, 4) * 2 - 1,
        "rewards": torch.randn(16),
        "dones": torch.zeros(16),
        "discounts": torch.full((16,), 0.99),
        "mc_returns": torch.randn(16),
    }
    b["next_obs"] = {k: v.clone() for k, v in b["obs"].items()}
    before = [p.detach().clone() for p in proj]
    target_before = [p.detach().clone() for p in L.agent.target_encoder.parameters()]
    L.agent.update(b)
    assert all(not torch.equal(p, q) for p, q in zip(proj, before))
    assert all(not torch.equal(p, q) for p, q in zip(L.agent.target_encoder.parameters(), target_before))
    pol = Policy(L.policy_payload())
    f, pr = rng.normal(size=F_DIM).astype(np.float32), np.zeros(4, np.float32)
    a_pol = pol.act(None, pr, "open the drawer", features=f)
    a_learner = L.act({"proprio": pr[None], "features": f[None], "instruction": ["open the drawer"]})[0]
    np.testing.assert_allclose(a_pol, a_learner, rtol=1e-5, atol=1e-6)


def test_exploration_noise_scale_narrows_the_sampled_actions():
    torch.manual_seed(0)
    actor = networks.TanhGaussianActor(8, 3, networks.NetConfig(hidden=(16, 16)))
    mean = torch.full((4000, 3), 0.2)
    log_std = torch.full((4000, 3), -1.0)
    torch.testing.assert_close(actor.explore(mean, log_std, 0.0), torch.tanh(mean))
    pre = {s: torch.atanh(actor.explore(mean, log_std, s).clamp(-1 + 1e-6, 1 - 1e-6)) for s in (1.0, 0.25)}
    std1, std_q = pre[1.0].std().item(), pre[0.25].std().item()
    assert abs(std1 - float(torch.exp(torch.tensor(-1.0)))) < 0.02  # scale 1: the actor's own std
    assert abs(std_q / std1 - 0.25) < 0.02
    assert abs(pre[0.25].mean().item() - 0.2) < 0.01


def test_correlated_exploration_noise_keeps_the_marginal_and_correlates_in_time():
    from robofume_ros.rl.exploration import ExplorationNoise

    for rho in (0.0, 0.9):
        n = ExplorationNoise(2, rho, seed=1)
        e = np.stack([n() for _ in range(20000)])
        assert abs(e.mean()) < 0.1 and abs(e.std() - 1.0) < 0.05  # every eps_t ~ N(0, 1)
        lag1 = np.mean([np.corrcoef(e[:-1, i], e[1:, i])[0, 1] for i in range(2)])
        assert abs(lag1 - rho) < 0.03, (rho, lag1)
    # reset: the next draw no longer follows the last one (a new episode's deviation is its own)
    n = ExplorationNoise(1, 0.99, seed=2)
    pairs = []
    for _ in range(2000):
        last = n()[0]
        n.reset()
        pairs.append((last, n()[0]))
    assert abs(np.corrcoef(np.array(pairs).T)[0, 1]) < 0.1
    with pytest.raises(ValueError, match="correlation"):
        ExplorationNoise(4, 1.0)
    # the actor uses the given eps: tanh(mean + scale * std * eps)
    actor = networks.TanhGaussianActor(8, 2, networks.NetConfig(hidden=(16, 16)))
    mean, log_std, eps = torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([[0.5, -1.0]])
    torch.testing.assert_close(actor.explore(mean, log_std, 0.5, eps), torch.tanh(0.5 * eps))


def test_denormals_flushed_on_every_thread_inside_the_block_only():
    """Learner.update's scope: inside, fp32 math on every intra-op thread flushes denormals to zero
    (torch.set_flush_denormal would reach one thread: half the rows); after it, IEEE denormals are
    back for everything else in the process (numpy here, the safety envelope in a node)."""
    from robofume_ros.rl.common import denormals_flushed

    if native.kernels() is None:
        pytest.skip("fused kernels not available on this machine")
    tiny = torch.full((4096, 64), 1e-39)  # denormal in fp32
    w = torch.ones(64, 64)
    with denormals_flushed() as on:
        assert on
        inside = torch.mm(tiny, w)
    after = torch.mm(tiny, w)
    assert torch.count_nonzero(inside) == 0
    assert torch.count_nonzero(after) == after.numel()
    assert np.float32(1e-39) * np.float32(1.0) != 0.0


def test_a_killed_builds_lock_is_removed_and_a_live_builds_kept(tmp_path, monkeypatch):
    """A build killed mid-way leaves torch's lock file, on which every later process would wait
    forever. The build runs under a flock that dies with its process: whoever gets the flock
    knows torch's lock is a dead build's and removes it; while a live process holds the flock
    nobody touches its lock."""
    import os
    import subprocess
    import sys

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    from torch.utils.cpp_extension import _get_build_directory

    name = "robofume_lock_test"
    lock = os.path.join(_get_build_directory(name, False), "lock")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from robofume_ros.rl import native; g = native.hold_build_lock({name!r}); "
            "open(" + repr(lock) + ", 'w').close(); print('held', flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"  # a live build, with its lock file
        assert native.hold_build_lock(name, wait=False) is None  # busy: not ours to clear
        assert os.path.exists(lock)
    finally:
        holder.kill()  # killed mid-build: torch's lock stays, the flock goes with the process
        holder.wait()
    assert os.path.exists(lock)
    guard = native.hold_build_lock(name, wait=False)
    assert guard is not None
    try:
        assert native.clear_dead_build_lock(name) and not os.path.exists(lock)
        assert not native.clear_dead_build_lock(name)
    finally:
        guard.close()
