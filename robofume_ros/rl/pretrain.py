"""Offline pre-training: dataset -> checkpoint (wired by the lead as `robofume pretrain`).

  python -m robofume_ros.rl.pretrain --data DATASET_DIR --out runs/calql --steps 50000
  python -m robofume_ros.rl.pretrain --synthetic pointmass --out runs/pm --steps 2000 --lang onehot
  ... --resume   continues from OUT/checkpoint.pt up to --steps

Writes OUT/checkpoint.pt (policy, critics, optimisers, normalisation statistics, instruction
embeddings, config, RNG state), OUT/metrics.csv, TensorBoard events under OUT/tb, and
OUT/q_vs_mc.png (Q of data / policy actions vs the data's MC return over training).
"""

from __future__ import annotations

import argparse
import ast
import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from robofume_ros.rl.checkpoint import CheckpointError
from robofume_ros.rl.device import DeviceError, bf16_supported, resolve_device
from robofume_ros.vision import FEATURE_ENCODER_ID, shared_slice
from robofume_ros.rl.learner import ALGOS, Learner, LearnerConfig


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="robofume pretrain", description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--data",
        action="append",
        help="dataset directory (repeat to combine several, e.g. "
        "offline data + an online run's episodes for OOO retraining)",
    )
    src.add_argument("--synthetic", choices=["pointmass"], help="built-in synthetic dataset instead of --data")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--algo", default="calql", choices=list(ALGOS))
    ap.add_argument("--obs-mode", default="state", choices=["state", "features", "cnn"])
    ap.add_argument("--lang", default="minilm", choices=["minilm", "onehot", "none"])
    ap.add_argument(
        "--feature-embed",
        type=int,
        default=0,
        help="obs-mode features: trainable projection of the frozen image features to this size (0 = none)",
    )
    ap.add_argument(
        "--n-step", type=int, default=1, help="TD horizon of the critic targets (1 = the official one-step backup)"
    )
    ap.add_argument("--steps", type=int, default=10000, help="total gradient steps (including resumed ones)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (faster on CPUs with bf16 units)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave default)")
    ap.add_argument(
        "--device", default="auto", help="auto (a CUDA GPU when there is one, else CPU), cpu, cuda or cuda:N"
    )
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=0, help="synthetic only: evaluate success every N steps")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an algorithm config field, e.g. --set cql_alpha=1.0 --set calibrate=False",
    )
    ap.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return ap.parse_args(argv)


def load_data(args):
    if args.synthetic:
        from robofume_ros.rl.pointmass import scripted_dataset

        size = 64 if args.obs_mode != "state" else 0
        return scripted_dataset(60, noise=1.5, seed=args.seed, image_size=size)
    from robofume_ros.data.dataset import load_episodes

    return [ep for d in args.data for ep in load_episodes(d)]


def plot_q_vs_mc(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [float(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("q_data", "Q(s, a_data)"), ("q_policy", "Q(s, a~pi) before bound"), ("mc_return", "MC return")):
        if key in rows[0] and rows[0][key] != "":
            ax.plot(step, [float(r[key]) for r in rows], label=label)
    ax.set_xlabel("gradient step")
    ax.set_ylabel("value (scaled reward units)")
    ax.legend()
    ax.set_title("Q vs Monte-Carlo return")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def data_task(datasets) -> "dict | None":
    """The task pair of the generated datasets among `datasets` (TaskPair.as_dict()), None if none
    says; datasets of several pairs make a multi-task policy: {"pairs": [TaskPair.as_dict(), ...]}
    (a fleet whose robots practise different pairs; the instruction tells the tasks apart)."""
    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.sim.tasks import get_pair

    names = sorted({get_pair(p).name for p in (dataset_pair(d) for d in datasets) if p})
    if not names:
        return None
    if len(names) == 1:
        return get_pair(names[0]).as_dict()
    return {"pairs": [get_pair(n).as_dict() for n in names]}


def main(argv=None, on_log=None, stop=None) -> int:
    """`robofume pretrain`; `on_log(step, steps, metrics)` is called at every log row (progress for
    an action's feedback) and `stop(step)` after every update (an action's cancel, answered within a
    step, not a log row); either may raise to stop: the checkpoint of that step is saved first."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ck = out / "checkpoint.pt"
    overrides = {"batch_size": args.batch_size, "bf16": args.bf16 and bf16_supported(device)}
    print(f"training on {device}" + (" with bf16 autocast" if overrides["bf16"] else ""), flush=True)
    if args.feature_embed:
        overrides["net"] = {"feature_embed": args.feature_embed}
    for kv in args.set:
        k, _, v = kv.partition("=")
        try:
            overrides[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            overrides[k] = v
    cfg = LearnerConfig(
        algo=args.algo, obs_mode=args.obs_mode, lang_mode=args.lang, seed=args.seed, n_step=args.n_step, agent=overrides
    )

    episodes = load_data(args)
    if not episodes:
        print(f"error: no episodes in {args.data}", file=sys.stderr)
        return 2
    if args.obs_mode == "features":
        from robofume_ros.vision.encoder import add_features

        if any(shared_slice(e.feature_encoder or "", FEATURE_ENCODER_ID, 0) is None for e in episodes):
            print(f"computing frozen {FEATURE_ENCODER_ID} features once per frame ...", flush=True)
        add_features(episodes)  # the dataset's own where they hold the policy's
    e0 = episodes[0]
    dims = dict(
        proprio_dim=e0.proprio.shape[1],
        action_dim=e0.actions.shape[1],
        image_shape=tuple(e0.images.shape[1:]) if args.obs_mode == "cnn" else None,
        feature_dim=e0.features.shape[1] if args.obs_mode == "features" else None,
    )
    if args.resume and ck.exists():
        try:
            L = Learner.load(ck, expect=cfg, dims=dims, device=device)
        except CheckpointError as e:
            print(f"error: cannot resume: {e}", file=sys.stderr)
            return 2
        L.add_offline(episodes, fit_stats=False)  # statistics come from the checkpoint
        print(f"resumed from {ck} at step {L.step}", flush=True)
    else:
        L = Learner(cfg, **dims, device=device)
        L.add_offline(episodes)
    try:
        L.task = data_task(args.data or [])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    L.obs_spec = {
        "image_shape": [int(x) for x in e0.images.shape[1:]],
        "proprio_dim": int(e0.proprio.shape[1]),
        "image_conversion": "robofume_ros.data.images (rgb8, resize_rgb to image_shape)",
        "feature_encoder": FEATURE_ENCODER_ID if args.obs_mode == "features" else None,
    }
    for t in (L.task or {}).get("pairs", [L.task] if L.task else []):
        print(f"task pair {t['name']!r} ({t['forward']} / {t['backward']})", flush=True)
    n_succ = sum(e.success for e in episodes)
    print(
        f"{len(episodes)} episodes ({n_succ} successful), {len(L.offline)} transitions; "
        f"algo={args.algo} obs_mode={args.obs_mode}",
        flush=True,
    )

    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(out / "tb"))
    csv_path = out / "metrics.csv"
    csv_file, writer = None, None
    pending = []
    eval_fn = None
    if args.synthetic and args.eval_every:
        from robofume_ros.rl.pointmass import INSTRUCTION, success_rate

        eval_fn = lambda: success_rate(
            lambda p: L.act(
                {
                    "proprio": p.astype(np.float32),
                    "instruction": [INSTRUCTION] * len(p),
                }
            )
        )
    try:
        from tqdm import tqdm

        bar = tqdm(total=args.steps, initial=L.step, unit="step", disable=args.no_progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        while L.step < args.steps:
            pending.append(L.update())
            bar.update(1)
            if stop is not None:
                try:
                    stop(L.step)
                except BaseException:
                    L.save(ck)
                    raise
            if L.step % args.log_every == 0 or L.step == args.steps:
                keys = pending[-1].keys()
                row = {k: torch.stack([m[k].float() for m in pending]).mean().item() for k in keys}  # one sync per log
                pending.clear()
                row["steps_per_s"] = bar.format_dict.get("rate") or 0.0
                if eval_fn is not None and L.step % args.eval_every == 0:
                    row["success_rate"] = eval_fn()
                for k, v in row.items():
                    tb.add_scalar(f"train/{k}", v, L.step)
                if writer is None:
                    fields = ["step"] + list(row) + (["success_rate"] if eval_fn and "success_rate" not in row else [])
                    append = csv_path.exists() and args.resume
                    csv_file = open(csv_path, "a" if append else "w", newline="")
                    writer = csv.DictWriter(csv_file, fieldnames=fields, extrasaction="ignore")
                    if not append:
                        writer.writeheader()
                writer.writerow({"step": L.step, **row})
                csv_file.flush()
                bar.set_postfix(q=f"{row.get('q_data', 0):.1f}", mc=f"{row.get('mc_return', 0):.1f}")
                if on_log is not None:
                    try:
                        on_log(L.step, args.steps, row)
                    except BaseException:
                        L.save(ck)  # stopped by the caller: keep what was trained (--resume goes on)
                        raise
            if L.step % args.save_every == 0:
                L.save(ck)
        bar.close()
    finally:
        tb.close()
        if csv_file:
            csv_file.close()
    L.save(ck)
    if csv_path.exists():
        plot_q_vs_mc(csv_path, out / "q_vs_mc.png")
    print(f"saved {ck} at step {L.step} ({time.perf_counter() - t0:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
