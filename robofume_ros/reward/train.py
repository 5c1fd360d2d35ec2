"""``robofume reward train``: fine-tune a reward model on target demos and failures.

Labels come from demos and failures only (positives: the last ``k`` frames of successful target
demos; negatives: failure episodes and the early frames of demos). Optional pre-training on prior
multi-task data (``source == "prior"``, each with its own instruction). Target episodes are split
into train / held-out by episode; the decision threshold is chosen on held-out labels; the report
(``report.json``, ``report.md``, ``pr_curve.png``, ``reliability.png``) is written next to the
checkpoint, including per-frame FP/FN rates against simulator ground truth
(``Episode.success_gt``) on the held-out episodes where present.

With a frozen image tower (the default), image features are computed once per frame and cached,
so training is dominated by one pass of the tower over the data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .labels import DEMO_SOURCES, FrameSet, label_episodes, reverse_pairs, split_by_episode
from .metrics import (
    average_precision,
    binary_metrics,
    plot_pr_curve,
    plot_reliability,
    reliability,
    select_threshold,
    write_report,
)

TARGET_SOURCES = ("target_demo", "failure", "intervention")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="robofume reward train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data", nargs="+", required=True, help="dataset folder(s) with target demos/failures (and prior data)"
    )
    p.add_argument("--prior", nargs="*", default=[], help="extra dataset folder(s) with prior multi-task data")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--kind", choices=("dual_encoder", "vlm"), default="dual_encoder")
    p.add_argument(
        "--backbone",
        default="default",
        help="dual encoder: 'default' (EfficientNet-Lite0 + MiniLM, offline), or a CLIP/SigLIP folder or hub id; "
        "vlm: an Idefics3/SmolVLM/LLaVA/PaliGemma folder or hub id",
    )
    p.add_argument("--init", default=None, help="start from an existing reward-model checkpoint instead of --backbone")
    p.add_argument("--tasks", nargs="*", default=None, help="target task ids (default: every non-prior task in --data)")
    p.add_argument("-k", "--k", type=int, default=3, help="positives: last k frames of each successful demo")
    p.add_argument("--neg-demo-frac", type=float, default=0.5, help="negatives: first fraction of each demo's frames")
    p.add_argument(
        "--reverse-k",
        type=int,
        default=3,
        help="reset-free pairs: the first N frames of a successful demo are positives for its paired task (0: off)",
    )
    p.add_argument(
        "--pair-negatives",
        type=int,
        default=3,
        help="reset-free pairs: the last N frames of a successful demo are negatives for its paired "
        "task, whose goal is the opposite state (0: off)",
    )
    p.add_argument(
        "--val-frac", type=float, default=0.2, help="held-out fraction of target episodes (split by episode)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--pretrain-epochs", type=int, default=30, help="epochs on prior data first (0: skip)")
    p.add_argument("--lr", type=float, default=None, help="default 1e-3 (head) / 2e-4 (VLM LoRA)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 (head) / 8 (VLM)")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="tower input size (default: 128 for the default model, else the processor's)",
    )
    p.add_argument(
        "--spatial-grid", type=int, default=None, help="also pool conv feature maps on a g x g grid (towers only)"
    )
    p.add_argument(
        "--lora-r", type=int, default=0, help="LoRA rank on the vision tower (dual encoder) / language model (vlm)"
    )
    p.add_argument("--threshold-method", choices=("fpr_cap", "fpr_floor", "f1", "balanced"), default="fpr_cap")
    p.add_argument("--max-fpr", type=float, default=0.05, help="FP-rate cap for --threshold-method fpr_cap")
    p.add_argument(
        "--threshold-neg-frac",
        type=float,
        default=None,
        help="the threshold is chosen on held-out frames where this first fraction of each successful "
        "demo counts as negative (default: --neg-demo-frac; 1.0: every frame before its last k, "
        "the hard negatives of a task almost done, which training leaves unlabelled)",
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="fp32",
        help="the image tower's precision (stored with the model): fp32 lets the reward node judge on the "
        "camera's shared features; bf16 (auto: where the CPU has it) runs its own tower in the loop",
    )
    p.add_argument("--embed-backbone", action="store_true", help="copy the towers into the checkpoint folder")
    p.add_argument("--no-progress", action="store_true")
    return p


def _features_by_episode(model, episodes, idx, progress):
    """{episode index: (T+1, D) tensor} of frozen-tower features, one pass over all frames. An
    episode whose stored features are the model's tower's (the dataset's shared features, written
    by `robofume main`'s features stage: vision.SHARED_FEATURES_ID) is not encoded again."""
    import torch

    from robofume_ros.vision import shared_slice

    out, todo = {}, []
    want = getattr(model, "features_id", None)
    for i in idx:
        ep = episodes[i]
        n = None
        if want and ep.features is not None and ep.feature_encoder:
            n = shared_slice(ep.feature_encoder, want, np.shape(ep.features)[1])
        if n is None:
            todo.append(i)
        else:
            out[i] = torch.from_numpy(np.ascontiguousarray(ep.features[:, :n], dtype=np.float32))
    if todo:
        frames = np.concatenate([episodes[i].images for i in todo])
        f = model.image_features(frames, batch_size=64, progress=progress)
        o = 0
        for i in todo:
            n = len(episodes[i].images)
            out[i] = f[o : o + n]
            o += n
    return out


def _gather(feats, fs: FrameSet):
    import torch

    return torch.stack([feats[int(e)][int(t)] for e, t in zip(fs.episode, fs.t)])


def train_reward_model(
    episodes: Sequence,
    out,
    kind: str = "dual_encoder",
    backbone: str = "default",
    init: str | None = None,
    tasks=None,
    k: int = 3,
    neg_demo_frac: float = 0.5,
    val_frac: float = 0.2,
    seed: int = 0,
    epochs: int = 60,
    pretrain_epochs: int = 30,
    lr: float | None = None,
    batch_size: int | None = None,
    hidden: int = 256,
    image_size: int | None = None,
    spatial_grid: int | None = None,
    lora_r: int = 0,
    threshold_method: str = "fpr_cap",
    max_fpr: float = 0.05,
    threads: int = 1,
    precision: str = "auto",
    embed_backbone: bool = False,
    progress: bool = True,
    model=None,
    reverse_k: int = 3,
    pair_negatives: int = 3,
    threshold_neg_frac: float | None = None,
):
    """Train, choose the threshold, evaluate, save checkpoint + report to ``out``. Returns (model, report)."""
    import torch

    t_start = time.time()
    out = Path(out)
    episodes = list(episodes)
    prior_idx = [i for i, e in enumerate(episodes) if e.source == "prior"]
    target_idx = [
        i for i, e in enumerate(episodes) if e.source in TARGET_SOURCES and (tasks is None or e.task in tasks)
    ]
    if not target_idx:
        raise ValueError(
            "no target episodes (sources target_demo/failure/intervention) in the data"
            + (f" for tasks {tasks}" if tasks else "")
        )
    if not any(episodes[i].source in DEMO_SOURCES and episodes[i].success for i in target_idx):
        raise ValueError("no successful target demos: nothing to take positive labels from")
    tgt = [episodes[i] for i in target_idx]
    tr_local, va_local = split_by_episode(tgt, val_frac=val_frac, seed=seed)
    train_idx = [target_idx[i] for i in tr_local]
    val_idx = [target_idx[i] for i in va_local]

    reverse = reverse_pairs(tgt) if reverse_k > 0 or pair_negatives > 0 else {}
    pair = {"reverse": reverse, "reverse_k": reverse_k, "pair_negatives": pair_negatives}
    train_set = label_episodes(
        [episodes[i] for i in train_idx], k=k, neg_demo_frac=neg_demo_frac, episode_ids=train_idx, **pair
    )
    val_set = label_episodes(
        [episodes[i] for i in val_idx], k=k, neg_demo_frac=neg_demo_frac, episode_ids=val_idx, **pair
    )
    prior_set = (
        label_episodes([episodes[i] for i in prior_idx], k=k, neg_demo_frac=neg_demo_frac, episode_ids=prior_idx)
        if prior_idx and pretrain_epochs > 0
        else None
    )
    if train_set is None or train_set.n_pos == 0:
        raise ValueError("the training split has no positive frames; add demos or lower --val-frac")

    # ---------------------------------------------------------------- model
    if model is None:
        if init:
            from .base import load_reward_model

            model = load_reward_model(init, num_threads=threads, precision=precision)
        elif kind == "vlm":
            from .vlm import VLMRewardModel

            model = VLMRewardModel.from_pretrained(
                backbone, lora_r=lora_r or 8, num_threads=threads, precision=precision
            )
        else:
            from .dual_encoder import DualEncoderRewardModel

            model = DualEncoderRewardModel.from_pretrained(
                backbone,
                image_size=image_size,
                spatial_grid=spatial_grid,
                lora_r=lora_r,
                hidden=hidden,
                num_threads=threads,
                precision=precision,
            )
    is_head = model.model_type == "dual_encoder" and not getattr(model, "lora", None)
    lr = lr or (1e-3 if is_head else 2e-4)
    batch_size = batch_size or (128 if is_head else 8)
    instructions = sorted(set(train_set.instructions))

    # ---------------------------------------------------------------- training
    hist = {}
    feats = None
    gt_eps = [i for i in val_idx if episodes[i].success_gt is not None]
    if is_head:
        need = sorted(set(train_idx) | set(val_idx) | (set(prior_idx) if prior_set is not None else set()))
        feats = _features_by_episode(model, episodes, need, progress)
        f_train = _gather(feats, train_set)
        f_val = _gather(feats, val_set) if val_set is not None else None
        f_prior = _gather(feats, prior_set) if prior_set is not None else None
        allf = torch.cat([f_train] + ([f_prior] if f_prior is not None else []))
        model.head.img_mean.copy_(allf.mean(0))
        model.head.img_std.copy_(allf.std(0).clamp_min(1e-3))
        if prior_set is not None:
            hist["pretrain"] = model.fit(
                prior_set,
                None,
                epochs=pretrain_epochs,
                lr=lr,
                batch_size=batch_size,
                features=f_prior,
                progress=progress,
                seed=seed,
                update_norm=False,
            )
        hist["finetune"] = model.fit(
            train_set,
            val_set,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            features=f_train,
            val_features=f_val,
            progress=progress,
            seed=seed,
            update_norm=False,
        )
        p_train = model.predict_proba_features(f_train, list(train_set.instructions))
        p_val = model.predict_proba_features(f_val, list(val_set.instructions)) if val_set is not None else None
    else:
        if prior_set is not None:
            hist["pretrain"] = model.fit(
                prior_set,
                None,
                epochs=max(1, pretrain_epochs // 10),
                lr=lr,
                batch_size=batch_size,
                progress=progress,
                seed=seed,
            )
        hist["finetune"] = model.fit(
            train_set, val_set, epochs=epochs, lr=lr, batch_size=batch_size, progress=progress, seed=seed
        )
        p_train = model.predict_proba(train_set.images, list(train_set.instructions))
        p_val = model.predict_proba(val_set.images, list(val_set.instructions)) if val_set is not None else None

    # ---------------------------------------------------------------- threshold + metrics
    thr_set = p_thr = None
    if val_set is not None and threshold_neg_frac is not None and threshold_neg_frac != neg_demo_frac:
        # the same held-out episodes, more of each demo's frames as negatives: only the threshold sees them
        thr_set = label_episodes(
            [episodes[i] for i in val_idx], k=k, neg_demo_frac=threshold_neg_frac, episode_ids=val_idx, **pair
        )
        if feats is not None:
            p_thr = model.predict_proba_features(_gather(feats, thr_set), list(thr_set.instructions))
        else:
            p_thr = model.predict_proba(thr_set.images, list(thr_set.instructions))
    if thr_set is not None and thr_set.n_pos and thr_set.n_neg:
        thr, _ = select_threshold(thr_set.labels, p_thr, method=threshold_method, max_fpr=max_fpr)
        thr_source = f"heldout_labels, the first {threshold_neg_frac:g} of each demo negative"
    elif val_set is not None and val_set.n_pos and val_set.n_neg:
        thr, _ = select_threshold(val_set.labels, p_val, method=threshold_method, max_fpr=max_fpr)
        thr_source = "heldout_labels"
    else:
        thr, _ = select_threshold(train_set.labels, p_train, method=threshold_method, max_fpr=max_fpr)
        thr_source = "train_labels (held-out split had no positives or no negatives)"
    model.threshold = float(thr)

    metrics = {"train": binary_metrics(train_set.labels, p_train, thr)}
    if val_set is not None:
        metrics["heldout_labels"] = binary_metrics(val_set.labels, p_val, thr)
    if thr_set is not None:
        metrics["heldout_threshold_set"] = binary_metrics(thr_set.labels, p_thr, thr)
    gt_y = gt_p = None
    if gt_eps:
        ys, ps = [], []
        it = gt_eps
        if progress:
            from tqdm import tqdm

            it = tqdm(gt_eps, desc="eval vs success_gt", unit="ep")
        for i in it:
            ep = episodes[i]
            if feats is not None:
                ps.append(model.predict_proba_features(feats[i], ep.instruction))
            else:
                ps.append(model.predict_proba(ep.images, ep.instruction))
            ys.append(np.asarray(ep.success_gt, bool))
        gt_y, gt_p = np.concatenate(ys), np.concatenate(ps)
        metrics["heldout_success_gt"] = binary_metrics(gt_y, gt_p, thr)
        metrics["heldout_success_gt"]["n_episodes"] = len(gt_eps)

    # ---------------------------------------------------------------- save
    if model.model_type == "dual_encoder":
        model.save(out, embed_backbone=embed_backbone)
    else:
        model.save(out)
    anchor_frames = 0
    if feats is not None:  # the frames the head learned: what online adaptation must keep (reward.adapt)
        from .adapt import save_anchor

        sets = [(f_train, train_set)] + ([(f_val, val_set)] if val_set is not None else [])
        anchor_frames = save_anchor(
            out,
            torch.cat([f for f, _ in sets]).numpy(),
            np.concatenate([np.asarray(s.labels) for _, s in sets]),
            [i for _, s in sets for i in s.instructions],
            seed=seed,
        )
    figures = []
    if val_set is not None and val_set.n_pos:
        plot_pr_curve(val_set.labels, p_val, out / "pr_curve.png", threshold=thr, title="PR curve (held-out labels)")
        plot_reliability(val_set.labels, p_val, out / "reliability.png", title="reliability (held-out labels)")
        figures += ["pr_curve.png", "reliability.png"]
    if gt_y is not None and gt_y.any():
        plot_pr_curve(
            gt_y, gt_p, out / "pr_curve_success_gt.png", threshold=thr, title="PR curve (held-out, sim ground truth)"
        )
        figures.append("pr_curve_success_gt.png")
    report = {
        "model_id": model.model_id,
        "model_type": model.model_type,
        "checkpoint": str(out),
        "threshold": thr,
        "threshold_method": threshold_method,
        "max_fpr": max_fpr,
        "threshold_from": thr_source,
        "threshold_neg_frac": threshold_neg_frac,
        "instructions": instructions,
        "k": k,
        "neg_demo_frac": neg_demo_frac,
        "reverse_pairs": reverse,
        "reverse_k": reverse_k,
        "pair_negatives": pair_negatives,
        "seed": seed,
        "episodes": {
            "train": len(train_idx),
            "heldout": len(val_idx),
            "prior": len(prior_idx),
            "heldout_with_success_gt": len(gt_eps),
        },
        "frames": {
            "train": len(train_set),
            "train_pos": train_set.n_pos,
            "heldout": len(val_set) if val_set else 0,
            "heldout_pos": val_set.n_pos if val_set else 0,
            "prior": len(prior_set) if prior_set else 0,
        },
        "metrics": metrics,
        "average_precision": {
            "heldout_labels": average_precision(val_set.labels, p_val)
            if val_set is not None and val_set.n_pos
            else None,
            "heldout_success_gt": average_precision(gt_y, gt_p) if gt_y is not None and gt_y.any() else None,
        },
        "anchor_frames": anchor_frames,
        "calibration_ece": reliability(val_set.labels, p_val)["ece"] if val_set is not None else None,
        "history": {k_: {kk: [round(float(x), 5) for x in vv] for kk, vv in v.items()} for k_, v in hist.items()},
        "train_seconds": round(time.time() - t_start, 1),
        "figures": figures,
    }
    write_report(out, report)
    return model, report


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from robofume_ros.data.dataset import load_episodes

    eps = []
    for path in list(args.data) + list(args.prior):
        if not os.path.isdir(path):
            print(f"error: dataset folder {path!r} does not exist", file=sys.stderr)
            return 2
        eps += load_episodes(path)
    model, report = train_reward_model(
        eps,
        args.out,
        kind=args.kind,
        backbone=args.backbone,
        init=args.init,
        tasks=args.tasks,
        k=args.k,
        neg_demo_frac=args.neg_demo_frac,
        reverse_k=args.reverse_k,
        pair_negatives=args.pair_negatives,
        val_frac=args.val_frac,
        seed=args.seed,
        epochs=args.epochs,
        pretrain_epochs=args.pretrain_epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        hidden=args.hidden,
        image_size=args.image_size,
        spatial_grid=args.spatial_grid,
        lora_r=args.lora_r,
        threshold_method=args.threshold_method,
        max_fpr=args.max_fpr,
        threads=args.threads,
        precision=args.precision,
        embed_backbone=args.embed_backbone,
        progress=not args.no_progress,
        threshold_neg_frac=args.threshold_neg_frac,
    )
    m = report["metrics"]
    print(f"saved {args.out} (threshold {report['threshold']:.3f}, {report['train_seconds']} s)")
    for split in ("heldout_labels", "heldout_threshold_set", "heldout_success_gt"):
        if m.get(split):
            s = m[split]
            print(
                f"  {split}: acc {s['accuracy']:.3f}  prec {s['precision']:.3f}  rec {s['recall']:.3f}  "
                f"FP {s['fp_rate']:.3f}  FN {s['fn_rate']:.3f}  ({s['n']} frames)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
