"""The learner's training loop, in a background thread: Cal-QL updates on a 50/50 offline/online
mix at a fixed update-to-data ratio, new policy weights every `weights_every` updates, a learner
checkpoint every `checkpoint_every` updates, and a status file with rates for progress displays.

Pure Python + torch (no ROS): the learner node feeds it closed episodes and environment step
counts and publishes what `on_weights` hands back.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


@dataclass
class TrainerConfig:
    utd_ratio: float = 1.0  # gradient updates per environment step
    min_online_transitions: int = 1  # no updates before this many online transitions arrived (>= 1)
    weights_every: int = 50  # export policy weights every N updates
    checkpoint_every: int = 500  # learner checkpoint every N updates
    budget_steps: int = 0  # environment steps after which training stops (0 = never)
    metrics_every: int = 25  # CSV metrics row every N updates


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file unique to this thread, then rename: concurrent writers never clash."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class OnlineTrainer:
    def __init__(
        self,
        learner,
        cfg: TrainerConfig,
        run_dir: Path,
        on_weights: Optional[Callable[[int, bytes, str, Path], None]] = None,
        log=print,
    ):
        self.L, self.cfg, self.dir = learner, cfg, Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.on_weights, self.log = on_weights, log
        self.env_steps = 0
        self.episodes = 0
        self.relabelled = 0  # stored episodes whose outcome a person changed
        self.successes = {}
        self.lock = threading.Lock()  # guards the online store against concurrent add/sample
        self._incoming: deque = deque()  # episodes handed over while an update held the lock
        self._io_lock = threading.RLock()  # status/progress files are written from both threads
        self._stop = threading.Event()
        self._paused = threading.Event()  # no updates while set (the learner node is inactive)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="learner-train", daemon=True)
        self.t0 = time.monotonic()
        self.updates_at_start = learner.step
        self.last_metrics: dict = {}
        self.error: Optional[str] = None
        self._csv = open(self.dir / "metrics.csv", "a")
        self._csv_header = None
        self._load_progress()

    # --- inputs from the node ----------------------------------------------------------------
    def add_episode(self, ep) -> None:
        """Into the online buffer now if no update holds it, else at the training thread's next
        turn (before its next update). Never waits for the loop: it takes the lock again right
        after each update, so a caller blocking on it got in only once every few updates, and a
        restart's backfill closes hundreds of episodes in one go."""
        if self.lock.acquire(blocking=False):
            try:
                self._take_incoming()
                self.L.add_episode(ep)
            finally:
                self.lock.release()
        else:
            self._incoming.append(ep)
            if not self.thread.is_alive():  # nobody else will take it: wait for the holder
                with self.lock:
                    self._take_incoming()
        self.episodes += 1
        key = f"{ep.task}"
        s = self.successes.setdefault(key, [0, 0])
        s[0] += int(ep.success)
        s[1] += 1
        self._save_progress()

    def _take_incoming(self) -> None:
        """Episodes handed over meanwhile into the buffer, in order (the lock held)."""
        while self._incoming:
            self.L.add_episode(self._incoming.popleft())

    def relabel(self, episode_index: int, rewards, terminals, success: bool, robot: str = "") -> bool:
        """A stored online episode (of `robot`, in a fleet) got a new outcome (a person's override):
        the replay buffer's labels follow. False when the buffer does not hold it."""
        with self.lock:
            self._take_incoming()
            done = self.L.online.relabel(episode_index, rewards, terminals, robot)
        if done:
            self.relabelled += 1
        return done

    def env_step(self, n: int = 1) -> None:
        self.env_steps += n

    # --- the loop -----------------------------------------------------------------------------
    def start(self) -> "OnlineTrainer":
        """Start training, or resume it after pause()."""
        self._paused.clear()
        if self.thread.ident is None:  # never started
            self.thread.start()
        return self

    def pause(self) -> None:
        """No more updates until start(); the one in progress finishes. Data still arrives."""
        self._paused.set()

    def stop(self) -> None:
        self._stop.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=30)
        self.checkpoint()
        self._csv.close()

    def _target_updates(self) -> int:
        return self.updates_at_start + int(self.cfg.utd_ratio * self._steps_since_start())

    def trained_through(self) -> Optional[int]:
        """How many environment steps (counted as env_step() counts them) the updates made so far
        cover at the configured UTD ratio: the pace of a simulator in sim time, which waits until
        the steps it made are covered. None when it holds nobody: not training yet for lack of
        online data, paused, finished, failed, or utd_ratio 0."""
        if (
            self.cfg.utd_ratio <= 0
            or self._paused.is_set()
            or self.done.is_set()
            or self.error
            or len(self.L.online) < max(1, self.cfg.min_online_transitions)
        ):
            return None
        # the most steps whose owed updates (int(utd * steps), as the loop counts them) are made
        made = self.L.step - self.updates_at_start
        covered = int((made + 1) / self.cfg.utd_ratio - 1e-9)
        return self._env_steps_at_start + min(self._steps_since_start(), covered)

    def _steps_since_start(self) -> int:
        return self.env_steps - self._env_steps_at_start

    def _run(self) -> None:
        try:
            self.export_weights()
            while not self._stop.is_set():
                if self._incoming:
                    with self.lock:
                        self._take_incoming()
                if self.cfg.budget_steps and self.env_steps >= self.cfg.budget_steps:
                    self.finish()
                    return
                if (
                    self._paused.is_set()
                    or len(self.L.online) < max(1, self.cfg.min_online_transitions)
                    or self.L.step >= self._target_updates()
                ):
                    time.sleep(0.01)
                    continue
                with self.lock:
                    m = self.L.update()
                self._after_update(m)
        except Exception as e:  # noqa: BLE001 - surfaced through status.json and the node's log
            import traceback

            self.error = f"{type(e).__name__}: {e}"
            self.log(f"training stopped: {traceback.format_exc()}")
            self._write_status()

    def _after_update(self, m: dict) -> None:
        step = self.L.step
        if step % self.cfg.metrics_every == 0:
            self.last_metrics = {k: float(v) for k, v in m.items()}
            row = {
                "update": step,
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "time_s": round(time.monotonic() - self.t0, 2),
                **self.last_metrics,
            }
            if self._csv_header is None:
                self._csv_header = list(row)
                if self._csv.tell() == 0:
                    self._csv.write(",".join(self._csv_header) + "\n")
            self._csv.write(",".join(str(row.get(k, "")) for k in self._csv_header) + "\n")
            self._csv.flush()
            self._write_status()
        if step % self.cfg.weights_every == 0:
            self.export_weights()
        if step % self.cfg.checkpoint_every == 0:
            self.checkpoint()

    def export_weights(self) -> None:
        blob = self.L.export_policy()
        path = self.dir / "policy_latest.pt"
        atomic_write_bytes(path, blob)
        if self.on_weights is not None:
            self.on_weights(self.L.step, blob, hashlib.sha256(blob).hexdigest(), path)

    def checkpoint(self) -> None:
        with self.lock:
            self._take_incoming()
            tmp = self.dir / "learner.pt.tmp"
            self.L.save(tmp)
            os.replace(tmp, self.dir / "learner.pt")
        self._save_progress()

    def finish(self) -> None:
        self.export_weights()
        self.checkpoint()
        self.done.set()
        self._write_status()
        self.log(f"budget of {self.cfg.budget_steps} environment steps reached after {self.L.step} updates")

    # --- progress -----------------------------------------------------------------------------
    def status(self) -> dict:
        el = max(1e-6, time.monotonic() - self.t0)
        return {
            "env_steps": self.env_steps,
            "updates": self.L.step,
            "episodes": self.episodes,
            "successes": self.successes,
            "relabelled": self.relabelled,
            "online_transitions": len(self.L.online),
            "offline_transitions": len(self.L.offline),
            "updates_per_s": (self.L.step - self.updates_at_start) / el,
            "env_steps_per_s": self._steps_since_start() / el,
            "done": self.done.is_set(),
            "budget_steps": self.cfg.budget_steps,
            "error": self.error,
            "metrics": self.last_metrics,
        }

    def _write_status(self) -> None:
        with self._io_lock:
            atomic_write_bytes(self.dir / "status.json", json.dumps(self.status(), indent=1).encode())

    def _save_progress(self) -> None:
        with self._io_lock:
            atomic_write_bytes(
                self.dir / "progress.json",
                json.dumps(
                    {"env_steps": self.env_steps, "episodes": self.episodes, "successes": self.successes}
                ).encode(),
            )
        self._write_status()

    def _load_progress(self) -> None:
        p = self.dir / "progress.json"
        if p.exists():
            d = json.loads(p.read_text())
            self.env_steps, self.episodes = d["env_steps"], d["episodes"]
            self.successes = d["successes"]
        self._env_steps_at_start = self.env_steps
