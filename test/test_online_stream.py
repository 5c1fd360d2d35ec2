"""Online episodes from the topic stream: pairing, RoboFuME labels, disk before training, crash recovery."""

import numpy as np

from robofume_ros.data.dataset import load_episodes
from robofume_ros.online.episode_stream import EpisodeStream, Journal


def feed(stream, episode, stamps, task="drawer-open", instr="open the drawer", commands=True):
    for s in stamps:
        stream.observation(s, episode, np.full((8, 8, 3), s % 255, np.uint8), [s, 0, 0, 1], instr, task)
        if commands:
            stream.command(s, [0.1, 0.2, 0.3, float(s % 2)])
        stream.reward(s, 0.9 if s == stamps[-1] else 0.1)


def test_episode_closes_with_robofume_labels_and_is_on_disk(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [10, 11, 12, 13])
    feed(st, 1, [14, 15], task="drawer-close", instr="close the drawer")
    eps = st.close_before(1, success=True)
    assert len(eps) == 1
    ep = eps[0]
    assert len(ep) == 3 and ep.success and ep.task == "drawer-open"
    np.testing.assert_array_equal(ep.rewards, [-1, -1, 0])
    np.testing.assert_array_equal(ep.terminals, [False, False, True])
    np.testing.assert_array_equal(ep.proprio[:, 0], [10, 11, 12, 13])
    np.testing.assert_allclose(ep.actions[:, 3], [0, 1, 0])
    assert ep.provenance["reward_probability"][-1] == 0.9
    on_disk = load_episodes(tmp_path / "online")
    assert len(on_disk) == 1 and np.array_equal(on_disk[0].images, ep.images)
    # a timeout ends the episode without success: all -1, never terminal
    feed(st, 1, [16, 17])
    [ep2] = st.close_before(2, success=False)
    assert not ep2.success and not ep2.terminals.any() and (ep2.rewards == -1).all()


def test_commands_pair_by_stamp_and_gaps_are_cut(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4)
    for s in range(20, 30):
        st.observation(s, 0, np.zeros((4, 4, 3), np.uint8), [s, 0, 0, 0], "i", "t")
    for s in range(20, 30):
        if s != 23:  # the command for stamp 23 never arrived
            st.command(s, [s, 0, 0, 0])
    [ep] = st.close_before(1, success=False)
    # the clean tail after the gap: obs 24..29, actions 24..28
    np.testing.assert_array_equal(ep.proprio[:, 0], np.arange(24, 30))
    np.testing.assert_array_equal(ep.actions[:, 0], np.arange(24, 29))
    assert st.dropped == {"command_missing": 4}


def test_messages_before_their_observation_wait_for_it(tmp_path):
    """The topics of one control step arrive in any order: a command or verdict that arrives
    before its observation is paired when the observation comes; the episode equals the in-order one."""
    in_order, shuffled = EpisodeStream(tmp_path / "a", action_dim=4), EpisodeStream(tmp_path / "b", action_dim=4)
    feed(in_order, 0, list(range(1, 11)))
    rng = np.random.default_rng(0)
    msgs = []
    for s in range(1, 11):
        msgs += [("obs", s), ("cmd", s), ("rew", s)]
    for kind, s in (msgs[i] for i in rng.permutation(len(msgs))):
        if kind == "obs":
            shuffled.observation(
                s, 0, np.full((8, 8, 3), s % 255, np.uint8), [s, 0, 0, 1], "open the drawer", "drawer-open"
            )
        elif kind == "cmd":
            shuffled.command(s, [0.1, 0.2, 0.3, float(s % 2)])
        else:
            shuffled.reward(s, 0.9 if s == 10 else 0.1)
    [a] = in_order.close_before(1, success=True)
    [b] = shuffled.close_before(1, success=True)
    assert len(b) == len(a) == 9 and shuffled.dropped == {}
    for k in ("images", "proprio", "actions", "rewards", "terminals"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.provenance["reward_probability"] == b.provenance["reward_probability"]


def test_a_command_whose_observation_never_comes_is_counted_when_it_expires(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4, max_pending=4)
    st.command(999, [0, 0, 0, 0])  # answers an observation that never arrives
    feed(st, 0, [1, 2, 3])
    assert st.dropped == {}  # still waiting
    for s in range(10, 14):
        st.command(s, [0, 0, 0, 0])  # four newer ones push it out
    assert st.dropped == {"command_without_observation": 1}


def test_outcomes_come_from_the_switchers_verdicts_not_only_the_newest(tmp_path):
    """A learner that was down while episodes 0 and 1 ended sees only the phase message that
    starts episode 2; the switcher's remembered verdicts label each of them."""
    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [1, 2, 3])
    feed(st, 1, [4, 5, 6], task="drawer-close")
    e0, e1 = st.close_before(2, success=False, outcomes={0: True, 1: False})
    assert e0.success and e0.terminals[-1] and e0.rewards[-1] == 0
    assert not e1.success and (e1.rewards == -1).all()
    # without the history the old rule holds: only the episode just before is the newest verdict
    feed(st, 2, [7, 8, 9])
    feed(st, 3, [10, 11, 12], task="drawer-close")
    e2, e3 = st.close_before(4, success=True)
    assert not e2.success and e3.success


def test_waiting_messages_survive_a_kill_after_a_compaction(tmp_path, monkeypatch):
    from robofume_ros.online import episode_stream

    monkeypatch.setattr(episode_stream, "COMPACT_MIN_BYTES", 0)  # compact at the first close
    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [1, 2, 3])
    st.command(4, [0.5, 0, 0, 0])  # episode 1's first command, before its observation
    st.close_before(1, success=True)  # compacts the journal
    st.journal.close()  # killed
    st2 = EpisodeStream(tmp_path, action_dim=4)
    st2.recover()
    st2.observation(4, 1, np.zeros((8, 8, 3), np.uint8), [4, 0, 0, 1], "close the drawer", "drawer-close")
    st2.observation(5, 1, np.zeros((8, 8, 3), np.uint8), [5, 0, 0, 1], "close the drawer", "drawer-close")
    [ep] = st2.close_before(2, success=False)
    np.testing.assert_allclose(ep.actions[:, 0], [0.5])


def test_closing_a_backlog_rewrites_the_journal_rarely_and_a_kill_duplicates_nothing(tmp_path, monkeypatch):
    """A restart's backfill leaves many episodes open, closed one phase message at a time: the
    journal is rewritten when it has doubled, not at every close (each rewrite costs the whole
    open set). A kill then leaves records of stored episodes in it, and recovery skips them."""
    from robofume_ros.data.dataset import load_episodes
    from robofume_ros.online import episode_stream

    monkeypatch.setattr(episode_stream, "COMPACT_MIN_BYTES", 1)
    st = EpisodeStream(tmp_path, action_dim=4)
    rewrites = []
    real = st.journal.rewrite
    st.journal.rewrite = lambda records: (rewrites.append(len(records)), real(records))
    for e in range(20):
        feed(st, e, [3 * e + 1, 3 * e + 2, 3 * e + 3])
    closed = [ep for e in range(1, 20) for ep in st.close_before(e, success=True)]
    assert len(closed) == 19 and len(rewrites) <= 2, rewrites  # was one per close
    st.journal.close()  # killed
    st2 = EpisodeStream(tmp_path, action_dim=4)
    finished, open_steps = st2.recover()
    assert finished == [] and open_steps == 3  # episode 19 is still open
    indices = [int(e.provenance["episode_index"]) for e in load_episodes(tmp_path / "online")]
    assert sorted(indices) == list(range(19))


def test_a_killed_learner_loses_nothing_it_received(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [1, 2, 3])
    feed(st, 1, [4, 5, 6], task="drawer-close")
    st.close_before(1, success=True)  # episode 0 on disk
    feed(st, 1, [7, 8])  # episode 1 still open when the process dies
    st.journal.close()  # (a kill: nothing else is flushed)
    # the journal's torn last record (killed mid-write) is ignored
    with open(tmp_path / "journal.bin", "ab") as f:
        f.write(b"\x40\x00\x00\x00partial")
    st2 = EpisodeStream(tmp_path, action_dim=4)
    finished, open_steps = st2.recover()
    assert finished == [] and open_steps == 5
    feed(st2, 2, [9, 10])
    [ep1] = st2.close_before(2, success=True)
    np.testing.assert_array_equal(ep1.proprio[:, 0], [4, 5, 6, 7, 8])
    assert len(load_episodes(tmp_path / "online")) == 2


def test_episode_closed_but_not_yet_written_is_finished_on_recovery(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [1, 2, 3, 4])
    st._log(("close", 1, True))  # the switch was journaled, then the process died
    st.journal.close()
    st2 = EpisodeStream(tmp_path, action_dim=4)
    finished, open_steps = st2.recover()
    assert len(finished) == 1 and finished[0].success and finished[0].terminals[-1]
    assert open_steps == 0 and len(load_episodes(tmp_path / "online")) == 1
    # a second recovery finds it on disk and does not write it twice
    st2.journal.close()
    st3 = EpisodeStream(tmp_path, action_dim=4)
    assert st3.recover() == ([], 0)
    assert len(load_episodes(tmp_path / "online")) == 1


def test_journal_round_trip(tmp_path):
    j = Journal(tmp_path / "j.bin")
    recs = [("obs", i, np.arange(i)) for i in range(5)]
    for r in recs:
        j.append(r)
    out = j.replay()
    assert [r[1] for r in out] == list(range(5))
    j.rewrite(out[3:])
    assert [r[1] for r in j.replay()] == [3, 4]


def test_ground_truth_before_its_observation_is_kept_per_task(tmp_path):
    st = EpisodeStream(tmp_path, action_dim=4)
    for s in (1, 2, 3):
        st.ground_truth(s, "drawer-close", True)  # the other task: not this episode's
        st.ground_truth(s, "drawer-open", s == 3)  # arrives before the observation
        st.observation(s, 0, np.zeros((4, 4, 3), np.uint8), [0, 0, 0, 0], "open the drawer", "drawer-open")
        st.command(s, [0, 0, 0, 0])
    [ep] = st.close_before(1, success=True)
    np.testing.assert_array_equal(ep.success_gt, [False, False, True])


def test_an_overridden_outcome_relabels_the_stored_episode_on_disk_and_in_the_buffer(tmp_path):
    """A person's UNDO after the episode was stored: disk and replay buffer get the new labels,
    and a restarted learner sees them too."""
    from robofume_ros.rl.replay import ReplayStore

    st = EpisodeStream(tmp_path, action_dim=4)
    feed(st, 0, [1, 2, 3, 4])
    feed(st, 1, [5, 6])
    [ep] = st.close_before(1, success=True)
    store = ReplayStore(proprio_dim=4, action_dim=4, image_shape=(8, 8, 3))
    store.add_episode(ep)
    assert store.array("dones")[-1] == 1 and store.array("success").all()
    assert st.stored_success(0) is True
    rewards, terminals = st.relabel(0, False)
    assert store.relabel(0, rewards, terminals)
    assert not store.array("dones").any() and not store.array("success").any()
    assert (store.array("raw_rewards") == -1).all()
    [on_disk] = load_episodes(tmp_path / "online")
    assert not on_disk.success and (on_disk.rewards == -1).all() and not on_disk.terminals.any()
    np.testing.assert_array_equal(on_disk.images, ep.images)  # nothing else changed
    assert store.relabel(42, rewards, terminals) is False  # not in this buffer
    st.journal.close()
    st2 = EpisodeStream(tmp_path, action_dim=4)
    st2.recover()
    assert st2.stored_success(0) is False


def test_missing_steps_name_the_episodes_a_close_would_cut(tmp_path):
    from robofume_ros.online.episode_stream import EpisodeStream

    s = EpisodeStream(tmp_path, action_dim=4)
    img = np.zeros((4, 4, 3), np.uint8)
    for t in range(6):  # episode 1: steps 0..2, episode 2: steps 3..5
        s.observation(100 + t, 1 + t // 3, img, np.zeros(4), "open the drawer", "drawer-open")
    for t in (0, 2, 3, 4):  # step 1's command never came; the last step of an episode needs none
        s.command(100 + t, np.zeros(4))
    assert s.missing_steps(2, 10) == (101, [1])
    assert s.missing_steps(3, 10) == (101, [1])  # episode 2 is whole: 3 and 4 commanded, 5 is its last
    s.command(101, np.zeros(4))  # the backfill brings it
    assert s.missing_steps(3, 10) == (None, [])
    (ep1,) = s.close_before(2, True)
    assert len(ep1) == 2 and not s.dropped
    # a first frame the robot never acted on (taken before the arm went home) is no hole
    s.observation(200, 3, img, np.zeros(4), "open the drawer", "drawer-open")
    for t in (240, 241, 242):
        s.observation(t, 3, img, np.zeros(4), "open the drawer", "drawer-open")
        s.command(t, np.zeros(4))
    assert s.missing_steps(4, 10) == (None, [])
    assert s.missing_steps(4, 100) == (200, [3])
    # observations missing between two commanded steps (delivered after a restart's backfill): a
    # hole at the step before them, closed once they arrive
    for t in (300, 301, 305, 306):
        s.observation(t, 4, img, np.zeros(4), "close the drawer", "drawer-close")
        s.command(t, np.zeros(4))
    assert s.missing_steps(5, 2) == (301, [4])
    for t in (302, 303, 304):
        s.observation(t, 4, img, np.zeros(4), "close the drawer", "drawer-close")
        s.command(t, np.zeros(4))
    assert s.missing_steps(5, 2) == (None, [])


def test_what_the_arm_executed_while_a_person_drove_is_the_action(tmp_path):
    """Steps 2 and 3 were driven by a person: the robot side's executed action is their action,
    whether it arrives before or after the policy's command or before the observation; the count
    is in the provenance, and a kill (journal replay, also after a compaction) keeps it."""
    st = EpisodeStream(tmp_path, action_dim=4)
    obs = lambda s, e=0: st.observation(s, e, np.zeros((8, 8, 3), np.uint8), [s, 0, 0, 1], "open the drawer", "t")
    obs(1)
    st.command(1, [0.1, 0, 0, 0])
    st.command(2, [-0.7, 0, 0, 1], intervention=True)  # before its observation and the policy's command
    obs(2)
    st.command(2, [0.2, 0, 0, 0])  # the policy's, dropped by the gate: not the action
    obs(3)
    st.command(3, [0.3, 0, 0, 0])
    st.command(3, [-0.8, 0, 0, 1], intervention=True)  # after the policy's
    obs(4)
    st.command(4, [0.4, 0, 0, 0])
    obs(5)
    st.command(5, [0.5, 0, 0, 0], backfill=True)
    st.command(5, [-0.9, 0, 0, 1], backfill=True, intervention=True)  # a backfill may bring both
    st.journal.close()  # killed before the episode closed
    st2 = EpisodeStream(tmp_path, action_dim=4)
    st2.recover()
    st2.observation(6, 0, np.zeros((8, 8, 3), np.uint8), [6, 0, 0, 1], "open the drawer", "t")
    [ep] = st2.close_before(1, success=True)
    np.testing.assert_allclose(ep.actions[:, 0], [0.1, -0.7, -0.8, 0.4, -0.9])
    assert ep.provenance["interventions"] == 3


def test_a_collection_by_hand_keeps_what_the_goal_asks_for(tmp_path):
    """HandCollection (the teleop node's ~/collect): demos are the episodes the switcher ended in
    success, one goal's worth per direction; the rest are counted, not kept; collect.json records
    it and the step journal is gone. A dataset of another pair refuses the robot's task."""
    import json

    from robofume_ros.data.dataset import DatasetWriter, dataset_info
    from robofume_ros.online.hand_collection import HandCollection

    seen = []
    out = tmp_path / "demos"
    c = HandCollection(out, "demos", 1, action_dim=4, on_episode=lambda *e: seen.append(e[:2]))
    c.phase(3, False, {}, now=0.0)  # the episode running when the goal came (3) is collected from now
    plan = [(3, "drawer-open", "forward", True), (4, "drawer-close", "backward", False)]
    plan += [(5, "drawer-close", "backward", True), (6, "drawer-open", "forward", True)]
    plan += [(7, "drawer-close", "backward", True)]
    stamp = 100
    for index, task, direction, success in plan:
        for _ in range(4):
            c.observation(stamp, index, np.zeros((8, 8, 3), np.uint8), [0, 0, 0, 1], task, task, direction)
            c.command(stamp, [0.0, 0.0, -0.5, 1.0], executed=True)
            stamp += 1
        assert not c.done
        c.phase(index + 1, success, {index: success}, now=float(index))
        c.poll(now=index + 5.0)  # the next episode's observations would close it too (below)
        if c.done:
            break
    assert c.done and index == 5  # one forward (3) and one backward (5) success; 4 failed
    assert seen == [("drawer-open", True), ("drawer-close", False), ("drawer-close", True)]
    record = c.finish()
    eps = load_episodes(out)
    assert [(e.task, e.source, e.success) for e in eps] == [
        ("drawer-open", "target_demo", True),
        ("drawer-close", "target_demo", True),
    ]
    assert all(e.provenance["interventions"] == len(e) == 3 for e in eps)  # 4 observations: 3 steps
    assert record["counts"] == {"episodes": 2, "attempts": 3, "forward": 1, "backward": 1}
    assert json.loads((out / "collect.json").read_text())[-1]["source"] == "teleop"
    assert not list(out.glob(".robofume_collect_*")) and dataset_info(out)["episodes"] == 2

    # a phase message can overtake the episode's last observations: it closes once a later
    # episode's observation came, or after a wait
    f = HandCollection(tmp_path / "failures", "failures", 1, action_dim=4)
    f.phase(0, False, {}, now=0.0)
    for s in range(3):
        f.observation(s, 0, np.zeros((8, 8, 3), np.uint8), [0, 0, 0, 1], "i", "drawer-open", "forward")
        f.command(s, [0.1, 0, 0, 0], executed=False)
    f.phase(1, False, {0: False}, now=10.0)
    assert f.episodes == 0
    f.poll(now=10.5)
    assert f.episodes == 0
    f.poll(now=12.5)
    assert f.done and f.episodes == 1
    f.finish()
    assert load_episodes(tmp_path / "failures")[0].source == "failure"

    # a dataset of another pair refuses the robot's task
    window = tmp_path / "window"
    DatasetWriter(window)
    (window / "generate.json").write_text(json.dumps({"config": {"pair": "window", "seed": 0}}))
    w = HandCollection(window, "demos", 1, action_dim=4)
    w.observation(1, 0, np.zeros((8, 8, 3), np.uint8), [0, 0, 0, 1], "i", "drawer-open", "forward")
    assert w.error and "window" in w.error and "drawer-open" in w.error
    w.finish(w.error)
