"""Camera ingestion: any camera image -> policy-sized Observation at the control rate.

in:  image topic (sensor_msgs/Image rgb8/bgr8/mono8/rgba8/bgra8, or CompressedImage), /robot/state,
     /task_phase
out: /observation (robofume_ros/Observation): cropped + resized rgb8 frame, latest proprio,
     active task and instruction, episode index; header.stamp = the camera frame's stamp; with
     `shared_features` the frame's image features (the one vision encoder, vision.SHARED_FEATURES_ID),
     computed here once for the policy, the reward and the learner, which would each run the same
     network on the same frame otherwise (docs/latency.md).

Frames arriving faster than the control rate are thinned to it; wrong encodings, odd sizes,
stale or missing frames give a throttled warning and are dropped, never a crash.
"""

from __future__ import annotations

import array
import time
from collections import deque
from dataclasses import dataclass

from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image

from robofume_ros.ros import graph
from robofume_ros.msg import Observation, RobotState, TaskPhase
from robofume_ros.ros.node import OK, WARN, Diagnostics, DiagnosticsParams, Throttle, quantiles, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.data.images import FrameThinner
from robofume_ros.ros.convert import ImageError, compressed_to_rgb, image_to_rgb, resize_rgb, rgb_to_image


@dataclass
class Params(DiagnosticsParams):
    control_rate_hz: float = knob(
        10.0, "observations per second (frames arriving faster are thinned)", range=(0.1, 1000.0)
    )
    output_width: int = knob(100, "policy image width")
    output_height: int = knob(100, "policy image height")
    crop: list = knob([0, 0, 0, 0], "crop x, y, width, height in source pixels before resizing (0 width = no crop)")
    compressed: bool = knob(False, "subscribe to sensor_msgs/CompressedImage (<image topic>/compressed)")
    max_frame_age_s: float = knob(0.5, "warn and skip when the newest frame is older than this")
    max_state_age_s: float = knob(0.5, "warn and skip when the newest robot state is older than this")
    require_state: bool = knob(True, "publish only when a robot state has arrived")
    default_task: str = knob("", "task id used before the first /task_phase message")
    default_instruction: str = knob("", "instruction used before the first /task_phase message")
    shared_features: bool = knob(
        True,
        "compute the frame's image features (EfficientNet-Lite0, pooled + 2x2 grid) once here and send them "
        "with the observation while a node asks for them (the policy, reward and learner do when their models "
        "use that encoder), instead of each running the network (false: never; each runs its own)",
    )
    num_threads: int = knob(1, "torch threads for the shared features")


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera")
        self.p = p = declare(self, Params)
        self.throttle = Throttle(self.get_logger())
        self.thinner = FrameThinner(p.control_rate_hz)
        self.size = (p.output_height, p.output_width)
        self.crop = tuple(int(v) for v in p.crop) if p.crop and len(p.crop) == 4 else None
        self.state = None
        self._states = {}  # recent robot states by stamp: a frame gets the state of its own instant
        self.phase = None
        self.last_frame_wall_ns = None
        self.published = 0
        self.dropped = 0
        self._frame_age_ms: deque = deque(maxlen=600)  # frame stamp -> this node has it, the last minute
        self.pub = self.create_publisher(Observation, graph.TOPICS["observation"], qos.RELIABLE)
        # states first: when a frame and its state are both waiting, the executor takes them in
        # this order, so the frame finds the state of its own instant
        self.create_subscription(RobotState, graph.TOPICS["state"], self.on_state, qos.FRAMES)
        if p.compressed:
            self.create_subscription(
                CompressedImage, graph.TOPICS["image"] + "/compressed", self.on_compressed, qos.FRAMES
            )
        else:
            self.create_subscription(Image, graph.TOPICS["image"], self.on_image, qos.FRAMES)
        self.create_subscription(TaskPhase, graph.TOPICS["task_phase"], self.on_phase, qos.LATCHED)
        self.create_timer(1.0, self.watchdog)
        # the shared features are computed only while some node asks for them (interfaces:
        # features_wanted); the network is loaded when the first one does
        self.encoder = None
        self.features_wanted = False
        self._features_ms: deque = deque(maxlen=600)
        self._wanted_topic = self.resolve_topic_name(graph.TOPICS["features_wanted"])
        if p.shared_features:
            self.create_timer(1.0, self._count_askers)
        self.diagnostics = Diagnostics(self, self.health, self.throttle)

    def _count_askers(self):
        wanted = self.count_subscribers(self._wanted_topic) > 0
        if wanted and self.encoder is None:
            import numpy as np
            import torch

            from robofume_ros.vision import SHARED_GRID
            from robofume_ros.vision.encoder import FrozenImageEncoder

            torch.set_num_threads(max(1, self.p.num_threads))
            encoder = FrozenImageEncoder(grid=SHARED_GRID)
            encoder(np.zeros((*self.size, 3), np.uint8))  # warm before its first frame
            self.encoder = encoder
        if wanted != self.features_wanted:
            self.get_logger().info(f"shared image features {'on: a node asks' if wanted else 'off: nobody asks'}")
        self.features_wanted = wanted

    def on_state(self, msg):
        self.state = msg
        self._states[Time.from_msg(msg.header.stamp).nanoseconds] = msg
        while len(self._states) > 32:
            self._states.pop(next(iter(self._states)))

    def on_phase(self, msg):
        self.phase = msg

    def on_compressed(self, msg):
        self._handle(msg, compressed_to_rgb)  # decoded only if not thinned away (JPEG costs)

    def on_image(self, msg):
        try:
            rgb = image_to_rgb(msg)  # a view: cheap, and every bad frame is reported
        except ImageError as e:
            self.dropped += 1
            self.throttle.warn("bad", f"dropped a camera frame: {e}")
            return
        self._handle(msg, lambda _m: rgb)

    def _handle(self, msg, decode):
        now = self.get_clock().now()
        self.last_frame_wall_ns = now.nanoseconds
        stamp_ns = Time.from_msg(msg.header.stamp).nanoseconds
        if not self.thinner.keep(stamp_ns):  # one frame per control period
            return
        age = (now.nanoseconds - stamp_ns) * 1e-9
        if stamp_ns > 0 and age > self.p.max_frame_age_s:
            self.dropped += 1
            self.throttle.warn("stale", f"camera frame is {age:.2f} s old (max {self.p.max_frame_age_s}): skipped")
            return
        state = self._states.get(stamp_ns, self.state)
        if self.p.require_state:
            if state is None:
                self.throttle.warn("nostate", f"no robot state on {graph.TOPICS['state']} yet: frames skipped")
                return
            state_age = (stamp_ns - Time.from_msg(state.header.stamp).nanoseconds) * 1e-9
            if state_age > self.p.max_state_age_s:
                self.throttle.warn("oldstate", f"robot state is {state_age:.2f} s older than the frame: skipped")
                self.dropped += 1
                return
        try:
            rgb = resize_rgb(decode(msg), self.size, self.crop)
        except ImageError as e:
            self.dropped += 1
            self.throttle.warn("bad", f"dropped a camera frame: {e}")
            return
        obs = Observation()
        obs.header.stamp = msg.header.stamp
        obs.header.frame_id = msg.header.frame_id
        obs.image = rgb_to_image(rgb, msg.header.stamp, msg.header.frame_id)
        obs.image_stamp = msg.header.stamp
        if self.encoder is not None and self.features_wanted:
            t0 = time.perf_counter()
            feats = array.array("f")
            feats.frombytes(self.encoder(rgb).astype("float32", copy=False).tobytes())
            obs.features = feats  # an array('f') is taken as it is (a list would be checked value by value)
            obs.features_id = self.encoder.id
            self._features_ms.append((time.perf_counter() - t0) * 1e3)
        if state is not None:
            obs.proprio = list(state.proprio)
        if self.phase is not None:
            obs.instruction, obs.task = self.phase.instruction, self.phase.task
            obs.phase, obs.episode_index = self.phase.phase, self.phase.episode_index
        else:
            obs.instruction, obs.task = self.p.default_instruction, self.p.default_task
        self.pub.publish(obs)
        self.published += 1
        if stamp_ns > 0:
            self._frame_age_ms.append((now.nanoseconds - stamp_ns) * 1e-6)

    def health(self):
        values = {
            "observations": self.published,
            "rate_hz": self.diagnostics.rate("published", self.published),
            "frames_dropped": self.dropped,
            "target_rate_hz": self.p.control_rate_hz,
            **{f"frame_age_ms/{k}": v for k, v in quantiles(self._frame_age_ms).items()},
            "features/sent": self.features_wanted,
            **{f"features_ms/{k}": v for k, v in quantiles(self._features_ms).items()},
        }
        now = self.get_clock().now().nanoseconds
        if self.last_frame_wall_ns is None:
            return WARN, f"no camera frames on {graph.TOPICS['image']} yet", values
        age = (now - self.last_frame_wall_ns) * 1e-9
        if age > self.p.max_frame_age_s:
            return WARN, f"no camera frame for {age:.1f} s", values
        if not self.published:
            return WARN, "frames arrive, no observation published yet (waiting for the robot state)", values
        return OK, f"{self.published} observations published", values

    def watchdog(self):
        now = self.get_clock().now().nanoseconds
        if self.last_frame_wall_ns is None:
            self.throttle.warn("noframes", f"no camera frames on {graph.TOPICS['image']} yet")
        elif (now - self.last_frame_wall_ns) * 1e-9 > self.p.max_frame_age_s:
            self.throttle.warn("gap", f"no camera frame for {(now - self.last_frame_wall_ns) * 1e-9:.1f} s")


def main(args=None) -> int:
    return run_node(CameraNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
