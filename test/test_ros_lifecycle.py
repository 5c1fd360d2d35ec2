"""Managed (lifecycle) nodes and the lifecycle manager, across processes (tiny models).

- every managed node (reward, learner, policy, task switcher, sim) goes through configure / activate / deactivate /
  cleanup by lifecycle service calls, and acts only while active;
- a policy whose checkpoint does not load stays unconfigured with its reason on /diagnostics, no
  command is published and the arm does not move, the rest of the graph comes up in order (the
  robot side last), and the manager's retry brings the policy up once the checkpoint is good.
"""

from __future__ import annotations

import shutil
import time

import pytest

pytest.importorskip("rclpy")

from rosgraph import graph_under_test
from test_ros_finetune import finetune_specs

CONFIGURE, CLEANUP, ACTIVATE, DEACTIVATE = 1, 2, 3, 4  # lifecycle_msgs/Transition ids
UNCONFIGURED, INACTIVE, ACTIVE = 1, 2, 3  # lifecycle_msgs/State ids


def _state(probe, node: str) -> int:
    from lifecycle_msgs.srv import GetState

    # a query: asked again every 5 s, as a just-matched server may never see the first request
    return probe.call(f"/{node}/get_state", GetState, resend_s=5.0).current_state.id


def _change(probe, node: str, transition: int) -> bool:
    from lifecycle_msgs.srv import ChangeState

    req = ChangeState.Request()
    req.transition.id = transition
    return probe.call(f"/{node}/change_state", ChangeState, req, timeout=300).success


def _count_after(probe, topic: str, seconds: float, grace: float = 0.5) -> int:
    """Messages on `topic` in `seconds` after a `grace` for what was in flight."""
    time.sleep(grace)
    n0 = len(probe.get(topic))
    time.sleep(seconds)
    return len(probe.get(topic)) - n0


def _manager_status(probe):
    for arr in reversed(probe.get("/diagnostics")):
        for s in arr.status:
            if s.name == "robofume_ros/lifecycle_manager":
                return s
    return None


def _node_status(probe, name):
    for arr in reversed(probe.get("/diagnostics")):
        for s in arr.status:
            if s.name == f"robofume_ros/{name}":
                return {kv.key: kv.value for kv in s.values}
    return {}


def test_managed_nodes_act_only_while_active_through_every_transition(tmp_path, models):
    """The manager is told not to start (autostart false), so this test drives each managed node
    by its lifecycle services, as `ros2 lifecycle set` would: nothing moves, scores or trains
    before activation, and each deactivation stops exactly that node's output."""
    from diagnostic_msgs.msg import DiagnosticArray

    from robofume_ros.msg import ArmCommand, Reward, RobotState, TaskPhase

    specs, by = finetune_specs(tmp_path, models)
    by["lifecycle_manager"].parameters["autostart"] = False
    with graph_under_test("finetune", {}, tmp_path, specs=specs, wait_active=False) as g:
        probe = g.probe(
            {
                "/robot/state": RobotState,
                "/robot/command": ArmCommand,
                "/reward": Reward,
                "/task_phase": TaskPhase,
                "/diagnostics": DiagnosticArray,
            }
        )
        managed = ["reward", "learner", "policy", "task_switcher", "sim"]
        for n in managed:  # up, waiting to be configured: no frames, no commands, no verdicts
            assert _state(probe, n) == UNCONFIGURED
        assert not probe.get("/robot/state") and not probe.get("/robot/command") and not probe.get("/reward")
        for n in managed:
            assert _change(probe, n, CONFIGURE), n
            assert _state(probe, n) == INACTIVE
        assert _count_after(probe, "/robot/state", 1.0) == 0  # configured, not active: the sim does not step
        for n in managed:
            assert _change(probe, n, ACTIVATE), n
            assert _state(probe, n) == ACTIVE
        probe.wait_for("/robot/command", 20, timeout=60)
        probe.wait_for("/reward", 10, timeout=60)

        # the policy deactivated: no command, while the sim goes on stepping (lockstep holds the arm
        # after its timeout)
        assert _change(probe, "policy", DEACTIVATE)
        assert _count_after(probe, "/robot/command", 3.0) == 0
        assert _count_after(probe, "/robot/state", 3.0) > 0
        # cleaned up (the model freed), configured and activated again: it acts again
        assert _change(probe, "policy", CLEANUP) and _state(probe, "policy") == UNCONFIGURED
        assert _change(probe, "policy", CONFIGURE) and _change(probe, "policy", ACTIVATE)
        n = len(probe.get("/robot/command"))
        probe.wait_for("/robot/command", n + 10, timeout=60)

        # the reward deactivated: no verdicts
        assert _change(probe, "reward", DEACTIVATE)
        assert _count_after(probe, "/reward", 2.0) == 0
        assert _change(probe, "reward", ACTIVATE)
        n = len(probe.get("/reward"))
        probe.wait_for("/reward", n + 5, timeout=60)

        # the learner deactivated: it keeps storing what arrives but makes no update
        def learner_diag():
            probe.wait_for("/diagnostics", 1, timeout=10)
            time.sleep(1.5)  # a report made after the change
            return _node_status(probe, "learner")

        probe.wait_for(
            "/diagnostics",
            1,
            timeout=120,
            pred=lambda a: any(
                s.name == "robofume_ros/learner"
                and int(dict((kv.key, kv.value) for kv in s.values).get("updates", 0)) > 0
                for s in a.status
            ),
        )
        assert _change(probe, "learner", DEACTIVATE)
        before = learner_diag()
        time.sleep(3.0)
        after = learner_diag()
        assert after["lifecycle_state"] == "inactive"
        assert after["updates"] == before["updates"], (before, after)
        assert _change(probe, "learner", ACTIVATE)

        # the task switcher deactivated: the episode's clock stops while the frames go on
        def clock():
            n = len(probe.get("/task_phase"))
            probe.wait_for("/task_phase", n + 1, timeout=10)  # republished once a second
            ph = probe.get("/task_phase")[-1]
            return ph.episode_index, ph.steps_in_episode

        assert _change(probe, "task_switcher", DEACTIVATE)
        time.sleep(0.5)
        stopped = clock()
        assert _count_after(probe, "/robot/state", 2.0) > 0 and clock() == stopped
        assert _change(probe, "task_switcher", ACTIVATE)
        deadline = time.monotonic() + 30
        while clock() == stopped and time.monotonic() < deadline:
            pass
        assert clock() != stopped, "the activated switcher does not count ticks"

        # the sim deactivated: it stops stepping
        assert _change(probe, "sim", DEACTIVATE)
        assert _count_after(probe, "/robot/state", 2.0) == 0
        assert _change(probe, "sim", ACTIVATE)
        n = len(probe.get("/robot/state"))
        probe.wait_for("/robot/state", n + 5, timeout=60)
        st = _manager_status(probe)
        assert st is not None and "not started" in st.message  # it left the nodes to the test
        g.assert_alive()


def test_a_policy_that_fails_to_load_stays_unconfigured_and_the_arm_never_moves(tmp_path, models):
    """A corrupt policy checkpoint: the policy stays unconfigured with its reason on /diagnostics (its
    own and the manager's, ERROR), no command is ever published and the simulator, held back until
    its policy acts, never steps: the arm does not move. The reward and the learner come up. Once
    the checkpoint is good, the manager's retry configures and activates the policy, then the
    simulator, and the arm is driven."""
    from diagnostic_msgs.msg import DiagnosticArray
    from std_srvs.srv import Trigger

    from robofume_ros.msg import ArmCommand, RobotState

    specs, by = finetune_specs(tmp_path, models)
    bad = tmp_path / "policy_corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint" * 10)
    by["policy"].parameters["checkpoint"] = str(bad)
    by["lifecycle_manager"].parameters["retry_s"] = 1.0
    with graph_under_test("finetune", {}, tmp_path, specs=specs, wait_active=False) as g:
        probe = g.probe({"/robot/state": RobotState, "/robot/command": ArmCommand, "/diagnostics": DiagnosticArray})
        for n in ("reward", "learner"):
            deadline = time.monotonic() + 300
            while _state(probe, n) != ACTIVE and time.monotonic() < deadline:
                time.sleep(0.5)
            assert _state(probe, n) == ACTIVE, n
        probe.wait_for(
            "/diagnostics",
            1,
            timeout=60,
            pred=lambda a: any(
                s.name == "robofume_ros/lifecycle_manager"
                and s.level == bytes([2])
                and "/policy failed to configure" in s.message
                and str(bad) in s.message
                for s in a.status
            ),
        )
        assert probe.wait_for(
            "/diagnostics",
            1,
            timeout=30,
            pred=lambda a: any(s.name == "robofume_ros/policy" and "configure failed" in s.message for s in a.status),
        )
        assert _state(probe, "policy") == UNCONFIGURED
        assert _state(probe, "sim") == INACTIVE  # configured, held back: it never steps
        res = probe.call("/lifecycle_manager/is_active", Trigger, resend_s=5.0)
        assert not res.success and "/policy: unconfigured (configure failed)" in res.message, res.message
        assert "/sim: inactive (waiting for /policy, /task_switcher)" in res.message, res.message
        time.sleep(3.0)
        assert not probe.get("/robot/command") and not probe.get("/robot/state"), "the arm was driven without a policy"

        # the checkpoint is repaired: the manager's retry brings the policy up, then the simulator
        shutil.copyfile(models[0], bad)
        probe.wait_for("/robot/command", 10, timeout=120)
        assert _state(probe, "policy") == ACTIVE and _state(probe, "sim") == ACTIVE
        assert probe.call("/lifecycle_manager/is_active", Trigger, resend_s=5.0).success
        log = g.log("lifecycle_manager")
        managed = ("/reward", "/learner", "/policy", "/task_switcher", "/sim")
        lines = [ln for ln in log.splitlines() if ln.endswith("-> active")]
        order = [next(n for n in managed if f"{n}: " in ln) for ln in lines]
        assert order[-3:] == ["/policy", "/task_switcher", "/sim"], lines  # the robot side last
        assert sorted(order) == sorted(managed), lines
        g.assert_alive()
