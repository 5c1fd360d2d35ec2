import errno
import json
import struct

import numpy as np
import pytest

from robofume_ros.data import bags as B
from robofume_ros.data.convert import ConvertConfig, convert_bags, main
from robofume_ros.data.dataset import DatasetFullError, DatasetWriter, load_episodes
from test_data_helpers import make_chain, write_stream

ARR = ("images", "proprio", "actions", "rewards", "terminals")


def test_round_trip_recorder_layout(tmp_path):
    eps = make_chain(4, T=6, successes=[True, False, True, False])
    B.write_episodes_bag(eps, tmp_path / "bag", writer_kwargs={"max_duration_s": 1.0})
    assert len(list((tmp_path / "bag").glob("*.mcap"))) > 2  # split files
    rep = convert_bags([tmp_path / "bag"], tmp_path / "ds", labels="phase", progress=False)
    got = load_episodes(tmp_path / "ds")
    assert rep.episodes == 4 and rep.transitions == 24 and not rep.dropped
    for a, b in zip(eps, got):
        for n in ARR:
            np.testing.assert_array_equal(getattr(a, n), getattr(b, n), err_msg=n)
        np.testing.assert_array_equal(a.success_gt, b.success_gt)
        assert (a.task, a.instruction, a.success) == (b.task, b.instruction, b.success)
    assert [e.provenance["success_from"] for e in got] == ["task_phase"] * 3 + ["reward_topic"]
    # the recorded /reward stream gives the same labels here
    convert_bags([tmp_path / "bag"], tmp_path / "ds2", labels="reward-topic", progress=False)
    for a, b in zip(eps, load_episodes(tmp_path / "ds2")):
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.terminals, b.terminals)


def test_demo_labels_k3_and_failures(tmp_path):
    eps = make_chain(2, T=7, successes=[True, True])
    B.write_episodes_bag(eps, tmp_path / "bag")
    convert_bags([tmp_path / "bag"], tmp_path / "demo", source="target_demo", progress=False)
    for e in load_episodes(tmp_path / "demo"):
        assert e.success and e.source == "target_demo"
        np.testing.assert_array_equal(e.rewards, [-1, -1, -1, -1, 0, 0, 0])
        np.testing.assert_array_equal(e.terminals, [0, 0, 0, 0, 1, 1, 1])
    convert_bags([tmp_path / "bag"], tmp_path / "fail", source="failure", progress=False)
    for e in load_episodes(tmp_path / "fail"):
        assert not e.success and (e.rewards == -1).all() and not e.terminals.any()
    convert_bags([tmp_path / "bag"], tmp_path / "k1", source="target_demo", k=1, progress=False)
    assert load_episodes(tmp_path / "k1")[0].rewards.tolist() == [-1] * 6 + [0]


def _img(i):
    return np.full((4, 4, 3), i % 250, np.uint8)


def test_split_at_task_switch_gap_and_missing_command(tmp_path):
    # episode 0: obs at 0..0.8 s (5 Hz), but obs 2 has no command;
    # episode 1 starts at 1.0 s after a SUCCESS switch; a 1 s gap inside episode 1
    steps = [{"t": 0.0, "phase": (0, "a", "do a", 0, B.REASON_START)}]
    times0 = [0.0, 0.2, 0.4, 0.6, 0.8]
    for i, t in enumerate(times0):
        s = {"t": t, "obs": (_img(i), [i], "do a", "a", 0, 0)}
        if i != 2:
            s["cmd"] = [i, 0, 0, 0]
        steps.append(s)
    steps.append({"t": 1.0, "phase": (1, "b", "do b", 1, B.REASON_SUCCESS)})
    for j, t in enumerate([1.0, 1.2, 1.4, 2.4, 2.6, 2.8]):
        steps.append({"t": t, "obs": (_img(10 + j), [10 + j], "do b", "b", 1, 1), "cmd": [10 + j, 0, 0, 0]})
    steps.sort(key=lambda s: s["t"])
    merged = {}
    for s in steps:
        merged.setdefault(s["t"], {}).update(s)
    write_stream(tmp_path / "bag", list(merged.values()))
    rep = convert_bags([tmp_path / "bag"], tmp_path / "ds", labels="phase", progress=False)
    got = load_episodes(tmp_path / "ds")
    # episode 0: obs 2 lacks a command -> dropped, gap 0.2->0.6 splits: [0,1] | [3,4,final=1.0]
    # episode 1: [1.0,1.2,1.4] | gap | [2.4,2.6,2.8(no next obs)]
    lens = [(e.task, len(e), e.provenance["segment"]) for e in got]
    assert lens == [("a", 1, 0), ("a", 2, 1), ("b", 2, 0), ("b", 2, 1)]
    assert got[1].success and not got[0].success  # only the segment at the switch succeeds
    assert got[1].rewards.tolist() == [-1, 0] and got[1].terminals.tolist() == [False, True]
    assert got[1].images[-1][0, 0, 0] == 10  # ends on episode 1's first frame
    assert got[1].actions[:, 0].tolist() == [3, 4]
    assert not got[2].success and not got[3].success  # last episode: no switch, nothing recorded
    assert rep.dropped == {"observation_without_command": 1, "gap": 2, "no_next_observation": 1}


def test_foreign_bag_mismatched_rates(tmp_path):
    # camera at 30 Hz, commands (Twist) at 10 Hz, 2 ms after the frame they answer
    steps = {}
    for i in range(31):
        t = round(i / 30, 6)
        steps.setdefault(t, {"t": t})["image"] = _img(i)
    for j in range(10):
        t = round(j / 10 + 0.002, 6)
        steps.setdefault(t, {"t": t})["twist"] = ([j, 0, 0], [0, 0, 0])
    write_stream(tmp_path / "bag", [steps[k] for k in sorted(steps)])
    with pytest.raises(B.MissingTopicError, match="--image-topic"):
        convert_bags([tmp_path / "bag"], tmp_path / "x", command_topic="/cmd_vel", progress=False)
    rep = convert_bags(
        [tmp_path / "bag"],
        tmp_path / "ds",
        image_topic="/camera/image_raw",
        command_topic="/cmd_vel",
        task="push",
        instruction="push it",
        progress=False,
    )
    (e,) = load_episodes(tmp_path / "ds")
    # each command answers the latest frame before it; the bag's last frame ends the episode
    assert len(e) == 10 and e.task == "push" and e.instruction == "push it"
    assert e.actions[:, 0].tolist() == list(range(10))
    assert [int(im[0, 0, 0]) for im in e.images] == [3 * j for j in range(11)]
    assert e.proprio.shape == (11, 0)
    assert rep.dropped == {"observation_without_command": 31 - 11}


def test_reward_model_relabel_hook(tmp_path):
    eps = make_chain(1, T=5)
    B.write_episodes_bag(eps, tmp_path / "bag", with_rewards=False)
    seen = {}

    def fn(images, instruction):
        seen["n"], seen["instr"] = len(images), instruction
        p = np.zeros(len(images))
        p[3] = 0.9  # "done" at o_3 and at the end
        p[-1] = 0.8
        return p

    convert_bags([tmp_path / "bag"], tmp_path / "ds", labels="model", reward_fn=fn, progress=False)
    (e,) = load_episodes(tmp_path / "ds")
    assert seen == {"n": 6, "instr": "instr 0"}
    assert e.rewards.tolist() == [-1, -1, 0, -1, 0] and e.terminals.tolist() == [0, 0, 0, 0, 1]
    assert e.success
    with pytest.raises(ValueError, match="reward_fn"):
        ConvertConfig(labels="model")


def test_errors_keep_what_was_converted(tmp_path):
    good = B.write_episodes_bag(make_chain(2, T=4), tmp_path / "good")
    bad = B.write_episodes_bag(make_chain(2, T=4, seed=1), tmp_path / "bad", writer_kwargs={"flush_interval_s": 0.0})
    f = next(bad.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:-2000])
    with pytest.raises(B.BagTruncatedError, match="2 episodes converted so far"):
        convert_bags([good, bad], tmp_path / "ds", progress=False)
    assert len(load_episodes(tmp_path / "ds")) == 2
    rep = convert_bags([good, bad], tmp_path / "ds2", keep_going=True, progress=False)
    assert rep.episodes == 2 and len(rep.errors) == 1 and "truncated" in rep.errors[0]
    rep = convert_bags([bad], tmp_path / "ds3", recover=True, progress=False)
    assert rep.episodes >= 1


def test_disk_full_during_conversion(tmp_path, monkeypatch):
    bag = B.write_episodes_bag(make_chain(3, T=4), tmp_path / "bag")
    real, n = DatasetWriter._save, {"calls": 0}

    def save(self, file, arr):
        n["calls"] += 1
        if n["calls"] > 12:  # two episodes fit (6 arrays each), then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, file, arr)

    monkeypatch.setattr(DatasetWriter, "_save", save)
    with pytest.raises(DatasetFullError, match="disk full"):
        convert_bags([bag], tmp_path / "ds", progress=False)
    monkeypatch.setattr(DatasetWriter, "_save", real)
    assert len(load_episodes(tmp_path / "ds")) == 2


def test_cli(tmp_path, capsys):
    bag = B.write_episodes_bag(make_chain(2, T=4), tmp_path / "bag")
    rc = main([str(bag), "-o", str(tmp_path / "ds"), "--no-progress", "--report", str(tmp_path / "r.json")])
    assert rc == 0 and "2 episodes" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["transitions"] == 8
    rc = main(
        [str(bag), "-o", str(tmp_path / "ds"), "--no-progress", "--reward-topic", "/nope", "--labels", "reward-topic"]
    )
    assert rc == 2 and "/nope" in capsys.readouterr().err


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])  # a box filter (factor 2), a non-integer resize
def test_a_frame_from_a_bag_and_the_same_frame_online_give_identical_inputs(tmp_path, size):
    """One image conversion: `dataset from-bags --image-size` and the camera node (image_to_rgb,
    then resize_rgb to its output size) turn the same camera frame into the same pixels."""
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time
    from robofume_ros.ros.convert import image_to_rgb, resize_rgb, rgb_to_image

    eps = make_chain(2, T=4, size=16)
    B.write_episodes_bag(eps, tmp_path / "bag")
    convert_bags([tmp_path / "bag"], tmp_path / "ds", labels="phase", image_size=size, progress=False)
    got = load_episodes(tmp_path / "ds")
    for ep, conv in zip(eps, got):
        online = np.stack([resize_rgb(image_to_rgb(rgb_to_image(f, Time())), size) for f in ep.images])
        assert conv.images.shape[1:3] == size
        np.testing.assert_array_equal(np.asarray(conv.images), online)


@pytest.mark.parametrize("damage", ["zeros_4k", "random_64"])
def test_corrupt_payload_inside_a_chunk_is_detected_never_converted(tmp_path, damage):
    """Payload corruption inside a bag (zeroed block, random bytes) fails the chunk's CRC: the
    conversion stops naming the file and the chunk; with --recover the damaged chunk is skipped
    with a warning and the rest converts."""
    # 64x64 images: each observation's chunk (one per message here) holds a 12 KiB image
    bag = B.write_episodes_bag(make_chain(4, T=6, size=64), tmp_path / "bag", writer_kwargs={"flush_interval_s": 0.0})
    clean = convert_bags([bag], tmp_path / "clean", progress=False)
    f = next(bag.glob("*.mcap"))
    data = bytearray(f.read_bytes())
    chunks, pos = [], 8  # (offset, length) of each chunk record
    while pos + 9 <= len(data) and data[pos] != 0x0F:
        (length,) = struct.unpack_from("<Q", data, pos + 1)
        if data[pos] == 0x06:
            chunks.append((pos, length))
        pos += 9 + length
    big = [c for c in chunks if c[1] > 10_000]
    start, length = big[len(big) // 2]
    at = start + 9 + length // 3  # inside the image payload of a chunk in the middle of the file
    n = 4096 if damage == "zeros_4k" else 64
    data[at : at + n] = bytes(n) if damage == "zeros_4k" else np.random.default_rng(0).bytes(n)
    f.write_bytes(bytes(data))
    with pytest.raises(B.BagCorruptError, match=r"fails its CRC check.*--recover"):
        convert_bags([bag], tmp_path / "ds", progress=False)
    rep = convert_bags([bag], tmp_path / "ds2", recover=True, progress=False)
    assert rep.warnings and all("fails its CRC check" in w for w in rep.warnings)
    assert "WARNING" in rep.summary()
    assert 0 < rep.transitions < clean.transitions
    # what was converted holds no damaged bytes: every frame is one of the clean conversion's
    clean_frames = {im.tobytes() for e in load_episodes(tmp_path / "clean") for im in e.images}
    assert all(im.tobytes() in clean_frames for e in load_episodes(tmp_path / "ds2") for im in e.images)


def test_a_persons_later_verdict_labels_the_converted_episode(tmp_path):
    """The switcher's remembered verdicts (TaskPhase.recent_*, a person's UNDO included) decide
    the converted episodes' outcomes over the reason in the next episode's first phase message."""
    eps = make_chain(3, T=5, successes=[True, False, True])
    bag = B.write_episodes_bag(eps, tmp_path / "bag", recent=[(0, False), (1, True), (2, True)])
    convert_bags([bag], tmp_path / "ds", labels="phase", progress=False)
    got = load_episodes(tmp_path / "ds")
    assert [e.success for e in got] == [False, True, True]
    assert got[1].rewards[-1] == 0 and got[1].terminals[-1] and (got[0].rewards == -1).all()


def test_the_executed_action_of_a_person_wins_over_the_policys_command():
    from types import SimpleNamespace

    from robofume_ros.data.convert import ConvertReport, pair_commands

    obs = [SimpleNamespace(stamp=s, action=None, intervention=False) for s in (100, 200, 300)]
    policy = [(s, np.array([0.1 * i, 0, 0, 0], np.float32), False) for i, s in enumerate((100, 200, 300))]
    executed = [(200, np.array([-0.5, 0, 0, 1], np.float32), True)]
    for cmds in (policy + executed, executed + policy):  # either order in the bag
        for o in obs:
            o.action, o.intervention = None, False
        rep = ConvertReport()
        pair_commands(obs, cmds, rep)
        assert [float(o.action[0]) for o in obs] == [0.0, -0.5, pytest.approx(0.2)]
        assert [o.intervention for o in obs] == [False, True, False] and not rep.dropped
