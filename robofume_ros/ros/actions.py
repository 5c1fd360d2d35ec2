"""Clients of the graph's actions, from any machine on the ROS domain.

    robofume evaluate --remote [--policy CKPT] [--trials N] ...   the /evaluate action (evaluator_node)
    robofume retrain --remote [--steps N] ...                     the /retrain action (evaluator_node)
    robofume dataset collect demos|failures --remote ...          the /collect action (evaluator_node)
    robofume dataset collect demos|failures --remote --source teleop   by hand: /teleop/collect (teleop_node)

Feedback is printed after every trial; Ctrl-C cancels the goal (the server stops after the running
trial) and prints what was done.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def wait_for_action(node, client, server: str, timeout: float = 30.0, spin=None, resend_s: float = 1.0) -> bool:
    """Until the action `server` can hear `client`'s goal: False when it is not there in `timeout`.

    `wait_for_server` returns once this side has discovered the server's services, which can be
    before the server has matched this client: a goal request (or its answer) sent in between is
    never seen, and the client waits forever. So ask the server something harmless until it answers
    -- cancelling a goal id nobody has (answered "unknown goal", nothing cancelled) -- over the
    action's own services, asking again every `resend_s` (an unanswered ask is the same race).
    `spin(seconds)` spins the node when no executor thread does."""
    import uuid

    from action_msgs.srv import CancelGoal

    deadline = time.monotonic() + timeout
    if not client.wait_for_server(timeout_sec=timeout):
        return False
    ping = node.create_client(CancelGoal, f"{server.rstrip('/')}/_action/cancel_goal")
    try:
        req = CancelGoal.Request()
        req.goal_info.goal_id.uuid = list(uuid.uuid4().bytes)  # nobody's goal; a zero stamp: only this id
        while time.monotonic() < deadline:
            fut = ping.call_async(req)
            until = min(deadline, time.monotonic() + resend_s)
            while not fut.done() and time.monotonic() < until:
                spin(0.05) if spin else time.sleep(0.05)
            if fut.done():
                return True
        return False
    finally:
        node.destroy_client(ping)


def run_goal(action_type, server: str, goal, on_feedback, namespace: str = "", timeout: float = 30.0, what=""):
    """Send `goal` to the action `server` (resolved in `namespace`), print feedback through
    `on_feedback(feedback)`, wait for the result (Ctrl-C cancels the goal and waits for the server
    to stop). Returns (succeeded, result), or (False, None) when there is no server or it rejected."""
    import rclpy
    from action_msgs.msg import GoalStatus
    from rclpy.action import ActionClient
    from rclpy.executors import SingleThreadedExecutor

    from robofume_ros.interfaces import normalize_namespace

    rclpy.init()
    node = rclpy.create_node(
        f"{server.strip('/').replace('/', '_')}_client", namespace=normalize_namespace(namespace) or "/"
    )
    server = node.resolve_service_name(server)  # under the graph's namespace, as the server resolves it
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    client = ActionClient(node, action_type, server)
    try:
        if not wait_for_action(node, client, server, timeout, spin=lambda t: ex.spin_once(timeout_sec=t)):
            node_name = "teleop_node (teleop:=true)" if "teleop" in server else "evaluator_node"
            print(f"no {server} action server within {timeout:.0f} s: is {node_name} running?", file=sys.stderr)
            return False, None
        fut = client.send_goal_async(goal, feedback_callback=lambda msg: on_feedback(msg.feedback))
        ex.spin_until_future_complete(fut, timeout_sec=timeout)
        handle = fut.result()
        if handle is None or not handle.accepted:
            print(f"{server} rejected the goal (one goal at a time)", file=sys.stderr)
            return False, None
        res_fut = handle.get_result_async()
        try:
            while not res_fut.done():
                ex.spin_once(timeout_sec=0.1)
        except KeyboardInterrupt:
            print(f"cancelling {what or 'the goal'} ...", flush=True)
            handle.cancel_goal_async()
            deadline = time.monotonic() + 600
            while not res_fut.done() and time.monotonic() < deadline:
                ex.spin_once(timeout_sec=0.1)
        wrapped = res_fut.result()
        return wrapped.status == GoalStatus.STATUS_SUCCEEDED, wrapped.result
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def send(action_type, server: str, goal, line, ns, timeout: float, what: str):
    """`run_goal` from a CLI: prints `line(feedback)` for every feedback and the result's message.
    Returns (exit code: 0 succeeded, 1 refused / failed / cancelled, 2 no server; the result)."""
    ok, r = run_goal(
        action_type, server, goal, lambda f: print(line(f), flush=True), getattr(ns, "namespace", ""), timeout, what
    )
    if r is None:
        return 2, None
    print(r.message)
    return (0 if ok and r.ok else 1), r


def evaluate_remote(ns, server: str = "evaluate", timeout: float = 30.0) -> int:
    """Send `robofume evaluate`'s arguments as an /evaluate goal; 0 when it succeeded."""
    from robofume_ros.action import Evaluate

    if ns.data or ns.scene_seed is not None or ns.video or ns.tasks != ["forward", "backward"]:
        print("robofume evaluate --remote: --data, --scene-seed, --tasks and --video are the server's", file=sys.stderr)
        return 2
    goal = Evaluate.Goal(
        checkpoint=ns.policy or "",
        pair=ns.pair or "",
        trials=ns.trials,
        max_steps=ns.max_steps,
        seed=ns.seed,
        stochastic=ns.stochastic,
    )

    def line(f):
        return (
            f"[{f.trial}/{f.trials_total}] {f.task}: successes forward {f.forward_successes}, "
            f"backward {f.backward_successes}"
        )

    code, r = send(Evaluate, server, goal, line, ns, timeout, "after the running trial")
    if r is not None and ns.out and r.result_json:
        Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
        Path(ns.out).write_text(json.dumps(json.loads(r.result_json), indent=1))
    return code


def retrain_remote(ns, server: str = "retrain", timeout: float = 30.0) -> int:
    """Send `robofume retrain`'s arguments as a /retrain goal; 0 when it succeeded."""
    from robofume_ros.action import Retrain

    goal = Retrain.Goal(
        datasets=[str(d) for d in ns.data or []], out=ns.out or "", algo=ns.algo or "", steps=ns.steps, seed=ns.seed
    )

    def line(f):
        m = json.loads(f.metrics_json or "{}")
        return f"[{f.step}/{f.steps_total}] {f.steps_per_s:.1f} steps/s, Q on data {m.get('q_data', float('nan')):.1f}"

    return send(Retrain, server, goal, line, ns, timeout, "after the running update")[0]


def collect_remote(ns, server: str = "collect", timeout: float = 30.0) -> int:
    """Send `robofume dataset collect`'s arguments as a /collect goal (a scripted collection, or by
    hand with server teleop/collect); 0 when it succeeded."""
    from robofume_ros.action import Collect

    goal = Collect.Goal(kind=ns.kind, pair=ns.pair or "", episodes=ns.episodes, out=ns.out or "", seed=ns.seed)

    def line(f):
        return f"[{f.episodes}/{f.episodes_total}] {f.task}: {'kept' if f.kept else 'not kept'} ({f.attempts} attempts)"

    return send(Collect, server, goal, line, ns, timeout, "after the running attempt")[0]
