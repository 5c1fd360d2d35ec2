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
        # the refusals are counted on /diagnostics, per kind
        diag = probe_diagnostics(g, ("robofume_ros/policy", "robofume_ros/learner"), "warnings/")
        g.assert_alive()
        policy_log, learner_log = g.log("policy"), g.log("learner")
    assert "observation refused: image is 50x50x3, the policy was trained on 100x100x3" in policy_log
    assert "observation dropped: image is 50x50x3" in learner_log
    for what in ("proprioception has 3 values", "NaN or Inf"):
        assert what in policy_log + learner_log, what
    assert "Traceback" not in policy_log and "Traceback" not in learner_log
    for node in ("robofume_ros/policy", "robofume_ros/learner"):
        refused = {k: int(v) for k, v in diag[node].items() if k.startswith("warnings/")}
        assert sum(refused.values()) >= 30, (node, refused)  # 10 of each of the 3 kinds


def probe_diagnostics(g, names, key_prefix, timeout=15.0) -> dict:
    """The newest /diagnostics values of each node in `names`, once each has a key with the prefix."""
    from diagnostic_msgs.msg import DiagnosticArray

    probe = g.probe({"/diagnostics": DiagnosticArray})
    latest: dict = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for arr in probe.get("/diagnostics"):
            for st in arr.status:
                latest[st.name] = {kv.key: kv.value for kv in st.values}
        if all(any(k.startswith(key_prefix) for k in latest.get(n, {})) for n in names):
            break
        time.sleep(0.2)
    return latest


def test_poison_observations_do_not_run_the_switchers_clock(tmp_path):
    """The task switcher counts one control tick per usable observation: a burst of observations
    with a bad encoding, NaN proprioception or a repeated stamp at 100x the control rate neither
    times out the episode nor advances its clock."""
    from robofume_ros.msg import TaskPhase

    args = {"run_dir": str(tmp_path / "run"), "record": "false"}
    # the switcher is active once graph_under_test returns (its lifecycle manager says so)
    with graph_under_test("finetune", args, tmp_path, only=("task_switcher",)) as g:
        probe = g.probe({"/task_phase": TaskPhase})
        obs_pub = probe.publisher("/observation", Observation)

        def steps_reach(n, timeout=10):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msgs = probe.get("/task_phase")
                if msgs and msgs[-1].steps_in_episode >= n:
                    return msgs[-1]
                time.sleep(0.05)
            raise AssertionError(f"steps_in_episode never reached {n}: {msgs[-1] if msgs else None}")

        good = [observation(probe, i) for i in range(10)]
        for o in good:
            obs_pub.publish(o)
            time.sleep(0.01)
        steps_reach(10)
        for k in range(300):  # ~3 s at 100 Hz
            bad = observation(probe, k)
            if k % 3 == 0:
                bad.image.encoding = "yuv422_nonsense"
            elif k % 3 == 1:
                bad.proprio = [0.0, float("nan"), 0.2, 1.0]
            else:
                bad.header.stamp = good[-1].header.stamp  # a repeat of the last tick
            obs_pub.publish(bad)
            time.sleep(0.01)
        obs_pub.publish(observation(probe, 11))
        ph = steps_reach(11)
        time.sleep(1.2)  # the switcher republishes its phase once a second
        ph = probe.get("/task_phase")[-1]
        assert ph.steps_in_episode == 11 and ph.episode_index == 0, ph
        g.assert_alive()
        log = g.log("task_switcher")
    assert "observation not counted as a tick: unsupported image encoding" in log
    assert "NaN or Inf" in log and "not newer than the last tick" in log
