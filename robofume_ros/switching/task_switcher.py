"""The reset-free forward/backward state machine (RoboFuME Sec. IV): pure Python, no ROS.

The robot alternates a forward task (e.g. open the drawer) and its backward/reset task (close
it). An episode ends when the success signal holds for `success_frames` consecutive steps, or
when its task's time limit passes (timeout: `max_episode_steps`, or `backward_max_episode_steps`
for the backward task when set; a reset is usually shorter than the task); then the other task
becomes active. The scene is never reset. After `help_after_timeouts` timeouts in a row the
machine pauses and asks for help; it resumes on `resume()`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from robofume_ros.interfaces import TASK_PHASE, msg_constants

# the phases and switch reasons of msg/TaskPhase.msg (one set of codes)
FORWARD, BACKWARD = TASK_PHASE["FORWARD"], TASK_PHASE["BACKWARD"]
PHASE_NAMES = {FORWARD: "forward", BACKWARD: "backward"}
REASON_START, REASON_SUCCESS, REASON_TIMEOUT, REASON_FORCED, REASON_RESUMED = (
    TASK_PHASE[k] for k in ("REASON_START", "REASON_SUCCESS", "REASON_TIMEOUT", "REASON_FORCED", "REASON_RESUMED")
)
REASON_NAMES = {
    REASON_START: "start",
    REASON_SUCCESS: "success",
    REASON_TIMEOUT: "timeout",
    REASON_FORCED: "forced",
    REASON_RESUMED: "resumed",
}

RECENT_OUTCOMES = 64  # outcomes kept for TaskPhase.recent_* (6+ minutes of 5 s episodes)
# a person's verdicts (msg/RewardOverride.msg)
_OVR = msg_constants("RewardOverride")
OVERRIDE_SUCCESS, OVERRIDE_NOT_SUCCESS, OVERRIDE_UNDO = _OVR["SUCCESS"], _OVR["NOT_SUCCESS"], _OVR["UNDO"]
OVERRIDE_NAMES = {OVERRIDE_SUCCESS: "success", OVERRIDE_NOT_SUCCESS: "not success", OVERRIDE_UNDO: "undo"}


class OverrideError(ValueError):
    """An override that cannot apply (another episode, an unknown verdict, nothing to undo)."""


@dataclass
class TaskSpec:
    task: str
    instruction: str


@dataclass
class SwitchEvent:
    """Emitted when an episode ends."""

    ended_phase: int
    ended_episode: int
    reason: int
    steps: int
    new_phase: int
    new_episode: int


@dataclass
class TaskSwitcher:
    forward: TaskSpec
    backward: TaskSpec
    max_episode_steps: int = 200
    success_frames: int = 1
    backward_max_episode_steps: int = 0  # time limit of backward episodes (0: max_episode_steps)
    help_after_timeouts: int = 3
    phase: int = FORWARD
    episode_index: int = 0
    steps_in_episode: int = 0
    last_reason: int = REASON_START
    paused: bool = False
    help_requested: bool = False
    successes: dict = field(default_factory=lambda: {FORWARD: 0, BACKWARD: 0})
    timeouts: dict = field(default_factory=lambda: {FORWARD: 0, BACKWARD: 0})
    consecutive_timeouts: int = 0
    # (episode index, ended by success, phase) of the last episodes that ended, oldest first: a
    # learner that was down while they ended labels them from this (TaskPhase.recent_*)
    outcomes: deque = field(default_factory=lambda: deque(maxlen=RECENT_OUTCOMES))
    overrides: int = 0  # a person's verdicts applied
    vetoed: bool = False  # NOT_SUCCESS: the reward's success is ignored until this episode ends
    _consecutive_success: int = 0

    def __post_init__(self):
        if self.max_episode_steps < 1:
            raise ValueError("max_episode_steps must be >= 1")
        if self.backward_max_episode_steps < 0:
            raise ValueError("backward_max_episode_steps must be >= 0 (0: same as max_episode_steps)")
        if self.success_frames < 1:
            raise ValueError("success_frames must be >= 1")

    def time_limit(self, phase: int) -> int:
        """Control ticks before an episode of `phase` times out."""
        if phase == BACKWARD and self.backward_max_episode_steps > 0:
            return self.backward_max_episode_steps
        return self.max_episode_steps

    @property
    def active(self) -> TaskSpec:
        return self.forward if self.phase == FORWARD else self.backward

    def step(self, success: Optional[bool]) -> Optional[SwitchEvent]:
        """Advance one control tick. `success` is the reward's verdict for the newest frame of
        the active task (None when no verdict arrived this tick). Returns a SwitchEvent when the
        episode ended on this tick."""
        if self.paused:
            return None
        self.steps_in_episode += 1
        if success is True and self.vetoed:
            success = False  # a person said this episode has not succeeded
        if success is True:
            self._consecutive_success += 1
        elif success is False:
            self._consecutive_success = 0
        if self._consecutive_success >= self.success_frames:
            self.successes[self.phase] += 1
            self.consecutive_timeouts = 0
            return self._switch(REASON_SUCCESS)
        if self.steps_in_episode >= self.time_limit(self.phase):
            self.timeouts[self.phase] += 1
            self.consecutive_timeouts += 1
            ev = self._switch(REASON_TIMEOUT)
            if self.help_after_timeouts > 0 and self.consecutive_timeouts >= self.help_after_timeouts:
                self.paused = True
                self.help_requested = True
            return ev
        return None

    def force_switch(self) -> SwitchEvent:
        return self._switch(REASON_FORCED)

    def override(self, verdict: int, episode_index: int) -> Optional[SwitchEvent]:
        """Apply a person's verdict (RewardOverride): SUCCESS ends the active episode as a success
        now, NOT_SUCCESS ignores the reward's success for the rest of it, UNDO flips the outcome of
        the episode that ended last. `episode_index` must name that episode; anything else raises
        OverrideError and changes nothing. Returns the SwitchEvent when the episode ended."""
        if verdict not in OVERRIDE_NAMES:
            raise OverrideError(f"unknown override verdict {verdict} (SUCCESS=1, NOT_SUCCESS=2, UNDO=3)")
        if verdict == OVERRIDE_UNDO:
            if not self.outcomes:
                raise OverrideError("undo: no episode has ended yet")
            ep, ok, phase = self.outcomes[-1]
            if episode_index != ep:
                raise OverrideError(f"undo names episode {episode_index}, but the episode that ended last is {ep}")
            self.outcomes[-1] = (ep, not ok, phase)
            self.successes[phase] += -1 if ok else 1
            self.overrides += 1
            return None
        if episode_index != self.episode_index:
            raise OverrideError(
                f"{OVERRIDE_NAMES[verdict]} names episode {episode_index}, but the active episode is {self.episode_index}"
            )
        if self.paused:
            raise OverrideError(f"{OVERRIDE_NAMES[verdict]}: the switcher is paused (resume it first)")
        self.overrides += 1
        if verdict == OVERRIDE_NOT_SUCCESS:
            self.vetoed = True
            self._consecutive_success = 0
            return None
        self.successes[self.phase] += 1
        self.consecutive_timeouts = 0
        return self._switch(REASON_SUCCESS)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        """Resume after a pause (e.g. a human fixed the scene); a new episode of the same task starts."""
        if self.paused:
            self.outcomes.append((self.episode_index, False, self.phase))
            self.vetoed = False
            self.paused = False
            self.help_requested = False
            self.consecutive_timeouts = 0
            self.episode_index += 1
            self.steps_in_episode = 0
            self._consecutive_success = 0
            self.last_reason = REASON_RESUMED

    def _switch(self, reason: int) -> SwitchEvent:
        ended_phase, ended_ep, steps = self.phase, self.episode_index, self.steps_in_episode
        self.outcomes.append((ended_ep, reason == REASON_SUCCESS, ended_phase))
        self.vetoed = False
        self.phase = BACKWARD if self.phase == FORWARD else FORWARD
        self.episode_index += 1
        self.steps_in_episode = 0
        self._consecutive_success = 0
        self.last_reason = reason
        return SwitchEvent(ended_phase, ended_ep, reason, steps, self.phase, self.episode_index)

    def summary(self) -> str:
        return (
            f"episode {self.episode_index} ({PHASE_NAMES[self.phase]}: {self.active.task}); "
            f"successes fwd {self.successes[FORWARD]} bwd {self.successes[BACKWARD]}; "
            f"timeouts fwd {self.timeouts[FORWARD]} bwd {self.timeouts[BACKWARD]}"
        )
