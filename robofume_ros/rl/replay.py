"""Episode-aware replay storage, Monte-Carlo return-to-go, and mixed offline/online sampling.

Layout (one `ReplayStore`): observations and transitions live in separate preallocated,
contiguous arrays. An episode of T transitions appends T+1 observation rows (o_0..o_T) and
T transition rows; transition i stores `obs_index[i]`, the row of o_t, and o_{t+1} is always the
next row. Images stay uint8. Arrays double in size when full (online growth), so appending is
amortised O(1) and sampling is pure vectorised index math.

Rewards are stored *scaled* (r' = reward_scale * r + reward_bias) and the MC return-to-go of
every transition is computed once, when its episode is added (offline load or online close).
With `n_step` > 1 a transition's reward is the discounted sum of up to n scaled rewards of its
episode, its next observation the one k <= n steps later and its discount gamma^k (0 when a
terminal comes first): the agents' target is always r + discount * Q(s', a').
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from robofume_ros.data.episode import Episode


def mc_returns(
    rewards: np.ndarray,
    terminals: np.ndarray,
    gamma: float,
    reward_scale: float = 1.0,
    reward_bias: float = 0.0,
    sparse: bool = True,
    failure_reward: float = -1.0,
) -> np.ndarray:
    """Monte-Carlo return-to-go of one trajectory, exactly as the official Cal-QL code does it.

    rewards: raw rewards (T,); they are scaled here: r' = reward_scale * r + reward_bias.
    G_t = r'_t + gamma * G_{t+1} * (1 - terminal_t), with G_T = 0 (a time limit simply ends the sum).
    sparse=True: a trajectory whose scaled rewards all equal the scaled `failure_reward` (it never
    succeeds) gets G_t = r'_fail / (1 - gamma) at every step, i.e. the value of failing forever.
    """
    r = np.asarray(rewards, dtype=np.float64) * reward_scale + reward_bias
    d = np.asarray(terminals, dtype=np.float64)
    T = len(r)
    if T == 0:
        return np.zeros(0, np.float32)
    r_fail = failure_reward * reward_scale + reward_bias
    if sparse and not succeeded(rewards, failure_reward):
        return np.full(T, r_fail / (1.0 - gamma), np.float32)
    out = np.empty(T, np.float64)
    g = 0.0
    for t in range(T - 1, -1, -1):  # one pass per episode; episodes are short (<= a few hundred)
        g = r[t] + gamma * g * (1.0 - d[t])
        out[t] = g
    return out.astype(np.float32)


def n_step_targets(rewards: np.ndarray, terminals: np.ndarray, gamma: float, n: int):
    """n-step pieces of one trajectory's TD targets, truncated at its end and at its first terminal.

    rewards: scaled rewards (T,). Returns (reward sums (T,), discounts (T,), offsets (T,)): transition t
    bootstraps from observation o_{t+k} (k = offset) with discount gamma^k, or 0 if a terminal
    transition lies in t..t+k-1; the reward sum is sum_{j<k} gamma^j r_{t+j}. n = 1 gives (r, gamma (1 - d), 1).
    """
    if n < 1:
        raise ValueError(f"n_step must be >= 1, got {n}")
    r = np.asarray(rewards, np.float64)
    d = np.asarray(terminals, bool)
    T = len(r)
    total = np.zeros(T)
    k = np.zeros(T, np.int64)
    live = np.ones(T, bool)  # still summing: no terminal yet and inside the episode
    ended = np.zeros(T, bool)  # a terminal was summed
    t = np.arange(T)
    for j in range(n):
        idx = t + j
        step = live & (idx < T)
        ii = np.minimum(idx, T - 1)
        total += np.where(step, gamma**j * r[ii], 0.0)
        k += step
        hit = step & d[ii]
        ended |= hit
        live = step & ~hit
    disc = np.where(ended, 0.0, gamma ** k.astype(np.float64))
    return total.astype(np.float32), disc.astype(np.float32), k


def succeeded(rewards: np.ndarray, failure_reward: float = -1.0) -> bool:
    """Whether a trajectory ever got more than the failure reward (raw rewards): the all-failure
    rule of the MC returns applies to the trajectories where this is False."""
    return bool(np.any(np.asarray(rewards, dtype=np.float64) != failure_reward))


@dataclass
class RewardSpec:
    gamma: float = 0.99  # discount used for the MC returns (must match the agent's)
    reward_scale: float = 10.0  # r' = scale * r + bias; RoboFuME raw {-1,0} -> {-5,+5}
    reward_bias: float = 5.0  # (same mapping as Cal-QL's {0,1} -> {-5,+5} on antmaze)
    sparse: bool = True  # apply the all-failure rule of Cal-QL's MC returns
    failure_reward: float = -1.0  # raw reward of a non-success step
    n_step: int = 1  # TD horizon: n-step targets inside an episode (1 = one-step TD)


class ReplayStore:
    """Growable, episode-aware transition store (numpy, uint8 images).

    obs_keys: which observation arrays to keep, among "image" (H,W,3 uint8), "proprio" (P,),
    "features" (F,). Instruction strings are turned into integer ids by `lang_index`
    (a callable str -> int shared with the learner's language table).
    """

    def __init__(
        self,
        proprio_dim: int,
        action_dim: int,
        image_shape: Optional[tuple] = None,
        feature_dim: Optional[int] = None,
        reward_spec: RewardSpec = RewardSpec(),
        lang_index: Optional[Callable[[str], int]] = None,
        capacity: int = 1024,
    ):
        self.spec = reward_spec
        self.lang_index = lang_index or (lambda s: 0)
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.n_obs = 0  # observation rows in use
        self.n = 0  # transition rows in use
        self.n_episodes = 0
        # (provenance robot, episode_index: the robot's episode number) -> (first transition row, length)
        self.by_index: dict[int, tuple[int, int]] = {}
        cap_o, cap_t = capacity + 1, capacity
        self._obs = {"proprio": np.zeros((cap_o, proprio_dim), np.float32)}
        if self.image_shape is not None:
            self._obs["image"] = np.zeros((cap_o, *self.image_shape), np.uint8)
        if feature_dim is not None:
            self._obs["features"] = np.zeros((cap_o, feature_dim), np.float32)
        self._tr = {
            "obs_index": np.zeros(cap_t, np.int64),
            "actions": np.zeros((cap_t, action_dim), np.float32),
            "rewards": np.zeros(cap_t, np.float32),  # scaled
            "raw_rewards": np.zeros(cap_t, np.float32),
            "dones": np.zeros(cap_t, np.float32),  # terminal (task achieved), not timeouts
            "discounts": np.zeros(cap_t, np.float32),  # of the bootstrap: gamma^k, 0 after a terminal
            "next_offset": np.ones(cap_t, np.int64),  # next observation row = obs row + offset (k)
            "mc_returns": np.zeros(cap_t, np.float32),
            "success": np.zeros(cap_t, np.float32),  # 1: the transition's episode succeeded
            "lang": np.zeros(cap_t, np.int64),
            "episode": np.zeros(cap_t, np.int64),
        }

    # -- growth ---------------------------------------------------------------------------
    @staticmethod
    def _grow(arrays: dict, need: int):
        cap = len(next(iter(arrays.values())))
        if need <= cap:
            return
        new_cap = max(need, 2 * cap)
        for k, a in arrays.items():
            b = np.zeros((new_cap, *a.shape[1:]), a.dtype)
            b[:cap] = a
            arrays[k] = b

    def __len__(self) -> int:
        return self.n

    # -- writing --------------------------------------------------------------------------
    def add_episode(self, ep: Episode) -> None:
        """Append one finished episode; its MC returns are computed here."""
        T = len(ep)
        if T == 0:
            return
        self._grow(self._obs, self.n_obs + T + 1)
        self._grow(self._tr, self.n + T)
        o0, t0 = self.n_obs, self.n
        self._obs["proprio"][o0 : o0 + T + 1] = ep.proprio
        if "image" in self._obs:
            if ep.images.shape[1:] != self.image_shape:
                raise ValueError(f"episode images are {ep.images.shape[1:]}, store expects {self.image_shape}")
            self._obs["image"][o0 : o0 + T + 1] = ep.images
        if "features" in self._obs:
            if ep.features is None:
                raise ValueError(
                    "this store keeps frozen-encoder features but the episode has none "
                    "(run robofume_ros.vision.encoder.add_features first)"
                )
            self._obs["features"][o0 : o0 + T + 1] = ep.features
        tr = self._tr
        sl = slice(t0, t0 + T)
        tr["obs_index"][sl] = np.arange(o0, o0 + T)
        tr["actions"][sl] = ep.actions
        self._set_labels(sl, ep.rewards, ep.terminals)
        tr["lang"][sl] = self.lang_index(ep.instruction)
        tr["episode"][sl] = self.n_episodes
        prov = ep.provenance or {}
        if prov.get("episode_index") is not None:  # a fleet's robots each count their own episodes
            self.by_index[(prov.get("robot", ""), int(prov["episode_index"]))] = (t0, T)
        self.n_obs += T + 1
        self.n += T
        self.n_episodes += 1

    def _set_labels(self, sl: slice, rewards, terminals) -> None:
        """Rewards, terminals and everything computed from them for the transitions in `sl`."""
        s, tr = self.spec, self._tr
        tr["raw_rewards"][sl] = rewards
        scaled = np.asarray(rewards, np.float32) * s.reward_scale + s.reward_bias
        tr["rewards"][sl], tr["discounts"][sl], tr["next_offset"][sl] = n_step_targets(
            scaled, terminals, s.gamma, s.n_step
        )
        tr["dones"][sl] = np.asarray(terminals, np.float32)
        tr["mc_returns"][sl] = mc_returns(
            rewards, terminals, s.gamma, s.reward_scale, s.reward_bias, s.sparse, s.failure_reward
        )
        tr["success"][sl] = float(succeeded(rewards, s.failure_reward))

    def relabel(self, episode_index: int, rewards, terminals, robot: str = "") -> bool:
        """New rewards/terminals for the stored episode with provenance `episode_index` of `robot`
        (a person overrode its outcome); its targets and MC returns are recomputed. False when not
        stored."""
        key = (robot, int(episode_index))
        if key not in self.by_index:
            return False
        t0, T = self.by_index[key]
        if len(rewards) != T or len(terminals) != T:
            raise ValueError(f"episode {episode_index} has {T} transitions, got {len(rewards)} labels")
        self._set_labels(slice(t0, t0 + T), np.asarray(rewards, np.float32), np.asarray(terminals, bool))
        return True

    def add_episodes(self, episodes) -> None:
        for ep in episodes:
            self.add_episode(ep)

    # -- reading --------------------------------------------------------------------------
    def gather(self, idx: np.ndarray) -> dict:
        """Transitions at `idx` as a dict of numpy arrays (fancy indexing, no Python loop)."""
        tr = self._tr
        oi = tr["obs_index"][idx]
        out = {k: tr[k][idx] for k in ("actions", "rewards", "dones", "discounts", "mc_returns", "success", "lang")}
        ni = oi + tr["next_offset"][idx]
        out["obs"] = {k: a[oi] for k, a in self._obs.items()}
        out["next_obs"] = {k: a[ni] for k, a in self._obs.items()}
        return out

    def sample(self, n: int, rng: np.random.Generator) -> dict:
        return self.gather(rng.integers(0, self.n, size=n))

    def array(self, key: str) -> np.ndarray:
        """View of a stored column (transition keys or observation keys) over the rows in use."""
        if key in self._tr:
            return self._tr[key][: self.n]
        return self._obs[key][: self.n_obs]


def concat_batches(a: dict, b: dict) -> dict:
    out = {}
    for k in a:
        if isinstance(a[k], dict):
            out[k] = concat_batches(a[k], b[k])
        else:
            out[k] = np.concatenate([a[k], b[k]], axis=0)
    return out


def sample_mixed(
    offline: ReplayStore, online: Optional[ReplayStore], batch_size: int, online_ratio: float, rng: np.random.Generator
) -> dict:
    """Cal-QL's mixed batch: round(online_ratio * batch) from the online store, the rest offline
    (offline rows first; "online" marks the online rows with 1). Falls back to one store when the
    other is empty."""
    n_on = int(round(online_ratio * batch_size)) if (online is not None and len(online) > 0) else 0
    if offline is None or len(offline) == 0:
        n_on = batch_size
    n_off = batch_size - n_on
    if n_on == 0:
        b = offline.sample(n_off, rng)
    elif n_off == 0:
        b = online.sample(n_on, rng)
    else:
        b = concat_batches(offline.sample(n_off, rng), online.sample(n_on, rng))
    b["online"] = np.concatenate([np.zeros(n_off, np.float32), np.ones(n_on, np.float32)])
    return b
