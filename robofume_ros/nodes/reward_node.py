"""Reward: the fine-tuned success classifier publishing P(task done) on /reward.

in:  /observation (only the newest frame is kept: inference never queues stale frames);
     with `adapt`: /task_phase (how episodes ended), /reward_override (a person's verdicts)
out: /reward (robofume_ros/Reward: probability, success, threshold, model id and version, latency)
services: ~/reload (std_srvs/Trigger): hot-reload the model from `model_path` (e.g. after retraining)

Inference runs in its own thread at whatever rate the model sustains, always on the newest
observation; the control path (camera -> policy -> arm) never waits for it. Success can be
debounced: declared only after `debounce_frames` consecutive frames at or above the threshold; and
with `paired_instructions` (a reset-free pair) a frame the model calls done for both tasks of the pair
counts as not done (reward.debounce.frame_success).

With `adapt` the reward keeps learning during fine-tuning (reward.adapt): the frames it scores, the
task switcher's verdicts and a person's overrides give trusted labels; when the head in use got
some of them wrong, a background thread fine-tunes a copy of the head on them and on the frames the
model was trained on, and swaps it in if it keeps those (FP rate and recall at the threshold). Each
version's `model_id` ends in `+adaptedN`; versions and labels go to `adapt_dir`, and a restarted
node resumes from the newest.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.msg import Observation, Reward, RewardOverride, TaskPhase
from robofume_ros.ros.lifecycle import ManagedNode, ManagedParams
from robofume_ros.ros.node import OK, NewestWorker, ask_for_shared_features, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.reward.debounce import frame_success
from robofume_ros.ros.convert import FeaturesError, ImageError, image_to_rgb, shared_features


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
        "model",
        "the precision the model was trained in (model), auto (bf16 where the CPU supports it), bf16 or fp32; "
        "only an fp32 model of the built-in tower judges on the camera's shared features",
        choices=("model", "auto", "bf16", "fp32"),
    )
    adapt: bool = knob(
        True,
        "keep learning online: adapt the head from trusted labels (a person's overrides, the reset-free "
        "loop's consistency) in the background and hot-swap it (a model trained without its anchor set "
        "judges but does not learn)",
    )
    adapt_dir: str = knob(
        "",
        "where adapted versions (v1, v2, ...) and trusted labels are kept; a restart resumes from the "
        "newest; empty: in memory only",
    )
    adapt_min_mistakes: int = knob(
        1, "trusted frames the head in use judged wrongly before it is adapted again", range=(1, 1000)
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
        self.adapter, self.adapt_off = None, "" if p.adapt else "adapt is false"
        if p.adapt:
            from robofume_ros.reward.adapt import AdaptError

            try:
                self.adapter = _Adapter(self)
            except AdaptError as e:  # a model without its anchor set: it judges, it does not learn
                self.adapt_off = str(e)
                self.log.warn(f"the reward will not adapt online: {e}")
        self._episode = None
        self._count = 0
        self.scored = 0
        self.skipped = 0
        self.features_shared = 0  # frames judged on the camera's features (no image tower here)
        if getattr(self.model, "features_id", None) and not getattr(self, "_asked", False):
            ask_for_shared_features(self)  # a model of the camera's encoder: no tower pass here
            self._asked = True
        self.pub = self.create_publisher(Reward, graph.TOPICS["reward"], qos.RELIABLE)
        self.observation_topic = self.create_subscription(
            Observation, graph.TOPICS["observation"], self.on_observation, qos.RELIABLE
        ).topic_name
        self.create_service(Trigger, "~/reload", self.srv_reload)
        if self.adapter is not None:
            self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.adapter.on_phase, qos.LATCHED_DEEP)
            self.create_subscription(
                RewardOverride, graph.TOPICS["reward_override"], self.adapter.on_override, qos.RELIABLE
            )
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
            "features/shared": self.features_shared,
            "vetoed_by_pair": self.vetoed,
            "inference_ms": self._last_latency_ms,
            "threshold": float(model.threshold),
            "debounce_frames": self.p.debounce_frames,
            "model": model.model_id or self.p.model_path,
        }
        if self.adapter is not None:
            values.update(self.adapter.health())
        else:
            values["adapt/off"] = self.adapt_off
        return OK, f"{model.model_type} reward, threshold {model.threshold:.3f}", values

    def _load(self):
        from robofume_ros.reward.adapt import latest_model
        from robofume_ros.reward.base import load_reward_model

        path = latest_model(self.p.model_path, self.p.adapt_dir) if self.p.adapt else self.p.model_path
        kw = {} if self.p.precision == "model" else {"precision": self.p.precision}
        model = load_reward_model(path, num_threads=self.p.num_threads, **kw)
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
        try:  # the camera's features, when they are this model's image tower's
            shared = shared_features(obs, getattr(model, "features_id", None))
        except FeaturesError as e:
            self.throttle.warn("features", f"bad observation: {e}")
            return
        self.features_shared += shared is not None
        t0 = time.perf_counter()
        partner = self.partner.get(obs.instruction)
        if self.adapter is not None or shared is not None:
            prob, p_partner, feature = model.predict_with_features(frame, obs.instruction, partner, features=shared)
        else:
            prob, p_partner = model.predict_proba_with_partner(frame, obs.instruction, partner)
        latency = (time.perf_counter() - t0) * 1e3
        key = (obs.episode_index, obs.instruction)
        if key != self._episode:
            self._episode, self._count = key, 0
        ok = frame_success(prob, model.threshold, p_partner)
        if not ok and np.isfinite(prob) and prob >= model.threshold:
            self.vetoed += 1
        self._count = self._count + 1 if ok else 0
        if self.adapter is not None and np.isfinite(prob):
            self.adapter.on_frame(obs, feature, prob, ok)
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
        res.success, res.message = True, f"reloaded {fresh.model_id or self.p.model_path}"
        return res

    def report(self):
        self.log.info(
            f"scored {self.scored} frames, skipped {self.skipped} stale ones"
            + (f", vetoed {self.vetoed} (done for both tasks of the pair)" if self.partner else "")
        )

    def close(self):
        self.worker.stop(timeout=5)
        if self.adapter is not None:
            self.adapter.worker.stop(timeout=30)


class _Adapter:
    """The node's side of reward.adapt: feeds the EpisodeLog and adapts in a thread of its own."""

    def __init__(self, node: RewardNode):
        from robofume_ros.reward.adapt import (
            LABELS_FILE,
            AdaptConfig,
            EpisodeLog,
            base_head,
            latest_model,
            load_anchor,
        )

        self.node, self.cfg = node, AdaptConfig(min_mistakes=node.p.adapt_min_mistakes)
        self.base = node.p.model_path
        self.anchor = load_anchor(self.base)  # AdaptError (clear) when the model has none: it does not adapt
        self.reference = base_head(node.model, self.base)  # what every version is gated against
        self.dir = Path(node.p.adapt_dir) if node.p.adapt_dir else None
        self.log = EpisodeLog(node.p.paired_instructions, self.cfg.last_frames, max_labels=self.cfg.max_labels)
        self.lock = threading.Lock()
        resumed = latest_model(self.base, self.dir) if self.dir else Path(self.base)
        self.version = 0 if resumed == Path(self.base) else int(resumed.name[1:])  # the node loaded it
        self.refused, self.last_report = 0, {}
        restored = 0
        if self.version and (self.dir / LABELS_FILE).exists():  # labels of this model's versions only
            restored = self.log.load(self.dir / LABELS_FILE)
        self.seen = self.log.mistakes
        node.log.info(
            f"adapting online from trusted labels (anchor set of {len(self.anchor)} frames"
            + (f", resumed at version {self.version} with {restored} labels" if self.version or restored else "")
            + ")"
        )
        self.worker = NewestWorker(self._adapt_safely, "reward-adapt")

    def on_frame(self, obs, feature, prob, fired) -> None:
        with self.lock:
            self.log.frame(int(obs.episode_index), obs.instruction, feature, prob, fired)
        self._maybe_adapt()

    def on_phase(self, msg) -> None:
        with self.lock:
            self.log.phase(int(msg.episode_index), int(msg.last_switch_reason))
        self._maybe_adapt()

    def on_override(self, msg) -> None:
        with self.lock:
            self.log.override(int(msg.episode_index), int(msg.verdict))
        self._maybe_adapt()

    def _maybe_adapt(self) -> None:
        with self.lock:
            due = self.log.mistakes - self.seen >= self.cfg.min_mistakes
            if due:
                self.seen = self.log.mistakes
                job = (self.log.labels(), self.log.kept())
        if due:
            self.worker.put(job)

    def _adapt_safely(self, job) -> None:
        try:
            self._adapt(*job)
        except Exception as e:  # noqa: BLE001 - a failed adaptation keeps the head in use
            self.node.throttle.warn("adapt", f"reward adaptation failed, the head in use stays: {e}")

    def _adapt(self, labels, kept) -> None:
        from robofume_ros.reward.adapt import LABELS_FILE, adapt_head, save_version, with_head

        current = self.node.model
        t0 = time.perf_counter()
        seed = self.version + self.refused
        res = adapt_head(current, self.anchor, labels, self.cfg, seed, keep=kept, reference=self.reference)
        seconds = time.perf_counter() - t0
        self.last_report = {**res.report, "seconds": round(seconds, 2)}
        a, b = res.report["after"], res.report["before"]
        if not res.accepted:
            self.refused += 1
            self.node.log.warn(
                f"adapted head refused ({res.report['refused_because']}: anchor FP {b['anchor']['fp_rate']:.3f} -> "
                f"{a['anchor']['fp_rate']:.3f}, recall {b['anchor']['recall']:.3f} -> {a['anchor']['recall']:.3f}); "
                "the head in use stays"
            )
            return
        version = self.version + 1
        fresh = with_head(current, res.head, version)
        if self.dir is not None:
            save_version(fresh, self.base, self.dir / f"v{version}", self.last_report)
            with self.lock:
                self.log.save(self.dir / LABELS_FILE)
        self.version = version
        self.node.model = fresh  # swapped atomically; the next frame is judged by it
        self.node.log.info(
            f"reward adapted to version {version} on {len(labels)} trusted frames in {seconds:.1f} s: "
            f"trusted accuracy {b['trusted_accuracy']:.2f} -> {a['trusted_accuracy']:.2f}, anchor FP "
            f"{b['anchor']['fp_rate']:.3f} -> {a['anchor']['fp_rate']:.3f}, recall {b['anchor']['recall']:.3f} -> "
            f"{a['anchor']['recall']:.3f}"
        )

    def health(self) -> dict:
        with self.lock:
            counts = dict(self.log.counts())
        return {
            "adapt/version": self.version,
            "adapt/refused": self.refused,
            **{f"adapt/labels/{k}": v for k, v in sorted(counts.items())},
        }


def main(args=None) -> int:
    return run_node(RewardNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
