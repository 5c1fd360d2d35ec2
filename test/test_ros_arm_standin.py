"""The real-arm path (arm_bridge + the MuJoCo stand-in driver) as real processes.

robot:=franka standin_driver:=true: commands go through the same CommandGate as in the sim, out as
MoveIt Servo twists (or joint trajectories via IK) to the stand-in, which moves the simulated arm and
answers with joint states, a pose and camera frames. Every test stops its nodes even on failure."""

import json
import os
import signal
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import TwistStamped
from rosgraph import graph_under_test
from std_msgs.msg import Bool, String
from trajectory_msgs.msg import JointTrajectory

from robofume_ros.ros import graph
from robofume_ros.msg import ArmCommand, Observation, RobotState, TaskPhase

TICK = 0.1
BOX_LOW, BOX_HIGH = [0.25, -0.05, 0.44], [0.36, 0.05, 0.53]  # small box around the FR3 home pose
TWIST = "/servo_node/delta_twist_cmds"


def arm_specs(extra=None, only=("arm_bridge", "standin_driver"), standin=None, **bridge_params):
    args = {"robot": "franka", "standin_driver": "true", "record": "false"}
    args.update(extra or {})
    specs = [s for s in graph.nodes("sim", args) if s.name in only]
    for s in specs:
        if s.name == "arm_bridge":
            s.parameters.update(bridge_params)
        if s.name == "standin_driver":
            s.parameters.update(standin or {})
    return specs


def cmd(probe, xyz, g=-1.0, source="policy"):
    c = ArmCommand()
    c.header.stamp = probe.node.get_clock().now().to_msg()
    c.translation.x, c.translation.y, c.translation.z = (float(v) for v in xyz)
    c.gripper, c.source = float(g), source
    return c


def pos(s):
    return np.array([s.ee_pose.position.x, s.ee_pose.position.y, s.ee_pose.position.z])


def safety_counts(probe):
    msgs = probe.get("/robot/safety")
    return json.loads(msgs[-1].data)["counts"] if msgs else {}


def test_graph_spec_for_real_arm():
    names = [s.name for s in graph.nodes("sim", {"robot": "franka", "standin_driver": "true", "teleop": "true"})]
    assert names[:3] == ["arm_bridge", "standin_driver", "teleop"] and "sim" not in names
    assert "standin_driver" not in [s.name for s in graph.nodes("finetune", {"robot": "widowx"})]
    spec = [s for s in graph.nodes("sim", {"robot": "widowx", "arm_interface": "servo"}) if s.name == "arm_bridge"][0]
    assert spec.parameters["interface"] == "servo" and spec.params_file.endswith("widowx.yaml")


def test_envelope_stop_and_watchdog_through_the_standin(tmp_path):
    specs = arm_specs(workspace_low=BOX_LOW, workspace_high=BOX_HIGH)
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/robot/state": RobotState, "/robot/safety": String})
        probe.subscribe(TWIST, TwistStamped, qos=10)
        probe.wait_for("/robot/state", 5, timeout=60)
        pub = probe.publisher("/robot/command", ArmCommand)
        stop = probe.publisher("/robot/stop", Bool)
        # 1. wild commands for 4 s: every component far outside [-1, 1], pushing out of the box
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        n_sent = 0
        while time.monotonic() - t0 < 4.0:
            xyz = rng.choice([-1, 1], 3) * rng.uniform(1, 50, 3) if n_sent % 3 else [40.0, -40.0, 40.0]
            pub.publish(cmd(probe, xyz, g=rng.uniform(-9, 9)))
            n_sent += 1
            time.sleep(TICK / 2)
        states = probe.get("/robot/state")
        twists = probe.get(TWIST)
        # 2. stop while commands keep coming: the arm holds within one tick
        t_stop = time.monotonic()
        stop.publish(Bool(data=True))
        while time.monotonic() - t_stop < 1.5:
            pub.publish(cmd(probe, [1.0, 1.0, 1.0]))
            time.sleep(TICK / 2)
        after_stop = probe.timed(TWIST)
        states_stop = probe.timed("/robot/state")
        stop.publish(Bool(data=False))
        time.sleep(0.3)
        # 3. watchdog: commands stop arriving -> hold within command_timeout + a tick
        pub.publish(cmd(probe, [0.0, -1.0, 0.0]))
        t_last = time.monotonic()
        time.sleep(1.5)
        wd = probe.timed("/robot/state")
        counts_cmd_wd = safety_counts(probe)
        # 4. stale observations: freeze the driver (SIGSTOP) while the policy keeps commanding
        standin = g.runner.procs["standin_driver"].proc
        os.kill(standin.pid, signal.SIGSTOP)
        try:
            t_freeze = time.monotonic()
            while time.monotonic() - t_freeze < 1.5:
                pub.publish(cmd(probe, [1.0, 0.0, 0.0]))
                time.sleep(TICK / 2)
        finally:
            os.kill(standin.pid, signal.SIGCONT)
        frozen = [(t, s) for t, s in probe.timed("/robot/state") if t > t_freeze + 0.5 + 2 * TICK]
        time.sleep(0.5)
        counts = safety_counts(probe)
        g.assert_alive()

    # 1: every executed twist within the speed limit, the hand never left the box (+ mocap lag)
    speeds = [np.linalg.norm([m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]) for m in twists]
    assert len(speeds) >= 30 and max(speeds) <= 0.15 + 1e-6, max(speeds)
    P = np.array([pos(s) for s in states])
    # the envelope plans each tick from the measured pose plus everything commanded since (dead
    # reckoning); the simulated hand tracks its target with some dynamic lag, so it may coast at most
    # one tick of full-speed motion past the box (0.15 m/s * 0.1 s), never more
    coast = 0.15 * TICK
    assert np.all(P >= np.array(BOX_LOW) - coast) and np.all(P <= np.array(BOX_HIGH) + coast), (P.min(0), P.max(0))
    assert (P.max(0) - P.min(0)).max() > 0.03, "the arm did not move at all"
    # 2: the first twist after the stop arrived within one tick (+ transport) is zero, and all after it
    post = [(t, m) for t, m in after_stop if t > t_stop]
    first_zero = next(t for t, m in post if m.twist.linear.x == m.twist.linear.y == m.twist.linear.z == 0)
    # one control tick (0.1 s) + DDS delivery both ways + scheduling on a loaded CI machine; the exact
    # "next tick" property is asserted deterministically on the gate in test_safety_envelope.py
    assert first_zero - t_stop <= TICK + 0.2, f"held only after {first_zero - t_stop:.3f} s"
    print(f"\nstop -> first zero twist seen after {1000 * (first_zero - t_stop):.0f} ms (control tick 100 ms)")
    assert all(m.twist.linear.x == 0 for t, m in post if t > first_zero)
    # held: from two ticks after the first zero twist (the hand's dynamic lag settles; on a loaded CI
    # machine a state 2 ticks after the stop was published still showed 1.6 cm of coasting)
    held = [pos(s) for t, s in states_stop if t > first_zero + 2 * TICK]
    assert len(held) >= 5 and np.ptp(np.array(held), axis=0).max() < 0.005
    assert all(s.stopped for t, s in states_stop if t > first_zero + 2 * TICK)
    # 3: the command watchdog held the arm
    late = [s for t, s in wd if t > t_last + 0.5 + 2 * TICK]
    assert late and all(s.stopped for s in late)
    assert counts_cmd_wd.get("watchdog:command", 0) >= 1
    # 4: stale observations: the bridge held the arm (zero twists) and said so
    assert frozen and all(s.stopped for t, s in frozen)
    # every clip and stop counted and published
    for key in (
        "clipped:bounds",
        "clipped:workspace",
        "clipped:velocity",
        "stop:stop topic",
        "watchdog:observation",
        "held:stopped",
    ):
        assert counts.get(key, 0) >= 1, (key, counts)
    print(f"\nsafety counts after {n_sent} wild commands: {counts}")


@pytest.mark.parametrize(
    "robot,topic,first_joint,n_joints,box",
    [
        ("franka", "/fr3_arm_controller/joint_trajectory", "fr3_joint1", 7, ([0.2, -0.45, 0.05], [0.45, 0.45, 0.7])),
        (
            "widowx",
            "/wx250s/arm_controller/joint_trajectory",
            "waist",
            6,  # pose by FK of the chain
            ([0.15, -0.3, 0.03], [0.5, 0.3, 0.4]),
        ),
    ],
)
def test_joint_trajectory_interface_moves_the_arm_via_ik(tmp_path, robot, topic, first_joint, n_joints, box):
    """+x for 3 s: the arm follows through IK + trajectories and stops at the workspace box's x."""
    gripper_topic = "/gripper_controller/joint_trajectory"  # the gripper as a trajectory controller
    specs = arm_specs(
        {"robot": robot, "arm_interface": "joint_trajectory"},
        standin={"gripper_topic": gripper_topic, "gripper_message": "joint_trajectory"},
        workspace_low=box[0],
        workspace_high=box[1],
        gripper_interface="joint_trajectory",
        gripper_topic=gripper_topic,
    )
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/robot/state": RobotState})
        probe.subscribe(topic, JointTrajectory, qos=10)
        probe.wait_for("/robot/state", 5, timeout=60)
        pub = probe.publisher("/robot/command", ArmCommand)
        first = probe.get("/robot/state")[-1]
        start = pos(first)
        for _ in range(30):
            pub.publish(cmd(probe, [1.0, 0.0, 0.0], g=1.0))  # +x (free space beside the drawer), close
            time.sleep(TICK)
        time.sleep(0.3)
        last = probe.get("/robot/state")[-1]
        end = pos(last)
        trajs = probe.get(topic)
        g.assert_alive()
    assert len(trajs) >= 10 and trajs[-1].joint_names[0] == first_joint
    assert len(trajs[-1].points[0].positions) == n_joints
    moved = end - start
    assert moved[0] > 0.1 and abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01, moved
    assert box[1][0] - 0.005 <= end[0] <= box[1][0] + 0.003, f"x {end[0]:.4f}, box ends at {box[1][0]}"
    assert first.gripper_opening > 0.8 and last.gripper_opening < 0.5, (first.gripper_opening, last.gripper_opening)


def test_scripted_policy_drives_the_standin_through_the_bridge(tmp_path):
    """The usual nodes (camera, task switcher, scripted policy) run unchanged on the real-arm path,
    and the scripted expert succeeds through Servo twists into the stand-in."""
    specs = arm_specs(only=("arm_bridge", "standin_driver", "camera", "task_switcher", "scripted_policy"))
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe(
            {
                "/observation": Observation,
                "/robot/state": RobotState,
                "/robot/command": ArmCommand,
                "/task_phase": TaskPhase,
            }
        )
        probe.wait_for("/observation", 5, timeout=60)
        # the expert opens the drawer through bridge + stand-in; the switcher sees it and switches
        done = probe.wait_for("/task_phase", 1, timeout=60, pred=lambda m: m.forward_successes >= 1)
        obs = probe.get("/observation")
        states = probe.get("/robot/state")
        g.assert_alive()
    assert obs[0].image.width == 100 and len(obs[0].proprio) == 4 and obs[0].task == "drawer-open"
    assert done[-1].task == "drawer-close" and done[-1].last_switch_reason == TaskPhase.REASON_SUCCESS
    P = np.array([pos(s) for s in states])
    assert np.ptp(P, axis=0).max() > 0.03, "the scripted expert did not move the arm"


def test_bridge_calls_servo_start_again_until_it_is_answered(tmp_path):
    """A service that is ready may not have seen the bridge's request (discovery is not symmetric):
    the bridge sends start_servo again while it has no answer, and stops once answered."""
    from std_srvs.srv import Trigger

    specs = arm_specs(only=("arm_bridge",), servo_pause_service="")
    calls = []

    def start(req, res):
        calls.append(time.monotonic())
        if len(calls) == 1:
            time.sleep(2.6)  # the first answer comes after the bridge's patience (2 s)
        res.success, res.message = True, "started"
        return res

    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({})
        probe.node.create_service(Trigger, "/servo_node/start_servo", start)
        deadline = time.monotonic() + 30
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)  # answered by now: no further calls
        g.assert_alive()
        log = g.log("arm_bridge")
    assert len(calls) == 2, calls
    assert "called servo_node/start_servo again (no answer)" in log, log
