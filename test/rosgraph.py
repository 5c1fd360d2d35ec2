"""Helpers for tests that run real nodes in separate processes on an isolated ROS domain.

    with graph_under_test("sim", {"fast": "true"}, tmp_path) as g:   # nodes from robofume_ros.ros.graph
        probe = g.probe({"/observation": Observation})                # subscriber in this process
        probe.wait_for("/observation", 20, timeout=30)

Each graph gets its own ROS_DOMAIN_ID (never reused within a test session), discovery limited
to this host, and ROS logs in the test's temp dir. Nodes are stopped (SIGINT, SIGTERM, SIGKILL)
even when the test fails.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path

from robofume_ros.ros import graph as graph_mod
from robofume_ros.ros.runner import GraphRunner
from robofume_ros.ros.gate import COMMAND_SOURCES

_domains = itertools.count(1 + (os.getpid() * 7) % 60)


def next_domain_id() -> int:
    return 1 + next(_domains) % 100


class Probe:
    """An rclpy node in its own context (same domain as the graph) that records messages."""

    def __init__(self, domain_id: int, name: str = "probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.messages: dict[str, list] = {}
        self.subscriptions: dict[str, object] = {}
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self):
        while not self._stop and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - context shut down under us
                break

    def subscribe(self, topic: str, msg_type, qos=None):
        from robofume_ros.ros import qos as q

        self.messages.setdefault(topic, [])
        profile = qos or q.for_topic(topic)

        def cb(msg, t=topic):
            with self.lock:
                self.messages[t].append((time.monotonic(), msg))

        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, cb, profile)

    def wait_subscribed(self, publishers: dict, timeout: float = 30.0) -> None:
        """Wait until the probe's own subscriptions have matched at least `publishers[topic]`
        publishers each (what it hears from then on is not lost to discovery)."""
        from robofume_ros.ros.discovery import wait_matched

        wait_matched(None, subs={self.subscriptions[t]: n for t, n in publishers.items()}, timeout=timeout)

    def publisher(self, topic: str, msg_type, qos=None, subscribers: int = 1, wait_s: float = 30.0):
        """A publisher on the probe's node, returned once `subscribers` subscriptions of the graph
        have matched it (messages published before discovery completes are lost); raises
        TimeoutError naming the topic otherwise."""
        from robofume_ros.ros import qos as q
        from robofume_ros.ros.discovery import wait_matched

        pub = self.node.create_publisher(msg_type, topic, qos or q.for_topic(topic))
        wait_matched(None, pubs={pub: subscribers}, timeout=wait_s)  # the probe's thread spins
        return pub

    def wait_graph(
        self, subscribers: dict | None = None, publishers: dict | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until each topic has at least its count of subscriptions / publishers anywhere in
        the graph (between other nodes too, e.g. the recorder discovering a node's topic)."""
        deadline = time.monotonic() + timeout
        while True:
            missing = [
                f"{t}: {self.node.count_subscribers(t)} of {n} subscriptions"
                for t, n in (subscribers or {}).items()
                if self.node.count_subscribers(t) < n
            ]
            missing += [
                f"{t}: {self.node.count_publishers(t)} of {n} publishers"
                for t, n in (publishers or {}).items()
                if self.node.count_publishers(t) < n
            ]
            if not missing:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError("graph incomplete: " + "; ".join(missing))
            time.sleep(0.05)

    def call(self, service: str, srv_type, request=None, timeout: float = 60.0, resend_s: float | None = None):
        """Call a service of the graph; the response, or AssertionError naming the service.
        `resend_s` (for queries only: a call may then arrive twice): send the request again after
        that long without an answer. A service is "available" once the client matched the server,
        which may not yet have matched the client's request writer: a request it never sees is
        never answered."""
        client = self.node.create_client(srv_type, service)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise AssertionError(f"service {service} not available within {timeout} s")
            done = threading.Event()
            deadline, sent = time.monotonic() + timeout, []
            while True:
                sent.append(client.call_async(request if request is not None else srv_type.Request()))
                sent[-1].add_done_callback(lambda _f: done.set())
                left = max(0.0, deadline - time.monotonic())
                if done.wait(min(left, resend_s) if resend_s else left):
                    return next(f for f in sent if f.done()).result()
                if time.monotonic() >= deadline:
                    raise AssertionError(f"no answer from {service} within {timeout} s")
        finally:
            self.node.destroy_client(client)

    def get(self, topic: str) -> list:
        with self.lock:
            return [m for _, m in self.messages.get(topic, [])]

    def timed(self, topic: str) -> list:
        with self.lock:
            return list(self.messages.get(topic, []))

    def wait_for(self, topic: str, n: int, timeout: float, pred=None) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.get(topic)
            if pred is not None:
                msgs = [m for m in msgs if pred(m)]
            if len(msgs) >= n:
                return msgs
            time.sleep(0.05)
        raise AssertionError(f"only {len(msgs)} of {n} messages on {topic} within {timeout} s")

    def close(self):
        self._stop = True
        self.thread.join(timeout=2)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


class GraphUnderTest:
    def __init__(self, runner: GraphRunner, domain_id: int):
        self.runner, self.domain_id = runner, domain_id
        self.probes: list[Probe] = []

    def probe(self, topics: dict | None = None) -> Probe:
        p = Probe(self.domain_id, name=f"probe{len(self.probes)}")
        for topic, typ in (topics or {}).items():
            p.subscribe(topic, typ)
        self.probes.append(p)
        return p

    def assert_alive(self):
        deaths = self.runner.poll()
        assert not deaths, "\n".join(d.message() for d in deaths)
        dead = set(self.runner.procs) - set(self.runner.running())
        assert not dead, f"nodes not running: {dead}"

    def wait_active(self, manager: str = "/lifecycle_manager", timeout: float = 300.0) -> None:
        """Until the lifecycle manager says every managed node is active (its ~/is_active)."""
        from std_srvs.srv import Trigger

        probe = self.probe({})
        deadline, message = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            res = probe.call(
                f"{manager}/is_active", Trigger, timeout=max(1.0, deadline - time.monotonic()), resend_s=2.0
            )
            if res.success:
                return
            message = res.message
            self.assert_alive()
            time.sleep(0.2)
        raise AssertionError(f"managed nodes not all active within {timeout:.0f} s: {message}")

    def log(self, node: str) -> str:
        return (self.runner.run_dir / "logs" / f"{node}.log").read_text(errors="replace")


@contextlib.contextmanager
def graph_under_test(
    graph: str, args: dict, tmp_path: Path, only: tuple | None = None, specs=None, wait_active: bool = True
):
    """Start the nodes of `graph` (optionally only those named in `only`), wait until the lifecycle
    manager has every managed node active (`wait_active`; a robot side may publish its state
    before it takes commands), yield, always stop."""
    domain = next_domain_id()
    specs = specs if specs is not None else graph_mod.nodes(graph, args)
    for s in specs:  # the tests' probes (probe0, probe1, ...) may command the arm like a policy
        if s.name in ("sim", "arm_bridge") and "allowed_command_nodes" not in s.parameters:
            s.parameters["allowed_command_nodes"] = list(COMMAND_SOURCES) + ["probe*"]
    if only is not None:
        specs = [s for s in specs if s.name in only]
    env = graph_mod.ros_env(domain_id=domain, log_dir=str(tmp_path / "ros_logs"), localhost_only=True)
    runner = GraphRunner(specs, tmp_path / "run", env)
    g = GraphUnderTest(runner, domain)
    try:
        runner.start()
        manager = next((s for s in runner.specs if s.executable == "lifecycle_manager_node"), None)
        if wait_active and manager is not None and manager.parameters.get("autostart", True):
            g.wait_active(manager.fqn)
        yield g
    finally:
        for p in g.probes:
            p.close()
        runner.stop(sigint_timeout=6.0, sigterm_timeout=3.0)
