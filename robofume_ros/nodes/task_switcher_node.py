"""Task switcher: the reset-free forward/backward state machine as a node.

in:  /observation (one tick per observation), /reward (success_source "reward") or
     /eval/ground_truth (success_source "ground_truth": scripted data collection only)
     /reward_override (RewardOverride: a person's verdict, which wins over the reward's)
out: /task_phase (latched, on every change and at 1 Hz), /task_switcher/help, /robot/stop,
     /reward_override (the verdicts given through the services, once applied)
services (std_srvs/Trigger): ~/pause, ~/resume, ~/force_switch, ~/stop, and a person's verdicts
     ~/override_success (end the episode as a success now), ~/override_not_success (ignore the
     reward's success until the episode ends), ~/undo_verdict (flip the last episode's outcome)

If the reward stops arriving the episode still ends at its time limit: the switcher never hangs.

Managed (ros/lifecycle.py): configure builds the state machine and its topics, activate starts
counting observations as control ticks. The lifecycle manager activates it after the reward (its
success source), so no episode's clock runs before a verdict can end it; its episode count carries
over a cleanup and configure, so episode indices stay unique for the learner and the recorder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.msg import GroundTruth, Observation, Reward, RewardOverride, TaskPhase
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import OK, WARN, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import ImageError, image_to_rgb, stamp_key
from robofume_ros.switching.task_switcher import (
    OVERRIDE_NOT_SUCCESS,
    OVERRIDE_SUCCESS,
    OVERRIDE_UNDO,
    PHASE_NAMES,
    REASON_NAMES,
    OverrideError,
    TaskSpec,
    TaskSwitcher,
)

CLOCK_JUMP_NS = 10**9  # stamps this far behind the last tick: the clock restarted, not a stale message


@dataclass
class Params(ManagedParams):
    forward_task: str = knob("drawer-open", "task id of the forward task")
    forward_instruction: str = knob("open the drawer", "language instruction of the forward task")
    backward_task: str = knob("drawer-close", "task id of the backward (reset) task")
    backward_instruction: str = knob("close the drawer", "language instruction of the backward task")
    max_episode_steps: int = knob(150, "time limit of one episode in control ticks", range=(1, 100000), runtime=True)
    backward_max_episode_steps: int = knob(
        0,
        "time limit of a backward (reset) episode in control ticks (0 = max_episode_steps)",
        range=(0, 100000),
        runtime=True,
    )
    success_frames: int = knob(3, "consecutive successful frames that end an episode", range=(1, 1000), runtime=True)
    success_source: str = knob(
        "reward",
        "reward (the learned /reward) or ground_truth (simulator; data collection only)",
        choices=("reward", "ground_truth"),
    )
    max_verdict_age_ticks: int = knob(3, "ignore success verdicts older than this many ticks")
    help_after_timeouts: int = knob(4, "consecutive timeouts before pausing and asking a human for help (0 = never)")
    control_rate_hz: float = knob(10.0, "expected observation rate (for the verdict age check)", range=(0.1, 1000.0))


class TaskSwitcherNode(ManagedNode):
    """Managed: configure builds the state machine, activate counts ticks, deactivate stops."""

    def __init__(self):
        super().__init__("task_switcher")
        self.p = declare(self, Params, self._apply_param)  # runtime changes: from the next tick
        self.sm = None  # built at the first configure, kept over a cleanup (episode indices stay unique)

    def _apply_param(self, name, value):
        if self.sm is not None and hasattr(self.sm, name):
            setattr(self.sm, name, value)

    def configure(self):
        p = self.p
        if p.success_source not in ("reward", "ground_truth"):
            raise ValueError(f"success_source must be reward or ground_truth, got {p.success_source!r}")
        if self.sm is None:
            self.sm = TaskSwitcher(
                TaskSpec(p.forward_task, p.forward_instruction),
                TaskSpec(p.backward_task, p.backward_instruction),
                max_episode_steps=p.max_episode_steps,
                success_frames=p.success_frames,
                help_after_timeouts=p.help_after_timeouts,
                backward_max_episode_steps=p.backward_max_episode_steps,
            )
        self.verdict = None  # (success, stamp_ns) for the active episode/task
        self.last_tick_ns = None
        self.rejected = 0  # observations not counted as ticks (malformed or not newer)
        self.pub_phase = self.create_publisher(TaskPhase, graph.TOPICS["task_phase"], qos.LATCHED)
        self.pub_help = self.create_publisher(String, graph.TOPICS["help"], qos.LATCHED)
        self.pub_stop = self.create_publisher(Bool, graph.TOPICS["stop"], qos.RELIABLE)
        self.observation_topic = self.create_subscription(
            Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE
        ).topic_name
        if p.success_source == "reward":
            self.create_subscription(Reward, graph.TOPICS["reward"], self.on_reward, qos.RELIABLE)
        else:
            self.create_subscription(GroundTruth, graph.TOPICS["ground_truth"], self.on_ground_truth, qos.RELIABLE)
        self.create_subscription(RewardOverride, graph.TOPICS["reward_override"], self.on_override, qos.RELIABLE)
        # a verdict given through the services goes out on the topic too, once applied: the recorder
        # keeps it and the reward learns from it as from any other (this node skips its own)
        self.pub_override = self.create_publisher(RewardOverride, graph.TOPICS["reward_override"], qos.RELIABLE)
        self.service_source = f"{self.get_fully_qualified_name()} service"
        for name, fn in (
            ("pause", self.srv_pause),
            ("resume", self.srv_resume),
            ("force_switch", self.srv_force),
            ("stop", self.srv_stop),
            ("override_success", lambda req, res: self.srv_override(res, OVERRIDE_SUCCESS)),
            ("override_not_success", lambda req, res: self.srv_override(res, OVERRIDE_NOT_SUCCESS)),
            ("undo_verdict", lambda req, res: self.srv_override(res, OVERRIDE_UNDO)),
        ):
            self.create_service(Trigger, f"~/{name}", fn)
        self.create_timer(1.0, self.publish_phase)
        self.publish_phase()
        self.log.info(f"configured: {self.sm.summary()}; success from {p.success_source}")

    def activate(self):
        self.verdict = None  # a verdict from before the pause does not end the next tick's episode

    # --- verdicts ---------------------------------------------------------------------------
    def on_reward(self, msg):
        if msg.episode_index == self.sm.episode_index and msg.instruction in ("", self.sm.active.instruction):
            self.verdict = (bool(msg.success), stamp_key(msg.header.stamp))

    def on_ground_truth(self, msg):
        if msg.task == self.sm.active.task:
            self.verdict = (bool(msg.success), stamp_key(msg.header.stamp))

    # --- ticks ------------------------------------------------------------------------------
    def _is_tick(self, obs) -> bool:
        """Only a usable observation newer than the last counted one is a control tick: a burst of
        malformed or repeated observations must not run the episode's clock."""
        try:
            image_to_rgb(obs.image)
            if not all(math.isfinite(v) for v in obs.proprio):
                raise ImageError("proprioception has NaN or Inf")
        except ImageError as e:
            self.rejected += 1
            self.throttle.warn(f"bad:{str(e)[:24]}", f"observation not counted as a tick: {e}")
            return False
        ns = stamp_key(obs.header.stamp)
        if self.last_tick_ns is not None and ns <= self.last_tick_ns:
            if self.last_tick_ns - ns < CLOCK_JUMP_NS:
                self.rejected += 1
                self.throttle.warn("stamp", "observation not newer than the last tick: not counted")
                return False
            self.log.warn("observation stamps jumped back (clock reset or replay restarted)")
        self.last_tick_ns = ns
        return True

    def on_observation(self, obs):
        if not self.active:
            return  # inactive: no episode's clock runs
        self.diagnostics.heard(self.observation_topic)
        if obs.episode_index != self.sm.episode_index:
            return  # an observation assembled before the last switch reached the camera node
        if not self._is_tick(obs):
            return
        success = None
        if self.verdict is not None:
            ok, stamp_ns = self.verdict
            obs_ns = self.last_tick_ns
            max_age = self.p.max_verdict_age_ticks * 1e9 / self.p.control_rate_hz
            if obs_ns - stamp_ns <= max_age:
                success = ok
        ev = self.sm.step(success)
        if ev is not None:
            self.verdict = None
            self.log.info(
                f"episode {ev.ended_episode} ({PHASE_NAMES[ev.ended_phase]}) ended by "
                f"{REASON_NAMES[ev.reason]} after {ev.steps} steps -> {self.sm.summary()}"
            )
            if self.sm.help_requested:
                text = (
                    f"{self.sm.consecutive_timeouts} timeouts in a row: paused, please check the scene "
                    f"and call ~/resume"
                )
                self.log.error("HELP: " + text)
                self.pub_help.publish(String(data=text))
            self.publish_phase()

    def health(self):
        sm = self.sm
        values = {
            "episode": sm.episode_index,
            "task": sm.active.task,
            "steps_in_episode": sm.steps_in_episode,
            "time_limit": sm.time_limit(sm.phase),
            "forward_successes": sm.successes[0],
            "backward_successes": sm.successes[1],
            "forward_timeouts": sm.timeouts[0],
            "backward_timeouts": sm.timeouts[1],
            "consecutive_timeouts": sm.consecutive_timeouts,
            "overrides": sm.overrides,
            "observations_not_counted": self.rejected,
            "success_source": self.p.success_source,
        }
        if sm.help_requested:
            return WARN, f"paused after {sm.consecutive_timeouts} timeouts in a row: waiting for help", values
        if sm.paused:
            return WARN, "paused", values
        return OK, sm.summary(), values

    def publish_phase(self):
        sm = self.sm
        m = TaskPhase()
        m.header.stamp = self.get_clock().now().to_msg()
        m.phase, m.task, m.instruction = sm.phase, sm.active.task, sm.active.instruction
        m.episode_index, m.last_switch_reason = sm.episode_index, sm.last_reason
        m.steps_in_episode, m.paused = sm.steps_in_episode, sm.paused
        m.forward_successes, m.backward_successes = sm.successes[0], sm.successes[1]
        m.forward_timeouts, m.backward_timeouts = sm.timeouts[0], sm.timeouts[1]
        m.overrides = sm.overrides
        m.recent_episodes = [int(o[0]) for o in sm.outcomes]
        m.recent_successes = [bool(o[1]) for o in sm.outcomes]
        self.pub_phase.publish(m)

    # --- a person's verdicts ----------------------------------------------------------------
    def apply_override(self, verdict: int, episode_index: int, source: str) -> str:
        """Apply one override; raises OverrideError (nothing changed) when it cannot apply."""
        ev = self.sm.override(verdict, episode_index)
        if ev is not None:
            self.verdict = None
            text = f"episode {ev.ended_episode} ({PHASE_NAMES[ev.ended_phase]}) ended as a success by {source}"
        elif verdict == OVERRIDE_UNDO:
            ep, ok, _ = self.sm.outcomes[-1]
            text = f"episode {ep}'s outcome set to {'success' if ok else 'no success'} by {source} (undo)"
        else:
            text = f"episode {episode_index}: the reward's success is ignored until it ends ({source})"
        self.log.info(f"override: {text} -> {self.sm.summary()}")
        self.publish_phase()
        return text

    def on_override(self, msg):
        if msg.source == self.service_source:
            return  # applied when the service was called
        try:
            self.apply_override(int(msg.verdict), int(msg.episode_index), msg.source or "topic")
        except OverrideError as e:
            self.log.error(f"override refused, nothing changed: {e}")

    def srv_override(self, res, verdict: int):
        # the service means "the episode the robot is in" (UNDO: the one that ended last)
        if verdict == OVERRIDE_UNDO:
            episode = self.sm.outcomes[-1][0] if self.sm.outcomes else -1
        else:
            episode = self.sm.episode_index
        try:
            res.success, res.message = True, self.apply_override(verdict, episode, "service")
        except OverrideError as e:
            res.success, res.message = False, f"refused, nothing changed: {e}"
            return res
        msg = RewardOverride()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.episode_index, msg.verdict, msg.source = int(episode), int(verdict), self.service_source
        self.pub_override.publish(msg)
        return res

    # --- services ---------------------------------------------------------------------------
    def srv_pause(self, req, res):
        self.sm.pause()
        self.publish_phase()
        res.success, res.message = True, "paused"
        return res

    def srv_resume(self, req, res):
        self.sm.resume()
        self.verdict = None
        self.pub_stop.publish(Bool(data=False))
        self.publish_phase()
        res.success, res.message = True, self.sm.summary()
        return res

    def srv_force(self, req, res):
        ev = self.sm.force_switch()
        self.verdict = None
        self.publish_phase()
        res.success, res.message = True, f"switched to {PHASE_NAMES[ev.new_phase]}"
        return res

    def srv_stop(self, req, res):
        self.sm.pause()
        self.pub_stop.publish(Bool(data=True))
        self.publish_phase()
        res.success, res.message = True, "arm stopped and switcher paused; ~/resume releases both"
        return res


def main(args=None) -> int:
    return run_node(TaskSwitcherNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
