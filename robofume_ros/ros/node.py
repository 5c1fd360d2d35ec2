"""What every node shares: the main() wrapper (init, spin, clean shutdown) and throttled warnings."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from typing import Callable

from robofume_ros.ros.params import knob


def run_node(make_node: Callable, args=None, executor_threads: int = 1) -> int:
    """rclpy.init, build the node (an rclpy Node subclass), spin until Ctrl-C/SIGTERM, call its
    close() if it has one, destroy it, shut down. Returns the process exit code. A managed node
    (ros/lifecycle.py) with `autostart` configures and activates itself first (a failed configure
    ends the process with exit code 1); without it, it waits for the lifecycle manager."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    code = 0
    try:
        node = make_node()
        quarantine(node)
        managed = callable(getattr(node, "autostart", None))  # a ManagedNode
        if managed and node.p.autostart and not node.autostart():
            raise SystemExit(1)  # configure failed: the node logged why
        executor = MultiThreadedExecutor(executor_threads) if executor_threads > 1 else SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except SystemExit as e:
        code = int(e.code or 0)
    except Exception as e:  # noqa: BLE001 - report why the node died, then exit non-zero
        if not rclpy.ok():
            # the context was already shut down (SIGINT/SIGTERM): an in-flight take can fail in
            # rclpy while it tears down; that is the requested stop, not a crash
            print(f"[run_node] ignoring {type(e).__name__} raised during shutdown: {e}", file=sys.stderr)
        else:
            traceback.print_exc()
            code = 1
    finally:
        # a Ctrl-C reaches the runner and every node at once (one process group), and the runner
        # then asks each node again: a second SIGINT must not cut short what close() saves
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            close = getattr(node, "release", None) or getattr(node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001 - a failing close must not skip destroy_node
                    traceback.print_exc()
                    code = code or 1
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


def summarize(msg, width: int = 48) -> str:
    """A one-line summary of a message for a log: its type, then each field (sequences and bytes
    by their length, strings and numbers cut to `width` characters)."""
    if isinstance(msg, (bytes, bytearray, memoryview)):
        return f"{len(msg)} raw bytes"
    fields = getattr(msg, "get_fields_and_field_types", None)
    if fields is None:
        return repr(msg)[:width]
    parts = []
    for name in fields():
        v = getattr(msg, name, None)
        if hasattr(v, "get_fields_and_field_types"):
            s = "{" + summarize(v, width // 2).split(" ", 1)[-1] + "}"
        elif (
            isinstance(v, (bytes, bytearray, memoryview, list, tuple))
            or hasattr(v, "__len__")
            and not isinstance(v, str)
        ):
            s = f"<{len(v)} items>"
        else:
            s = repr(v)
        parts.append(f"{name}={s[:width]}")
    return f"{type(msg).__name__} " + ", ".join(parts)


def quarantine(node) -> None:
    """Guard every subscription callback of `node`, present and future: a message that passed the
    node's own validation and still makes its callback raise is skipped, logged (throttled per topic)
    with a summary of its content, and counted (/diagnostics `warnings/quarantined:<topic>`), so one
    bad message never takes the node down and, replayed after a restart, down again."""
    throttle = getattr(node, "throttle", None) or Throttle(node.get_logger())

    def guard(sub):
        cb, with_info = sub.callback, sub._callback_type.name == "WithMessageInfo"
        topic = sub.topic_name

        def report(msg, e):
            throttle.warn(
                f"quarantined:{topic}",
                f"message on {topic} quarantined, skipped: {type(e).__name__}: {e} [{summarize(msg)}]",
            )

        if with_info:

            def guarded(msg, info):
                try:
                    return cb(msg, info)
                except Exception as e:  # noqa: BLE001 - the quarantine: any failure skips this message
                    report(msg, e)
        else:

            def guarded(msg):
                try:
                    return cb(msg)
                except Exception as e:  # noqa: BLE001 - the quarantine: any failure skips this message
                    report(msg, e)

        sub.callback = guarded
        return sub

    for sub in list(node.subscriptions):
        guard(sub)
    create = node.create_subscription

    def create_subscription(*args, **kwargs):
        return guard(create(*args, **kwargs))

    node.create_subscription = create_subscription


class Throttle:
    """Log a message at most once per `period` seconds per key, counting what was suppressed.
    `counts` holds every event per key (logged or not): what /diagnostics reports as warnings."""

    def __init__(self, logger, period: float = 5.0):
        self.logger, self.period = logger, period
        self._last: dict = {}
        self._suppressed: dict = {}
        self.counts: Counter = Counter()

    def warn(self, key: str, msg: str) -> None:
        self.counts[key] += 1
        now = time.monotonic()
        if now - self._last.get(key, -1e9) >= self.period:
            n = self._suppressed.pop(key, 0)
            self.logger.warning(msg + (f" ({n} similar suppressed)" if n else ""))
            self._last[key] = now
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1


def ground_truth_msgs(world, obs, stamp) -> list:
    """GroundTruth messages for both tasks of a simulated pair at one frame (the active task
    first), so an episode that just ended still has its own task's verdict on the switch frame."""
    from robofume_ros.msg import GroundTruth

    out = []
    for phase in (world.phase, "backward" if world.phase == "forward" else "forward"):
        gt = GroundTruth()
        gt.header.stamp = stamp
        gt.task = world.tasks[0 if phase == "forward" else 1]
        gt.success = bool(obs.success) if phase == world.phase else bool(world.success_of(phase))
        gt.sim_step = int(obs.sim_step)
        out.append(gt)
    return out


OK, WARN, ERROR = 0, 1, 2  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR"}
_RULE = re.compile(r"^\s*([^\s<>]+)\s*([<>])\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


def parse_rules(rules) -> list[tuple[str, str, float]]:
    """'KEY > NUMBER' / 'KEY < NUMBER' rules over a node's /diagnostics values -> (key, op, limit);
    ValueError naming the first one that is not such a rule."""
    out = []
    for r in rules:
        m = _RULE.match(str(r))
        if m is None:
            raise ValueError(f"diagnostics rule {r!r} is not 'KEY > NUMBER' or 'KEY < NUMBER'")
        out.append((m[1], m[2], float(m[3])))
    return out


def apply_rules(level: int, message: str, values: dict, warn=(), error=()) -> tuple[int, str]:
    """The node's own (level, message) raised by a user's thresholds: each `warn` / `error` rule
    that holds for the values raises the level to WARN / ERROR and is named in the message. A rule
    whose key the node does not report (yet: a latency before the first command) changes nothing
    and is named too, so a misspelt key shows."""
    fired, absent = [], []
    for rules, lvl in ((error, ERROR), (warn, WARN)):
        for key, op, limit in parse_rules(rules):
            try:
                x = float(values[key])
            except (KeyError, TypeError, ValueError):
                absent.append(key)
                continue
            if (x > limit) if op == ">" else (x < limit):
                fired.append(f"{LEVEL_NAMES[lvl]} {key} {x:.4g} {op} {limit:g}")
                level = max(level, lvl)
    if fired:
        message += " | " + "; ".join(fired)
    if absent:
        message += f" | rules on values not reported: {', '.join(absent)}"
    return level, message


RULES_HELP = (
    "/diagnostics {} when one of these holds over this node's reported values: 'KEY > NUMBER' or "
    "'KEY < NUMBER', KEY as in `robofume topic echo /diagnostics` (e.g. 'compute_ms/p95 > 50', "
    "'inference_hz < 5', 'warnings/quarantined:/observation > 0')"
)


@dataclass
class DiagnosticsParams:
    """Thresholds a user sets on any node's /diagnostics values (a node may give defaults)."""

    diagnostics_warn: list = knob([], RULES_HELP.format("WARN"), runtime=True, check=parse_rules)
    diagnostics_error: list = knob([], RULES_HELP.format("ERROR"), runtime=True, check=parse_rules)


class Diagnostics:
    """Publishes the node's health on /diagnostics (diagnostic_msgs/DiagnosticArray), as Nav2 and
    ros2_control nodes do, once per `period_s`: `status()` returns (level, message, {key: value});
    the throttled-warning counts (dropped and refused inputs, by kind) are added as `warnings/<key>`,
    then the user's thresholds on these values apply (DiagnosticsParams, `apply_rules`).
    `rate(name, count)` turns a running counter into a per-second rate between two reports.
    `ros2 topic echo /diagnostics`, rqt_robot_monitor and Foxglove show it."""

    def __init__(self, node, status: Callable, throttle: Throttle | None = None, period_s: float = 1.0):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.clock import Clock, ClockType

        self.node, self.status, self.throttle = node, status, throttle
        from robofume_ros.interfaces import TOPICS

        self.pub = node.create_publisher(DiagnosticArray, TOPICS["diagnostics"], 10)
        self._rates: dict = {}
        self._heard: dict = {}  # input -> monotonic time its last message arrived
        ns = node.get_namespace().rstrip("/")
        self.name = f"robofume_ros{ns}/{node.get_name()}"
        # a steady timer: with use_sim_time the report still comes when the sim clock stops
        node.create_timer(period_s, self.publish, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def rate(self, name: str, count: int) -> float:
        now = time.monotonic()
        t0, c0 = self._rates.get(name, (now, count))
        self._rates[name] = (now, count)
        return (count - c0) / (now - t0) if now > t0 else 0.0

    def heard(self, what: str) -> None:
        """An input (a topic name) delivered a message now: its silence is reported as
        `input_age_s/<what>`, and an active managed node whose input stays silent longer than its
        `input_timeout_s` turns ERROR."""
        self._heard[what] = time.monotonic()

    def restart_silence(self) -> None:
        """Count every input's silence from now (a node that was inactive heard nothing by design)."""
        now = time.monotonic()
        self._heard = dict.fromkeys(self._heard, now)

    def _silence(self, level: int, message: str, values: dict) -> tuple[int, str]:
        now = time.monotonic()
        ages = {what: now - t for what, t in self._heard.items()}
        values.update({f"input_age_s/{what.lstrip('/')}": round(age, 2) for what, age in ages.items()})
        timeout = float(getattr(getattr(self.node, "p", None), "input_timeout_s", 0.0) or 0.0)
        if timeout > 0 and getattr(self.node, "active", False):
            silent = [f"no {what} for {age:.1f} s" for what, age in ages.items() if age > timeout]
            if silent:
                level = ERROR
                message += f" | ERROR {'; '.join(silent)} (input_timeout_s {timeout:g})"
        return level, message

    def publish(self) -> None:
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        try:
            level, message, values = self.status()
        except Exception as e:  # noqa: BLE001 - a failing report is itself the report
            level, message, values = ERROR, f"diagnostics failed: {type(e).__name__}: {e}", {}
        values = dict(values)
        level, message = self._silence(level, message, values)
        if self.throttle is not None:
            values.update({f"warnings/{k}": v for k, v in sorted(self.throttle.counts.items())})
        p = getattr(self.node, "p", None)  # its params, once declared (DiagnosticsParams)
        warn, error = getattr(p, "diagnostics_warn", ()), getattr(p, "diagnostics_error", ())
        if warn or error:
            level, message = apply_rules(level, message, values, warn, error)
        st = DiagnosticStatus()
        st.level = bytes([int(level)])
        st.name, st.message, st.hardware_id = self.name, message, ""
        st.values = [KeyValue(key=str(k), value=_fmt(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.node.get_clock().now().to_msg()
        arr.status = [st]
        self.pub.publish(arr)


class NewestWorker:
    """A thread that runs `work(item)` on the newest item handed to it by `put()`, off the executor:
    an item still waiting is replaced by a newer one (`put` then returns True). Used for the
    reward's inference (newest frame) and the policy's weight loading (newest weights)."""

    def __init__(self, work: Callable, name: str):
        self._work, self._item, self._stop = work, None, False
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def put(self, item) -> bool:
        with self._cv:
            replaced = self._item is not None
            self._item = item
            self._cv.notify()
        return replaced

    def stop(self, timeout: float = 10.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._item is None and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                item, self._item = self._item, None
            self._work(item)


def ask_for_shared_features(node) -> None:
    """Tell the camera that this node can use the image features it computes once per frame (a
    subscription on the features_wanted topic, which the camera counts; nothing is ever sent)."""
    from std_msgs.msg import Empty

    from robofume_ros.ros import graph

    node.create_subscription(Empty, graph.TOPICS["features_wanted"], lambda _m: None, 1)


def quantiles(values) -> dict:
    """p50 / p95 / p99 / max / n of a window of latencies (empty: {})."""
    if not values:
        return {}
    lat = sorted(values)

    def q(f):
        return lat[min(len(lat) - 1, int(f * len(lat)))]

    return {"p50": q(0.5), "p95": q(0.95), "p99": q(0.99), "max": lat[-1], "n": len(lat)}


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)
