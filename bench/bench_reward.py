#!/usr/bin/env python3
"""Reward-model inference speed on this CPU.

Frames/s (batched) and p50/p99 latency of one-frame calls (what the reward node does per camera
frame) for the default offline model (EfficientNet-Lite0 + MiniLM + head) and for CLIP ViT-B/32
and SigLIP-base sized dual encoders (random weights built from configs, saved to a temporary folder
and loaded through the production from_pretrained path), in fp32 and bf16, with 1 and 2 threads.
Ratios are against the default model's fp32 1-thread numbers measured in the same run.

    python bench/bench_reward.py               # everything, a few minutes
    python bench/bench_reward.py --quick       # fewer repetitions
    python bench/bench_reward.py --models default clip-b32 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch


def build_sized(kind: str, folder: Path) -> Path:
    """A CLIP ViT-B/32 or SigLIP-base sized random model folder (default configs = those sizes)."""
    from robofume_ros.reward.tiny import train_tokenizer

    tok = train_tokenizer()
    if kind == "clip-b32":
        from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

        cfg = CLIPConfig(
            text_config={"eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id},
            vision_config={"patch_size": 32, "image_size": 224},
        )
        model, proc = CLIPModel(cfg), CLIPImageProcessor()
    elif kind == "siglip-base":
        from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

        cfg = SiglipConfig(vision_config={"patch_size": 16, "image_size": 224})
        model, proc = SiglipModel(cfg), SiglipImageProcessor(size={"height": 224, "width": 224})
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def load(kind: str, tmp: Path):
    from robofume_ros.reward.dual_encoder import DualEncoderRewardModel

    if kind == "default":
        return DualEncoderRewardModel.from_pretrained("default")
    return DualEncoderRewardModel.from_pretrained(str(build_sized(kind, tmp / kind)))


def measure(model, frames, instr, n_lat: int, n_batches: int, batch: int):
    model.predict_proba(frames[:batch], instr)  # warm-up (and text-embedding cache)
    model.predict_proba(frames[:1], instr)
    lat = []
    for i in range(n_lat):
        t = time.perf_counter()
        model.predict_proba(frames[i % len(frames)][None], instr)
        lat.append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(n_batches):
        model.predict_proba(frames[:batch], instr, batch_size=batch)
    fps = n_batches * batch / (time.perf_counter() - t)
    lat = np.array(lat) * 1000
    return {"fps": fps, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["default", "clip-b32", "siglip-base"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    from robofume_ros.reward.base import cpu_supports_bf16

    n_lat, n_batches = (8, 1) if args.quick else (25, 3)
    frames = np.random.default_rng(0).integers(0, 256, (args.batch, 100, 100, 3), dtype=np.uint8)
    instr = "open the drawer"
    print(
        f"torch {torch.__version__}, {os.cpu_count()} cpus, native bf16: {cpu_supports_bf16()}, "
        f"frames 100x100, batch {args.batch}, {n_lat} single-frame calls per setting"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.models:
            t0 = time.time()
            model = load(kind, Path(tmp))
            print(
                f"loaded {kind} ({model.model_id}) in {time.time() - t0:.1f} s; tower input "
                f"{model.backbone.image_size}px",
                flush=True,
            )
            for prec in args.precisions:
                for th in args.threads:
                    model.precision, model.num_threads = prec, th
                    torch.set_num_threads(th)
                    big = kind != "default"  # ~10-50x slower per frame: fewer repetitions keep the run short
                    r = {
                        "model": kind,
                        "precision": prec,
                        "threads": th,
                        **measure(
                            model,
                            frames,
                            instr,
                            max(4, n_lat // 3) if big else n_lat,
                            1 if big else n_batches,
                            args.batch // 2 if big else args.batch,
                        ),
                    }
                    rows.append(r)
                    print(
                        f"  {kind:12s} {prec:5s} {th} thr: {r['fps']:7.1f} frames/s  p50 {r['p50_ms']:7.1f} ms  "
                        f"p99 {r['p99_ms']:7.1f} ms",
                        flush=True,
                    )
            del model
    base = next(
        (r for r in rows if r["model"] == "default" and r["precision"] == "fp32" and r["threads"] == 1), rows[0]
    )
    print(
        f"\nratios vs {base['model']} {base['precision']} {base['threads']}-thread "
        f"({base['fps']:.1f} frames/s, p50 {base['p50_ms']:.1f} ms): throughput x, p50 latency x"
    )
    print(
        f"{'model':12s} {'prec':5s} {'thr':>3s} {'frames/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'fps x':>7s} {'p50 x':>7s}"
    )
    for r in rows:
        r["fps_ratio"] = r["fps"] / base["fps"]
        r["p50_ratio"] = r["p50_ms"] / base["p50_ms"]
        print(
            f"{r['model']:12s} {r['precision']:5s} {r['threads']:3d} {r['fps']:9.1f} {r['p50_ms']:8.1f} "
            f"{r['p99_ms']:8.1f} {r['fps_ratio']:7.2f} {r['p50_ratio']:7.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
