"""The policy's step (`Policy.act`: frozen encoder + actor) called back to back against the same
step after a pause, as the 10 Hz graph calls it, in alternating blocks in one process, one torch
thread (as the policy node). The ratio says how much of the graph's policy compute is the step
running cold (docs/latency.md).

    .venv/bin/python bench/bench_policy_step.py --checkpoint runs/main_drawer/pretrain/checkpoint.pt
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a policy or learner checkpoint (features observation mode)")
    ap.add_argument("--pauses-ms", type=float, nargs="+", default=[0.0, 20.0, 90.0])
    ap.add_argument("--blocks", type=int, default=6, help="alternating blocks per pause")
    ap.add_argument("--reps", type=int, default=30, help="steps timed per block")
    ns = ap.parse_args(argv)
    import numpy as np
    import torch

    from robofume_ros.rl.policy import Policy

    torch.set_num_threads(1)
    policy = Policy.load(ns.checkpoint).prepare()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, tuple(policy.obs_spec["image_shape"]), dtype=np.uint8)
    proprio = np.zeros(policy.obs_spec["proprio_dim"], np.float32)
    for _ in range(20):
        policy.act(image, proprio, "open the drawer")
    times: dict = {p: [] for p in ns.pauses_ms}
    for _ in range(ns.blocks):
        for pause in ns.pauses_ms:
            for _ in range(ns.reps):
                if pause:
                    time.sleep(pause / 1e3)
                t = time.perf_counter()
                policy.act(image, proprio, "open the drawer", deterministic=False, noise_scale=0.5)
                times[pause].append((time.perf_counter() - t) * 1e3)
    base = statistics.median(times[ns.pauses_ms[0]])
    for pause, ts in times.items():
        ts = sorted(ts)
        p99 = ts[min(len(ts) - 1, int(0.99 * len(ts)))]
        print(
            f"pause {pause:5.0f} ms before each step: p50 {statistics.median(ts):5.2f} ms, p99 {p99:5.2f} ms "
            f"({len(ts)} steps); p50 / back to back {statistics.median(ts) / base:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
