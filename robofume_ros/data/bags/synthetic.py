"""Episodes -> a bag in the recorder's layout, for tests, generation and demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robofume_ros.interfaces import MSGTYPES, topic_name
from .types import (
    typestore,
    make_observation,
    make_command,
    make_reward,
    make_task_phase,
    make_ground_truth,
    REASON_START,
    REASON_SUCCESS,
    REASON_TIMEOUT,
)
from .writer import BagWriter


# --------------------------------------------------------------------------------------------
# episodes -> bag (the recorder's layout), for tests, generation and demos
# --------------------------------------------------------------------------------------------


def write_episodes_bag(
    episodes,
    path,
    rate_hz: float = 5.0,
    t0_ns: int = 1_700_000_000_000_000_000,
    store=None,
    with_rewards: bool = True,
    with_ground_truth: bool = True,
    phases=None,
    writer_kwargs=None,
    recent=None,
    namespace: str = "",
) -> Path:
    """Write episodes as one continuous reset-free stream in the recorder's layout:
    Observation + ArmCommand (same stamp) per step, TaskPhase at each episode start (reason
    SUCCESS/TIMEOUT from the previous episode), Reward per observation (probability 1 where the
    episode's reward says done), GroundTruth from success_gt. Where episode k+1 starts exactly
    where episode k ended (same image and proprio) they share that boundary observation: it is
    written once, as obs 0 of episode k+1. Where they differ (the arm went home in between, as the
    simulator does with home_on_switch) episode k's last observation is written with index k and
    episode k+1 starts with its own. `recent` [(episode, success), ...]: a last TaskPhase carries
    these as the switcher's remembered verdicts (e.g. after a person's override). `namespace`: the
    graph's, as a namespaced recorder writes it (/robot1/observation). Returns the bag path."""
    store = store or typestore()
    dt = int(round(1e9 / rate_hz))
    w = BagWriter(path, store=store, **(writer_kwargs or {}))
    t = t0_ns
    try:
        prev_success = None
        n = len(episodes)
        shared = []  # shared[k]: episode k's last observation is episode k+1's first
        for k, ep in enumerate(episodes):
            phase = phases[k] if phases is not None else k % 2
            reason = REASON_START if prev_success is None else (REASON_SUCCESS if prev_success else REASON_TIMEOUT)
            w.write(
                topic_name("task_phase", namespace),
                MSGTYPES["task_phase"],
                make_task_phase(store, t, phase, ep.task, ep.instruction, k, reason),
                t,
            )
            T = len(ep)
            nxt = episodes[k + 1] if k + 1 < n else None
            shares_next = (
                nxt is not None
                and np.array_equal(ep.images[-1], nxt.images[0])
                and np.array_equal(ep.proprio[-1], nxt.proprio[0])
            )
            shared_start = k > 0 and shared[k - 1]
            shared.append(shares_next)
            for i in range(T if shares_next else T + 1):
                if i == 0 and shared_start:  # boundary obs: scored for the episode that ended on it
                    prev = episodes[k - 1]
                    done, r_k, r_instr = bool(prev.rewards[-1] == 0), k - 1, prev.instruction
                else:
                    done, r_k, r_instr = bool(i > 0 and ep.rewards[i - 1] == 0), k, ep.instruction
                w.write(
                    topic_name("observation", namespace),
                    MSGTYPES["observation"],
                    make_observation(store, t, ep.images[i], ep.proprio[i], ep.instruction, ep.task, phase, k),
                    t,
                )
                if i < T:
                    w.write(
                        topic_name("command", namespace), MSGTYPES["command"], make_command(store, t, ep.actions[i]), t
                    )
                if with_rewards:
                    w.write(
                        topic_name("reward", namespace),
                        MSGTYPES["reward"],
                        make_reward(store, t, 1.0 if done else 0.0, done, 0.5, r_instr, r_k),
                        t,
                    )
                if (
                    with_ground_truth
                    and i == 0
                    and shared_start
                    and episodes[k - 1].success_gt is not None
                    and episodes[k - 1].task != ep.task
                ):  # the finished task's flag too
                    w.write(
                        topic_name("ground_truth", namespace),
                        MSGTYPES["ground_truth"],
                        make_ground_truth(store, t, episodes[k - 1].task, bool(episodes[k - 1].success_gt[-1])),
                        t,
                    )
                if with_ground_truth and ep.success_gt is not None:
                    w.write(
                        topic_name("ground_truth", namespace),
                        MSGTYPES["ground_truth"],
                        make_ground_truth(store, t, ep.task, bool(ep.success_gt[i])),
                        t,
                    )
                t += dt
            prev_success = ep.success
        if recent is not None:
            last = episodes[-1]
            w.write(
                topic_name("task_phase", namespace),
                MSGTYPES["task_phase"],
                make_task_phase(store, t, 0, last.task, last.instruction, n, REASON_TIMEOUT, recent=recent),
                t,
            )
    finally:
        w.close()
    return Path(path)
