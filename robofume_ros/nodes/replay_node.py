"""Replay: `ros2 bag play` for machines without rosbag2 (publishes a rosbag2 bag's messages).

in:  a bag directory (or .mcap/.db3 file) written by the recorder, write_episodes_bag or rosbag2
out: the bag's topics (optionally filtered and remapped), with the bag's own message types;
     optionally /clock (rosgraph_msgs/Clock) carrying the bag time of the replay.

Messages are published as the serialized CDR bytes stored in the bag (rclpy's raw publish: no
deserialize/serialize round trip, payloads are byte-identical to the recording). Timing follows
the bag's timestamps divided by `rate`, against a monotonic clock (no drift); `rate` 0 publishes
as fast as possible. Scheduling, looping, start offset, filtering and remapping come from
robofume_ros.data.replay (tested without ROS there).

QoS per published topic: robofume_ros.ros.qos.for_topic(destination topic) (images best effort,
/task_phase latched, everything else reliable), unless `qos` forces one.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from rclpy.node import Node

from robofume_ros.ros.messages import message_class
from robofume_ros.ros.node import run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos as Q


@dataclass
class Params:
    bag: str = knob("", "bag to play: a rosbag2 directory, or a single .mcap/.db3 file (required)")
    topics: list = knob([], "topics to publish (bag names, before remapping); empty = every topic in the bag")
    remap: list = knob(
        [],
        "topic remappings as 'from:=to' strings (bag name := published name), e.g. '/observation:=/replay/observation'",
    )
    rate: float = knob(1.0, "playback speed factor (2.0 = twice as fast); 0 = as fast as possible")
    loop: bool = knob(False, "start again from the beginning (of the window) when the end is reached")
    loop_count: int = knob(0, "with loop: total passes (0 = forever)")
    loop_gap_s: float = knob(
        -1.0,
        "bag seconds between the last message of a pass and the first of the next "
        "(-1 = the median interval between messages)",
    )
    start_offset_s: float = knob(0.0, "skip this many bag seconds from the start of the bag")
    duration_s: float = knob(0.0, "play only this many bag seconds after the start offset (0 = to the end)")
    publish_clock: bool = knob(False, "publish /clock (rosgraph_msgs/Clock) with the bag time being replayed")
    clock_hz: float = knob(100.0, "how often /clock is published between messages (wall Hz)")
    qos: str = knob(
        "auto", "QoS of the publishers: auto (robofume_ros.ros.qos.for_topic), reliable, best_effort or latched"
    )
    start_delay_s: float = knob(0.0, "wait this long (wall seconds) after the publishers exist before playing")
    wait_for_subscribers: int = knob(
        0, "before playing, wait until every published topic has at least this many subscribers (0 = do not wait)"
    )
    wait_timeout_s: float = knob(30.0, "give up waiting for subscribers after this long and play anyway")
    max_late_s: float = knob(0.0, "skip messages that are more than this late (0 = never skip, publish late)")
    exit_when_done: bool = knob(True, "exit (code 0) when playback ends; false = stay up (e.g. latched topics)")


def parse_remap(entries) -> dict:
    out = {}
    for e in entries or []:
        if ":=" not in e:
            raise ValueError(f"remap entry {e!r} is not 'from:=to'")
        src, dst = e.split(":=", 1)
        if not src.startswith("/") or not dst:
            raise ValueError(f"remap entry {e!r}: the bag topic must be absolute and the target non-empty")
        out[src] = dst if dst.startswith("/") else "/" + dst
    return out


class ReplayNode(Node):
    def __init__(self):
        from robofume_ros.data.replay import ReplaySource

        super().__init__("replay")
        self.p = p = declare(self, Params)
        if not p.bag:
            raise SystemExit(self._fail("parameter 'bag' is required (path of a rosbag2 directory or file)"))
        if p.qos not in ("auto", "reliable", "best_effort", "latched"):
            raise SystemExit(self._fail(f"qos must be auto, reliable, best_effort or latched, got {p.qos!r}"))
        try:
            remap = parse_remap(p.remap)
            self.source = ReplaySource(
                p.bag,
                topics=p.topics or None,
                remap=remap,
                start_offset_s=p.start_offset_s,
                duration_s=p.duration_s if p.duration_s > 0 else None,
            )
        except Exception as e:  # bad bag / topic / offset: say why and exit
            raise SystemExit(self._fail(f"cannot play {p.bag}: {e}")) from e
        types = self.source.reader.topics()
        chosen = p.topics or sorted(types)
        self.publishers_ = {}
        for src in chosen:
            dst = remap.get(src, src)
            try:
                cls = message_class(types[src])
            except (ImportError, AttributeError, ValueError) as e:
                self.get_logger().warning(f"skipping {src}: type {types[src]} is not importable here ({e})")
                continue
            if dst in self.publishers_:
                raise SystemExit(self._fail(f"two bag topics remap onto {dst}"))
            self.publishers_[dst] = self.create_publisher(cls, dst, self._profile(dst))
        if not self.publishers_:
            raise SystemExit(self._fail("no topic left to publish"))
        self.clock_pub = None
        if p.publish_clock:
            from rosgraph_msgs.msg import Clock

            self._Clock = Clock
            self.clock_pub = self.create_publisher(Clock, "/clock", 10)
            self.create_timer(1.0 / max(p.clock_hz, 1e-3), self._tick_clock)
        self.counts = {t: 0 for t in self.publishers_}
        self.stats = None
        self.done = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bag_now = None  # (wall monotonic, bag ns) of the last published message
        self._clock_last, self._clock_loop = -1, 0
        self._playing = False
        self.create_timer(0.1, self._check_done)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.get_logger().info(
            f"playing {p.bag}: {len(self.publishers_)} topics, rate {p.rate}, loop {p.loop}"
            + (f" x{p.loop_count}" if p.loop and p.loop_count else "")
        )

    def _fail(self, msg: str) -> int:
        self.get_logger().error(msg)
        return 2

    def _profile(self, topic: str):
        return {"auto": None, "reliable": Q.RELIABLE, "best_effort": Q.SENSOR, "latched": Q.LATCHED}[
            self.p.qos
        ] or Q.for_topic(topic)

    # -- playback thread
    def _wait_for_subscribers(self):
        p = self.p
        if p.wait_for_subscribers > 0:
            deadline = time.monotonic() + p.wait_timeout_s
            while not self._stop.is_set() and time.monotonic() < deadline:
                if all(pub.get_subscription_count() >= p.wait_for_subscribers for pub in self.publishers_.values()):
                    break
                time.sleep(0.05)
            else:
                if not self._stop.is_set():
                    missing = [
                        t
                        for t, pub in self.publishers_.items()
                        if pub.get_subscription_count() < p.wait_for_subscribers
                    ]
                    self.get_logger().warning(f"playing without enough subscribers on {missing}")
        if p.start_delay_s > 0:
            self._stop.wait(p.start_delay_s)

    def _run(self):
        from robofume_ros.data.replay import play

        p = self.p
        try:
            self._wait_for_subscribers()
            loop = (True if p.loop_count <= 0 else int(p.loop_count)) if p.loop else False
            items = self.source.items(rate=p.rate, loop=loop, loop_gap_s=None if p.loop_gap_s < 0 else p.loop_gap_s)
            self._playing = True
            self.stats = play(
                items,
                self._publish,
                should_stop=self._stop.is_set,
                max_late_s=p.max_late_s if p.max_late_s > 0 else math.inf,
            )
            self.get_logger().info(
                f"playback finished: {self.stats['sent']} messages ({self.stats['late']} late, "
                f"{self.stats['skipped']} skipped): " + ", ".join(f"{t}: {n}" for t, n in self.counts.items())
            )
        except Exception as e:  # noqa: BLE001 - reported in the node's stats, the node stays up
            self.get_logger().error(f"playback failed: {e}")
            self.stats = {"error": str(e)}
        finally:
            self._playing = False
            self.done = True

    def _publish(self, item):
        pub = self.publishers_.get(item.topic)
        if pub is None:  # a topic whose type was not importable
            return
        if self.clock_pub is not None:
            with self._lock:
                if item.loop != self._clock_loop:  # a new pass: the bag time starts over
                    self._clock_loop, self._clock_last = item.loop, -1
                self._bag_now = (time.monotonic(), item.stamp)
            self._publish_clock(item.stamp)
        data = item.data if isinstance(item.data, bytes) else bytes(item.data)
        pub.publish(data)  # raw CDR bytes: rclpy publishes them as they are
        self.counts[item.topic] += 1

    def _publish_clock(self, ns: int):
        with self._lock:  # never backwards within a pass (timer and playback thread race)
            if ns < self._clock_last:
                return
            self._clock_last = ns
            msg = self._Clock()
            msg.clock.sec, msg.clock.nanosec = int(ns // 1_000_000_000), int(ns % 1_000_000_000)
            self.clock_pub.publish(msg)

    def _tick_clock(self):
        """Between messages, advance /clock at `rate` from the last published message's time."""
        if not self._playing:
            return
        with self._lock:
            last = self._bag_now
        if last is None:
            return
        rate = self.p.rate if self.p.rate > 0 else 0.0
        # interpolated from the last message; monotone within a pass (_publish_clock drops older)
        self._publish_clock(last[1] + int((time.monotonic() - last[0]) * rate * 1e9))

    def _check_done(self):
        if self.done and self.p.exit_when_done:
            raise SystemExit(0 if not (self.stats or {}).get("error") else 1)

    def close(self):
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2.0)
        self.source.close()


def main(args=None) -> int:
    return run_node(ReplayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
