"""Probe: what does a learner's critic think of the online episodes' starts? (docs/results.md: the n-step findings)

For every online forward episode of a fine-tuning run (the learner node's `online/` dataset): its
start height relative to the median start, its ground-truth success, its MC return from the first
step (the learner's reward scale), the critics' value of the deterministic policy there,
min Q(s, tanh(mean)), and the share of the episode's rows whose MC return is above that value.

    .venv/bin/python experiments/online_values.py --learner runs/main_drawer/finetune/learner/learner.pt \
        --online runs/main_drawer/finetune/learner/online
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--learner", required=True, help="learner checkpoint (the learner node's learner.pt)")
    ap.add_argument("--online", required=True, help="the run's online dataset")
    ap.add_argument("--task-word", default="open", help="episodes whose instruction contains this word")
    ns = ap.parse_args(argv)
    import torch

    from robofume_ros.data.dataset import load_episodes
    from robofume_ros.rl.common import to_torch
    from robofume_ros.vision.encoder import add_features
    from robofume_ros.rl.learner import Learner

    L = Learner.load(Path(ns.learner))
    agent = L.agent
    eps = [ep for ep in load_episodes(Path(ns.online)) if ns.task_word in ep.instruction]
    if not eps:
        raise SystemExit(f"no episodes with {ns.task_word!r} in their instruction under {ns.online}")
    if agent.dims.feature_dim:
        add_features(eps)
    z0 = float(np.median([ep.proprio[0, 2] for ep in eps]))
    rows = []
    for ep in eps:
        start = L.online.n
        L.add_episode(ep)  # MC returns with the learner's reward spec
        b = to_torch(L.online.gather(np.arange(start, L.online.n)), L.device)
        lang = L._lang_table()[b.pop("lang")]
        b["obs"]["lang"] = lang
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=agent.bf16):
            z = agent.encoder(b["obs"])
            mean, _ = agent.actor(z)
            v = agent.deterministic_value(z, mean)
        r = {
            "start_dz_cm": round(100 * (float(ep.proprio[0, 2]) - z0), 1),
            "success": bool(np.any(ep.success_gt)) if ep.success_gt is not None else None,
            "steps": len(ep.rewards),
            "mc_return": round(float(b["mc_returns"][0]), 1),
            "value_det": round(float(v[0]), 1),
            "rows_above_value": round(float((b["mc_returns"] > v).float().mean()), 2),
        }
        rows.append(r)
        print(json.dumps(r), flush=True)
    for name, sel in (
        ("starts >= 6 cm below the median", [r for r in rows if r["start_dz_cm"] <= -6]),
        ("the others", [r for r in rows if r["start_dz_cm"] > -6]),
    ):
        if sel:
            vals = [r["value_det"] for r in sel]
            print(
                f"{name}: {len(sel)} episodes, {sum(bool(r['success']) for r in sel)} successes, "
                f"value of the deterministic policy {min(vals):.0f} .. {max(vals):.0f} (mean {np.mean(vals):.0f})"
            )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
