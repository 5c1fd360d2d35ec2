"""The policy's frozen image encoder per frame: EfficientNet-Lite0 as trained (eager, batch norms
separate) against the inference copy the policy and the learner run (`for_inference`: batch norms
folded into the convolutions, channels-last), in alternating blocks in one process, one torch
thread (as the policy node), one 100x100 frame at 128 px and a batch of 64 (feature extraction).

    .venv/bin/python bench/bench_encoder.py [--blocks 8] [--reps 30]
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
    ap.add_argument("--blocks", type=int, default=8, help="alternating blocks per variant")
    ap.add_argument("--reps", type=int, default=30, help="frames (or batches / 8) timed per block")
    ns = ap.parse_args(argv)
    import numpy as np
    import torch

    from robofume_ros.vision import INPUT_SIZE
    from robofume_ros.vision.efficientnet_lite import LITE_MEAN, LITE_STD, for_inference, load_pretrained_lite0
    from robofume_ros.vision.preprocess import to_pixels

    torch.set_num_threads(1)
    eager = load_pretrained_lite0().eval()
    fast = for_inference(eager)
    rng = np.random.default_rng(0)
    for n, reps in ((1, ns.reps), (64, max(2, ns.reps // 8))):
        frames = (rng.random((n, 100, 100, 3)) * 255).astype(np.uint8)
        x = to_pixels(frames, INPUT_SIZE, LITE_MEAN, LITE_STD)
        variants = {
            "eager (as trained)": (eager, x),
            "for_inference": (fast, x.contiguous(memory_format=torch.channels_last)),
        }
        times: dict = {k: [] for k in variants}
        with torch.no_grad():
            ref = eager(pixel_values=x).pooler_output
            diff = float((fast(pixel_values=variants["for_inference"][1]).pooler_output - ref).abs().max())
            for m, inp in variants.values():  # warm-up
                m(pixel_values=inp)
            for _ in range(ns.blocks):
                for name, (m, inp) in variants.items():
                    t = time.perf_counter()
                    for _ in range(reps):
                        m(pixel_values=inp)
                    times[name].append((time.perf_counter() - t) / reps / n * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in times.items():
            print(f"batch {n:2d} {k:20s} {med[k]:6.2f} ms/frame (blocks {min(v):.2f}-{max(v):.2f})")
        print(
            f"batch {n:2d} for_inference / eager: {med['for_inference'] / med['eager (as trained)']:.2f}x "
            f"(features differ by at most {diff:.1e})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
