"""A person's reward overrides on a running task switcher: topic and services change the
episode's outcome, a malformed override is refused with a clear error and changes nothing."""

import time

import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test
from test_ros_poison import observation

from robofume_ros.msg import Observation, Reward, RewardOverride, TaskPhase


def test_overrides_end_flip_and_refuse(tmp_path):
    from std_srvs.srv import Trigger

    args = {"run_dir": str(tmp_path / "run"), "record": "false"}
    with graph_under_test("finetune", args, tmp_path, only=("task_switcher",)) as g:
        probe = g.probe({"/task_phase": TaskPhase, "/reward_override": RewardOverride})
        obs_pub = probe.publisher("/observation", Observation)
        reward_pub = probe.publisher("/reward", Reward)
        ovr = probe.publisher("/reward_override", RewardOverride)
        r = Reward()
        r.header.stamp = probe.node.get_clock().now().to_msg()
        reward_pub.publish(r)  # the success source is up
        time.sleep(0.2)
        for i in range(3):
            obs_pub.publish(observation(probe, i))
            time.sleep(0.02)

        def override(verdict, episode):
            m = RewardOverride()
            m.header.stamp = probe.node.get_clock().now().to_msg()
            m.verdict, m.episode_index, m.source = verdict, episode, "test"
            ovr.publish(m)

        def phase(pred):
            return probe.wait_for("/task_phase", 1, timeout=10, pred=pred)[-1]

        override(RewardOverride.SUCCESS, 0)  # success now
        ph = phase(lambda m: m.episode_index == 1)
        assert ph.last_switch_reason == TaskPhase.REASON_SUCCESS and ph.forward_successes == 1
        assert list(ph.recent_episodes) == [0] and list(ph.recent_successes) == [True] and ph.overrides == 1
        override(RewardOverride.SUCCESS, 5)  # another episode: refused
        override(RewardOverride.UNDO, 1)  # episode 1 has not ended: refused
        override(RewardOverride.UNDO, 0)  # the last verdict was wrong
        ph = phase(lambda m: m.overrides == 2)
        assert list(ph.recent_successes) == [False] and ph.forward_successes == 0 and ph.episode_index == 1
        # the service: "the episode the robot is in"
        client = probe.node.create_client(Trigger, "/task_switcher/override_success")
        assert client.wait_for_service(timeout_sec=10)
        res = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 10
        while not res.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert res.result().success and "episode 1 (backward) ended as a success by service" in res.result().message
        ph = phase(lambda m: m.episode_index == 2)
        assert list(ph.recent_successes) == [False, True] and ph.overrides == 3
        # the service's verdict goes out on the topic (recorder, reward), and is not applied twice
        out = probe.wait_for("/reward_override", 1, timeout=10, pred=lambda m: m.source.endswith(" service"))[-1]
        assert (out.episode_index, out.verdict) == (1, RewardOverride.SUCCESS)
        assert out.source == "/task_switcher service"
        ph = probe.wait_for("/task_phase", len(probe.get("/task_phase")) + 1, timeout=10)[-1]  # the next one
        assert ph.overrides == 3 and ph.episode_index == 2
        g.assert_alive()
        log = g.log("task_switcher")
    assert "override refused, nothing changed: success names episode 5, but the active episode is 1" in log
    assert "override refused, nothing changed: undo names episode 1, but the episode that ended last is 0" in log
