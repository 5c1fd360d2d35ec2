"""A message that passes validation and still makes a callback raise is quarantined: skipped,
logged with a summary of its content and counted; the node keeps taking the next messages
(`pytest -k poison`)."""

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import Probe, next_domain_id

from robofume_ros.ros.node import Throttle, quarantine, summarize


class _Log:
    def __init__(self):
        self.lines = []

    def warning(self, m):
        self.lines.append(m)


def test_poison_that_raises_in_a_callback_is_quarantined_and_the_node_goes_on():
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    domain = next_domain_id()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    node = rclpy.create_node("victim", context=ctx)
    node.throttle = Throttle(_Log(), period=0.0)
    got = []

    def on_msg(m):
        if m.data == "boom":
            raise ValueError("cannot digest boom")
        got.append(m.data)

    node.create_subscription(String, "/early", on_msg, 10)  # before quarantine() ...
    quarantine(node)
    node.create_subscription(String, "/late", lambda m, info: on_msg(m), 10)  # ... and after, with info
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = False

    def spin():
        while not stop:
            ex.spin_once(timeout_sec=0.05)  # a raise here would end the thread: the test would hang

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    probe = Probe(domain)
    try:
        for topic in ("/early", "/late"):
            pub = probe.publisher(topic, String, subscribers=1)
            for data in ("a", "boom", "b"):
                pub.publish(String(data=data))
        deadline = time.monotonic() + 20
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(got) == ["a", "a", "b", "b"] and t.is_alive()  # both topics, in any order
        assert node.throttle.counts == {"quarantined:/early": 1, "quarantined:/late": 1}
        line = node.throttle.logger.lines[0]
        assert "message on /early quarantined, skipped: ValueError: cannot digest boom" in line
        assert "String data='boom'" in line
    finally:
        stop = True
        t.join(5)
        probe.close()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)


def test_summaries_name_fields_and_sizes_not_contents():
    from robofume_ros.msg import Observation

    o = Observation()
    o.proprio = [0.1, 0.2, 0.3]
    o.instruction = "x" * 200
    s = summarize(o)
    assert s.startswith("Observation ") and "proprio=<3 items>" in s and "instruction='xxx" in s
    assert len(s) < 600 and summarize(b"\x00" * 10) == "10 raw bytes"


_SLOW_CLOSE_NODE = """
import sys, time
from pathlib import Path
from rclpy.node import Node
from robofume_ros.ros.node import run_node

class Slow(Node):
    def __init__(self):
        super().__init__("slow_close")
        Path(sys.argv[1] + ".up").write_text("up")

    def close(self):
        time.sleep(1.5)  # e.g. the learner writing its checkpoint
        Path(sys.argv[1]).write_text("saved")

raise SystemExit(run_node(Slow, []))
"""


def test_a_second_ctrl_c_does_not_cut_short_what_a_node_saves_on_close(tmp_path):
    """Ctrl-C reaches the runner and every node at once, and the runner then sends its own
    SIGINT: a node already closing finishes close() and exits cleanly."""
    import os
    import signal
    import subprocess
    import sys

    marker = tmp_path / "saved"
    env = dict(os.environ, ROS_DOMAIN_ID=str(next_domain_id()), ROS_LOG_DIR=str(tmp_path / "logs"))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CLOSE_NODE, str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "saved.up").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # spinning
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # inside close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    assert marker.read_text() == "saved"
