"""A person's reward overrides: the RewardOverride for a verdict, and `robofume override`, a
keyboard helper (the teleop node gives the same verdicts on joystick buttons).

    robofume override            s = success now, n = not a success, u = undo the last verdict, q = quit
    robofume override success    one verdict and exit (also: not-success, undo)

The task switcher applies them (and refuses one that names another episode); the learner relabels
stored episodes when a verdict changes; the recorder keeps /reward_override in the bag.
"""

from __future__ import annotations

import argparse
import sys
import time

VERDICT_KEYS = {"s": "success", "n": "not-success", "u": "undo"}


def verdict_code(name: str) -> int:
    from robofume_ros.msg import RewardOverride

    codes = {"success": RewardOverride.SUCCESS, "not-success": RewardOverride.NOT_SUCCESS, "undo": RewardOverride.UNDO}
    if name not in codes:
        raise ValueError(f"unknown verdict {name!r}; one of {', '.join(codes)}")
    return codes[name]


def override_message(phase, verdict: int, source: str, stamp):
    """The RewardOverride for `verdict` given the newest TaskPhase: SUCCESS / NOT_SUCCESS name the
    active episode, UNDO the one that ended last. None when there is nothing to undo yet."""
    from robofume_ros.msg import RewardOverride

    m = RewardOverride()
    m.header.stamp = stamp
    m.verdict, m.source = int(verdict), source
    if verdict == RewardOverride.UNDO:
        if not len(phase.recent_episodes):
            return None
        m.episode_index = int(phase.recent_episodes[-1])
    else:
        m.episode_index = int(phase.episode_index)
    return m


def _read_key() -> str:
    """One key press from the terminal (no Enter needed), or a line when stdin is not a terminal."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()[:1] or "q"
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        return sys.stdin.read(1)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="robofume override",
        description="Give the learned reward a person's verdict on the running episode "
        "(keys: s success now, n not a success, u undo the last verdict, q quit).",
    )
    ap.add_argument("verdict", nargs="?", choices=sorted(set(VERDICT_KEYS.values())), help="one verdict, then exit")
    ap.add_argument("--source", default="keyboard", help="who gives the verdicts (recorded with each)")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the task switcher")
    ap.add_argument("--namespace", default="", help="the graph's namespace (launched with namespace:=...)")
    ns = ap.parse_args(argv)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from robofume_ros.msg import RewardOverride, TaskPhase
    from robofume_ros.ros import graph, qos
    from robofume_ros.ros.discovery import wait_matched

    rclpy.init()
    from robofume_ros.interfaces import normalize_namespace

    node = rclpy.create_node("reward_override", namespace=normalize_namespace(ns.namespace) or "/")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    phases = []
    node.create_subscription(TaskPhase, graph.TOPICS["task_phase"], phases.append, qos.LATCHED)
    pub = node.create_publisher(RewardOverride, graph.TOPICS["reward_override"], qos.RELIABLE)
    try:
        deadline = time.monotonic() + ns.timeout
        while not phases and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        if not phases:
            print(
                f"no {node.resolve_topic_name(graph.TOPICS['task_phase'])} within {ns.timeout:.0f} s: is the graph running?",
                file=sys.stderr,
            )
            return 2
        wait_matched(node, pubs={pub: 1}, timeout=ns.timeout)
        if ns.verdict is None:
            print("s = success now, n = not a success, u = undo the last verdict, q = quit")
        while True:
            name = ns.verdict or VERDICT_KEYS.get(_read_key().lower())
            if name is None:
                break
            ex.spin_once(timeout_sec=0.05)  # the newest phase
            m = override_message(phases[-1], verdict_code(name), ns.source, node.get_clock().now().to_msg())
            if m is None:
                print("nothing to undo yet")
            else:
                pub.publish(m)
                print(f"{name}: episode {m.episode_index}")
            if ns.verdict:
                time.sleep(0.2)  # let the reliable writer deliver before the process exits
                break
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
