"""Experiment: Cal-QL vs CQL vs BC reset-free fine-tuning, learned vs ground-truth reward, on the
simulated drawer pair, several seeds. Prints a table and writes curves (PNG) + results.json.

    .venv/bin/python experiments/compare_finetuning.py --data runs/main_drawer/data --reward runs/main_drawer/reward \
        --out runs/experiment --seeds 0 1 2

The online loop is the same reset-free loop the ROS graph runs (TaskSwitcher, EpisodeStream written
to disk before training, Learner with 50/50 offline/online batches), stepped synchronously in one
process so that runs are comparable and fit this machine: one gradient update per environment step.
Per run it records every episode's ground-truth success; the success curve is the rolling success of
forward (drawer-open) episodes over environment steps, and the early dip is the pre-trained policy's
evaluated forward success minus the lowest point of that curve in the first half of fine-tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from robofume_ros.pipeline.evaluation import dataset_scene_seed as scene_seed  # the dataset's target scene


def pretrain(algo: str, data: Path, out: Path, steps: int, seed: int, bc_only_successful: bool = False) -> Path:
    from robofume_ros.pipeline.main_job import run_pretrain
    from robofume_ros.rl.learner import BC_ONLY_SUCCESSFUL

    if not (out / "DONE").exists():
        overrides = [f"{BC_ONLY_SUCCESSFUL[algo]}=True"] if bc_only_successful else []
        rc = run_pretrain(data, out, algo, steps, seed, overrides, extra=["--no-progress", "--log-every", "250"])
        if rc not in (None, 0):
            raise SystemExit(f"pretrain {algo} seed {seed} failed")
    return out / "checkpoint.pt"


def online_run(
    ckpt: Path,
    data: Path,
    reward_dir: Path,
    reward_kind: str,
    out: Path,
    steps: int,
    seed: int,
    max_episode_steps: int,
    success_frames: int = 3,
    reward_threshold=None,
    backward_max_episode_steps: int = 0,
    exploration_noise: float = 1.0,
    bc_weight: float = -1.0,
    pair_veto: bool = True,
    bc_only_successful: bool = False,
    home_jitter: float = 0.03,
    online_ratio: float = -1.0,
    n_step: int = 0,
    offline_only: bool = False,
    snapshot_every: int = 0,
    bc_online: bool = True,
    bc_self_imitation: bool = False,
    noise_correlation: float = 0.0,
    bc_online_pre_tanh: bool = False,
) -> list[dict]:
    """Reset-free fine-tuning; returns one record per finished episode.
    n_step > 0: the critics' TD horizon from now on; offline_only: the online episodes are recorded
    but not trained on (updates on offline data only, a control); snapshot_every: the policy is also
    saved as policy_<step>.pt every that many steps; bc_online False: the actor's BC term on offline
    data only; bc_self_imitation: online rows cloned only where their return beat the critic's value (the
    learner node's knobs); noise_correlation: AR(1) exploration noise, reset every episode (the policy
    node's noise_correlation knob); bc_online_pre_tanh: online rows cloned in pre-tanh space."""
    import torch

    from robofume_ros.data.dataset import load_episodes
    from robofume_ros.pipeline.evaluation import workspace_start
    from robofume_ros.online.episode_stream import EpisodeStream
    from robofume_ros.vision.encoder import FrozenImageEncoder
    from robofume_ros.reward.debounce import frame_success
    from robofume_ros.rl.exploration import ExplorationNoise
    from robofume_ros.rl.learner import Learner
    from robofume_ros.sim.world import ResetFreeWorld
    from robofume_ros.switching.task_switcher import REASON_SUCCESS, TaskSpec, TaskSwitcher

    res_file = out / "episodes.json"
    if res_file.exists():
        return json.loads(res_file.read_text())
    torch.manual_seed(seed)
    L = Learner.load(ckpt)
    if n_step > 0:
        L.set_n_step(n_step)
    L.add_offline(load_episodes(data), fit_stats=False)
    if bc_weight >= 0 and hasattr(L.agent.cfg, "bc_weight"):  # as the learner node's bc_weight knob
        L.set_agent_option("bc_weight", bc_weight)
    if bc_only_successful:  # the learner node's knob
        L.set_bc_only_successful(True)
    L.set_online_bc(bc_online, bc_self_imitation, bc_online_pre_tanh)  # the learner node's knobs
    if online_ratio >= 0:  # share of online data in each batch
        L.set_agent_option("online_ratio", online_ratio)
    enc = FrozenImageEncoder()
    reward = None
    if reward_kind == "learned":
        from robofume_ros.reward.base import load_reward_model

        reward = load_reward_model(reward_dir)
        if reward_threshold is not None:
            reward.threshold = reward_threshold
    world = ResetFreeWorld(pair="drawer", seed=scene_seed(data))  # the robot's workspace: the demos' scene
    world.reset()
    home_rng = np.random.default_rng([seed, 77])
    workspace_start(world, "forward", home_rng, home_jitter)
    sw = TaskSwitcher(
        TaskSpec(world.tasks[0], "open the drawer"),
        TaskSpec(world.tasks[1], "close the drawer"),
        max_episode_steps=max_episode_steps,
        help_after_timeouts=0,
        success_frames=success_frames,
        backward_max_episode_steps=backward_max_episode_steps,
    )
    partner = {sw.forward.instruction: sw.backward.instruction, sw.backward.instruction: sw.forward.instruction}
    stream = EpisodeStream(out, action_dim=4)
    noise = ExplorationNoise(4, noise_correlation, seed=seed)
    obs = world.observe()
    feat = enc(obs.image)
    records, t0 = [], time.monotonic()
    for t in range(steps):
        instr = sw.active.instruction
        stream.observation(t, sw.episode_index, obs.image, obs.proprio, instr, sw.active.task)
        stream.ground_truth(t, sw.active.task, obs.success)
        a = L.act(
            {"proprio": obs.proprio[None], "features": feat[None], "instruction": [instr]},
            deterministic=False,
            noise_scale=exploration_noise,
            eps=noise()[None],
        )[0]
        stream.command(t, a)
        obs = world.step(a)
        feat = enc(obs.image)
        if reward is None:
            done = bool(obs.success)
        else:  # as the reward node (with paired_instructions, config/sim_drawer.yaml)
            p_task, p_other = reward.predict_proba_with_partner(obs.image, instr, partner[instr] if pair_veto else None)
            done = frame_success(p_task, reward.threshold, p_other)
        ev = sw.step(done)
        if ev is not None:
            # the frame that ended the episode closes its chain, then the other task starts from it
            stream.observation(t + 0.5, ev.ended_episode, obs.image, obs.proprio, instr, world.task)
            stream.ground_truth(t + 0.5, world.task, obs.success)
            for ep in stream.close_before(ev.new_episode, ev.reason == REASON_SUCCESS):
                ep.features = enc(ep.images)
                if not offline_only:
                    L.add_episode(ep)
                records.append(
                    {
                        "end_step": t + 1,
                        "task": ep.task,
                        "steps": len(ep),
                        "reward_success": bool(ep.success),
                        "gt_success": bool(ep.success_gt[-1]),
                    }
                )
            world.switch("forward" if ev.new_phase == 0 else "backward")
            noise.reset()
            world.home(home_jitter, home_rng)  # as the sim node does (home_on_switch, home_jitter_m)
            obs = world.observe()
        if len(L.online) or (offline_only and records):
            L.update()
        if snapshot_every and (t + 1) % snapshot_every == 0:
            (out / f"policy_{t + 1}.pt").write_bytes(L.export_policy())
        if (t + 1) % 250 == 0:
            fw = [r["gt_success"] for r in records if r["task"] == world.tasks[0]]
            print(
                f"    step {t + 1}/{steps} ({(t + 1) / (time.monotonic() - t0):.1f}/s): {len(records)} episodes, "
                f"forward ground-truth success {sum(fw)}/{len(fw)}",
                flush=True,
            )
    world.close()
    stream.close()
    L.save(out / "learner.pt")
    (out / "policy.pt").write_bytes(L.export_policy())
    res_file.write_text(json.dumps(records))
    return records


def subset_dataset(data: Path, out: Path, target_demos: int) -> Path:
    """A view of `data` with only the first `target_demos` target-task demos of each task (prior data
    and failures unchanged; episodes are symlinked, nothing is copied): a weaker pre-trained policy,
    with room for fine-tuning to improve."""
    import shutil
    from robofume_ros.data.dataset import episode_dirs

    sub = out / f"data_{target_demos}_demos"
    if (sub / "DONE").exists():
        return sub
    if sub.exists():
        shutil.rmtree(sub)
    (sub / "episodes").mkdir(parents=True)
    for name in ("generate.json", "meta.json"):
        shutil.copy(Path(data) / name, sub / name)
    seen: dict = {}
    for d in episode_dirs(data):
        meta = json.loads((d / "meta.json").read_text())
        if meta["source"] == "target_demo":
            seen[meta["task"]] = seen.get(meta["task"], 0) + 1
            if seen[meta["task"]] > target_demos:
                continue
        (sub / "episodes" / d.name).symlink_to(d.resolve())
    if not seen or min(seen.values()) < target_demos:
        raise SystemExit(f"{data} has fewer than {target_demos} target demos of some task: {seen}")
    (sub / "DONE").write_text("ok\n")
    return sub


def curve(records: list[dict], task: str, steps: int, window: int = 4):
    xs, ys = [], []
    hist = []
    for r in records:
        if r["task"] != task:
            continue
        hist.append(float(r["gt_success"]))
        xs.append(r["end_step"])
        ys.append(float(np.mean(hist[-window:])))
    return xs, ys


def recipe_defaults(spec: str = "default", pair: str = "drawer") -> SimpleNamespace:
    """The recipe's fine-tuning settings (config/recipes/), as this in-process loop's defaults: the
    experiments read the recipe the graph reads, and their flags are variants of it."""
    from robofume_ros import recipe
    from robofume_ros.sim import tasks

    r = recipe.load(spec)
    fwd, bwd = tasks.get_pair(pair).time_limits
    return SimpleNamespace(
        home_jitter=r["sim"]["home_jitter_m"],
        max_episode_steps=fwd,
        backward_max_episode_steps=bwd,
        exploration_noise=r["policy"]["noise_scale"],
        finetune_bc_weight=r["learner"]["bc_weight"],
        finetune_n_step=r["learner"]["n_step"],
        bc_online=r["learner"]["bc_online"],
        bc_only_successful=r["learner"]["bc_only_successful"],
        noise_correlation=0.0,
    )


def probe_parser(doc: str, checkpoint_flag: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """The arguments every probe shares: a checkpoint, its dataset, --out, and the evaluation trials
    (forward, in the dataset's scene, arm homed +- --home-jitter, from --eval-seed)."""
    FULL = recipe_defaults()
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(checkpoint_flag, required=True, help=checkpoint_help)
    ap.add_argument("--data", required=True, help="its dataset (the scene of its demos; offline data when fine-tuning)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--eval-trials", type=int, default=20)
    ap.add_argument("--eval-seed", type=int, default=7000, help="start seed of the evaluation trials")
    ap.add_argument("--home-jitter", type=float, default=FULL.home_jitter)
    return ap


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--reward", required=True, help="reward model folder (robofume reward train)")
    ap.add_argument("--out", default="runs/experiment")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--algos", nargs="+", default=["calql", "cql", "bc"])
    ap.add_argument("--pretrain-steps", type=int, default=1500)
    ap.add_argument("--online-steps", type=int, default=1500)
    ap.add_argument(
        "--rewards",
        nargs="+",
        default=["learned", "ground_truth"],
        choices=["learned", "ground_truth"],
        help="reward sources; ground_truth runs Cal-QL only (the reward ablation)",
    )
    ap.add_argument(
        "--eval-trials",
        type=int,
        default=5,
        help="evaluation trials per task before and after fine-tuning (0: none; the online success curve only)",
    )
    FULL = recipe_defaults()  # the recipe's settings and the pair's time limits unless told otherwise
    ap.add_argument(
        "--max-episode-steps", type=int, default=FULL.max_episode_steps, help="forward time limit (and evaluation's)"
    )
    ap.add_argument(
        "--backward-max-episode-steps",
        type=int,
        default=FULL.backward_max_episode_steps,
        help="backward time limit online (0: --max-episode-steps)",
    )
    ap.add_argument(
        "--exploration-noise",
        type=float,
        default=FULL.exploration_noise,
        help="online action std scale (the policy node's noise_scale)",
    )
    ap.add_argument(
        "--bc-weight",
        type=float,
        default=FULL.finetune_bc_weight,
        help="actor BC weight online (-1: the pre-trained one)",
    )
    ap.add_argument(
        "--n-step", type=int, default=FULL.finetune_n_step, help="critics' TD horizon online (0: the pre-trained one)"
    )
    ap.add_argument(
        "--bc-online",
        choices=["true", "false"],
        default=str(FULL.bc_online).lower(),
        help="Cal-QL/CQL: online attempts in the actor's BC term too (BC itself always learns from them)",
    )
    ap.add_argument(
        "--bc-filter",
        choices=["all", "success"],
        default="success" if FULL.bc_only_successful else "all",
        help="behaviour cloning (Cal-QL/CQL's actor term, BC itself) on all data or only on episodes "
        "that succeeded, in pre-training and online",
    )
    ap.add_argument(
        "--home-jitter",
        type=float,
        default=FULL.home_jitter,
        help="random offset of the arm's home pose between episodes, metres per axis (online and in "
        "the evaluations' starts)",
    )
    ap.add_argument(
        "--target-demos",
        type=int,
        default=0,
        help="pre-train (and mix in online) only the first N target demos of each task; prior data "
        "and failures stay (0: all): a weaker pre-trained policy",
    )
    ap.add_argument(
        "--online-ratio",
        type=float,
        default=-1.0,
        help="share of each online batch drawn from the online data (-1: the agent's, 0.5)",
    )
    ap.add_argument(
        "--no-pair-veto",
        action="store_true",
        help="learned reward: do not veto frames it calls done for both tasks of the pair",
    )
    ap.add_argument("--reward-threshold", type=float, default=None, help="override the reward model's threshold")
    ap.add_argument("--summarize", action="store_true", help="only rebuild results.json, the table and the plot")
    ns = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from robofume_ros.pipeline.evaluation import evaluate_policy
    from robofume_ros.rl.policy import Policy

    out = Path(ns.out)
    data, reward_dir = Path(ns.data), Path(ns.reward)
    if ns.target_demos > 0 and not ns.summarize:
        data = subset_dataset(data, out, ns.target_demos)
    configs = ([(a, "learned") for a in ns.algos] if "learned" in ns.rewards else []) + (
        [("calql", "ground_truth")] if "calql" in ns.algos and "ground_truth" in ns.rewards else []
    )
    results = {}
    if ns.summarize:
        configs = []
    for algo, rkind in configs:
        for seed in ns.seeds:
            name = f"{algo}_{rkind}_s{seed}"
            print(f"== {name}", flush=True)
            t0 = time.monotonic()
            ck = pretrain(
                algo, data, out / "pretrain" / f"{algo}_s{seed}", ns.pretrain_steps, seed, ns.bc_filter == "success"
            )
            nothing = {"forward_success": None, "backward_success": None}
            ev_file = out / "pretrain" / f"{algo}_s{seed}" / "eval.json"
            if ns.eval_trials and not ev_file.exists():
                r, _ = evaluate_policy(
                    Policy.load(ck),
                    trials=ns.eval_trials,
                    max_steps=ns.max_episode_steps,
                    seed=5000 + seed,
                    scene_seed=scene_seed(data),
                    start_jitter=ns.home_jitter,
                )
                ev_file.write_text(json.dumps(r.as_dict()))
            pre = json.loads(ev_file.read_text()) if ns.eval_trials else nothing
            recs = online_run(
                ck,
                data,
                reward_dir,
                rkind,
                out / "online" / name,
                ns.online_steps,
                seed,
                ns.max_episode_steps,
                reward_threshold=ns.reward_threshold,
                backward_max_episode_steps=ns.backward_max_episode_steps,
                exploration_noise=ns.exploration_noise,
                bc_weight=ns.bc_weight,
                pair_veto=not ns.no_pair_veto,
                bc_only_successful=ns.bc_filter == "success",
                home_jitter=ns.home_jitter,
                online_ratio=ns.online_ratio,
                n_step=ns.n_step,
                bc_online=ns.bc_online == "true" or algo == "bc",
            )
            post_file = out / "online" / name / "eval.json"
            if ns.eval_trials and not post_file.exists():
                r, _ = evaluate_policy(
                    Policy.load(out / "online" / name / "policy.pt"),
                    trials=ns.eval_trials,
                    max_steps=ns.max_episode_steps,
                    seed=5000 + seed,
                    scene_seed=scene_seed(data),
                    start_jitter=ns.home_jitter,
                )
                post_file.write_text(json.dumps(r.as_dict()))
            post = json.loads(post_file.read_text()) if ns.eval_trials else nothing
            xs, ys = curve(recs, "drawer-open", ns.online_steps)
            half = [y for x, y in zip(xs, ys) if x <= ns.online_steps / 2]
            fwd = [r["gt_success"] for r in recs if r["task"] == "drawer-open"]
            results[name] = {
                "algo": algo,
                "reward": rkind,
                "seed": seed,
                "pretrained_forward": pre["forward_success"],
                "finetuned_forward": post["forward_success"],
                "pretrained_backward": pre["backward_success"],
                "finetuned_backward": post["backward_success"],
                "online_forward_first_half": float(np.mean(fwd[: len(fwd) // 2])) if len(fwd) > 1 else None,
                "online_forward_second_half": float(np.mean(fwd[len(fwd) // 2 :])) if fwd else None,
                # early dip: the start of the success curve (or the evaluated pre-trained
                # policy) minus the curve's lowest point in the first half of fine-tuning
                "dip": ((pre["forward_success"] if pre["forward_success"] is not None else ys[0]) - min(half))
                if half
                else None,
                "episodes": len(recs),
                "curve": [xs, ys],
                "minutes": (time.monotonic() - t0) / 60,
            }
            print(
                f"   {name}: forward success (evaluated) {pre['forward_success']} -> {post['forward_success']}; "
                f"backward {pre['backward_success']} -> {post['backward_success']}; online forward success "
                f"{results[name]['online_forward_first_half']} -> {results[name]['online_forward_second_half']}",
                flush=True,
            )
            (out / "online" / name / "summary.json").write_text(json.dumps(results[name], indent=1))
    # every finished run under --out (other processes may have run other configs or seeds)
    results = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "online").glob("*/summary.json"))}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, out / "curves.png")
    table(results)
    return 0


def plot(results: dict, png: Path) -> None:
    """Left: rolling forward success during fine-tuning, one line per seed. Right: forward success of
    the online episodes in the first and second half of fine-tuning, mean over seeds (dots: seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    colors, groups = {}, {}
    for r in results.values():
        key = f"{r['algo']} ({r['reward']} reward)"
        c = colors.setdefault(key, f"C{len(colors)}")
        groups.setdefault(key, []).append(r)
        xs, ys = r["curve"]
        ax.plot(xs, ys, color=c, alpha=0.8, label=key if key not in [l.get_label() for l in ax.lines] else None)
    ax.set_xlabel("online environment steps (reset-free)")
    ax.set_ylabel("forward success, rolling 4 episodes (ground truth)")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("during fine-tuning (one line per seed)")
    for i, (key, rs) in enumerate(groups.items()):
        for j, k in enumerate(("online_forward_first_half", "online_forward_second_half")):
            v = [r[k] for r in rs if r.get(k) is not None]
            x = i * 3 + j
            bx.bar(x, np.mean(v) if v else 0, color=colors[key], alpha=0.45 if j == 0 else 0.9)
            bx.plot([x] * len(v), v, "k.", ms=5)
    bx.set_xticks([i * 3 + 0.5 for i in range(len(groups))])
    bx.set_xticklabels([k.replace(" (", "\n(") for k in groups], fontsize=8)
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("online forward success (ground truth)")
    bx.set_title("first half (light) vs second half (dark) of fine-tuning")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def table(results: dict) -> None:
    groups = {}
    for r in results.values():
        groups.setdefault((r["algo"], r["reward"]), []).append(r)
    print(
        "\n| method | reward | seeds | forward success, pre-trained -> fine-tuned (evaluated) | "
        "backward, pre -> fine-tuned | online forward, 1st half | 2nd half | early dip |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (algo, rk), rs in groups.items():
        f = lambda k, rs=rs: (
            np.mean([r[k] for r in rs if r.get(k) is not None])
            if any(r.get(k) is not None for r in rs)
            else float("nan")
        )
        print(
            f"| {algo} | {rk} | {len(rs)} | {f('pretrained_forward'):.0%} -> {f('finetuned_forward'):.0%} | "
            f"{f('pretrained_backward'):.0%} -> {f('finetuned_backward'):.0%} | {f('online_forward_first_half'):.0%} | "
            f"{f('online_forward_second_half'):.0%} | {f('dip'):+.0%} |"
        )


if __name__ == "__main__":
    sys.exit(main())
