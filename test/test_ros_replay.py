"""The replay node as a real process: bag -> replay node -> recorder node -> bag gives the same
messages; topic filter, remapping, rate, looping and /clock. Every graph is torn down even when
a test fails (graph_under_test stops the nodes in `finally`)."""

import time
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from rosgraph import graph_under_test
from rosgraph_msgs.msg import Clock

from robofume_ros.data import bags as B
from robofume_ros.data.episode import Episode
from robofume_ros.ros.graph import NodeSpec
from robofume_ros.msg import ArmCommand, Observation

RATE_HZ = 10.0


def _episodes(n=2, T=8, size=12, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for k in range(n):
        r = -np.ones(T, np.float32)
        r[-1] = 0
        eps.append(
            Episode(
                rng.integers(0, 255, (T + 1, size, size, 3), dtype=np.uint8),
                rng.normal(size=(T + 1, 4)).astype(np.float32),
                rng.uniform(-1, 1, (T, 4)).astype(np.float32),
                r,
                r == 0,
                "open the drawer" if k % 2 == 0 else "close the drawer",
                "drawer-open" if k % 2 == 0 else "drawer-close",
                success=True,
                success_gt=np.arange(T + 1) >= T,
            )
        )
    return eps


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    d = tmp_path_factory.mktemp("replay_src")
    return B.write_episodes_bag(_episodes(), d / "src", rate_hz=RATE_HZ)


def _params_file(tmp_path: Path) -> str:
    f = tmp_path / "empty_params.yaml"
    f.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n")
    return str(f)


def _replay_spec(tmp_path, **params):
    return NodeSpec(name="replay", executable="replay_node", params_files=[_params_file(tmp_path)], parameters=params)


def _by_topic(path):
    out = {}
    store = B.typestore()
    with B.BagReader([path]) as r:
        for m in r.messages():
            out.setdefault(m.topic, []).append((m.msgtype, _canonical(store, m.msgtype, bytes(m.data))))
    return out


def _canonical(store, msgtype: str, cdr: bytes) -> bytes:
    """The message's CDR as rosbags writes it: Fast DDS pads a message whose length is not a
    multiple of 4 (an Observation ends in a string) with trailing bytes a bag written by rosbags
    does not have; the message is the same."""
    return bytes(store.serialize_cdr(store.deserialize_cdr(cdr, msgtype), msgtype))


def _wait_exit(g, name, timeout):
    proc = g.runner.procs[name].proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    return proc.poll()


def test_round_trip_through_the_recorder_gives_the_same_messages(bag, tmp_path):
    src = _by_topic(bag)
    topics = sorted(src)
    assert set(topics) >= {"/observation", "/robot/command", "/reward", "/task_phase", "/eval/ground_truth"}
    specs = [
        # the replay waits until the recorder has subscribed to every topic, then plays once
        _replay_spec(tmp_path, bag=str(bag), wait_for_subscribers=1, start_delay_s=0.5, rate=2.0, exit_when_done=False),
        NodeSpec(
            name="recorder",
            executable="recorder_node",
            params_files=[_params_file(tmp_path)],
            parameters={"output_dir": str(tmp_path / "rec"), "bag_name": "out", "topics": topics},
        ),
    ]
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "playback finished" not in g.log("replay"):
            time.sleep(0.2)
        assert "playback finished" in g.log("replay"), g.log("replay")[-2000:]
        time.sleep(1.0)  # last messages in flight to the recorder
        g.assert_alive()
    out = _by_topic(tmp_path / "rec" / "out")
    assert sorted(out) == topics
    for t in topics:
        assert [m[0] for m in out[t]] == [m[0] for m in src[t]], t
        assert len(out[t]) == len(src[t]), f"{t}: {len(out[t])} recorded, {len(src[t])} in the bag"
        assert out[t] == src[t], f"{t}: payloads differ"


def test_filter_remap_rate_and_loop(bag, tmp_path):
    n_obs = len(_by_topic(bag)["/observation"])  # 17 at 10 Hz: 1.6 s of bag time
    specs = [
        _replay_spec(
            tmp_path,
            bag=str(bag),
            topics=["/observation"],
            remap=["/observation:=/replay/observation"],
            rate=2.0,
            loop=True,
            loop_count=2,
            wait_for_subscribers=1,
            start_delay_s=0.3,
            exit_when_done=True,
        )
    ]
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/replay/observation": Observation, "/observation": Observation, "/robot/command": ArmCommand})
        msgs = probe.wait_for("/replay/observation", 2 * n_obs, timeout=40)
        code = _wait_exit(g, "replay", 15)
        timed = probe.timed("/replay/observation")
        assert probe.get("/observation") == [] and probe.get("/robot/command") == [], (
            "topics outside the filter (or the unremapped name) were published"
        )
    assert code == 0, "replay did not exit cleanly after its passes"
    assert len(msgs) == 2 * n_obs
    # the same sequence twice, in bag order
    eps = [m.episode_index for m in msgs]
    assert eps[:n_obs] == eps[n_obs:] and eps[:n_obs] == sorted(eps[:n_obs])
    # rate 2: a pass of 1.6 bag-seconds takes ~0.8 s; two passes + one loop gap (0.1 s bag) ~1.65 s
    t = np.array([s for s, _ in timed])
    span = t[-1] - t[0]
    expect = ((n_obs - 1) * 2 + 1) / RATE_HZ / 2.0
    assert abs(span - expect) < 0.35, f"two passes took {span:.2f} s, expected {expect:.2f} s"


def test_start_offset_and_clock(bag, tmp_path):
    src = _by_topic(bag)["/observation"]
    start = B.BagReader([bag]).open()
    t0 = min(r.start_time for r in start.readers)
    start.close()
    specs = [
        _replay_spec(
            tmp_path,
            bag=str(bag),
            topics=["/observation"],
            start_offset_s=1.0,
            rate=0.0,
            publish_clock=True,
            clock_hz=50.0,
            wait_for_subscribers=1,
            start_delay_s=0.3,
            exit_when_done=False,
        )
    ]
    with graph_under_test("sim", {}, tmp_path, specs=specs) as g:
        probe = g.probe({"/observation": Observation, "/clock": Clock})
        n_after = len(src) - 10  # 10 Hz: the first second holds 10 observations
        msgs = probe.wait_for("/observation", n_after, timeout=30)
        time.sleep(0.5)
        clocks = probe.get("/clock")
        g.assert_alive()
    assert len(probe.get("/observation")) == n_after
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in msgs]
    assert stamps[0] - t0 == pytest.approx(1e9, abs=1e6)
    ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in clocks]
    assert ns and min(ns) >= t0 + 10**9 - 10**6 and max(ns) <= stamps[-1]
    assert ns == sorted(ns), "/clock went backwards within one pass"
