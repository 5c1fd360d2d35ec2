"""Policy: the learned actor answering every observation with an arm command.

in:  /observation, /policy/weights (PolicyWeights from the learner, latched)
out: /robot/command (ArmCommand, header.stamp = the observation's stamp, source "policy"),
     ~/latency_ms (std_msgs/Float32: observation-to-command latency of each tick)

Stochastic while fine-tuning (exploration: white noise, the actor's std scaled by noise_scale),
deterministic for evaluation. New weights are decoded off the control path (a thread of their own) and swapped in
between two ticks, so no tick is missed. No observation, no command: when observations stop, the
arm stops being driven (and the robot's watchdog holds it).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from std_msgs.msg import Float32

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, Observation, PolicyWeights
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import (
    OK,
    RULES_HELP,
    WARN,
    NewestWorker,
    ask_for_shared_features,
    parse_rules,
    quantiles,
    run_node,
)
from robofume_ros.ros.params import declare, knob
from robofume_ros.rl.exploration import ExplorationNoise
from robofume_ros.ros import qos
from robofume_ros.ros.convert import FeaturesError, ImageError, action_to_command, image_to_rgb, shared_features


@dataclass
class Params(ManagedParams):
    checkpoint: str = knob("", "policy or learner checkpoint to start from (required)")
    deterministic: bool = knob(False, "act with the mean action (evaluation) instead of sampling (fine-tuning)")
    noise_scale: float = knob(
        0.5,
        "exploration while sampling: the actor's std times this (1: its own distribution, 0: deterministic)",
        range=(0.0, 5.0),
        runtime=True,
    )
    seed: int = knob(0, "seed of the action sampling")
    max_observation_age_s: float = knob(0.5, "do not act on observations older than this (wall clock)")
    follow_learner: bool = knob(True, "load new weights published by the learner on /policy/weights")
    trusted_key: str = knob(
        "",
        "the learner's Ed25519 public key (PEM): only weights signed with its private key are loaded "
        "('' = none trusted: every weights message is refused unless accept_unsigned_weights)",
    )
    accept_unsigned_weights: bool = knob(
        False, "load weights without checking their signature (a closed test network only)"
    )
    num_threads: int = knob(1, "torch intra-op threads for inference")
    diagnostics_warn: list = knob(
        ["latency_p95_ms > 50"], RULES_HELP.format("WARN"), runtime=True, check=parse_rules
    )  # a command 50 ms late is half a 10 Hz tick


class PolicyNode(ManagedNode):
    """Managed: configure loads the checkpoint, activate starts answering observations, deactivate
    stops commanding (the robot's watchdog then holds the arm)."""

    def __init__(self):
        super().__init__("policy")
        self.p = declare(self, Params)  # noise_scale: read at every tick

    def configure(self):
        p = self.p
        if not p.checkpoint:
            raise ValueError("parameter 'checkpoint' is required (a policy or learner checkpoint file)")
        import torch

        from robofume_ros.rl.policy import ObservationMismatch, Policy

        torch.set_num_threads(max(1, p.num_threads))
        torch.manual_seed(p.seed)
        self.policy = Policy.load(p.checkpoint).prepare()  # the first frame is answered at once
        # a features policy takes the camera's shared features when they are its encoder's
        self._features_id = self.policy.feature_encoder_id
        self.features_shared = self.features_computed = 0
        if self._features_id:
            ask_for_shared_features(self)
        self._mismatch = ObservationMismatch
        self.noise = ExplorationNoise(self.policy.dims["action_dim"], 0.0, seed=p.seed)
        self._instruction = None  # the episode's task: a new one restarts the noise
        self.version = 0
        self._trusted = None  # the learner's public key, loaded with the first weights
        self.refused_weights = 0
        self._pending = None  # (a fully loaded Policy, version) waiting to be swapped in
        self._spare = None  # the other buffer: new weights load into it while the policy acts
        self._lock = threading.Lock()
        self.ticks = 0
        self._latency_ms = deque(maxlen=600)  # the newest ticks' observation-to-command latency
        self._age_ms = deque(maxlen=600)  # ... and how old their frames were when this node had them
        self.pub = self.create_publisher(ArmCommand, graph.TOPICS["command"], qos.RELIABLE)
        self.pub_latency = self.create_publisher(Float32, "~/latency_ms", 10)
        self.observation_topic = self.create_subscription(
            Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE
        ).topic_name
        # new weights are verified and loaded in a thread of their own, never in the executor:
        # one executor thread serves the control ticks (rclpy's multi-threaded executor delayed
        # observations by up to 80 ms, see docs/latency.md)
        self._loader = None
        if p.follow_learner:
            self._loader = NewestWorker(self._load_weights, "weights-loader")  # a newer message wins
            self.create_subscription(PolicyWeights, graph.TOPICS["weights"], self._loader.put, qos.LATCHED)
        self.log.info(
            f"policy from {p.checkpoint} ({self.policy.obs_mode} observations, "
            f"{'deterministic' if p.deterministic else f'stochastic, noise scale {p.noise_scale}'})"
        )

    def _check_origin(self, msg) -> None:
        """Raises SigningError unless the weights are signed by the trusted learner."""
        from robofume_ros.safety import signing

        if self.p.accept_unsigned_weights:
            return
        if not self.p.trusted_key:
            raise signing.SigningError("no trusted_key configured: weights cannot be verified")
        if self._trusted is None:  # read when the first weights arrive: the learner may make it later
            self._trusted = signing.load_public_key(self.p.trusted_key)
        signing.verify_weights(self._trusted, msg.version, msg.sha256, bytes(msg.signature))

    def close(self):
        if getattr(self, "_loader", None) is not None:
            self._loader.stop()
            self._loader = None

    def _load_weights(self, msg):
        """Verify and decode new weights off the control path, into the spare policy."""
        try:
            self._check_origin(msg)
            blob = bytes(msg.data) if len(msg.data) else Path(msg.checkpoint_path).read_bytes()
            if hashlib.sha256(blob).hexdigest() != msg.sha256:
                raise ValueError("sha256 mismatch (truncated or corrupt weights)")
        except Exception as e:  # noqa: BLE001 - bad weights must never take the policy down
            self._refuse(msg, e)
            return
        # double buffering: load into the policy that is not acting (the spare, or the one still
        # waiting to be swapped in), never copying the whole policy: a copy holds the interpreter
        # for 20-100 ms, which the control thread would wait out
        with self._lock:
            target, self._spare = (self._pending[0] if self._pending else self._spare), None
            self._pending = None
        try:
            if target is None:
                target = self._copy_policy()
            target.load_weights(blob, f"weights v{msg.version}")
        except Exception as e:  # noqa: BLE001 - any bad blob is refused and counted; the old policy acts on
            with self._lock:
                self._spare = target  # half-loaded at worst: never acts before a full load
            self._refuse(msg, e)
            return
        with self._lock:
            self._pending = (target, msg.version)

    def _refuse(self, msg, e) -> None:
        self.refused_weights += 1
        self.log.error(
            f"refused weights v{msg.version} (key {msg.key_id or 'none'}): {e}; "
            f"still acting with v{self.version} ({self.refused_weights} refused so far)"
        )

    def _copy_policy(self):
        """The second buffer, made once: a copy of the policy sharing its frozen image encoder."""
        import copy

        frozen = self.policy._frozen
        return copy.deepcopy(self.policy, memo={id(frozen): frozen} if frozen is not None else None)

    def on_observation(self, obs):
        if not self.active:
            return  # inactive: no command (configured, or deactivated to hold the arm)
        self.diagnostics.heard(self.observation_topic)
        with self._lock:
            if self._pending is not None:
                (new, self.version), self._pending = self._pending, None
                self._spare, self.policy = self.policy, new
                self.log.info(f"now acting with learner weights v{self.version}")
        t0 = time.perf_counter()
        now_ns = self.get_clock().now().nanoseconds
        age = (now_ns - (obs.header.stamp.sec * 10**9 + obs.header.stamp.nanosec)) * 1e-9
        if age > self.p.max_observation_age_s:
            self.throttle.warn("stale", f"observation is {age:.2f} s old: not acting on it")
            return
        try:
            image = image_to_rgb(obs.image)
        except ImageError as e:
            self.throttle.warn("bad", f"bad observation image: {e}")
            return
        try:
            features = shared_features(obs, self._features_id)
        except FeaturesError as e:
            self.throttle.warn("features", f"bad observation: {e}")
            return
        if self._features_id:
            self.features_shared += features is not None
            self.features_computed += features is None
        if obs.instruction != self._instruction:
            self._instruction = obs.instruction
            self.noise.reset()
        try:
            action = self.policy.act(
                image,
                np.asarray(obs.proprio, np.float32),
                obs.instruction,
                deterministic=self.p.deterministic,
                features=features,
                noise_scale=self.p.noise_scale,
                eps=self.noise(),
            )
        except self._mismatch as e:  # never act on what the policy was not trained on
            self.throttle.warn(f"mismatch:{str(e)[:24]}", f"observation refused: {e}")  # throttled per field
            return
        except (RuntimeError, ValueError) as e:  # passed the checks and still failed: skip it, stay up
            self.throttle.warn("raised", f"observation skipped, the policy raised on it: {type(e).__name__}: {e}")
            return
        if not np.all(np.isfinite(action)):
            self.throttle.warn("nan", "policy produced a non-finite action: not sent")
            return
        self.pub.publish(action_to_command(action, obs.header.stamp, source="policy"))
        ms = (time.perf_counter() - t0) * 1e3
        self.pub_latency.publish(Float32(data=ms))
        self._latency_ms.append(ms)
        self._age_ms.append(age * 1e3)
        self.ticks += 1

    def health(self):
        lat = np.asarray(self._latency_ms) if self._latency_ms else np.zeros(1)
        p95 = float(np.percentile(lat, 95))
        values = {
            "commands": self.ticks,
            "rate_hz": self.diagnostics.rate("ticks", self.ticks),
            "latency_p50_ms": float(np.percentile(lat, 50)),
            "latency_p95_ms": p95,
            **{f"compute_ms/{k}": v for k, v in quantiles(self._latency_ms).items()},
            **{f"frame_age_ms/{k}": v for k, v in quantiles(self._age_ms).items()},
            "features/shared": self.features_shared,  # frames answered with the camera's features
            "features/computed": self.features_computed,  # ... with this node's own encoder
            "weights_version": self.version,
            "weights_refused": self.refused_weights,
            "mode": "deterministic" if self.p.deterministic else f"stochastic (noise {self.p.noise_scale})",
        }
        if self.refused_weights:
            return WARN, f"{self.refused_weights} weights messages refused (not signed by the trusted learner)", values
        return OK, f"acting with weights v{self.version}" if self.ticks else "waiting for observations", values


def main(args=None) -> int:
    return run_node(PolicyNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
