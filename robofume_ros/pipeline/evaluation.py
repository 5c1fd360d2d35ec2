"""Ground-truth evaluation of a policy in the simulated reset-free world (pure Python, no ROS).

Two settings:

* ``scene_seed=<seed>`` (the default in ``robofume main``): the robot's own workspace, the scene
  (object placement) where its target demos were collected and where it fine-tunes, as on a real
  robot. Each trial starts where a reset-free robot would: for a forward trial the scripted expert
  first does the forward task and then the backward task (so the scene is back at the start and
  the robot's backward task left it), for a backward trial the expert does the forward task;
  then the arm goes home plus a random offset of up to ``start_jitter`` metres per axis, as it
  does between online episodes (``home_on_switch``).
  The expert's setup runs unrendered with its own seeded noise, so trials differ from each other
  and from the demos.
* ``scene_seed=None``: generalisation; trial i uses a freshly placed scene (placement seed
  ``seed + i``) and the forward task starts from the reset pose.

The policy then has ``max_steps`` to make the simulator's success flag true. Deterministic given
the seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np


@dataclass
class EvalResult:
    forward_success: float
    backward_success: float
    forward_trials: list = field(default_factory=list)  # steps to success, or None
    backward_trials: list = field(default_factory=list)
    forward_starts: list = field(default_factory=list)  # each trial's hand offset from home (x, y, z), m
    backward_starts: list = field(default_factory=list)
    seconds: float = 0.0
    setting: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _run(
    world,
    policy,
    instruction: str,
    max_steps: int,
    deterministic: bool,
    frames: Optional[list],
    noise_scale: float = 1.0,
    noise=None,
):
    """One trial; `noise` (rl/exploration.py ExplorationNoise, stochastic trials only) supplies the
    exploration noise of each step (None: the policy draws white noise itself)."""
    obs = world.observe()
    if frames is not None:
        frames.append(obs.image)
    for t in range(max_steps):
        if obs.success:
            return t
        extra = {} if noise is None or deterministic else {"eps": noise()}
        a = policy.act(
            obs.image, obs.proprio, instruction, deterministic=deterministic, noise_scale=noise_scale, **extra
        )
        obs = world.step(a)
        if frames is not None:
            frames.append(obs.image)
    return max_steps if obs.success else None


def _expert_until_success(world, rng, noise: float, max_steps: int) -> bool:
    for _ in range(max_steps):
        if world.ground_truth_success():
            return True
        world.step(world.scripted_action(noise, rng))
    return world.ground_truth_success()


def workspace_start(
    world, phase: str, rng, start_jitter: float, max_steps: int = 500, home: bool = True, noise: float = 0.1
) -> bool:
    """Bring a freshly reset world to the start of a reset-free `phase` ("forward"/"backward")
    episode, unrendered: expert forward (then expert backward for a forward trial), then the arm
    goes home with a random offset (ResetFreeWorld.home), as between online episodes. Returns False
    if the expert failed (the trial is skipped). home=False leaves the arm where the expert did."""
    render = world.render_enabled
    world.render_enabled = False
    try:
        world.switch("forward")
        if not _expert_until_success(world, rng, noise, max_steps):
            return False
        if phase == "forward":
            world.switch("backward")
            if not _expert_until_success(world, rng, noise, max_steps):
                return False
        world.switch(phase)
        if home:
            world.home(start_jitter, rng)
        # the jitter may have undone the reset (e.g. bumped the drawer): only start undone tasks
        return not world.ground_truth_success()
    finally:
        world.render_enabled = render


def evaluate_policy(
    policy,
    pair: str = "drawer",
    trials: int = 10,
    max_steps=250,
    seed: int = 1000,
    scene_seed: Optional[int] = None,
    start_jitter: float = 0.03,
    deterministic: bool = True,
    image_size=(100, 100),
    camera: str = "corner4",
    progress: bool = False,
    record_first: bool = False,
    noise_scale: float = 1.0,
    phases=("forward", "backward"),
    noise_correlation: float = 0.0,
    on_trial: Optional[Callable[[str, Optional[int]], None]] = None,
) -> tuple[EvalResult, list]:
    """Success rates of `policy` (rl.policy.Policy-like: act(image, proprio, instruction, deterministic,
    noise_scale=[, eps=])) on the pair's forward and backward tasks (those in `phases`; a task left out
    rates nan). Stochastic trials (deterministic=False) scale the actor's std by noise_scale; with
    noise_correlation > 0 their noise is AR(1)-correlated in time. `max_steps`: one time limit, or
    (forward, backward). `on_trial(phase, steps to success or None)` runs after each trial (progress,
    and cancellation: whatever it raises ends the evaluation). Returns (result, frames of the first
    forward trial)."""
    from robofume_ros.sim.tasks import get_pair
    from robofume_ros.sim.world import ACTION_DIM, ResetFreeWorld

    pair = get_pair(pair)
    limits = dict(zip(("forward", "backward"), (max_steps, max_steps) if isinstance(max_steps, int) else max_steps))
    t0 = time.monotonic()
    res = {"forward": [], "backward": []}
    starts = {"forward": [], "backward": []}
    skipped = {"forward": 0, "backward": 0}  # trials whose scripted setup failed
    frames = [] if record_first else None
    it = range(trials)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", unit="trial")
    for i in it:
        for phase in phases:
            world = ResetFreeWorld(
                pair=pair,
                camera=camera,
                image_size=image_size,
                seed=(seed + i) if scene_seed is None else scene_seed,
                render=True,
            )
            try:
                world.reset()
                rng = np.random.default_rng([seed, i, phase == "forward"])
                if scene_seed is not None:
                    ok = workspace_start(world, phase, rng, start_jitter)
                else:  # fresh scene: forward from the reset pose, backward after the expert's forward
                    ok = phase == "forward" or workspace_start(world, phase, rng, 0.0, home=False, noise=0.0)
                if not ok:
                    skipped[phase] += 1
                else:
                    rec = frames if (i == 0 and phase == "forward") else None
                    starts[phase].append((world.proprio[:3] - world.home_position).round(4).tolist())
                    noise = None
                    if noise_correlation > 0 and not deterministic:
                        from robofume_ros.rl.exploration import ExplorationNoise

                        noise = ExplorationNoise(ACTION_DIM, noise_correlation, seed=[seed, i, phase == "forward"])
                    res[phase].append(
                        _run(world, policy, world.instruction, limits[phase], deterministic, rec, noise_scale, noise)
                    )
                    if on_trial is not None:
                        on_trial(phase, res[phase][-1])
            finally:
                world.close()
    rate = lambda xs: float(np.mean([x is not None for x in xs])) if xs else float("nan")
    setting = {
        "pair": pair.name,
        "scene_seed": scene_seed,
        "seed": seed,
        "start_jitter": start_jitter,
        "deterministic": deterministic,
        "max_steps": [limits["forward"], limits["backward"]],
        "skipped_setups": skipped,
    }
    if not deterministic:
        setting["noise_scale"] = noise_scale
        setting["noise_correlation"] = noise_correlation
    return (
        EvalResult(
            rate(res["forward"]),
            rate(res["backward"]),
            res["forward"],
            res["backward"],
            starts["forward"],
            starts["backward"],
            time.monotonic() - t0,
            setting,
        ),
        (frames or []),
    )


def dataset_scene_seed(data) -> int:
    """The placement seed of a generated dataset's target scene (where its demos were recorded and
    where the robot fine-tunes): its `generate.json`."""
    from robofume_ros.data.dataset import dataset_scene

    seed = dataset_scene(data)
    if seed is None:
        raise FileNotFoundError(
            f"{data}: no generate.json (not a dataset from `robofume dataset generate`); give --scene-seed instead"
        )
    return seed


def resolve_pair(pair_arg: "str | None", data: "str | None", policy_payload: "dict | None", name: str = "") -> str:
    """The pair to evaluate: --pair, else the dataset's, else the checkpoint's; any two that are given
    must agree (a clear error before anything runs)."""
    from robofume_ros.data.dataset import dataset_pair
    from robofume_ros.rl.policy import checkpoint_pairs
    from robofume_ros.sim import tasks

    found = {}
    if pair_arg:
        found["--pair"] = tasks.get_pair(pair_arg).name
    if data:
        dp = dataset_pair(data)
        if dp:
            found[f"dataset {data}"] = tasks.get_pair(dp).name
    several = []
    if policy_payload is not None:
        cps = checkpoint_pairs(policy_payload)
        if len(cps) == 1:
            found[f"checkpoint {name}"] = cps[0]
        several = cps if len(cps) > 1 else []
    if len(set(found.values())) > 1:
        raise ValueError("pairs disagree: " + ", ".join(f"{k} is {v!r}" for k, v in found.items()))
    if several:  # a multi-task checkpoint: the pair to evaluate is one of its pairs, named
        if not found:
            raise ValueError(f"checkpoint {name} was trained on pairs {several}: say which to evaluate (--pair)")
        if next(iter(found.values())) not in several:
            raise ValueError(f"checkpoint {name} was trained on pairs {several}, not on {next(iter(found.values()))!r}")
    if not found:
        return tasks.DEFAULT_PAIR
    return next(iter(found.values()))


@dataclass
class Prepared:
    """Everything an evaluation needs, resolved from what a user gave (CLI or /evaluate goal)."""

    policy: object
    pair: object  # sim.tasks.TaskPair
    scene_seed: Optional[int]
    limits: tuple
    start_jitter: float


def prepare(policy_path, pair=None, data=None, scene_seed=None, max_steps: int = 0, start_jitter=None) -> Prepared:
    """Load the checkpoint, resolve the pair (given, the dataset's, the checkpoint's), the scene
    (the dataset's target scene), the time limits (given, from the dataset's demos, the pair's) and
    the start jitter (given, the recipe's). Raises ValueError with a clear message."""
    from robofume_ros import recipe
    from robofume_ros.data.dataset import target_demo_steps
    from robofume_ros.rl import checkpoint as ckpt
    from robofume_ros.rl.policy import Policy
    from robofume_ros.sim import tasks

    try:
        payload = ckpt.load_checkpoint(policy_path)
        policy = Policy(payload, str(policy_path))
        pair = tasks.get_pair(resolve_pair(pair, data, payload, str(policy_path)))
    except (KeyError, ckpt.CheckpointError) as e:
        raise ValueError(e.args[0] if e.args else str(e)) from e
    scene = scene_seed if data is None else dataset_scene_seed(data)
    if max_steps:
        limits = (max_steps, max_steps)
    else:
        steps = target_demo_steps(data) if data else {}
        limits = tasks.time_limits(pair, {ph: steps.get(pair.task(ph), []) for ph in ("forward", "backward")})
    if start_jitter is None:
        start_jitter = float(recipe.param(recipe.DEFAULT, "sim", "home_jitter_m"))
    return Prepared(policy, pair, scene, tuple(limits), start_jitter)


def main(argv=None) -> int:
    """`robofume evaluate`: ground-truth success of a checkpoint in a simulated reset-free pair."""
    ap = argparse.ArgumentParser(
        prog="robofume evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--policy",
        help="a checkpoint (robofume pretrain, the learner's policy_latest.pt); with --remote: default the "
        "running learner's newest policy",
    )
    ap.add_argument(
        "--remote",
        action="store_true",
        help="run it as the /evaluate action of a running graph's evaluator_node (on any machine of the "
        "ROS domain; feedback per trial, Ctrl-C cancels)",
    )
    ap.add_argument("--namespace", default="", help="with --remote: the graph's namespace (namespace:=...)")
    ap.add_argument("--pair", help="task pair (default: the dataset's, else the checkpoint's, else drawer)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--data", help="the dataset the policy was trained on: evaluate in its target scene")
    where.add_argument("--scene-seed", type=int, help="evaluate in the scene with this placement seed")
    ap.add_argument("--trials", type=int, default=20, help="trials per task")
    ap.add_argument("--seed", type=int, default=1000, help="seed of the trial starts (robofume main uses its --seed)")
    ap.add_argument("--tasks", nargs="+", choices=["forward", "backward"], default=["forward", "backward"])
    ap.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="steps per trial (default: the online time limits, from the dataset's demos or the pair's)",
    )
    ap.add_argument(
        "--start-jitter",
        type=float,
        default=None,
        help="arm home offset per axis at a trial's start, m (default: the recipe's sim home_jitter_m)",
    )
    ap.add_argument("--stochastic", action="store_true", help="sample actions (default: the actor's mean)")
    ap.add_argument("--noise-scale", type=float, default=1.0, help="with --stochastic: the actor's std scale")
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--video", help="write the first forward trial as a GIF here")
    ns = ap.parse_args(argv)
    if ns.remote:
        from robofume_ros.ros.actions import evaluate_remote

        return evaluate_remote(ns)
    if not ns.policy:
        ap.error("--policy is required (without --remote)")
    try:
        prep = prepare(ns.policy, ns.pair, ns.data, ns.scene_seed, ns.max_steps, ns.start_jitter)
    except ValueError as e:
        print(f"robofume evaluate: {e}", file=sys.stderr)
        return 2
    policy, pair, scene, limits, jitter = prep.policy, prep.pair, prep.scene_seed, prep.limits, prep.start_jitter
    if scene is None:
        print("no --data or --scene-seed: each trial in a freshly placed scene (generalisation)")
    print(
        f"pair {pair.name} ({pair.forward} / {pair.backward}); time limits forward {limits[0]}, backward {limits[1]} steps"
    )
    res, frames = evaluate_policy(
        policy,
        pair=pair.name,
        trials=ns.trials,
        max_steps=limits,
        seed=ns.seed,
        scene_seed=scene,
        start_jitter=jitter,
        deterministic=not ns.stochastic,
        progress=True,
        record_first=bool(ns.video),
        noise_scale=ns.noise_scale,
        phases=tuple(ns.tasks),
    )
    for task in ns.tasks:
        trials = getattr(res, f"{task}_trials")
        failed = [i for i, t in enumerate(trials) if t is None]
        ok = [t for t in trials if t is not None]
        print(
            f"{task}: {len(ok)}/{len(trials)} = {getattr(res, f'{task}_success'):.0%}"
            + (f", {np.mean(ok):.0f} steps on average" if ok else "")
            + f"; failed trials {failed}"
        )
    if ns.out:
        Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.out).write_text(json.dumps({"policy": str(ns.policy), **res.as_dict()}, indent=1))
    if ns.video and frames:
        import imageio.v2 as imageio

        imageio.mimsave(ns.video, frames[::2], duration=0.1)
    return 0
