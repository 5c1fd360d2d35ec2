import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from robofume_ros.data import bags as B
from robofume_ros.interfaces import command_to_action
from robofume_ros.data.episode import Episode
from test_data_helpers import T0

REPO = Path(__file__).resolve().parents[1]


def test_typestore_and_msg_dir():
    assert (B.msg_dir() / "Observation.msg").exists()
    s = B.typestore()
    for t in B.MSGTYPES.values():
        assert t in s.fielddefs
    msg = B.make_command(s, T0, [0.1, -0.2, 0.3, 1.0])
    back = s.deserialize_cdr(s.serialize_cdr(msg, B.MSGTYPES["command"]), B.MSGTYPES["command"])
    np.testing.assert_allclose(command_to_action(back, 4), [0.1, -0.2, 0.3, 1.0], rtol=1e-6)
    m7 = B.make_command(s, T0, [1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(command_to_action(m7, 7), [1, 2, 3, 4, 5, 6, 7])


def test_msg_dir_env_override(tmp_path, monkeypatch):
    (tmp_path / "X.msg").write_text("int32 a\n")
    monkeypatch.setenv("ROBOFUME_MSG_DIR", str(tmp_path))
    assert B.msg_dir() == tmp_path


def _write(path, n, **kw):
    s = B.typestore()
    with B.BagWriter(path, store=s, **kw) as w:
        for i in range(n):
            ns = T0 + i * 100_000_000
            w.write(
                "/observation",
                B.MSGTYPES["observation"],
                B.make_observation(s, ns, np.full((8, 8, 3), i % 255, np.uint8), [i], "x", "t"),
                ns,
            )
            w.write(
                "/robot/command",
                B.MSGTYPES["command"],
                s.serialize_cdr(B.make_command(s, ns, [i, 0, 0, 0]), B.MSGTYPES["command"]),
                ns,
            )
    return path


def test_split_files_definitions_embedded_and_readable_by_rosbags(tmp_path):
    from rosbags.highlevel import AnyReader

    p = _write(tmp_path / "bag", 50, max_duration_s=1.0)
    files = sorted(p.glob("*.mcap"))
    assert len(files) >= 4
    # plain rosbags with an EMPTY typestore reads it: definitions travel inside the MCAP files
    from rosbags.typesys import Stores, get_typestore

    with AnyReader([p], default_typestore=get_typestore(Stores.EMPTY)) as r:
        msgs = [r.deserialize(d, c.msgtype) for c, _, d in r.messages()]
    assert len(msgs) == 100
    with B.BagReader(p) as r:
        assert r.message_counts() == {"/observation": 50, "/robot/command": 50}
        stamps = [m.stamp for m in r.messages(["/robot/command"])]
        assert stamps == sorted(stamps) and len(stamps) == 50


OLD_TASK_PHASE = """std_msgs/Header header
uint8 phase
string task
string instruction
uint32 episode_index
uint8 last_switch_reason
uint32 steps_in_episode
bool paused
uint32 forward_successes
uint32 backward_successes
uint32 forward_timeouts
uint32 backward_timeouts
"""


def test_a_bag_recorded_with_an_older_message_layout_is_read_as_recorded(tmp_path):
    """A recording made before TaskPhase gained fields: its bytes follow the definition embedded
    in the bag, not this package's current one, and everything that reads bags reads them so."""
    from rosbags.typesys import get_types_from_msg

    from robofume_ros.data.bags.reader import read_graph_messages

    phase_t = B.MSGTYPES["task_phase"]
    old = B.typestore(fresh=True)
    old.fielddefs.pop(phase_t)
    old.types.pop(phase_t)
    old.cache.clear()
    old.register(get_types_from_msg(OLD_TASK_PHASE, phase_t))
    H = old.types["std_msgs/msg/Header"]
    Tm = old.types["builtin_interfaces/msg/Time"]
    path = tmp_path / "old_bag"
    with B.BagWriter(path, store=old) as w:
        for i in range(5):
            ns = T0 + i * 100_000_000
            w.write(
                "/observation",
                B.MSGTYPES["observation"],
                B.make_observation(old, ns, np.full((8, 8, 3), i, np.uint8), [i], "open it", "t-open"),
                ns,
            )
            m = old.types[phase_t](
                header=H(stamp=Tm(sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""),
                phase=i % 2,
                task="t-open",
                instruction="open it",
                episode_index=i,
                last_switch_reason=1,
                steps_in_episode=7,
                paused=False,
                forward_successes=i,
                backward_successes=0,
                forward_timeouts=0,
                backward_timeouts=0,
            )
            w.write("/task_phase", phase_t, m, ns)
    with B.BagReader(path) as r:
        assert r.redefined == {phase_t}
    msgs = read_graph_messages(path, ["observation", "task_phase"])
    phases = [m for k, _t, m, _s in msgs if k == "task_phase"]
    assert [p.forward_successes for p in phases] == [0, 1, 2, 3, 4]
    assert [p.episode_index for p in phases] == [0, 1, 2, 3, 4]
    assert not hasattr(phases[0], "overrides")  # the layout it was recorded with
    obs = [m for k, _t, m, _s in msgs if k == "observation"]
    assert [m.instruction for m in obs] == ["open it"] * 5
    # a bag recorded with this package's layout needs no store of its own
    with B.BagReader(_write(tmp_path / "new_bag", 3)) as r:
        assert r.redefined == set()


def test_writer_refuses_existing_and_unknown_type(tmp_path):
    (tmp_path / "b").mkdir()
    with pytest.raises(B.BagError, match="exists"):
        B.BagWriter(tmp_path / "b")
    w = B.BagWriter(tmp_path / "c")
    with pytest.raises(B.UnknownMessageTypeError, match="foo_msgs/msg/Bar"):
        w.write("/x", "foo_msgs/msg/Bar", b"\x00\x01\x00\x00", T0)
    w.close()


def test_truncated_bag_clear_error_and_recover(tmp_path):
    p = _write(tmp_path / "bag", 40, flush_interval_s=0.0)  # a chunk per message
    f = next(p.glob("*.mcap"))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(B.BagTruncatedError, match="truncated.*recover"):
        B.BagReader(p).open()
    rep = B.recover_bag(p)
    assert rep.repaired_files == [f.name] and rep.bytes_dropped > 0
    with B.BagReader(p) as r:
        n = sum(1 for _ in r.messages())
    assert 0 < n < 80
    assert B.recover_bag(p).repaired_files == []  # idempotent


def test_corrupt_and_missing(tmp_path):
    p = _write(tmp_path / "bag", 5)
    f = next(p.glob("*.mcap"))
    f.write_bytes(b"not an mcap file at all" * 10)
    with pytest.raises(B.BagCorruptError):
        B.BagReader(p).open()
    with pytest.raises(B.BagError, match="does not exist"):
        B.BagReader(tmp_path / "nope").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(B.BagCorruptError, match="not a rosbag2"):
        B.BagReader(tmp_path / "empty").open()


def test_missing_topic_and_unknown_type(tmp_path):
    p = _write(tmp_path / "bag", 3)
    with B.BagReader(p) as r:
        with pytest.raises(B.MissingTopicError, match="/reward.*available"):
            r.require(["/reward"])
    # a bag whose writer stored no definition for its custom type
    from rosbags.rosbag2 import StoragePlugin, Writer

    with Writer(tmp_path / "old", version=9, storage_plugin=StoragePlugin.MCAP) as w:
        c = w.add_connection("/bar", "foo_msgs/msg/Bar", msgdef="", rihs01="RIHS01_" + "0" * 64)
        w.write(c, T0, b"\x00\x01\x00\x00\x03\x00\x00\x00")
    with B.BagReader(tmp_path / "old") as r:
        m = next(r.messages())
        with pytest.raises(B.UnknownMessageTypeError, match="foo_msgs/msg/Bar"):
            r.deserialize(m)


CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    from robofume_ros.data import bags as B
    s = B.typestore()
    w = B.BagWriter(sys.argv[1], store=s, flush_interval_s=0.5)
    log = open(sys.argv[2], "w", buffering=1)
    i = 0
    while True:
        ns = 1_700_000_000_000_000_000 + i * 10_000_000
        w.write("/observation", B.MSGTYPES["observation"],
                B.make_observation(s, ns, np.zeros((32, 32, 3), np.uint8), [float(i)], "x", "t"), ns)
        log.write(f"{i} {time.monotonic()}\\n")
        i += 1
        time.sleep(0.01)
""")


def test_sigkill_loses_at_most_one_second(tmp_path):
    bag, log = tmp_path / "bag", tmp_path / "log.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(bag), str(log)], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until it has written for ~2 s
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) > 5 and float(lines[-1].split()[1]) - float(lines[0].split()[1]) > 2.0:
                break
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    written = [l.split() for l in log.read_text().splitlines() if len(l.split()) == 2]
    last_i, last_t = int(written[-1][0]), float(written[-1][1])
    with pytest.raises(B.BagTruncatedError):
        B.BagReader(bag).open()
    B.recover_bag(bag)
    with B.BagReader(bag) as r:
        got = [int(round(r.deserialize(m).proprio[0])) for m in r.messages()]
    assert got == list(range(len(got)))  # a clean prefix, nothing garbled
    t_of = {int(i): float(t) for i, t in written}
    lost_s = last_t - t_of[got[-1]]
    assert got[-1] <= last_i and lost_s <= 1.0, f"lost {lost_s:.2f} s of messages"


def small_episodes(rng, n: int, T: int) -> list:
    """`n` episodes of `T` random steps with 6x7 images, none successful."""
    r = -np.ones(T, np.float32)
    return [
        Episode(
            rng.integers(0, 255, (T + 1, 6, 7, 3), dtype=np.uint8),
            rng.normal(size=(T + 1, 4)).astype(np.float32),
            rng.uniform(-1, 1, (T, 4)).astype(np.float32),
            r,
            r == 0,
            "i",
            "drawer-open",
        )
        for _ in range(n)
    ]


def test_fast_mcap_scan_matches_rosbags_reader(tmp_path):
    """raw_tuples' memory-mapped MCAP scan yields exactly what rosbags' reader yields."""
    from robofume_ros.data.dataset import FrameList

    eps = small_episodes(np.random.default_rng(5), 2, 5)
    bag = B.write_episodes_bag(eps, tmp_path / "bag", writer_kwargs={"max_bytes": 4000})
    assert len(list(bag.glob("*.mcap"))) > 1  # split files are scanned in order too
    with B.BagReader([bag]) as r:
        fast = sorted((t, mt, bytes(d), s) for t, mt, d, s in r.raw_tuples())
        assert r._maps, "the fast path was not taken"
    with B.BagReader([bag]) as r:
        r._no_fast = True
        slow = sorted((t, mt, bytes(d), s) for t, mt, d, s in r.raw_tuples())
    assert fast == slow and len(fast) > 20
    frames = FrameList([e for e in eps[0].images])
    with open(tmp_path / "f.npy", "wb") as fh:
        frames.write_npy(fh)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy"), eps[0].images)


def test_recorded_since_reads_a_live_recorders_files_for_a_backfill(tmp_path):
    """A backfill older than the recorder's memory comes from its own files: the closed ones and
    the one still being written (flushed, no footer), by header stamp and logging time."""
    from robofume_ros.data.bags.reader import recorded_since
    from robofume_ros.interfaces import MSGTYPES, topic_name

    eps = small_episodes(np.random.default_rng(6), 2, 6)
    bag = B.write_episodes_bag(eps, tmp_path / "bag", writer_kwargs={"max_bytes": 4000})
    types = {topic_name(k, ""): MSGTYPES[k] for k in ("observation", "command")}
    with B.BagReader([bag]) as rd:
        recorded = [(m.topic, bytes(m.data), m.stamp) for m in rd.messages(list(types))]
    stamp = {"/observation": lambda d: B.parse_observation(d)[0], "/robot/command": lambda d: B.parse_command(d)[0]}
    stamps = sorted(stamp[t](d) for t, d, _ in recorded)
    since, before = stamps[len(stamps) // 4], recorded[3 * len(recorded) // 4][2]
    want = sorted((t, d) for t, d, logged in recorded if stamp[t](d) >= since and logged <= before)
    files = sorted(bag.glob("*.mcap"))
    assert len(files) > 1
    got, oldest = recorded_since(files, types, since, before)
    assert sorted(got) == want and 0 < len(want) < len(recorded)
    assert oldest == stamps[0]
    # the same messages in a bag still being written: read up to its last flushed chunk
    live = B.BagWriter(tmp_path / "live")
    for topic, data, logged in recorded:
        live.write(topic, types[topic], data, logged)
    live.flush()
    got_live, _ = recorded_since(sorted((tmp_path / "live").glob("*.mcap")), types, since, before)
    assert sorted(got_live) == want
    live.close()


def test_generated_cdr_parsers_read_what_rosbags_reads():
    """The converter's parsers are generated from the message definitions: for each hot type they
    return what rosbags' generic deserializer returns, and a truncated message is an error."""
    s = B.typestore()
    rng = np.random.default_rng(0)
    for k in range(20):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        pr = rng.normal(size=int(rng.integers(0, 12))).astype(np.float32)
        msg = B.make_observation(s, T0 + k * 977, img, pr, "x" * k, "task" + "y" * (k % 5), k % 2, 3 * k)
        data = bytes(s.serialize_cdr(msg, B.MSGTYPES["observation"]))
        st, im, hh, ww, step, enc, pp, instr, task, ph, ep = B.parse_observation(data)
        back = s.deserialize_cdr(data, B.MSGTYPES["observation"])
        assert (st, hh, ww, step, enc) == (B.stamp_ns(back.header.stamp), h, w, 3 * w, "rgb8")
        np.testing.assert_array_equal(im, back.image.data)
        np.testing.assert_array_equal(pp, back.proprio)
        assert (instr, task, ph, ep) == (back.instruction, back.task, back.phase, back.episode_index)
        with pytest.raises((ValueError, __import__("struct").error)):
            B.parse_observation(data[: int(rng.integers(4, len(data) - 1))])

        a = rng.uniform(-1, 1, 7)
        cmd = B.make_command(s, T0 + k, a, source="s" * k, intervention=bool(k % 2))
        data = bytes(s.serialize_cdr(cmd, B.MSGTYPES["command"]))
        st, a7, iv = B.parse_command(data, 7)
        np.testing.assert_allclose(a7, command_to_action(s.deserialize_cdr(data, B.MSGTYPES["command"]), 7), atol=1e-6)
        assert st == T0 + k and iv == bool(k % 2) and B.parse_command(data, 4)[1].shape == (4,)

        rew = B.make_reward(s, T0 + k, float(rng.random()), bool(k % 3), episode_index=k)
        data = bytes(s.serialize_cdr(rew, B.MSGTYPES["reward"]))
        back = s.deserialize_cdr(data, B.MSGTYPES["reward"])
        assert B.parse_reward(data) == (T0 + k, back.probability, back.success, back.episode_index)


def test_cdr_parser_generator_follows_any_layout():
    """Alignment of 8-byte fields after strings, fixed arrays, sequences of wider types, bools:
    a message type made up for the test, checked field by field against rosbags."""
    from rosbags.typesys import get_types_from_msg

    from robofume_ros.data.bags.cdr import compile_parser

    s = B.typestore(fresh=True)
    s.register(
        get_types_from_msg(
            "string a\nfloat64 b\nuint8 c\nint64[] d\nbool e\nint16[3] f\nstd_msgs/Header h\nfloat32 g",
            "test_msgs/msg/Layout",
        )
    )
    T = s.types["test_msgs/msg/Layout"]
    fields = ("a", "b", "c", "d", "e", "f", "h.stamp", "h.frame_id", "g")
    parse = compile_parser(s, "test_msgs/msg/Layout", fields)
    for k in range(6):
        m = T(
            a="q" * k,
            b=1.5 * k,
            c=k,
            d=np.arange(k, dtype=np.int64) * -(10**12),
            e=bool(k % 2),
            f=np.array([k, -k, 7], np.int16),
            h=s.types["std_msgs/msg/Header"](stamp=B.types._time(s, T0 + k), frame_id="f" * (k + 1)),
            g=0.25 * k,
        )
        out = parse(bytes(s.serialize_cdr(m, "test_msgs/msg/Layout")))
        assert out[0] == m.a and out[1] == m.b and out[2] == m.c and out[4] == m.e
        np.testing.assert_array_equal(out[3], m.d)
        np.testing.assert_array_equal(out[5], m.f)
        assert out[6] == T0 + k and out[7] == m.h.frame_id and out[8] == m.g
    with pytest.raises(KeyError, match="has no field"):
        compile_parser(s, "test_msgs/msg/Layout", ("zz",))


def test_built_messages_match_msg_and_an_older_build_is_named():
    """The recorder embeds msg/'s definitions next to the bytes the built classes publish: it
    checks they agree (a build from an older msg/ would make its bags unreadable)."""
    from rosbags.typesys import get_types_from_msg

    from robofume_ros.ros.messages import built_layout_mismatch, message_class

    store = B.typestore()
    for t in B.MSGTYPES.values():
        assert built_layout_mismatch(t, message_class(t), store) is None, t
    phase_t = B.MSGTYPES["task_phase"]
    old = B.typestore(fresh=True)
    old.fielddefs.pop(phase_t)
    old.types.pop(phase_t)
    old.register(get_types_from_msg(OLD_TASK_PHASE, phase_t))
    why = built_layout_mismatch(phase_t, message_class(phase_t), old)
    assert why and "recent_episodes" in why and "rebuild" in why
