"""Builds training episodes from the robot's topic stream, writing every step to disk first.

The stream: observations (image, proprio, instruction, episode index), the command answering each
observation (same stamp), the reward model's verdicts, and task-phase switches. Where a person
drove (teleop intervention), the robot side reports what it executed for that observation, and
that is the step's action, whichever of it and the policy's command arrives first. An episode is all
observations with one episode index; transition t is (o_t, a_t, o_{t+1}). When the switcher moves
on, the episode closes: labelled the RoboFuME way (reward 0 and terminal on the last transition when
it ended by success, -1 everywhere else), written atomically to the online dataset, and only then
handed to the learner.

Pairing: the messages of one control step arrive on separate topics in any order. A command, a
reward verdict or a ground-truth label that arrives before its observation waits for it (up to
`max_pending` stamps); only one that never meets its observation is dropped (and counted).

Outcomes: an episode's outcome is the task switcher's verdict. `close_before` takes the verdicts
the switcher still remembers (`TaskPhase.recent_episodes` / `recent_successes`), so an episode
that ended while the learner was down is labelled by what actually happened, not by the one
verdict in the newest phase message.

Crash safety: every step is appended to a journal (length-prefixed records, flushed) as it
arrives; a restarted learner replays the journal and continues the open episodes, so nothing it
had received is lost. The journal is cleared once an episode is safely in the dataset.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from robofume_ros.data.episode import Episode

_LEN = struct.Struct("<I")
# a /task_phase message closes its episodes once an observation of a later episode arrived (the
# message can overtake their last observations on its own topic), or after this many seconds
PHASE_WAIT_S = 2.0
# the journal is rewritten with only the open episodes once it holds this much and has doubled
COMPACT_MIN_BYTES = 8 << 20


@dataclass
class _Step:
    stamp: int
    image: np.ndarray
    proprio: np.ndarray
    action: Optional[np.ndarray] = None
    probability: float = float("nan")
    reward_success: Optional[bool] = None
    success_gt: Optional[bool] = None
    intervention: bool = False  # the action is what the arm executed while a person drove
    features: Optional[np.ndarray] = None  # the frame's frozen-encoder features, when the camera sent them


@dataclass
class _Open:
    index: int
    instruction: str
    task: str
    steps: list = field(default_factory=list)
    by_stamp: dict = field(default_factory=dict)


class Journal:
    """Append-only record file; `replay()` returns every complete record (a torn tail is ignored)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")

    def append(self, record: tuple) -> None:
        data = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
        self._f.write(_LEN.pack(len(data)) + data)
        self._f.flush()

    def sync(self) -> None:
        os.fsync(self._f.fileno())

    def size(self) -> int:
        """Bytes in the journal file now."""
        return os.fstat(self._f.fileno()).st_size

    def replay(self) -> list:
        out = []
        raw = self.path.read_bytes() if self.path.exists() else b""
        i = 0
        while i + _LEN.size <= len(raw):
            (n,) = _LEN.unpack_from(raw, i)
            if i + _LEN.size + n > len(raw):
                break  # torn last record from a kill mid-write
            try:
                out.append(pickle.loads(raw[i + _LEN.size : i + _LEN.size + n]))
            except Exception:  # noqa: BLE001 - a corrupt record ends the usable journal
                break
            i += _LEN.size + n
        return out

    def rewrite(self, records: list) -> None:
        """Atomically replace the journal with `records` (what is still open)."""
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for r in records:
                data = pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL)
                f.write(_LEN.pack(len(data)) + data)
            f.flush()
            os.fsync(f.fileno())
        self._f.close()
        os.replace(tmp, self.path)
        self._f = open(self.path, "ab")

    def close(self) -> None:
        self._f.close()


class EpisodeStream:
    """Feed it the stream; it returns closed Episodes (already in the dataset on disk)."""

    def __init__(
        self, root: Path, action_dim: int, min_length: int = 1, writer=None, max_pending: int = 256, robot: str = ""
    ):
        from robofume_ros.data.dataset import DatasetWriter

        self.root = Path(root)
        self.action_dim = action_dim
        self.min_length = min_length
        # one robot of a fleet: its episodes carry provenance "robot" in the shared online dataset
        # (`writer`), its journal is its own
        self.robot = robot
        self.writer = writer or DatasetWriter(self.root / "online")
        self.journal = Journal(self.root / (f"journal_{robot}.bin" if robot else "journal.bin"))
        self.open: dict[int, _Open] = {}
        self.closed_indices: set = set()
        self.stored: dict[int, tuple[Path, bool]] = {}  # episode index -> (its folder, success) on disk
        self._seen: set = set()  # stamps of the open episodes' observations
        self.newest_stamp: Optional[int] = None  # of the newest observation received (or stored)
        self.newest_episode = -1  # the highest episode index an observation carried
        self.dropped: dict[str, int] = {}
        self.steps_received = 0
        self._replaying = False
        self._compacted_bytes = 0  # the journal's size right after its last rewrite
        # messages that arrived before their observation, by stamp: {"cmd": action, "iv": the action
        # is a person's executed one, "rew": (p, s), "gt": {task: ok}}
        self._early: dict[int, dict] = {}
        self.max_pending = max_pending

    # --- input ------------------------------------------------------------------------------
    def observation(
        self,
        stamp: int,
        episode: int,
        image: np.ndarray,
        proprio,
        instruction: str,
        task: str,
        backfill: bool = False,
        features: Optional[np.ndarray] = None,
    ) -> bool:
        """Add one observation; False when it was not new (a duplicate, or its episode is closed).
        `backfill`: a replay of what this learner missed, where repeats are expected (not drops).
        `features`: the frame's vision.FEATURE_ENCODER_ID features (the camera's), kept with it so
        that the learner does not run the encoder again; an episode keeps them when every step has them."""
        if stamp in self._seen:
            if not backfill:
                self._drop("duplicate_observation")
            return False
        self._log(
            (
                "obs",
                stamp,
                episode,
                np.ascontiguousarray(image, dtype=np.uint8),
                np.asarray(proprio, np.float32),
                instruction,
                task,
                None if features is None else np.asarray(features, np.float32),
            )
        )
        if episode in self.closed_indices:
            if not backfill:
                self._drop("observation_after_close")
            return False
        ep = self.open.get(episode)
        if ep is None:
            ep = self.open[episode] = _Open(episode, instruction, task)
        step = _Step(stamp, np.asarray(image, np.uint8), np.asarray(proprio, np.float32))
        if features is not None:
            step.features = np.asarray(features, np.float32)
        early = self._early.pop(stamp, None)
        if early is not None:
            if "cmd" in early:
                step.action, step.intervention = early["cmd"], bool(early.get("iv"))
            if "rew" in early:
                step.probability, step.reward_success = early["rew"]
            if task in early.get("gt", {}):
                step.success_gt = early["gt"][task]
        ep.steps.append(step)
        ep.by_stamp[stamp] = step
        self._seen.add(stamp)
        self.newest_stamp = max(self.newest_stamp or 0, stamp)
        self.newest_episode = max(self.newest_episode, episode)
        self.steps_received += 1
        return True

    def _step_at(self, stamp: int) -> Optional[tuple[_Open, _Step]]:
        for ep in self.open.values():
            step = ep.by_stamp.get(stamp)
            if step is not None:
                return ep, step
        return None

    def _hold(self, stamp: int, kind: str, value, backfill: bool = False) -> None:
        """Keep what arrived before its observation; the oldest stamp goes when too many wait
        (a command that never met its observation is a drop, unless it was a backfill's repeat)."""
        entry = self._early.setdefault(stamp, {})
        if kind == "cmd" and entry.get("iv"):
            return  # a person's executed action already waits here: the policy's does not replace it
        if kind == "icmd":
            kind, entry["iv"] = "cmd", True
        if kind == "gt":
            entry.setdefault("gt", {}).update(value)
        else:
            entry[kind] = value
        if not backfill:
            entry["live"] = True
        while len(self._early) > self.max_pending:
            old = self._early.pop(next(iter(self._early)))
            if "cmd" in old and old.get("live"):
                self._drop("command_without_observation")

    def command(self, stamp: int, action, backfill: bool = False, intervention: bool = False) -> None:
        """The action of the observation at `stamp`: the policy's command, or (`intervention`) what
        the arm executed while a person drove, which wins whichever of the two arrives first."""
        a = np.asarray(action, np.float32)
        found = self._step_at(stamp)
        if found is not None:
            step = found[1]
            if step.intervention and not intervention:
                return  # the policy's command for a step a person drove
            if backfill and step.action is not None and step.intervention == intervention:
                return  # a repeat of what arrived live
        self._log(("icmd" if intervention else "cmd", stamp, a))
        if found is not None:
            found[1].action, found[1].intervention = a, found[1].intervention or intervention
        else:
            self._hold(stamp, "icmd" if intervention else "cmd", a, backfill)

    def reward(self, stamp: int, probability: float, success: Optional[bool] = None, backfill: bool = False) -> None:
        found = self._step_at(stamp)
        if found is not None and backfill and not np.isnan(found[1].probability):
            return
        self._log(("rew", stamp, float(probability), success))
        if found is not None:
            found[1].probability, found[1].reward_success = float(probability), success
        else:
            self._hold(stamp, "rew", (float(probability), success), backfill)

    def ground_truth(self, stamp: int, task: str, success: bool) -> None:
        """Simulator ground truth of `task` at `stamp`, stored to evaluate the reward only (never a
        reward). It usually arrives before the observation of the same frame, so it is held."""
        self._log(("gt", stamp, task, bool(success)))
        found = self._step_at(stamp)
        if found is not None:
            if found[0].task == task:
                found[1].success_gt = bool(success)
        else:
            self._hold(stamp, "gt", {task: bool(success)})

    def close_before(self, new_episode: int, success: bool, outcomes: Optional[dict] = None) -> list[Episode]:
        """The switcher started `new_episode`: every open episode before it is finished. Its
        outcome is `outcomes[index]` when the switcher reported it (episode index -> success),
        else `success` for the episode just before `new_episode` and failure for older ones.
        Returns the episodes, already written to disk."""
        outcomes = {int(k): bool(v) for k, v in (outcomes or {}).items()}
        self._log(("close", new_episode, bool(success), outcomes))
        out = []
        for idx in sorted(i for i in self.open if i < new_episode):
            ep = self.open.pop(idx)
            self.closed_indices.add(idx)
            self._seen.difference_update(ep.by_stamp)
            ok = outcomes[idx] if idx in outcomes else (success and idx == new_episode - 1)
            e = self._finish(ep, ok)
            if e is not None:
                out.append(e)
        if out and not self._replaying and self.journal.size() > max(2 * self._compacted_bytes, COMPACT_MIN_BYTES):
            self._compact()
        return out

    # --- internals ---------------------------------------------------------------------------
    def _finish(self, ep: _Open, success: bool) -> Optional[Episode]:
        steps = sorted(ep.steps, key=lambda st: st.stamp)  # arrival order may differ (replay, restart)
        # the last observation needs no command (it only closes the chain); a missing command
        # inside the episode breaks the chain: keep the longest clean tail after it
        missing = [i for i, st in enumerate(steps[:-1]) if st.action is None]
        if missing:
            cut = missing[-1] + 1
            self._drop("command_missing", cut)
            steps = steps[cut:]
        if len(steps) - 1 < self.min_length:
            if len(steps) > 1 or missing:
                self._drop("too_short")
            return None
        T = len(steps) - 1
        rewards = np.full(T, -1.0, np.float32)
        terminals = np.zeros(T, bool)
        if success:
            rewards[-1], terminals[-1] = 0.0, True
        gt = [s.success_gt for s in steps]
        episode = Episode(
            images=np.stack([s.image for s in steps]),
            proprio=np.stack([s.proprio for s in steps]),
            actions=np.stack([s.action for s in steps[:-1]]).astype(np.float32),
            rewards=rewards,
            terminals=terminals,
            instruction=ep.instruction,
            task=ep.task,
            source="online",
            success=bool(success),
            provenance={
                "episode_index": ep.index,
                "t_start_ns": steps[0].stamp,
                "t_end_ns": steps[-1].stamp,
                "reward_probability": [None if np.isnan(s.probability) else s.probability for s in steps],
                "reward_success": [s.reward_success for s in steps],
                "interventions": int(sum(s.intervention for s in steps[:-1])),
                **({"robot": self.robot} if self.robot else {}),
            },
            success_gt=np.array(gt, bool) if all(g is not None for g in gt) else None,
        )
        if all(s.features is not None for s in steps):  # the camera's: no encoder pass for the learner
            from robofume_ros.vision import FEATURE_ENCODER_ID

            episode.features = np.stack([s.features for s in steps])
            episode.feature_encoder = FEATURE_ENCODER_ID
        path = self.writer.append(episode)  # on disk (atomic) before anyone trains on it
        self.stored[ep.index] = (path, bool(success))
        return episode

    def missing_steps(self, before_episode: int, pause_ns: int) -> tuple[Optional[int], list]:
        """(stamp of the earliest hole, the open episodes before `before_episode` that have one):
        what closing them now would cut or join wrongly. A hole is a step without its command, or
        a step the next observation follows more than `pause_ns` later (observations missing in
        between: one delivered late past a restart's backfill; chaining across them would make a
        transition the robot never made). An episode's last observation needs no command; nor does
        its first when the next one came more than `pause_ns` later (a frame from before the arm
        went home: the robot never acted on it)."""
        first, episodes = None, []
        for idx, ep in self.open.items():
            if idx >= before_episode or len(ep.steps) < 2:
                continue
            steps = sorted(ep.steps, key=lambda st: st.stamp)
            head = 1 if steps[1].stamp - steps[0].stamp > pause_ns else 0
            holes = [
                st.stamp
                for st, nxt in zip(steps[head:-1], steps[head + 1 :])
                if st.action is None or nxt.stamp - st.stamp > pause_ns
            ]
            if holes:
                episodes.append(idx)
                first = holes[0] if first is None else min(first, holes[0])
        return first, sorted(episodes)

    def backfill_since(self) -> int:
        """Where a backfill must start so that no step of an open episode (restored from the
        journal, maybe with holes) or after the newest stored one is missing: the oldest step of
        the open episodes, else the newest observation received."""
        starts = [min(st.stamp for st in ep.steps) for ep in self.open.values() if ep.steps]
        return min(starts) if starts else int(self.newest_stamp or 0)

    # --- a person's verdicts, after the episode was stored --------------------------------------
    def stored_success(self, index: int) -> Optional[bool]:
        """The outcome the stored episode `index` has on disk (None: not stored)."""
        entry = self.stored.get(int(index))
        return None if entry is None else entry[1]

    def relabel(self, index: int, success: bool) -> tuple[np.ndarray, np.ndarray]:
        """Give the stored episode `index` a new outcome (the switcher's verdict changed: a
        person's UNDO): its rewards, terminals and meta.json are rewritten on disk, each file
        atomically. Returns the new (rewards, terminals)."""
        import json

        path, _ = self.stored[int(index)]
        T = len(np.load(path / "rewards.npy", mmap_mode="r"))
        rewards = np.full(T, -1.0, np.float32)
        terminals = np.zeros(T, bool)
        if success:
            rewards[-1], terminals[-1] = 0.0, True
        meta = json.loads((path / "meta.json").read_text())
        meta["success"], meta["return"] = bool(success), float(rewards.sum())
        meta.setdefault("provenance", {})["relabelled"] = "override"
        for name, data in (("rewards.npy", rewards), ("terminals.npy", terminals)):
            tmp = path / f".{name}.tmp"
            with open(tmp, "wb") as f:
                np.save(f, data)
            os.replace(tmp, path / name)
        tmp = path / ".meta.json.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, path / "meta.json")
        self.stored[int(index)] = (path, bool(success))
        return rewards, terminals

    def _drop(self, reason: str, n: int = 1) -> None:
        if not self._replaying:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def _log(self, record: tuple) -> None:
        if not self._replaying:
            self.journal.append(record)

    def _compact(self) -> None:
        """Rewrite the journal with only the still-open episodes, from memory (no re-read). Closing
        calls it once the journal has doubled since its last rewrite (and holds COMPACT_MIN_BYTES):
        a rewrite at every close cost each close the whole open set, so closing the hundreds of
        episodes a restart's backfill brings took 0.7 s each on a loaded machine. What a journal
        holds of stored episodes, recovery skips."""
        keep = []
        for ep in self.open.values():
            for st in ep.steps:
                keep.append(("obs", st.stamp, ep.index, st.image, st.proprio, ep.instruction, ep.task, st.features))
                if st.action is not None:
                    keep.append(("icmd" if st.intervention else "cmd", st.stamp, st.action))
                if not np.isnan(st.probability):
                    keep.append(("rew", st.stamp, st.probability, st.reward_success))
                if st.success_gt is not None:
                    keep.append(("gt", st.stamp, ep.task, st.success_gt))
        for stamp, early in self._early.items():  # still waiting for their observation
            if "cmd" in early:
                keep.append(("icmd" if early.get("iv") else "cmd", stamp, early["cmd"]))
            if "rew" in early:
                keep.append(("rew", stamp, *early["rew"]))
            for task, ok in early.get("gt", {}).items():
                keep.append(("gt", stamp, task, ok))
        self.journal.rewrite(keep)
        self._compacted_bytes = self.journal.size()

    def recover(self) -> tuple[list[Episode], int]:
        """Replay the journal of a previous (killed) run. Episodes that had closed but were not yet
        in the dataset are finished now (with their recorded outcome) and returned; the rest
        become open episodes again. Returns (finished episodes, steps still open)."""
        records = self.journal.replay()
        on_disk = self._dataset_provenance()
        for path, meta in on_disk:
            prov = meta.get("provenance", {})
            index = prov.get("episode_index")
            if index is not None:
                self.stored[int(index)] = (path, bool(meta.get("success")))
            if prov.get("t_end_ns") is not None:
                self.newest_stamp = max(self.newest_stamp or 0, int(prov["t_end_ns"]))
        done = {int(m.get("provenance", {}).get("episode_index", -1)) for _, m in on_disk}
        self.closed_indices |= done
        finished = []
        self._replaying = True
        try:
            for r in records:
                kind = r[0]
                if kind == "obs":  # (journals before the features: 7 fields)
                    if r[2] not in done:
                        self.observation(*r[1:7], features=r[7] if len(r) > 7 else None)
                elif kind == "cmd":
                    self.command(*r[1:])
                elif kind == "icmd":
                    self.command(*r[1:], intervention=True)
                elif kind == "rew":
                    self.reward(*r[1:])
                elif kind == "gt":
                    self.ground_truth(*r[1:])
                elif kind == "close":
                    finished += self.close_before(*r[1:])
        finally:
            self._replaying = False
        self._compact()
        return finished, sum(len(ep.steps) for ep in self.open.values())

    def _dataset_provenance(self) -> list[tuple[Path, dict]]:
        """(folder, meta.json) of every online episode of this stream's robot on disk."""
        from robofume_ros.data.dataset import episode_dirs
        import json

        out = []
        if (self.root / "online").exists():
            for d in episode_dirs(self.root / "online"):
                try:
                    meta = json.loads((d / "meta.json").read_text())
                except (OSError, ValueError):
                    continue
                if meta.get("provenance", {}).get("robot", "") == self.robot:
                    out.append((d, meta))
        return out

    def close(self) -> None:
        self.journal.sync()
        self.journal.close()
