"""Reward: the fine-tuned success classifier publishing P(task done) on /reward.

in:  /observation (only the newest frame is kept: inference never queues stale frames)
out: /reward (robofume_ros/Reward: probability, success, threshold, model id, latency)
services: ~/reload (std_srvs/Trigger): hot-reload the model from `model_path` (e.g. after retraining)

Inference runs in its own thread at whatever rate the model sustains, always on the newest
observation; the control path (camera -> policy -> arm) never waits for it. Success can be
debounced: declared only after `debounce_frames` consecutive frames at or above the threshold; and
with `paired_instructions` (a reset-free pair) a frame the model calls done for both tasks of the pair
counts as not done (reward.debounce.frame_success).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.msg import Observation, Reward
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import OK, NewestWorker, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.reward.debounce import frame_success
from robofume_ros.ros.convert import ImageError, image_to_rgb


@dataclass
class Params(ManagedParams):
    model_path: str = knob("", "reward model checkpoint folder (robofume reward train output) (required)")
    threshold: float = knob(
        -1.0, "decision threshold; negative = the one stored with the model", range=(-1.0, 1.0), runtime=True
    )
    debounce_frames: int = knob(
        1, "consecutive frames at or above the threshold before success is declared", range=(1, 1000), runtime=True
    )
    paired_instructions: list = knob(
        [],
        "the two instructions of a reset-free pair (forward, backward): a frame "
        "is a success for one only if the model does not also call it done for "
        "the other (one more text-head pass per frame); empty: no veto",
    )
    num_threads: int = knob(1, "torch threads for inference (1 is the robust choice on a robot PC)")
    precision: str = knob(
        "auto", "auto (bf16 where the CPU supports it), bf16 or fp32", choices=("auto", "bf16", "fp32")
    )


class RewardNode(ManagedNode):
    """Managed: configure loads the model, activate starts publishing verdicts, deactivate stops."""

    def __init__(self):
        super().__init__("reward")
        self.p = declare(self, Params, self._apply_param)  # here, once: configure may run again

    def configure(self):
        p = self.p
        if not p.model_path:
            raise ValueError("parameter 'model_path' is required (a reward model checkpoint folder)")
        if p.paired_instructions and len(p.paired_instructions) != 2:
            raise ValueError(f"paired_instructions must name two instructions, got {p.paired_instructions}")
        pair = list(p.paired_instructions)
        self.partner = dict(zip(pair, reversed(pair)))  # each instruction -> the other one
        self.vetoed = 0
        self.model = self._load()
        self._episode = None
        self._count = 0
        self.scored = 0
        self.skipped = 0
        self.pub = self.create_publisher(Reward, graph.TOPICS["reward"], qos.RELIABLE)
        self.observation_topic = self.create_subscription(
            Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE
        ).topic_name
        self.create_service(Trigger, "~/reload", self.srv_reload)
        self.worker = NewestWorker(self._score_safely, "reward-inference")
        self.create_timer(10.0, self.report)
        self._last_latency_ms = 0.0

    def _apply_param(self, name, value):
        if name == "threshold" and value >= 0 and self.configured:  # else _load() applies it
            self.model.threshold = float(value)  # the next frame is judged with it

    def health(self):
        model = self.model
        values = {
            "frames_scored": self.scored,
            "inference_hz": self.diagnostics.rate("scored", self.scored),
            "frames_skipped": self.skipped,
            "vetoed_by_pair": self.vetoed,
            "inference_ms": self._last_latency_ms,
            "threshold": float(model.threshold),
            "debounce_frames": self.p.debounce_frames,
            "model": model.model_id or self.p.model_path,
        }
        return OK, f"{model.model_type} reward, threshold {model.threshold:.3f}", values

    def _load(self):
        from robofume_ros.reward.base import load_reward_model

        model = load_reward_model(self.p.model_path, num_threads=self.p.num_threads, precision=self.p.precision)
        if self.p.threshold >= 0:
            model.threshold = self.p.threshold
        self.get_logger().info(
            f"reward model {model.model_id or self.p.model_path} ({model.model_type}), "
            f"threshold {model.threshold:.3f}, debounce {self.p.debounce_frames}, "
            f"pair veto {list(self.p.paired_instructions) or 'off'}"
        )
        return model

    def on_observation(self, obs):
        if not self.active:
            return  # no verdicts while inactive
        self.diagnostics.heard(self.observation_topic)
        if self.worker.put(obs):
            self.skipped += 1  # a newer frame replaced one that was never scored

    def _score_safely(self, obs):
        try:
            self._score(obs)
        except Exception as e:  # noqa: BLE001 - one bad frame must not stop the reward
            self.throttle.warn("infer", f"reward inference failed: {e}")

    def _score(self, obs):
        try:
            frame = image_to_rgb(obs.image)
        except ImageError as e:
            self.throttle.warn("bad", f"bad observation image: {e}")
            return
        model = self.model
        t0 = time.perf_counter()
        prob, p_partner = model.predict_proba_with_partner(frame, obs.instruction, self.partner.get(obs.instruction))
        latency = (time.perf_counter() - t0) * 1e3
        key = (obs.episode_index, obs.instruction)
        if key != self._episode:
            self._episode, self._count = key, 0
        ok = frame_success(prob, model.threshold, p_partner)
        if not ok and np.isfinite(prob) and prob >= model.threshold:
            self.vetoed += 1
        self._count = self._count + 1 if ok else 0
        msg = Reward()
        msg.header = obs.header
        msg.probability = prob if np.isfinite(prob) else 0.0
        msg.threshold = float(model.threshold)
        msg.consecutive_positive = self._count
        msg.success = self._count >= self.p.debounce_frames
        msg.model_id = model.model_id or self.p.model_path
        msg.instruction = obs.instruction
        msg.episode_index = obs.episode_index
        msg.latency_ms = latency
        self._last_latency_ms = latency
        self.pub.publish(msg)
        self.scored += 1

    def srv_reload(self, req, res):
        try:
            fresh = self._load()
        except Exception as e:  # noqa: BLE001 - keep the old model when the new one is broken
            res.success, res.message = False, f"kept the current model: {e}"
            self.log.error(res.message)
            return res
        self.model = fresh  # swapped atomically; the worker picks it up on its next frame
        res.success, res.message = True, f"reloaded {self.p.model_path}"
        return res

    def report(self):
        self.log.info(
            f"scored {self.scored} frames, skipped {self.skipped} stale ones"
            + (f", vetoed {self.vetoed} (done for both tasks of the pair)" if self.partner else "")
        )

    def close(self):
        self.worker.stop(timeout=5)


def main(args=None) -> int:
    return run_node(RewardNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
