"""The stand-in's MoveIt Servo twist semantics (sim/servo.py): motion = velocity x time in force."""

import numpy as np
import pytest

from robofume_ros.sim.servo import TwistIntegrator


def run(events, ticks, timeout=0.3):
    """events: (t, v) commands; ticks: driver tick times. Returns the displacement of each tick."""
    s, out, ev = TwistIntegrator(timeout), [], sorted(events, key=lambda e: e[0])
    for t in ticks:
        while ev and ev[0][0] <= t:
            t_i, v = ev.pop(0)
            s.command(v, t_i)
        out.append(s.advance(t))
    return np.array(out)


def test_two_ticks_between_two_commands_do_not_apply_a_twist_twice():
    # commands every 0.105 s, driver ticks every 0.1 s: a twist is in force for 0.105 s, never 2 ticks
    v = np.array([0.1, 0.0, -0.05])
    cmds = [(0.105 * i, v) for i in range(10)]
    d = run(cmds, np.arange(1, 14) * 0.1)
    # 10 commands in force back to back from 0 to 0.945, the last one until its 0.3 s timeout
    assert np.allclose(d.sum(0), v * (0.945 + 0.3))
    assert np.all(np.abs(d[:, 0]) <= 0.1 * 0.1 + 1e-12)  # no tick moves more than one period of v


def test_two_commands_inside_one_tick_each_count_for_their_time():
    cmds = [(0.0, [1.0, 0, 0]), (0.03, [0, 1.0, 0]), (0.07, [0, 0, 1.0])]
    d = run(cmds, [0.1])
    assert np.allclose(d[0], [0.03, 0.04, 0.03])


def test_timeout_stops_the_motion_and_a_late_tick_catches_up_exactly():
    d = run([(0.0, [0.2, 0, 0])], [0.05, 0.5, 1.0], timeout=0.3)
    assert np.allclose(d[:, 0], [0.01, 0.05, 0.0])  # 0.05 s, then 0.25 s more (timeout at 0.3), then nothing
    s = TwistIntegrator(0.3)
    s.command([0.1, 0, 0], 0.0)
    assert s.active(0.29) and not s.active(0.31)
    s.clear()
    assert not s.active(0.1) and np.all(s.advance(0.2) == 0)


def test_bad_input():
    with pytest.raises(ValueError, match="timeout"):
        TwistIntegrator(0.0)
    with pytest.raises(ValueError, match="NaN"):
        TwistIntegrator(0.3).command([np.nan, 0, 0], 0.0)
