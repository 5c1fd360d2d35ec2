import numpy as np
import pytest

from robofume_ros.data import bags as B
from robofume_ros.data.replay import ReplayItem, play, replay_iter
from test_data_helpers import T0


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """/a at 0, 0.1, ..., 0.9 s; /b at 0.05, 0.55 s."""
    p = tmp_path_factory.mktemp("r") / "bag"
    s = B.typestore()
    with B.BagWriter(p, store=s) as w:
        for i in range(10):
            ns = T0 + i * 100_000_000
            w.write("/a", "std_msgs/msg/Header", B._header(s, ns, f"a{i}"), ns)
        for ns in (T0 + 50_000_000, T0 + 550_000_000):
            w.write("/b", "std_msgs/msg/Header", B._header(s, ns, "b"), ns)
    return p


def test_schedule_original_timing(bag):
    items = list(replay_iter(bag))
    assert [i.source_topic for i in items][:3] == ["/a", "/b", "/a"]
    np.testing.assert_allclose(
        [i.due_s for i in items], [0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9], atol=1e-9
    )
    np.testing.assert_allclose([i.wait_s for i in items][1:4], [0.05, 0.05, 0.1], atol=1e-9)
    assert items[0].stamp == T0 and items[-1].stamp == T0 + 900_000_000
    s = B.typestore()
    assert s.deserialize_cdr(items[0].data, items[0].msgtype).frame_id == "a0"


def test_rate_offset_filter_remap(bag):
    items = list(replay_iter(bag, rate=2.0, start_offset_s=0.3, topics=["/a"], remap={"/a": "/x"}))
    assert {i.topic for i in items} == {"/x"} and {i.source_topic for i in items} == {"/a"}
    assert [i.stamp - T0 for i in items] == [k * 100_000_000 for k in range(3, 10)]
    np.testing.assert_allclose([i.due_s for i in items], [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], atol=1e-9)
    fast = list(replay_iter(bag, rate=0))
    assert all(i.due_s == 0 and i.wait_s == 0 for i in fast)
    with pytest.raises(B.MissingTopicError, match="/nope"):
        list(replay_iter(bag, topics=["/nope"]))
    with pytest.raises(B.MissingTopicError, match="remap"):
        list(replay_iter(bag, remap={"/nope": "/y"}))
    with pytest.raises(ValueError, match="past the end"):
        list(replay_iter(bag, start_offset_s=5.0))


def test_looping(bag):
    items = list(replay_iter(bag, topics=["/a"], loop=3))
    assert len(items) == 30 and [i.loop for i in items[::10]] == [0, 1, 2]
    # loop period = span 0.9 s + the median interval 0.1 s: the cadence continues
    np.testing.assert_allclose([i.due_s for i in items], np.arange(30) * 0.1, atol=1e-9)
    items = list(replay_iter(bag, topics=["/a"], loop=2, loop_gap_s=0.5, rate=0.5))
    np.testing.assert_allclose(items[10].due_s, (0.9 + 0.5) / 0.5)
    it = replay_iter(bag, loop=True)
    assert sum(1 for _, _ in zip(range(100), it)) == 100  # endless
    it.close()


def test_play_uses_absolute_schedule():
    now = [100.0]
    slept = []

    def sleep(d):
        slept.append(round(d, 6))
        now[0] += d + 0.01  # oversleeps every time; the schedule must not drift

    items = [ReplayItem("/a", "t", b"", 0, due, 0.0, 0, "/a") for due in (0.0, 0.1, 0.2, 0.3)]
    sent = []
    res = play(items, sent.append, clock=lambda: now[0], sleep=sleep)
    assert len(sent) == 4 and res["sent"] == 4
    assert slept == [0.1, 0.09, 0.09]  # 0.01 s oversleep is absorbed, not accumulated
    res = play(items, sent.append, clock=lambda: 0.0 + len(sent) * 10, sleep=sleep, max_late_s=1.0)
    assert res["skipped"] >= 1
