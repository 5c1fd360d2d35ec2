"""What the benchmarks that run a graph share (soak.py, bench_fleet.py): their own ROS node in its
own context on the graph's domain, spun in a thread, and the graph's node processes by name."""

from __future__ import annotations

import threading


class BenchNode:
    """Subclasses create their subscriptions in __init__ after calling this one, then `start()`."""

    def __init__(self, domain: int, name: str):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.rclpy = rclpy
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.stop = False
        self.thread = threading.Thread(target=self.spin, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def spin(self) -> None:
        while not self.stop:
            self.executor.spin_once(timeout_sec=0.1)

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.ctx)


def node_processes(root_pid: int) -> dict:
    """{node key (robot1/policy, learner): psutil.Process} of a runner's node processes."""
    import psutil

    out = {}
    try:
        children = psutil.Process(root_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for p in children:
        try:
            cmd = p.cmdline()
        except psutil.Error:
            continue
        node = next((c.split(":=", 1)[1] for c in cmd if c.startswith("__node:=")), None)
        ns = next((c.split(":=", 1)[1] for c in cmd if c.startswith("__ns:=")), "")
        if node:
            out[f"{ns.strip('/')}/{node}".lstrip("/")] = p
    return out
