"""Ground-truth evaluation of a policy in the simulated reset-free world (pure Python, no ROS).

Each trial starts from the state its task needs: forward trials from a freshly placed scene,
backward trials from a scene where the scripted expert has just done the forward task (so a
backward success is never free). The policy then has `max_steps` to make the simulator's success
flag true. Deterministic given the seeds.
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
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def _run(world, policy, instruction: str, max_steps: int, deterministic: bool, frames: Optional[list]):
    obs = world.observe()
    for t in range(max_steps):
        if obs.success:
            return t
        a = policy.act(obs.image, obs.proprio, instruction, deterministic=deterministic)
        obs = world.step(a)
        if frames is not None:
            frames.append(obs.image)
    return max_steps if obs.success else None


def evaluate_policy(policy, pair: str = "drawer", trials: int = 10, max_steps: int = 250, seed: int = 1000,
                    deterministic: bool = True, image_size=(100, 100), camera: str = "corner4",
                    progress: bool = False, record_first: bool = False) -> tuple[EvalResult, list]:
    """Success rates of `policy` (rl.policy.Policy-like: act(image, proprio, instruction, deterministic))
    on the pair's forward and backward tasks. Returns (result, frames of the first forward trial)."""
    from robofume_ros.sim.world import ResetFreeWorld

    t0 = time.monotonic()
    fwd, bwd, frames = [], [], ([] if record_first else None)
    it = range(trials)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc="evaluate", unit="trial")
    for i in it:
        world = ResetFreeWorld(pair=pair, camera=camera, image_size=image_size, seed=seed + i, render=True)
        try:
            world.reset()
            fwd.append(_run(world, policy, world.instruction, max_steps, deterministic, frames if i == 0 else None))
            # backward: the expert does the forward task first, so the backward task has work to do
            world = _reset_forward_done(world, pair, camera, image_size, seed + i, max_steps)
            if world is None:
                continue
            bwd.append(_run(world, policy, world.instruction, max_steps, deterministic, None))
        finally:
            if world is not None:
                world.close()
    rate = lambda xs: float(np.mean([x is not None for x in xs])) if xs else float("nan")  # noqa: E731
    return EvalResult(rate(fwd), rate(bwd), fwd, bwd, time.monotonic() - t0), (frames or [])


def _reset_forward_done(world, pair, camera, image_size, seed, max_steps):
    from robofume_ros.sim.world import ResetFreeWorld
    world.close()
    world = ResetFreeWorld(pair=pair, camera=camera, image_size=image_size, seed=seed, render=True)
    world.reset()
    for _ in range(max_steps * 2):
        if world.ground_truth_success():
            break
        world.step(world.scripted_action())
    if not world.ground_truth_success():
        world.close()
        return None
    world.switch("backward")
    return world
