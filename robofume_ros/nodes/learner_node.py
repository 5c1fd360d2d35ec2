"""Learner: online Cal-QL fine-tuning from the robot's topic stream, pushing weights to the policy.

in:  /observation, /robot/command, /reward, /task_phase (episode boundaries and outcomes, also
     a person's later overrides: a stored episode is relabelled). Never the simulator's
     ground truth: the report reads that from the recorded bag.
out: /policy/weights (PolicyWeights, latched: inline bytes or a checkpoint path + sha256)
files (run_dir/learner/): online/ (dataset of every online episode, written before training on
     it), journal.bin (every step as it arrives), learner.pt (checkpoint), policy_latest.pt,
     metrics.csv, status.json

Restart-safe: on start it resumes from learner.pt, reloads the online dataset and replays the
journal, so a killed learner loses nothing it had received.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rclpy.node import Node

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, Observation, PolicyWeights, Reward, TaskPhase
from robofume_ros.nodes._common import ERROR, OK, Diagnostics, Throttle, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.convert import ImageError, command_to_action, image_to_rgb, stamp_key
from robofume_ros.rl.policy import ObservationMismatch, check_observation
from robofume_ros.safety.signing import sign_weights


@dataclass
class Params:
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
    action_dim: int = knob(4, "action components: 4 (xyz + gripper) or 7 (xyz + rpy + gripper)")
    num_threads: int = knob(1, "torch threads for training")
    device: str = knob("auto", "where to train: auto (a CUDA GPU when torch sees one, else CPU), cpu, cuda or cuda:N")
    seed: int = knob(0, "seed for sampling")


class LearnerNode(Node):
    def __init__(self):
        super().__init__("learner")
        self.p = p = declare(self, Params)
        import torch

        from robofume_ros.online.episode_stream import EpisodeStream
        from robofume_ros.online.trainer import OnlineTrainer, TrainerConfig

        torch.set_num_threads(max(1, p.num_threads))
        self.log = self.get_logger()
        self.throttle = Throttle(self.log)
        self.dir = Path(p.run_dir).expanduser() / "learner"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.features = None  # frozen image encoder, built when the learner uses features
        self.L = self._build_learner()
        if self.L.cfg.obs_mode == "features" and self.features is None:
            from robofume_ros.rl.features import FrozenImageEncoder

            self.features = FrozenImageEncoder()
        self.stream = EpisodeStream(self.dir, p.action_dim)
        finished, open_steps = self.stream.recover()
        if finished or open_steps:
            self.log.info(f"journal: recovered {len(finished)} finished episodes and {open_steps} steps of open ones")
        from robofume_ros.safety import signing

        key_path = Path(p.signing_key or Path(p.run_dir) / "keys" / "learner_ed25519").expanduser()
        self.signing_key = signing.load_or_create_private_key(key_path)
        self.key_id = signing.key_id(self.signing_key.public_key())
        self.log.info(f"weights signed with {key_path} (key {self.key_id}; policies trust {key_path}.pub)")
        self.pub_weights = self.create_publisher(PolicyWeights, graph.TOPICS["weights"], qos.LATCHED)
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
        for ep in finished:
            self._add(ep)
        self.last_episode = None
        self.create_subscription(Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE)
        self.create_subscription(ArmCommand, graph.TOPICS["command"], self.on_command, qos.RELIABLE)
        self.create_subscription(Reward, graph.TOPICS["reward"], self.on_reward, qos.RELIABLE)
        self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.on_phase, qos.LATCHED)
        self.create_timer(10.0, self.report)
        self.weights_version = 0
        self.diagnostics = Diagnostics(self, self.health, self.throttle)
        self.trainer.start()

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
            from robofume_ros.rl.features import FrozenImageEncoder, add_features

            if self.features is None:
                self.features = FrozenImageEncoder()
            add_features(eps, self.features)

    # --- stream -----------------------------------------------------------------------------
    def on_observation(self, obs):
        try:
            image = image_to_rgb(obs.image)
            # the learner's store never holds what it cannot train on: the checkpoint's observation spec
            check_observation(self.L.obs_spec, image, obs.proprio)
        except (ImageError, ObservationMismatch) as e:
            self.throttle.warn(f"bad:{str(e)[:24]}", f"observation dropped: {e}")  # throttled per field
            return
        self.stream.observation(
            stamp_key(obs.header.stamp), obs.episode_index, image, obs.proprio, obs.instruction, obs.task
        )
        self.trainer.env_step()

    def on_command(self, msg):
        a = command_to_action(msg, self.p.action_dim)
        if not np.all(np.isfinite(a)):
            self.throttle.warn("nan", "non-finite command not used as an action")
            return
        self.stream.command(stamp_key(msg.header.stamp), np.clip(a, -1.0, 1.0))

    def on_reward(self, msg):
        self.stream.reward(stamp_key(msg.header.stamp), msg.probability, bool(msg.success))

    def on_phase(self, msg):
        # also on the first phase message after a (re)start: episodes of the journal that ended
        # while the learner was down close now, labelled by the switcher's remembered verdicts
        if self.last_episode is None or msg.episode_index > self.last_episode:
            success = msg.last_switch_reason == TaskPhase.REASON_SUCCESS
            outcomes = dict(zip(msg.recent_episodes, msg.recent_successes))
            for ep in self.stream.close_before(msg.episode_index, success, outcomes):
                self._add(ep)
        self.last_episode = msg.episode_index
        # a person changed the verdict of an episode already stored (UNDO): disk and buffer follow
        for index, ok in zip(msg.recent_episodes, msg.recent_successes):
            if self.stream.stored_success(index) not in (None, bool(ok)):
                rewards, terminals = self.stream.relabel(index, bool(ok))
                self.trainer.relabel(int(index), rewards, terminals, bool(ok))
                self.log.info(f"episode {index} relabelled {'success' if ok else 'no success'} (a person's verdict)")

    def _add(self, ep):
        if self.features is not None:
            ep.features = self.features(ep.images).astype(np.float32)
        self.trainer.add_episode(ep)
        self.log.info(
            f"episode {ep.provenance['episode_index']} ({ep.task}, {len(ep)} steps, "
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
        self.pub_weights.publish(m)

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
            "weights_version": self.weights_version,
            "budget_steps": self.p.budget_steps,
        }
        values.update({f"dropped/{k}": v for k, v in sorted(self.stream.dropped.items())})
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
            f"dropped {self.stream.dropped or 'none'}"
        )

    def close(self):
        self.trainer.stop()
        self.stream.close()


def main(args=None) -> int:
    return run_node(LearnerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
