"""`robofume reward audit RUN|BAGS`: how well did the learned reward judge the episodes of a run?

Reads the recorder's bags of a fine-tuning run (`robofume main`'s runs/main_<pair>, whose bags are in
finetune/bags, or bag directories), pairs every frame's reward probability with the success source
the bags hold (the simulator's verdict, recorded for evaluation only: the learner never sees it) and
reports per task:

* the frame-level ROC AUC, the probability quantiles of success and non-success frames, and the
  frame false-positive / false-negative rates at each threshold;
* for each threshold, what the debounced verdict (N consecutive frames at or above it, as the reward
  node and the task switcher decide) does on the recorded episodes: fires on a success frame or at
  most `--tolerance` frames before the first one (a recognised success: the simulator's flag is a
  hard line through a continuous motion), fires earlier than that or in an episode with no success
  frame (a premature, false end), or never fires in an episode that had a success frame (a missed
  success). The run is replayed as recorded, not re-simulated: an episode the verdict would have
  ended earlier is still counted on its frames.

and writes a histogram of the probabilities per task (reward_audit.png) and the numbers
(reward_audit.json).

With `--model DIR` it scores the run's recorded camera frames with another reward model instead (for
example one trained with other labels on the same data: `robofume reward train ... --reverse-k 3`),
with the pair veto of the reward node (a frame the model calls done for both tasks of the pair is
not a success), and its own threshold unless `--threshold` says otherwise: the same online frames,
a different judge.

    robofume reward audit runs/main_drawer
    robofume reward audit runs/main_drawer --model runs/reward_k10 --out runs/reward_k10
    robofume reward audit runs/x/finetune/bags/robofume_20261206_101500 --out audit/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from robofume_ros.reward.online_recall import auc, by_task, verdict_counts


def rescored_stream(bags: list, model, batch_size: int = 64) -> dict:
    """The run's frames (`report.online_stream`'s layout) scored by `model`: per frame the probability
    for its own instruction and, where the frame's task has a pair, for the pair's other instruction."""
    from robofume_ros.data.bags import read_messages
    from robofume_ros.ros.convert import image_to_rgb, stamp_key

    gt, obs = {}, []
    for topic, _t, m, _s in read_messages(bags, topics=["/observation", "/eval/ground_truth"]):
        if topic == "/eval/ground_truth":
            gt[(stamp_key(m.header.stamp), m.task)] = bool(m.success)
        else:
            obs.append((stamp_key(m.header.stamp), int(m.episode_index), m.task, m.instruction, image_to_rgb(m.image)))
    obs.sort(key=lambda o: o[0])
    instructions = sorted({o[3] for o in obs})
    images = np.stack([o[4] for o in obs]) if obs else np.zeros((0, 1, 1, 3), np.uint8)
    probs = {i: model.predict_proba(images, i, batch_size=batch_size) for i in instructions}
    partner = dict(zip(instructions, reversed(instructions))) if len(instructions) == 2 else {}
    frames = []
    for k, (s, e, task, instr, _img) in enumerate(obs):
        frames.append(
            {
                "episode": e,
                "task": task,
                "probability": float(probs[instr][k]),
                "partner_probability": float(probs[partner[instr]][k]) if instr in partner else None,
                "gt": gt.get((s, task)),
            }
        )
    return {"frames": frames}


def analyse(stream: dict, thresholds, n: int, tolerance: int = 0) -> dict:
    out = {}
    for task, eps in by_task(stream["frames"]).items():
        pos = np.array([f["probability"] for v in eps for f in v if f["gt"]])
        neg = np.array([f["probability"] for v in eps for f in v if not f["gt"]])
        q = [0.1, 0.5, 0.9, 0.99]
        out[task] = {
            "episodes": len(eps),
            "with_success_frame": int(sum(any(f["gt"] for f in v) for v in eps)),
            "success_frames": len(pos),
            "other_frames": len(neg),
            "auc": round(auc(pos, neg), 4),
            "success_quantiles": dict(zip(map(str, q), np.quantile(pos, q).round(3).tolist())) if len(pos) else {},
            "other_quantiles": dict(zip(map(str, q), np.quantile(neg, q).round(3).tolist())) if len(neg) else {},
            "thresholds": {
                f"{t:g}": {
                    **verdict_counts(eps, t, n, tolerance),
                    "frame_fp_rate": round(float((neg >= t).mean()), 4) if len(neg) else None,
                    "frame_fn_rate": round(float((pos < t).mean()), 4) if len(pos) else None,
                }
                for t in thresholds
            },
            "_pos": pos,
            "_neg": neg,
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="robofume reward audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "source",
        nargs="+",
        help="a run folder (finetune/bags, reward/reward_model.json, settings.json) or bag directories",
    )
    ap.add_argument(
        "--success-frames", type=int, default=0, help="N of the debounce (default: the run's settings.json, else 3)"
    )
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    ap.add_argument(
        "--tolerance",
        type=int,
        default=2,
        help="firing at most this many frames before the simulator's first success frame is on time",
    )
    ap.add_argument("--out", help="folder for reward_audit.png/.json (default: the run folder, else ./reward_audit)")
    ap.add_argument("--model", help="score the recorded frames with this reward model instead")
    ap.add_argument("--threshold", type=float, help="with --model: the threshold to mark (default: the model's own)")
    ns = ap.parse_args(argv)
    from robofume_ros.pipeline.report import _fig, online_stream

    first = Path(ns.source[0])
    run = first if len(ns.source) == 1 and (first / "finetune" / "bags").is_dir() else None
    if run is not None:
        bags = sorted(p for p in (run / "finetune" / "bags").iterdir() if p.is_dir())
    else:
        bags = [Path(b) for b in ns.source]
        missing = [str(b) for b in bags if not b.exists()]
        if missing:
            raise SystemExit(f"no such run folder or bag: {', '.join(missing)}")
    if not bags:
        raise SystemExit(f"{first}/finetune/bags: no recorded bags")
    n = ns.success_frames
    if n <= 0:
        settings = run / "settings.json" if run is not None else None
        n = int(json.loads(settings.read_text()).get("success_frames", 3)) if settings and settings.exists() else 3
    if ns.model:
        from robofume_ros.reward.base import load_reward_model

        judge = load_reward_model(ns.model)
        own = judge.threshold if ns.threshold is None else ns.threshold
        stream = rescored_stream(bags, judge)
    else:
        model = run / "reward" / "reward_model.json" if run is not None else None
        own = json.loads(model.read_text()).get("threshold") if model and model.exists() else None
        stream = online_stream(bags)
        recorded = [f["threshold"] for f in stream["frames"] if f.get("threshold") is not None]
        if own is None and recorded:
            own = recorded[-1]  # the threshold the reward node used, from its messages
    thresholds = sorted(set(ns.thresholds) | ({round(float(own), 4)} if own else set()))
    res = analyse(stream, thresholds, n, ns.tolerance)
    out = Path(ns.out) if ns.out else (run if run is not None else Path("reward_audit"))
    out.mkdir(parents=True, exist_ok=True)
    fig = _fig(4 * len(res), 3.2)
    for k, (task, r) in enumerate(res.items()):
        ax = fig.add_subplot(1, len(res), k + 1)
        bins = np.linspace(0, 1, 26)
        for vals, label in (
            (r["_neg"], f"not done ({r['other_frames']})"),
            (r["_pos"], f"done ({r['success_frames']})"),
        ):
            if len(vals):
                ax.hist(vals, bins, alpha=0.6, density=True, label=label)
        if own:
            ax.axvline(own, color="k", ls="--", lw=1, label=f"threshold {own:.2f}")
        ax.set_title(f"{task}: AUC {r['auc']:.2f}")
        ax.set_xlabel("reward probability")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "reward_audit.png", dpi=100)
    clean = {t: {k: v for k, v in r.items() if not k.startswith("_")} for t, r in res.items()}
    (out / "reward_audit.json").write_text(
        json.dumps(
            {
                "success_frames": n,
                "tolerance": ns.tolerance,
                "model_threshold": own,
                "model": ns.model or "recorded",
                "tasks": clean,
            },
            indent=1,
        )
    )
    print(
        f"debounce: {n} consecutive frames; the model's own threshold {own}; on time: up to {ns.tolerance} "
        f"frames before the simulator's success"
    )
    for task, r in clean.items():
        print(
            f"{task}: {r['episodes']} episodes ({r['with_success_frame']} with a success frame), frame AUC "
            f"{r['auc']:.3f}; success frames p10/p50/p90 {r['success_quantiles']}, others {r['other_quantiles']}"
        )
        for t, c in r["thresholds"].items():
            print(
                f"   threshold {t}: recognised {c['recognised']}, premature {c['premature']}, missed {c['missed']}; "
                f"frame FP {c['frame_fp_rate']}, FN {c['frame_fn_rate']}"
            )
    print(f"wrote {out / 'reward_audit.png'} and {out / 'reward_audit.json'}")
    return 0
