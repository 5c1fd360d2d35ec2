"""Clients of the graph's actions, from any machine on the ROS domain.

    robofume evaluate --remote [--policy CKPT] [--trials N] ...   the /evaluate action (evaluator_node)

Feedback is printed after every trial; Ctrl-C cancels the goal (the server stops after the running
trial) and prints what was done.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def evaluate_remote(ns, server: str = "evaluate", timeout: float = 30.0) -> int:
    """Send `robofume evaluate`'s arguments as an /evaluate goal; 0 when it succeeded."""
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    from robofume_ros.action import Evaluate

    if ns.data or ns.scene_seed is not None or ns.video or ns.tasks != ["forward", "backward"]:
        print("robofume evaluate --remote: --data, --scene-seed, --tasks and --video are the server's", file=sys.stderr)
        return 2
    from robofume_ros.interfaces import normalize_namespace

    namespace = normalize_namespace(getattr(ns, "namespace", "") or "")
    rclpy.init()
    node = rclpy.create_node("evaluate_client", namespace=namespace or "/")
    server = node.resolve_service_name(server)  # under the graph's namespace, as the server resolves it
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    client = ActionClient(node, Evaluate, server)
    try:
        if not client.wait_for_server(timeout_sec=timeout):
            print(f"no {server} action server within {timeout:.0f} s: is evaluator_node running?", file=sys.stderr)
            return 2
        goal = Evaluate.Goal(
            checkpoint=ns.policy or "",
            pair=ns.pair or "",
            trials=ns.trials,
            max_steps=ns.max_steps,
            seed=ns.seed,
            stochastic=ns.stochastic,
        )

        def on_feedback(msg):
            f = msg.feedback
            print(
                f"[{f.trial}/{f.trials_total}] {f.task}: successes forward {f.forward_successes}, "
                f"backward {f.backward_successes}",
                flush=True,
            )

        fut = client.send_goal_async(goal, feedback_callback=on_feedback)
        ex.spin_until_future_complete(fut, timeout_sec=timeout)
        handle = fut.result()
        if handle is None or not handle.accepted:
            print(f"{server} rejected the goal (one evaluation at a time)", file=sys.stderr)
            return 2
        res_fut = handle.get_result_async()
        try:
            while not res_fut.done():
                ex.spin_once(timeout_sec=0.1)
        except KeyboardInterrupt:
            print("cancelling after the running trial ...", flush=True)
            handle.cancel_goal_async()
            deadline = time.monotonic() + 600
            while not res_fut.done() and time.monotonic() < deadline:
                ex.spin_once(timeout_sec=0.1)
        wrapped = res_fut.result()
        r = wrapped.result
        print(r.message)
        if ns.out and r.result_json:
            Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
            Path(ns.out).write_text(json.dumps(json.loads(r.result_json), indent=1))
        return 0 if wrapped.status == GoalStatus.STATUS_SUCCEEDED and r.ok else 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
