"""`robofume topic list|echo|hz|type`: watch any topic without ros2cli (generic over message types).

    robofume topic echo /reward            # YAML-like, one message per block, like ros2 topic echo
    robofume topic echo /reward --field probability --count 20
    robofume topic hz /reward              # rate, min/max/std period over a sliding window
Large arrays (image data) are summarised unless --full-arrays is given.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from robofume_ros.ros.messages import message_class


def to_yaml(msg, indent: int = 0, full_arrays: bool = False, max_items: int = 16) -> str:
    """A ROS message as the YAML ros2 topic echo prints (arrays longer than max_items summarised)."""
    pad = "  " * indent
    lines = []
    for field in msg.get_fields_and_field_types():
        value = getattr(msg, field)
        if hasattr(value, "get_fields_and_field_types"):
            lines.append(f"{pad}{field}:")
            lines.append(to_yaml(value, indent + 1, full_arrays, max_items))
            continue
        if isinstance(value, (bytes, bytearray)) or (hasattr(value, "__len__") and not isinstance(value, str)):
            seq = list(value)
            if seq and hasattr(seq[0], "get_fields_and_field_types"):
                lines.append(f"{pad}{field}:")
                for item in seq[: None if full_arrays else max_items]:
                    body = to_yaml(item, indent + 2, full_arrays, max_items).lstrip()
                    lines.append(f"{pad}- {body}")
                continue
            if not full_arrays and len(seq) > max_items:
                head = ", ".join(_fmt(v) for v in seq[:4])
                lines.append(f"{pad}{field}: [{head}, ...] ({len(seq)} items)")
            else:
                lines.append(f"{pad}{field}: [{', '.join(_fmt(v) for v in seq)}]")
            continue
        lines.append(f"{pad}{field}: {_fmt(value)}")
    return "\n".join(lines)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, str):
        return repr(v) if (not v or v.strip() != v or ":" in v) else v
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _wait_for_type(node, topic: str, timeout: float, spin) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        types = dict(node.get_topic_names_and_types())
        if topic in types:
            return types[topic][0]
        spin(0.1)
    raise SystemExit(f"topic {topic} not found within {timeout:.0f} s (is the graph running, same ROS_DOMAIN_ID?)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="robofume topic", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="topics and types in the graph")
    for name in ("echo", "hz", "type"):
        p = sub.add_parser(name)
        p.add_argument("topic")
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the topic to appear")
        if name == "echo":
            p.add_argument("--count", type=int, default=0, help="stop after N messages (0 = forever)")
            p.add_argument("--field", default="", help="print only this (dotted) field")
            p.add_argument("--full-arrays", action="store_true")
        if name == "hz":
            p.add_argument("--window", type=int, default=50, help="messages in the sliding window")
            p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = forever)")
    ns = ap.parse_args(argv)

    import rclpy
    from rclpy.executors import ExternalShutdownException

    from robofume_ros.ros import qos

    rclpy.init()
    node = rclpy.create_node(f"robofume_topic_{ns.cmd}", start_parameter_services=False)

    def spin(t):
        rclpy.spin_once(node, timeout_sec=t)

    try:
        if ns.cmd == "list":
            spin(1.0)
            for topic, types in sorted(node.get_topic_names_and_types()):
                print(f"{topic} [{', '.join(types)}]")
            return 0
        type_name = _wait_for_type(node, ns.topic, ns.timeout, spin)
        if ns.cmd == "type":
            print(type_name)
            return 0
        cls = message_class(type_name)
        received = []

        if ns.cmd == "echo":

            def on_msg(msg):
                received.append(1)
                if ns.field:
                    value = msg
                    for part in ns.field.split("."):
                        value = getattr(value, part)
                    print(
                        to_yaml(value, 0, ns.full_arrays)
                        if hasattr(value, "get_fields_and_field_types")
                        else _fmt(value),
                        flush=True,
                    )
                else:
                    print(to_yaml(msg, 0, ns.full_arrays) + "\n---", flush=True)

            node.create_subscription(cls, ns.topic, on_msg, qos.for_topic(ns.topic))
            while rclpy.ok() and (ns.count <= 0 or len(received) < ns.count):
                spin(0.1)
            return 0

        arrivals = []  # hz
        node.create_subscription(cls, ns.topic, lambda _m: arrivals.append(time.monotonic()), qos.for_topic(ns.topic))
        t0 = last_print = time.monotonic()
        while rclpy.ok() and (ns.duration <= 0 or time.monotonic() - t0 < ns.duration):
            spin(0.05)
            if time.monotonic() - last_print >= 1.0:
                last_print = time.monotonic()
                window = arrivals[-(ns.window + 1) :]
                if len(window) < 3:
                    print("no new messages" if not arrivals else "waiting for more messages", flush=True)
                    continue
                periods = [b - a for a, b in zip(window, window[1:])]
                mean = statistics.fmean(periods)
                print(
                    f"average rate: {1.0 / mean:.3f}\n\tmin: {min(periods):.3f}s max: {max(periods):.3f}s "
                    f"std dev: {statistics.pstdev(periods):.5f}s window: {len(window)}",
                    flush=True,
                )
        return 0
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
