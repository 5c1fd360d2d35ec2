"""The one safety envelope every arm command passes through, whatever produced it.

Pure Python (no ROS): the sim node and the real-arm bridge both own one `SafetyEnvelope` and
call `filter()` on every command before anything moves. It enforces, in order:
  1. stop latch   -- while stopped (stop topic, watchdog, NaN storm) every command becomes "hold";
  2. finite check -- NaN/Inf commands are rejected (hold), never clipped into something plausible;
  3. action box   -- each normalized component clipped to [action_low, action_high];
  4. rate limit   -- change per tick of each component limited to `max_delta_per_tick`;
  5. velocity     -- translation (and rotation) per tick scaled to `max_speed_m_s` (`max_angular_speed_rad_s`)
                     times the control period, keeping its direction;
  6. workspace    -- translation scaled so the predicted end-effector position stays in the box, also
                     if the command keeps acting for `command_horizon_s` (a velocity interface such as
                     MoveIt Servo moves on at the commanded twist until the next one or its own
                     timeout: a late next tick must not carry the hand out of the box).
Every clip, rejection and stop is counted by reason, so the nodes can log and publish them.
`CommandGate` (gate.py) wraps one envelope with the arbitration (stop > home > intervention >
policy) and the watchdog; the sim node and the arm bridge both run their commands through it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np


@dataclass
class EnvelopeConfig:
    action_dim: int = 4  # 4: xyz + gripper; 7: xyz + rpy + gripper
    action_low: float = -1.0  # normalized bound, every component
    action_high: float = 1.0
    max_translation_m: float = 0.01  # metres per tick for a translation of 1.0
    max_rotation_rad: float = 0.05  # radians per tick for a rotation of 1.0 (7-D actions)
    max_delta_per_tick: float = 2.0  # largest change of a component between ticks (2.0 = off)
    control_period_s: float = 0.1  # one control tick, for the velocity limits
    # how long one command may keep the arm moving: a velocity interface's timeout (Servo's
    # incoming_command_timeout); 0 = one control period (a position setpoint is reached and held)
    command_horizon_s: float = 0.0
    max_speed_m_s: float = 0.0  # end-effector speed limit (0 = only max_translation_m)
    max_angular_speed_rad_s: float = 0.0  # end-effector angular speed limit (0 = only max_rotation_rad)
    workspace_low: Sequence[float] = (-0.5, 0.3, 0.05)  # end-effector box, metres, base frame
    workspace_high: Sequence[float] = (0.5, 1.0, 0.35)
    command_timeout_s: float = 0.5  # watchdog: no command for this long -> hold
    observation_timeout_s: float = 1.0  # watchdog: no robot state/observation for this long -> hold


@dataclass
class Decision:
    action: Optional[np.ndarray]  # the action to execute, None = hold still
    reasons: list = field(default_factory=list)  # why it was changed: "clipped", "rate", "workspace", ...
    stopped: bool = False

    @property
    def modified(self) -> bool:
        return bool(self.reasons)


class SafetyEnvelope:
    def __init__(self, config: EnvelopeConfig):
        c = config
        if c.action_dim not in (4, 7):
            raise ValueError(f"action_dim must be 4 (xyz+gripper) or 7 (xyz+rpy+gripper), got {c.action_dim}")
        if not c.action_low < c.action_high:
            raise ValueError("action_low must be below action_high")
        self.config = c
        self.ws_low = np.asarray(c.workspace_low, dtype=np.float64)
        self.ws_high = np.asarray(c.workspace_high, dtype=np.float64)
        if self.ws_low.shape != (3,) or self.ws_high.shape != (3,) or np.any(self.ws_low >= self.ws_high):
            raise ValueError(f"workspace box must be 3 lows below 3 highs, got {c.workspace_low} / {c.workspace_high}")
        if c.max_translation_m <= 0 or c.max_rotation_rad <= 0 or c.control_period_s <= 0:
            raise ValueError("max_translation_m, max_rotation_rad and control_period_s must be positive")
        if c.command_horizon_s < 0:
            raise ValueError("command_horizon_s must be >= 0 (0 = one control period)")
        if c.max_speed_m_s < 0 or c.max_angular_speed_rad_s < 0 or c.max_delta_per_tick <= 0:
            raise ValueError("speed limits must be >= 0 and max_delta_per_tick > 0")
        self.counts: Counter = Counter()
        self._stale: Optional[str] = None
        self.stop_reason: Optional[str] = None
        self._last_action = np.zeros(c.action_dim)
        self._last_command_t: Optional[float] = None
        self._last_observation_t: Optional[float] = None

    # --- stop latch -----------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        return self.stop_reason is not None

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.counts[f"stop:{reason}"] += 1
        self.stop_reason = reason

    def release(self) -> None:
        self.stop_reason = None
        self._last_action = np.zeros(self.config.action_dim)

    # --- watchdog ---------------------------------------------------------------------------
    def saw_observation(self, now: float) -> None:
        self._last_observation_t = now

    def saw_command(self, now: float) -> None:
        self._last_command_t = now

    def check_watchdog(self, now: float, require_observation: bool = False) -> Optional[str]:
        """Returns why input is stale, or None. Stale input means hold this tick. Each time input
        goes stale is counted once ("watchdog:command" / "watchdog:observation"); every tick held
        for it is counted under "held:watchdog". With `require_observation`, never having seen an
        observation counts as stale too (a real arm must not move blind)."""
        c = self.config
        why, key = None, None
        if self._last_command_t is not None and now - self._last_command_t > c.command_timeout_s:
            why, key = f"no command for {now - self._last_command_t:.2f} s", "watchdog:command"
        elif self._last_observation_t is not None and now - self._last_observation_t > c.observation_timeout_s:
            why, key = f"no observation for {now - self._last_observation_t:.2f} s", "watchdog:observation"
        elif require_observation and self._last_observation_t is None:
            why, key = "no observation yet", "watchdog:observation"
        if key is not None:
            if self._stale != key:
                self.counts[key] += 1
            self.counts["held:watchdog"] += 1
        self._stale = key
        return why

    # --- scaling ------------------------------------------------------------------------------
    def to_physical(self, action: Sequence[float]) -> tuple:
        """A filtered normalized action -> (translation m (3,), rotation rad (3,), gripper [-1, 1])."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        c = self.config
        rot = a[3:6] * c.max_rotation_rad if a.size == 7 else np.zeros(3)
        return a[:3] * c.max_translation_m, rot, float(a[-1])

    def counts_dict(self) -> dict:
        return {k: int(v) for k, v in sorted(self.counts.items())}

    # --- the filter -------------------------------------------------------------------------
    def validate(self, action: Sequence[float]) -> tuple:
        """(array, None) for a well-formed finite action, or (None, reason) -- counted -- otherwise."""
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (self.config.action_dim,):
            self.counts["rejected:shape"] += 1
            return None, f"rejected: action has {a.size} components, expected {self.config.action_dim}"
        if not np.all(np.isfinite(a)):
            self.counts["rejected:nonfinite"] += 1
            return None, "rejected: NaN or Inf in action"
        return a, None

    def filter(
        self, action: Sequence[float], ee_position: Optional[Sequence[float]] = None, now: Optional[float] = None
    ) -> Decision:
        c = self.config
        self.counts["commands"] += 1
        if now is not None:
            self._last_command_t = now
        if self.stopped:
            self.counts["held:stopped"] += 1
            return Decision(None, [f"stopped: {self.stop_reason}"], stopped=True)
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (c.action_dim,):
            self.counts["rejected:shape"] += 1
            return Decision(None, [f"rejected: action has {a.size} components, expected {c.action_dim}"])
        if not np.all(np.isfinite(a)):
            self.counts["rejected:nonfinite"] += 1
            return Decision(None, ["rejected: NaN or Inf in action"])
        reasons = []
        clipped = np.clip(a, c.action_low, c.action_high)
        if np.any(clipped != a):
            reasons.append("clipped")
            self.counts["clipped:bounds"] += 1
        a = clipped
        lo, hi = self._last_action - c.max_delta_per_tick, self._last_action + c.max_delta_per_tick
        limited = np.clip(a, lo, hi)
        if np.any(limited != a):
            reasons.append("rate")
            self.counts["clipped:rate"] += 1
        a = limited
        max_t = c.max_speed_m_s * c.control_period_s
        if max_t > 0:
            norm = float(np.linalg.norm(a[:3])) * c.max_translation_m
            if norm > max_t:
                a = a.copy()
                a[:3] *= max_t / norm * (1 - 1e-12)
                reasons.append("velocity")
                self.counts["clipped:velocity"] += 1
        max_r = c.max_angular_speed_rad_s * c.control_period_s
        if max_r > 0 and c.action_dim == 7:
            norm = float(np.linalg.norm(a[3:6])) * c.max_rotation_rad
            if norm > max_r:
                a = a.copy()
                a[3:6] *= max_r / norm * (1 - 1e-12)
                reasons.append("angular_velocity")
                self.counts["clipped:angular_velocity"] += 1
        if ee_position is not None:
            p = np.asarray(ee_position, dtype=np.float64).reshape(3)
            if not np.all(np.isfinite(p)):
                self.counts["rejected:nonfinite_state"] += 1
                return Decision(None, ["rejected: NaN or Inf in the end-effector position"])
            # the displacement if this command acts for its whole horizon (>= one tick)
            reach = max(1.0, c.command_horizon_s / c.control_period_s)
            delta = a[:3] * c.max_translation_m * reach
            target = p + delta
            safe_target = np.clip(target, self.ws_low, self.ws_high)
            if np.any(safe_target != target):
                # keep only the part of the motion that stays inside (or moves back into) the box
                new_delta = safe_target - p
                outside_low, outside_high = p < self.ws_low, p > self.ws_high
                # already outside: allow motion back towards the box, forbid going further out
                new_delta = np.where(outside_low, np.maximum(delta, 0.0), new_delta)
                new_delta = np.where(outside_high, np.minimum(delta, 0.0), new_delta)
                a = a.copy()
                a[:3] = new_delta / (c.max_translation_m * reach)
                reasons.append("workspace")
                self.counts["clipped:workspace"] += 1
        self._last_action = a
        if reasons:
            self.counts["modified"] += 1
        return Decision(a, reasons)
