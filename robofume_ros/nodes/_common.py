"""What every node shares: the main() wrapper (init, spin, clean shutdown) and throttled warnings."""

from __future__ import annotations

import sys
import time
import traceback
from typing import Callable


def run_node(make_node: Callable, args=None, executor_threads: int = 1) -> int:
    """rclpy.init, build the node (an rclpy Node subclass), spin until Ctrl-C/SIGTERM, call its
    close() if it has one, destroy it, shut down. Returns the process exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor

    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    code = 0
    try:
        node = make_node()
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
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    traceback.print_exc()
                    code = code or 1
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return code


class Throttle:
    """Log a message at most once per `period` seconds per key, counting what was suppressed."""

    def __init__(self, logger, period: float = 5.0):
        self.logger, self.period = logger, period
        self._last: dict = {}
        self._suppressed: dict = {}

    def warn(self, key: str, msg: str) -> None:
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
