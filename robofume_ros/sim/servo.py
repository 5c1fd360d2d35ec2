"""MoveIt Servo's twist semantics for the stand-in driver (pure Python, no rclpy).

Servo integrates the newest twist command at its own (fast) rate until a newer one arrives or the
command is older than `incoming_command_timeout`: the motion a twist causes is its velocity times
how long it stayed the newest, not one control tick per message. `TwistIntegrator` reproduces that
with exact piecewise-constant integration, so a driver ticking at any rate (or late, on a loaded
machine) moves the arm by what Servo would have: a twist is never applied twice because two driver
ticks fell between two commands, and never skipped because two commands fell inside one tick.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class TwistIntegrator:
    def __init__(self, timeout_s: float, dim: int = 3):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.dim = dim
        self._events: list = []  # (receipt time, velocity), in time order
        self._t: Optional[float] = None  # integrated up to here

    def command(self, velocity, now: float) -> None:
        """A twist received at `now` (monotonic seconds); it replaces the previous one from then on."""
        v = np.asarray(velocity, dtype=np.float64).reshape(self.dim)
        if not np.all(np.isfinite(v)):
            raise ValueError("twist with NaN/Inf")
        if self._t is None:
            self._t = now
        self._events.append((float(now), v))

    def clear(self) -> None:
        """Forget every twist (another interface took over, or the driver stopped)."""
        self._events.clear()
        self._t = None

    def active(self, now: float) -> bool:
        """Whether a twist is still being executed at `now` (newest one younger than the timeout)."""
        return bool(self._events) and now - self._events[-1][0] <= self.timeout_s

    def advance(self, now: float) -> np.ndarray:
        """The displacement from the last call up to `now`: each twist from its receipt until the
        next one's receipt or its timeout, whichever comes first."""
        out = np.zeros(self.dim)
        if self._t is None:
            return out
        t0, ev = self._t, self._events
        for i, (t_i, v) in enumerate(ev):
            end = min(ev[i + 1][0] if i + 1 < len(ev) else now, t_i + self.timeout_s, now)
            start = max(t_i, t0)
            if end > start:
                out += v * (end - start)
        # keep only the newest twist that is still in force at `now` (it carries into the next call)
        self._events = [e for e in ev[-1:] if now - e[0] <= self.timeout_s]
        self._t = now if self._events else None
        return out
