"""A simulated person, for experiments in simulation with a person in the loop (HIL-SERL's human,
played by the simulator): it watches the simulator's verdict as a person at the robot watches the
scene, and gives at most `budget` reward overrides, as a person would with `robofume override`:

* **success now** when the active episode's task has been done for more than `reaction` control
  ticks and the episode still runs (the reward missed it; the debounced reward ends an episode
  within a few ticks of the task being done);
* **undo** when the task switcher ended an episode as a success that the simulator does not call
  done (the reward ended it too early).

The simulator's verdict never becomes a reward by itself: it reaches the graph only as these
verdicts, counted and limited like a person's, and only when an experiment asks for it
(`simulated_person:=N`, `robofume main --person N`). Pure module: no rclpy.
"""

from __future__ import annotations

from typing import Optional

from .adapt import REASON_SUCCESS, SUCCESS, UNDO


class SimulatedPerson:
    def __init__(self, budget: int, reaction: int = 5):
        self.budget, self.reaction = int(budget), int(reaction)
        self.used = 0
        self.given: list = []  # (verdict, episode) in order
        self.episode: Optional[int] = None
        self.task = ""
        self.done_ticks = 0
        self.pressed = False  # a "success now" for the active episode was given
        self.last_done: dict = {}  # task -> the simulator's newest verdict

    def phase(self, episode_index: int, task: str, reason: int) -> list:
        """A TaskPhase: the verdicts it prompts ((verdict, episode) pairs)."""
        episode_index = int(episode_index)
        if self.episode is not None and episode_index <= self.episode:
            return []  # the latched phase again, or an older one
        out = []
        if self.episode is not None and episode_index == self.episode + 1:
            ended_by_reward = reason == REASON_SUCCESS and not self.pressed
            if ended_by_reward and not self.last_done.get(self.task, False):
                out = self._give(UNDO, self.episode)
        self.episode, self.task, self.done_ticks, self.pressed = episode_index, task, 0, False
        return out

    def ground_truth(self, task: str, success: bool) -> list:
        """The simulator's verdict on one step: the verdicts it prompts."""
        self.last_done[task] = bool(success)
        if task != self.task or self.pressed or self.episode is None:
            return []
        self.done_ticks = self.done_ticks + 1 if success else 0
        if self.done_ticks > self.reaction:
            self.pressed = True
            return self._give(SUCCESS, self.episode)
        return []

    def _give(self, verdict: int, episode: int) -> list:
        if self.used >= self.budget:
            return []
        self.used += 1
        self.given.append((verdict, episode))
        return [(verdict, episode)]
