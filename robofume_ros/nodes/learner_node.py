"""Learner: online Cal-QL fine-tuning from the robot's topic stream, pushing weights to the policy.

in:  /observation, /robot/command, /reward, /task_phase (episode boundaries and outcomes, also
     a person's later overrides: a stored episode is relabelled). Never the simulator's
     ground truth: the report reads that from the recorded bag.
out: /policy/weights (PolicyWeights, latched: inline bytes or a checkpoint path + sha256),
     /learner/pace (LearnerPace, 20 Hz: the stamps of the robot's newest step its updates cover at
     its UTD ratio and of the newest it received; a lockstep simulator waits on them, so sim time
     runs as fast as learning allows)
files (run_dir/learner/): online/ (dataset of every online episode, written before training on
     it), journal.bin (every step as it arrives), learner.pt (checkpoint), policy_latest.pt,
     metrics.csv, status.json

Restart-safe: on start it resumes from learner.pt, reloads the online dataset and replays the
journal, so a killed learner loses nothing it had received.

A fleet (`robots: [robot1, robot2]`, `robofume launch finetune robots:=2`): one learner hears each
robot's topics under its namespace (/robot1/observation, ...), keeps one feed per robot (episode
stream, journal_<robot>.bin, backfill from that robot's recorder), stores every episode in the one
online dataset tagged with provenance "robot", trains one policy on all of them and pushes its
weights to every robot's /<robot>/policy/weights.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from std_msgs.msg import String

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, LearnerPace, Observation, PolicyWeights, Reward, TaskPhase
from robofume_ros.interfaces import backfill_topic
from robofume_ros.online.episode_stream import PHASE_WAIT_S
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import ERROR, OK, ask_for_shared_features, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import (
    FeaturesError,
    ImageError,
    command_to_action,
    image_to_rgb,
    shared_features,
    stamp_key,
)
from robofume_ros.vision import FEATURE_ENCODER_ID
from robofume_ros.rl.policy import ObservationMismatch, check_observation
from robofume_ros.safety.signing import sign_weights


@dataclass
class Params(ManagedParams):
    init_checkpoint: str = knob("", "pre-trained learner checkpoint (robofume pretrain output) to start from")
    offline_dataset: list = knob([], "dataset folders mixed into every batch (Cal-QL: 50/50 with online data)")
    run_dir: str = knob(graph.LEARNER_RUN_DIR, "run folder; the learner writes to <run_dir>/learner")
    budget_steps: int = knob(0, "environment steps after which training stops (0 = never)", range=(0, 10**9))
    utd_ratio: float = knob(1.0, "gradient updates per environment step", range=(0.0, 100.0))
    min_online_transitions: int = knob(1, "do not train before this many online transitions")
    weights_every: int = knob(50, "publish new policy weights every N updates")
    checkpoint_every: int = knob(250, "write a learner checkpoint every N updates")
    weights_transport: str = knob(
        "inline", "inline (bytes in the message, crosses machines) or file (path only)", choices=("inline", "file")
    )
    use_rnd: bool = knob(False, "add the OOO RND exploration bonus to online rewards")
    n_step: int = knob(
        10,
        "critics' TD horizon while fine-tuning: each target sums up to this many rewards of its "
        "episode before bootstrapping (0 = the pre-trained checkpoint's)",
        range=(0, 1000),
    )
    bc_weight: float = knob(
        0.03,
        "actor BC weight while fine-tuning (Cal-QL's RoboFuME term; -1 = keep the pre-trained checkpoint's)",
        range=(-1.0, 100.0),
    )
    bc_only_successful: bool = knob(
        True, "actor BC term only on episodes that succeeded (failed exploration is left to the critic, not imitated)"
    )
    bc_online: bool = knob(
        False,
        "actor BC term also on online attempts (false: offline data only; the noisy "
        "online attempts then train the critic and the RL term only)",
    )
    signing_key: str = knob(
        "",
        "Ed25519 private key (PEM) that signs every published weights message; made with its .pub "
        "beside it when missing ('' = <run_dir>/keys/learner_ed25519)",
    )
    backfill: bool = knob(
        True,
        "after a start or a gap in the stream, ask the recorder for the transitions this learner "
        "missed (/backfill/request) and close episodes only once they are in",
    )
    backfill_gap_s: float = knob(
        1.0, "observations this far apart (by stamp) mean the stream was cut: backfill the gap", range=(0.1, 3600.0)
    )
    backfill_timeout_s: float = knob(
        15.0, "give up waiting for a backfill (no recorder, or it never answers) after this", range=(0.5, 3600.0)
    )
    action_dim: int = knob(4, "action components: 4 (xyz + gripper) or 7 (xyz + rpy + gripper)")
    num_threads: int = knob(1, "torch threads for training")
    device: str = knob("auto", "where to train: auto (a CUDA GPU when torch sees one, else CPU), cpu, cuda or cuda:N")
    robots: list = knob(
        [],
        "a fleet: the namespaces of the robots this learner trains on (each robot's topics under "
        "/<robot>/..., weights pushed to each); [] = the robot of this learner's own graph",
    )
    seed: int = knob(0, "seed for sampling")


class LearnerNode(ManagedNode):
    """Managed: configure loads the checkpoint, the offline data, the journal and the online data
    and starts listening (experience is stored in every state from then on), activate starts (or
    resumes) training and publishing weights, deactivate pauses training."""

    def __init__(self):
        super().__init__("learner")
        self.p = declare(self, Params)

    def configure(self):
        p = self.p
        import torch

        from robofume_ros.online.trainer import OnlineTrainer, TrainerConfig

        torch.set_num_threads(max(1, p.num_threads))
        self.dir = Path(p.run_dir).expanduser() / "learner"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.features = None  # frozen image encoder, built when the learner uses features
        self.L = self._build_learner()
        if self.L.cfg.obs_mode == "features":
            if self.features is None:  # for frames that come without the camera's features
                from robofume_ros.vision.encoder import FrozenImageEncoder

                self.features = FrozenImageEncoder()
            if not getattr(self, "_asked", False):
                ask_for_shared_features(self)
                self._asked = True
        from robofume_ros.data.dataset import DatasetWriter

        from robofume_ros.safety import signing

        key_path = Path(p.signing_key or Path(p.run_dir) / "keys" / "learner_ed25519").expanduser()
        self.signing_key = signing.load_or_create_private_key(key_path)
        self.key_id = signing.key_id(self.signing_key.public_key())
        self.log.info(f"weights signed with {key_path} (key {self.key_id}; policies trust {key_path}.pub)")
        self.trainer = OnlineTrainer(
            self.L,
            TrainerConfig(
                utd_ratio=p.utd_ratio,
                min_online_transitions=p.min_online_transitions,
                weights_every=p.weights_every,
                checkpoint_every=p.checkpoint_every,
                budget_steps=p.budget_steps,
            ),
            self.dir,
            on_weights=self.publish_weights,
            log=self.log.info,
        )
        self.trainer.pause()  # until activated: an inactive learner paces nobody
        # one feed per robot: this graph's own (robots: []), or each robot of a fleet, all into one
        # online dataset (episodes tagged with their robot) and one replay buffer
        writer = DatasetWriter(self.dir / "online")
        self.feeds = [RobotFeed(self, r, writer) for r in (p.robots or [""])]
        if p.robots:
            self.log.info(f"a fleet of {len(p.robots)} robots: {', '.join(p.robots)}")
        # steady timers: their waits are wall seconds, and in sim time the clock stops while the
        # simulator waits for this learner (its pace: /learner/pace)
        from rclpy.clock import Clock as RosClock, ClockType

        steady = RosClock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(0.5, self._apply_phases, clock=steady)
        if p.backfill:
            self.create_timer(0.2, self._backfill_tick, clock=steady)
        self.create_timer(10.0, self.report, clock=steady)
        self.create_timer(0.05, self._publish_pace, clock=steady)
        self.weights_version = 0

    def activate(self):
        self.trainer.start()

    def deactivate(self):
        self.trainer.pause()

    def _build_learner(self):
        from robofume_ros.data.dataset import load_episodes
        from robofume_ros.rl.device import resolve_device
        from robofume_ros.rl.learner import Learner

        p = self.p
        device = resolve_device(p.device)  # DeviceError: a clear reason the learner cannot start
        self.get_logger().info(f"training on {device}")
        resume = self.dir / "learner.pt"
        if resume.exists():
            L = Learner.load(resume, device=device)
            self.get_logger().info(f"resumed from {resume} at update {L.step}")
        elif p.init_checkpoint:
            L = Learner.load(p.init_checkpoint, device=device)
            self.get_logger().info(f"starting from pre-trained {p.init_checkpoint} (update {L.step})")
        else:
            raise ValueError(
                "parameter 'init_checkpoint' is required (robofume pretrain output), "
                f"or a learner checkpoint at {resume} to resume from"
            )
        if p.n_step > 0:  # before any data: transitions are built for it
            L.set_n_step(p.n_step)
            self.get_logger().info(f"critics on {p.n_step}-step TD targets")
        if p.bc_weight >= 0:
            L.set_agent_option("bc_weight", p.bc_weight)
            self.get_logger().info(f"actor BC weight {p.bc_weight} while fine-tuning")
        if p.bc_only_successful:
            L.set_bc_only_successful(True)
            self.get_logger().info("actor BC term on successful episodes only")
        note = L.set_online_bc(p.bc_online)
        if note:
            self.get_logger().info(note)
        for path in p.offline_dataset:
            eps = load_episodes(path)
            self._with_features(eps, L)
            L.add_offline(eps, fit_stats=False)  # normalisation stays the pre-trained one
            self.get_logger().info(f"offline data: {len(eps)} episodes from {path}")
        online = self.dir / "online"
        if online.exists():
            eps = load_episodes(online)
            self._with_features(eps, L)
            for ep in eps:
                L.add_episode(ep)
            self.get_logger().info(f"reloaded {len(eps)} online episodes ({sum(len(e) for e in eps)} transitions)")
        return L

    def _with_features(self, eps, L=None):
        L = L or self.L
        if L.cfg.obs_mode == "features":
            from robofume_ros.vision.encoder import FrozenImageEncoder, add_features

            if self.features is None:
                self.features = FrozenImageEncoder()
            add_features(eps, self.features)

    def _apply_phases(self) -> None:
        for f in self.feeds:
            f.apply_phases()

    def _backfill_tick(self) -> None:
        for f in self.feeds:
            f.backfill_tick()

    def _publish_pace(self) -> None:
        through = self.trainer.trained_through()
        for f in self.feeds:
            f.publish_pace(through)

    def _add(self, ep):
        self._with_features([ep])
        self.trainer.add_episode(ep)
        robot = ep.provenance.get("robot")
        self.log.info(
            (f"[{robot}] " if robot else "") + f"episode {ep.provenance['episode_index']} ({ep.task}, {len(ep)} steps, "
            f"{'success' if ep.success else 'no success'}) on disk and in the online buffer"
        )

    def publish_weights(self, version: int, blob: bytes, sha: str, path: Path):
        m = PolicyWeights()
        m.header.stamp = self.get_clock().now().to_msg()
        m.version = int(version)
        self.weights_version = m.version
        m.sha256 = sha
        m.signature = list(sign_weights(self.signing_key, version, sha))
        m.key_id = self.key_id
        if self.p.weights_transport == "inline":
            m.data = blob
        else:
            m.checkpoint_path = str(path.resolve())
        for f in self.feeds:  # every robot's policy (one in a graph of its own)
            f.pub_weights.publish(m)

    def health(self):
        s = self.trainer.status()
        steps = max(1, s["env_steps"])
        values = {
            "env_steps": s["env_steps"],
            "updates": s["updates"],
            "updates_per_s": s["updates_per_s"],
            "utd": (s["updates"] - self.trainer.updates_at_start) / steps,
            "utd_target": self.p.utd_ratio,
            "episodes": s["episodes"],
            "online_transitions": s["online_transitions"],
            "offline_transitions": s["offline_transitions"],
            "relabelled_episodes": s["relabelled"],
            "backfill_requests": sum(f.backfill_requests for f in self.feeds),
            "backfilled_observations": sum(f.backfilled for f in self.feeds),
            "backfill_in_flight": any(f.backfill is not None for f in self.feeds),
            "weights_version": self.weights_version,
            "budget_steps": self.p.budget_steps,
        }
        dropped = self.dropped()
        values.update({f"dropped/{k}": v for k, v in sorted(dropped.items())})
        if self.p.robots:
            for f in self.feeds:
                values[f"robots/{f.robot}/episodes"] = len(f.stream.stored)
                values[f"robots/{f.robot}/steps_received"] = f.stream.steps_received
        if s["error"]:
            return ERROR, f"training failed: {s['error']}", values
        if s["done"]:
            return OK, f"budget of {self.p.budget_steps} environment steps reached: training finished", values
        return OK, f"training: {s['updates']} updates, {s['episodes']} online episodes", values

    def report(self):
        s = self.trainer.status()
        if s["error"]:
            # exit non-zero: the runner reports it and restarts the learner from its checkpoint
            raise SystemExit(f"training failed: {s['error']}")
        self.log.info(
            f"env steps {s['env_steps']}, updates {s['updates']} ({s['updates_per_s']:.1f}/s), "
            f"episodes {s['episodes']}, online transitions {s['online_transitions']}, "
            f"dropped {self.dropped() or 'none'}"
        )

    def dropped(self) -> dict:
        """What every robot's stream dropped, by reason."""
        return dict(sum((Counter(f.stream.dropped) for f in self.feeds), Counter()))

    def close(self):
        if getattr(self, "trainer", None) is None:
            return  # configure failed before anything was built
        for f in getattr(self, "feeds", []):  # episodes the switcher already ended reach the disk before the end
            f.flush_phases()
        self.trainer.stop()
        for f in getattr(self, "feeds", []):
            f.stream.close()


class _Tagged:
    """A logger whose messages name the robot they are about (a fleet's learner hears several)."""

    def __init__(self, log, tag: str):
        self._log, self._tag = log, tag

    def info(self, msg: str) -> None:
        self._log.info(self._tag + msg)

    def warn(self, msg: str) -> None:
        self._log.warn(self._tag + msg)


class RobotFeed:
    """One robot's stream into the learner: its topics (under its namespace in a fleet), its
    episode stream and journal, and the backfill of what the learner missed from its recorder."""

    def __init__(self, node: "LearnerNode", robot: str, writer):
        from robofume_ros.online.episode_stream import EpisodeStream

        self.node, self.robot, self.p = node, robot.strip("/"), node.p
        self.log = _Tagged(node.log, f"[{self.robot}] " if self.robot else "")
        self.stream = EpisodeStream(node.dir, self.p.action_dim, writer=writer, robot=self.robot)
        finished, open_steps = self.stream.recover()
        if finished or open_steps:
            self.log.info(f"journal: recovered {len(finished)} finished episodes and {open_steps} steps of open ones")
        self.pub_weights = node.create_publisher(PolicyWeights, self.topic(graph.TOPICS["weights"]), qos.LATCHED)
        self.pub_pace = node.create_publisher(LearnerPace, self.topic(graph.TOPICS["learner_pace"]), qos.SENSOR)
        self._steps: deque = deque()  # (the trainer's env step count, stamp) of this robot's new observations
        self._covered_ns = -1  # the newest stamp of them the learner's updates cover
        self._received_ns = -1  # the newest stamp of them received (live or backfilled)
        for ep in finished:
            node._add(ep)
        self.last_episode = None
        # deep reader queues: while training holds the interpreter the stream waits, it is not dropped
        self.observation_topic = node.create_subscription(
            Observation, self.topic(graph.TOPICS["observation"]), self.on_observation, qos.DEEP
        ).topic_name
        node.create_subscription(ArmCommand, self.topic(graph.TOPICS["command"]), self.on_command, qos.DEEP)
        node.create_subscription(ArmCommand, self.topic(graph.TOPICS["executed"]), self.on_executed, qos.DEEP)
        node.create_subscription(Reward, self.topic(graph.TOPICS["reward"]), self.on_reward, qos.DEEP)
        node.create_subscription(TaskPhase, self.topic(graph.TOPICS["task_phase"]), self.on_phase, qos.LATCHED_DEEP)
        # backfill: what the robot did while this learner was down or cut off, from the recorder
        self.backfill = None  # the request in flight: {"request", "since_ns", "t0", "sent"}
        self._asked_for_steps: set = set()  # episodes a backfill was asked to complete (once each)
        self.backfill_requests = 0
        self.backfilled = 0  # observations that came in through a backfill
        self._held_phases: list = []  # phase messages held while a backfill is in flight
        self._pending_phases: list = []  # (arrival, phase message) waiting for their episode's end
        self._period_ns: deque = deque(maxlen=20)  # recent intervals between observations of an episode
        self._last_live_ns = None
        if self.p.backfill:
            bt = lambda key: self.topic(backfill_topic(key))
            self._backfill_subs = [
                node.create_subscription(
                    Observation, bt("observation"), lambda m: self.on_observation(m, True), qos.BULK
                ),
                node.create_subscription(ArmCommand, bt("command"), lambda m: self.on_command(m, True), qos.BULK),
                node.create_subscription(ArmCommand, bt("executed"), lambda m: self.on_executed(m, True), qos.BULK),
                node.create_subscription(Reward, bt("reward"), lambda m: self.on_reward(m, True), qos.BULK),
                node.create_subscription(TaskPhase, bt("task_phase"), self._on_backfill_phase, qos.BULK),
                node.create_subscription(
                    String, self.topic(graph.TOPICS["backfill_done"]), self._on_backfill_done, qos.RELIABLE
                ),
            ]
            self.pub_backfill = node.create_publisher(
                String, self.topic(graph.TOPICS["backfill_request"]), qos.RELIABLE
            )
            self.start_backfill(self.stream.backfill_since(), "start")

    def flush_phases(self) -> None:
        """At shutdown: close the episodes the switcher has already ended (phase messages held for
        a backfill or waiting for the next episode's first observation); nothing more will come
        (what did not arrive is in the recorder's bag)."""
        waiting = list(self._held_phases) + [m for _t, m in self._pending_phases]
        self._held_phases, self._pending_phases, self.backfill = [], [], None
        for m in waiting:
            try:
                self._apply_phase(m)
            except Exception as e:  # noqa: BLE001 - shutting down: say what was not stored, go on
                self.log.warn(f"could not close episode(s) before {m.episode_index} at shutdown: {e}")

    def publish_pace(self, through) -> None:
        """How far the learner is with this robot's steps (msg/LearnerPace): the newest stamp among
        them that `through` (the trainer's covered env step count) includes -- backfilled steps
        arrive after newer live ones, so the newest, not the last to arrive -- and the newest
        received. Both -1 (hold nobody) when the learner does not pace (None) or has heard nothing
        from this robot since it started; before its first step is covered, that step's stamp minus
        one, so the simulator waits within its slack."""
        dq = self._steps
        if through is None:
            trained, received = -1, -1
        else:
            while dq and dq[0][0] <= through:
                self._covered_ns = max(self._covered_ns, dq.popleft()[1])
            trained = self._covered_ns if self._covered_ns >= 0 else (dq[0][1] - 1 if dq else -1)
            received = self._received_ns if trained >= 0 else -1
        self.pub_pace.publish(LearnerPace(trained_until_ns=int(trained), received_until_ns=int(received)))

    def topic(self, name: str) -> str:
        """A relative topic name of this robot: under its namespace in a fleet, else the node's."""
        return f"{self.robot}/{name}" if self.robot else name

    # --- backfill ---------------------------------------------------------------------------
    def start_backfill(self, since_ns: int, why: str) -> None:
        """Ask the recorder for everything since `since_ns`; episodes close only once it is in."""
        if self.backfill is not None:
            self.backfill["since_ns"] = min(self.backfill["since_ns"], since_ns)
            return
        self.backfill_requests += 1
        self.backfill = {"since_ns": int(since_ns), "t0": time.monotonic(), "why": why, "tries": 0}
        self._new_request()

    def _new_request(self) -> None:
        # a random id: a restarted learner never takes an answer meant for its previous run
        b = self.backfill
        b.update(
            request=random.getrandbits(31), sent=False, sent_t=None, received=0, expected=None, done_t=None, rx_t=None
        )
        b["tries"] += 1
        self.backfill_tick()

    def backfill_tick(self) -> None:
        b = self.backfill
        if b is None:
            return
        # the timeout runs from the request (waiting for discovery and live data before it can be long
        # on a loaded machine: up to 60 s), then from the newest replayed message: a recorder that
        # answers slowly (niced on a busy machine, a long outage to replay) is waited for while its
        # replay keeps coming
        waited = time.monotonic() - max(b["sent_t"] or b["t0"], b["rx_t"] or 0.0)
        if waited > (self.p.backfill_timeout_s if b["sent_t"] else 60.0):
            self.log.warn(
                f"backfill ({b['why']}): no answer from a recorder within {self.p.backfill_timeout_s:.0f} s; "
                "going on with what arrived live (the bag still holds everything)"
            )
            self._finish_backfill()
            return
        if b["expected"] is not None and b["received"] >= b["expected"]:
            self._finish_backfill()
            return
        if b["expected"] is not None and time.monotonic() - max(b["done_t"], b["rx_t"] or 0.0) > 1.0:
            # part of the replay never arrived (the recorder's writers had not yet matched this
            # learner's readers): ask again once nothing more came for a second (a busy learner
            # takes a long replay in slowly), what did arrive is deduplicated
            if b["tries"] >= 5:
                self.log.warn(f"backfill ({b['why']}): {b['received']} of {b['expected']} after 5 tries; going on")
                self._finish_backfill()
                return
            self._new_request()
        if b["sent"]:
            return
        if time.monotonic() - b["t0"] > 30.0 and not self.pub_backfill.get_subscription_count():
            self.log.info(f"backfill ({b['why']}): no recorder on this graph; going on with what arrives live")
            self._finish_backfill()
            return
        # send once the recorder hears the request and its replays reach this learner, and (after a
        # start) once live observations flow: the replay then overlaps them and leaves no hole
        live = self._last_live_ns is not None or time.monotonic() - b["t0"] > 10.0
        if (
            live
            and self.pub_backfill.get_subscription_count()
            and all(s.get_publisher_count() for s in self._backfill_subs)
        ):
            self.pub_backfill.publish(String(data=json.dumps({"request": b["request"], "since_ns": b["since_ns"]})))
            b["sent"], b["sent_t"] = True, time.monotonic()
            self.log.info(f"backfill ({b['why']}): asked the recorder for everything since {b['since_ns']}")

    def _on_backfill_done(self, msg) -> None:
        try:
            done = json.loads(msg.data)
        except ValueError:
            return
        b = self.backfill
        if b is None or done.get("request") != b["request"]:
            return
        self.log.info(
            f"backfill ({b['why']}): {done.get('messages')} messages replayed, "
            f"{self.backfilled} observations new so far"
            + (
                ""
                if done.get("complete", True)
                else "; the recorder does not hold the oldest (it started after them: see the earlier bag)"
            )
        )
        # "done" travels on its own topic and may overtake the replay: finish once all of it is in
        b["expected"], b["done_t"] = int(done.get("messages", 0)), time.monotonic()
        self.backfill_tick()

    def _count_backfill(self) -> None:
        if self.backfill is not None:
            self.backfill["received"] += 1
            self.backfill["rx_t"] = time.monotonic()

    def _finish_backfill(self) -> None:
        b, self.backfill = self.backfill, None
        self.log.info(
            f"backfill ({b['why']}) done: {b['received']} of {b['expected']} replayed messages received; "
            f"closing {len(self._held_phases)} held phase messages' episodes"
        )
        # in episode order, each closing the episodes before its own with its verdicts: the live
        # (latched) newest one arrives before the replayed older ones, and the switcher's memory of
        # verdicts in one message is bounded (an outage can be longer); stable for equal indices
        held = sorted(self._held_phases, key=lambda m: m.episode_index)
        self._held_phases = []
        for m in held:
            self._pending_phases.append((time.monotonic(), m))
        self.apply_phases()

    def _on_backfill_phase(self, msg) -> None:
        self._count_backfill()
        self.on_phase(msg)  # held with the live ones until the backfill is done

    # --- stream -----------------------------------------------------------------------------
    def on_observation(self, obs, backfill: bool = False):
        if backfill:
            self._count_backfill()
        else:
            self.node.diagnostics.heard(self.observation_topic)
        try:
            image = image_to_rgb(obs.image)
            # the learner's store never holds what it cannot train on: the checkpoint's observation spec
            check_observation(self.node.L.obs_spec, image, obs.proprio)
            features = shared_features(obs, FEATURE_ENCODER_ID) if self.node.L.cfg.obs_mode == "features" else None
        except (ImageError, ObservationMismatch, FeaturesError) as e:
            if not backfill:
                self.node.throttle.warn(f"bad:{str(e)[:24]}", f"observation dropped: {e}")  # throttled per field
            return
        stamp = stamp_key(obs.header.stamp)
        if not backfill and self.p.backfill:
            last = self._last_live_ns
            self._last_live_ns = (stamp, obs.episode_index)
            if last is not None:
                gap_ns, jump = stamp - last[0], obs.episode_index - last[1]
                # within an episode observations come every tick (one missing is a loss); across a
                # switch the arm may go home first (none meanwhile): a long silence or skipped episodes
                period = sorted(self._period_ns)[len(self._period_ns) // 2] if len(self._period_ns) >= 5 else None
                if jump == 0 and gap_ns > 0:
                    self._period_ns.append(gap_ns)
                within = (
                    self.p.backfill_gap_s * 1e9 if period is None else min(1.6 * period, self.p.backfill_gap_s * 1e9)
                )
                limit = within if jump == 0 else self.p.backfill_gap_s * 10e9
                if gap_ns > limit or jump > 1:
                    self.start_backfill(last[0], f"a {gap_ns * 1e-9:.1f} s gap in the stream")
        new = self.stream.observation(
            stamp, obs.episode_index, image, obs.proprio, obs.instruction, obs.task, backfill, features
        )
        if new:
            self.node.trainer.env_step()
            self._steps.append((self.node.trainer.env_steps, stamp))
            self._received_ns = max(self._received_ns, stamp)
            self.backfilled += int(backfill)
        if self._pending_phases:
            self.apply_phases()

    def on_command(self, msg, backfill: bool = False, intervention: bool = False):
        if backfill:
            self._count_backfill()
        a = command_to_action(msg, self.p.action_dim)
        if not np.all(np.isfinite(a)):
            if not backfill:
                self.node.throttle.warn("nan", "non-finite command not used as an action")
            return
        self.stream.command(stamp_key(msg.header.stamp), np.clip(a, -1.0, 1.0), backfill, intervention)

    def on_executed(self, msg, backfill: bool = False):
        """What the arm executed while a person drove: that step's action, not the policy's."""
        self.on_command(msg, backfill, intervention=True)

    def on_reward(self, msg, backfill: bool = False):
        if backfill:
            self._count_backfill()
        self.stream.reward(stamp_key(msg.header.stamp), msg.probability, bool(msg.success), backfill=backfill)

    def on_phase(self, msg):
        if self.backfill is not None:  # the episodes it ends may still be missing steps
            self._held_phases.append(msg)
            return
        # an episode closes once an observation of a later one arrived: observations come in order
        # on their topic, so then none of its own is still on the way (a phase message, on another
        # topic, can overtake them); a silent robot (paused, stopped) closes it after a wait
        self._pending_phases.append((time.monotonic(), msg))
        self.apply_phases()

    def apply_phases(self) -> None:
        while self._pending_phases:
            if self.backfill is not None:  # e.g. asked for below: the phases wait for it
                self._held_phases[:0] = [m for _t, m in self._pending_phases]  # older than the held ones
                self._pending_phases.clear()
                return
            t, msg = self._pending_phases[0]
            if self.stream.newest_episode < msg.episode_index and time.monotonic() - t < PHASE_WAIT_S:
                return
            if self._ask_for_missing_steps(msg.episode_index):
                continue
            self._pending_phases.pop(0)
            self._apply_phase(msg)

    def _ask_for_missing_steps(self, before_episode: int) -> bool:
        """Steps without their command, or observations missing between two steps, would cut the
        episodes this phase closes or join them wrongly (a command the learner's reader missed
        while it was matching the policy's writer after a restart; observations delivered late,
        after a restart's backfill): ask the recorder once per episode, then close with whatever
        arrived."""
        if not self.p.backfill:
            return False
        period = sorted(self._period_ns)[len(self._period_ns) // 2] if self._period_ns else 1e8
        first, episodes = self.stream.missing_steps(before_episode, int(1.6 * period))
        if first is None or set(episodes) <= self._asked_for_steps:
            return False
        self._asked_for_steps.update(episodes)
        self.start_backfill(first - 1, f"steps missing in episode(s) {episodes}")
        return True

    def _apply_phase(self, msg) -> None:
        # also on the first phase message after a (re)start: episodes of the journal that ended
        # while the learner was down close now, labelled by the switcher's remembered verdicts
        if self.last_episode is None or msg.episode_index > self.last_episode:
            success = msg.last_switch_reason == TaskPhase.REASON_SUCCESS
            outcomes = dict(zip(msg.recent_episodes, msg.recent_successes))
            for ep in self.stream.close_before(msg.episode_index, success, outcomes):
                self.node._add(ep)
        self.last_episode = msg.episode_index
        # a person changed the verdict of an episode already stored (UNDO): disk and buffer follow
        for index, ok in zip(msg.recent_episodes, msg.recent_successes):
            if self.stream.stored_success(index) not in (None, bool(ok)):
                rewards, terminals = self.stream.relabel(index, bool(ok))
                self.node.trainer.relabel(int(index), rewards, terminals, bool(ok), self.robot)
                self.log.info(f"episode {index} relabelled {'success' if ok else 'no success'} (a person's verdict)")


def main(args=None) -> int:
    return run_node(LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
