"""CommandGate: the one path from "someone wants the arm to move" to "the arm moves".

Pure Python (no ROS). The sim node and the real-arm bridge each own one gate and call, from their
ROS callbacks:
    submit(action, source, intervention, now)   every ArmCommand (policy, scripted, teleop)
    set_stop(flag, reason)                      the stop topic (true latches, false releases)
    saw_observation(now)                        every fresh robot state / observation
    start_home(target_xyz, gripper, now)        the home / retreat service
    tick(now, ee_position) -> Tick              once per control tick: what to execute (None = hold)

A command is checked for shape and NaN/Inf when it arrives (a bad one replaces the pending command
with "hold") and filtered by the envelope at the tick that executes it, against the end-effector
position of that tick; the newest command repeats each tick until `command_timeout_s` old.

Arbitration, highest first: stop > home > intervention > policy. A human (intervention) command
keeps the arm for `intervention_hold_s` after the last one arrived: policy commands in that window
are counted and dropped. Every command passes through the same SafetyEnvelope (bounds, NaN/Inf,
rate, velocity, workspace) whatever its source, including the home motion. A stop set between two
ticks holds the arm at the next tick; the watchdog holds it while commands or observations are stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from robofume_ros.interfaces import TOPICS
from robofume_ros.safety.envelope import EnvelopeConfig, SafetyEnvelope

SAFETY_TOPIC = TOPICS["safety"]  # JSON counts


@dataclass
class GateConfig:
    intervention_hold_s: float = 1.0  # a human command keeps priority for this long after it arrived
    watchdog: bool = True  # hold when commands or observations go stale
    require_observation: bool = False  # hold until the first observation (real arms)
    home_tolerance_m: float = 0.005  # the home motion ends within this distance of the target
    home_speed: float = 0.5  # normalized translation used by the home motion (<= 1)
    home_timeout_s: float = 30.0  # give up (and hold) if home is not reached by then


@dataclass
class Tick:
    action: Optional[np.ndarray]  # filtered action to execute now; None = hold still
    source: str = ""  # who it came from: policy/scripted/teleop/home/...
    intervention: bool = False
    reasons: list = field(default_factory=list)  # why it was modified, or why the arm holds
    stopped: bool = False  # stop latch or watchdog holding the arm
    homing: bool = False


@dataclass
class _Pending:
    action: Optional[np.ndarray]
    source: str
    intervention: bool
    t: float
    reasons: list


class CommandGate:
    def __init__(self, envelope: SafetyEnvelope | EnvelopeConfig, config: Optional[GateConfig] = None):
        self.envelope = envelope if isinstance(envelope, SafetyEnvelope) else SafetyEnvelope(envelope)
        self.config = config or GateConfig()
        self.counts = self.envelope.counts  # one counter for everything
        self._policy: Optional[_Pending] = None
        self._human: Optional[_Pending] = None
        self._last_human_t: Optional[float] = None
        self._home: Optional[dict] = None
        self.last_gripper = -1.0
        self.ticks = 0

    # --- inputs -----------------------------------------------------------------------------
    def submit(
        self, action: Sequence[float], source: str = "policy", intervention: bool = False, now: float = 0.0
    ) -> Optional[str]:
        """Take one command (checked for shape and NaN/Inf now, filtered at the tick it runs).
        Returns why it will not run (for the caller's log), or None. A rejected command replaces
        the pending one with "hold": a NaN never lets an older command keep running."""
        self.counts["received"] += 1
        self.envelope.saw_command(now)
        if not intervention and self.intervening(now):
            self.counts["dropped:policy_during_intervention"] += 1
            return "dropped: a human intervention has the arm"
        a, why = self.envelope.validate(action)
        p = _Pending(a, source or ("teleop" if intervention else "policy"), intervention, now, [why] if why else [])
        if intervention:
            self.counts["interventions"] += 1
            if self._last_human_t is None or now - self._last_human_t > self.config.intervention_hold_s:
                self.counts["intervention_episodes"] += 1
            self._human, self._last_human_t = p, now
            self._policy = None
        else:
            self._policy = p
        return why

    def intervening(self, now: float) -> bool:
        return self._last_human_t is not None and now - self._last_human_t <= self.config.intervention_hold_s

    def set_stop(self, flag: bool, reason: str = "stop topic") -> None:
        if flag:
            self.envelope.stop(reason)
            self._home = None  # a stop also cancels a running home motion
            self._policy = self._human = None
        elif self.envelope.stopped:
            self.envelope.release()
            self.counts["released"] += 1

    @property
    def stopped(self) -> bool:
        return self.envelope.stopped

    def saw_observation(self, now: float) -> None:
        self.envelope.saw_observation(now)

    def start_home(self, target_xyz: Sequence[float], gripper: float = -1.0, now: float = 0.0) -> str:
        """Begin the home / retreat motion (refused while stopped). Returns a status line."""
        if self.envelope.stopped:
            return f"refused: stopped ({self.envelope.stop_reason}); release the stop first"
        t = np.asarray(target_xyz, dtype=np.float64).reshape(3)
        safe = np.clip(t, self.envelope.ws_low, self.envelope.ws_high)
        self._home = {"target": safe, "gripper": float(gripper), "t0": now}
        self.counts["home:requested"] += 1
        return f"homing to {np.round(safe, 4).tolist()}"

    @property
    def homing(self) -> bool:
        return self._home is not None

    # --- the control tick -----------------------------------------------------------------
    def tick(self, now: float, ee_position: Optional[Sequence[float]] = None) -> Tick:
        """What to execute this tick (None = hold), filtered against `ee_position` of this tick."""
        self.ticks += 1
        env = self.envelope
        if env.stopped:
            self.counts["held:stopped"] += 1
            self._policy = self._human = None
            return Tick(None, reasons=[f"stopped: {env.stop_reason}"], stopped=True)
        if self._home is not None:
            return self._home_tick(now, ee_position)
        if self.config.watchdog:
            why = env.check_watchdog(now, self.config.require_observation)
            if why is not None:
                self._policy = self._human = None
                return Tick(None, reasons=[f"watchdog: {why}"], stopped=True)
        human = self.intervening(now) and self._human is not None
        pending = self._human if human else self._policy
        if pending is None:
            return Tick(None, reasons=["no command yet"])
        if pending.action is None:
            return Tick(None, pending.source, pending.intervention, list(pending.reasons))
        # the newest command repeats each tick until it is older than the command timeout
        if self.config.watchdog and now - pending.t > self.envelope.config.command_timeout_s:
            self.counts["held:stale_command"] += 1
            return Tick(
                None, pending.source, pending.intervention, [f"stale command ({now - pending.t:.2f} s)"], stopped=True
            )
        d = env.filter(pending.action, ee_position, None)
        if d.action is None:
            return Tick(None, pending.source, pending.intervention, d.reasons)
        self.last_gripper = float(d.action[-1])
        self.counts[f"executed:{'intervention' if pending.intervention else 'policy'}"] += 1
        return Tick(d.action, pending.source, pending.intervention, d.reasons)

    def _home_tick(self, now: float, ee_position) -> Tick:
        h = self._home
        env = self.envelope
        if ee_position is None or not np.all(np.isfinite(np.asarray(ee_position, dtype=np.float64))):
            self.counts["held:home_no_state"] += 1
            return Tick(None, "home", reasons=["home: no end-effector position"], homing=True)
        p = np.asarray(ee_position, dtype=np.float64).reshape(3)
        err = h["target"] - p
        dist = float(np.linalg.norm(err))
        if dist <= self.config.home_tolerance_m:
            self._home = None
            self.counts["home:reached"] += 1
            return Tick(None, "home", reasons=["home reached"])
        if now - h["t0"] > self.config.home_timeout_s:
            self._home = None
            self.counts["home:timeout"] += 1
            return Tick(None, "home", reasons=["home: timed out"])
        step = err / env.config.max_translation_m
        n = float(np.max(np.abs(step)))
        if n > self.config.home_speed:
            step *= self.config.home_speed / n
        a = np.zeros(env.config.action_dim)
        a[:3] = step
        a[-1] = h["gripper"]
        d = env.filter(a, p, None)
        self._policy = self._human = None
        if d.action is not None:
            self.last_gripper = float(d.action[-1])
        return Tick(d.action, "home", False, d.reasons, homing=True)

    # --- reporting ------------------------------------------------------------------------
    def counts_dict(self) -> dict:
        return self.envelope.counts_dict()

    def counts_json(self, **extra) -> str:
        d = {
            "counts": self.counts_dict(),
            "stopped": self.envelope.stopped,
            "stop_reason": self.envelope.stop_reason or "",
            "homing": self.homing,
        }
        d.update(extra)
        return json.dumps(d, sort_keys=True)


def make_gate(
    action_dim: int,
    max_translation_m: float,
    workspace_low,
    workspace_high,
    *,
    max_rotation_rad: float = 0.05,
    max_delta_per_tick: float = 2.0,
    control_period_s: float = 0.1,
    command_horizon_s: float = 0.0,
    max_speed_m_s: float = 0.0,
    max_angular_speed_rad_s: float = 0.0,
    command_timeout_s: float = 0.5,
    observation_timeout_s: float = 1.0,
    intervention_hold_s: float = 1.0,
    watchdog: bool = True,
    require_observation: bool = False,
) -> CommandGate:
    """The gate both robot nodes build from their parameters (one place, so they agree)."""
    env = SafetyEnvelope(
        EnvelopeConfig(
            action_dim=action_dim,
            max_translation_m=max_translation_m,
            max_rotation_rad=max_rotation_rad,
            max_delta_per_tick=max_delta_per_tick,
            control_period_s=control_period_s,
            command_horizon_s=command_horizon_s,
            max_speed_m_s=max_speed_m_s,
            max_angular_speed_rad_s=max_angular_speed_rad_s,
            workspace_low=tuple(workspace_low),
            workspace_high=tuple(workspace_high),
            command_timeout_s=command_timeout_s,
            observation_timeout_s=observation_timeout_s,
        )
    )
    return CommandGate(
        env,
        GateConfig(intervention_hold_s=intervention_hold_s, watchdog=watchdog, require_observation=require_observation),
    )
