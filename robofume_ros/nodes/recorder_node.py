"""Recorder: every observation, command, reward and task switch into a rosbag2 (MCAP) file.

in:  the topics in `topics` (types discovered from the graph, any message type)
out: <output_dir>/<bag_name>/ : numbered MCAP files with message definitions embedded, split by
     size or duration, flushed every `flush_interval_s` so a killed recorder loses at most that.
backfill: keeps the newest `backfill_s` of the learner's inputs in memory; on a request on
     /backfill/request it replays them on /backfill/<topic> and says /backfill/done, so a learner
     that was down or cut off loses no transition the robot made. A request older than memory
     reaches back is served from this recorder's own bag files first (a learner down for longer
     than `backfill_s`, e.g. a slow restart on a loaded machine).

Messages are written as the serialized CDR bytes that arrived (no deserialize/serialize round trip).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from robofume_ros.data.bags.reader import header_stamp_ns
from robofume_ros.interfaces import BACKFILL_KEYS, MSGTYPES, backfill_topic
from robofume_ros.ros import graph
from robofume_ros.ros.node import ERROR, OK, Diagnostics, DiagnosticsParams, Throttle, run_node
from robofume_ros.ros.params import declare, knob
from robofume_ros.ros import qos
from robofume_ros.ros.messages import built_layout_mismatch, message_class

DEFAULT_TOPICS = [
    graph.TOPICS[k]
    for k in (
        "observation",
        "command",
        "intervention",
        "executed",
        "state",
        "reward",
        "task_phase",
        "reward_override",
        "ground_truth",
        "safety",
    )
]


@dataclass
class Params(DiagnosticsParams):
    output_dir: str = knob("bags", "folder the bag directory is created in")
    bag_name: str = knob("", "bag directory name (default: robofume_<date>_<time>)")
    topics: list = knob(DEFAULT_TOPICS, "topics to record (relative names resolve in the node's namespace)")
    max_bag_size_mb: float = knob(512.0, "start a new file past this size (0 = never)")
    max_bag_duration_s: float = knob(300.0, "start a new file past this duration (0 = never)")
    flush_interval_s: float = knob(0.5, "write pending messages to disk at least this often")
    backfill_s: float = knob(
        120.0,
        "seconds (real time, also in sim time) of the learner's inputs kept in memory to backfill a "
        "learner that was down or cut off (replayed on /backfill/<topic> when it asks; older ones are "
        "read back from this recorder's bag files; 0 = no backfill)",
        range=(0.0, 3600.0),
    )


class RecorderNode(Node):
    def __init__(self):
        from robofume_ros.data.bags import BagWriter, typestore

        super().__init__("recorder")
        self.p = p = declare(self, Params)
        self.throttle = Throttle(self.get_logger())
        name = p.bag_name or time.strftime("robofume_%Y%m%d_%H%M%S")
        self.path = Path(p.output_dir).expanduser() / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = BagWriter(
            self.path,
            store=typestore(),
            max_bytes=int(p.max_bag_size_mb * 2**20),
            max_duration_s=p.max_bag_duration_s,
            flush_interval_s=p.flush_interval_s,
        )
        self.subscribed = {}
        self.counts = {}
        self.failed = False
        self.refused: dict = {}  # topic -> why it is not recorded (built message != msg/)
        self.create_timer(1.0, self.discover)
        self.create_timer(p.flush_interval_s, self.flush)
        self.create_timer(10.0, self.report)
        self.diagnostics = Diagnostics(self, self.health, self.throttle)
        # backfill: the newest `backfill_s` of the learner's inputs, as the raw bytes that arrived
        self._ring: deque = deque()  # (monotonic receive ns, header stamp ns, topic, raw bytes, bag stamp ns)
        self._replay: deque = deque()  # what is being replayed now
        self.backfills = 0
        # topics by their resolved names (under this graph's namespace), as the bag records them
        self.topics = [self.resolve_topic_name(t) for t in p.topics]
        # the graph's own topics with their types (topic table): subscribed without waiting for discovery
        self._table_types = {self.resolve_topic_name(graph.TOPICS[k]): MSGTYPES[k] for k in MSGTYPES}
        self._observation_topic = self.resolve_topic_name(graph.TOPICS["observation"])
        self._backfill_pubs = {
            self.resolve_topic_name(graph.TOPICS[k]): self.create_publisher(
                message_class(MSGTYPES[k]), backfill_topic(k), qos.BULK
            )
            for k in BACKFILL_KEYS
        }
        self._backfill_done = self.create_publisher(String, graph.TOPICS["backfill_done"], qos.RELIABLE)
        self.create_subscription(String, graph.TOPICS["backfill_request"], self.on_backfill_request, qos.RELIABLE)
        self.create_timer(0.02, self._replay_some)
        self.get_logger().info(f"recording {len(self.topics)} topics to {self.path}")
        self.discover()

    def discover(self):
        """Subscribe to every topic to record: the graph's own topics at once with their types from
        the topic table (the bag must hold the run from its first frame, however late discovery
        tells this node about the publishers), other topics once the ROS graph shows their type."""
        table = self._table_types
        pending = [t for t in self.topics if t not in self.subscribed and t not in self.refused]
        known = {} if all(t in table for t in pending) else dict(self.get_topic_names_and_types())
        for topic in pending:
            if topic not in table and topic not in known:
                continue
            type_name = table.get(topic) or known[topic][0]
            try:
                cls = message_class(type_name)
            except (ImportError, AttributeError, ValueError) as e:
                self.throttle.warn(f"type:{topic}", f"cannot record {topic}: type {type_name} not importable ({e})")
                continue
            why = built_layout_mismatch(type_name, cls, self.writer.store)
            if why:  # the bag would describe these bytes with a definition they do not follow
                if topic not in self.refused:
                    self.refused[topic] = why
                    self.get_logger().error(f"not recording {topic}: {why}")
                continue
            profile = qos.for_recording(topic)
            self.subscribed[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic, ty=type_name: self.on_message(t, ty, data), profile, raw=True
            )
            self.counts[topic] = 0
            self.get_logger().info(f"recording {topic} [{type_name}]")

    def on_message(self, topic, type_name, data: bytes):
        if self.failed:
            return
        stamp = self.get_clock().now().nanoseconds
        if self.p.backfill_s > 0 and topic in self._backfill_pubs and len(data) >= 12:
            # each of the learner's inputs starts with a std_msgs/Header: its stamp follows the
            # 4-byte CDR encapsulation (sec int32, nanosec uint32)
            # kept for backfill_s of real time: a learner's restart takes wall seconds, and in sim
            # time the robot runs free while nobody paces it, many sim seconds per wall second
            now = time.monotonic_ns()
            self._ring.append((now, header_stamp_ns(data), topic, data, stamp))
            horizon = now - int(self.p.backfill_s * 1e9)
            while self._ring and self._ring[0][0] < horizon:
                self._ring.popleft()
        try:
            self.writer.write(topic, type_name, data, stamp)
            self.counts[topic] += 1
        except Exception as e:  # noqa: BLE001 - a full disk must stop recording loudly, not crash the graph
            self.failed = True
            self.get_logger().error(f"recording stopped: {e}; everything before this is in {self.path}")

    def on_backfill_request(self, msg):
        """A learner asks for what it missed since `since_ns` (its newest observation's stamp, on
        this graph's clock): everything kept since then is replayed, in arrival order, then
        /backfill/done names the request."""
        try:
            req = json.loads(msg.data)
            request, since = int(req["request"]), int(req["since_ns"])
        except (ValueError, KeyError, TypeError) as e:
            self.throttle.warn("backfill", f"malformed backfill request {msg.data[:80]!r}: {e}")
            return
        margin = int(1e9)  # a command or verdict may trail its observation: a second more, it dedups
        items = [(t, raw) for _, st, t, raw, _ in self._ring if st >= since - margin]
        oldest = min((st for _, st, t, _, _ in self._ring if t == self._observation_topic), default=None)
        complete = oldest is not None and oldest <= since
        from_bag = 0
        if not complete and not self.failed and self.p.backfill_s > 0:
            older, oldest_on_disk = self._from_bag(since - margin)
            from_bag = len(older)
            items[:0] = older
            complete = oldest_on_disk is not None and oldest_on_disk <= since
        self._replay.append(("start", request, len(items), complete))
        self._replay.extend(("msg", t, raw) for t, raw in items)
        self._replay.append(("done", request, len(items), complete))
        self.backfills += 1
        self.get_logger().info(
            f"backfill request {request}: replaying {len(items)} messages since {since}"
            + (f" ({from_bag} of them from the bag: older than memory)" if from_bag else "")
            + ("" if complete else " (this recorder started after it: older ones are in an earlier bag)")
        )

    def _from_bag(self, since: int) -> tuple:
        """The learner's inputs stamped since `since` that arrived before the oldest kept in
        memory, read back from this recorder's bag files (flushed first), and the oldest stamp
        they hold."""
        from robofume_ros.data.bags.reader import _mcap_files, recorded_since

        try:
            self.writer.flush()
            files = _mcap_files(self.path)
            types = {t: self._table_types[t] for t in self._backfill_pubs}
            before = self._ring[0][4] if self._ring else None
            return recorded_since(files, types, since, before)
        except Exception as e:  # noqa: BLE001 - the backfill then holds what memory kept, said so
            self.throttle.warn("backfill_bag", f"backfill could not read the bag {self.path}: {e}")
            return [], None

    def _replay_some(self, budget: int = 100):
        while self._replay and budget > 0:
            item = self._replay.popleft()
            if item[0] == "msg":
                self._backfill_pubs[item[1]].publish(item[2])
                budget -= 1
            elif item[0] == "done":
                _, request, n, complete = item
                self._backfill_done.publish(
                    String(data=json.dumps({"request": request, "messages": n, "complete": complete}))
                )

    def flush(self):
        if not self.failed:
            try:
                self.writer.flush()
            except Exception as e:  # noqa: BLE001 - any writer failure stops recording, never the node
                self.failed = True
                self.get_logger().error(f"recording stopped: {e}")

    def report(self):
        self.get_logger().info("recorded " + ", ".join(f"{t}: {n}" for t, n in self.counts.items()))

    def health(self):
        files = sorted(self.path.glob("*.mcap"))
        values = {
            "bag": str(self.path),
            "files": len(files),
            "bytes": sum(f.stat().st_size for f in files if f.exists()),
            "messages_per_s": self.diagnostics.rate("messages", sum(self.counts.values())),
            **{f"messages{t}": n for t, n in self.counts.items()},
        }
        if self.failed:
            return ERROR, f"recording stopped (see the log); everything before it is in {self.path}", values
        if self.refused:
            return ERROR, "not recording " + "; ".join(f"{t}: {w}" for t, w in self.refused.items()), values
        missing = [t for t in self.topics if t not in self.subscribed]
        return (
            OK,
            f"recording {len(self.subscribed)} topics" + (f" (not yet seen: {len(missing)})" if missing else ""),
            values,
        )

    def close(self):
        self.writer.close()
        self.get_logger().info(f"bag closed: {self.path} ({sum(self.counts.values())} messages)")


def main(args=None) -> int:
    return run_node(RecorderNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
