"""Probe: does online fine-tuning move a given pre-trained policy? (docs/results.md: does fine-tuning move the policy at all)

Reset-free fine-tuning in one process from an existing pre-training checkpoint (the experiment's
loop, `compare_finetuning.online_run`), the simulator's success as reward, one update per step;
the policy is snapshotted every --snapshot-every steps and every snapshot, with the pre-trained
policy, is evaluated on the same deterministic forward trials (arm homed +- --home-jitter in the
demos' scene). One JSON line per evaluated policy, and results.json.

    .venv/bin/python experiments/finetune_probe.py --pretrained runs/main_drawer/pretrain/checkpoint.pt \\
        --data runs/main_drawer/data --out runs/probe_main --online-steps 6000
    # defaults: the main job's recipe; variants: --n-step 1, --bc-weight 0.1, --bc-online true, --self-imitation,
    # --offline-only (the control: no online data)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_finetuning import online_run, probe_parser, recipe_defaults, scene_seed  # sets MUJOCO_GL, the repo path

FULL = recipe_defaults()


def main(argv=None) -> int:
    ap = probe_parser(__doc__, "--pretrained", "learner checkpoint (robofume pretrain's checkpoint.pt)")
    ap.add_argument("--online-steps", type=int, default=6000)
    ap.add_argument("--snapshot-every", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--exploration-noise", type=float, default=FULL.exploration_noise)
    ap.add_argument(
        "--noise-correlation",
        type=float,
        default=FULL.noise_correlation,
        help="AR(1) correlation of the exploration noise between ticks (0: white)",
    )
    ap.add_argument("--bc-weight", type=float, default=FULL.finetune_bc_weight)
    ap.add_argument(
        "--n-step", type=int, default=FULL.finetune_n_step, help="critics' TD horizon online (0 = the checkpoint's)"
    )
    ap.add_argument("--offline-only", action="store_true", help="record online episodes but train on offline data only")
    ap.add_argument(
        "--bc-online",
        choices=["true", "false"],
        default=str(FULL.bc_online).lower(),
        help="online attempts in the actor's BC term too (false: offline data only; online data then "
        "trains the critic and the RL term only)",
    )
    ap.add_argument(
        "--self-imitation",
        action="store_true",
        help="online rows cloned only where their MC return beat the critic's value of the deterministic policy",
    )
    ap.add_argument(
        "--pre-tanh-bc",
        action="store_true",
        help="online rows cloned in pre-tanh space (unbiased for the policy's own noisy actions)",
    )
    ns = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from robofume_ros.pipeline.evaluation import evaluate_policy
    from robofume_ros.rl.policy import Policy

    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    recs = online_run(
        Path(ns.pretrained),
        Path(ns.data),
        Path("."),
        "ground_truth",
        out,
        ns.online_steps,
        ns.seed,
        FULL.max_episode_steps,
        backward_max_episode_steps=FULL.backward_max_episode_steps,
        exploration_noise=ns.exploration_noise,
        bc_weight=ns.bc_weight,
        bc_only_successful=FULL.bc_only_successful,
        home_jitter=ns.home_jitter,
        n_step=ns.n_step,
        offline_only=ns.offline_only,
        snapshot_every=ns.snapshot_every,
        bc_online=ns.bc_online == "true",
        bc_self_imitation=ns.self_imitation,
        noise_correlation=ns.noise_correlation,
        bc_online_pre_tanh=ns.pre_tanh_bc,
    )
    fwd = [r["gt_success"] for r in recs if r["task"] == "drawer-open"]
    policies = [("pretrained", Path(ns.pretrained))] + [
        (str(s), out / f"policy_{s}.pt")
        for s in range(ns.snapshot_every, ns.online_steps + 1, ns.snapshot_every)
        if ns.snapshot_every
    ]
    results = {"args": vars(ns), "online_forward": [sum(fwd), len(fwd)], "policies": {}}
    for name, path in policies:
        torch.manual_seed(0)
        r, _ = evaluate_policy(
            Policy.load(path),
            trials=ns.eval_trials,
            max_steps=FULL.max_episode_steps,
            seed=ns.eval_seed,
            scene_seed=scene_seed(Path(ns.data)),
            start_jitter=ns.home_jitter,
            deterministic=True,
            phases=("forward",),
        )
        results["policies"][name] = {"forward": r.forward_success, "trials": r.forward_trials}
        print(
            json.dumps(
                {
                    "policy": name,
                    "forward": r.forward_success,
                    "failed_trials": [i for i, s in enumerate(r.forward_trials) if s is None],
                }
            ),
            flush=True,
        )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"online forward successes {sum(fwd)}/{len(fwd)}; results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
