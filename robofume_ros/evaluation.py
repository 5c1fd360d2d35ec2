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

import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np


@dataclass
class EvalResult:
    forward_success: float
    backward_success: float
    forward_trials: list = field(default_factory=list)     # steps to success, or None
    backward_trials: list = field(default_factory=list)
    forward_starts: list = field(default_factory=list)      # each trial's hand offset from home (x, y, z), m
    backward_starts: list = field(default_factory=list)
    seconds: float = 0.0
    setting: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _run(world, policy, instruction: str, max_steps: int, deterministic: bool, frames: Optional[list],
         noise_scale: float = 1.0, noise=None):
    """One trial; `noise` (rl/exploration.py ExplorationNoise, stochastic trials only) supplies the
    exploration noise of each step (None: the policy draws white noise itself)."""
    obs = world.observe()
    if frames is not None:
        frames.append(obs.image)
    for t in range(max_steps):
        if obs.success:
            return t
        extra = {} if noise is None or deterministic else {"eps": noise()}
        a = policy.act(obs.image, obs.proprio, instruction, deterministic=deterministic, noise_scale=noise_scale,
                       **extra)
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


def workspace_start(world, phase: str, rng, start_jitter: float, max_steps: int = 500, home: bool = True,
                    noise: float = 0.1) -> bool:
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


def evaluate_policy(policy, pair: str = "drawer", trials: int = 10, max_steps: int = 250, seed: int = 1000,
                    scene_seed: Optional[int] = None, start_jitter: float = 0.03, deterministic: bool = True,
                    image_size=(100, 100), camera: str = "corner4", progress: bool = False,
                    record_first: bool = False, noise_scale: float = 1.0,
                    phases=("forward", "backward"), noise_correlation: float = 0.0) -> tuple[EvalResult, list]:
    """Success rates of `policy` (rl.policy.Policy-like: act(image, proprio, instruction, deterministic,
    noise_scale=[, eps=])) on the pair's forward and backward tasks (those in `phases`; a task left out
    rates nan). Stochastic trials (deterministic=False) scale the actor's std by noise_scale; with
    noise_correlation > 0 their noise is AR(1)-correlated in time, as the policy node explores.
    Returns (result, frames of the first forward trial)."""
    from robofume_ros.sim.world import ACTION_DIM, ResetFreeWorld

    t0 = time.monotonic()
    res = {"forward": [], "backward": []}
    starts = {"forward": [], "backward": []}
    skipped = {"forward": 0, "backward": 0}   # trials whose scripted setup failed
    frames = [] if record_first else None
    it = range(trials)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="evaluate", unit="trial")
    for i in it:
        for phase in phases:
            world = ResetFreeWorld(pair=pair, camera=camera, image_size=image_size,
                                   seed=(seed + i) if scene_seed is None else scene_seed, render=True)
            try:
                world.reset()
                rng = np.random.default_rng([seed, i, phase == "forward"])
                if scene_seed is not None:
                    ok = workspace_start(world, phase, rng, start_jitter)
                else:   # fresh scene: forward from the reset pose, backward after the expert's forward
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
                    res[phase].append(_run(world, policy, world.instruction, max_steps, deterministic, rec,
                                           noise_scale, noise))
            finally:
                world.close()
    rate = lambda xs: float(np.mean([x is not None for x in xs])) if xs else float("nan")  # noqa: E731
    setting = {"pair": pair, "scene_seed": scene_seed, "seed": seed, "start_jitter": start_jitter,
               "deterministic": deterministic, "max_steps": max_steps, "skipped_setups": skipped}
    if not deterministic:
        setting["noise_scale"] = noise_scale
        setting["noise_correlation"] = noise_correlation
    return (EvalResult(rate(res["forward"]), rate(res["backward"]), res["forward"], res["backward"],
                       starts["forward"], starts["backward"], time.monotonic() - t0, setting), (frames or []))
