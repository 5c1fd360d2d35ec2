"""What a person made the arm do is stamped with the observation of the state it acted on, also
when that observation reaches the robot side late (a loaded camera): the arm bridge's gate, driven
in-process tick by tick, its /robot/executed messages captured."""

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rclpy.node import Node
from rosgraph import next_domain_id

from robofume_ros.msg import ArmCommand, Observation
from robofume_ros.ros.convert import stamp_key
from robofume_ros.ros.gate import GatedRobot, GateParams
from robofume_ros.ros.node import Throttle


class _Arm(Node, GatedRobot):
    def __init__(self, ctx):
        super().__init__("gate_under_test", context=ctx)
        self.throttle = Throttle(self.get_logger())
        # no node names in-process: every sender allowed
        self.setup_gate(GateParams(allowed_command_nodes=[]), action_dim=4, control_period_s=0.1, watchdog=False)
        self.sent = []
        self.pub_executed.publish = self.sent.append  # what the gate publishes, in order

    def current_ee_position(self):
        return np.array([0.0, 0.6, 0.2])


@pytest.fixture
def arm():
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=next_domain_id())
    node = _Arm(ctx)
    yield node
    node.destroy_node()
    rclpy.try_shutdown(context=ctx)


def _person(arm, y):
    c = ArmCommand()
    c.translation.y, c.gripper, c.source, c.intervention = y, -1.0, "teleop", True
    arm._on_command(c, True)


def _observation(arm, stamp_ns):
    o = Observation()
    o.header.stamp.sec, o.header.stamp.nanosec = stamp_ns // 10**9, stamp_ns % 10**9
    arm._on_observation_stamp(o)


def _tick(arm):
    arm.gate_tick(arm.current_ee_position())


def _now(arm):
    return arm.get_clock().now().nanoseconds


def test_an_action_waits_for_its_late_observation_and_takes_no_other(arm):
    t0 = _now(arm) - 10**9  # frames taken in the last second
    stamps = [t0 + k * 10**8 for k in range(4)]
    _observation(arm, stamps[0])
    _person(arm, 0.5)
    _tick(arm)  # acts on frame 0: heard in time
    _person(arm, 0.6)
    _tick(arm)  # acts on frame 1, not heard yet: held back, not given frame 0 again
    assert [stamp_key(m.header.stamp) for m in arm.sent] == [stamps[0]]
    _observation(arm, stamps[0])  # a duplicate of an old frame arriving late changes nothing
    assert len(arm.sent) == 1
    _observation(arm, stamps[1])  # frame 1 arrives after the tick that acted on it
    got = [(stamp_key(m.header.stamp), round(m.translation.y, 2)) for m in arm.sent]
    assert got == [(stamps[0], 0.5), (stamps[1], 0.6)]
    # a frame taken after the tick is not the state the arm acted on: the action has no observation
    _person(arm, 0.7)
    _tick(arm)
    _observation(arm, _now(arm) + 10**8)
    assert len(arm.sent) == 2 and arm.gate.counts["executed:no_observation"] == 1
    assert all(m.intervention and m.source == "teleop" for m in arm.sent)


def test_without_a_person_nothing_is_reported(arm):
    _observation(arm, _now(arm))
    c = ArmCommand()
    c.header.stamp = arm.get_clock().now().to_msg()
    c.translation.x, c.source = 0.5, "policy"
    arm._on_command(c, False)
    t = arm.gate_tick(arm.current_ee_position())
    assert t.action is not None and not t.intervention  # the policy's command ran
    assert arm.sent == []
