"""Speed bench of the learning core (a script, not a test).

  python bench/bench_learning.py [--threads 2] [--steps 30] [--repeats 3] [--modes state,features,cnn] [--batch 256]

For state-based, frozen-encoder (1280-d EfficientNet-lite0 features) and trainable-CNN (100x100)
Cal-QL at batch 256 it prints gradient steps/s in fp32 and with bf16 autocast, the share of time in
sampling / forward / backward / optimiser, and the achieved FLOP rate (matmul + conv FLOPs counted
by torch's FlopCounterMode over one step, forward + backward) as a fraction of a matmul peak
measured in the same run, in the same precision. Steps/s is the median over --repeats timing blocks, "best"
the fastest block (the machine may be shared: the load average is printed before and after; the
% of peak uses the median). At the end it prints the
issue's targets and whether each is met. Then the same modes again without the fused CPU kernels
(rl/native.py: plain PyTorch ops, denormals not flushed), the baseline this project had before
them, and the speed-up of each (--no-baseline skips it).

FLOPs: FlopCounterMode over one real step (sampling, losses, backward). Its registry lacks
matrix-vector products and oneDNN's fused linear (both used by the critic), so formulas for
those are registered below: every matmul-like op the step runs is counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula

from robofume_ros.data.episode import Episode
from robofume_ros.rl import networks
from robofume_ros.rl.common import denormals_flushed
from robofume_ros.rl.learner import Learner, LearnerConfig
from robofume_ros.rl.networks import soft_update


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


def set_fused(on: bool) -> bool:
    """Fused kernels and flushed denormals on (the default) or off (plain PyTorch ops, IEEE
    denormals); returns whether the kernels are in use."""
    networks.USE_NATIVE = on
    os.environ["ROBOFUME_FLUSH_DENORMAL"] = "1" if on else "0"
    return on and networks._native_kernels(torch.zeros(1), torch.float32, 7) is not None


def bench(mode, bf16, steps, batch, repeats=3, lang_dim=384):
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
    ag = L.agent
    for _ in range(3):
        L.update()
    with FlopCounterMode(display=False) as fc:
        b = L.sample_batch()
        total, _ = ag.losses(b)
        total.backward()
    flops = fc.get_total_flops()
    # plain timing of the real update (what training gets); median over blocks
    blocks = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            m = L.update()
        m["q_data"].item()
        blocks.append(steps / (time.perf_counter() - t))
    sps, best = statistics.median(blocks), max(blocks)
    # breakdown: same work, split into phases
    ph = dict(sample=0.0, forward=0.0, backward=0.0, optimiser=0.0)
    with denormals_flushed():  # as Learner.update
        _phases(L, ag, max(steps // 2, 3), ph)
    tot = sum(ph.values())
    return sps, best, {k: v / tot for k, v in ph.items()}, flops


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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="timing blocks of --steps steps (median reported)")
    ap.add_argument("--modes", default="state,features,cnn")
    ap.add_argument("--no-baseline", action="store_true", help="skip the run without the fused kernels")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    fused = set_fused(True)
    peak = {False: matmul_peak(torch.float32), True: matmul_peak(torch.bfloat16)}
    print(
        f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')})"
    )
    print(
        f"threads={args.threads} batch={args.batch}  matmul peak: fp32 {peak[False] / 1e9:.0f} GFLOP/s, "
        f"bf16 {peak[True] / 1e9:.0f} GFLOP/s (2048^3, measured now)"
    )
    print(
        f"fused CPU kernels (rl/native.py): {'in use, denormals flushed' if fused else 'NOT available: plain PyTorch ops'}"
    )
    print(
        f"{'mode':9s} {'prec':5s} {'steps/s':>8s} {'best':>6s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} {'of peak':>8s}  "
        f"{'sample':>6s} {'fwd':>6s} {'bwd':>6s} {'optim':>6s}"
    )
    res = {}
    for mode in args.modes.split(","):
        steps = args.steps if mode != "cnn" else max(3, args.steps // 10)
        for bf16 in (False, True):
            sps, best, ph, flops = bench(mode, bf16, steps, args.batch, args.repeats)
            rate = sps * flops
            res[(mode, bf16)] = (sps, rate / peak[bf16])
            print(
                f"{mode:9s} {'bf16' if bf16 else 'fp32':5s} {sps:8.1f} {best:6.1f} {flops / 1e9:10.2f} {rate / 1e9:8.1f} "
                f"{rate / peak[bf16]:8.1%}  " + " ".join(f"{v:6.1%}" for v in ph.values()),
                flush=True,
            )
    if fused and not args.no_baseline:
        set_fused(False)
        print("baseline in the same run: plain PyTorch ops, denormals not flushed")
        for mode in args.modes.split(","):
            steps = args.steps if mode != "cnn" else max(3, args.steps // 10)
            for bf16 in (False, True):
                sps = bench(mode, bf16, steps, args.batch, args.repeats)[0]
                print(
                    f"{mode:9s} {'bf16' if bf16 else 'fp32':5s} {sps:8.1f} steps/s   fused kernels: "
                    f"{res[(mode, bf16)][0] / sps:.2f}x",
                    flush=True,
                )
        set_fused(True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets (issue #7):")
    if ("state", True) in res:
        v = res[("state", True)][0]
        print(f"  state-based bf16 >= 30 steps/s: {v:.1f} -> {'met' if v >= 30 else 'NOT met'}")
    if ("state", False) in res:
        v = res[("state", False)][1]
        print(f"  state-based fp32 >= 60% of fp32 matmul peak: {v:.1%} -> {'met' if v >= 0.6 else 'NOT met'}")
    for prec, bf in (("bf16", True), ("fp32", False)):
        if ("state", bf) in res and ("features", bf) in res:
            r = res[("state", bf)][0] / res[("features", bf)][0]
            print(
                f"  frozen-encoder within 1.5x of state-based ({prec}): {r:.2f}x -> {'met' if r <= 1.5 else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
