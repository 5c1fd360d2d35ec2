"""The reward node across processes: /reward at the observation rate, newest frame first, hot reload."""

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test
from std_srvs.srv import Trigger

from robofume_ros.ros import graph
from robofume_ros.msg import Observation, Reward
from robofume_ros.ros.convert import rgb_to_image


@pytest.fixture(scope="module")
def reward_model(tmp_path_factory):
    from robofume_ros.reward.dual_encoder import DualEncoderRewardModel
    from robofume_ros.reward.tiny import make_tiny_clip

    d = tmp_path_factory.mktemp("rm")
    make_tiny_clip(d / "clip")
    DualEncoderRewardModel.from_pretrained(str(d / "clip"), threshold=0.0).save(d / "model")
    return d / "model"


def observation(probe, i, episode=0):
    from builtin_interfaces.msg import Time

    o = Observation()
    o.header.stamp = Time(sec=1000 + i // 10, nanosec=(i % 10) * 100_000_000)
    img = np.full((100, 100, 3), (i * 7) % 255, np.uint8)
    o.image = rgb_to_image(img, o.header.stamp)
    o.proprio = [0.0, 0.6, 0.2, 1.0]
    o.instruction, o.task, o.episode_index = "open the drawer", "drawer-open", episode
    return o


def reward_spec(tmp_path, reward_model, **params):
    """The fine-tuning graph's reward node (drawer pair: its paired instructions) with the model."""
    spec = {s.name: s for s in graph.nodes("finetune", {"reward_model": str(reward_model)})}["reward"]
    spec.parameters.update(params)
    return [spec]


def test_reward_follows_observations_and_debounces(tmp_path, reward_model):
    # a pair that does not hold the observations' instruction: no veto (see the next test)
    spec = reward_spec(tmp_path, reward_model, debounce_frames=3, paired_instructions=["lift the cup", "lower the cup"])
    with graph_under_test("finetune", {}, tmp_path, specs=spec) as g:
        probe = g.probe({"/reward": Reward})
        pub = probe.publisher("/observation", Observation)
        deadline = time.monotonic() + 60
        while not probe.get("/reward") and time.monotonic() < deadline:  # node up and model loaded
            pub.publish(observation(probe, 0))
            time.sleep(0.2)
        start = len(probe.get("/reward"))
        for i in range(1, 31):  # 10 Hz for 3 s
            pub.publish(observation(probe, i, episode=1))
            time.sleep(0.1)
        msgs = probe.wait_for("/reward", start + 25, timeout=20)[start:]
        g.assert_alive()
    ours = [m for m in msgs if m.episode_index == 1]
    assert len(ours) >= 25, "the node must keep up with a 10 Hz stream when inference is fast"
    assert [m.consecutive_positive for m in ours[:3]] == [1, 2, 3]  # threshold 0: every frame positive
    assert [m.success for m in ours[:4]] == [False, False, True, True]  # debounce over 3 frames
    assert all(0.0 <= m.probability <= 1.0 and m.latency_ms > 0 and m.instruction == "open the drawer" for m in ours)
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in ours]
    assert stamps == sorted(stamps)


def test_reward_vetoes_frames_done_for_both_tasks_of_the_pair(tmp_path, reward_model):
    """The drawer pair pairs "open the drawer" with "close the drawer"; at threshold 0 the
    model calls every frame done for both, so none is a success, while its probability is published."""
    with graph_under_test("finetune", {}, tmp_path, specs=reward_spec(tmp_path, reward_model)) as g:
        probe = g.probe({"/reward": Reward})
        pub = probe.publisher("/observation", Observation)
        deadline = time.monotonic() + 60
        i = 0
        while len(probe.get("/reward")) < 5 and time.monotonic() < deadline:
            i += 1
            pub.publish(observation(probe, i))
            time.sleep(0.2)
        g.assert_alive()
    msgs = probe.get("/reward")
    assert len(msgs) >= 5
    assert not any(m.success for m in msgs) and all(m.consecutive_positive == 0 for m in msgs)
    assert all(0.0 <= m.probability <= 1.0 and m.instruction == "open the drawer" for m in msgs)


def test_reward_scores_the_newest_frame_and_never_queues(tmp_path, reward_model):
    with graph_under_test("finetune", {}, tmp_path, specs=reward_spec(tmp_path, reward_model)) as g:
        probe = g.probe({"/reward": Reward})
        pub = probe.publisher("/observation", Observation)
        deadline = time.monotonic() + 60
        while not probe.get("/reward") and time.monotonic() < deadline:
            pub.publish(observation(probe, 0))
            time.sleep(0.2)
        start = len(probe.get("/reward"))
        burst = [observation(probe, i, episode=2) for i in range(1, 201)]
        for o in burst:  # 200 frames as fast as possible: far faster than inference
            pub.publish(o)
        last = burst[-1].header.stamp
        got = probe.wait_for(
            "/reward",
            1,
            timeout=20,
            pred=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == (last.sec, last.nanosec),
        )
        time.sleep(1.0)
        scored = [m for m in probe.get("/reward")[start:] if m.episode_index == 2]
        g.assert_alive()
    assert got, "the newest frame of the burst was scored"
    assert len(scored) < 150, f"{len(scored)} of 200 burst frames scored: stale frames were queued"
    # after the burst nothing older than the newest frame is scored
    final = scored[-1].header.stamp
    assert (final.sec, final.nanosec) == (last.sec, last.nanosec)


def test_reload_service_keeps_the_old_model_when_the_new_one_is_broken(tmp_path, reward_model):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(reward_model, model)
    with graph_under_test("finetune", {}, tmp_path, specs=reward_spec(tmp_path, model)) as g:
        probe = g.probe({"/reward": Reward})
        client = probe.node.create_client(Trigger, "/reward/reload")
        assert client.wait_for_service(timeout_sec=60)
        (model / "reward_model.json").write_text("{ not json")
        fut = client.call_async(Trigger.Request())
        deadline = time.monotonic() + 30
        while not fut.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fut.done() and not fut.result().success and "kept the current model" in fut.result().message
        pub = probe.publisher("/observation", Observation)
        pub.publish(observation(probe, 5))
        probe.wait_for("/reward", 1, timeout=20)  # still scoring with the old model
        g.assert_alive()


def test_the_reward_adapts_to_a_persons_verdict_without_dropping_a_frame(tmp_path):
    """A success the reward misses (a green square; it was trained on red ones): a person says
    "success" on /reward_override, the node adapts its head in the background and swaps it in, every
    frame sent meanwhile is scored, the new version names itself in /reward and is kept on disk."""
    from tiny_models import adaptable_reward_model, framed

    from robofume_ros.msg import RewardOverride
    from robofume_ros.ros.convert import rgb_to_image

    model = adaptable_reward_model(tmp_path / "m")
    adapted = tmp_path / "adapted"
    spec = reward_spec(tmp_path, model, adapt=True, adapt_dir=str(adapted), paired_instructions=[])
    seen, later = framed(6, 21, (20, 230, 20)), framed(6, 22, (20, 230, 20))

    def frame(i, img, episode):
        o = observation(None, i, episode)
        o.image = rgb_to_image(img, o.header.stamp)
        o.instruction = "put the red square"
        return o

    with graph_under_test("finetune", {}, tmp_path, specs=spec) as g:
        probe = g.probe({"/reward": Reward})
        pub = probe.publisher("/observation", Observation)
        override = probe.publisher("/reward_override", RewardOverride)
        deadline = time.monotonic() + 60
        while not probe.get("/reward") and time.monotonic() < deadline:  # node up and model loaded
            pub.publish(frame(0, later[0], 0))
            time.sleep(0.2)
        i, sent = 1, []

        def send(images, episode):
            nonlocal i
            for img in images:
                o = frame(i, img, episode)
                sent.append((o.header.stamp.sec, o.header.stamp.nanosec))
                pub.publish(o)
                i += 1
                time.sleep(0.2)

        send(later, 1)  # how the head in use judges frames it will not be taught on
        send(seen, 2)  # the episode the person judges
        probe.wait_for(
            "/reward", 1, timeout=20, pred=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == sent[-1]
        )
        msg = RewardOverride()
        msg.episode_index, msg.verdict, msg.source = 2, RewardOverride.SUCCESS, "test"
        override.publish(msg)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(m.model_id.endswith("+adapted1") for m in probe.get("/reward")):
            send(later[:1], 3)
        send(later, 4)  # the same frames as episode 1, judged by the adapted head
        probe.wait_for(
            "/reward", 1, timeout=20, pred=lambda m: (m.header.stamp.sec, m.header.stamp.nanosec) == sent[-1]
        )
        g.assert_alive()
    msgs = probe.get("/reward")
    by_episode = {e: [m for m in msgs if m.episode_index == e] for e in (1, 4)}
    assert all(m.model_id.endswith("+adapted1") for m in by_episode[4]), "the adapted head judges the new frames"
    assert not any("+adapted" in m.model_id for m in by_episode[1])
    before = np.mean([m.probability for m in by_episode[1]])
    after = np.mean([m.probability for m in by_episode[4]])
    assert after > before + 0.2, (before, after)
    scored = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in msgs}
    assert set(sent) <= scored, f"{len(set(sent) - scored)} of {len(sent)} frames were not scored"
    assert (adapted / "v1" / "reward_model.json").exists() and (adapted / "trusted_labels.npz").exists()
    assert json.loads((adapted / "v1" / "adapt.json").read_text())["trusted_frames"] >= 3
