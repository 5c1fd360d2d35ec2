"""Speed bench of the learning core against a plain, textbook Cal-QL step (a script, not a test).

  python bench/bench_learning.py [--threads 2] [--block-s 4] [--repeats 5] [--modes state,features,cnn] [--batch 256]

For state-based, frozen-encoder (1280-d EfficientNet-lite0 features) and trainable-CNN (100x100)
Cal-QL at batch 256, in fp32 and with bf16 autocast, it times the project's gradient step
(Learner.update: stacked critics, one backward pass, fused CPU kernels) and the baseline
(bench/plain_calql.py: the same Cal-QL math written as a reader first writes it) in alternating
blocks of about --block-s seconds each, both reading batches from the same sampler. It prints the
median steps/s of each, their spread (min..max over the blocks, as % of the median), the speed-up
(the median over neighbouring block pairs of ours / plain, and its spread), the FLOPs per step of each from the same counter (torch's FlopCounterMode over
one step, forward + backward), the project's achieved FLOP rate as a share of a matmul peak
measured in the same run, and the share of the project's step in sampling / forward / backward /
optimiser. The load average is printed before and after (the machine may be shared).

FLOPs: FlopCounterMode registers formulas for the matmul-like ops; matrix-vector products and
oneDNN's fused linear (used by the project's critic) are missing from its registry, so formulas for
those are registered below: every matmul-like op either step runs is counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from robofume_ros.data.episode import Episode
from robofume_ros.rl import networks
from robofume_ros.rl.common import denormals_flushed
from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.networks import soft_update

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plain_calql import PlainCalQL  # the bench's own baseline, next to this file


# --- FLOP formulas missing from torch's registry (2 FLOPs per multiply-add) ---
@register_flop_formula(torch.ops.aten.mv)
def _mv_flop(a_shape, b_shape, out_shape=None, **kw) -> int:
    return 2 * a_shape[0] * a_shape[1]


@register_flop_formula(torch.ops.aten.addmv)
def _addmv_flop(self_shape, a_shape, b_shape, out_shape=None, **kw) -> int:
    return 2 * a_shape[0] * a_shape[1]


if hasattr(torch.ops.mkldnn, "_linear_pointwise"):

    @register_flop_formula(torch.ops.mkldnn._linear_pointwise)
    def _onednn_linear_flop(x_shape, *args, out_shape=None, **kw) -> int:
        # .default: (X, W, B, attr, scalars, algorithm); .binary: (X, other, W, B, attr); W is (N, K)
        w_shape = args[0] if len(args) == 5 else args[1]
        m = 1
        for d in x_shape[:-1]:
            m *= d
        return 2 * m * x_shape[-1] * w_shape[0]


def matmul_peak(dtype, n=2048, reps=6) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def synthetic_episodes(n_eps, T, P, A, image, feat, rng):
    eps = []
    for _ in range(n_eps):
        r = np.full(T, -1.0, np.float32)
        term = np.zeros(T, bool)
        if rng.random() < 0.5:
            r[-3:] = 0.0
            term[-1] = True
        eps.append(
            Episode(
                images=rng.integers(0, 255, (T + 1, *image), dtype=np.uint8),
                proprio=rng.standard_normal((T + 1, P)).astype(np.float32),
                actions=rng.uniform(-1, 1, (T, A)).astype(np.float32),
                rewards=r,
                terminals=term,
                instruction="put the object in the bin",
                task="t",
                features=rng.standard_normal((T + 1, feat)).astype(np.float32) if feat else None,
            )
        )
    return eps


def make_learner(mode, bf16, batch, lang_dim=384):
    rng = np.random.default_rng(0)
    img = (100, 100, 3) if mode == "cnn" else (1, 1, 3)
    eps = synthetic_episodes(20, 50, 7, 7, img, 1280 if mode == "features" else 0, rng)
    cfg = LearnerConfig(
        algo="calql",
        obs_mode=mode,
        lang_mode="onehot",
        max_instructions=lang_dim,
        agent={"bf16": bf16, "batch_size": batch},
    )
    L = Learner(cfg, 7, 7, image_shape=img, feature_dim=1280)
    L.add_offline(eps)
    return L, img, lang_dim


def make_plain(L, mode, img, lang_dim, bf16):
    enc = L.agent.encoder
    stats = {"proprio_mean": enc.proprio_mean, "proprio_std": enc.proprio_std}
    if mode == "features":
        stats.update(feat_mean=enc.feat_mean, feat_std=enc.feat_std)
    ac = L.agent.cfg
    return PlainCalQL(
        mode,
        (7, lang_dim, 1280, img, 7),
        stats,
        hidden=tuple(ac.net.hidden),
        n_actions=ac.cql_n_actions,
        gamma=ac.gamma,
        bc_weight=ac.bc_weight,
        bf16=bf16,
    )


def flops_of(step) -> int:
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops()


def project_step(L):
    return lambda: L.update()["q_data"]


def plain_step(L, P):
    return lambda: P.update(L.sample_batch())["q_data"]


def timed_block(step, n) -> float:
    t = time.perf_counter()
    for _ in range(n):
        q = step()
    q.item()
    return n / (time.perf_counter() - t)


def bench(mode, bf16, batch, repeats, block_s):
    """(project steps/s per block, plain steps/s per block, project FLOPs, plain FLOPs, phases)."""
    L, img, lang_dim = make_learner(mode, bf16, batch)
    P = make_plain(L, mode, img, lang_dim, bf16)
    ours, plain = project_step(L), plain_step(L, P)
    for _ in range(2):  # warm-up: allocator, oneDNN primitive caches
        ours()
        plain()
    f_ours = flops_of(lambda: L.agent.losses(L.sample_batch())[0].backward())
    f_plain = flops_of(plain)
    # steps per block so that each block lasts about block_s seconds
    n_ours = max(3, round(block_s * timed_block(ours, 3)))
    n_plain = max(3, round(block_s * timed_block(plain, 3)))
    a, b = [], []
    for _ in range(repeats):  # alternating blocks: a change of machine load hits both alike
        a.append(timed_block(ours, n_ours))
        b.append(timed_block(plain, n_plain))
    ph = dict(sample=0.0, forward=0.0, backward=0.0, optimiser=0.0)
    with denormals_flushed():  # as Learner.update
        _phases(L, L.agent, max(n_ours // 4, 3), ph)
    tot = sum(ph.values())
    return a, b, f_ours, f_plain, {k: v / tot for k, v in ph.items()}


def _phases(L, ag, n, ph):
    for _ in range(n):
        t0 = time.perf_counter()
        b = L.sample_batch()
        t1 = time.perf_counter()
        total, _ = ag.losses(b)
        t2 = time.perf_counter()
        for o in ag.optimizers.values():
            o.zero_grad(set_to_none=True)
        total.backward()
        t3 = time.perf_counter()
        for o in ag.optimizers.values():
            o.step()
        soft_update(ag.target_critic, ag.critic, ag.cfg.tau)
        if ag.encoder_trainable:
            soft_update(ag.target_encoder, ag.encoder, ag.cfg.tau)
        t4 = time.perf_counter()
        for k, dt in zip(ph, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            ph[k] += dt


def spread(xs) -> str:
    m = statistics.median(xs)
    return f"{100 * (min(xs) - m) / m:+.0f}..{100 * (max(xs) - m) / m:+.0f}%"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5, help="pairs of alternating timing blocks")
    ap.add_argument("--block-s", type=float, default=4.0, help="seconds per timing block")
    ap.add_argument("--modes", default="state,features,cnn")
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    peak = {False: matmul_peak(torch.float32), True: matmul_peak(torch.bfloat16)}
    fused = networks._native_kernels(torch.zeros(1), torch.float32, 7) is not None
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})"
    )
    print(
        f"threads={args.threads} batch={args.batch} blocks={args.repeats}x{args.block_s:g}s each  matmul peak: "
        f"fp32 {peak[False] / 1e9:.0f} GFLOP/s, bf16 {peak[True] / 1e9:.0f} GFLOP/s (2048^3, measured now)"
    )
    print(
        f"project step: fused CPU kernels (rl/native.py) {'in use' if fused else 'NOT available'}; baseline: bench/plain_calql.py"
    )
    print(
        f"{'mode':9s} {'prec':5s} {'ours/s':>7s} {'spread':>9s} {'plain/s':>7s} {'spread':>9s} {'speed-up':>8s} {'spread':>9s} "
        f"{'GFLOP ours':>10s} {'plain':>6s} {'ours of peak':>12s}  {'sample':>6s} {'fwd':>6s} {'bwd':>6s} {'optim':>6s}"
    )
    for mode in args.modes.split(","):
        for prec in args.precisions.split(","):
            bf16 = prec == "bf16"
            a, b, fa, fb, ph = bench(mode, bf16, args.batch, args.repeats, args.block_s)
            ma, mb = statistics.median(a), statistics.median(b)
            # the speed-up of each pair of neighbouring blocks, then their median: a machine whose
            # speed drifts during the run slows both blocks of a pair alike
            ratios = [x / y for x, y in zip(a, b)]
            print(
                f"{mode:9s} {prec:5s} {ma:7.1f} {spread(a):>9s} {mb:7.1f} {spread(b):>9s} "
                f"{statistics.median(ratios):7.2f}x {spread(ratios):>9s} "
                f"{fa / 1e9:10.2f} {fb / 1e9:6.2f} {ma * fa / peak[bf16]:12.1%}  "
                + " ".join(f"{v:6.1%}" for v in ph.values()),
                flush=True,
            )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
