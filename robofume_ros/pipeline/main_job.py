"""`robofume main [--pair P]`: the whole RoboFuME pipeline on a simulated task pair, end to end.

  1. data       prior multi-task data (20 other tasks, other camera/lighting), 20+20 target demos,
                30 failures in the target scene                 (robofume dataset generate)
  2. features   frozen EfficientNet-lite0 features stored with every frame
  3. reward     fine-tune the success classifier on demos + failures   (robofume reward train)
  4. pretrain   Cal-QL offline pre-training, language-conditioned       (robofume pretrain)
  5. finetune   reset-free online fine-tuning as a ROS 2 graph: sim, camera, policy, reward,
                task switcher, learner (robofume launch finetune), in sim time paced by the
                learner (--clock wall: at the 10 Hz wall-clock control rate of a real arm)
  6. retrain    OOO: a pessimistic policy (Cal-QL, as pre-training; IQL as an option) trained from
                scratch on all data seen
  7. evaluate   forward/backward success by simulator ground truth for the pre-trained,
                fine-tuned and retrained policies, in the robot's workspace scene from reset-free
                starts (arm homed +- home_jitter, 10 cm); report.md with plots and an episode video

Every stage writes into --out and is skipped when its output exists, so an interrupted run
continues where it stopped (--fresh starts over). --quick runs the same stages at toy sizes.
Every setting comes from the recipe (config/recipes/default.yaml: the nodes' tuning and the
`main` section's sizes) and the task pair (robofume_ros/sim/tasks.py, `robofume tasks`); the
main job itself passes only the pair, paths, budget and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path


ALGO_NAMES = {"calql": "Cal-QL", "cql": "CQL", "iql": "IQL", "bc": "BC"}


def log(msg: str) -> None:
    print(f"[main {time.strftime('%H:%M:%S')}] {msg}", flush=True)


TIMINGS = "stage_seconds.json"  # seconds per stage and evaluation, kept across resumed invocations


def stage(name: str, done: Path, fn, *args, timings: Path | None = None) -> None:
    """Run one pipeline stage unless its done-marker exists; its wall time goes to `timings` (a JSON
    file of seconds per stage), so that a resumed run still reports what every stage cost."""
    if done.exists():
        log(f"{name}: done earlier ({done}), skipped")
        return
    log(f"{name}: starting")
    t0 = time.monotonic()
    rc = fn(*args)
    if rc not in (None, 0):
        raise SystemExit(f"[main] stage {name} failed with exit code {rc}")
    seconds = time.monotonic() - t0
    log(f"{name}: finished in {seconds:.0f} s")
    if timings is not None:
        record_seconds(timings, name, seconds)


def record_seconds(timings: Path, name: str, seconds: float) -> None:
    t = json.loads(timings.read_text()) if timings.exists() else {}
    t[name] = round(seconds, 1)
    timings.write_text(json.dumps(t, indent=1))


def finetune_args(
    run_dir: Path, pair: str, recipe_spec: str, budget: int, seed: int, checkpoint: Path, reward: Path, data: Path
) -> dict:
    """The fine-tuning graph's launch arguments: system switches only (the tuning is the recipe's).
    The main job and the experiments start the graph through here."""
    run_dir = Path(run_dir)
    return {
        "world": pair,
        "recipe": recipe_spec,
        "policy_checkpoint": str(checkpoint),
        "reward_model": str(reward),
        "offline_dataset": str(data),
        "budget_steps": str(budget),
        "run_dir": str(run_dir),
        "bag_dir": str(run_dir / "bags"),
        "seed": str(seed),
    }


def run_finetune(run_dir: Path, args: dict, domain: int | None = None, log=log) -> int:
    """Reset-free fine-tuning as the ROS graph, at the configured 10 Hz wall-clock control rate as on
    a robot (the learner trains asynchronously), or in sim time paced by the learner (fast:=true
    use_sim_time:=true), until the learner reaches its budget; marks run_dir/DONE. `domain`: its
    own ROS domain (default $ROS_DOMAIN_ID, else one from the process id), on this host only."""
    from robofume_ros.ros import runner

    run_dir = Path(run_dir)
    status_file = run_dir / "learner" / "status.json"
    last = [0.0]
    # its own ROS domain, on this host only: two runs (or a run and a robot) must not hear each other
    if domain is None:
        domain = int(os.environ.get("ROS_DOMAIN_ID") or 100 + os.getpid() % 100)
    log(f"finetune: ROS domain {domain} (watch with ROS_DOMAIN_ID={domain} robofume topic echo /reward)")

    def on_tick(elapsed: float):
        if not status_file.exists():
            return True
        try:
            s = json.loads(status_file.read_text())
        except ValueError:
            return True
        if elapsed - last[0] >= 15 or s.get("done"):
            last[0] = elapsed
            succ = ", ".join(f"{t} {v[0]}/{v[1]}" for t, v in sorted(s.get("successes", {}).items())) or "none yet"
            log(
                f"finetune: {s['env_steps']}/{s['budget_steps']} env steps ({s['env_steps_per_s']:.1f}/s), "
                f"{s['updates']} updates ({s['updates_per_s']:.1f}/s), {s['episodes']} episodes; "
                f"reward-judged successes {succ}"
            )
        if s.get("error"):
            log(f"finetune: learner error: {s['error']}")
        return not s.get("done")

    rc = runner.run_graph("finetune", args, run_dir, on_tick=on_tick, log=log, domain_id=domain, localhost_only=True)
    if not (status_file.exists() and json.loads(status_file.read_text()).get("done")):
        log("finetune: the graph stopped before the learner reached its budget")
        return rc or 1
    (run_dir / "DONE").write_text("ok\n")
    return 0


def evaluate(name: str, ckpt: Path, out: Path, settings: dict, scene_seed: int, video: bool = False) -> dict:
    from robofume_ros.pipeline.evaluation import evaluate_policy
    from robofume_ros.rl.policy import Policy

    res_file = out / "eval" / f"{name}.json"
    if res_file.exists():
        return json.loads(res_file.read_text())
    policy = Policy.load(ckpt)
    # in the robot's workspace (the scene of its demos and of fine-tuning), from reset-free starts,
    # each direction with its online time limit
    res, frames = evaluate_policy(
        policy,
        pair=settings["pair_spec"],
        trials=settings["main"]["eval_trials"],
        max_steps=tuple(settings["time_limits"]),
        scene_seed=scene_seed,
        start_jitter=settings["home_jitter"],
        progress=True,
        record_first=video,
    )
    d = res.as_dict()
    res_file.parent.mkdir(parents=True, exist_ok=True)
    res_file.write_text(json.dumps(d, indent=1))
    record_seconds(out / TIMINGS, f"evaluate {name}", d["seconds"])
    if video and frames:
        import imageio.v2 as imageio

        imageio.mimsave(out / "eval" / f"{name}_forward.gif", frames[::2], duration=0.1)
    log(
        f"evaluate {name} ({settings['pair']}): forward {d['forward_success']:.0%}, backward {d['backward_success']:.0%} "
        f"({settings['main']['eval_trials']} trials each, {d['seconds']:.0f} s)"
    )
    return d


def main(argv=None) -> int:
    from robofume_ros import recipe as recipes
    from robofume_ros.sim import tasks

    ap = argparse.ArgumentParser(
        prog="robofume main", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--pair",
        default=tasks.DEFAULT_PAIR,
        help=f"task pair ({', '.join(tasks.PAIRS)}; `robofume tasks`) or a simulated task file (.yaml)",
    )
    ap.add_argument(
        "--out", default=None, help="output folder (default runs/main_<pair>[_quick]; stages already there are skipped)"
    )
    ap.add_argument(
        "--recipe",
        default=recipes.DEFAULT,
        help="recipe: a name in config/recipes/ or a .yaml variant layered on the default one",
    )
    ap.add_argument(
        "--quick", action="store_true", help="toy sizes (the quick recipe): the whole pipeline in a few minutes"
    )
    ap.add_argument(
        "--budget", type=int, default=None, help="online environment steps (default: the recipe's budget_steps)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--device",
        default="auto",
        help="where pre-training, the learner and OOO retraining train: auto (a CUDA GPU when there is one), "
        "cpu, cuda or cuda:N",
    )
    ap.add_argument(
        "--clock",
        choices=("sim", "wall"),
        default="sim",
        help="fine-tuning's clock: sim (fast:=true use_sim_time:=true: the simulator steps as fast as the "
        "policy and the reward answer each frame and the learner's updates keep the recipe's UTD ratio, "
        "whatever else loads the machine) or wall (the 10 Hz wall clock of a real arm) (docs/fleet.md)",
    )
    ap.add_argument(
        "--person",
        type=int,
        default=0,
        help="experiments: a simulated person overrules the reward during fine-tuning with at most this many "
        "verdicts, watching the simulator (0: nobody, as in the recipe)",
    )
    ap.add_argument("--fresh", action="store_true", help="delete --out first")
    ns = ap.parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:  # every bad name is an error before anything runs
        from robofume_ros.rl.device import resolve_device

        resolve_device(ns.device)
        pair = tasks.get_pair(ns.pair)
        if not pair.simulated:
            raise ValueError(f"{ns.pair}: a real robot's task (simulated: false); the main job needs a simulated pair")
        recipe_spec = (
            ",".join(([] if ns.recipe == recipes.DEFAULT else [ns.recipe]) + (["quick"] if ns.quick else []))
            or recipes.DEFAULT
        )
        mp = recipes.main_params(recipe_spec)
        values = recipes.load(recipe_spec)
    except (KeyError, ValueError) as e:
        raise SystemExit(f"[main] {e.args[0] if e.args else e}") from None
    out = Path(ns.out or f"runs/main_{pair.name}" + ("_quick" if ns.quick else ""))
    if ns.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    budget = ns.budget if ns.budget is not None else mp.budget_steps
    timings = out / TIMINGS
    data = out / "data"
    _check_same_pair(out, pair.name)

    from robofume_ros.data import generate

    gen_argv = ["-o", str(data), "--seed", str(ns.seed), "--pair", ns.pair]
    gen_argv += ["--quick"] if mp.demos == 0 else ["--demos", str(mp.demos)]
    stage("data", data / "generate.json", generate.main, gen_argv, timings=timings)

    from robofume_ros.ros import graph

    pre = out / "pretrain"
    ft_args = finetune_args(
        out / "finetune", ns.pair, recipe_spec, budget, ns.seed, pre / "checkpoint.pt", out / "reward", data
    )
    ft_args["learner_device"] = ns.device
    if ns.person:
        ft_args["simulated_person"] = str(ns.person)
    if ns.clock == "sim":
        ft_args.update(fast="true", use_sim_time="true")
    derived = graph.task_parameters(graph.resolve_args(ft_args))[1]
    settings = {
        "pair": pair.name,
        "pair_spec": ns.pair,
        "seed": ns.seed,
        "recipe": [str(f) for f in recipes.files(recipe_spec)],
        "main": asdict(mp),
        "budget_steps": budget,
        "time_limits": derived["time_limits"],
        "time_limits_from": derived["time_limits_from"],
        "success_frames": values.get("task_switcher", {}).get("success_frames"),
        "home_jitter": values.get("sim", {}).get("home_jitter_m"),
        "clock": ns.clock,
        "simulated_person_verdicts": ns.person,
    }
    (out / "settings.json").write_text(json.dumps(settings, indent=1))
    log(
        f"pair {pair.name} ({pair.forward} / {pair.backward}); recipe {', '.join(settings['recipe'])}; "
        f"time limits forward {settings['time_limits'][0]}, backward {settings['time_limits'][1]} "
        f"({settings['time_limits_from']}); budget {budget} online steps"
    )

    def features():
        from robofume_ros.data.dataset import write_features
        from robofume_ros.vision import SHARED_GRID
        from robofume_ros.vision.encoder import FrozenImageEncoder

        # the shared features (pooled + grid): the policy's pre-training takes the pooled part, the
        # reward's training (an fp32 built-in tower) all of it, so neither runs the network again
        write_features(data, FrozenImageEncoder(grid=SHARED_GRID))
        (out / "features.done").write_text("ok\n")

    stage("features", out / "features.done", features, timings=timings)

    from robofume_ros.reward import train as reward_train

    reward_dir = out / "reward"
    stage(
        "reward",
        reward_dir / "reward_model.json",
        reward_train.main,
        [
            "--data",
            str(data),
            "--out",
            str(reward_dir),
            "--epochs",
            str(mp.reward_epochs),
            "--seed",
            str(ns.seed),
            "--max-fpr",
            str(mp.reward_max_fpr),
            "--threshold-method",
            mp.reward_threshold_method,
            "--threshold-neg-frac",
            str(mp.reward_threshold_neg_frac),
            "--reverse-k",
            str(mp.reward_reverse_k),
            "--pair-negatives",
            str(mp.reward_pair_negatives),
            "--precision",
            mp.reward_precision,
        ],
        timings=timings,
    )

    from robofume_ros.pipeline.retrain import pretrain_overrides, retrain as ooo_retrain

    # the actor's BC term on successful episodes only, in pre-training as online (the recipe's learner value)
    calql_set = pretrain_overrides(recipe_spec, "calql")
    stage(
        "pretrain",
        pre / "DONE",
        lambda: run_pretrain(data, pre, "calql", mp.pretrain_steps, ns.seed, calql_set, ["--device", ns.device]),
        timings=timings,
    )

    stage("finetune", out / "finetune" / "DONE", run_finetune, out / "finetune", ft_args, timings=timings)

    from robofume_ros.reward.adapt import latest_model

    retrain = out / "retrain"
    # OOO looks for missed successes with the final reward (the newest version it adapted to online)
    final_reward = latest_model(out / "reward", out / "finetune" / "reward_adapted")
    stage(
        "retrain (OOO)",
        retrain / "DONE",
        lambda: ooo_retrain(
            [data],
            retrain,
            recipe_spec,
            ns.seed,
            ns.device,
            online=[out / "finetune" / "learner" / "online"],
            reward_model=final_reward,
            success_frames=int(settings["success_frames"] or 1),
            pair=pair.instructions,
        ),
        timings=timings,
    )

    results = {
        "pre-trained (Cal-QL offline)": evaluate("pretrained", pre / "checkpoint.pt", out, settings, ns.seed),
        "fine-tuned (Cal-QL online, reset-free)": evaluate(
            "finetuned", out / "finetune" / "learner" / "policy_latest.pt", out, settings, ns.seed
        ),
        f"OOO retrained ({ALGO_NAMES.get(mp.retrain_algo, mp.retrain_algo)} offline on all data)": evaluate(
            "retrained", retrain / "checkpoint.pt", out, settings, ns.seed, video=True
        ),
    }
    from robofume_ros.pipeline.report import write_report

    report = write_report(out, results, settings, json.loads(timings.read_text()) if timings.exists() else {})
    log(f"report: {report}")
    for name, r in results.items():
        log(f"  {name:42s} forward {r['forward_success']:.0%}  backward {r['backward_success']:.0%}")
    return 0


def _check_same_pair(out: Path, pair: str) -> None:
    """An output folder holds one pair's run: resuming it with another pair is an error."""
    from robofume_ros.data.dataset import dataset_pair

    if (out / "data" / "generate.json").exists():
        from robofume_ros.sim.tasks import get_pair

        have = get_pair(dataset_pair(out / "data")).name
        if have != pair:
            raise SystemExit(f"[main] {out} holds a run of pair {have!r}, not {pair!r}: use another --out or --fresh")


def run_pretrain(
    data, out: Path, algo: str, steps: int, seed: int, overrides=(), extra=(), on_log=None, stop=None
) -> int:
    """`robofume pretrain` on one or more datasets with the main job's observation setup (frozen
    features, bf16); `overrides` are KEY=VALUE algorithm settings; `on_log(step, steps, metrics)`
    sees every log row and `stop(step)` every update (either may raise to stop). Marks `out/DONE` on success. The experiments
    pre-train through here too."""
    from robofume_ros.rl import pretrain

    datas = data if isinstance(data, list) else [data]
    argv = ["--out", str(out), "--algo", algo, "--obs-mode", "features", "--steps", str(steps)]
    argv += ["--seed", str(seed), "--bf16", *extra] + [a for kv in overrides for a in ("--set", kv)]
    for d in datas:
        argv += ["--data", str(d)]
    rc = pretrain.main(argv, on_log=on_log, stop=stop)
    if rc in (None, 0):
        (Path(out) / "DONE").write_text("ok\n")
    return rc


if __name__ == "__main__":
    sys.exit(main())
