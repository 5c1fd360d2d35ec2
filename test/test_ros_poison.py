"""Poison observations on a running policy and learner: an image of another size, proprioception
of another length, NaN proprioception. Each is dropped with a message naming the field, never
acted on or stored, and both nodes stay up (`pytest -k poison`)."""

import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test
from tiny_models import tiny_learner_checkpoint

from robofume_ros.msg import ArmCommand, Observation
from robofume_ros.ros.convert import rgb_to_image


def observation(probe, i, size=100, proprio=(0.0, 0.6, 0.2, 1.0)):
    o = Observation()
    o.header.stamp = probe.node.get_clock().now().to_msg()
    o.image = rgb_to_image(np.full((size, size, 3), i % 255, np.uint8), o.header.stamp)
    o.proprio = [float(x) for x in proprio]
    o.instruction, o.task, o.episode_index = "open the drawer", "drawer-open", 0
    return o


def test_poison_observations_are_dropped_and_nodes_stay_up(tmp_path):
    ckpt = tiny_learner_checkpoint(tmp_path / "learner.pt")
    args = {"policy_checkpoint": str(ckpt), "run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("policy", "learner")) as g:
        probe = g.probe({"/robot/command": ArmCommand})
        pub = probe.publisher("/observation", Observation, subscribers=2)  # policy and learner
        # the nodes are up and acting: good observations get commands
        deadline = time.monotonic() + 60
        i = 0
        while not probe.get("/robot/command") and time.monotonic() < deadline:
            i += 1
            pub.publish(observation(probe, i))
            time.sleep(0.1)
        assert probe.get("/robot/command"), "the policy never acted"
        time.sleep(0.5)
        before = len(probe.get("/robot/command"))
        poison = [dict(size=50), dict(proprio=(0.0, 0.6, 0.2)), dict(proprio=(0.0, float("nan"), 0.2, 1.0))]
        for k in range(30):
            pub.publish(observation(probe, 100 + k, **poison[k % 3]))
            time.sleep(0.02)
        time.sleep(1.5)
        assert len(probe.get("/robot/command")) == before, "the policy acted on a poison observation"
        pub.publish(observation(probe, 500))  # and still acts on good ones
        probe.wait_for("/robot/command", before + 1, timeout=10)
        g.assert_alive()
        policy_log, learner_log = g.log("policy"), g.log("learner")
    assert "observation refused: image is 50x50x3, the policy was trained on 100x100x3" in policy_log
    assert "observation dropped: image is 50x50x3" in learner_log
    for what in ("proprioception has 3 values", "NaN or Inf"):
        assert what in policy_log + learner_log, what
    assert "Traceback" not in policy_log and "Traceback" not in learner_log
