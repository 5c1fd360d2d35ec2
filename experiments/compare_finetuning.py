"""Experiment: reset-free fine-tuning variants side by side, through the ROS graph, several seeds.

Every run is the fine-tuning graph `robofume main` starts (the nodes of `ros2 launch robofume_ros
finetune.launch.py` with system arguments only: sim, camera, policy, reward, task switcher,
learner, recorder), each in its own ROS domain on this host, so runs can go side by side
(--parallel; on 2 cores one at a time). There is no other loop: what an experiment varies is a
launch argument or a recipe. The dimensions:

  --algos    offline pre-training and fine-tuning algorithm (calql, cql, bc), pre-trained here
             per seed with the recipe's pre-training settings, or --pretrained: one checkpoint
             for every run
  --rewards  learned (the reward node decides success) or ground_truth (the simulator's success
             ends episodes: the reward ablation, never a product setting)
  --clocks   sim (sim time paced by the learner: fast:=true use_sim_time:=true; the main job's
             default) or wall (the 10 Hz wall clock of a real arm)
  --recipes  recipe specs: config/recipes/ names or variant .yaml files layered on the default
  --seeds

Per run: the pre-trained and fine-tuned policies evaluated by simulator ground truth (--eval-trials
per task, the same trials before and after, from reset-free starts in the demos' scene), and each
online episode's ground-truth success read back from the recorder's bags (the learner never sees
it). Prints a table and writes results.json and curves.png; finished runs are skipped when run again.

    .venv/bin/python experiments/compare_finetuning.py --run runs/main_drawer --out runs/experiment \\
        --seeds 0 1 2 --algos calql cql bc --rewards learned ground_truth
    # sim time against the 10 Hz wall clock, same checkpoint, seeds and budget (docs/fleet.md):
    .venv/bin/python experiments/compare_finetuning.py --run runs/main_drawer \\
        --pretrained runs/main_drawer/pretrain/checkpoint.pt --out runs/clocks --clocks wall sim --budget 3000
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import itertools
import json
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@dataclass(frozen=True)
class Run:
    algo: str
    reward: str
    clock: str
    recipe: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.reward}-{self.clock}-{Path(self.recipe).stem}-s{self.seed}"


def _log(prefix: str):
    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {prefix}: {msg}", flush=True)

    return log


def _settings(ns, recipe_spec: str) -> dict:
    """What main_job.evaluate needs: the pair, the trials, the time limits the graph derives for
    this recipe and dataset, the recipe's home jitter."""
    from robofume_ros import recipe
    from robofume_ros.ros import graph

    derived = graph.task_parameters(
        graph.resolve_args({"world": ns.pair, "recipe": recipe_spec, "offline_dataset": str(ns.data)})
    )[1]
    return {
        "pair": ns.pair,
        "pair_spec": ns.pair,
        "main": {"eval_trials": ns.eval_trials},
        "time_limits": derived["time_limits"],
        "home_jitter": recipe.load(recipe_spec)["sim"]["home_jitter_m"],
    }


def pretrain_job(ns, algo: str, recipe_spec: str, seed: int) -> dict:
    """Pre-train (unless --pretrained) and evaluate; {"checkpoint", "eval"}."""
    import torch

    torch.set_num_threads(1)
    from robofume_ros.pipeline.evaluation import dataset_scene_seed
    from robofume_ros.pipeline.main_job import evaluate, run_pretrain
    from robofume_ros.pipeline.retrain import pretrain_overrides

    if ns.pretrained:
        out, ckpt = Path(ns.out) / "pretrain" / "given", Path(ns.pretrained)
    else:
        out = Path(ns.out) / "pretrain" / f"{algo}-{Path(recipe_spec).stem}-s{seed}"
        ckpt = out / "checkpoint.pt"
        if not (out / "DONE").exists():
            sets = pretrain_overrides(recipe_spec, algo)
            rc = run_pretrain(
                ns.data, out, algo, ns.pretrain_steps, seed, sets, ["--no-progress", "--log-every", "500"]
            )
            if rc not in (None, 0):
                raise RuntimeError(f"pre-training {out.name} failed (exit {rc})")
    from robofume_ros.rl.checkpoint import load_checkpoint

    res = None
    if ns.eval_trials:
        res = evaluate("pretrained", ckpt, out, _settings(ns, recipe_spec), dataset_scene_seed(ns.data))
    return {"checkpoint": str(ckpt), "eval": res, "updates": int(load_checkpoint(ckpt)["step"])}


def finetune_job(ns, run: Run, pre: dict, domain: int) -> dict:
    """One fine-tuning graph, its fine-tuned policy evaluated, its online episodes read from the
    bags; the run's summary (also run_dir/summary.json)."""
    from robofume_ros.pipeline.evaluation import dataset_scene_seed
    from robofume_ros.pipeline.main_job import TIMINGS, evaluate, finetune_args, record_seconds, run_finetune
    from robofume_ros.pipeline.report import online_stream

    run_dir = Path(ns.out) / "online" / run.name
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        return json.loads(summary_file.read_text())
    log = _log(run.name)
    args = finetune_args(run_dir, ns.pair, run.recipe, ns.budget, run.seed, pre["checkpoint"], ns.reward, ns.data)
    if run.reward == "ground_truth":
        args["success_source"] = "ground_truth"
    if run.clock == "sim":
        args.update(fast="true", use_sim_time="true")
    if not (run_dir / "DONE").exists():
        t0 = time.monotonic()
        rc = run_finetune(run_dir, args, domain=domain, log=log)
        if rc != 0:
            raise RuntimeError(f"{run.name}: the fine-tuning graph failed (exit {rc}); logs in {run_dir / 'logs'}")
        record_seconds(run_dir / TIMINGS, "finetune", time.monotonic() - t0)
    seconds = json.loads((run_dir / TIMINGS).read_text())["finetune"]
    status = json.loads((run_dir / "learner" / "status.json").read_text())
    post = None
    if ns.eval_trials:
        import torch

        torch.set_num_threads(1)
        ckpt = run_dir / "learner" / "policy_latest.pt"
        post = evaluate("finetuned", ckpt, run_dir, _settings(ns, run.recipe), dataset_scene_seed(ns.data))
    from robofume_ros.sim.tasks import get_pair

    forward = get_pair(ns.pair).forward
    episodes = online_stream(sorted((run_dir / "bags").glob("*")))["episodes"]
    fwd = [e for e in episodes if e["task"] == forward and e["gt_success"] is not None and e["ended"] is not False]
    gt = [float(e["gt_success"]) for e in fwd]
    pre_eval = pre["eval"] or {}
    summary = {
        **asdict(run),
        "name": run.name,
        "pretrained_forward": pre_eval.get("forward_success"),
        "pretrained_backward": pre_eval.get("backward_success"),
        "finetuned_forward": (post or {}).get("forward_success"),
        "finetuned_backward": (post or {}).get("backward_success"),
        "eval_trials": ns.eval_trials,
        "online_episodes": len(episodes),
        "online_forward_first_half": float(np.mean(gt[: len(gt) // 2])) if len(gt) > 1 else None,
        "online_forward_second_half": float(np.mean(gt[len(gt) // 2 :])) if gt else None,
        "curve": curve(fwd),
        "env_steps": status.get("env_steps"),
        "updates": status["updates"] - pre["updates"],  # online ones (the learner counts on from pre-training)
        "finetune_seconds": round(seconds, 1),
    }
    summary_file.write_text(json.dumps(summary, indent=1))
    log(
        f"forward {summary['pretrained_forward']} -> {summary['finetuned_forward']}, backward "
        f"{summary['pretrained_backward']} -> {summary['finetuned_backward']}; online forward "
        f"{summary['online_forward_first_half']} -> {summary['online_forward_second_half']}; "
        f"{summary['updates']} updates for {summary['env_steps']} env steps in {seconds:.0f} s"
    )
    return summary


def curve(episodes: list, window: int = 4) -> list:
    """[end steps, rolling ground-truth success over `window` episodes] of one direction."""
    gt = [float(e["gt_success"]) for e in episodes]
    return [
        [e["end_step"] for e in episodes],
        [float(np.mean(gt[max(0, i - window + 1) : i + 1])) for i in range(len(gt))],
    ]


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


def _run(parallel: int, jobs: list) -> list:
    """Run `jobs` [(fn, *args)], `parallel` at a time; their futures. Each job starts a graph
    (subprocesses, signal handlers), so each runs in a process of its own, not a fork of torch.
    Ctrl-C or SIGTERM stops every running job's graph (SIGTERM to each worker) and cancels the rest."""
    pool = cf.ProcessPoolExecutor(max_workers=parallel, mp_context=multiprocessing.get_context("spawn"))
    futs = [pool.submit(*job) for job in jobs]
    try:
        cf.wait(futs)
    except KeyboardInterrupt:
        for proc in list(pool._processes.values()):  # the executor keeps no public handle on them
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return futs


def main(argv=None) -> int:
    from robofume_ros import recipe
    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.pipeline.main_job import ALGO_NAMES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default=None, help="a main-job run folder: its data/ and reward/ (unless given)")
    ap.add_argument("--data", default=None, help="dataset folder (the offline data and the demos' scene)")
    ap.add_argument("--reward", default=None, help="reward model folder (robofume reward train)")
    ap.add_argument("--pretrained", default=None, help="one pre-trained checkpoint for every run (no pre-training)")
    ap.add_argument("--out", default="runs/experiment")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--algos", nargs="+", default=["calql"], choices=sorted(ALGO_NAMES))
    ap.add_argument("--rewards", nargs="+", default=["learned"], choices=["learned", "ground_truth"])
    ap.add_argument("--clocks", nargs="+", default=["sim"], choices=["sim", "wall"], help="as robofume main --clock")
    ap.add_argument("--recipes", nargs="+", default=[recipe.DEFAULT], help="recipe names or variant .yaml files")
    ap.add_argument("--budget", type=int, default=None, help="online environment steps (default: the recipe's)")
    ap.add_argument("--pretrain-steps", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--eval-trials", type=int, default=None, help="per task, before and after (default: the recipe's)")
    ap.add_argument("--target-demos", type=int, default=0, help="pre-train on the first N target demos of each task")
    ap.add_argument("--parallel", type=int, default=1, help="runs at once, each in its own ROS domain")
    ap.add_argument("--domain", type=int, default=None, help="first ROS domain id (default from the process id)")
    ap.add_argument("--summarize", action="store_true", help="only rebuild results.json, the table and the plot")
    ns = ap.parse_args(argv)
    out, failed = Path(ns.out), []
    if not ns.summarize:
        run = Path(ns.run) if ns.run else None
        ns.data = Path(ns.data or (run / "data" if run else ""))
        ns.reward = Path(ns.reward or (run / "reward" if run else ""))
        if not (ns.data / "generate.json").exists() or not (ns.reward / "reward_model.json").exists():
            raise SystemExit("need a generated dataset and a reward model: --run DIR, or --data and --reward")
        try:
            for spec in ns.recipes:
                recipe.files(spec)
            mp = recipe.main_params(ns.recipes[0])
        except ValueError as e:
            raise SystemExit(str(e)) from None
        ns.pair = dataset_pair(ns.data)
        ns.budget = ns.budget or mp.budget_steps
        ns.pretrain_steps = ns.pretrain_steps or mp.pretrain_steps
        ns.eval_trials = mp.eval_trials if ns.eval_trials is None else ns.eval_trials
        out.mkdir(parents=True, exist_ok=True)
        if ns.target_demos > 0:
            ns.data = subset_dataset(ns.data, out, ns.target_demos)
        runs = [Run(*c) for c in itertools.product(ns.algos, ns.rewards, ns.clocks, ns.recipes, ns.seeds)]
        keys = sorted(
            {(r.algo, r.recipe, r.seed) for r in runs} if not ns.pretrained else {("given", ns.recipes[0], 0)}
        )
        log = _log("experiment")
        log(
            f"{len(runs)} fine-tuning runs on {ns.pair}, budget {ns.budget}, {ns.eval_trials} evaluation trials per task"
        )
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C: the graphs stop cleanly
        futs = _run(ns.parallel, [(pretrain_job, ns, *k) for k in keys])
        pre = {k: f.result() for k, f in zip(keys, futs)}
        base = ns.domain if ns.domain is not None else 100 + os.getpid() % 50
        jobs = []
        for i, r in enumerate(runs):
            k = ("given", ns.recipes[0], 0) if ns.pretrained else (r.algo, r.recipe, r.seed)
            jobs.append((finetune_job, ns, r, pre[k], base + i % max(ns.parallel, 1)))
        failed = [str(e) for e in (f.exception() for f in _run(ns.parallel, jobs)) if e is not None]
        for msg in failed:
            log(f"FAILED: {msg}")
    # every finished run under --out (other invocations may have run other variants or seeds)
    results = {p.parent.name: json.loads(p.read_text()) for p in sorted((out / "online").glob("*/summary.json"))}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if results:
        plot(results, out / "curves.png")
        table(results)
    return 1 if failed else 0


def _group(r: dict) -> str:
    return f"{r['algo']}, {r['reward']} reward, {r['clock']} clock, {Path(r['recipe']).stem}"


def plot(results: dict, png: Path) -> None:
    """Left: rolling forward success during fine-tuning, one line per run. Right: forward success of
    the online episodes in the first and second half of fine-tuning, mean over seeds (dots: seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    colors, groups = {}, {}
    for r in results.values():
        key = _group(r)
        c = colors.setdefault(key, f"C{len(colors)}")
        groups.setdefault(key, []).append(r)
        xs, ys = r["curve"]
        ax.plot(xs, ys, color=c, alpha=0.8, label=key if len(groups[key]) == 1 else None)
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
    bx.set_xticklabels([k.replace(", ", "\n") for k in groups], fontsize=7)
    bx.set_ylim(0, 1.05)
    bx.set_ylabel("online forward success (ground truth)")
    bx.set_title("first half (light) vs second half (dark) of fine-tuning")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def table(results: dict) -> None:
    groups: dict = {}
    for r in results.values():
        groups.setdefault(_group(r), []).append(r)

    def mean(rs, k):
        v = [r[k] for r in rs if r.get(k) is not None]
        return float(np.mean(v)) if v else float("nan")

    print(
        "\n| variant | seeds | forward, pre-trained -> fine-tuned (evaluated) | backward | "
        "online forward, 1st half -> 2nd half | updates per env step | fine-tuning minutes |"
    )
    print("|---|---|---|---|---|---|---|")
    for key, rs in groups.items():
        utd = [r["updates"] / r["env_steps"] for r in rs if r.get("env_steps")]
        print(
            f"| {key} | {', '.join(str(r['seed']) for r in rs)} | {mean(rs, 'pretrained_forward'):.0%} -> "
            f"{mean(rs, 'finetuned_forward'):.0%} | {mean(rs, 'pretrained_backward'):.0%} -> "
            f"{mean(rs, 'finetuned_backward'):.0%} | {mean(rs, 'online_forward_first_half'):.0%} -> "
            f"{mean(rs, 'online_forward_second_half'):.0%} | {np.mean(utd) if utd else float('nan'):.2f} | "
            f"{mean(rs, 'finetune_seconds') / 60:.1f} |"
        )


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("stopped: finished runs are kept under --out; run again to go on", file=sys.stderr)
        sys.exit(130)
