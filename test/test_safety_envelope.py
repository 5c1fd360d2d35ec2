"""Property tests of the pure safety envelope and command gate with random commands (hypothesis).

Whatever the source and however wild the command (huge, NaN, Inf, wrong size, interleaved with
stops, interventions and stale gaps), what the gate lets through is finite, inside the action box,
inside the speed limits, and keeps the end-effector in the workspace box."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robofume_ros.safety.envelope import EnvelopeConfig, SafetyEnvelope
from robofume_ros.safety.gate import CommandGate, GateConfig, make_gate

CHECKED = {"envelope": 0, "gate": 0}
WS_LOW, WS_HIGH = np.array([-0.3, 0.3, 0.05]), np.array([0.3, 0.8, 0.4])

wild = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(-3, 3),
    st.sampled_from([0.0, 1.0, -1.0, 1e300, -1e300, math.nan, math.inf]),
)


def actions(dim):
    return st.lists(wild, min_size=dim, max_size=dim)


positions = st.tuples(st.floats(-0.5, 0.5), st.floats(0.1, 1.0), st.floats(-0.1, 0.6))


def config(dim, **kw):
    base = dict(
        action_dim=dim,
        max_translation_m=0.02,
        max_rotation_rad=0.1,
        workspace_low=tuple(WS_LOW),
        workspace_high=tuple(WS_HIGH),
        max_delta_per_tick=0.5,
        control_period_s=0.1,
        max_speed_m_s=0.15,
        max_angular_speed_rad_s=0.5,
        command_timeout_s=0.5,
        observation_timeout_s=1.0,
    )
    base.update(kw)
    return EnvelopeConfig(**base)


def check_output(cfg, a, prev, p, reasons):
    assert a is not None
    assert a.shape == (cfg.action_dim,) and np.all(np.isfinite(a))
    assert np.all(a >= cfg.action_low - 1e-12) and np.all(a <= cfg.action_high + 1e-12)
    assert np.linalg.norm(a[:3]) * cfg.max_translation_m <= cfg.max_speed_m_s * cfg.control_period_s + 1e-9
    if cfg.action_dim == 7:
        assert (
            np.linalg.norm(a[3:6]) * cfg.max_rotation_rad <= cfg.max_angular_speed_rad_s * cfg.control_period_s + 1e-9
        )
    if "workspace" not in reasons and "velocity" not in reasons and "angular_velocity" not in reasons:
        assert np.all(np.abs(a - prev) <= cfg.max_delta_per_tick + 1e-9)
    if p is not None:
        p = np.asarray(p)
        # where the hand gets if the command acts for its whole horizon (a velocity interface)
        reach = max(1.0, cfg.command_horizon_s / cfg.control_period_s)
        target = p + a[:3] * cfg.max_translation_m * reach
        inside = np.all(p >= WS_LOW) and np.all(p <= WS_HIGH)
        if inside:
            assert np.all(target >= WS_LOW - 1e-9) and np.all(target <= WS_HIGH + 1e-9), (p, a)
        else:  # outside: never further out on any axis
            assert np.all(np.where(p < WS_LOW, target >= p - 1e-12, True))
            assert np.all(np.where(p > WS_HIGH, target <= p + 1e-12, True))


@pytest.mark.parametrize("dim,horizon", [(4, 0.0), (7, 0.0), (4, 0.35)])
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_envelope_output_is_always_safe(dim, horizon, data):
    """horizon 0.35 s: a twist that keeps moving the arm until a late next tick or the driver's
    timeout (3.5 control periods) still ends inside the box."""
    env = SafetyEnvelope(config(dim, command_horizon_s=horizon))
    cfg = env.config
    prev = np.zeros(dim)
    for _ in range(data.draw(st.integers(1, 20))):
        raw = data.draw(actions(dim))
        p = data.draw(st.one_of(st.none(), positions))
        d = env.filter(raw, p)
        CHECKED["envelope"] += 1
        if not np.all(np.isfinite(raw)):
            assert d.action is None and "NaN" in d.reasons[0]
            continue
        check_output(cfg, d.action, prev, p, d.reasons)
        if np.any(np.abs(raw) > 1):
            assert "clipped" in d.reasons
        prev = d.action
    n_rejected = env.counts["rejected:nonfinite"]
    assert env.counts["commands"] >= n_rejected


def test_wrong_size_and_bad_state_are_rejected():
    env = SafetyEnvelope(config(4))
    assert env.filter([0.1, 0.2], None).action is None
    assert env.counts["rejected:shape"] == 1
    assert env.filter([0.1, 0.2, 0.0, 0.0], [math.nan, 0.5, 0.2]).action is None
    assert env.counts["rejected:nonfinite_state"] == 1


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_gate_arbitration_and_safety_with_random_event_streams(data):
    """Random interleavings of policy commands, human commands, stops, releases and time gaps."""
    dim = data.draw(st.sampled_from([4, 7]))
    gate = CommandGate(SafetyEnvelope(config(dim)), GateConfig(intervention_hold_s=0.3, watchdog=True))
    cfg = gate.envelope.config
    now, prev = 0.0, np.zeros(dim)
    last_human, stopped, last_cmd = None, False, None
    pending_src = {}
    for _ in range(data.draw(st.integers(1, 30))):
        ev = data.draw(st.sampled_from(["policy", "policy", "human", "stop", "release", "wait"]))
        if ev in ("policy", "human"):
            raw = data.draw(actions(dim))
            human = ev == "human"
            gate.submit(raw, "teleop" if human else "policy", human, now)
            last_cmd = now
            CHECKED["gate"] += 1
            if human:
                last_human = now
                pending_src = {"src": "teleop", "raw": raw, "t": now}
            elif last_human is None or now - last_human > 0.3:
                pending_src = {"src": "policy", "raw": raw, "t": now}
        elif ev == "stop":
            gate.set_stop(True)
            stopped = True
            pending_src = {}
        elif ev == "release":
            gate.set_stop(False)
            if stopped:
                prev = np.zeros(dim)  # a release restarts the rate limit from rest
            stopped = False
        else:
            now += data.draw(st.sampled_from([0.05, 0.1, 0.2, 0.6]))
        gate.saw_observation(now)
        p = data.draw(positions)
        t = gate.tick(now, p)
        if stopped:
            assert t.action is None and t.stopped, "a stop must hold the arm at the next tick"
            continue
        if last_cmd is not None and now - last_cmd > cfg.command_timeout_s:
            assert t.action is None
            continue
        if t.action is None:
            continue
        # whatever ran is safe, and it came from the right source
        check_output(cfg, t.action, prev, p, t.reasons)
        prev = t.action
        human_has_arm = last_human is not None and now - last_human <= 0.3
        if human_has_arm:
            assert t.intervention and t.source == "teleop", "the policy ran during an intervention"
        assert pending_src and np.all(np.isfinite(pending_src["raw"]))
        assert t.source == pending_src["src"]


def test_stop_beats_intervention_beats_policy():
    gate = make_gate(4, 0.01, (-1, -1, -1), (1, 1, 1), intervention_hold_s=0.5)
    gate.submit([1, 0, 0, 0], "policy", False, 0.0)
    assert gate.tick(0.0, (0, 0, 0)).source == "policy"
    gate.submit([0, 1, 0, 0], "teleop", True, 0.05)
    gate.submit([1, 0, 0, 0], "policy", False, 0.1)  # dropped: the human has the arm
    t = gate.tick(0.1, (0, 0, 0))
    assert t.intervention and t.action[1] == 1 and t.action[0] == 0
    assert gate.counts["dropped:policy_during_intervention"] == 1
    gate.set_stop(True)
    gate.submit([0, 1, 0, 0], "teleop", True, 0.15)
    assert gate.tick(0.15, (0, 0, 0)).action is None
    gate.set_stop(False)
    gate.submit([1, 0, 0, 0], "policy", False, 0.8)  # hold expired: the policy is back
    assert gate.tick(0.8, (0, 0, 0)).source == "policy"


def test_watchdog_holds_on_stale_commands_and_observations():
    gate = make_gate(
        4, 0.01, (-1, -1, -1), (1, 1, 1), command_timeout_s=0.5, observation_timeout_s=1.0, require_observation=True
    )
    gate.submit([1, 0, 0, 0], "policy", False, 0.0)
    assert gate.tick(0.0, (0, 0, 0)).action is None  # never saw an observation: blind
    gate.saw_observation(0.0)
    gate.submit([1, 0, 0, 0], "policy", False, 0.1)  # (a hold drops what was pending)
    assert gate.tick(0.1, (0, 0, 0)).action is not None
    t = gate.tick(0.7, (0, 0, 0))  # command 0.7 s old
    assert t.action is None and t.stopped and "no command" in t.reasons[0]
    gate.submit([1, 0, 0, 0], "policy", False, 1.5)
    t = gate.tick(1.5, (0, 0, 0))  # observation 1.5 s old
    assert t.action is None and "no observation" in t.reasons[0]
    gate.saw_observation(1.6)
    gate.submit([1, 0, 0, 0], "policy", False, 1.6)
    assert gate.tick(1.6, (0, 0, 0)).action is not None
    c = gate.counts_dict()
    assert c["watchdog:command"] == 1 and c["watchdog:observation"] == 2 and c["held:watchdog"] >= 3


def test_home_motion_reaches_target_inside_the_envelope():
    gate = make_gate(4, 0.01, (-0.5, 0.3, 0.05), (0.5, 1.0, 0.4), max_delta_per_tick=0.3)
    p = np.array([0.3, 0.9, 0.3])
    gate.saw_observation(0.0)
    assert gate.start_home([0.0, 0.6, 0.2], now=0.0).startswith("homing")
    for i in range(200):
        t = gate.tick(i * 0.1, p)
        gate.saw_observation(i * 0.1)
        if t.action is None:
            break
        assert t.source == "home" and np.all(np.abs(t.action) <= 1)
        p = p + t.action[:3] * 0.01
    assert np.linalg.norm(p - [0.0, 0.6, 0.2]) <= 0.005
    assert gate.counts["home:reached"] == 1
    gate.set_stop(True)
    assert gate.start_home([0, 0.6, 0.2]).startswith("refused")


def test_report_random_command_counts():
    """Runs last in this file: prints how many random commands the properties checked."""
    print(f"\nrandom commands checked: envelope {CHECKED['envelope']}, gate {CHECKED['gate']}")
    assert CHECKED["envelope"] >= 1000 and CHECKED["gate"] >= 1000
