"""Bag replay core (no rclpy): what to publish, and when.

    for item in replay_iter("run1", rate=2.0, loop=True, topics=["/observation"],
                            remap={"/observation": "/replay/observation"}):
        # item.topic, item.msgtype, item.data (CDR bytes), item.stamp (original, ns),
        # item.due_s (seconds after replay start to publish), item.wait_s (after the previous one)
        ...

The ROS node only sleeps and publishes: rclpy.serialization.deserialize_message(item.data, cls)
(or a raw-bytes publisher). `play()` does the waiting against a monotonic clock (injectable), so
timing errors do not accumulate. Timing: due_s = (stamp - t0) / rate + loop * loop_period, with
t0 = bag start + start_offset and loop_period = (span + loop_gap) / rate, where span is the time
from t0 to the last replayed message and loop_gap defaults to the median interval between
replayed messages (so a loop continues at the bag's cadence). rate <= 0 or inf: no waiting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from .bags import BagError, BagReader, MissingTopicError


@dataclass
class ReplayItem:
    topic: str  # topic to publish on (after remapping)
    msgtype: str  # e.g. "robofume_ros/msg/Observation"
    data: bytes  # serialized CDR
    stamp: int  # original bag timestamp, ns
    due_s: float  # wall seconds after replay start when it should go out
    wait_s: float  # wall seconds to wait after the previous item
    loop: int  # 0 for the first pass
    source_topic: str  # topic name in the bag


class ReplaySource:
    """Opens the bag(s) once, works out the replay window, iterates items."""

    def __init__(
        self,
        paths,
        topics: Optional[Sequence[str]] = None,
        remap: Optional[dict] = None,
        start_offset_s: float = 0.0,
        duration_s: Optional[float] = None,
        store=None,
    ):
        self.reader = BagReader(paths, store=store).open()
        have = self.reader.topics()
        if topics is not None:
            topics = list(topics)
            missing = [t for t in topics if t not in have]
            if missing:
                self.reader.close()
                raise MissingTopicError(f"replay topics {missing} not in {paths}; available: {sorted(have)}")
        self.topics = topics
        self.remap = dict(remap or {})
        bad = [k for k in self.remap if k not in have]
        if bad:
            self.reader.close()
            raise MissingTopicError(f"remap source topic(s) {bad} not in {paths}; available: {sorted(have)}")
        starts = [r.start_time for r in self.reader.readers if r.message_count]
        if not starts:
            self.reader.close()
            raise BagError(f"bag(s) {paths} hold no messages")
        self.bag_start = min(starts)
        self.bag_end = max(r.end_time for r in self.reader.readers if r.message_count) - 1
        if start_offset_s < 0:
            raise ValueError("start_offset_s must be >= 0")
        self.t0 = self.bag_start + int(round(start_offset_s * 1e9))
        if self.t0 > self.bag_end:
            self.reader.close()
            raise ValueError(
                f"start offset {start_offset_s} s is past the end of the bag "
                f"({(self.bag_end - self.bag_start) / 1e9:.3f} s long)"
            )
        self.stop = None if duration_s is None else self.t0 + int(round(duration_s * 1e9))
        # stamps of the replayed messages (index only: cheap) for span and loop gap
        stamps = [m.stamp for m in self._raw()]
        if not stamps:
            self.reader.close()
            raise BagError(f"no messages to replay in {paths} for topics {topics} after offset")
        self.stamps = np.asarray(stamps, np.int64)

    def _raw(self):
        return self.reader.messages(self.topics, start=self.t0, stop=self.stop)

    def close(self):
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def loop_period_ns(self, loop_gap_s: Optional[float] = None) -> int:
        span = int(self.stamps[-1] - self.t0)
        if loop_gap_s is None:
            d = np.diff(self.stamps)
            d = d[d > 0]
            gap = int(np.median(d)) if len(d) else 0
        else:
            gap = int(round(loop_gap_s * 1e9))
        return span + gap

    def items(
        self, rate: float = 1.0, loop: int | bool = False, loop_gap_s: Optional[float] = None
    ) -> Iterator[ReplayItem]:
        """loop: False/0 = once, True = forever, n = n passes in total."""
        fast = rate is None or rate <= 0 or math.isinf(rate)
        passes = math.inf if loop is True else max(1, int(loop or 1))
        period = self.loop_period_ns(loop_gap_s)
        prev_due = 0.0
        n = 0
        while n < passes:
            for m in self._raw():
                due = 0.0 if fast else ((m.stamp - self.t0) + n * period) / 1e9 / rate
                yield ReplayItem(
                    self.remap.get(m.topic, m.topic),
                    m.msgtype,
                    m.data,
                    m.stamp,
                    due,
                    max(0.0, due - prev_due),
                    n,
                    m.topic,
                )
                prev_due = due
            n += 1


def replay_iter(
    paths,
    rate: float = 1.0,
    loop: int | bool = False,
    start_offset_s: float = 0.0,
    topics: Optional[Sequence[str]] = None,
    remap: Optional[dict] = None,
    duration_s: Optional[float] = None,
    loop_gap_s: Optional[float] = None,
    store=None,
) -> Iterator[ReplayItem]:
    """Iterate a bag's messages with their replay schedule (see module doc). No sleeping."""
    src = ReplaySource(
        paths, topics=topics, remap=remap, start_offset_s=start_offset_s, duration_s=duration_s, store=store
    )
    try:
        yield from src.items(rate=rate, loop=loop, loop_gap_s=loop_gap_s)
    finally:
        src.close()


def play(
    items,
    publish: Callable[[ReplayItem], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    max_late_s: float = math.inf,
) -> dict:
    """Publish items at their due times against `clock` (absolute schedule: no drift).
    Items later than max_late_s are skipped (counted). Returns counts."""
    t_start = clock()
    sent = late = skipped = 0
    for it in items:
        if should_stop():
            break
        delay = t_start + it.due_s - clock()
        if delay > 0:
            sleep(delay)
        elif -delay > max_late_s:
            skipped += 1
            continue
        elif delay < -0.01:
            late += 1
        publish(it)
        sent += 1
    return {"sent": sent, "late": late, "skipped": skipped}
