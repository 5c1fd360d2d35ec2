"""The reset-free forward/backward state machine."""

import pytest

from robofume_ros.switching.task_switcher import (
    BACKWARD,
    FORWARD,
    REASON_FORCED,
    REASON_RESUMED,
    REASON_SUCCESS,
    REASON_TIMEOUT,
    TaskSpec,
    TaskSwitcher,
)


def make(**kw):
    return TaskSwitcher(TaskSpec("drawer-open", "open the drawer"), TaskSpec("drawer-close", "close the drawer"), **kw)


def test_success_switches_to_the_other_task():
    sm = make(max_episode_steps=100)
    assert sm.phase == FORWARD and sm.active.task == "drawer-open"
    for _ in range(4):
        assert sm.step(False) is None
    ev = sm.step(True)
    assert ev.reason == REASON_SUCCESS and ev.ended_phase == FORWARD and ev.steps == 5
    assert sm.phase == BACKWARD and sm.active.instruction == "close the drawer"
    assert sm.episode_index == 1 and sm.steps_in_episode == 0 and sm.successes == {FORWARD: 1, BACKWARD: 0}


def test_consecutive_success_frames_debounce():
    sm = make(success_frames=3)
    for verdict in (True, True, False, True, True):
        assert sm.step(verdict) is None
    assert sm.step(None) is None  # no verdict this tick keeps the count
    ev = sm.step(True)
    assert ev is not None and ev.reason == REASON_SUCCESS


def test_timeout_switches_and_counts():
    sm = make(max_episode_steps=3, help_after_timeouts=0)
    sm.step(None), sm.step(False)
    ev = sm.step(None)
    assert ev.reason == REASON_TIMEOUT and sm.phase == BACKWARD
    assert sm.timeouts == {FORWARD: 1, BACKWARD: 0} and not sm.paused


def test_backward_episodes_have_their_own_time_limit():
    sm = make(max_episode_steps=5, backward_max_episode_steps=2, help_after_timeouts=0)
    steps = []
    for _ in range(4):  # forward, backward, forward, backward: all time out
        n = 1
        while sm.step(None) is None:
            n += 1
        steps.append(n)
    assert steps == [5, 2, 5, 2] and sm.timeouts == {FORWARD: 2, BACKWARD: 2}
    assert make(max_episode_steps=5).time_limit(BACKWARD) == 5  # 0: same limit as forward
    with pytest.raises(ValueError):
        make(backward_max_episode_steps=-1)


def test_repeated_timeouts_pause_and_ask_for_help_until_resumed():
    sm = make(max_episode_steps=2, help_after_timeouts=3)
    events = [sm.step(None) for _ in range(6)]
    assert [e.reason for e in events if e] == [REASON_TIMEOUT] * 3
    assert sm.paused and sm.help_requested
    ep = sm.episode_index
    assert sm.step(True) is None and sm.episode_index == ep  # paused: ignores verdicts
    sm.resume()
    assert not sm.paused and sm.last_reason == REASON_RESUMED and sm.episode_index == ep + 1
    assert sm.consecutive_timeouts == 0


def test_a_success_resets_the_timeout_streak():
    sm = make(max_episode_steps=2, help_after_timeouts=2)
    sm.step(None), sm.step(None)  # timeout 1
    sm.step(True)  # success
    sm.step(None), sm.step(None)  # timeout again: streak is 1, not 2
    assert not sm.paused and sm.consecutive_timeouts == 1


def test_force_switch_and_validation():
    sm = make()
    assert sm.force_switch().reason == REASON_FORCED and sm.phase == BACKWARD
    with pytest.raises(ValueError):
        make(max_episode_steps=0)
    with pytest.raises(ValueError):
        make(success_frames=0)


def test_recent_outcomes_remember_each_episodes_verdict():
    """What TaskPhase.recent_* carry: a learner that missed switches labels episodes from it."""
    sm = make(max_episode_steps=2, help_after_timeouts=2)
    sm.step(True)  # episode 0: success
    sm.step(False)
    sm.step(False)  # episode 1: timeout
    sm.force_switch()  # episode 2: forced
    sm.step(False)
    sm.step(False)  # episode 3: timeout, second in a row -> paused
    sm.resume()  # episode 4 ends unfinished by the resume
    assert [o[:2] for o in sm.outcomes] == [(0, True), (1, False), (2, False), (3, False), (4, False)]
    for _ in range(200):
        sm.force_switch()
    assert len(sm.outcomes) == 64 and sm.outcomes[-1][0] == sm.episode_index - 1


def test_a_persons_verdicts_override_the_rewards():
    from robofume_ros.switching.task_switcher import (
        OVERRIDE_NOT_SUCCESS,
        OVERRIDE_SUCCESS,
        OVERRIDE_UNDO,
        OverrideError,
    )

    sm = make(max_episode_steps=100, success_frames=2)
    sm.step(False)
    # success now: the active episode ends as a success
    ev = sm.override(OVERRIDE_SUCCESS, 0)
    assert ev.reason == REASON_SUCCESS and ev.ended_episode == 0 and sm.episode_index == 1
    assert sm.successes[FORWARD] == 1 and sm.outcomes[-1][:2] == (0, True)
    # not a success: the reward's success is ignored for the rest of episode 1
    sm.override(OVERRIDE_NOT_SUCCESS, 1)
    for _ in range(5):
        assert sm.step(True) is None
    assert sm.episode_index == 1
    sm.force_switch()  # the veto ends with its episode
    sm.step(True)
    assert sm.step(True).reason == REASON_SUCCESS and sm.outcomes[-1][:2] == (2, True)
    # undo: the last verdict was wrong; the outcome flips and the counters follow
    assert sm.successes[FORWARD] == 2
    sm.override(OVERRIDE_UNDO, 2)
    assert sm.outcomes[-1][:2] == (2, False) and sm.successes[FORWARD] == 1 and sm.overrides == 3
    # what cannot apply is refused and changes nothing
    before = (sm.episode_index, list(sm.outcomes), dict(sm.successes), sm.overrides)
    for verdict, episode, why in (
        (OVERRIDE_SUCCESS, 7, "the active episode is 3"),
        (OVERRIDE_UNDO, 3, "the episode that ended last is 2"),
        (9, 3, "unknown override verdict 9"),
    ):
        with pytest.raises(OverrideError, match=why):
            sm.override(verdict, episode)
    assert (sm.episode_index, list(sm.outcomes), dict(sm.successes), sm.overrides) == before
    with pytest.raises(OverrideError, match="no episode has ended yet"):
        make().override(OVERRIDE_UNDO, 0)
