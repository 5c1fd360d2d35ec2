"""Probe: how often does a policy succeed while exploring, and from which starts? (docs/results.md: the exploration findings)

Evaluates one policy on the same forward trials (the robot's workspace, arm homed +- --home-jitter)
deterministically and exploring with each --settings entry `scale:correlation` (the policy node's
noise_scale and noise_correlation: white noise at 0, AR(1) above, rl/exploration.py), several
--repeats of the stochastic trials. Online fine-tuning can only learn from what exploration finds,
so this shows which exploration finds successes where the deterministic policy fails; starts
below the home height by more than --low-z are counted apart (docs/results.md: the pre-trained policy's
failures). One JSON line per setting, and results.json.

    .venv/bin/python experiments/exploration_probe.py --policy runs/main_drawer/pretrain/checkpoint.pt \\
        --data runs/main_drawer/data --out runs/exploration_probe --settings 0.5:0 0.5:0.9
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")


def main(argv=None) -> int:
    from robofume_ros import recipe
    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.pipeline.evaluation import dataset_scene_seed
    from robofume_ros.sim.tasks import get_pair

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policy", required=True, help="policy or learner checkpoint")
    ap.add_argument("--data", required=True, help="its dataset (the pair, and the scene of its demos)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval-trials", type=int, default=20)
    ap.add_argument("--eval-seed", type=int, default=7000, help="start seed of the trials")
    ap.add_argument("--home-jitter", type=float, default=recipe.load()["sim"]["home_jitter_m"])
    ap.add_argument("--settings", nargs="+", default=["0.5:0", "0.5:0.9"], help="noise_scale:correlation ...")
    ap.add_argument("--repeats", type=int, default=2, help="stochastic passes over the same trials")
    ap.add_argument("--low-z", type=float, default=0.05, help="a start this far below home height counts as low")
    ns = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from robofume_ros.pipeline.evaluation import evaluate_policy
    from robofume_ros.rl.policy import Policy

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    pol = Policy.load(ns.policy)
    pair = get_pair(dataset_pair(ns.data))
    common = dict(
        pair=pair.name,
        trials=ns.eval_trials,
        max_steps=pair.time_limits[0],
        seed=ns.eval_seed,
        scene_seed=dataset_scene_seed(Path(ns.data)),
        start_jitter=ns.home_jitter,
        phases=("forward",),
    )
    results = {"args": vars(ns), "settings": {}}
    runs = [("deterministic", 0.0, 0.0, 1)] + [(s, *map(float, s.split(":")), ns.repeats) for s in ns.settings]
    for name, scale, rho, repeats in runs:
        ok, low_ok, n, n_low = 0, 0, 0, 0
        for rep in range(repeats):
            torch.manual_seed(rep)
            r, _ = evaluate_policy(
                pol, deterministic=name == "deterministic", noise_scale=scale, noise_correlation=rho, **common
            )
            for steps, start in zip(r.forward_trials, r.forward_starts):
                low = start[2] < -ns.low_z
                ok += steps is not None
                low_ok += low and steps is not None
                n += 1
                n_low += low
        rec = {
            "setting": name,
            "success": ok / max(n, 1),
            "trials": n,
            "low_start_success": low_ok / max(n_low, 1),
            "low_start_trials": n_low,
            "other_success": (ok - low_ok) / max(n - n_low, 1),
        }
        results["settings"][name] = rec
        print(json.dumps(rec), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
