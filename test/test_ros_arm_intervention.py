"""Human help on the real-arm path: teleop interventions override the policy and are recorded; a
manual-reset request pauses the task switcher and asks for help; the home service retreats the arm.

arm_bridge + MuJoCo stand-in driver + teleop + task switcher + recorder as real processes; stopped
even on failure."""

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist, TwistStamped, Vector3
from rosgraph import graph_under_test
from std_msgs.msg import String
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.ros.convert import stamp_key
from robofume_ros.msg import ArmCommand, RobotState, TaskPhase

TWIST = "/servo_node/delta_twist_cmds"


def call(probe, srv, timeout=10.0):
    client = probe.node.create_client(Trigger, srv)
    assert client.wait_for_service(timeout_sec=timeout), f"{srv} not available"
    fut = client.call_async(Trigger.Request())
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fut.done(), f"{srv} did not answer"
    return fut.result()


def test_teleop_overrides_policy_is_recorded_and_requests_reset(tmp_path):
    bag_dir = tmp_path / "bags"
    args = {"robot": "franka", "standin_driver": "true", "teleop": "true", "bag_dir": str(bag_dir)}
    keep = ("arm_bridge", "standin_driver", "teleop", "task_switcher", "recorder")
    specs = [s for s in graph.nodes("sim", args) if s.name in keep]
    for s in specs:
        if s.name == "arm_bridge":
            s.parameters["intervention_hold_s"] = 0.5
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe(
            {
                "/robot/state": RobotState,
                "/robot/safety": String,
                "/task_switcher/help": String,
                "/task_phase": TaskPhase,
            }
        )
        probe.subscribe(TWIST, TwistStamped, qos=10)
        probe.wait_for("/robot/state", 5, timeout=60)
        policy = probe.publisher("/robot/command", ArmCommand, subscribers=2)  # arm bridge + recorder
        human = probe.publisher("/teleop/twist", Twist, qos=10)
        # the recorder discovers topics once a second: wait until it hears the human's commands too
        probe.wait_graph(subscribers={"/robot/intervention": 2})
        probe.wait_subscribed({TWIST: 1})

        def policy_cmd():
            c = ArmCommand()
            c.header.stamp = probe.node.get_clock().now().to_msg()
            c.translation.x, c.gripper, c.source = 1.0, -1.0, "policy"
            policy.publish(c)

        def run(seconds, with_human):
            t0 = time.time()  # the bridge stamps its twists with the system clock
            while time.time() - t0 < seconds:
                policy_cmd()
                if with_human:
                    human.publish(Twist(linear=Vector3(y=-1.0)))
                time.sleep(0.05)
            return t0

        t_policy = run(1.5, False)
        t_human = run(2.0, True)
        t_back = run(2.5, False)
        twists = probe.timed(TWIST)
        # home: retreat to the configured home position through the envelope
        res = call(probe, "/arm_bridge/home")
        assert res.success, res.message
        time.sleep(1.5)
        # manual reset request: the switcher pauses and a human is asked
        res = call(probe, "/teleop/request_reset")
        assert res.success, res.message
        probe.wait_for("/task_phase", 1, timeout=10, pred=lambda m: m.paused)
        probe.wait_for("/task_switcher/help", 1, timeout=10, pred=lambda m: "manual reset" in m.data)
        counts = json.loads(probe.get("/robot/safety")[-1].data)["counts"]
        g.assert_alive()

    # when the bridge sent each twist (its stamp), not when the probe heard it: a loaded machine
    # delivers late, and lateness is not what this test is about
    twists = [
        (stamp_key(m.header.stamp) * 1e-9, np.array([m.twist.linear.x, m.twist.linear.y, m.twist.linear.z]))
        for _, m in twists
    ]
    pol = [v for t, v in twists if t_policy + 0.3 < t < t_human]
    hum = [v for t, v in twists if t_human + 0.5 < t < t_back]
    assert pol and all(v[0] > 0 and v[1] == 0 for v in pol), "policy commands did not run"
    assert hum and all(v[1] < 0 and v[0] == 0 for v in hum), "the policy ran during the intervention"
    # once the human stops, the arm stays theirs until teleop's input times out (0.3 s) and the
    # bridge's hold after the last intervention (0.5 s) ends, a tick of each later at most; then
    # the policy has it again (a tick holding still in between is fine: its next command is news)
    last_human = max((t for t, v in twists if t > t_back and v[1] < 0), default=t_back)
    assert last_human - t_back < 0.3 + 0.5 + 2 * 0.1 + 0.3, f"the human kept the arm {last_human - t_back:.2f} s"
    back = [v for t, v in twists if last_human < t < t_back + 2.5]
    assert all(v[1] == 0 and v[0] >= 0 for v in back), "after the human, something but the policy moved the arm"
    assert sum(v[0] > 0 for v in back) >= 5, "the policy did not get the arm back"
    assert counts["dropped:policy_during_intervention"] >= 10 and counts["interventions"] >= 10
    assert counts["home:requested"] == 1

    # the interventions are in the bag, marked as such
    from rosbags.rosbag2 import Reader

    from robofume_ros.data.bags import typestore

    bags = list(bag_dir.iterdir())
    assert len(bags) == 1
    store = typestore()
    inter = []
    with Reader(bags[0]) as reader:
        conns = [c for c in reader.connections if c.topic == "/robot/intervention"]
        assert conns, "the recorder did not record /robot/intervention"
        for conn, _t, raw in reader.messages(connections=conns):
            inter.append(store.deserialize_cdr(raw, conn.msgtype))
    assert len(inter) >= 10
    assert all(m.intervention and m.source == "teleop" and m.translation.y < 0 for m in inter)


def test_joystick_mapping_deadman_and_stop_button(tmp_path):
    from sensor_msgs.msg import Joy
    from std_msgs.msg import Bool

    specs = [s for s in graph.nodes("sim", {"robot": "franka", "teleop": "true"}) if s.name == "teleop"]
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/robot/intervention": ArmCommand, "/robot/stop": Bool})
        joy = probe.publisher("/joy", Joy, qos=10)
        probe.wait_subscribed({"/robot/intervention": 1, "/robot/stop": 1})

        def send(axes, buttons, n=8):
            for _ in range(n):
                m = Joy()
                m.header.stamp = probe.node.get_clock().now().to_msg()
                m.axes, m.buttons = [float(a) for a in axes], list(buttons)
                joy.publish(m)
                time.sleep(0.1)

        axes = [0.5, 0.8, 0.0, 0.0, -1.0, 0.0]  # axis 1 -> x, 0 -> y, 4 -> z (franka.yaml defaults)
        send(axes, [0] * 8)  # dead-man not held: nothing
        assert probe.get("/robot/intervention") == []
        send(axes, [1, 0, 0, 0, 1, 0, 0, 0])  # held (button 4) + close gripper (button 0)
        msgs = probe.wait_for("/robot/intervention", 3, timeout=5)
        send([0.0] * 6, [0, 0, 0, 0, 0, 0, 0, 1], n=2)  # stop button (7)
        stops = probe.wait_for("/robot/stop", 1, timeout=5)
        # reward override buttons: X = success now, RB = undo, about the episode in /task_phase
        from robofume_ros.msg import RewardOverride, TaskPhase

        probe.subscribe("/reward_override", RewardOverride)
        phase_pub = probe.publisher("/task_phase", TaskPhase)
        probe.wait_subscribed({"/reward_override": 1})
        ph = TaskPhase()
        ph.episode_index, ph.recent_episodes, ph.recent_successes = 4, [3], [True]
        phase_pub.publish(ph)
        time.sleep(0.3)
        send([0.0] * 6, [0, 0, 1, 0, 0, 0, 0, 0], n=1)
        send([0.0] * 6, [0] * 8, n=1)
        send([0.0] * 6, [0, 0, 0, 0, 0, 1, 0, 0], n=2)  # held for two messages: one verdict
        verdicts = probe.wait_for("/reward_override", 2, timeout=5)
        g.assert_alive()
    m = msgs[-1]
    assert m.intervention and m.source == "teleop"
    assert (m.translation.x, m.translation.y, m.translation.z, m.gripper) == pytest.approx((0.8, 0.5, -1.0, 1.0))
    assert stops[0].data is True
    assert [(v.verdict, v.episode_index, v.source) for v in verdicts] == [
        (RewardOverride.SUCCESS, 4, "joystick"),
        (RewardOverride.UNDO, 3, "joystick"),
    ]
