"""A tiny 2-D point-mass reaching task with sparse RoboFuME-style rewards, for tests and benchmarks.

State: position in [-1,1]^2 (proprio). Action in [-1,1]^2 moves the point by `step * action`.
Reward -1 per step, 0 (and terminal) once within `radius` of the goal; episodes time out after
`horizon` steps. Optionally renders (size x size) uint8 images (point white, goal red) so the
image and frozen-feature paths can be exercised. Vectorised over a batch of environments.
"""

from __future__ import annotations

import numpy as np

from robofume_ros.data.episode import Episode

GOAL = np.array([0.6, 0.6], np.float32)
INSTRUCTION = "move the point to the goal"


class PointMass:
    def __init__(
        self,
        n_envs: int = 1,
        horizon: int = 40,
        step: float = 0.1,
        radius: float = 0.15,
        image_size: int = 0,
        seed: int = 0,
    ):
        self.n, self.horizon, self.step_size, self.radius = n_envs, horizon, step, radius
        self.image_size = image_size
        self.rng = np.random.default_rng(seed)

    def reset(self) -> np.ndarray:
        self.pos = self.rng.uniform(-0.9, -0.3, size=(self.n, 2)).astype(np.float32)
        self.t = 0
        return self.pos.copy()

    def step(self, action: np.ndarray):
        a = np.clip(np.asarray(action, np.float32), -1, 1)
        self.pos = np.clip(self.pos + self.step_size * a, -1, 1).astype(np.float32)
        self.t += 1
        success = np.linalg.norm(self.pos - GOAL, axis=-1) < self.radius
        reward = np.where(success, 0.0, -1.0).astype(np.float32)
        return self.pos.copy(), reward, success, self.t >= self.horizon

    def render(self, pos: np.ndarray) -> np.ndarray:
        """(N,2) positions -> (N,S,S,3) uint8 images (0 channels if image_size == 0 -> 1x1 black)."""
        s = max(self.image_size, 1)
        img = np.zeros((len(pos), s, s, 3), np.uint8)
        if self.image_size:
            ij = ((np.asarray(pos) + 1) / 2 * (s - 1)).round().astype(int)
            g = ((GOAL + 1) / 2 * (s - 1)).round().astype(int)
            r = max(1, s // 25)
            img[:, max(g[1] - r, 0) : g[1] + r + 1, max(g[0] - r, 0) : g[0] + r + 1, 0] = 255
            for k in range(len(pos)):
                img[k, max(ij[k, 1] - r, 0) : ij[k, 1] + r + 1, max(ij[k, 0] - r, 0) : ij[k, 0] + r + 1] = 255
        return img


def scripted_action(pos: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    d = GOAL - pos
    a = d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6)
    return np.clip(a + noise * rng.standard_normal(a.shape), -1, 1).astype(np.float32)


def rollout(env: PointMass, policy, n_episodes: int, source="online") -> list:
    """Run `policy(pos (N,2)) -> actions (N,2)` for n_episodes (in batches of env.n); returns Episodes."""
    eps = []
    while len(eps) < n_episodes:
        pos = env.reset()
        P, Acts, R, D = [pos], [], [], []
        alive = np.ones(env.n, bool)
        ends = np.full(env.n, env.horizon)
        for t in range(env.horizon):
            a = policy(pos)
            pos, r, succ, timeout = env.step(a)
            P.append(pos)
            Acts.append(a)
            R.append(r)
            D.append(succ)
            newly = alive & succ
            ends[newly] = t + 1
            alive &= ~succ
            if not alive.any() or timeout:
                break
        P, Acts, R, D = map(np.stack, (P, Acts, R, D))
        for k in range(env.n):
            T = int(min(ends[k], len(Acts)))
            p = P[: T + 1, k]
            eps.append(
                Episode(
                    images=env.render(p),
                    proprio=p,
                    actions=Acts[:T, k],
                    rewards=R[:T, k],
                    terminals=D[:T, k],
                    instruction=INSTRUCTION,
                    task="pointmass",
                    source=source,
                    success=bool(D[:T, k].any()),
                )
            )
    return eps[:n_episodes]


def scripted_dataset(
    n_episodes: int = 60, noise: float = 1.0, seed: int = 0, image_size: int = 0, horizon: int = 40
) -> list:
    """Noisy scripted demonstrations: a mix of successes and failures."""
    env = PointMass(n_envs=min(n_episodes, 32), horizon=horizon, image_size=image_size, seed=seed)
    rng = np.random.default_rng(seed + 1)
    return rollout(env, lambda p: scripted_action(p, rng, noise), n_episodes, source="target_demo")


def success_rate(policy, n_episodes: int = 100, seed: int = 123, horizon: int = 40) -> float:
    env = PointMass(n_envs=n_episodes, horizon=horizon, seed=seed)
    eps = rollout(env, policy, n_episodes)
    return float(np.mean([e.success for e in eps]))
