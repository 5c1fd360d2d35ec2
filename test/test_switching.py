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
    assert list(sm.outcomes) == [(0, True), (1, False), (2, False), (3, False), (4, False)]
    for _ in range(200):
        sm.force_switch()
    assert len(sm.outcomes) == 64 and sm.outcomes[-1][0] == sm.episode_index - 1
