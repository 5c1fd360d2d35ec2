"""Experiment: does the reward get better online when it adapts (reward.adapt), and from how many verdicts?

Replays a recorded fine-tuning run (its bags: camera frames, the simulator's verdicts, the episodes
as the task switcher cut them) through the reward node's own adaptation code: an `EpisodeLog` fed
every frame (with the frozen tower's features), the episode ends and, optionally, a simulated
person's verdicts; `adapt_head` runs whenever enough new trusted labels arrived, and the next
episodes are judged by the version then in use. The episodes are replayed as recorded (not
re-simulated): a verdict that fires earlier or later changes the labels, not the motion.

The simulated person (``--person N``: at most N verdicts in the run) watches with the simulator's
eyes, as a person at the robot would with theirs: when the reward misses a success they press
"success" `--reaction` frames after the task is done; when it ends an episode too early they press
"undo". Without a person only the loop's own consistency labels are used.

Reports, for the base model and the adapted ones: recognised / premature / missed (debounced as
the task switcher decides, at most 2 frames early counts as on time) and the frame FP rate, per
task, both as the run went (each episode judged by the version in use then) and with the final
version on every episode (what OOO's relabelling uses), plus the versions accepted and refused.

    .venv/bin/python experiments/reward_adaptation.py --run runs/main_drawer --model runs/main_drawer/reward \
        --person 0 10 20 --out runs/adapt_drawer
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np


def load_run(run: Path, model, batch_size: int = 64):
    """Per recorded episode (in order): task, instruction, frames' features and simulator verdicts."""
    from robofume_ros.data.bags import read_graph_messages
    from robofume_ros.ros.convert import image_to_rgb, stamp_key

    bags = (
        sorted(p for p in (run / "finetune" / "bags").iterdir() if p.is_dir()) if (run / "finetune").is_dir() else [run]
    )
    gt, obs = {}, []
    for key, _t, m, _s in read_graph_messages(bags, ["observation", "ground_truth"]):
        if key == "ground_truth":
            gt[(stamp_key(m.header.stamp), m.task)] = bool(m.success)
        else:
            obs.append((stamp_key(m.header.stamp), int(m.episode_index), m.task, m.instruction, image_to_rgb(m.image)))
    obs.sort(key=lambda o: o[0])
    feats = model.image_features(np.stack([o[4] for o in obs]), batch_size=batch_size, progress=True).numpy()
    episodes: dict = {}
    for k, (s, e, task, instr, _img) in enumerate(obs):
        ep = episodes.setdefault(e, {"index": e, "task": task, "instruction": instr, "rows": [], "gt": []})
        ep["rows"].append(k)
        ep["gt"].append(gt.get((s, task)))
    out = []
    for e in sorted(episodes):
        ep = episodes[e]
        if all(g is None for g in ep["gt"]):
            continue
        ep["features"] = feats[ep["rows"]]
        ep["gt"] = [bool(g) for g in ep["gt"]]
        out.append(ep)
    return out


def judge(model, ep, partner):
    """Per frame P(done) for the episode's instruction and its partner's, from cached features."""
    p = model.predict_proba_features(ep["features"], ep["instruction"])
    q = model.predict_proba_features(ep["features"], partner[ep["instruction"]]) if partner else None
    return p, q


def verdict(p, q, gt, thr, n=3, tolerance=2):
    """(verdict, frame index where the switcher would end it or None) as the audit counts it."""
    from robofume_ros.reward.debounce import frame_success

    run = 0
    for i in range(len(p)):
        run = run + 1 if frame_success(p[i], thr, None if q is None else q[i]) else 0
        if run >= n:
            return ("recognised" if any(gt[i : i + tolerance + 1]) else "premature"), i
    return ("missed" if any(gt) else "none"), None


def judge_all(model, episodes, partner) -> list:
    """Every episode judged by one model: its verdict and frame false positives."""
    rows = []
    for ep in episodes:
        p, q = judge(model, ep, partner)
        gt = np.array(ep["gt"])
        rows.append(
            {
                "task": ep["task"],
                "verdict": verdict(p, q, ep["gt"], model.threshold)[0],
                "fp_frames": int(((p >= model.threshold) & ~gt).sum()),
                "neg_frames": int((~gt).sum()),
            }
        )
    return rows


def summarise(rows):
    out = {}
    for task in sorted({r["task"] for r in rows}):
        mine = [r for r in rows if r["task"] == task]
        c = {k: sum(r["verdict"] == k for r in mine) for k in ("recognised", "premature", "missed", "none")}
        neg = sum(r["neg_frames"] for r in mine)
        c["frame_fp_rate"] = round(sum(r["fp_frames"] for r in mine) / max(neg, 1), 4)
        out[task] = c
    succ = sum(r["verdict"] in ("recognised", "missed") for r in rows)
    out["all"] = {
        "recall": round(sum(r["verdict"] == "recognised" for r in rows) / max(succ, 1), 3),
        "premature_share": round(sum(r["verdict"] == "premature" for r in rows) / max(len(rows), 1), 3),
        "episodes": len(rows),
    }
    return out


def replay(model, episodes, pair, person_budget: int, reaction: int, cfg, seed: int = 0):
    from robofume_ros.reward.adapt import REASON_SUCCESS, REASON_TIMEOUT, SUCCESS, UNDO
    from robofume_ros.reward.adapt import EpisodeLog, adapt_head, load_anchor, with_head

    anchor = load_anchor(model.folder)
    partner = dict(zip(pair, reversed(pair))) if len(pair) == 2 else {}
    log = EpisodeLog(pair, last_frames=cfg.last_frames, max_labels=cfg.max_labels)
    current, version, seen, used = model, 0, 0, 0
    rows, versions = [], []
    for ep in episodes:
        p, q = judge(current, ep, partner)
        thr = current.threshold
        v, at = verdict(p, q, ep["gt"], thr)
        end = len(p) if at is None else at + 1
        person = None
        if used < person_budget and v == "missed":
            first = ep["gt"].index(True)
            end, person = min(len(p), first + 1 + reaction), SUCCESS
        for i in range(end):
            log.frame(ep["index"], ep["instruction"], ep["features"][i], p[i], p[i] >= thr)
        if person == SUCCESS:
            log.override(ep["index"], SUCCESS)
            used += 1
        ok = at is not None or person == SUCCESS
        log.phase(ep["index"] + 1, REASON_SUCCESS if ok else REASON_TIMEOUT)
        if used < person_budget and v == "premature":
            log.override(ep["index"], UNDO)
            used += 1
        gt = np.array(ep["gt"])
        rows.append(
            {
                "task": ep["task"],
                "verdict": v,
                "version": version,
                "fp_frames": int(((p >= thr) & ~gt).sum()),
                "neg_frames": int((~gt).sum()),
            }
        )
        if log.mistakes - seen >= cfg.min_mistakes:
            seen = log.mistakes
            res = adapt_head(
                current, anchor, log.labels(), cfg, seed=seed + len(versions), keep=log.kept(), reference=model.head
            )
            versions.append({"after_episode": ep["index"], **res.report})
            if res.accepted:
                version += 1
                current = with_head(current, res.head, version)
    final = judge_all(current, episodes, partner)
    return {
        "person_budget": person_budget,
        "person_verdicts_used": used,
        "labels": log.counts(),
        "versions_accepted": version,
        "adaptations": len(versions),
        "refused": [v_["refused_because"] for v_ in versions if not v_["accepted"]],
        "as_run": summarise(rows),
        "final_model_on_all_episodes": summarise(final),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a fine-tuning run folder (runs/main_<pair>) or one bag directory")
    ap.add_argument("--model", required=True, help="the reward model the run used (trained with an anchor set)")
    ap.add_argument("--person", type=int, nargs="+", default=[0, 10], help="verdict budgets of the simulated person")
    ap.add_argument("--reaction", type=int, default=2, help="frames between the task done and the person's press")
    ap.add_argument(
        "--out", default="", help="folder for results.json and the run's frame features (reused; default: print only)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    from robofume_ros.reward.adapt import AdaptConfig
    from robofume_ros.reward.base import load_reward_model

    model = load_reward_model(ns.model)
    model.folder = Path(ns.model)
    cache = Path(ns.out) / "episodes.pkl" if ns.out else None
    if cache is not None and cache.exists():  # the frozen tower's features of the run (minutes to compute)
        episodes = pickle.loads(cache.read_bytes())
    else:
        episodes = load_run(Path(ns.run), model)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(pickle.dumps(episodes))
    pair = sorted({e["instruction"] for e in episodes})
    cfg = AdaptConfig()
    base = judge_all(model, episodes, dict(zip(pair, reversed(pair))) if len(pair) == 2 else {})
    results = {"run": ns.run, "model": ns.model, "base": summarise(base), "replays": []}
    print("base:", json.dumps(results["base"]))
    for budget in ns.person:
        r = replay(model, episodes, pair, budget, ns.reaction, cfg, ns.seed)
        results["replays"].append(r)
        print(json.dumps(r))
    if ns.out:
        Path(ns.out).mkdir(parents=True, exist_ok=True)
        (Path(ns.out) / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
