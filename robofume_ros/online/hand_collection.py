"""Demonstrations or failures a person gives through the running graph, kept in a dataset.

The teleop source of data collection (`teleop_node`'s `~/collect` action; the scripted source is
`data/generate.py` `collect()`): a person drives the arm (joystick or twist, `teleop:=true`, with
`policy:=none` or over a running policy) and the task switcher ends each episode as it always does
(the reward, the person's success / not-success buttons, the time limit). Fed the graph's stream
from the moment the goal was accepted, every episode the switcher closes is written to the dataset
when it is what the goal asks for:

  demos     an episode that ended in success, up to `episodes` of each direction (forward and
            backward in whatever order the person does them); labelled `target_demo`
  failures  an episode that did not, up to `episodes` in all; labelled `failure`

The episodes are built by the learner's own `EpisodeStream` (observation / command pairing, the
switcher's verdicts, a step journal written before anything is kept), so a demonstration by hand
has exactly the layout of an online episode; the steps a person drove carry what the arm executed.
Pure: no rclpy (the node feeds it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional

from robofume_ros.data.dataset import DatasetWriter, dataset_pair
from robofume_ros.data.episode import Episode
from robofume_ros.online.episode_stream import PHASE_WAIT_S, EpisodeStream

KINDS = ("demos", "failures")


class _Keep:
    """EpisodeStream's writer: appends only the episodes the collection keeps."""

    def __init__(self, collection: "HandCollection"):
        self.c = collection

    def append(self, episode: Episode) -> Optional[Path]:
        return self.c._offer(episode)


class HandCollection:
    """One collection goal. Feed it `observation`, `command`, `phase` (and `poll` now and then);
    `done` says when it has what it asked for; `finish()` records it (collect.json) and cleans up.
    `on_episode(task, kept, why)` is called for every episode the switcher closed."""

    def __init__(self, out, kind: str, episodes: int, action_dim: int, on_episode=None, source: str = "teleop"):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if int(episodes) < 1:
            raise ValueError("episodes must be at least 1 (per direction for demos, in all for failures)")
        self.out = Path(out)
        self.kind, self.n = kind, int(episodes)
        self.pair = dataset_pair(self.out) if (self.out / "generate.json").exists() else None
        self.pair_tasks = None
        if self.pair:
            from robofume_ros.sim import tasks

            self.pair_tasks = set(tasks.get_pair(self.pair).tasks)
        self.writer = DatasetWriter(self.out, fsync=True, extra_meta={"generator": f"robofume collect ({source})"})
        self.source = source
        self.on_episode = on_episode
        self.kept = {"forward": 0, "backward": 0}
        self.attempts = 0
        self.tasks: dict[str, str] = {}  # task -> direction, as the observations said
        self.error: Optional[str] = None  # why the collection cannot go on (foreign task)
        self._staging = Path(tempfile.mkdtemp(prefix=".robofume_collect_", dir=self.out))
        self.stream = EpisodeStream(self._staging, action_dim, min_length=1, writer=_Keep(self))
        self._phases: list = []  # (arrival time, episode_index, success, outcomes) not yet applied
        self._last_phase: Optional[int] = None
        self.t0 = time.time()

    # --- the stream -------------------------------------------------------------------------------
    def observation(self, stamp: int, episode: int, image, proprio, instruction: str, task: str, direction: str):
        if self.pair_tasks is not None and task not in self.pair_tasks:
            self.error = f"{self.out} holds pair {self.pair!r}, but the robot practises {task!r}: collect elsewhere"
            return
        self.tasks.setdefault(task, direction)
        self.stream.observation(stamp, episode, image, proprio, instruction, task)
        self.poll()

    def command(self, stamp: int, action, executed: bool) -> None:
        """The policy's command (`executed` False) or what the arm executed (a person drove)."""
        self.stream.command(stamp, action, intervention=executed)

    def phase(self, episode_index: int, success: bool, outcomes: dict, now: Optional[float] = None) -> None:
        """A /task_phase message: the switcher began `episode_index`, the previous one ended in
        `success` (`outcomes`: the verdicts it still remembers, a person's overrides included)."""
        if self._last_phase is None:
            self._last_phase = episode_index  # the episode running when the goal came: not a switch
            return
        if episode_index > self._last_phase:
            self._last_phase = episode_index
            self._phases.append((time.monotonic() if now is None else now, episode_index, success, dict(outcomes)))
        self.poll(now)

    def poll(self, now: Optional[float] = None) -> None:
        """Close what the phases ended, once their episodes' last observations are in (a phase
        message can overtake them on its own topic) or PHASE_WAIT_S passed."""
        now = time.monotonic() if now is None else now
        while self._phases:
            t, index, success, outcomes = self._phases[0]
            if self.stream.newest_episode < index and now - t < PHASE_WAIT_S:
                return
            self._phases.pop(0)
            self.stream.close_before(index, success, outcomes)

    @property
    def done(self) -> bool:
        if self.kind == "demos":
            return all(v >= self.n for v in self.kept.values())
        return self.episodes >= self.n

    @property
    def episodes(self) -> int:
        """Episodes kept so far."""
        return sum(self.kept.values())

    @property
    def total(self) -> int:
        return 2 * self.n if self.kind == "demos" else self.n

    # --- keeping --------------------------------------------------------------------------------
    def _offer(self, ep: Episode) -> Optional[Path]:
        direction = self.tasks.get(ep.task, "forward")
        self.attempts += 1
        if self.kind == "demos":
            keep, why = ep.success and self.kept[direction] < self.n, "no success"
            if ep.success and not keep:
                why = f"{self.n} {direction} demos already"
        else:
            keep, why = (not ep.success) and self.episodes < self.n, "it succeeded"
            if not ep.success and not keep:
                why = f"{self.n} failures already"
        path = None
        if keep:
            ep.source = "target_demo" if self.kind == "demos" else "failure"
            ep.provenance = {**ep.provenance, "collected_by": self.source, "direction": direction}
            path = self.writer.append(ep)  # on disk (atomic) before it counts
            self.kept[direction] += 1
            why = f"{ep.provenance.get('interventions', 0)} of {len(ep)} steps driven by a person"
        if self.on_episode is not None:
            self.on_episode(ep.task, keep, why)
        return path

    def finish(self, stopped: Optional[str] = None) -> dict:
        """Record the collection in <out>/collect.json (as the scripted collection does) and
        remove the step journal. Returns the record."""
        self.stream.close()
        shutil.rmtree(self._staging, ignore_errors=True)
        record = {
            "kind": self.kind,
            "source": self.source,
            "pair": self.pair,
            "tasks": self.tasks,
            "counts": {"episodes": self.episodes, "attempts": self.attempts, **self.kept},
            "dropped": dict(self.stream.dropped),
            "stopped": stopped,
            "seconds": time.time() - self.t0,
            "finished": time.time(),
        }
        log = self.out / "collect.json"
        runs = json.loads(log.read_text()) if log.exists() else []
        log.write_text(json.dumps(runs + [record], indent=1))
        return record
